"""``make demo`` (``python -m runbook_devtools.demo``) end to end, as CI runs it: exit 0, the story visible in
the output, and nothing left running afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_incident_drill(
    tmp_path: Path, rabbitmq_available: None, postgres_available: None, prefect_server: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "SLACK_", "PAGERDUTY_"))}
    env.pop("KUBECONFIG", None)
    env["RUNBOOK_HOME"] = str(tmp_path / "home")  # the embedded default, in a private home
    proc = subprocess.run(
        [sys.executable, "-m", "runbook_devtools.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "POST /webhooks/pagerduty incident.triggered" in out and '202 {"status":"accepted"' in out
    assert "verdict: poison_messages" in out
    for step in ("quarantine", "redrive_canary", "redrive_rest"):
        assert re.search(
            rf"clicks Approve on '{step}' .* POST /slack/interactions 200 .*approved by demo-ic", out
        )
    assert "ok  demo-plans-" in out and "NO " not in out
    path = re.search(r"postmortem draft: (\S+\.md)", out)
    assert path and Path(path.group(1)).is_file() and "poison_messages" in Path(path.group(1)).read_text()
    assert "demo found and fixed" in out
    # runbook serve was stopped: its pid is gone
    pid = int(re.search(r"runbook serve \(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
