"""kafka.sample_head and kafka.lag_progress on librdkafka's mock cluster (a real Kafka protocol peer).

The head sample must read exactly the messages the group has not consumed, report metadata only,
and leave the group's committed offsets where they were; lag_progress must tell a stuck partition
(committed offset frozen while it lags) from a slow one (moving, but the lag grows).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from runbook.actions import ActionContext, Connections, invoke
from runbook.actions.kafka.head import retry_count
from runbook.actions.kafka.models import LagResult, PartitionLag
from runbook.actions.kafka.progress import compare
from runbook.core.settings import Settings
from tests.actions.test_kafka import committed

try:
    from tests.support.kafka_mock import MockKafkaCluster, consume_and_commit, produce_messages
except ImportError:  # pytest put tests/ (not the repo root) on sys.path
    from support.kafka_mock import MockKafkaCluster, consume_and_commit, produce_messages


@pytest.fixture
def ctx_for(settings: Settings) -> Iterator:
    made: list[Connections] = []

    def make(bootstraps: str, timeout: float = 20.0) -> ActionContext:
        conns = Connections(dataclasses.replace(settings, kafka_bootstrap_servers=bootstraps))
        made.append(conns)
        return ActionContext(conns, deadline=time.monotonic() + timeout, run_id="test-run")

    yield make
    for conns in made:
        conns.close()


def produce_with_headers(
    bootstraps: str, topic: str, partition: int, count: int, retries: int | None
) -> None:
    producer = Producer({"bootstrap.servers": bootstraps, "acks": "all"})
    for i in range(count):
        headers = [("trace-id", b"secret-trace-value")]
        if retries is not None:
            headers.append(("retry-count", str(retries).encode()))
        producer.produce(
            topic, key=b"k" * 7, value=b"BODY-SECRET-" + str(i).encode(), partition=partition, headers=headers
        )
    assert producer.flush(15) == 0


def test_head_sample_reads_the_unconsumed_head_without_committing(ctx_for, registry, unique) -> None:
    with MockKafkaCluster(brokers=3) as kafka:
        topic, group = f"head-{unique}", f"g-{unique}"
        kafka.topic_create(topic, 3)
        produce_messages(kafka.bootstraps, topic, {0: 10, 1: 10})
        produce_with_headers(kafka.bootstraps, topic, 1, 5, retries=4)  # offsets 10..14 of partition 1
        produce_messages(kafka.bootstraps, topic, {2: 4})
        consume_and_commit(kafka.bootstraps, group, topic, {0: 8, 1: 10, 2: 4})  # partition 2 has no lag

        result = invoke(
            registry["kafka.sample_head"],
            ctx_for(kafka.bootstraps),
            {"group": group, "topics": [topic], "per_partition": 3},
        )
        rows = [(m.partition, m.offset) for m in result.messages]
        assert rows == [(0, 8), (0, 9), (1, 10), (1, 11), (1, 12)]  # the head of what is not consumed
        assert [p.partition for p in result.partitions] == [0, 1]
        by_offset = {(m.partition, m.offset): m for m in result.messages}
        assert by_offset[(1, 10)].retry_count == 4 and by_offset[(0, 8)].retry_count is None
        assert by_offset[(1, 10)].key_size == 7 and by_offset[(1, 10)].headers == ["retry-count", "trace-id"]
        assert result.max_retry_count == 4 and result.retried == 3
        assert all(m.age_seconds is not None and m.age_seconds < 120 for m in result.messages)
        dumped = result.model_dump_json()
        assert "BODY-SECRET" not in dumped and "secret-trace-value" not in dumped
        assert committed(kafka.bootstraps, group, topic, 3) == {0: 8, 1: 10, 2: 4}  # nothing committed

        bounded = invoke(
            registry["kafka.sample_head"],
            ctx_for(kafka.bootstraps),
            {"group": group, "topics": [topic], "per_partition": 5, "max_messages": 3},
        )
        assert bounded.count == 3 and not bounded.complete

        # the same evidence through the generic queue.sample (backlog-triage's system=kafka)
        sample = invoke(
            registry["queue.sample"],
            ctx_for(kafka.bootstraps),
            {"system": "kafka", "queue": topic, "group": group, "count": 2},
        ).model_dump()
        assert [m["id"] for m in sample["messages"]] == ["0:8", "1:10"]  # count 2, spread over partitions
        assert sample["messages"][1]["attempts"] == 4
        assert committed(kafka.bootstraps, group, topic, 3) == {0: 8, 1: 10, 2: 4}


def test_lag_progress_tells_stuck_from_slow(ctx_for, registry, unique) -> None:
    with MockKafkaCluster(brokers=3) as kafka:
        topic, group = f"prog-{unique}", f"g-{unique}"
        kafka.topic_create(topic, 2)
        produce_messages(kafka.bootstraps, topic, {0: 30, 1: 30})
        consume_and_commit(kafka.bootstraps, group, topic, {0: 10, 1: 5})

        def slow_consumer() -> None:  # partition 0 moves by 2 while 10 more arrive; partition 1 frozen
            time.sleep(0.3)
            produce_messages(kafka.bootstraps, topic, {0: 10})
            c = Consumer(
                {"bootstrap.servers": kafka.bootstraps, "group.id": group, "enable.auto.commit": False}
            )
            try:
                c.commit(offsets=[TopicPartition(topic, 0, 12)], asynchronous=False)
            finally:
                c.close()

        t = threading.Thread(target=slow_consumer)
        t.start()
        try:
            result = invoke(
                registry["kafka.lag_progress"],
                ctx_for(kafka.bootstraps),
                {"group": group, "topics": [topic], "window": 2.5},
            )
        finally:
            t.join(10)
        states = {p.partition: p.state for p in result.partitions}
        assert states == {0: "slow", 1: "stuck"}, result.summary
        assert result.state == "stuck" and result.stuck == [f"{topic}[1]"] and result.slow == [f"{topic}[0]"]
        p0 = next(p for p in result.partitions if p.partition == 0)
        assert (p0.consumed, p0.lag_before, p0.lag_after) == (2, 20, 28)
        assert result.produced == 10 and result.consumed == 2
        assert any("did not move" in e and f"{topic}[1]@5" in e for e in result.evidence)


def _lag(rows: list[tuple[int, int, int]]) -> LagResult:
    parts = [
        PartitionLag(topic="t", partition=p, committed=c, high_watermark=h, lag=h - c) for p, c, h in rows
    ]
    total = sum(p.lag or 0 for p in parts)
    return LagResult(
        summary="",
        group="g",
        topics=["t"],
        partition_count=len(parts),
        total_lag=total,
        max_lag=max(p.lag or 0 for p in parts),
        partitions=parts,
        top_lagging=[],
        partitions_without_commit=0,
        partitions_with_errors=0,
        round_trips=0,
        calls=[],
    )


def test_compare_states_catching_up_and_caught_up() -> None:
    r = compare(_lag([(0, 0, 100), (1, 90, 100)]), _lag([(0, 50, 110), (1, 100, 100)]), 10.0)
    assert [p.state for p in r.partitions] == ["catching_up", "caught_up"]
    assert r.state == "catching_up" and r.consume_rate == 6.0 and r.produce_rate == 1.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("retry-count", b"3")], 3),
        ([("x-retry", b"\x00\x00\x00\x07")], 7),
        ([("kafka_deliveryAttempt", b"\x00\x00\x00\x02"), ("x-retries", b"5")], 5),
        ([("trace-id", b"12"), ("retry-count", None)], None),
        ([("retry-count", b"not a number, longer than eight bytes")], None),
    ],
)
def test_retry_count_from_headers(headers: list[tuple[str, bytes | None]], expected: int | None) -> None:
    assert retry_count(headers) == expected
