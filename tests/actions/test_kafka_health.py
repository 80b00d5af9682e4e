"""kafka.cluster_health: live against the mock cluster, and against a real cluster's metadata shape.

The mock covers brokers going down (a down broker disappears from Metadata, as on a real cluster),
leadership moves and leaderless partitions. It never shrinks the ISR when a broker dies, so the
classic under-replicated signal (``len(isr) < len(replicas)``) cannot be produced by it: that path is
tested with metadata in the shape a real Kafka cluster answers after losing a broker (broker gone from
the broker list, ISR shrunk, leaders re-elected, a partition whose only in-sync replica died left with
leader -1). That shape is transcribed by hand from Kafka's Metadata response semantics, not recorded
from a live broker (none can be run on these machines), and it is replayed through the real action via
a client that answers ``list_topics`` with it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata

from runbook.actions import ActionContext, ActionRegistry, Connections, invoke
from runbook.actions.kafka.client import CONNECTION_KEY, KafkaClients
from runbook.actions.kafka.health import assess
from runbook.core.settings import Settings

try:
    from tests.support.kafka_mock import MockKafkaCluster, produce_messages
except ImportError:  # pytest put tests/ (not the repo root) on sys.path
    from support.kafka_mock import MockKafkaCluster, produce_messages


@pytest.fixture
def kafka() -> Iterator[MockKafkaCluster]:
    with MockKafkaCluster(brokers=3) as cluster:
        yield cluster


def ctx_for(settings: Settings, bootstraps: str, timeout: float = 15) -> ActionContext:
    conns = Connections(dataclasses.replace(settings, kafka_bootstrap_servers=bootstraps))
    return ActionContext(conns, deadline=time.monotonic() + timeout)


def test_healthy_cluster(
    kafka: MockKafkaCluster, settings: Settings, registry: ActionRegistry, unique: str
) -> None:
    kafka.topic_create(f"plans-{unique}", 6)
    kafka.topic_create(f"audit-{unique}", 2, replication_factor=2)
    result = invoke(
        registry["kafka.cluster_health"], ctx_for(settings, kafka.bootstraps), {"expected_brokers": 3}
    )
    assert result.ok, result.problems
    assert result.broker_count == 3 and [b["id"] for b in result.brokers] == [1, 2, 3]
    assert result.controller_id == 1
    assert result.topic_count == 2 and result.partition_count == 8
    assert result.under_replicated_count == result.offline_count == 0
    assert result.round_trips == 1
    assert result.summary.startswith("kafka healthy: 3 brokers, controller 1")


def test_broker_down_and_leadership_moved(
    kafka: MockKafkaCluster, settings: Settings, registry: ActionRegistry, unique: str
) -> None:
    topic = f"plans-{unique}"
    kafka.topic_create(topic, 6)
    produce_messages(kafka.bootstraps, topic, dict.fromkeys(range(6), 3))
    kafka.partition_set_leader(topic, 0, 2)
    kafka.broker_set_down(2)
    moved = kafka.move_leadership_off(2)  # what a controller would do
    kafka.partition_set_leader(topic, 5, -1)  # and one partition with no leader left at all

    result = invoke(
        registry["kafka.cluster_health"], ctx_for(settings, kafka.bootstraps), {"expected_brokers": 3}
    )
    assert not result.ok
    assert [b["id"] for b in result.brokers] == [1, 3]
    assert result.missing_brokers == [2]
    assert [(p["partition"], p["reason"]) for p in result.offline] == [(5, "no leader")]  # none left on 2
    # the mock keeps dead broker 2 in every ISR; the action still flags those partitions
    assert result.under_replicated_count == 6
    assert all("not live" in p["reason"] for p in result.under_replicated)
    assert any("broker(s) [2]" in p for p in result.problems)
    assert any("2 of 3 expected brokers" in p for p in result.problems)
    assert any("1 offline partition" in p for p in result.problems)
    assert moved >= 1

    # leadership still on the dead broker (no failover yet) counts as offline too
    kafka.broker_set_up(2)
    kafka.partition_set_leader(topic, 0, 2)
    kafka.partition_set_leader(topic, 5, 1)
    kafka.broker_set_down(2)
    result = invoke(registry["kafka.cluster_health"], ctx_for(settings, kafka.bootstraps), {})
    assert [(p["partition"], p["reason"]) for p in result.offline] == [(0, "leader 2 is not a live broker")]

    kafka.broker_set_up(2)
    result = invoke(
        registry["kafka.cluster_health"], ctx_for(settings, kafka.bootstraps), {"expected_brokers": 3}
    )
    assert result.ok, result.problems


# --- the shape a real cluster reports (the mock cannot) ----------------------------------------


def real_cluster_after_broker_2_died() -> ClusterMetadata:
    """Metadata as a real 3-broker Kafka cluster answers once broker 2's session expired.

    Hand-transcribed from Kafka's Metadata semantics (not recorded: no real broker runs here):
    broker 2 is gone from ``brokers``; the controller shrank the ISR of every partition it replicated;
    partitions it led were re-elected to the next in-sync replica; ``plans[3]``, whose only in-sync
    replica was broker 2 (unclean election disabled), is left with leader -1 and ISR [2];
    ``__consumer_offsets`` (rf 3) lost one replica as well.
    """
    md = ClusterMetadata()
    md.cluster_id, md.controller_id = "lKZ3a8cRS1u0q6n7mY0a1g", 3
    for bid, port in ((1, 9092), (3, 9094)):
        b = BrokerMetadata()
        b.id, b.host, b.port = bid, f"kafka-{bid}.kafka.svc", port
        md.brokers[bid] = b
    layout = {
        "plans": [
            (1, [1, 2, 3], [1, 3]),
            (3, [2, 3, 1], [3, 1]),  # was led by 2: re-elected
            (1, [3, 1, 2], [3, 1]),
            (-1, [2, 1, 3], [2]),  # only 2 was in sync: offline
            (1, [1, 3, 2], [1, 3]),
            (3, [3, 1], [3, 1]),  # not on broker 2: healthy
        ],
        "__consumer_offsets": [(1, [1, 2, 3], [1, 3]), (3, [3, 1, 2], [3, 1])],
    }
    for name, parts in layout.items():
        t = TopicMetadata()
        t.topic = name
        for pid, (leader, replicas, isr) in enumerate(parts):
            p = PartitionMetadata()
            p.id, p.leader, p.replicas, p.isrs = pid, leader, replicas, isr
            t.partitions[pid] = p
        md.topics[name] = t
    return md


def test_assess_real_cluster_shape() -> None:
    health = assess(real_cluster_after_broker_2_died(), expected_brokers=3)
    assert not health.ok
    assert health.controller_id == 3
    assert [(i.topic, i.partition) for i in health.offline] == [("plans", 3)]
    assert [(i.topic, i.partition) for i in health.under_replicated] == [
        ("__consumer_offsets", 0),
        ("__consumer_offsets", 1),
        ("plans", 0),
        ("plans", 1),
        ("plans", 2),
        ("plans", 3),
        ("plans", 4),
    ]
    assert health.under_replicated[2].reason == "replicas [2] out of sync"
    assert health.missing_brokers == [2]

    without_internal = assess(real_cluster_after_broker_2_died(), include_internal=False, topics=["plans"])
    assert without_internal.topic_count == 1 and len(without_internal.under_replicated) == 5


class ReplayClients(KafkaClients):
    """Answers the one Metadata request cluster_health makes with recorded metadata."""

    def __init__(self, md: ClusterMetadata) -> None:
        super().__init__("kafka-1.kafka.svc:9092")
        self._md = md

    @property
    def admin(self) -> ReplayClients:  # type: ignore[override]
        return self

    def list_topics(self, timeout: float = -1) -> ClusterMetadata:
        return self._md


def test_cluster_health_action_on_real_cluster_shape(settings: Settings, registry: ActionRegistry) -> None:
    conns = Connections(
        settings, provided={CONNECTION_KEY: ReplayClients(real_cluster_after_broker_2_died())}
    )
    result = invoke(registry["kafka.cluster_health"], ActionContext(conns), {"expected_brokers": 3})
    assert not result.ok
    assert result.under_replicated_count == 7 and result.offline_count == 1
    assert result.offline[0] == {
        "topic": "plans",
        "partition": 3,
        "leader": -1,
        "replicas": [2, 1, 3],
        "isr": [2],
        "reason": "no leader",
    }
    assert result.summary == (
        "kafka UNHEALTHY: 2 brokers, controller 3, 2 topics / 8 partitions, 7 under-replicated, 1 offline"
    )


def test_controller_zero_is_reported(settings: Settings, registry: ActionRegistry) -> None:
    """The mock's default controller id 0 names no broker: that is a problem, not a healthy cluster."""
    with MockKafkaCluster(brokers=1, controller_id=0) as kafka:
        kafka.topic_create("t", 1, replication_factor=1)
        result = invoke(registry["kafka.cluster_health"], ctx_for(settings, kafka.bootstraps), {})
    assert not result.ok and any("no active controller" in p for p in result.problems)
