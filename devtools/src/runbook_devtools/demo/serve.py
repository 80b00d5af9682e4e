"""``runbook serve`` as a subprocess of the demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from runbook_devtools.demo.scene import ROOT


class Serve:
    """``runbook serve`` as a subprocess in its own process group (stopped with SIGTERM, which does
    not pause schedules: ``pause_on_shutdown=False``)."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        self.started_at = time.time()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from runbook.cli import main; sys.exit(main())", "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(ROOT),
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, api: str, deployment: str, timeout: float = 90.0) -> None:
        """Until the deployment was (re)applied by this serve process and its fast lane can see it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"runbook serve exited ({self.proc.returncode}); see {self.log_path}")
            if b"serving" in self.log_path.read_bytes():
                try:
                    r = httpx.get(f"{api}/deployments/name/{deployment}", timeout=5)
                    if r.status_code == 200 and _after(r.json().get("updated"), self.started_at):
                        time.sleep(0.5)  # one fast-lane poll to resolve the deployment id
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        raise RuntimeError(f"runbook serve did not serve {deployment} in {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)


def _after(stamp: str | None, epoch: float) -> bool:
    if not stamp:
        return False
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() >= epoch - 1
