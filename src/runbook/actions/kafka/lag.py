"""Consumer-group lag in a fixed number of batched admin calls: the body of ``kafka.consumer_lag``.

A lag check during an incident must answer in one round trip per kind of look-up, not one per
partition: one OffsetFetch names every partition, one ListOffsets call asks every high watermark.
"""

from __future__ import annotations

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.kafka.client import (
    BACKEND,
    RoundTrips,
    clients_of,
    committed_offsets,
    earliest,
    latest,
    list_offsets,
    metadata,
    partitions_of,
)
from runbook.actions.kafka.models import LagParams, LagResult, PartitionLag


def consumer_lag(ctx: ActionContext, params: LagParams) -> LagResult:
    """Lag per partition, total and top N (see ``kafka.consumer_lag``)."""
    clients, trips = clients_of(ctx), RoundTrips()
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
    high = list_offsets(clients, tps, latest(), ctx.remaining(), trips, "latest")
    never = [tp for tp in tps if committed.get((tp.topic, tp.partition)) is None]
    low = list_offsets(clients, never, earliest(), ctx.remaining(), trips, "earliest")

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
