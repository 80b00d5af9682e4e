"""Prefect failures are weather, not verdicts: real ``runbook run`` processes talk to the Prefect API
through a loopback proxy that answers 503, stalls past the client timeout or resets the connection
on 10% of requests. Every run reaches its right end state, the gated manual step starts exactly
once, every timeline is complete, and every event of it reached the flow run's log on Prefect (the
log is posted in batches that wait and retry while Prefect is away). CI size here; full size in
``benchmarks/prefect_faults.py``."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from runbook_devtools.faultproxy import FaultProxy
from runbook_devtools.prefect_chaos import run_suite


def test_runs_under_ten_percent_prefect_faults(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_REQUEST_TIMEOUT", "2")  # the proxy's stalls outlast the client
    monkeypatch.delenv("RUNBOOK_DATABASE_URL", raising=False)
    with FaultProxy(prefect_server, rate=0.1, delay_seconds=3, seed=16) as proxy:
        outcomes = run_suite(proxy.url, tmp_path, rounds=1, parallel=4)
        counts = dict(proxy.counts)
    assert counts["requests"] > 30 and sum(counts.get(k, 0) for k in ("503", "delay", "reset")) > 0, counts
    bad = [o for o in outcomes if not o.ok]
    assert not bad, [(o.kind, o.status, o.succeeded, o.complete_timeline, o.stderr_tail) for o in bad]
    assert {o.kind: o.exit_code for o in outcomes} == {"plain": 0, "gated": 0, "retries": 0, "finally": 1}

    missing = {o.kind: _missing_log_lines(prefect_server, o.run_id, tmp_path) for o in outcomes if o.run_id}
    assert not any(missing.values()), missing


def _missing_log_lines(api: str, run_id: str, workdir: Path) -> list[str]:
    """Timeline events of the run (up to its end) that are not a line of its Prefect log."""
    from runbook.compiler.prefect_log import RUN_LOGGER, log_line
    from runbook.store.schema import open_database
    from runbook.store.timeline import TimelineStore

    url = os.environ.get("RUNBOOK_DATABASE_URL") or f"sqlite:///{workdir / 'runbook.db'}"
    events = TimelineStore(open_database(url)).events(run_id)
    end = next(i for i, e in enumerate(events) if e.kind == "run.finished")
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "sort": "TIMESTAMP_ASC"}
    logs = httpx.post(f"{api}/logs/filter", json=body, timeout=10).json()
    lines = {x["message"] for x in logs if x["name"] == RUN_LOGGER}
    return [log_line(e) for e in events[: end + 1] if log_line(e) not in lines]
