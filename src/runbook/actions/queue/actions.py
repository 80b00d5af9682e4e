"""Generic queue actions: the same questions asked of every queue system, chosen with ``system:``.

``queue.stats`` and ``queue.progress`` say how deep and whether it moves; ``queue.sample`` reads
per-message evidence at the head without creating any; ``queue.quarantine`` moves exactly the
given ids aside; ``queue.redrive`` puts failed / dead-lettered messages back (a canary first, then
the rest). The bodies live in each backend's ``system`` module (see ``queue.system``).
"""

from __future__ import annotations

import time

from runbook.actions.context import ActionContext
from runbook.actions.queue.evidence import find_suspects, progress_verdict
from runbook.actions.queue.models import (
    MoveResult,
    ProgressParams,
    ProgressResult,
    QuarantineParams,
    QueueParams,
    RedriveParams,
    SampleParams,
    SampleResult,
    StatsParams,
    StatsResult,
)
from runbook.actions.queue.system import MoveReport, Target
from runbook.actions.queue.systems import system_of
from runbook.actions.registry import action


def _target(params: QueueParams) -> Target:
    return Target.model_validate(params.model_dump(include=set(Target.model_fields)))


@action(
    "queue.stats", summary="Depth, ready, in flight, workers, oldest age and failed/DLQ size of any queue"
)
def stats(ctx: ActionContext, params: StatsParams) -> StatsResult:
    """One snapshot of the queue in ``system``: depth (RabbitMQ messages, BullMQ waiting + active +
    delayed, table rows not finished, Kafka total lag), ready, in flight, consumers/workers where
    the system knows them, rates, the oldest waiting message's age and the failed set / DLQ size.
    Reads only; never touches a message."""
    s = system_of(params.system).stats(ctx, _target(params))
    result = StatsResult(system=params.system, queue=params.queue, **s.__dict__)
    workers = "unknown" if s.consumers is None else str(s.consumers)
    age = f", oldest {s.oldest_age_seconds:.0f}s" if s.oldest_age_seconds is not None else ""
    dlq = f", {s.dlq_depth} failed/dead-lettered" if s.dlq_depth is not None else ""
    result.summary = (
        f"{params.system} {params.queue}: depth {s.depth} ({s.ready} ready, {s.in_flight} in"
        f" flight), {workers} consumers{age}{dlq}"
    )
    return result


@action("queue.progress", summary="Is a queue being worked? Two reads: progressing/draining/stalled/idle")
def progress(ctx: ActionContext, params: ProgressParams) -> ProgressResult:
    """Reads the queue twice ``window`` seconds apart and compares completions, deliveries and
    retries: a queue that delivers but completes nothing is ``stalled``, never idle. The window is
    cut to the step's remaining time."""
    window = min(params.window, max(0.5, ctx.remaining(params.window + 30.0) - 3.0))
    a, b = system_of(params.system).window(ctx, _target(params), window)
    verdict, evidence = progress_verdict(a, b)
    delivered = b.delivered - a.delivered
    again = b.redelivered - a.redelivered
    return ProgressResult(
        system=params.system,
        queue=params.queue,
        verdict=verdict,  # type: ignore[arg-type]
        evidence=evidence,
        seconds=round(b.at - a.at, 2),
        depth_before=a.depth,
        depth_after=b.depth,
        depth_change=b.depth - a.depth,
        completed=b.completed - a.completed,
        delivered=delivered,
        redelivered=again,
        failed=b.failed - a.failed,
        published=b.published - a.published,
        consumers=b.consumers,
        in_flight=b.in_flight,
        redeliver_ratio=round(again / delivered, 3) if delivered > 0 else (1.0 if again else 0.0),
        summary=f"{params.queue} {verdict}: " + "; ".join(evidence[:2]),
    )


@action("queue.sample", summary="Per-message evidence at the head (attempts, deliveries, x-death, time held)")
def sample(ctx: ActionContext, params: SampleParams) -> SampleResult:
    """Reads the first ``count`` waiting messages and every in-flight one: id, type, attempts made,
    delivery count, x-death, failed reason, how long a worker has held it, age. Never bodies, and
    never evidence of its own making (RabbitMQ's redelivered flag counts only as it was before the
    first look). Suspects come from that evidence alone; when several messages are equally
    suspect, ``indistinguishable`` is true and no suspect is named."""
    messages = system_of(params.system).sample(ctx, _target(params), params.count)
    found = find_suspects(
        messages,
        min_attempts=params.min_attempts,
        min_deaths=params.min_deaths,
        wedge_seconds=params.wedge_seconds,
    )
    ages = [m.age_seconds for m in messages if m.age_seconds is not None]
    if found.indistinguishable:
        said = f"{len(found.candidates)} equally suspect messages, none can be told apart"
    else:
        said = f"{len(found.ids)} suspect(s)" + (f": {', '.join(found.ids[:10])}" if found.ids else "")
    return SampleResult(
        system=params.system,
        queue=params.queue,
        count=len(messages),
        messages=[m.row() for m in messages],
        suspects=found.ids,
        suspect_count=len(found.ids),
        strong_suspects=found.strong,
        suspect_evidence=found.evidence,
        indistinguishable=found.indistinguishable,
        candidates=found.candidates,
        wedged=found.wedged,
        oldest_age_seconds=max(ages) if ages else None,
        max_attempts=max((m.attempts or m.delivery_count or 0 for m in messages), default=0),
        summary=f"sampled {len(messages)} messages of {params.queue}; {said}",
    )


def _moved(params: QueueParams, report: MoveReport, what: str) -> MoveResult:
    return MoveResult(
        system=params.system,
        queue=params.queue,
        moved=report.moved,
        ids=report.ids,
        missing=report.missing,
        remaining=report.remaining,
        destination=report.destination,
        seconds=report.seconds,
        warnings=report.warnings,
        summary=f"{what} {report.moved} message(s) of {params.queue} -> {report.destination}"
        + (f"; not found: {', '.join(report.missing[:10])}" if report.missing else ""),
    )


def describe_quarantine(ctx: ActionContext, params: QuarantineParams) -> str:
    return system_of(params.system).describe_quarantine(ctx, _target(params), params.ids)


@action(
    "queue.quarantine",
    summary="Move exactly the given message ids aside (quarantine), nothing else",
    destructive=True,
    describe=describe_quarantine,
)
def quarantine(ctx: ActionContext, params: QuarantineParams) -> MoveResult:
    """Moves the named messages, and only those, out of the queue's way: RabbitMQ to
    ``quarantine_queue`` (confirm before ack), BullMQ to failed as ``job.moveToFailed`` does (atomic,
    data kept, reason recorded), a table queue into its DLQ table and marked failed in one
    transaction. Ids not found are reported, never substituted by others."""
    started = time.monotonic()
    report = system_of(params.system).quarantine(ctx, _target(params), params.ids, params.reason)
    report.seconds = report.seconds or round(time.monotonic() - started, 3)
    return _moved(params, report, "quarantined")


def describe_redrive(ctx: ActionContext, params: RedriveParams) -> str:
    return system_of(params.system).describe_redrive(ctx, _target(params), params.count)


@action(
    "queue.redrive",
    summary="Put failed / dead-lettered messages back: a canary of N, or the rest",
    destructive=True,
    describe=describe_redrive,
)
def redrive(ctx: ActionContext, params: RedriveParams) -> MoveResult:
    """Moves the oldest ``count`` (all without it) failed messages back to the queue: RabbitMQ from
    ``dlq`` with confirm-before-ack, BullMQ failed -> wait (``retryJobs``' own script, quarantined
    jobs skipped), a table queue's failed rows back to ready. Nothing is lost if killed midway."""
    report = system_of(params.system).redrive(ctx, _target(params), params.count)
    return _moved(params, report, "redrove")


__all__ = ["stats", "progress", "sample", "quarantine", "redrive"]
