"""backlog-triage against the incidents issue 14 lists, one small real incident each (RabbitMQ with
pika, BullMQ with the ``bullmq`` package, a table queue and a database lock with psycopg).

Each test asserts the verdict and its evidence and, where a move is proposed and approved, that it
moved exactly the poison ids and that no message id was lost or duplicated (every id is counted
after the run: completed by the consumer, still queued, quarantined or failed).

Why these and not only the per-system ones in ``test_triage_systems``: the rules must tell apart
incidents that look alike from the counters (a requeue loop vs slow processing, a retry storm vs
poison, a producer storm vs slow consumers, a database lock vs slow consumers)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import psycopg
import pytest
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.actions.test_queue_bullmq import redis_available  # noqa: F401  (fixture)
from tests.e2e.conftest import AMQP, PG_URL, Approver, connect, declare, delete_queues, mgmt, run_playbook
from tests.e2e.test_triage_systems import TableWorker, sql, table  # noqa: F401  (table: fixture)
from tests.support.bullmq_jobs import BullBench
from tests.support.waiting import wait_until

TEAM = {"check_kubernetes": False, "check_database": False, "progress_window": 5, "depth_threshold": 10}


# -- RabbitMQ helpers --------------------------------------------------------------------------


class Worker(threading.Thread):
    """A real consumer (pika, its own connection). ``handle(message_id, redelivered)`` returns
    ``"ack"``, ``"requeue"`` (nack with requeue) or ``"reject"`` (dead-letter); acked ids are kept."""

    def __init__(self, queue: str, handle: Callable[[str, bool], str], prefetch: int = 1) -> None:
        super().__init__(daemon=True)
        self.queue, self.handle, self.prefetch = queue, handle, prefetch
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.deliveries = 0

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(AMQP))
        ch = conn.channel()
        ch.basic_qos(prefetch_count=self.prefetch)
        for method, props, _ in ch.consume(self.queue, inactivity_timeout=0.1):
            if self.stop.is_set():
                break
            if method is None:
                continue
            self.deliveries += 1
            what = self.handle(str(props.message_id), bool(method.redelivered))
            if what == "ack":
                ch.basic_ack(method.delivery_tag)
                self.acked.append(str(props.message_id))
            else:
                ch.basic_nack(method.delivery_tag, requeue=what == "requeue")
        conn.close()  # anything still held returns to the queue

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(10)


def publish_ids(queue: str, ids: list[str], headers: dict[str, Any] | None = None) -> None:
    conn = connect()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in ids:
            props = pika.BasicProperties(delivery_mode=2, message_id=i, headers=headers)
            ch.basic_publish("", queue, b"{}", props)
    finally:
        conn.close()


def drain_ids(queue: str) -> list[str]:
    """Every message id left in ``queue`` (taken with ack: the test is over)."""
    conn = connect()
    out: list[str] = []
    try:
        ch = conn.channel()
        while True:
            method, props, _ = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append(str(props.message_id))
    finally:
        conn.close()


def stats_show(queue: str, cond: Callable[[dict[str, Any]], bool], what: str, timeout: float = 15) -> None:
    """Wait until the management API's (5 s) sample of ``queue`` shows ``cond``: the playbook reads it."""
    wait_until(lambda: cond(mgmt("GET", f"/api/queues/%2F/{queue}").json()), timeout, what, interval=0.25)


def rate(doc: dict[str, Any], key: str) -> float:
    return float(((doc.get("message_stats") or {}).get(f"{key}_details") or {}).get("rate") or 0.0)


@pytest.fixture
def names(e2e_env: Settings) -> Iterator[tuple[str, str, str]]:
    tag = uuid.uuid4().hex[:8]
    q, dlq, quarantine = f"e2e-inc-{tag}", f"e2e-inc-{tag}-dlq", f"e2e-inc-{tag}-quarantine"
    yield q, dlq, quarantine
    delete_queues(q, dlq, quarantine)


def rabbit_params(q: str, dlq: str, quarantine: str, **kw: Any) -> dict[str, Any]:
    return {**TEAM, "queue": q, "dlq": dlq, "quarantine_queue": quarantine, "redrive_dlq": False, **kw}


def evidence(result: Any) -> str:
    return str(result.output("classify")["evidence"])


# -- RabbitMQ: poison ----------------------------------------------------------------------------


def test_hot_requeue_loop_on_a_classic_queue_is_poison(
    e2e_env: Settings, names: tuple[str, str, str]
) -> None:
    q, dlq, quarantine = names
    declare(q, dlq, quarantine)
    ids = [f"m-{i}" for i in range(40)]
    publish_ids(q, ids)
    # one consumer nacks m-0 with requeue forever: tens of thousands of redeliveries, zero acks
    with Worker(q, lambda mid, _r: "requeue" if mid == "m-0" else "ack") as worker:
        stats_show(q, lambda d: rate(d, "redeliver") > 100, "the requeue loop in the stats")
        with Approver(e2e_env, "e2e-inc-loop", {"quarantine": "approve"}) as approver:
            result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-inc-loop")
        wait_until(lambda: len(worker.acked) == 39 or None, 15, "the rest consumed once m-0 is aside")
    assert result.verdict == "poison_messages", result.text()
    assert "m-0: already redelivered before the triage looked" in evidence(result)
    assert approver.request("quarantine").params["ids"] == ["m-0"]
    assert result.output("quarantine")["ids"] == ["m-0"]
    assert drain_ids(quarantine) == ["m-0"]  # exactly the poison
    assert sorted(worker.acked + drain_ids(q)) == sorted(i for i in ids if i != "m-0")  # nothing lost


# -- RabbitMQ: the look-alikes of poison -----------------------------------------------------------


def slow(seconds: float, what: str = "ack") -> Callable[[str, bool], str]:
    def handle(_mid: str, _redelivered: bool) -> str:
        time.sleep(seconds)
        return what

    return handle


def accounted(worker: Worker, q: str, ids: list[str]) -> None:
    """Every id exactly once: completed by the worker or still queued (the worker has stopped)."""
    left = drain_ids(q)
    assert sorted(worker.acked + left) == sorted(ids), (len(worker.acked), len(left), len(ids))


def test_retry_storm_many_messages_each_retried_once(e2e_env: Settings, names: tuple[str, str, str]) -> None:
    q, dlq, quarantine = names
    declare(q, dlq, quarantine)
    ids = [f"r-{i}" for i in range(800)]
    publish_ids(q, ids)

    def flaky(_mid: str, redelivered: bool) -> str:  # every message fails once, then succeeds
        if not redelivered:
            return "requeue"
        time.sleep(0.03)
        return "ack"

    with Worker(q, flaky) as worker:
        stats_show(q, lambda d: rate(d, "redeliver") > 1 and rate(d, "ack") > 1, "retries and acks")
        with Approver(e2e_env, "e2e-inc-storm", {}) as approver:
            result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-inc-storm")
    # what tells it from poison: many different messages retried (no one message keeps failing) and
    # work still completes - so no suspect is named and nothing is quarantined
    assert result.verdict == "retry_storm", result.text()
    assert "of deliveries are redeliveries/retries while work still completes" in evidence(result)
    assert result.output("sample")["suspects"] == []
    assert approver.steps() == [] and result.statuses["retry_storm_advice"] == "succeeded"
    accounted(worker, q, ids)


def test_slow_processing_healthy_consumer_no_poison(e2e_env: Settings, names: tuple[str, str, str]) -> None:
    q, dlq, quarantine = names
    declare(q, dlq, quarantine)
    ids = [f"s-{i}" for i in range(300)]
    publish_ids(q, ids)
    with Worker(q, slow(0.2)) as worker:  # ~5 msg/s, below min_ack_rate 10; never fails
        stats_show(q, lambda d: rate(d, "ack") > 1, "acks in the stats")
        with Approver(e2e_env, "e2e-inc-slow", {}) as approver:
            result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-inc-slow")
    assert result.verdict == "slow_processing", result.text()
    assert "with no poison evidence" in evidence(result) and "(< 10" in evidence(result)
    assert result.output("sample")["suspects"] == [] and not result.output("sample")["indistinguishable"]
    assert approver.steps() == []  # no Kubernetes here: nothing to scale
    accounted(worker, q, ids)


class Producer(threading.Thread):
    """Publishes ``rate`` messages per second until stopped; keeps the ids."""

    def __init__(self, queue: str, per_second: float) -> None:
        super().__init__(daemon=True)
        self.queue, self.per_second = queue, per_second
        self.stop = threading.Event()
        self.ids: list[str] = []

    def run(self) -> None:
        conn = connect()
        ch = conn.channel()
        ch.confirm_delivery()
        while not self.stop.is_set():
            mid = f"p-{len(self.ids)}"
            ch.basic_publish("", self.queue, b"{}", pika.BasicProperties(message_id=mid))
            self.ids.append(mid)
            time.sleep(1 / self.per_second)
        conn.close()


def test_producer_storm_consumers_healthy(
    e2e_env: Settings, names: tuple[str, str, str], kube: KubeAPIServer
) -> None:
    q, dlq, quarantine = names
    declare(q, dlq, quarantine)
    kube.add_deployment("ingest", "ingest-api", replicas=1, labels={"app": "ingest-api"})
    producer = Producer(q, 150)
    with Worker(q, slow(0.04)) as worker:  # ~20 msg/s: above min_ack_rate, far below the publish rate
        producer.start()
        try:
            stats_show(q, lambda d: rate(d, "publish") > 50 and rate(d, "ack") > 5, "publish and ack rates")
            with Approver(e2e_env, "e2e-inc-prod", {}) as approver:
                params = rabbit_params(q, dlq, quarantine, pause_method="annotation")
                result = run_playbook("backlog-triage", params, "e2e-inc-prod")
        finally:
            producer.stop.set()
            producer.join(10)
    assert result.verdict == "producer_storm", result.text()
    assert "publishers at" in evidence(result) and "consumers healthy" in evidence(result)
    facts = result.output("facts")["values"]
    assert facts["storm_factor"] >= 2 and facts["ack_rate"] >= 10, facts
    assert approver.steps() == ["pause_producer_annotation"]  # proposed (denied here)
    accounted(worker, q, producer.ids)


def test_cleared_backlog_is_no_backlog(e2e_env: Settings, names: tuple[str, str, str]) -> None:
    q, dlq, quarantine = names
    declare(q, dlq, quarantine)
    ids = [f"c-{i}" for i in range(50)]
    with Worker(q, slow(0)) as worker:
        publish_ids(q, ids)
        wait_until(lambda: len(worker.acked) == 50 or None, 15, "the backlog consumed")
        stats_show(q, lambda d: d.get("messages") == 0 and "message_stats" in d, "an empty queue")
        with Approver(e2e_env, "e2e-inc-clear", {}) as approver:
            result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-inc-clear")
    assert result.verdict == "no_backlog", result.text()
    assert "depth 0 < 10" in evidence(result) and "the backlog has cleared" in evidence(result)
    assert approver.steps() == []
    accounted(worker, q, ids)


# -- RabbitMQ: poison with counted evidence ---------------------------------------------------------


def test_dead_lettered_repeatedly_is_poison(e2e_env: Settings, names: tuple[str, str, str]) -> None:
    q, dlq, quarantine = names
    retry = f"{q}-retry"  # the app's retry loop: rejected -> retry queue (TTL) -> back to the queue
    declare(dlq, quarantine)
    declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": retry})
    back = {"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q}
    declare(retry, arguments=back)
    try:
        publish_ids(q, ["x-0"])
        conn = connect()
        ch = conn.channel()
        for _ in range(4):  # x-0 dies 4 times before the incident: real x-death headers
            got = wait_until(lambda: ch.basic_get(q)[0], 5, "x-0 back in the queue")
            ch.basic_reject(got.delivery_tag, requeue=False)
        method, props, body = wait_until(lambda: (lambda r: r if r[0] else None)(ch.basic_get(q)), 5, "x-0")
        ids = [f"i-{i}" for i in range(60)]
        publish_ids(q, ids)  # the backlog, then x-0 behind it as its app's retry republishes it
        ch.confirm_delivery()
        ch.basic_publish("", q, body, props)
        ch.basic_ack(method.delivery_tag)
        conn.close()

        def handle(mid: str, _redelivered: bool) -> str:
            if mid == "x-0":
                return "reject"  # dead-lettered again, back behind the rest 50 ms later
            time.sleep(0.5)  # slow enough that x-0, behind 60 others, is still waiting at the sample
            return "ack"

        with Worker(q, handle) as worker:
            stats_show(q, lambda d: rate(d, "ack") > 0.5, "acks in the stats")
            with Approver(e2e_env, "e2e-inc-xdeath", {"quarantine": "approve"}) as approver:
                params = rabbit_params(q, dlq, quarantine, peek_count=80)
                result = run_playbook("backlog-triage", params, "e2e-inc-xdeath")
        assert result.verdict == "poison_messages", result.text()
        assert "x-0: dead-lettered" in evidence(result) and "times (x-death)" in evidence(result)
        assert approver.request("quarantine").params["ids"] == ["x-0"]
        assert drain_ids(quarantine) == ["x-0"]  # exactly the poison
        assert sorted(worker.acked + drain_ids(q) + drain_ids(retry)) == sorted(ids)  # nothing lost
    finally:
        delete_queues(retry)


class CrashingWorker(threading.Thread):
    """A worker that crashes (its channel dies, unacked) on the poison message and restarts after
    ``restart`` seconds: on a quorum queue every crash counts a delivery (``x-delivery-count``),
    which ``x-delivery-limit`` would eventually act on."""

    def __init__(self, queue: str, poison: str, restart: float) -> None:
        super().__init__(daemon=True)
        self.queue, self.poison, self.restart = queue, poison, restart
        self.stop = threading.Event()
        self.acked: list[str] = []

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(AMQP))
        while not self.stop.is_set():
            ch = conn.channel()
            ch.basic_qos(prefetch_count=1)
            for method, props, _ in ch.consume(self.queue, inactivity_timeout=0.1):
                if self.stop.is_set():
                    break
                if method is None:
                    continue
                if props.message_id == self.poison:
                    break  # crash
                ch.basic_ack(method.delivery_tag)
                self.acked.append(str(props.message_id))
            ch.close()
            self.stop.wait(self.restart)
        conn.close()


def test_quorum_queue_delivery_count_is_poison(e2e_env: Settings, names: tuple[str, str, str]) -> None:
    q, dlq, quarantine = names
    declare(dlq, quarantine)
    declare(
        q,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    ids = [f"q-{i}" for i in range(30)]
    publish_ids(q, ids)
    worker = CrashingWorker(q, "q-0", restart=1.0)
    worker.start()
    try:
        stats_show(q, lambda d: rate(d, "redeliver") > 0, "redeliveries in the stats")
        with Approver(e2e_env, "e2e-inc-quorum", {"quarantine": "approve"}) as approver:
            result = run_playbook("backlog-triage", rabbit_params(q, dlq, quarantine), "e2e-inc-quorum")
        wait_until(lambda: len(worker.acked) == 29 or None, 15, "the rest consumed once q-0 is aside")
    finally:
        worker.stop.set()
        worker.join(10)
    assert result.verdict == "poison_messages", result.text()
    assert "q-0: delivered" in evidence(result) and "times" in evidence(result)
    assert approver.request("quarantine").params["ids"] == ["q-0"]
    assert drain_ids(quarantine) == ["q-0"]
    assert sorted(worker.acked + drain_ids(q)) == sorted(i for i in ids if i != "q-0")


# -- database trouble -------------------------------------------------------------------------------


def test_database_lock_is_database_trouble(e2e_env: Settings, names: tuple[str, str, str]) -> None:
    q, dlq, quarantine = names
    declare(q, dlq, quarantine)
    locked = f"e2e_inc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as setup:
        setup.execute(f"CREATE TABLE {locked} (id text PRIMARY KEY)")
    holder = psycopg.connect(PG_URL)  # a migration holding a lock the consumers need
    holder.execute(f"LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE")
    holder_pid = holder.info.backend_pid
    ids = [f"d-{i}" for i in range(30)]
    publish_ids(q, ids)
    local = threading.local()

    def handle(mid: str, _redelivered: bool) -> str:  # each job writes a row: blocked by the lock
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(PG_URL, autocommit=True)
        local.conn.execute(f"INSERT INTO {locked} VALUES (%s)", (mid,))
        return "ack"

    try:
        with Worker(q, handle) as worker:
            stats_show(q, lambda d: d.get("messages_unacknowledged") == 1, "a job stuck on the lock")
            with Approver(e2e_env, "e2e-inc-db", {}) as approver:
                params = rabbit_params(q, dlq, quarantine, check_database=True, database="test")
                result = run_playbook("backlog-triage", params, "e2e-inc-db")
            holder.rollback()  # the lock goes: the consumer resumes
            wait_until(lambda: len(worker.acked) == 30 or None, 15, "the backlog consumed")
    finally:
        holder.close()
        with psycopg.connect(PG_URL, autocommit=True) as setup:
            setup.execute(f"DROP TABLE IF EXISTS {locked}")
    assert result.verdict == "database_trouble", result.text()
    assert evidence(result).startswith("PostgreSQL: ") and "blocked" in evidence(result)
    assert any(f"root blocker pid {holder_pid}" in p for p in result.output("db")["problems"])
    assert approver.steps() == []  # no Kubernetes: no consumers to halve
    accounted(worker, q, ids)


# -- redrive after quarantine: BullMQ and a table queue ----------------------------------------------

REDRIVE = {"quarantine": "approve", "redrive_canary": "approve", "redrive_rest": "approve"}


@pytest.fixture
def bull(e2e_env: Settings, redis_available: None) -> Iterator[BullBench]:  # noqa: F811
    b = BullBench(f"e2e-inc-{uuid.uuid4().hex[:8]}")
    yield b
    b.close()


def test_bullmq_poison_quarantined_then_failed_jobs_redriven(e2e_env: Settings, bull: BullBench) -> None:
    broken = threading.Event()
    broken.set()

    async def handler(job: Any) -> None:
        if job.id.startswith("poison"):
            raise RuntimeError("KeyError: 'snapshot_id'")
        if job.id.startswith("f-") and broken.is_set():
            raise RuntimeError("upstream 503")  # an outage that has since been fixed
        await asyncio.sleep(0.03)

    failed = bull.add(5, prefix="f")
    bull.worker(handler, concurrency=2)
    wait_until(lambda: bull.counts()["failed"] == 5 or None, 15, "5 jobs failed during the outage")
    broken.clear()
    poison = bull.add(1, prefix="poison", attempts=100000)
    innocents = bull.add(300, prefix="ok")
    wait_until(lambda: bull.counts()["completed"] >= 5 or None, 15, "work flowing")
    params = {**TEAM, "system": "bullmq", "queue": bull.name, "poll_interval": 0.5, "verify_timeout": 30}
    with Approver(e2e_env, "e2e-inc-bull-redrive", REDRIVE) as approver:
        result = run_playbook("backlog-triage", params, "e2e-inc-bull-redrive")
    assert result.verdict == "poison_messages", result.text()
    assert f"{poison[0]}: " in evidence(result) and "attempts made" in evidence(result)
    assert approver.request("quarantine").params["ids"] == poison
    assert result.statuses["canary_clean"] == "succeeded", result.text()
    assert result.output("redrive_canary")["moved"] == 5  # the outage's failures; the poison stays aside
    wait_until(lambda: bull.counts()["completed"] == 305 or None, 60, "everything else completed")
    assert bull.failed_ids() == poison  # exactly the poison
    assert sorted(bull.processed) == sorted(innocents + failed)  # each completed once: nothing lost


def test_table_queue_poison_quarantined_then_failed_rows_redriven(e2e_env: Settings, table: str) -> None:  # noqa: F811
    (poison,) = sql(
        f"INSERT INTO {table}.queue_jobs (type, attempts, run_after)"
        " VALUES ('poison', 6, now() - interval '1 hour') RETURNING id::text"
    )[0]
    failed = [
        r[0]
        for r in sql(
            f"INSERT INTO {table}.queue_jobs (type, status, attempts) SELECT 'process_snapshot', 'failed', 1"
            " FROM generate_series(1, 5) RETURNING id::text"
        )
    ]
    sql(f"INSERT INTO {table}.queue_jobs (type) SELECT 'process_snapshot' FROM generate_series(1, 400)")
    mapping = {"preset": "starforge", "table": f"{table}.queue_jobs", "dlq_table": f"{table}.queue_jobs_dlq"}
    params = {
        **TEAM,
        "system": "pg_table",
        "queue": "queue_jobs",
        "table_mapping": mapping,
        "poll_interval": 0.5,
        "verify_timeout": 30,
    }
    worker = TableWorker(table)
    worker.start()
    try:
        with Approver(e2e_env, "e2e-inc-table-redrive", REDRIVE) as approver:
            result = run_playbook("backlog-triage", params, "e2e-inc-table-redrive")
        pending = f"SELECT count(*) FROM {table}.queue_jobs WHERE status = 'pending'"
        wait_until(lambda: sql(pending)[0][0] == 0 or None, 60, "drained")
    finally:
        worker.stop.set()
        worker.join(5)
    assert result.verdict == "poison_messages", result.text()
    assert approver.request("quarantine").params["ids"] == [poison]
    assert result.statuses["canary_clean"] == "succeeded", result.text()
    assert sorted(result.output("redrive_canary")["ids"]) == sorted(failed)  # not the quarantined row
    assert sql(f"SELECT original_job_id::text FROM {table}.queue_jobs_dlq") == [(poison,)]
    assert sql(f"SELECT status, count(*) FROM {table}.queue_jobs GROUP BY status ORDER BY 1") == [
        ("done", 405),  # the backlog and the 5 redriven rows: nothing lost
        ("failed", 1),
    ]
