"""backlog-triage end to end on every queue system (issue 14), incidents made with each system's own
client: RabbitMQ (pika), BullMQ (the ``bullmq`` package), a table queue (SQL on the real PostgreSQL)
and Kafka (librdkafka's mock cluster). Each asserts the verdict and its evidence and, after approval,
that quarantine moved exactly the poison ids and nothing else was lost.

A team without Kubernetes or PostgreSQL checks runs these (``check_kubernetes=false``,
``check_database=false``): the verdict must come from the queue alone."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import psycopg
import pytest
from runbook_devtools.kafka_mock.clients import consume_and_commit, produce_messages
from runbook_devtools.kafka_mock.cluster import MockKafkaCluster

from runbook.core.settings import Settings
from tests.actions.test_queue_bullmq import redis_available  # noqa: F401  (fixture)
from tests.actions.test_queue_pg_table import starforge_schema
from tests.actions.test_queue_rabbitmq import Consumer
from tests.e2e.conftest import AMQP, PG_URL, Approver, declare, delete_queues, publish, ready, run_playbook
from tests.support.bullmq_jobs import BullBench
from tests.support.waiting import wait_until

TEAM = {"check_kubernetes": False, "check_database": False, "progress_window": 6, "depth_threshold": 10}
VERDICTS: dict[tuple[str, str], str] = {}  # (system, incident) -> verdict, printed as the table


def record(system: str, incident: str, verdict: str | None) -> None:
    VERDICTS[(system, incident)] = str(verdict)
    print(f"VERDICT {system} | {incident} | {verdict}")


# -- RabbitMQ ----------------------------------------------------------------------------------


@pytest.fixture
def rabbit(e2e_env: Settings) -> Iterator[tuple[str, str, str]]:
    tag = uuid.uuid4().hex[:8]
    q, dlq, quarantine = f"e2e-sys-{tag}", f"e2e-sys-{tag}-dlq", f"e2e-sys-{tag}-quarantine"
    declare(q, dlq, quarantine)
    yield q, dlq, quarantine
    delete_queues(q, dlq, quarantine)


def settled() -> None:
    time.sleep(6)  # the management API samples every 5 s: let it see the seeded queue


def rabbit_params(q: str, dlq: str, quarantine: str, **kw: Any) -> dict[str, Any]:
    return {**TEAM, "queue": q, "dlq": dlq, "quarantine_queue": quarantine, "redrive_dlq": False, **kw}


def test_rabbitmq_hot_requeue_loop_is_never_no_backlog(
    e2e_env: Settings, rabbit: tuple[str, str, str]
) -> None:
    q, dlq, quarantine = rabbit
    publish(q, 60, prefix="m")
    consumer = Consumer(q, "m-0", prefetch=1, crash=False)  # nacks m-0 with requeue, forever
    consumer.start()
    settled()
    try:
        with Approver(e2e_env, "e2e-rq-loop", {"quarantine": "approve"}) as approver:
            result = run_playbook(
                "backlog-triage", rabbit_params(q, dlq, quarantine, depth_threshold=1000), "e2e-rq-loop"
            )
    finally:
        consumer.stop.set()
        consumer.join(5)
    record("rabbitmq", "hot requeue loop (classic)", result.verdict)
    assert result.verdict != "no_backlog", result.text()  # 60 < 1000 messages, but nothing completes
    assert result.output("progress")["verdict"] == "stalled"
    if result.verdict == "poison_messages":
        assert "m-0" in result.output("classify")["evidence"]
        assert approver.request("quarantine").params["ids"] == ["m-0"]
        # exactly the poison; the consumer works through the rest meanwhile (counted by id in
        # test_triage_incidents, whose consumer records what it acked)
        assert ready(quarantine) == 1
    else:  # the loop hid m-0 from every look: no innocent may be named
        assert result.verdict == "slow_processing", result.text()
        assert "quarantine" not in approver.steps()


def test_rabbitmq_prefetch_crash_is_not_a_retry_storm(
    e2e_env: Settings, rabbit: tuple[str, str, str]
) -> None:
    q, dlq, quarantine = rabbit
    publish(q, 60, prefix="m")
    consumer = Consumer(q, "m-3", prefetch=10, crash=True)  # crashes holding 10, all requeued
    consumer.start()
    settled()
    try:
        with Approver(e2e_env, "e2e-rq-burst", {}) as approver:
            result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-rq-burst")
    finally:
        consumer.stop.set()
        consumer.join(5)
    record("rabbitmq", "prefetch-10 crash on one message", result.verdict)
    assert result.verdict == "poison_messages", result.text()
    sample = result.output("sample")
    if sample["indistinguishable"]:
        assert "cannot be told apart" in result.output("classify")["evidence"]
        assert approver.steps() == []  # no automatic quarantine
        assert result.statuses["no_auto_quarantine"] == "succeeded"
    else:
        assert sample["suspects"] == ["m-3"], sample
    assert wait_until(lambda: ready(q) == 60 or None, 15, "all 60 back")  # nothing lost


def test_rabbitmq_consumer_outage(e2e_env: Settings, rabbit: tuple[str, str, str]) -> None:
    q, dlq, quarantine = rabbit
    publish(q, 50)
    settled()
    result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-rq-outage")
    record("rabbitmq", "consumer outage", result.verdict)
    assert result.verdict == "consumer_outage", result.text()
    assert "0 consumers" in result.output("classify")["evidence"]
    assert ready(q) == 50


def test_rabbitmq_cleared_backlog(e2e_env: Settings, rabbit: tuple[str, str, str]) -> None:
    q, dlq, quarantine = rabbit
    conn = pika.BlockingConnection(pika.URLParameters(AMQP))
    ch = conn.channel()
    ch.basic_consume(q, lambda c, m, p, b: c.basic_ack(m.delivery_tag))  # a healthy idle consumer
    stop = threading.Event()
    t = threading.Thread(
        target=lambda: [conn.process_data_events(0.2) for _ in iter(stop.is_set, True)], daemon=True
    )
    t.start()
    settled()
    try:
        result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-rq-clear")
    finally:
        stop.set()
        t.join(5)
        conn.close()
    record("rabbitmq", "cleared backlog", result.verdict)
    assert result.verdict == "no_backlog", result.text()
    assert "the backlog has cleared" in result.output("classify")["evidence"]


# -- BullMQ ------------------------------------------------------------------------------------


@pytest.fixture
def bull(e2e_env: Settings, redis_available: None) -> Iterator[BullBench]:  # noqa: F811
    b = BullBench(f"e2e-{uuid.uuid4().hex[:8]}")
    yield b
    b.close()


def bull_params(b: BullBench, **kw: Any) -> dict[str, Any]:
    return {**TEAM, "system": "bullmq", "queue": b.name, "progress_window": 5, **kw}


def test_bullmq_job_wedging_the_only_worker(e2e_env: Settings, bull: BullBench) -> None:
    ids = bull.add(20)

    async def handler(job: Any) -> None:
        await asyncio.sleep(3600 if job.id == "job-0" else 0)

    bull.worker(handler)
    wait_until(lambda: bull.counts()["active"] == 1 or None, 15, "job-0 active")
    time.sleep(1.5)
    with Approver(e2e_env, "e2e-bull-wedge", {"quarantine": "approve"}) as approver:
        result = run_playbook("backlog-triage", bull_params(bull, wedge_seconds=1), "e2e-bull-wedge")
    record("bullmq", "job wedges the only worker", result.verdict)
    assert result.verdict == "poison_messages", result.text()
    assert "job-0: held by a worker" in result.output("classify")["evidence"]
    assert approver.request("quarantine").params["ids"] == ["job-0"]
    assert bull.failed_ids() == ["job-0"]  # exactly the poison
    bull.worker(handler)  # a restarted worker drains the rest: nothing lost
    wait_until(lambda: bull.counts()["completed"] == 19 or None, 30, "19 completed")
    assert sorted(bull.processed) == sorted(i for i in ids if i != "job-0")


def test_bullmq_job_failing_on_every_attempt(e2e_env: Settings, bull: BullBench) -> None:
    poison = bull.add(1, prefix="poison", attempts=100000)
    innocents = bull.add(300, prefix="ok")

    async def handler(job: Any) -> None:
        if job.id.startswith("poison"):
            raise RuntimeError("KeyError: 'snapshot_id'")
        await asyncio.sleep(0.03)

    bull.worker(handler, concurrency=2)
    wait_until(lambda: bull.counts()["completed"] >= 5 or None, 15, "work flowing")
    with Approver(e2e_env, "e2e-bull-fail", {"quarantine": "approve"}) as approver:
        result = run_playbook("backlog-triage", bull_params(bull), "e2e-bull-fail")
    record("bullmq", "job fails on every attempt", result.verdict)
    assert result.verdict == "poison_messages", result.text()
    assert "attempts made" in result.output("classify")["evidence"]
    assert approver.request("quarantine").params["ids"] == poison
    assert bull.failed_ids() == poison
    wait_until(lambda: bull.counts()["completed"] == len(innocents) or None, 60, "innocents done")


# -- table queue (StarForge queue_jobs) --------------------------------------------------------


class TableWorker(threading.Thread):
    """A StarForge-style worker: claims the due pending row (SKIP LOCKED), completes it, or, for the
    poison type, records the error, counts the attempt and backs off."""

    def __init__(self, schema: str) -> None:
        super().__init__(daemon=True)
        self.schema, self.stop = schema, threading.Event()

    def run(self) -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute(
                    f"UPDATE {self.schema}.queue_jobs SET attempts = attempts + 1, updated_at = now(),"
                    " status = CASE WHEN type = 'poison' THEN 'pending' ELSE 'done' END,"
                    " last_error = CASE WHEN type = 'poison' THEN '\"KeyError\"'::jsonb END,"
                    " run_after = now() + interval '200 milliseconds'"
                    f" WHERE id = (SELECT id FROM {self.schema}.queue_jobs WHERE status = 'pending'"
                    " AND run_after <= now() ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED)"
                )
                time.sleep(0.05)


@pytest.fixture
def table(e2e_env: Settings) -> Iterator[str]:
    schema = f"sf_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(starforge_schema(schema))
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def sql(query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def test_table_row_retried_past_its_attempts(e2e_env: Settings, table: str) -> None:
    (poison,) = sql(
        f"INSERT INTO {table}.queue_jobs (type, attempts, run_after)"
        " VALUES ('poison', 6, now() - interval '1 hour') RETURNING id::text"
    )[0]
    sql(f"INSERT INTO {table}.queue_jobs (type) SELECT 'process_snapshot' FROM generate_series(1, 400)")
    worker = TableWorker(table)
    worker.start()
    mapping = {"preset": "starforge", "table": f"{table}.queue_jobs", "dlq_table": f"{table}.queue_jobs_dlq"}
    params = {
        **TEAM,
        "system": "pg_table",
        "queue": "queue_jobs",
        "table_mapping": mapping,
        "progress_window": 5,
    }
    try:
        with Approver(e2e_env, "e2e-table", {"quarantine": "approve"}) as approver:
            result = run_playbook("backlog-triage", params, "e2e-table")
        wait_until(
            lambda: (
                sql(f"SELECT count(*) FROM {table}.queue_jobs WHERE status = 'pending'")[0][0] == 0 or None
            ),
            60,
            "drained",
        )
    finally:
        worker.stop.set()
        worker.join(5)
    record("pg_table", "row retried past its attempts", result.verdict)
    assert result.verdict == "poison_messages", result.text()
    assert (
        f"{poison}: " in result.output("classify")["evidence"]
        and "attempts made" in result.output("classify")["evidence"]
    )
    assert approver.request("quarantine").params["ids"] == [poison]
    assert sql(f"SELECT original_job_id::text FROM {table}.queue_jobs_dlq") == [(poison,)]
    assert sql(f"SELECT status, count(*) FROM {table}.queue_jobs GROUP BY status ORDER BY 1") == [
        ("done", 400),
        ("failed", 1),
    ]


# -- Kafka -------------------------------------------------------------------------------------


def test_kafka_lag_with_a_stuck_consumer_group(e2e_env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = uuid.uuid4().hex[:8]
    with MockKafkaCluster(brokers=3) as kafka:
        topic, group = f"orders-{tag}", f"workers-{tag}"
        kafka.topic_create(topic, 2)
        produce_messages(kafka.bootstraps, topic, {0: 300, 1: 300})
        consume_and_commit(kafka.bootstraps, group, topic, {0: 10, 1: 5})  # then the group stops
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstraps)
        params = {**TEAM, "system": "kafka", "queue": topic, "kafka_group": group, "progress_window": 5}
        with Approver(e2e_env, "e2e-kafka", {}) as approver:
            result = run_playbook("backlog-triage", params, "e2e-kafka")
    record("kafka", "lag, stuck consumer group", result.verdict)
    assert result.verdict == "consumer_outage", result.text()
    evidence = result.output("classify")["evidence"]
    assert "depth 585 -> 585" in evidence and "nothing takes them" in evidence
    assert approver.steps() == []  # no moves on Kafka: offsets stay kafka.reset_offsets
    assert result.output("redrive_plan")["values"]["go"] is False
