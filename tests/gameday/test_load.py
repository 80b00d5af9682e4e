"""Load at a reduced size: ``benchmarks/load_runs.py --runs 4`` (one run of each kind: hygiene,
stuck-queue, an approved triage, a triage left waiting) in a fresh process. Every run completes or
waits correctly (running, approval pending, Prefect Paused, never reaped) and none is lost; memory is
reported. The full size (50) is the benchmark itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.gameday.conftest import ROOT


def test_concurrent_runs_none_lost(prefect_server: str, rabbitmq_available: None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load_runs.py"), "--runs", "4"],
        capture_output=True,
        text=True,
        timeout=480,  # the harness waits up to 180 s for the runs to settle, then 128 s to finish
        env=env,
        cwd=ROOT,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["lost"] == 0, result
    assert result["waiting_expected"] == 1 and result["waiting_ok"] == 1, result
    assert result["reaped_while_alive"] == 0
    assert sum(result["statuses"].values()) == 4
    assert set(result["statuses"]) <= {"completed", "failed", "denied"}, result
    assert result["by_playbook"]["backlog-triage"] == {"completed": 2}
    assert result["rss_mb_peak"] > 0
