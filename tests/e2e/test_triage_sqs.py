"""backlog-triage end to end with ``system=sqs`` (issue 18): moto in server mode on loopback, the
incident made with boto3, the run through the real engine, gate and Prefect flow.

Like tests/e2e/test_triage_systems.py, a team without Kubernetes or PostgreSQL checks: the verdict
must come from the queue alone. SQS knows no consumers, so an outage is read from the queue
(nothing delivered, nothing in flight, nothing completes) and poison from the receive counts the
messages carried before the triage looked (its own receives subtracted)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, run_playbook
from tests.support.sqs import KEY, REGION, SECRET, SQSBench, moto_sqs  # noqa: F401  (fixture)
from tests.support.waiting import wait_until

TEAM = {"check_kubernetes": False, "check_database": False, "progress_window": 5, "depth_threshold": 10}


@pytest.fixture
def sqs_env(e2e_env: Settings, moto_sqs: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQSBench]:  # noqa: F811
    """The run's SQS settings come from the environment, as in production (AWS_ENDPOINT_URL ...)."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_sqs,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    bench = SQSBench(moto_sqs)
    yield bench
    bench.close()


def make_queues(b: SQSBench) -> dict[str, Any]:
    """The work queue redrives to its DLQ only after 1000 receives (a team that retries long), so
    the poison is still in the queue, circulating, when the alert fires."""
    queue, dlq, aside = f"orders-{b.tag}", f"orders-{b.tag}-dlq", f"orders-{b.tag}-quarantine"
    b.create(dlq)
    b.create(queue, max_receive_count=1000, dlq=dlq)
    b.create(aside)
    return {**TEAM, "system": "sqs", "queue": queue, "quarantine_queue": aside}


class Consumer(threading.Thread):
    """A worker that completes every message but one: that one fails each time and is given back
    (visibility 0), so SQS counts another receive - the evidence the triage must find."""

    def __init__(self, b: SQSBench, queue: str, poison: str) -> None:
        super().__init__(daemon=True)
        self.b, self.url, self.poison = b, b.url(queue), poison
        self.stop, self.done = threading.Event(), set[str]()

    def run(self) -> None:
        sqs = self.b.client
        while not self.stop.is_set():
            got = sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=2, VisibilityTimeout=30)
            for m in got.get("Messages", []):
                if m["MessageId"] == self.poison:
                    sqs.change_message_visibility(
                        QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
                    self.done.add(m["MessageId"])
            self.stop.wait(0.3)


def test_sqs_poison_message_among_healthy_ones(e2e_env: Settings, sqs_env: SQSBench) -> None:
    b = sqs_env
    params = make_queues(b)
    (poison,) = b.send(params["queue"], 1, prefix="poison")
    b.receive_times(params["queue"], poison, 5)  # it failed five times before the alert
    healthy = b.send(params["queue"], 60)
    consumer = Consumer(b, params["queue"], poison)
    consumer.start()
    try:
        wait_until(lambda: len(consumer.done) >= 2 or None, 10, "work flowing")
        with Approver(e2e_env, "e2e-sqs-poison", {"quarantine": "approve"}) as approver:
            result = run_playbook("backlog-triage", params, "e2e-sqs-poison")
    finally:
        consumer.stop.set()
        consumer.join(5)
    assert result.verdict == "poison_messages", result.text()
    assert f"{poison}: delivered" in result.output("classify")["evidence"]
    assert result.output("sample")["suspects"] == [poison]
    assert approver.request("quarantine").params["ids"] == [poison]
    assert result.output("quarantine")["ids"] == [poison]
    aside = b.drain(params["quarantine_queue"])
    assert [m["MessageAttributes"]["runbook_original_id"]["StringValue"] for m in aside.values()] == [poison]
    left = b.drain(params["queue"])
    assert poison not in left and poison not in consumer.done
    assert sorted(set(left) | consumer.done) == sorted(healthy)  # exactly the poison moved, nothing lost


def test_sqs_consumer_outage(e2e_env: Settings, sqs_env: SQSBench) -> None:
    b = sqs_env
    params = make_queues(b)
    ids = b.send(params["queue"], 30)
    result = run_playbook("backlog-triage", params, "e2e-sqs-outage")
    assert result.verdict == "consumer_outage", result.text()
    evidence = result.output("classify")["evidence"]
    assert "unknown consumers on sqs" in evidence and "nothing takes them" in evidence
    assert result.output("sample")["suspects"] == []  # the triage's own receives are no evidence
    assert b.counts(params["queue"]) == (30, 0)  # every sampled message given back
    assert sorted(b.drain(params["queue"])) == sorted(ids)


class PacedConsumer(threading.Thread):
    """A healthy worker that completes one message about every ``seconds_each`` and never fails."""

    def __init__(self, b: SQSBench, queue: str, seconds_each: float) -> None:
        super().__init__(daemon=True)
        self.b, self.url, self.seconds_each = b, b.url(queue), seconds_each
        self.stop, self.done = threading.Event(), set[str]()

    def run(self) -> None:
        sqs = self.b.client
        while not self.stop.is_set():
            got = sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, VisibilityTimeout=30)
            for m in got.get("Messages", []):
                self.stop.wait(self.seconds_each)
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
                self.done.add(m["MessageId"])


def test_sqs_slow_processing_healthy_consumer(e2e_env: Settings, sqs_env: SQSBench) -> None:
    """A consumer completing ~4 msg/s (below min_ack_rate 10) and never failing is slow processing:
    not poison (no message carries receives), not an outage (messages are taken and deleted).

    A producer storm and a retry storm are not told apart on SQS: SQS keeps no delete or redelivery
    counter outside CloudWatch, and a send in the same poll hides a delete in the depth, so
    completions are a lower bound (``actions/sqs/system.py``) - both read as slow processing."""
    b = sqs_env
    params = make_queues(b)
    # 400 at ~4 msg/s: still a backlog after 100 s. With 120, one CI run's snapshot step took 65 s
    # (an SQS call stalled on the shared moto server) and the queue was empty before the triage
    # looked, so it rightly said "no backlog".
    ids = b.send(params["queue"], 400)
    consumer = PacedConsumer(b, params["queue"], 0.25)
    consumer.start()
    try:
        wait_until(lambda: len(consumer.done) >= 3 or None, 20, "work flowing")
        with Approver(e2e_env, "e2e-sqs-slow", {}) as approver:
            result = run_playbook("backlog-triage", params, "e2e-sqs-slow")
    finally:
        consumer.stop.set()
        consumer.join(5)
    assert result.verdict == "slow_processing", result.text()
    evidence = result.output("classify")["evidence"]
    assert "with no poison evidence" in evidence and "(< 10" in evidence, evidence
    assert result.output("sample")["suspects"] == []
    facts = result.output("facts")["values"]
    assert 0 < facts["ack_rate"] < 10, facts
    assert approver.steps() == []
    left = b.drain(params["queue"])
    assert sorted(set(left) | consumer.done) == sorted(ids) and not set(left) & consumer.done  # nothing lost
