"""Prefect failures are weather, not verdicts: real ``runbook run`` processes talk to the Prefect API
through a loopback proxy that answers 503, stalls past the client timeout or resets the connection
on 10% of requests. Every run reaches its right end state, the gated manual step starts exactly
once, every timeline is complete, and every event of it reached the flow run's log on Prefect (the
log is posted in batches that wait and retry while Prefect is away). CI size here; full size in
``benchmarks/prefect_faults.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from runbook_devtools.faultproxy import FaultProxy
from runbook_devtools.prefect_chaos import missing_log_lines, run_suite, suite_database_url


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

    url = suite_database_url(tmp_path)
    missing = {o.kind: missing_log_lines(prefect_server, o.run_id, url) for o in outcomes if o.run_id}
    assert not any(missing.values()), missing

