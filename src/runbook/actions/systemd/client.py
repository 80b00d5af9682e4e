"""The one module of the systemd backend that runs ``systemctl``.

There is no vendor SDK: ``systemctl`` is systemd's own client (D-Bus underneath), reached through the
argv prefix ``RUNBOOK_SYSTEMCTL`` (``settings.systemctl``: ``systemctl`` on the host itself, ``ssh
attune-1 systemctl`` for another host, ``nsenter -t PID -m -p systemctl`` for a container). Every call
is an argv (never a shell), bounded by the step's remaining time, its output capped and redacted.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core.redact import redact
from runbook.core.settings import Settings

BACKEND = "systemd"
CONNECTION_KEY = "systemd"
MAX_OUTPUT = 65536
#: properties read for every unit (``systemctl show -p``)
PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "MainPID",
    "NRestarts",
    "Result",
    "ExecMainStatus",
    "ActiveEnterTimestamp",
    "StateChangeTimestamp",
)


@dataclass(frozen=True)
class Systemctl:
    """How to reach systemctl (the argv prefix); closed with the run's connections (nothing to close)."""

    argv: tuple[str, ...]

    def close(self) -> None:
        return None


def systemctl_client(settings: Settings) -> Systemctl:
    return Systemctl(tuple(settings.systemctl))


def systemctl(ctx: ActionContext) -> Systemctl:
    return ctx.connections.get(CONNECTION_KEY, systemctl_client)


def run(ctx: ActionContext, *args: str, check: bool = True) -> str:
    """``systemctl ARGS`` within the step's remaining time; stdout (capped, redacted)."""
    argv = [*systemctl(ctx).argv, *args]
    what = " ".join(["systemctl", *args])
    timeout = max(0.5, ctx.remaining(default=60.0))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise BackendUnavailable(
            f"{what}: {argv[0]!r} not found (RUNBOOK_SYSTEMCTL={' '.join(systemctl(ctx).argv)!r})",
            backend=BACKEND,
        ) from None
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(
            f"{what}: no answer within {timeout:.1f}s (timeout)", backend=BACKEND
        ) from None
    out, err = redact(proc.stdout[:MAX_OUTPUT]), redact(proc.stderr[:MAX_OUTPUT])
    if check and proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        message = f"{what}: exit {proc.returncode}: {tail[0][:300]}"
        if "Failed to connect to bus" in err or "Failed to connect" in err:
            raise BackendUnavailable(message, backend=BACKEND)
        raise ActionError(message, backend=BACKEND)
    return out


def show(ctx: ActionContext, unit: str) -> dict[str, str]:
    """``systemctl show UNIT -p ...`` as a dict (a unit that does not exist has LoadState not-found)."""
    out = run(ctx, "show", unit, "--no-pager", "-p", ",".join(PROPERTIES))
    props: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key] = value
    return props
