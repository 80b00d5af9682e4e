"""Approval round trip: a signed Slack click at the gateway → the gated step starts executing.

Real pieces only: the Prefect server on 127.0.0.1:4200 (runs pause with a typed input while they
wait), the gateway route served by uvicorn on a loopback port, signed ``block_actions`` clicks over
HTTP, the store-backed gate, a ``core.manual`` step as the gated step. Measures:

* click → ``step.started`` latency, p50/p95 over N approvals (runs started in waves; each click is
  sent only once its run is PAUSED in Prefect, so the figure is the resume path alone);
* the gateway's acknowledgement time (Slack wants < 3 s);
* resident memory of this process with M runs waiting for approval at once.

Prints one JSON line. ``--small`` runs 5 approvals and 10 waiting runs (CI).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_runs import prefect_database  # the benchmarks folder is on the path, not a package

SECRET = "bench-signing-secret-0123456789"
PLAYBOOK = """
name: bench-approval
title: Approval round trip
owner: bench
steps:
  - id: gated
    title: Gated manual step
    action: core.manual
    with: {instructions: "benchmark: nothing to do"}
    approval: {approvers: [ic], timeout: 10m}
"""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    from runbook_devtools.signing import slack_headers

    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, slack_headers(body, SECRET)


def click_payload(user: str, action_id: str, value: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user, "name": user, "team_id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C1", "is_ephemeral": False},
        "trigger_id": "1.2.3",
        "team": {"id": "T1", "domain": "bench"},
        "channel": {"id": "C1"},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b",
                "type": "button",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


class Bench:
    def __init__(self, tmp: Path) -> None:
        (tmp / "approvers.yaml").write_text("people:\n  bench: [U0BENCH]\nroles:\n  ic: [bench]\n")
        os.environ.update(
            {
                "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp / 'runbook.db'}",
                "RUNBOOK_APPROVERS": str(tmp / "approvers.yaml"),
                "RUNBOOK_SLACK_SIGNING_SECRET": SECRET,
                "RUNBOOK_SLACK_TEAM_ID": "T1",
            }
        )
        for k in ("SLACK_BOT_TOKEN", "RUNBOOK_SLACK_CHANNEL"):
            os.environ.pop(k, None)
        import httpx
        from fastapi import FastAPI
        from runbook_devtools.net import UvicornThread

        from runbook.compiler.flow import build_flow
        from runbook.gateway.slack_routes import get_approvals, router
        from runbook.runtime import build_runtime, from_environment
        from runbook.spec.lint import lint_text

        self.rt = build_runtime()
        self.approvals = self.rt.approvals()
        pb, problems = lint_text(PLAYBOOK, "bench.yaml", self.rt.registry)
        assert not problems, problems
        self.flow = build_flow(pb, from_environment)
        app = FastAPI()
        app.include_router(router)
        app.dependency_overrides[get_approvals] = lambda: self.approvals
        self.server = UvicornThread(app, log_level="error", lifespan="auto", name="bench-gateway").start()
        self.http = httpx.Client(base_url=self.server.url, timeout=10)
        self.prefect = httpx.Client(base_url=os.environ["PREFECT_API_URL"], timeout=10)

    def _one_run(self) -> None:
        """One flow run; creating it is retried when the shared Prefect server answers 503 under load."""
        from prefect.exceptions import PrefectHTTPStatusError

        for attempt in range(8):
            try:
                from runbook.store.launches import Launch, launched_here

                with launched_here(Launch("bench", "unix:bench")):
                    self.flow(return_state=True)
                return
            except PrefectHTTPStatusError:
                time.sleep(0.5 * (attempt + 1))

    def start_runs(self, n: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._one_run, daemon=True) for _ in range(n)]
        for i, t in enumerate(threads):
            t.start()
            if i % 10 == 9:
                time.sleep(0.5)  # spread run creation: the embedded Prefect server is SQLite
        return threads

    def paused(self, n: int, timeout: float = 300) -> list[Any]:
        """Wait until ``n`` requests are pending and their flow runs are PAUSED in Prefect."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rows = [r for r in self.approvals.store.pending() if r.flow_run_id]
            if len(rows) >= n:
                ids = [r.flow_run_id for r in rows]
                found = self.prefect.post(
                    "/flow_runs/filter",
                    json={
                        "flow_runs": {"id": {"any_": ids}, "state": {"type": {"any_": ["PAUSED"]}}},
                        "limit": 200,
                    },
                ).json()
                if len(found) >= n:
                    return rows
            time.sleep(0.2)
        raise RuntimeError(f"only {len(self.approvals.store.pending())} of {n} runs waiting after {timeout}s")

    def click(self, row: Any, action: str) -> tuple[float, float]:
        body, headers = signed(click_payload("U0BENCH", action, f"{row.id}:{row.plan_hash}"))
        sent = time.time()
        r = self.http.post("/slack/interactions", content=body, headers=headers)
        acked = time.time()
        assert r.status_code == 200 and r.json()["state"] == "decided", r.text
        return sent, acked - sent

    def step_started(self, run_id: str, timeout: float = 60) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.rt.store.events(run_id):
                if e.kind == "step.started":
                    return e.time.timestamp()
            time.sleep(0.01)
        raise RuntimeError(f"step of run {run_id} never started")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="5 approvals, 10 waiting runs (CI)")
    parser.add_argument("--approvals", type=int, default=50)
    parser.add_argument("--waiting", type=int, default=100)
    parser.add_argument("--wave", type=int, default=10, help="runs started together for the latency part")
    args = parser.parse_args()
    approvals_n, waiting_n = (5, 10) if args.small else (args.approvals, args.waiting)
    started = time.monotonic()
    quiet = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(quiet):
        bench = Bench(Path(tmp))
        # warm-up: one full round trip (imports, connections, first flow registration)
        threads = bench.start_runs(1)
        bench.click(bench.paused(1)[0], "runbook_approve")
        for t in threads:
            t.join()
        latencies: list[float] = []
        acks: list[float] = []
        done = 0
        while done < approvals_n:
            n = min(args.wave, approvals_n - done)
            threads = bench.start_runs(n)
            rows = bench.paused(n)
            sent = [(row, *bench.click(row, "runbook_approve")) for row in rows]
            for row, at, ack in sent:
                latencies.append(bench.step_started(row.run_id) - at)
                acks.append(ack)
            for t in threads:
                t.join(60)
            done += n
        baseline = rss_mb()
        threads = bench.start_runs(waiting_n)
        rows = bench.paused(waiting_n)
        waiting_rss = rss_mb()
        prefect_db = prefect_database(rows[-1].flow_run_id if rows else None)
        for row in rows:
            bench.click(row, "runbook_deny")
        for t in threads:
            t.join(120)
        bench.server.stop()
    latencies.sort()
    acks.sort()

    def pct(values: list[float], p: float) -> float:
        return round(1000 * values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))], 1)

    print(
        json.dumps(
            {
                "benchmark": "approval_roundtrip",
                "approvals": len(latencies),
                "prefect_api": os.environ.get("PREFECT_API_URL", ""),
                "prefect_db": prefect_db,
                "click_to_step_started_ms": {
                    "p50": round(1000 * statistics.median(latencies), 1),
                    "p95": pct(latencies, 95),
                    "max": pct(latencies, 100),
                },
                "gateway_ack_ms": {"p50": round(1000 * statistics.median(acks), 1), "p95": pct(acks, 95)},
                "waiting_runs": waiting_n,
                "rss_mb": {
                    "before": round(baseline, 1),
                    "with_runs_waiting": round(waiting_rss, 1),
                    "per_waiting_run_kb": round((waiting_rss - baseline) * 1024 / waiting_n, 1),
                },
                "threads_per_waiting_run": "1 flow thread + 1 engine heartbeat; 1 shared watcher per process",
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
