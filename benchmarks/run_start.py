"""Time from ``runbook run`` (a new process) to its first ``step.started`` event.

An on-call engineer who types ``runbook run`` waits for the first finding; everything the process
does before its first step (interpreter start, imports, loading the registry and the playbook,
creating the Prefect flow run) is that wait. Each sample execs ``python -m runbook.cli run`` on a
one-step playbook against the Prefect server at ``PREFECT_API_URL`` (default the local one) and
reads the first ``step.started`` time from the runbook store; the wall clock is taken just before
the exec. Also times ``--dry-run`` of a shipped playbook (``--playbook``, default daily-hygiene) the
same way.

Prints one JSON line: the median (and min, max) of ``--runs`` samples (5; ``--small``: 2), and the
machine's load average, since the figure is CPU-bound and the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

ONE_STEP = """\
name: bench-run-start
title: time to first step
owner: bench
params:
  x: {type: integer, default: 1}
steps:
  - id: s0
    action: core.assert
    with: {that: "{{ params.x > 0 }}"}
"""


def first_step_seconds(argv: list[str], env: dict[str, str], db_url: str) -> tuple[float, float]:
    """(exec → first ``step.started``, exec → process exit) of one ``runbook run``."""
    from runbook.store.schema import open_database
    from runbook.store.timeline import TimelineStore

    started = time.time()
    res = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "run", *argv], capture_output=True, text=True, env=env
    )
    total = time.time() - started
    if res.returncode not in (0, 1, 2):
        raise SystemExit(f"runbook run {argv}: exit {res.returncode}\n{res.stderr[-2000:]}")
    store = TimelineStore(open_database(db_url))
    try:
        run = store.runs(limit=1)[0]
        first = next(e for e in store.events(run["run_id"]) if e.kind.value == "step.started")
    finally:
        store.db.close()  # no connection held while the next run writes
    return first.time.timestamp() - started, total


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="2 samples each (CI)")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--playbook", default="daily-hygiene", help="shipped playbook run with --dry-run")
    args = parser.parse_args()
    n = args.runs or (2 if args.small else 5)
    tmp = Path(tempfile.mkdtemp(prefix="rb-run-start-"))
    db_url = f"sqlite:///{tmp / 'rb.db'}"
    env = dict(os.environ)
    env.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    env.update(
        {
            "RUNBOOK_DATABASE_URL": db_url,
            "RUNBOOK_HOME": str(tmp / "home"),
            "RUNBOOK_PLAYBOOKS": str(ROOT / "playbooks"),
        }
    )
    env.pop("SLACK_BOT_TOKEN", None)
    one = tmp / "one.yaml"
    one.write_text(ONE_STEP)
    result: dict[str, Any] = {"benchmark": "run_start", "samples": n}
    load_before = os.getloadavg()
    first_step_seconds([str(one)], env, db_url)  # warm the page cache and the .pyc files
    for name, argv in (
        ("one_step", [str(one)]),
        (f"{args.playbook}_dry_run", [args.playbook, "--dry-run"]),
    ):
        firsts, totals = [], []
        for _ in range(n):
            first, total = first_step_seconds(argv, env, db_url)
            firsts.append(first)
            totals.append(total)
        result[name] = {"exec_to_first_step_s": summary(firsts), "exec_to_exit_s": summary(totals)}
    result["loadavg_1m"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    result["cpus"] = os.cpu_count()
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
