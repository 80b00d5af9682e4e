"""backlog-triage against the incidents issue 14 lists, one small real incident each (RabbitMQ with
pika, BullMQ with the ``bullmq`` package, a table queue and a database lock with psycopg).

Each test asserts the verdict and its evidence and, where a move is proposed and approved, that it
moved exactly the poison ids and that no message id was lost or duplicated (every id is counted
after the run: completed by the consumer, still queued, quarantined or failed).

Why these and not only the per-system ones in ``test_triage_systems``: the rules must tell apart
incidents that look alike from the counters (a requeue loop vs slow processing, a retry storm vs
poison, a producer storm vs slow consumers, a database lock vs slow consumers)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

from runbook.core.settings import Settings
from tests.actions.test_queue_bullmq import redis_available  # noqa: F401  (fixture)
from tests.e2e.conftest import AMQP, Approver, connect, declare, delete_queues, mgmt, run_playbook
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
