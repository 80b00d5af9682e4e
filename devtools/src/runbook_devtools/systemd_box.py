"""A real systemd to test the systemd actions against: a Debian tree (debootstrap, cached) booted with
``systemd-nspawn --boot`` in its own mount namespace, with Attune-like units installed.

Not a fake: PID 1 in the box is Debian's systemd, and ``systemctl`` inside it (reached with
``nsenter -t PID -m -p systemctl``, the argv prefix :attr:`SystemdBox.systemctl` gives for
``RUNBOOK_SYSTEMCTL``) talks to it over its private socket. The host needs root, ``debootstrap`` and
``systemd-container`` (``apt-get install -y debootstrap systemd-container``) and, the first time,
network access to a Debian mirror (~2 minutes; the tree is then reused from :data:`CACHE`).

Measured here (2026-11-30): debootstrap --variant=minbase with systemd ~2 min, boot to
multi-user.target ~3 s. Two workarounds for a host without systemd as PID 1: ``--register=no`` (no
machined) and a private tmpfs on ``/run/systemd/nspawn`` (nspawn refuses to clean up its propagation
directory on a non-tmpfs ``/run``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("RUNBOOK_SYSTEMD_ROOT_CACHE", "/var/cache/runbook-devtools/bookworm-systemd"))
MIRROR = os.environ.get("RUNBOOK_DEBIAN_MIRROR", "http://deb.debian.org/debian")
INSTALL_HINT = (
    "a real systemd for the systemd tests needs root, `apt-get install -y debootstrap systemd-container`"
    " and (the first time) a Debian mirror to debootstrap from"
)

UNITS = {
    "attune-executor.service": "[Unit]\nDescription=Attune executor (test)\n[Service]\n"
    "ExecStart=/bin/sleep infinity\nRestart=on-failure\n[Install]\nWantedBy=multi-user.target\n",
    "attune-worker@.service": "[Unit]\nDescription=Attune worker %i (test)\n[Service]\n"
    "ExecStart=/bin/sleep infinity\nRestart=on-failure\n[Install]\nWantedBy=multi-user.target\n",
    "attune-sensor.service": "[Unit]\nDescription=Attune sensor that crashes (test)\n"
    "StartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sh -c 'sleep 0.3; exit 3'\nRestart=on-failure\n"
    "RestartSec=0.5\n[Install]\nWantedBy=multi-user.target\n",
}
ENABLED = (
    "attune-executor.service",
    "attune-worker@1.service",
    "attune-worker@2.service",
    "attune-sensor.service",
)


def missing_tools() -> list[str]:
    return [t for t in ("debootstrap", "systemd-nspawn", "nsenter", "unshare") if shutil.which(t) is None]


def ensure_tree(root: Path = CACHE) -> Path:
    """The cached Debian tree with systemd (debootstrapped once, under a lock)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "lib/systemd/systemd").exists():
            partial = root.with_name(root.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=systemd,systemd-sysv,dbus",
                    "bookworm",
                    str(partial),
                    MIRROR,
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )
            partial.rename(root)
    return root


def _install_units(root: Path) -> None:
    system = root / "etc/systemd/system"
    wants = system / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for name, text in UNITS.items():
        (system / name).write_text(text)
    for name in ENABLED:
        template = name.split("@")[0] + "@.service" if "@" in name else name
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{template}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _descendant_named(pid: int, name: str) -> int | None:
    todo = [pid]
    while todo:
        current = todo.pop()
        for child in _children(current):
            try:
                if (Path("/proc") / str(child) / "comm").read_text().strip() == name:
                    return child
            except OSError:
                continue
            todo.append(child)
    return None


class SystemdBox:
    """``with SystemdBox() as box:`` boots the box; ``box.systemctl`` is the argv prefix for it."""

    def __init__(self, root: Path = CACHE, boot_timeout: float = 60.0) -> None:
        self.root, self.boot_timeout = root, boot_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    @property
    def systemctl(self) -> tuple[str, ...]:
        assert self.pid is not None, "box not booted"
        return ("nsenter", "-t", str(self.pid), "-m", "-p", "--", "systemctl")

    def __enter__(self) -> SystemdBox:
        ensure_tree(self.root)
        _install_units(self.root)
        script = (
            "mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && "
            f"exec systemd-nspawn -q -D {self.root} --boot --register=no --keep-unit"
        )
        self.proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: {err[-500:]}")
            self.pid = self.pid or _descendant_named(self.proc.pid, "systemd")
            if self.pid is not None:
                state = subprocess.run(
                    [*self.systemctl, "is-system-running"], capture_output=True, text=True, check=False
                ).stdout.strip()
                if state in ("running", "degraded"):
                    return self
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"the systemd box did not boot within {self.boot_timeout:.0f}s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # nspawn powers the box off
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None
