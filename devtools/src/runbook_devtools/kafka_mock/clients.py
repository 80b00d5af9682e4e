"""Cluster helpers for tests: produce to and consume-and-commit from a (mock) cluster with the real
confluent-kafka clients."""

from __future__ import annotations

from .bindings import MockClusterError


def produce_messages(
    bootstraps: str, topic: str, per_partition: dict[int, int], *, timestamp_ms: int | None = None
) -> None:
    """Produce ``per_partition[p]`` small messages to each partition (acks=all) and wait for them.

    ``timestamp_ms`` stamps message i of a partition with ``timestamp_ms + i`` (for time-based resets).
    """
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstraps, "acks": "all", "linger.ms": 5})
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for partition, count in per_partition.items():
        for i in range(count):
            kwargs: dict[str, object] = {"partition": partition, "on_delivery": delivered}
            if timestamp_ms is not None:
                kwargs["timestamp"] = timestamp_ms + i
            producer.produce(topic, value=f"m{partition}-{i}".encode(), **kwargs)
            producer.poll(0)
    left = producer.flush(30)
    if left or failures:
        raise MockClusterError(f"produce to {topic}: {left} undelivered, errors {failures[:3]}")


def consume_and_commit(bootstraps: str, group: str, topic: str, per_partition: dict[int, int]) -> None:
    """Read exactly ``per_partition[p]`` messages from the start of each partition as ``group`` using
    ``assign()`` (no group membership, like a standalone consumer), commit what was read, close.
    """
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstraps, "group.id": group, "enable.auto.commit": False})
    try:
        wanted = {p: n for p, n in per_partition.items() if n > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        seen = dict.fromkeys(wanted, 0)
        deadline = time.monotonic() + 30
        while any(seen[p] < wanted[p] for p in wanted) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            p = msg.partition()
            if seen[p] < wanted[p]:
                seen[p] += 1
                if seen[p] == wanted[p]:
                    consumer.pause([TopicPartition(topic, p)])
        if seen != wanted:
            raise MockClusterError(f"consumed {seen}, wanted {wanted}")
        consumer.commit(offsets=[TopicPartition(topic, p, n) for p, n in wanted.items()], asynchronous=False)
    finally:
        consumer.close()
