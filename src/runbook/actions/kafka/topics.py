"""Cluster and topic views: the bodies of ``kafka.cluster_health`` and ``kafka.describe_topic``.

Both are judged by :func:`runbook.actions.kafka.health.assess` on one Metadata answer; the topic view
adds the low/high watermarks of every partition in one ListOffsets call each.
"""

from __future__ import annotations

from runbook.actions.context import ActionContext
from runbook.actions.kafka.client import (
    RoundTrips,
    clients_of,
    earliest,
    latest,
    list_offsets,
    metadata,
    partitions_of,
)
from runbook.actions.kafka.health import LIST_CAP, assess
from runbook.actions.kafka.models import (
    HealthParams,
    HealthResult,
    TopicParams,
    TopicPartitionInfo,
    TopicResult,
)


def cluster_health(ctx: ActionContext, params: HealthParams) -> HealthResult:
    """Brokers, controller, under-replicated and offline partitions (see ``kafka.cluster_health``)."""
    trips = RoundTrips()
    md = metadata(clients_of(ctx), ctx.remaining(), trips)
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


def describe_topic(ctx: ActionContext, params: TopicParams) -> TopicResult:
    """Partitions with leader, replicas, ISR and watermarks (see ``kafka.describe_topic``)."""
    clients, trips = clients_of(ctx), RoundTrips()
    md = metadata(clients, ctx.remaining(), trips)
    tps = partitions_of(md, [params.topic])
    low = list_offsets(clients, tps, earliest(), ctx.remaining(), trips, "earliest")
    high = list_offsets(clients, tps, latest(), ctx.remaining(), trips, "latest")
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
