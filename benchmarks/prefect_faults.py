"""Runs under Prefect API faults, full size: ``runbook run`` processes (plain, gated, retries, finally)
against the Prefect API behind a loopback fault proxy (503s, stalls past the client timeout, resets).

Prints one JSON line: runs by kind, how many reached their right end state, destructive (manual)
steps started exactly once, complete timelines, runs whose every timeline event reached the flow
run's Prefect log, faults injected. ``--small`` is the CI size (4 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ["PREFECT_API_REQUEST_TIMEOUT"] = os.environ.get("PREFECT_API_REQUEST_TIMEOUT", "2")


def main() -> None:
    from runbook_devtools.faultproxy import FaultProxy
    from runbook_devtools.prefect_chaos import missing_log_lines, run_suite, suite_database_url

    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--rounds", type=int, default=10, help="each round runs the four kinds")
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    rounds = 1 if args.small else args.rounds
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as tmp,
        FaultProxy(os.environ["PREFECT_API_URL"], rate=args.rate, delay_seconds=3, seed=16) as proxy,
    ):
        outcomes = run_suite(proxy.url, Path(tmp), rounds=rounds, parallel=args.parallel)
        counts = dict(proxy.counts)
        url = suite_database_url(Path(tmp))
        api = os.environ["PREFECT_API_URL"]
        logs_complete = sum(not missing_log_lines(api, o.run_id, url) for o in outcomes if o.run_id)
    gated = [o for o in outcomes if o.kind == "gated"]
    print(
        json.dumps(
            {
                "benchmark": "prefect_faults",
                "runs": len(outcomes),
                "fault_rate": args.rate,
                "store": "sqlite",
                "right_end_state": sum(o.status == o.expected_status for o in outcomes),
                "all_checks_ok": sum(o.ok for o in outcomes),
                "gated_step_started_exactly_once": sum(o.manual_started == 1 for o in gated),
                "gated_runs": len(gated),
                "complete_timelines": sum(o.complete_timeline for o in outcomes),
                "complete_prefect_logs": logs_complete,
                "runs_with_prefect_notes": sum(o.prefect_notes > 0 for o in outcomes),
                "failed": [(o.kind, o.status, o.stderr_tail[-200:]) for o in outcomes if not o.ok],
                "proxy": counts,
                "run_seconds_max": max(o.seconds for o in outcomes),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
