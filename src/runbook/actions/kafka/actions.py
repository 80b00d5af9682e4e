"""Kafka actions: consumer lag, cluster health, topic description, canary, offset reset.

The typed versions of what the seeds' runbooks do by hand with ``kafka-consumer-groups.sh`` and
``kafka-topics.sh``. Clients come from ``ctx.connections.get("kafka", kafka_clients)`` (configured by
``KAFKA_BOOTSTRAP_SERVERS``); every network call is bounded by ``ctx.remaining()``; look-ups are
batched (one OffsetFetch for all partitions, one ListOffsets admin call for all watermarks) because a
lag check during an incident must answer in one round trip, not one per partition.

Only this module declares actions (the registry loads it): each is its contract and user docs. The
work is in ``lag``, ``topics`` (health and topic views, judged by ``health``), ``canary`` and
``reset``; params/results in ``models``; ``client`` alone imports confluent-kafka.
"""

from __future__ import annotations

from runbook.actions.context import ActionContext
from runbook.actions.kafka import canary as canary_
from runbook.actions.kafka import head, lag, progress, reset, topics
from runbook.actions.kafka.canary import CANARY_HEADER
from runbook.actions.kafka.client import KafkaClients, RoundTrips, clients_of, kafka_clients, unavailable
from runbook.actions.kafka.head import SampleHeadParams, SampleHeadResult
from runbook.actions.kafka.models import (
    CanaryParams,
    CanaryResult,
    HealthParams,
    HealthResult,
    LagParams,
    LagResult,
    TopicParams,
    TopicResult,
)
from runbook.actions.kafka.progress import LagProgressParams, LagProgressResult
from runbook.actions.kafka.reset import ResetParams, ResetResult, plan_reset
from runbook.actions.registry import action


def describe_reset(ctx: ActionContext, params: ResetParams) -> str:
    """The plan: old -> new offset per partition, and what is known about the group's members."""
    return plan_reset(clients_of(ctx), params, ctx.remaining, RoundTrips()).render()


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
    return lag.consumer_lag(ctx, params)


@action(
    "kafka.lag_progress",
    summary="Stuck or slow consumers: committed-offset movement per partition over a window",
)
def lag_progress(ctx: ActionContext, params: LagProgressParams) -> LagProgressResult:
    """Reads the group's lag twice ``window`` seconds apart and judges every partition: ``stuck``
    (lag > 0 and the committed offset did not move), ``slow`` (it moved but the lag grew),
    ``catching_up`` (it moved and the lag did not grow), ``caught_up`` (no lag). The group's state
    is the worst partition's, so one consumer wedged on a poison message is not hidden by the
    others; ``stuck``/``slow`` list the partitions and ``evidence`` says the rates."""
    return progress.lag_progress(ctx, params)


@action(
    "kafka.sample_head",
    summary="Per-message evidence at each lagging partition's committed offset, read without committing",
)
def sample_head(ctx: ActionContext, params: SampleHeadParams) -> SampleHeadResult:
    """Reads the first ``per_partition`` messages the group has not consumed on each lagging
    partition, from its committed offset, with a reader outside the group (``assign()``, throw-away
    group id, auto-commit off; the group's offsets and members are untouched), bounded by
    ``max_messages`` and ``max_seconds``. Per message: partition, offset, timestamp and age, key and
    value sizes, header names and a retry count from a retry header (``retry-count``, ``x-retry``,
    ``kafka_deliveryAttempt``...). Never bodies, keys or other header values."""
    return head.sample_head(ctx, params)


@action("kafka.cluster_health", summary="Brokers, controller, under-replicated and offline partitions")
def cluster_health(ctx: ActionContext, params: HealthParams) -> HealthResult:
    """One Metadata request judged like ``kafka-topics.sh --under-replicated-partitions`` and
    ``--unavailable-partitions`` together: brokers registered, the controller, partitions with no
    (live) leader, partitions whose ISR is smaller than their replica set or holds dead brokers, and
    broker ids named as replicas that are not registered. ``ok`` is true when ``problems`` is empty.
    """
    return topics.cluster_health(ctx, params)


@action("kafka.describe_topic", summary="Partitions of a topic with leader, replicas, ISR and watermarks")
def describe_topic(ctx: ActionContext, params: TopicParams) -> TopicResult:
    """``kafka-topics.sh --describe`` plus low/high watermarks (retained messages) per partition.

    Three round trips: metadata, and one ListOffsets call each for the earliest and latest offsets of
    every partition. A partition whose leader does not answer shows its error instead of watermarks.
    """
    return topics.describe_topic(ctx, params)


@action("kafka.canary", summary="Produce a marked message and consume it back: end-to-end latency")
def canary(ctx: ActionContext, params: CanaryParams) -> CanaryResult:
    """End-to-end flow check: produce a message carrying a unique ``runbook-canary-id`` header
    (acks=all), then read it back from the exact partition/offset the broker acknowledged with a
    throw-away consumer that uses ``assign()`` (no group join, no rebalance of real consumers, no
    commits) and is closed before returning. ``ok`` is false, with the reason, when the message is not
    acknowledged or not read back before the step's timeout; an unreachable cluster raises
    BackendUnavailable. Consumers of the topic see the canary: they should skip that header.
    """
    return canary_.canary(ctx, params)


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
    return reset.execute_reset(ctx, params)


__all__ = [
    "CANARY_HEADER",
    "KafkaClients",
    "canary",
    "cluster_health",
    "consumer_lag",
    "describe_topic",
    "kafka_clients",
    "lag_progress",
    "reset_offsets",
    "sample_head",
    "unavailable",
]
