"""backlog-triage per queue system (issue 14, "Tests"): a consumer outage and a cleared backlog on
BullMQ and on the StarForge table queue, a cleared backlog on SQS and on Kafka (lag 0).

Each incident is made with the system's own client (the ``bullmq`` package, psycopg rows, boto3,
confluent-kafka). Each test asserts the verdict, its evidence in the posted finding, and that the
triage moved nothing: every job/row/message id is counted before and after, and no quarantine or
redrive step ran. Why separate from ``test_triage_systems``: those cover poison; a triage that
quarantines or redrives on an outage or an empty queue would lose work, so these pin "hands off"."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from runbook_devtools.kafka_mock.clients import consume_and_commit, produce_messages
from runbook_devtools.kafka_mock.cluster import MockKafkaCluster

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, run_playbook
from tests.e2e.test_triage_sqs import make_queues, sqs_env  # noqa: F401  (fixture)
from tests.e2e.test_triage_systems import (  # noqa: F401  (fixtures)
    TableWorker,
    bull,
    redis_available,
    sql,
    table,
)
from tests.support.bullmq_jobs import BullBench
from tests.support.sqs import SQSBench, moto_sqs  # noqa: F401  (fixture)
from tests.support.waiting import wait_until

TEAM = {"check_kubernetes": False, "check_database": False, "progress_window": 5, "depth_threshold": 10}
MOVES = ("quarantine", "quarantine_by_headers", "redrive_canary", "redrive_rest")


def finding(result: Any, verdict: str) -> str:
    """The classify evidence, checked to be what the posted finding says (``Root cause: v — e``)."""
    evidence = str(result.output("classify")["evidence"])
    text = result.text()
    assert f"Root cause: {verdict} — {evidence}" in text, text
    return evidence


def nothing_moved(result: Any, approver: Approver) -> None:
    assert approver.steps() == [], approver.steps()
    ran = {s: result.statuses.get(s) for s in MOVES if result.statuses.get(s) == "succeeded"}
    assert ran == {}, ran


# -- BullMQ ------------------------------------------------------------------------------------


def bull_params(b: BullBench) -> dict[str, Any]:
    return {**TEAM, "system": "bullmq", "queue": b.name}


def test_bullmq_consumer_outage(e2e_env: Settings, bull: BullBench) -> None:  # noqa: F811
    ids = bull.add(30)  # no worker at all
    with Approver(e2e_env, "e2e-out-bull", {}) as approver:
        result = run_playbook("backlog-triage", bull_params(bull), "e2e-out-bull")
    assert result.verdict == "consumer_outage", result.text()
    evidence = finding(result, "consumer_outage")
    assert f"consumers on bullmq {bull.name}" in evidence, evidence
    nothing_moved(result, approver)
    assert bull.counts() == {"wait": 30, "active": 0, "failed": 0, "completed": 0, "delayed": 0}
    assert sorted(bull.redis.lrange(f"{bull.prefix}:{bull.name}:wait", 0, -1)) == sorted(ids)


def test_bullmq_cleared_backlog(e2e_env: Settings, bull: BullBench) -> None:  # noqa: F811
    async def handler(job: Any) -> None:
        return None

    bull.worker(handler)  # a healthy worker that has caught up and stays idle
    ids = bull.add(8)
    wait_until(lambda: bull.counts()["completed"] == 8 or None, 15, "8 completed")
    with Approver(e2e_env, "e2e-clear-bull", {}) as approver:
        result = run_playbook("backlog-triage", bull_params(bull), "e2e-clear-bull")
    assert result.verdict == "no_backlog", result.text()
    evidence = finding(result, "no_backlog")
    assert "depth 0 < 10" in evidence and "the backlog has cleared" in evidence, evidence
    nothing_moved(result, approver)
    assert sorted(bull.processed) == sorted(ids)  # each completed once, none failed or moved
    assert bull.counts()["failed"] == 0 and bull.failed_ids() == []


# -- table queue (StarForge queue_jobs) --------------------------------------------------------


def table_params(schema: str) -> dict[str, Any]:
    mapping = {"preset": "starforge", "table": f"{schema}.queue_jobs"}
    mapping["dlq_table"] = f"{schema}.queue_jobs_dlq"
    return {**TEAM, "system": "pg_table", "queue": "queue_jobs", "table_mapping": mapping}


def rows(schema: str) -> list[tuple[Any, ...]]:
    return sql(f"SELECT id::text, status FROM {schema}.queue_jobs ORDER BY id")


def test_table_consumer_outage(e2e_env: Settings, table: str) -> None:  # noqa: F811
    sql(f"INSERT INTO {table}.queue_jobs (type) SELECT 'process_snapshot' FROM generate_series(1, 30)")
    before = rows(table)  # no worker claims anything
    with Approver(e2e_env, "e2e-out-table", {}) as approver:
        result = run_playbook("backlog-triage", table_params(table), "e2e-out-table")
    assert result.verdict == "consumer_outage", result.text()
    evidence = finding(result, "consumer_outage")
    assert "consumers on pg_table queue_jobs" in evidence, evidence
    nothing_moved(result, approver)
    assert rows(table) == before and len(before) == 30
    assert sql(f"SELECT count(*) FROM {table}.queue_jobs_dlq") == [(0,)]


def test_table_cleared_backlog(e2e_env: Settings, table: str) -> None:  # noqa: F811
    worker = TableWorker(table)
    worker.start()
    try:
        sql(f"INSERT INTO {table}.queue_jobs (type) SELECT 'process_snapshot' FROM generate_series(1, 8)")
        wait_until(
            lambda: sql(f"SELECT count(*) FROM {table}.queue_jobs WHERE status = 'done'")[0][0] == 8 or None,
            15,
            "8 done",
        )
        before = rows(table)
        with Approver(e2e_env, "e2e-clear-table", {}) as approver:
            result = run_playbook("backlog-triage", table_params(table), "e2e-clear-table")
    finally:
        worker.stop.set()
        worker.join(5)
    assert result.verdict == "no_backlog", result.text()
    evidence = finding(result, "no_backlog")
    assert "depth 0 < 10" in evidence and "the backlog has cleared" in evidence, evidence
    nothing_moved(result, approver)
    assert rows(table) == before and {s for _, s in before} == {"done"}
    assert sql(f"SELECT count(*) FROM {table}.queue_jobs_dlq") == [(0,)]


# -- SQS ---------------------------------------------------------------------------------------


def test_sqs_cleared_backlog(e2e_env: Settings, sqs_env: SQSBench) -> None:  # noqa: F811
    b = sqs_env
    params = make_queues(b)
    url = b.url(params["queue"])
    b.send(params["queue"], 5)
    done: set[str] = set()
    while len(done) < 5:  # a consumer that has caught up: every message completed (deleted)
        for m in b.client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            b.client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            done.add(m["MessageId"])
    with Approver(e2e_env, "e2e-clear-sqs", {}) as approver:
        result = run_playbook("backlog-triage", params, "e2e-clear-sqs")
    assert result.verdict == "no_backlog", result.text()
    evidence = finding(result, "no_backlog")
    assert "depth 0 < 10" in evidence and "the backlog has cleared" in evidence, evidence
    nothing_moved(result, approver)
    assert b.counts(params["queue"]) == (0, 0)
    assert b.drain(params["quarantine_queue"]) == {}


# -- Kafka -------------------------------------------------------------------------------------


def test_kafka_cleared_backlog_lag_zero(e2e_env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = uuid.uuid4().hex[:8]
    with MockKafkaCluster(brokers=1) as kafka:
        topic, group = f"orders-{tag}", f"workers-{tag}"
        kafka.topic_create(topic, 2)
        produce_messages(kafka.bootstraps, topic, {0: 20, 1: 20})
        consume_and_commit(kafka.bootstraps, group, topic, {0: 20, 1: 20})  # the group caught up
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstraps)
        params = {**TEAM, "system": "kafka", "queue": topic, "kafka_group": group}
        with Approver(e2e_env, "e2e-clear-kafka", {}) as approver:
            result = run_playbook("backlog-triage", params, "e2e-clear-kafka")
    assert result.verdict == "no_backlog", result.text()
    evidence = finding(result, "no_backlog")
    assert "depth 0 < 10" in evidence and "the backlog has cleared" in evidence, evidence
    nothing_moved(result, approver)
    assert result.output("redrive_plan")["values"]["go"] is False
