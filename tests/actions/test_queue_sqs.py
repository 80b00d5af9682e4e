"""queue.* with system sqs against moto in server mode on loopback, incidents made with boto3."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from runbook.actions import ActionContext, ActionError, ActionRegistry, Connections, describe, invoke
from runbook.actions.context import BackendUnavailable
from runbook.actions.sqs.client import sqs_of
from runbook.core.settings import Settings
from tests.support.sqs import SQSBench, free_port, moto_sqs, sqs_settings  # noqa: F401  (fixture)
from tests.support.waiting import wait_until


@pytest.fixture
def bench(moto_sqs: str, unique: str) -> Iterator[SQSBench]:  # noqa: F811
    b = SQSBench(moto_sqs, unique)
    yield b
    b.close()


@pytest.fixture
def sqs(settings: Settings, moto_sqs: str) -> Settings:  # noqa: F811
    return sqs_settings(settings, moto_sqs)


def ctx_of(settings: Settings) -> ActionContext:
    return ActionContext(Connections(settings), deadline=time.monotonic() + 30)


def call(registry: ActionRegistry, settings: Settings, name: str, params: dict[str, Any]) -> Any:
    return invoke(registry[name], ctx_of(settings), params).model_dump()


def queues(b: SQSBench, max_receive_count: int = 10) -> dict[str, str]:
    """A work queue with a redrive policy, its DLQ and a quarantine queue (unique names)."""
    names = {"queue": f"work-{b.tag}", "dlq": f"work-{b.tag}-dlq", "quarantine_queue": f"work-{b.tag}-q"}
    b.create(names["dlq"])
    b.create(names["queue"], max_receive_count, names["dlq"])
    b.create(names["quarantine_queue"])
    return {"system": "sqs", "queue": names["queue"], "quarantine_queue": names["quarantine_queue"]}


def test_stats_from_attributes_and_the_redrive_policy_dlq(bench, registry, sqs) -> None:
    q = queues(bench)
    bench.send(q["queue"], 12)
    bench.client.send_message(QueueUrl=bench.url(q["queue"]), MessageBody="later", DelaySeconds=60)
    bench.client.receive_message(QueueUrl=bench.url(q["queue"]), MaxNumberOfMessages=2, VisibilityTimeout=60)
    bench.send(f"{q['queue']}-dlq", 3)
    stats = call(registry, sqs, "queue.stats", {**q, "dlq": "not-this-one"})
    assert (stats["depth"], stats["ready"], stats["in_flight"], stats["delayed"]) == (13, 10, 2, 1)
    assert stats["dlq_depth"] == 3 and stats["consumers"] is None  # the policy's DLQ, not `dlq`
    assert stats["details"]["dlq"] == f"{q['queue']}-dlq" and stats["details"]["max_receive_count"] == 10
    assert "unknown consumers" in stats["summary"]


def test_sample_names_the_poison_and_never_creates_evidence(bench, registry, sqs) -> None:
    q = queues(bench)
    (poison,) = bench.send(q["queue"], 1, prefix="poison")
    bench.receive_times(q["queue"], poison, 4)  # a consumer failed on it four times
    innocents = bench.send(q["queue"], 15)
    for _ in range(4):  # repeated looks (one run's retries, later runs of this process) add nothing
        sample = call(registry, sqs, "queue.sample", {**q, "count": 16, "min_attempts": 3})
        assert sample["count"] == 16 and sample["suspects"] == [poison], sample
        assert sample["suspect_evidence"] == [f"{poison}: delivered 4 times"]
        rows = {m["id"]: m for m in sample["messages"]}
        assert rows[poison]["delivery_count"] == 4 and rows[poison]["first_received_seconds_ago"] is not None
        assert all(rows[i]["delivery_count"] == 0 for i in innocents)
        assert "body-" not in json.dumps(sample)  # never a body
    assert bench.counts(q["queue"]) == (16, 0)  # every message given back at once, none consumed
    seen = bench.client.receive_message(
        QueueUrl=bench.url(q["queue"]), MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"]
    )["Messages"][0]
    # SQS itself counts our receives (4 + 4 looks + this one); the sample subtracted them
    assert seen["MessageId"] == poison and seen["Attributes"]["ApproximateReceiveCount"] == "9"


def test_progress_sees_a_consumer_draining_and_an_outage(bench, registry, sqs) -> None:
    q = queues(bench)
    bench.send(q["queue"], 40)
    outage = call(registry, sqs, "queue.progress", {**q, "window": 1})
    assert outage["verdict"] == "stalled" and outage["delivered"] == 0 and outage["in_flight"] == 0
    stop = threading.Event()

    def consume() -> None:
        url = bench.url(q["queue"])
        while not stop.is_set():
            for m in bench.client.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", []):
                bench.client.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            time.sleep(0.1)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        progress = call(registry, sqs, "queue.progress", {**q, "window": 2})
    finally:
        stop.set()
        t.join(5)
    assert progress["verdict"] == "draining" and progress["completed"] >= 5, progress
    assert progress["delivered"] >= progress["completed"]


def test_quarantine_moves_exactly_the_poison_ids_and_nothing_else(bench, registry, sqs) -> None:
    q = queues(bench)
    innocents = bench.send(q["queue"], 20)
    poison = bench.send(q["queue"], 2, prefix="poison")
    innocents += bench.send(q["queue"], 10)
    text = describe(registry["queue.quarantine"], ctx_of(sqs), {**q, "ids": poison})
    assert "exactly 2" in text and poison[0] in text and "after the send succeeded" in text
    params = {**q, "ids": [*poison, "no-such-id"], "reason": "KeyError"}
    moved = call(registry, sqs, "queue.quarantine", params)
    assert sorted(moved["ids"]) == sorted(poison) and moved["missing"] == ["no-such-id"]
    assert moved["remaining"] == 30 and moved["destination"] == q["quarantine_queue"]
    assert moved["seconds"] < 5
    after = call(registry, sqs, "queue.sample", {**q, "count": 30, "min_attempts": 1})
    assert after["count"] == 30 and after["suspects"] == []  # the scan's receives are no evidence either
    aside = bench.drain(q["quarantine_queue"])
    originals = [m["MessageAttributes"]["runbook_original_id"]["StringValue"] for m in aside.values()]
    assert sorted(originals) == sorted(poison)
    assert {m["MessageAttributes"]["kind"]["StringValue"] for m in aside.values()} == {"poison"}
    assert all(m["Body"].startswith('{"job": "poison-') for m in aside.values())
    assert sorted(bench.drain(q["queue"])) == sorted(innocents)  # nothing else moved, nothing lost


def test_quarantine_refuses_bad_input_clearly(bench, registry, sqs) -> None:
    q = queues(bench)
    with pytest.raises(ActionError, match="bad SQS message id"):
        call(registry, sqs, "queue.quarantine", {**q, "ids": ["../x"]})
    with pytest.raises(ActionError, match="must not be the queue itself"):
        call(registry, sqs, "queue.quarantine", {**q, "quarantine_queue": q["queue"], "ids": ["a-1"]})
    with pytest.raises(ActionError, match="not found"):
        call(registry, sqs, "queue.quarantine", {**q, "quarantine_queue": "missing-q", "ids": ["a-1"]})
    with pytest.raises(ActionError, match="bad SQS queue name"):
        call(registry, sqs, "queue.stats", {**q, "queue": "a/b"})


def test_canary_redrive_then_the_rest_loses_nothing(bench, registry, sqs) -> None:
    q = queues(bench, max_receive_count=2)
    dead = bench.send(q["queue"], 12, prefix="dead")
    url = bench.url(q["queue"])
    for _ in range(3):  # every message received twice and never deleted: SQS dead-letters them
        got = bench.client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        while got.get("Messages"):
            got = bench.client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    wait_until(lambda: bench.counts(f"{q['queue']}-dlq") == (12, 0) or None, 10, "12 dead-lettered")
    assert call(registry, sqs, "queue.stats", q)["dlq_depth"] == 12
    text = describe(registry["queue.redrive"], ctx_of(sqs), {**q, "count": 5})
    assert "up to 5" in text and f"{q['queue']}-dlq" in text
    canary = call(registry, sqs, "queue.redrive", {**q, "count": 5})
    assert canary["moved"] == 5 and canary["remaining"] == 7 and bench.counts(q["queue"]) == (5, 0)
    rest = call(registry, sqs, "queue.redrive", q)
    assert rest["moved"] == 7 and rest["remaining"] == 0
    assert "StartMessageMoveTask unavailable" in rest["warnings"][0]  # moto has none: the fallback ran
    back = bench.drain(q["queue"])
    jobs = sorted(json.loads(m["Body"])["job"] for m in back.values())
    assert jobs == sorted(f"dead-{i}" for i in range(12))
    assert len(dead) == 12 and bench.counts(f"{q['queue']}-dlq") == (0, 0)


def test_redrive_without_a_dlq_is_a_clear_error(bench, registry, sqs) -> None:
    name = f"plain-{bench.tag}"
    bench.create(name)
    with pytest.raises(ActionError, match="no redrive policy DLQ"):
        call(registry, sqs, "queue.redrive", {"system": "sqs", "queue": name, "count": 1})


def test_a_bad_endpoint_fails_with_the_backend_and_cause(registry, settings) -> None:
    bad = sqs_settings(settings, f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        call(registry, bad, "queue.stats", {"system": "sqs", "queue": "orders"})
    assert str(err.value).startswith("sqs: SQS unreachable at http://127.0.0.1:") and err.value.transient
    assert time.monotonic() - started < 10
    secret = dataclasses.replace(bad, aws_secret_access_key="s3cr3t-value")
    with pytest.raises(ActionError) as err2:
        call(registry, secret, "queue.stats", {"system": "sqs", "queue": "orders"})
    assert "s3cr3t-value" not in str(err2.value)


def test_a_missing_queue_is_named(registry, sqs) -> None:
    with pytest.raises(ActionError, match=r"SQS queue 'no-such-queue' not found"):
        call(registry, sqs, "queue.stats", {"system": "sqs", "queue": "no-such-queue"})


def test_fifo_sample_and_quarantine_keep_the_message_group(bench, registry, sqs) -> None:
    """In a FIFO queue the poison blocks its group from the head; the quarantine copy keeps the
    group id and uses the original id for deduplication (a retried move is not duplicated)."""
    names = {"queue": f"fifo-{bench.tag}.fifo", "quarantine_queue": f"fifo-{bench.tag}-q.fifo"}
    for name in names.values():
        url = bench.client.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
        bench.urls.append(url)
    url = bench.url(names["queue"])
    sent = [
        bench.client.send_message(
            QueueUrl=url, MessageBody=f"b-{i}", MessageGroupId=f"g{i % 2}", MessageDeduplicationId=f"d-{i}"
        )["MessageId"]
        for i in range(10)
    ]
    poison = sent[0]
    bench.receive_times(names["queue"], poison, 3)
    q = {"system": "sqs", **names}
    sample = call(registry, sqs, "queue.sample", {**q, "count": 20})
    assert sample["suspects"] == [poison] and sample["count"] == 10, sample
    assert {m["type"] for m in sample["messages"]} == {"g0", "g1"}  # the message group
    moved = call(registry, sqs, "queue.quarantine", {**q, "ids": [poison]})
    assert moved["ids"] == [poison] and moved["remaining"] == 9
    aside = bench.client.receive_message(
        QueueUrl=bench.url(names["quarantine_queue"]), MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert [m["Body"] for m in aside] == ["b-0"] and aside[0]["Attributes"]["MessageGroupId"] == "g0"
    assert sorted(m["Body"] for m in bench.drain(names["queue"]).values()) == sorted(
        f"b-{i}" for i in range(1, 10)
    )


def test_large_messages_are_copied_one_by_one_and_whole(bench, registry, sqs) -> None:
    """Two 150 KB bodies exceed one SendMessageBatch request: each goes alone, byte for byte."""
    q = queues(bench)
    url = bench.url(q["queue"])
    big = [bench.client.send_message(QueueUrl=url, MessageBody=c * 150_000)["MessageId"] for c in "ab"]
    small = bench.send(q["queue"], 3)
    moved = call(registry, sqs, "queue.quarantine", {**q, "ids": big})
    assert sorted(moved["ids"]) == sorted(big) and moved["warnings"] == []
    aside = bench.drain(q["quarantine_queue"])
    assert sorted(m["Body"] for m in aside.values()) == ["a" * 150_000, "b" * 150_000]
    assert sorted(bench.drain(q["queue"])) == sorted(small)


def test_the_rest_goes_back_by_start_message_move_task_where_the_server_has_it(bench, registry, sqs) -> None:
    """moto has no StartMessageMoveTask, so AWS's answer to that one call is a recorded response
    (the shape of the SQS API reference: a TaskHandle) served by a botocore before-call hook;
    every other call of the redrive still goes to moto."""
    q = queues(bench)
    bench.send(f"{q['queue']}-dlq", 4)
    ctx = ctx_of(sqs)
    sent: dict[str, Any] = {}

    def aws(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        sent.update(json.loads(params["body"]))
        handle = "eyJ0YXNrSWQiOiJkYTFiMmZiMC0xMjM0IiwicXVldWVBcm4iOiJhcm4ifQ=="
        return SimpleNamespace(status_code=200, headers={}), {"TaskHandle": handle}

    sqs_of(ctx).client.meta.events.register("before-call.sqs.StartMessageMoveTask", aws)
    rest = invoke(registry["queue.redrive"], ctx, q).model_dump()
    assert rest["moved"] == 0 and rest["remaining"] == 4  # asynchronous: nothing claimed as moved
    assert (
        rest["warnings"][0].startswith("StartMessageMoveTask eyJ0YXNrSWQi")
        and "asynchronously" in rest["warnings"][0]
    )
    assert sent["SourceArn"].endswith(f":{q['queue']}-dlq") and sent["DestinationArn"].endswith(
        f":{q['queue']}"
    )


def test_a_message_dead_lettered_between_two_reads_is_never_a_completion(bench, registry, sqs) -> None:
    """The queue and its DLQ are two reads. Every message dead-letters right after the window's
    first read of the queue and before any read of the DLQ (a consumer failing them all at the
    moment the triage starts): nothing was completed, and all 20 failed. Read in the same order
    at the start as at every poll, the baseline held the DLQ's 20 and the queue's 20, and the
    window called the 20 drops completions."""
    q = queues(bench, max_receive_count=1)
    bench.send(q["queue"], 20)
    url = bench.url(q["queue"])
    held: list[str] = []  # every message received once, then visible again: the next receive dead-letters it
    for _ in range(20):
        if len(held) == 20:
            break
        got = bench.client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)
        held += [m["ReceiptHandle"] for m in got.get("Messages", [])]
    for handle in held:
        bench.client.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    ctx = ctx_of(sqs)
    state: dict[str, Any] = {"queue_read": False, "moved": 0}

    def before(params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params["body"] or "{}")
        state["queue_read"] = body.get("QueueUrl") == url and "ApproximateNumberOfMessages" in (
            body.get("AttributeNames") or []
        )

    def after(**_: Any) -> None:
        if state["queue_read"] and not state["moved"]:
            bench.client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
            state["moved"] = 20 - sum(
                int(v)
                for v in bench.client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"].values()
            )

    events = sqs_of(ctx).client.meta.events
    events.register("before-call.sqs.GetQueueAttributes", before)
    events.register("after-call.sqs.GetQueueAttributes", after)
    progress = invoke(registry["queue.progress"], ctx, {**q, "window": 1}).model_dump()
    assert state["moved"] == 20  # the move happened, inside the window's reads
    assert (progress["completed"], progress["failed"]) == (0, 20), progress
    assert progress["verdict"] == "stalled" and progress["depth_after"] == 0  # was "draining"


def test_progress_counts_dead_lettering_as_failed_not_completed(bench, registry, sqs) -> None:
    q = queues(bench, max_receive_count=1)
    bench.send(q["queue"], 20)
    stop = threading.Event()

    def fail_everything() -> None:  # receives and never deletes: SQS dead-letters on the next receive
        url = bench.url(q["queue"])
        while not stop.is_set():
            bench.client.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=0)
            time.sleep(0.1)

    t = threading.Thread(target=fail_everything, daemon=True)
    t.start()
    try:
        progress = call(registry, sqs, "queue.progress", {**q, "window": 2})
    finally:
        stop.set()
        t.join(5)
    assert progress["completed"] == 0 and progress["failed"] >= 4, progress
    assert progress["verdict"] == "stalled" and progress["delivered"] >= progress["failed"]
