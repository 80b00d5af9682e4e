"""queue-full end to end: Attune's tables on the real PostgreSQL (a schema of the test's own) and
its executor queue on the real RabbitMQ. A traffic spike fills action core.http.get's queue to 95%
of max_queue_length; the run captures stats, traffic pattern and config as findings, names the
cause, hands the seed's mitigation to a human, and sees the queue relieved."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, connect, pg_execute, run_playbook
from tests.support.pg_roles import reader_url
from tests.support.waiting import wait_until


@pytest.fixture
def attune(e2e_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Action 7 (core.http.get): 9,500 queued of 10,000, all 5 slots busy; 150 executions in the
    last hour, 120 of them in the last 5 minutes (a spike), some completed recently. Action 3 idle.
    The run reads as a least-privilege role (queue-full only reads)."""
    monkeypatch.setenv("DATABASE_URL", reader_url())
    schema = f"e2e_qf_{uuid.uuid4().hex[:8]}"
    pg_execute(f"CREATE SCHEMA {schema}")
    try:
        pg_execute(f"CREATE TABLE {schema}.action (id bigint PRIMARY KEY, ref text NOT NULL)")
        pg_execute(f"INSERT INTO {schema}.action VALUES (3, 'core.echo'), (7, 'core.http.get')")
        pg_execute(
            f"CREATE TABLE {schema}.queue_stats (action_id bigint PRIMARY KEY, queue_length int,"
            " active_count int, max_concurrent int, oldest_enqueued_at timestamptz, last_updated timestamptz,"
            " total_enqueued bigint, total_completed bigint)"
        )
        pg_execute(
            f"INSERT INTO {schema}.queue_stats VALUES"
            " (7, 9500, 5, 5, now() - interval '40 minutes', now(), 60000, 50500),"
            " (3, 0, 0, 5, NULL, now(), 100, 100)"
        )
        pg_execute(
            f"CREATE TABLE {schema}.execution (id bigint PRIMARY KEY, action text NOT NULL,"
            " status text NOT NULL, created timestamptz NOT NULL, updated timestamptz NOT NULL)"
        )
        pg_execute(  # 30 over the 55 minutes before the spike, completed in 20 s each
            f"INSERT INTO {schema}.execution SELECT g, 'core.http.get', 'succeeded',"
            " now() - make_interval(mins => 6 + g),"
            " now() - make_interval(mins => 6 + g) + interval '20 seconds'"
            " FROM generate_series(1, 30) g"
        )
        pg_execute(  # the spike: 120 in the last 5 minutes, 10 of them done
            f"INSERT INTO {schema}.execution SELECT 100 + g, 'core.http.get',"
            " CASE WHEN g <= 10 THEN 'succeeded' ELSE 'requested' END,"
            " now() - make_interval(secs => g * 2),"
            " now() - make_interval(secs => g * 2) + interval '20 seconds'"
            " FROM generate_series(1, 120) g"
        )
        yield schema
    finally:
        pg_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def executor_queue(e2e_env: Settings) -> Iterator[str]:
    name = f"e2e-qf-{uuid.uuid4().hex[:8]}"
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(name, durable=True, arguments={"x-max-length": 10000, "x-overflow": "reject-publish"})
    yield name
    ch.queue_delete(name)
    conn.close()


def test_traffic_spike_evidence_mitigation_and_relief(
    e2e_env: Settings, attune: str, executor_queue: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    params = {
        "action": "core.http.get",
        "stats_table": f"{attune}.queue_stats",
        "action_table": f"{attune}.action",
        "executions_table": f"{attune}.execution",
        "rabbit_queue": executor_queue,
        "poll_interval": 0.2,
        "verify_timeout": 30,
    }
    with Approver(e2e_env, f"e2e-{tag}", {"mitigate": "approve"}) as approver:

        def operator_scales_workers() -> None:  # what the human does before clicking Done
            wait_until(lambda: "mitigate" in approver.steps(), timeout=60, what="the mitigation request")
            pg_execute(f"UPDATE {attune}.queue_stats SET queue_length = 4000 WHERE action_id = 7")

        operator = threading.Thread(target=operator_scales_workers, daemon=True)
        operator.start()
        result = run_playbook("queue-full", params, f"e2e-{tag}")
        operator.join(5)

    assert result.status == "completed", result.text()
    assert result.verdict == "traffic_spike", result.text()
    findings = [e.summary for e in result.events if e.kind.value == "finding"]
    evidence = next(f for f in findings if f.startswith("Queue-full evidence for core.http.get"))
    assert "stats 9500/10000 queued (95.0%), 5/5 running" in evidence
    assert "traffic 24.0/min in the last 5 min vs 2.5/min over 60 min (peak 30/min)" in evidence, evidence
    assert "10 completed in 5 min, average duration 20.0s" in evidence
    assert (
        f"RabbitMQ {executor_queue}: 0 messages, max-length 10000 (argument), overflow reject-publish"
        in evidence
    )
    assert any(f.startswith("Root cause: traffic_spike — 24.0 executions/min") for f in findings), findings
    assert len(result.output("traffic")["rows"]) >= 30  # the per-minute pattern is kept as evidence

    request = approver.request("mitigate")
    checklist = request.params["checklist"]
    assert checklist[0].startswith("FIRST CHOICE for a traffic spike: rate-limit at the API")
    assert "max_queue_length 10000 -> 20000" in checklist[3]
    assert result.statuses["restart_executor"] == "skipped"  # never offered by default
    assert result.statuses["relieved"] == "succeeded"
    assert any(f.startswith("Queue relieved: 4000 queued") for f in findings), findings
    assert pg_execute(f"SELECT count(*) FROM {attune}.execution")[0][0] == 150  # read-only
