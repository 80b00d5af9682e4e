"""RabbitMQ as a queue system for the generic ``queue.*`` actions.

Stats and progress reuse the management-API readers of ``rabbitmq.queue_stats`` (without the head
peek: oldest age comes from the sample). The sample takes per-message evidence that the broker
recorded *before* we looked: x-death counts, quorum queues' ``x-delivery-count`` and the
``redelivered`` flag of a message's **first** sighting only (our own management ``get`` requeues
and so sets it; later sightings are ours). A hot requeue loop keeps its message in flight most of
the time, so when the first read finds no evidence while consumers hold messages, a few single
reads try to catch it ready. Quarantine moves exactly the given message ids (confirm before ack;
the rest return to their positions); redrive is the confirm-before-ack move from the DLQ.
"""

from __future__ import annotations

import time

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.queue.system import Counters, Message, MoveReport, Stats, Target
from runbook.actions.rabbitmq import ops
from runbook.actions.rabbitmq.client import BACKEND, BasicProperties, amqp, management, passive_counts
from runbook.actions.rabbitmq.inspect import Sample, death_summary
from runbook.actions.rabbitmq.models import MoveParams, QueueStatsParams
from runbook.actions.rabbitmq.moves import ClientMover
from runbook.actions.rabbitmq.queues import management_get, queue_stats

CATCH_TRIES = 40


class RabbitMQ:
    name = "rabbitmq"

    def stats(self, ctx: ActionContext, target: Target) -> Stats:
        s = queue_stats(ctx, QueueStatsParams.model_validate({"queue": target.queue, "vhost": target.vhost}))
        dlq = None
        if target.dlq:
            dlq, _ = passive_counts(amqp(ctx), target.vhost, target.dlq, ctx.remaining())
        return Stats(
            depth=s.messages,
            ready=s.ready,
            in_flight=s.unacked,
            consumers=s.consumers,
            publish_rate=s.publish_rate,
            complete_rate=s.ack_rate,
            dlq_depth=dlq,
            completed_total=s.acked_total,
            details={"type": s.type, "redeliver_rate": s.redeliver_rate, "deliver_rate": s.deliver_rate},
        )

    def window(self, ctx: ActionContext, target: Target, seconds: float) -> tuple[Counters, Counters]:
        mgmt = management(ctx)

        def read() -> Counters:
            s = Sample.from_queue(
                mgmt.queue(target.vhost, target.queue, timeout=ctx.remaining()), time.time()
            )
            return Counters(
                at=s.at,
                depth=s.messages,
                in_flight=s.unacked,
                consumers=s.consumers,
                completed=s.acked,
                delivered=s.delivered,
                redelivered=s.redelivered,
                published=s.published,
            )

        a = read()
        time.sleep(max(seconds, 5.5))  # counters are sampled every 5 s
        return a, read()

    def _read(self, ctx: ActionContext, target: Target, count: int, seen: dict[str, Message]) -> None:
        got = management_get(management(ctx), target.vhost, target.queue, count, ctx.remaining())
        now = time.time()
        for i, doc in enumerate(got):
            props = doc.get("properties") or {}
            headers = props.get("headers") or {}
            key = str(props.get("message_id") or f"(no id, position {i})")
            if key in seen:
                continue  # already touched by us: its redelivered flag is now our own doing
            deaths, _ = death_summary(headers)
            stamp = props.get("timestamp")
            dc = headers.get("x-delivery-count")
            seen[key] = Message(
                id=key,
                type=props.get("type"),
                deaths=deaths,
                delivery_count=int(dc) if isinstance(dc, int) else None,
                redelivered_before_look=bool(doc.get("redelivered")),
                age_seconds=round(now - stamp, 1) if isinstance(stamp, int) else None,
                size=int(doc.get("payload_bytes") or 0),
            )

    def sample(self, ctx: ActionContext, target: Target, count: int) -> list[Message]:
        seen: dict[str, Message] = {}
        self._read(ctx, target, count, seen)
        evidence = any(m.deaths or m.delivery_count or m.redelivered_before_look for m in seen.values())
        if not evidence:
            _, consumers = passive_counts(amqp(ctx), target.vhost, target.queue, ctx.remaining())
            for _ in range(CATCH_TRIES if consumers else 0):
                # catch a requeue loop's (or a crashed prefetch batch's) messages while they are
                # ready again: only their first sighting counts
                time.sleep(0.05)
                self._read(ctx, target, count, seen)
                if any(m.redelivered_before_look for m in seen.values()):
                    break
        return list(seen.values())

    def describe_quarantine(self, ctx: ActionContext, target: Target, ids: list[str]) -> str:
        dest = self._quarantine_queue(target)
        ready, consumers = passive_counts(amqp(ctx), target.vhost, target.queue, ctx.remaining())
        return (
            f"move exactly the messages with message_id in ({', '.join(ids[:20])}) from {target.queue!r}"
            f" ({ready} ready, {consumers} consumers) to {dest!r} on vhost {target.vhost!r}, publisher"
            " confirm before ack; every other message returns to its position"
        )

    @staticmethod
    def _quarantine_queue(target: Target) -> str:
        if not target.quarantine_queue:
            raise ActionError("system rabbitmq needs quarantine_queue for a quarantine", backend=BACKEND)
        return target.quarantine_queue

    def quarantine(self, ctx: ActionContext, target: Target, ids: list[str], reason: str) -> MoveReport:
        dest = self._quarantine_queue(target)
        connector = amqp(ctx)
        passive_counts(connector, target.vhost, target.queue, ctx.remaining())
        passive_counts(connector, target.vhost, dest, ctx.remaining())
        wanted = set(ids)
        moved_ids: list[str] = []

        def match(props: BasicProperties) -> bool:
            hit = props.message_id in wanted and props.message_id not in moved_ids
            if hit:
                moved_ids.append(str(props.message_id))
            return hit

        started = time.monotonic()
        outcome = ClientMover(
            connector.parameters(target.vhost, ctx.remaining()),
            target.queue,
            dest,
            limit=len(wanted),
            matcher=match,
            deadline=time.monotonic() + max(1.0, ctx.remaining(600.0) - 5.0),
        ).run()
        return MoveReport(
            moved=outcome.moved,
            ids=moved_ids[: outcome.moved],
            missing=[i for i in ids if i not in moved_ids],
            destination=dest,
            seconds=round(time.monotonic() - started, 3),
            warnings=outcome.warnings,
        )

    def describe_redrive(self, ctx: ActionContext, target: Target, count: int | None) -> str:
        return ops.describe_move(ctx, self._move(target, count))

    def _move(self, target: Target, count: int | None) -> MoveParams:
        if not target.dlq:
            raise ActionError("system rabbitmq needs dlq for a redrive", backend=BACKEND)
        return MoveParams.model_validate(
            {
                "source": target.dlq,
                "destination": target.queue,
                "vhost": target.vhost,
                "mode": "first" if count else "all",
                "count": count,
                "method": "client" if count else "auto",
            }
        )

    def redrive(self, ctx: ActionContext, target: Target, count: int | None) -> MoveReport:
        r = ops.move(ctx, self._move(target, count))
        return MoveReport(
            moved=r.moved,
            remaining=r.remaining,
            destination=target.queue,
            seconds=r.seconds,
            warnings=r.warnings,
        )
