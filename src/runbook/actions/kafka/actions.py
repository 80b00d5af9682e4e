"""Kafka actions: consumer lag, cluster health, topic description, canary, offset reset.

The typed versions of what the seeds' runbooks do by hand with ``kafka-consumer-groups.sh`` and
``kafka-topics.sh``. Clients come from ``ctx.connections.get("kafka", kafka_clients)`` (configured by
``KAFKA_BOOTSTRAP_SERVERS``); every network call is bounded by ``ctx.remaining()``; look-ups are
batched (one OffsetFetch for all partitions, one ListOffsets admin call for all watermarks) because a
lag check during an incident must answer in one round trip, not one per partition.

Connection plumbing and the batched look-ups are in ``kafka_client``; the health judgement (testable
against recorded metadata of a real cluster) is in ``kafka_health``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import OffsetSpec
from pydantic import BaseModel, Field

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.kafka.client import (
    BACKEND,
    CONNECTION_KEY,
    KafkaClients,
    RoundTrips,
    committed_offsets,
    error_text,
    kafka_clients,
    list_offsets,
    metadata,
    partitions_of,
    translate,
    unavailable,
    wait_all,
)
from runbook.actions.kafka.health import LIST_CAP, assess
from runbook.actions.kafka.reset import MEMBER_REFUSALS, ResetParams, ResetResult, plan_reset
from runbook.actions.registry import ActionResult, action
from runbook.core.redact import redact

CANARY_HEADER = "runbook-canary-id"


def _clients(ctx: ActionContext) -> KafkaClients:
    return ctx.connections.get(CONNECTION_KEY, kafka_clients)


class _Params(BaseModel):
    model_config = {"extra": "forbid"}


# --- kafka.consumer_lag ------------------------------------------------------------------------


class LagParams(_Params):
    group: str = Field(min_length=1, description="consumer group id")
    topics: list[str] | None = Field(
        None, description="topics to check; default: every topic the group has committed offsets on"
    )
    top: int = Field(10, ge=1, le=1000, description="how many of the most lagging partitions to list")


class PartitionLag(BaseModel):
    topic: str
    partition: int
    committed: int | None = Field(description="committed offset; null when the group never committed here")
    high_watermark: int | None = Field(description="log end offset; null when the leader did not answer")
    lag: int | None = Field(description="high watermark - committed (from the low watermark if none)")
    error: str | None = None


class LagResult(ActionResult):
    group: str
    topics: list[str]
    partition_count: int
    total_lag: int
    max_lag: int
    partitions: list[PartitionLag]
    top_lagging: list[PartitionLag]
    partitions_without_commit: int
    partitions_with_errors: int
    round_trips: int
    calls: list[str]


@action("kafka.consumer_lag", summary="Per-partition and total lag of a consumer group, in batched calls")
def consumer_lag(ctx: ActionContext, params: LagParams) -> LagResult:
    """Lag of a consumer group per partition (high watermark - committed offset), total and top N.

    Three admin round trips whatever the partition count: metadata, one OffsetFetch naming every
    partition, one ListOffsets call for every high watermark (librdkafka sends one request per
    leader, in parallel). Partitions the group never committed are counted from the low watermark
    (what a group with ``auto.offset.reset=earliest`` still has to read) at the price of one more
    call, only when there are such partitions. A partition whose leader is unavailable shows its error
    and no lag instead of failing the whole check. Without ``topics``, the group's topics are those it
    has committed offsets on (asked from the broker; if the broker does not list them, every
    non-internal topic is checked in the same single OffsetFetch).
    """
    clients, trips = _clients(ctx), RoundTrips()
    md = metadata(clients, ctx.remaining(), trips)
    if params.topics:
        tps = partitions_of(md, params.topics)
        committed = committed_offsets(clients, params.group, tps, ctx.remaining(), trips)
    else:
        committed = committed_offsets(clients, params.group, None, ctx.remaining(), trips)
        if not committed:
            candidates = [t for t, tmd in md.topics.items() if not t.startswith("__") and tmd.error is None]
            committed = committed_offsets(
                clients, params.group, partitions_of(md, candidates), ctx.remaining(), trips
            )
        topics = sorted({t for (t, _), off in committed.items() if off is not None and t in md.topics})
        if not topics:
            raise ActionError(
                f"group {params.group!r} has no committed offsets on any topic", backend=BACKEND
            )
        tps = partitions_of(md, topics)
    high = list_offsets(clients, tps, OffsetSpec.latest(), ctx.remaining(), trips, "latest")
    never = [tp for tp in tps if committed.get((tp.topic, tp.partition)) is None]
    low = list_offsets(clients, never, OffsetSpec.earliest(), ctx.remaining(), trips, "earliest")

    rows: list[PartitionLag] = []
    for tp in tps:
        key = (tp.topic, tp.partition)
        c, h = committed.get(key), high.get(key)
        error = h if isinstance(h, str) else None
        hw = h if isinstance(h, int) else None
        start = c if c is not None else low.get(key)
        if isinstance(start, str):
            error = error or start
        lag = max(0, hw - start) if hw is not None and isinstance(start, int) else None
        rows.append(
            PartitionLag(
                topic=tp.topic, partition=tp.partition, committed=c, high_watermark=hw, lag=lag, error=error
            )
        )
    total = sum(r.lag or 0 for r in rows)
    top = sorted((r for r in rows if r.lag), key=lambda r: (-(r.lag or 0), r.topic, r.partition))[
        : params.top
    ]
    topics_seen = sorted({tp.topic for tp in tps})
    errors = sum(1 for r in rows if r.error)
    summary = (
        f"group {params.group}: total lag {total:,} over {len(rows)} partitions of {', '.join(topics_seen)}"
    )
    if top:
        summary += f"; worst {top[0].topic}[{top[0].partition}]={top[0].lag:,}"
    if never:
        summary += f"; {len(never)} partition(s) never committed"
    if errors:
        summary += f"; {errors} partition(s) unreadable"
    return LagResult(
        summary=summary + f" ({trips.count} round trips)",
        group=params.group,
        topics=topics_seen,
        partition_count=len(rows),
        total_lag=total,
        max_lag=max((r.lag or 0 for r in rows), default=0),
        partitions=rows,
        top_lagging=top,
        partitions_without_commit=len(never),
        partitions_with_errors=errors,
        round_trips=trips.count,
        calls=trips.calls,
    )


# --- kafka.cluster_health ----------------------------------------------------------------------


class HealthParams(_Params):
    expected_brokers: int | None = Field(None, ge=1, description="brokers the cluster should have (optional)")
    topics: list[str] | None = Field(None, description="only judge these topics (default: all)")
    include_internal: bool = Field(True, description="include internal topics such as __consumer_offsets")


class HealthResult(ActionResult):
    ok: bool
    problems: list[str]
    brokers: list[dict[str, Any]]
    broker_count: int
    controller_id: int | None
    topic_count: int
    partition_count: int
    under_replicated_count: int
    offline_count: int
    under_replicated: list[dict[str, Any]] = Field(description=f"first {LIST_CAP} rows")
    offline: list[dict[str, Any]] = Field(description=f"first {LIST_CAP} rows")
    missing_brokers: list[int]
    round_trips: int


@action("kafka.cluster_health", summary="Brokers, controller, under-replicated and offline partitions")
def cluster_health(ctx: ActionContext, params: HealthParams) -> HealthResult:
    """One Metadata request judged like ``kafka-topics.sh --under-replicated-partitions`` and
    ``--unavailable-partitions`` together: brokers registered, the controller, partitions with no
    (live) leader, partitions whose ISR is smaller than their replica set or holds dead brokers, and
    broker ids named as replicas that are not registered. ``ok`` is true when ``problems`` is empty.
    """
    trips = RoundTrips()
    md = metadata(_clients(ctx), ctx.remaining(), trips)
    h = assess(
        md,
        expected_brokers=params.expected_brokers,
        topics=params.topics,
        include_internal=params.include_internal,
    )
    summary = (
        f"kafka {'healthy' if h.ok else 'UNHEALTHY'}: {len(h.brokers)} brokers, "
        f"controller {h.controller_id}, {h.topic_count} topics / {h.partition_count} partitions, "
        f"{len(h.under_replicated)} under-replicated, {len(h.offline)} offline"
    )
    return HealthResult(
        summary=summary,
        ok=h.ok,
        problems=h.problems,
        brokers=h.brokers,
        broker_count=len(h.brokers),
        controller_id=h.controller_id,
        topic_count=h.topic_count,
        partition_count=h.partition_count,
        under_replicated_count=len(h.under_replicated),
        offline_count=len(h.offline),
        under_replicated=[i.row() for i in h.under_replicated[:LIST_CAP]],
        offline=[i.row() for i in h.offline[:LIST_CAP]],
        missing_brokers=h.missing_brokers,
        round_trips=trips.count,
    )


# --- kafka.describe_topic ----------------------------------------------------------------------


class TopicParams(_Params):
    topic: str = Field(min_length=1, description="topic name")


class TopicPartitionInfo(BaseModel):
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    low_watermark: int | None
    high_watermark: int | None
    messages: int | None
    error: str | None = None


class TopicResult(ActionResult):
    topic: str
    partition_count: int
    replication_factor: int
    partitions: list[TopicPartitionInfo]
    total_messages: int
    under_replicated: int
    offline: int
    round_trips: int


@action("kafka.describe_topic", summary="Partitions of a topic with leader, replicas, ISR and watermarks")
def describe_topic(ctx: ActionContext, params: TopicParams) -> TopicResult:
    """``kafka-topics.sh --describe`` plus low/high watermarks (retained messages) per partition.

    Three round trips: metadata, and one ListOffsets call each for the earliest and latest offsets of
    every partition. A partition whose leader does not answer shows its error instead of watermarks.
    """
    clients, trips = _clients(ctx), RoundTrips()
    md = metadata(clients, ctx.remaining(), trips)
    tps = partitions_of(md, [params.topic])
    low = list_offsets(clients, tps, OffsetSpec.earliest(), ctx.remaining(), trips, "earliest")
    high = list_offsets(clients, tps, OffsetSpec.latest(), ctx.remaining(), trips, "latest")
    health = assess(md, topics=[params.topic])
    live = {b.id for b in md.brokers.values()}
    rows = []
    for tp in tps:
        p = md.topics[params.topic].partitions[tp.partition]
        lo, hi = low.get((tp.topic, tp.partition)), high.get((tp.topic, tp.partition))
        error = next((v for v in (lo, hi) if isinstance(v, str)), None)
        if error is None and p.leader >= 0 and p.leader not in live:
            error = f"leader {p.leader} not live"
        lw, hw = (lo if isinstance(lo, int) else None), (hi if isinstance(hi, int) else None)
        rows.append(
            TopicPartitionInfo(
                partition=tp.partition,
                leader=p.leader,
                replicas=list(p.replicas),
                isr=list(p.isrs),
                low_watermark=lw,
                high_watermark=hw,
                messages=hw - lw if lw is not None and hw is not None else None,
                error=error,
            )
        )
    total = sum(r.messages or 0 for r in rows)
    rf = max((len(r.replicas) for r in rows), default=0)
    return TopicResult(
        summary=(
            f"topic {params.topic}: {len(rows)} partitions, rf {rf}, {total:,} retained messages, "
            f"{len(health.under_replicated)} under-replicated, {len(health.offline)} offline"
        ),
        topic=params.topic,
        partition_count=len(rows),
        replication_factor=rf,
        partitions=rows,
        total_messages=total,
        under_replicated=len(health.under_replicated),
        offline=len(health.offline),
        round_trips=trips.count,
    )


# --- kafka.canary ------------------------------------------------------------------------------


class CanaryParams(_Params):
    topic: str = Field(min_length=1, description="topic to send the canary through (a dedicated one is best)")
    partition: int | None = Field(
        None, ge=0, description="partition to probe (default: the partitioner picks)"
    )


class CanaryResult(ActionResult):
    ok: bool
    topic: str
    partition: int | None
    offset: int | None
    canary_id: str
    produce_ms: float | None = Field(description="produce until acks=all acknowledgement")
    end_to_end_ms: float | None = Field(description="produce until the consumer received it back")
    error: str | None = None


@action("kafka.canary", summary="Produce a marked message and consume it back: end-to-end latency")
def canary(ctx: ActionContext, params: CanaryParams) -> CanaryResult:
    """End-to-end flow check: produce a message carrying a unique ``runbook-canary-id`` header
    (acks=all), then read it back from the exact partition/offset the broker acknowledged with a
    throw-away consumer that uses ``assign()`` (no group join, no rebalance of real consumers, no
    commits) and is closed before returning. ``ok`` is false, with the reason, when the message is not
    acknowledged or not read back before the step's timeout; an unreachable cluster raises
    BackendUnavailable. Consumers of the topic see the canary: they should skip that header.
    """
    clients = _clients(ctx)
    md = metadata(clients, min(ctx.remaining(), 10.0), RoundTrips())  # unreachable -> BackendUnavailable
    known = {tp.partition for tp in partitions_of(md, [params.topic])}  # never auto-create a typo'd topic
    if params.partition is not None and params.partition not in known:
        raise ActionError(f"topic {params.topic} has no partition {params.partition}", backend=BACKEND)
    cid = uuid.uuid4().hex
    budget = ctx.remaining()
    deadline = time.monotonic() + budget
    acked: dict[str, Any] = {}

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        acked.update(err=err, partition=msg.partition(), offset=msg.offset(), at=time.monotonic())

    def failed(
        reason: str, partition: int | None = None, offset: int | None = None, produce_ms: float | None = None
    ) -> CanaryResult:
        return CanaryResult(
            summary=f"canary on {params.topic} FAILED: {reason}",
            ok=False,
            topic=params.topic,
            partition=partition,
            offset=offset,
            canary_id=cid,
            produce_ms=produce_ms,
            end_to_end_ms=None,
            error=redact(reason),
        )

    producer = clients.producer()
    headers = [(CANARY_HEADER, cid.encode()), ("runbook-run-id", (ctx.run_id or "-").encode())]
    kwargs: dict[str, Any] = {"key": b"runbook-canary", "headers": headers, "on_delivery": on_delivery}
    if params.partition is not None:
        kwargs["partition"] = params.partition
    sent = time.monotonic()
    try:
        producer.produce(params.topic, value=f'{{"runbook_canary":"{cid}"}}'.encode(), **kwargs)
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, f"produce to {params.topic}", exc) from None
    while not acked and time.monotonic() < deadline:
        producer.poll(min(0.1, max(0.0, deadline - time.monotonic())))
    if not acked:
        producer.purge(in_queue=True, in_flight=False)
        producer.poll(0)
        return failed(f"not acknowledged within {budget:.1f}s (the step's timeout)")
    if acked["err"] is not None:
        return failed(f"produce failed: {acked['err'].str()}")
    partition, offset = acked["partition"], acked["offset"]
    produce_ms = round((acked["at"] - sent) * 1000, 2)
    consumer = clients.consumer(**{"group.id": f"runbook-canary-{cid[:12]}", "fetch.wait.max.ms": 50})
    try:
        consumer.assign([TopicPartition(params.topic, partition, offset)])
        while time.monotonic() < deadline:
            msg = consumer.poll(min(0.25, max(0.01, deadline - time.monotonic())))
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return failed(f"consume failed: {msg.error().str()}", partition, offset, produce_ms)
            if dict(msg.headers() or []).get(CANARY_HEADER) == cid.encode():
                e2e = round((time.monotonic() - sent) * 1000, 2)
                return CanaryResult(
                    summary=f"canary on {params.topic}[{partition}]@{offset}: round trip {e2e} ms "
                    f"(ack {produce_ms} ms)",
                    ok=True,
                    topic=params.topic,
                    partition=partition,
                    offset=offset,
                    canary_id=cid,
                    produce_ms=produce_ms,
                    end_to_end_ms=e2e,
                )
        return failed(
            f"acknowledged at {params.topic}[{partition}]@{offset} but not consumed back in time",
            partition,
            offset,
            produce_ms,
        )
    finally:
        consumer.close()


# --- kafka.reset_offsets (destructive) ---------------------------------------------------------


def describe_reset(ctx: ActionContext, params: ResetParams) -> str:
    """The plan: old -> new offset per partition, and what is known about the group's members."""
    return plan_reset(_clients(ctx), params, ctx.remaining, RoundTrips()).render()


@action(
    "kafka.reset_offsets",
    summary="Move a consumer group's committed offsets (earliest/latest/time/offset)",
    destructive=True,
    describe=describe_reset,
)
def reset_offsets(ctx: ActionContext, params: ResetParams) -> ResetResult:
    """``kafka-consumer-groups.sh --reset-offsets --execute``, with guardrails.

    Re-plans at execution time (the approved plan may be minutes old), refuses (GuardrailRefused)
    while the group has active members — from DescribeGroups where the broker supports it, otherwise
    from the coordinator refusing the commit with UNKNOWN_MEMBER_ID/ILLEGAL_GENERATION/
    REBALANCE_IN_PROGRESS — commits every partition's new offset in one request, then reads the
    offsets back to verify. Offsets asked outside the retained log are clamped to it, as the Kafka
    tool does. Stop the group's consumers first; they resume from the new offsets.
    """
    clients, trips = _clients(ctx), RoundTrips()
    plan = plan_reset(clients, params, ctx.remaining, trips)
    if plan.membership.status == "active":
        raise GuardrailRefused(
            f"group {params.group!r} has active members ({plan.membership.detail}); "
            "stop its consumers before resetting offsets",
            backend=BACKEND,
        )
    trips.add("offset_commit")
    tps = [TopicPartition(params.topic, m.partition, m.new) for m in plan.moves]
    try:
        futures = clients.admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(params.group, tps)], request_timeout=ctx.remaining()
        )
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, "alter consumer group offsets", exc) from None
    res = wait_all(clients, futures, ctx.remaining() + 1, "alter consumer group offsets")[params.group]
    errors: dict[int, str] = {}
    if isinstance(res, BaseException):
        name = error_text(res)
        if name in MEMBER_REFUSALS:
            errors = {tp.partition: name for tp in tps}
        else:
            raise translate(clients, f"alter offsets of group {params.group!r}", res)
    else:
        errors = {tp.partition: tp.error.name() for tp in res.topic_partitions if tp.error is not None}
    if errors:
        names = sorted(set(errors.values()))
        if set(names) & MEMBER_REFUSALS:
            raise GuardrailRefused(
                f"the coordinator refused the offset commit for group {params.group!r} ({', '.join(names)}): "
                "the group has active members (or had them until their session expires); stop its consumers "
                "first",
                backend=BACKEND,
            )
        raise ActionError(f"offset commit failed for partitions {errors}", backend=BACKEND)
    after = committed_offsets(
        clients,
        params.group,
        [TopicPartition(params.topic, m.partition) for m in plan.moves],
        ctx.remaining(),
        trips,
    )
    verified = all(after.get((params.topic, m.partition)) == m.new for m in plan.moves)
    changed = sum(1 for m in plan.moves if m.old != m.new)
    return ResetResult(
        summary=(
            f"reset group {params.group} on {params.topic} to {plan.target}: {changed} of {len(plan.moves)} "
            f"partitions moved{'' if verified else ' (READ-BACK MISMATCH)'}"
        ),
        group=params.group,
        topic=params.topic,
        target=plan.target,
        moves=plan.moves,
        changed=changed,
        verified=verified,
        membership=plan.membership,
        round_trips=trips.count,
    )


__all__ = [
    "CANARY_HEADER",
    "KafkaClients",
    "canary",
    "cluster_health",
    "consumer_lag",
    "describe_topic",
    "kafka_clients",
    "reset_offsets",
    "unavailable",
]
