"""Full-size distributed run: 100 PagerDuty incidents through the real gateway, two workers on a
PostgreSQL store, each run executed exactly once (tests/gateway/test_distributed.py at full size).

Prints one JSON line: runs, seconds, and whether every assertion of the test held.
``--small`` runs the CI size (20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    runs = 20 if "--small" in sys.argv else 100
    env = {**os.environ, "RUNBOOK_DISTRIBUTED_RUNS": str(runs)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gateway/test_distributed.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    print(
        json.dumps(
            {
                "benchmark": "distributed_runs",
                "runs": runs,
                "seconds": round(time.monotonic() - started, 1),
                "passed": proc.returncode == 0,
            }
        )
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
