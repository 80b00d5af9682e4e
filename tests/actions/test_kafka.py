"""Kafka actions against librdkafka's mock cluster: a real Kafka protocol peer (see NOTES.md).

Each test gets its own mock cluster (creating one takes milliseconds) and unique topic/group names.
Round trips are checked twice: the count the action reports, and the protocol requests the mock
brokers actually received (request tracking).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, Node, TopicPartition
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription, MemberAssignment, MemberDescription

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    BackendUnavailable,
    Connections,
    GuardrailRefused,
    describe,
    invoke,
)
from runbook.actions.kafka.client import KafkaClients, RoundTrips
from runbook.actions.kafka.reset import check_membership, target_offset
from runbook.core.settings import Settings

try:
    from tests.support.kafka_mock import MockKafkaCluster, consume_and_commit, produce_messages
except ImportError:  # pytest put tests/ (not the repo root) on sys.path
    from support.kafka_mock import MockKafkaCluster, consume_and_commit, produce_messages

STEP_TIMEOUT = 20.0


@pytest.fixture
def kafka() -> Iterator[MockKafkaCluster]:
    with MockKafkaCluster(brokers=3) as cluster:
        yield cluster


@pytest.fixture
def make_ctx(settings: Settings) -> Iterator:
    """ActionContext factory with a step deadline; closes every connection it handed out."""
    made: list[Connections] = []

    def make(bootstraps: str | None, timeout: float = STEP_TIMEOUT) -> ActionContext:
        conns = Connections(dataclasses.replace(settings, kafka_bootstrap_servers=bootstraps))
        made.append(conns)
        return ActionContext(conns, deadline=time.monotonic() + timeout, run_id="test-run")

    yield make
    for conns in made:
        conns.close()


def committed(bootstraps: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    admin = AdminClient({"bootstrap.servers": bootstraps})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = admin.list_consumer_group_offsets([req], request_timeout=10)[group].result(timeout=15)
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in res.topic_partitions}


# --- consumer_lag ------------------------------------------------------------------------------


def test_consumer_lag_counts_real_messages_in_batched_round_trips(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic, group = f"orders-{unique}", f"billing-{unique}"
    kafka.topic_create(topic, 4)
    produce_messages(kafka.bootstraps, topic, {0: 25, 1: 25, 2: 25, 3: 5})
    consume_and_commit(kafka.bootstraps, group, topic, {0: 25, 1: 10, 3: 2})  # partition 2 never committed

    kafka.start_request_tracking()
    result = invoke(
        registry["kafka.consumer_lag"], make_ctx(kafka.bootstraps), {"group": group, "topics": [topic]}
    )
    requests = kafka.request_counts()

    rows = {r.partition: r for r in result.partitions}
    assert [(rows[p].committed, rows[p].high_watermark, rows[p].lag) for p in range(4)] == [
        (25, 25, 0),
        (10, 25, 15),
        (None, 25, 25),  # never committed: counted from the low watermark
        (2, 5, 3),
    ]
    assert result.total_lag == 43 and result.max_lag == 25
    assert [(r.partition, r.lag) for r in result.top_lagging] == [(2, 25), (1, 15), (3, 3)]
    assert result.partitions_without_commit == 1
    # metadata + ONE OffsetFetch + ONE ListOffsets(latest) + ListOffsets(earliest) for the uncommitted one
    assert result.calls == ["metadata", "offset_fetch", "list_offsets(latest)", "list_offsets(earliest)"]
    assert result.round_trips == 4
    assert requests.get("OffsetFetch") == 1, requests
    assert requests.get("ListOffsets", 0) <= 2 * 3, requests  # at most one per leader broker per call
    assert "total lag 43" in result.summary


def test_consumer_lag_finds_the_groups_topics_when_none_are_given(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic, other, group = f"plans-{unique}", f"noise-{unique}", f"orchestrator-{unique}"
    kafka.topic_create(topic, 3)
    kafka.topic_create(other, 2)
    produce_messages(kafka.bootstraps, topic, {0: 10, 1: 10, 2: 10})
    produce_messages(kafka.bootstraps, other, {0: 7})
    # a subscribed consumer that processed part of the backlog and committed its positions
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstraps,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    consumed, deadline = 0, time.monotonic() + 20
    while consumed < 12 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            consumed += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    assert consumed == 12

    result = invoke(registry["kafka.consumer_lag"], make_ctx(kafka.bootstraps), {"group": group, "top": 2})
    assert result.topics == [topic]  # the noise topic the group never touched is not reported
    assert result.total_lag == 30 - 12
    assert len(result.top_lagging) <= 2
    assert result.round_trips <= 5  # the mock answers "all committed offsets" with nothing: one fallback


def test_consumer_lag_unknown_topic_and_unknown_group(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    kafka.topic_create(f"t-{unique}", 1)
    with pytest.raises(ActionError, match="topic.*not found"):
        invoke(registry["kafka.consumer_lag"], make_ctx(kafka.bootstraps), {"group": "g", "topics": ["nope"]})
    with pytest.raises(ActionError, match="no committed offsets"):
        invoke(registry["kafka.consumer_lag"], make_ctx(kafka.bootstraps), {"group": f"ghost-{unique}"})


# --- describe_topic ----------------------------------------------------------------------------


def test_describe_topic_shows_leaders_replicas_isr_and_watermarks(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic = f"audit-{unique}"
    kafka.topic_create(topic, 3, replication_factor=2)
    produce_messages(kafka.bootstraps, topic, {0: 4, 2: 9})
    kafka.partition_set_leader(topic, 1, 3)

    result = invoke(registry["kafka.describe_topic"], make_ctx(kafka.bootstraps), {"topic": topic})
    assert result.partition_count == 3 and result.replication_factor == 2
    assert [(p.partition, p.low_watermark, p.high_watermark, p.messages) for p in result.partitions] == [
        (0, 0, 4, 4),
        (1, 0, 0, 0),
        (2, 0, 9, 9),
    ]
    assert result.partitions[1].leader == 3
    assert all(len(p.replicas) == 2 and p.isr == p.replicas for p in result.partitions)
    assert result.total_messages == 13 and result.offline == 0 and result.round_trips == 3
    with pytest.raises(ActionError, match="not found"):
        invoke(registry["kafka.describe_topic"], make_ctx(kafka.bootstraps), {"topic": f"missing-{unique}"})


# --- canary ------------------------------------------------------------------------------------


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_canary_round_trip_and_consumer_cleanup(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic = f"canary-{unique}"
    kafka.topic_create(topic, 3)
    ctx = make_ctx(kafka.bootstraps)
    first = invoke(registry["kafka.canary"], ctx, {"topic": topic, "partition": 2})
    assert first.ok, first.error
    assert first.partition == 2 and first.offset == 0
    assert 0 < first.produce_ms <= first.end_to_end_ms < STEP_TIMEOUT * 1000

    threads_after_first = _threads()
    for _ in range(3):
        again = invoke(registry["kafka.canary"], ctx, {"topic": topic})
        assert again.ok and again.canary_id != first.canary_id
    # each canary's consumer is closed (librdkafka joins its threads on close): no growth per run
    assert _threads() <= threads_after_first

    # the marked message is really on the topic, with its id header
    consumer = Consumer({"bootstrap.servers": kafka.bootstraps, "group.id": f"check-{unique}"})
    consumer.assign([TopicPartition(topic, 2, 0)])
    msg = consumer.poll(10)
    consumer.close()
    assert msg is not None and dict(msg.headers())["runbook-canary-id"] == first.canary_id.encode()
    with pytest.raises(ActionError, match="not found"):
        invoke(registry["kafka.canary"], ctx, {"topic": f"typo-{unique}"})
    with pytest.raises(ActionError, match="no partition 9"):
        invoke(registry["kafka.canary"], ctx, {"topic": topic, "partition": 9})


def test_canary_reports_failure_within_the_step_timeout_when_the_leader_is_down(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic = f"canary-{unique}"
    kafka.topic_create(topic, 1)
    kafka.partition_set_leader(topic, 0, 2)
    kafka.broker_set_down(2)  # leadership not moved: produce cannot be acknowledged
    started = time.monotonic()
    result = invoke(registry["kafka.canary"], make_ctx(kafka.bootstraps, timeout=3), {"topic": topic})
    assert not result.ok and "not acknowledged" in (result.error or "")
    assert time.monotonic() - started < 6


# --- reset_offsets -----------------------------------------------------------------------------


def test_reset_offsets_plan_then_execute_for_an_assign_group(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic, group = f"plans-{unique}", f"replayer-{unique}"
    kafka.topic_create(topic, 3)
    produce_messages(kafka.bootstraps, topic, {0: 20, 1: 20, 2: 20})
    consume_and_commit(kafka.bootstraps, group, topic, {0: 20, 1: 8})
    spec = registry["kafka.reset_offsets"]
    assert spec.destructive

    plan = describe(spec, make_ctx(kafka.bootstraps), {"group": group, "topic": topic, "to": "earliest"})
    assert f"{topic}[0]: 20 -> 0" in plan
    assert f"{topic}[1]: 8 -> 0" in plan
    assert f"{topic}[2]: none -> 0" in plan
    assert "membership: unknown" in plan  # the mock has no DescribeGroups: said, not hidden
    assert committed(kafka.bootstraps, group, topic, 3) == {0: 20, 1: 8, 2: None}  # describe changed nothing

    result = invoke(spec, make_ctx(kafka.bootstraps), {"group": group, "topic": topic, "to": "earliest"})
    assert result.verified and result.changed == 3
    assert committed(kafka.bootstraps, group, topic, 3) == {0: 0, 1: 0, 2: 0}

    result = invoke(
        spec,
        make_ctx(kafka.bootstraps),
        {"group": group, "topic": topic, "to": "offset", "value": 500, "partitions": [1]},
    )
    assert [(m.partition, m.old, m.new) for m in result.moves] == [(1, 0, 20)]
    assert "clamped" in result.moves[0].note
    result = invoke(spec, make_ctx(kafka.bootstraps), {"group": group, "topic": topic, "to": "latest"})
    assert committed(kafka.bootstraps, group, topic, 3) == {0: 20, 1: 20, 2: 20}


def test_reset_offsets_to_timestamp(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    """The mock answers every ListOffsets-by-timestamp with -1 ("no message at or after it"), so only
    that branch runs end to end here; the lookup itself is checked against a real broker's answers in
    test_target_offset_follows_the_kafka_tool_rules."""
    topic, group = f"ts-{unique}", f"ts-{unique}"
    kafka.topic_create(topic, 1)
    base = 1_700_000_000_000
    produce_messages(kafka.bootstraps, topic, {0: 10}, timestamp_ms=base)  # message i at base + i
    consume_and_commit(kafka.bootstraps, group, topic, {0: 4})
    params = {"group": group, "topic": topic, "to": "timestamp", "value": base + 1_000_000}
    plan = describe(registry["kafka.reset_offsets"], make_ctx(kafka.bootstraps), params)
    assert f"{topic}[0]: 4 -> 10 (no message at or after the timestamp: log end)" in plan
    result = invoke(registry["kafka.reset_offsets"], make_ctx(kafka.bootstraps), params)
    assert result.target == f"timestamp {base + 1_000_000}" and result.verified
    assert committed(kafka.bootstraps, group, topic, 1) == {0: 10}


@pytest.mark.parametrize(
    ("to", "value", "by_timestamp", "expected"),
    [
        ("earliest", None, None, (3, "")),
        ("latest", None, None, (42, "")),
        # a real broker answers ListOffsets(timestamp) with the first offset whose timestamp >= it ...
        ("timestamp", 1_700_000_000_004, 17, (17, "")),
        # ... or -1 when every message is older: the Kafka tool then resets to the log end
        ("timestamp", 1_800_000_000_000, -1, (42, "no message at or after the timestamp: log end")),
        ("offset", 10, None, (10, "")),
        ("offset", 0, None, (3, "0 is outside [3, 42]: clamped")),
        ("offset", 99, None, (42, "99 is outside [3, 42]: clamped")),
    ],
)
def test_target_offset_follows_the_kafka_tool_rules(
    to: str, value: int | None, by_timestamp: int | None, expected: tuple[int, str]
) -> None:
    assert target_offset(to, value, 3, 42, by_timestamp) == expected


def test_reset_offsets_refuses_while_the_group_has_active_members(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic, group = f"live-{unique}", f"live-{unique}"
    kafka.topic_create(topic, 2)
    produce_messages(kafka.bootstraps, topic, {0: 5, 1: 5})
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstraps,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    stop = threading.Event()
    try:
        consumer.subscribe([topic])
        got, deadline = 0, time.monotonic() + 20
        while got < 10 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            got += msg is not None and not msg.error()
        consumer.commit(asynchronous=False)
        before = committed(kafka.bootstraps, group, topic, 2)
        assert before == {0: 5, 1: 5}
        with pytest.raises(GuardrailRefused, match="active members"):
            invoke(
                registry["kafka.reset_offsets"],
                make_ctx(kafka.bootstraps),
                {"group": group, "topic": topic, "to": "earliest"},
            )
        assert committed(kafka.bootstraps, group, topic, 2) == before
    finally:
        stop.set()
        consumer.close()


def test_reset_offsets_validates_its_target(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    topic = f"v-{unique}"
    kafka.topic_create(topic, 2)
    spec = registry["kafka.reset_offsets"]
    with pytest.raises(ActionError, match="no committed offsets"):
        describe(
            spec, make_ctx(kafka.bootstraps), {"group": f"typo-{unique}", "topic": topic, "to": "latest"}
        )
    with pytest.raises(ActionError, match="not found"):
        invoke(spec, make_ctx(kafka.bootstraps), {"group": "g", "topic": f"nope-{unique}", "to": "latest"})
    with pytest.raises(ActionError, match="no partition"):
        invoke(
            spec,
            make_ctx(kafka.bootstraps),
            {"group": "g", "topic": topic, "to": "latest", "partitions": [7]},
        )
    with pytest.raises(ValueError, match="needs a value"):
        invoke(spec, make_ctx(kafka.bootstraps), {"group": "g", "topic": topic, "to": "offset"})


# --- connections -------------------------------------------------------------------------------


def test_missing_bootstrap_servers_is_an_action_error(make_ctx, registry: ActionRegistry) -> None:
    with pytest.raises(ActionError, match="KAFKA_BOOTSTRAP_SERVERS is not set") as info:
        invoke(registry["kafka.cluster_health"], make_ctx(None), {})
    assert not isinstance(info.value, BackendUnavailable)


@pytest.mark.parametrize("action", ["kafka.cluster_health", "kafka.consumer_lag", "kafka.canary"])
def test_unreachable_bootstrap_is_backend_unavailable_within_the_timeout(
    make_ctx, registry: ActionRegistry, action: str
) -> None:
    params = {"kafka.consumer_lag": {"group": "g"}, "kafka.canary": {"topic": "t"}}.get(action, {})
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        invoke(registry[action], make_ctx("127.0.0.1:1", timeout=2), params)
    elapsed = time.monotonic() - started
    assert elapsed < 4, elapsed
    assert info.value.backend == "kafka"
    assert str(info.value).startswith("kafka: cannot reach brokers 127.0.0.1:1")
    assert "Connection refused" in str(info.value)


def test_cluster_going_down_mid_run_is_backend_unavailable(
    kafka: MockKafkaCluster, make_ctx, registry: ActionRegistry, unique: str
) -> None:
    kafka.topic_create(f"x-{unique}", 1)
    ctx = make_ctx(kafka.bootstraps, timeout=3)
    assert invoke(registry["kafka.cluster_health"], ctx, {}).broker_count == 3
    for broker in kafka.broker_ids():
        kafka.broker_set_down(broker)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="kafka: cannot reach brokers"):
        invoke(
            registry["kafka.describe_topic"], make_ctx(kafka.bootstraps, timeout=2), {"topic": f"x-{unique}"}
        )
    assert time.monotonic() - started < 4


# --- membership from DescribeGroups (real brokers; the mock answers UNSUPPORTED_FEATURE) ---------


class DescribeGroupsReplay(KafkaClients):
    """Answers DescribeGroups with a real ``ConsumerGroupDescription`` as confluent-kafka builds it
    from a real broker's response; the mock cannot produce one."""

    def __init__(self, description: ConsumerGroupDescription) -> None:
        super().__init__("kafka-1.kafka.svc:9092")
        self._description = description

    @property
    def admin(self) -> DescribeGroupsReplay:  # type: ignore[override]
        return self

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> dict[str, Future]:
        fut: Future = Future()
        fut.set_result(self._description)
        return {groups[0]: fut}


def _description(state: ConsumerGroupState, members: int) -> ConsumerGroupDescription:
    node = Node(1, "kafka-1.kafka.svc", 9092)
    member = MemberDescription("consumer-1-4f0c", "orchestrator", "/10.0.3.7", MemberAssignment([]))
    return ConsumerGroupDescription("orchestrator-group", False, [member] * members, "range", state, node)


@pytest.mark.parametrize(
    ("state", "members", "status"),
    [
        (ConsumerGroupState.STABLE, 3, "active"),
        (ConsumerGroupState.PREPARING_REBALANCING, 1, "active"),
        (ConsumerGroupState.EMPTY, 0, "empty"),
        (ConsumerGroupState.DEAD, 0, "empty"),
    ],
)
def test_membership_from_describe_groups(state: ConsumerGroupState, members: int, status: str) -> None:
    found = check_membership(
        DescribeGroupsReplay(_description(state, members)), "orchestrator-group", 5, RoundTrips()
    )
    assert found.status == status and found.members == members
