"""backlog-triage on Kafka for the rate verdicts (issue 14): slow processing and a producer storm.

The incidents are made with confluent-kafka against librdkafka's mock cluster: a consumer that
reads and commits at a fixed pace (committed-offset movement is Kafka's "completed"), and for the
storm a producer far faster than it. Kafka has no redelivery (a consumer that fails re-reads from its
committed offset, which shows as no commit progress, not as retries), so a retry storm is not a
Kafka verdict; poison and consumer outage are in ``test_triage_systems``, a cleared backlog in
``test_triage_outages``. Each test asserts the verdict, its evidence in the posted finding, and that
no offset moved through the triage (offsets move only through ``kafka.reset_offsets``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from runbook_devtools.kafka_mock.clients import produce_messages
from runbook_devtools.kafka_mock.cluster import MockKafkaCluster

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, run_playbook
from tests.e2e.test_triage_outages import TEAM, finding, nothing_moved
from tests.support.waiting import wait_until


class PacedConsumer(threading.Thread):
    """Reads ``topic`` from offset 0 of every partition (``assign()``, no group membership) and
    commits each message after ``seconds_each``: a healthy consumer at a fixed pace."""

    def __init__(self, bootstraps: str, group: str, topic: str, partitions: int, seconds_each: float) -> None:
        super().__init__(daemon=True)
        self.bootstraps, self.group, self.topic = bootstraps, group, topic
        self.partitions, self.seconds_each = partitions, seconds_each
        self.stop = threading.Event()
        self.committed = 0
        self.errors: list[str] = []

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {"bootstrap.servers": self.bootstraps, "group.id": self.group, "enable.auto.commit": False}
        )
        try:
            consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
            while not self.stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    self.errors.append(str(msg.error()))
                    continue
                time.sleep(self.seconds_each)
                consumer.commit(message=msg, asynchronous=False)
                self.committed += 1
        finally:
            consumer.close()


class PacedProducer(threading.Thread):
    """Produces about ``per_second`` small messages a second, round robin over the partitions."""

    def __init__(self, bootstraps: str, topic: str, partitions: int, per_second: float) -> None:
        super().__init__(daemon=True)
        self.bootstraps, self.topic, self.partitions = bootstraps, topic, partitions
        self.per_second = per_second
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstraps, "linger.ms": 5})
        while not self.stop.is_set():
            producer.produce(self.topic, value=b"{}", partition=self.sent % self.partitions)
            producer.poll(0)
            self.sent += 1
            time.sleep(1 / self.per_second)
        producer.flush(10)


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MockKafkaCluster, str, str]]:
    tag = uuid.uuid4().hex[:8]
    with MockKafkaCluster(brokers=1) as cluster:
        topic, group = f"orders-{tag}", f"workers-{tag}"
        cluster.topic_create(topic, 2)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", cluster.bootstraps)
        yield cluster, topic, group


def kafka_params(topic: str, group: str) -> dict[str, Any]:
    return {**TEAM, "system": "kafka", "queue": topic, "kafka_group": group, "progress_window": 6}


def test_kafka_slow_processing_healthy_consumer(
    e2e_env: Settings, kafka: tuple[MockKafkaCluster, str, str]
) -> None:
    cluster, topic, group = kafka
    produce_messages(cluster.bootstraps, topic, {0: 200, 1: 200})
    consumer = PacedConsumer(cluster.bootstraps, group, topic, 2, 0.25)  # ~4 msg/s, below 10
    consumer.start()
    try:
        wait_until(lambda: consumer.committed >= 3, 30, "the consumer committing")
        with Approver(e2e_env, "e2e-kafka-slow", {}) as approver:
            result = run_playbook("backlog-triage", kafka_params(topic, group), "e2e-kafka-slow")
    finally:
        consumer.stop.set()
        consumer.join(10)
    assert consumer.errors == []
    assert result.verdict == "slow_processing", result.text()
    evidence = finding(result, "slow_processing")
    assert "with no poison evidence" in evidence and "(< 10" in evidence, evidence
    facts = result.output("facts")["values"]
    assert 0 < facts["ack_rate"] < 10 and facts["completed"] > 0, facts
    nothing_moved(result, approver)


def test_kafka_producer_storm_consumer_healthy(
    e2e_env: Settings, kafka: tuple[MockKafkaCluster, str, str]
) -> None:
    cluster, topic, group = kafka
    produce_messages(cluster.bootstraps, topic, {0: 100, 1: 100})
    consumer = PacedConsumer(cluster.bootstraps, group, topic, 2, 0.02)  # ~30-40 msg/s, healthy
    producer = PacedProducer(cluster.bootstraps, topic, 2, 400)  # far faster than it
    consumer.start()
    producer.start()
    try:
        wait_until(lambda: consumer.committed >= 20 and producer.sent >= 100, 30, "both running")
        with Approver(e2e_env, "e2e-kafka-storm", {}) as approver:
            result = run_playbook("backlog-triage", kafka_params(topic, group), "e2e-kafka-storm")
    finally:
        producer.stop.set()
        consumer.stop.set()
        producer.join(15)
        consumer.join(10)
    assert consumer.errors == []
    assert result.verdict == "producer_storm", result.text()
    evidence = finding(result, "producer_storm")
    assert "publishers at" in evidence and "consumers healthy" in evidence, evidence
    facts = result.output("facts")["values"]
    assert facts["storm_factor"] >= 2 and facts["ack_rate"] >= 10, facts
    nothing_moved(result, approver)
