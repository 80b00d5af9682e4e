"""Kafka as a queue system for ``queue.*``: depth is consumer lag, progress is committed-offset movement.

Why no moves: a Kafka "quarantine" or "redrive" is an offset change for a whole partition, which
stays ``kafka.reset_offsets`` behind its own approval and guardrails. The head sample reads each
lagging partition's next messages from the committed offset with a reader outside the group
(``head.sample_head``: nothing is committed, no rebalance); a message's id is ``partition:offset``
and its attempts come from a retry header when the producer or a retry framework sets one.
"""

from __future__ import annotations

import time

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.kafka.head import SampleHeadParams, sample_head
from runbook.actions.kafka.lag import consumer_lag
from runbook.actions.kafka.models import LagParams
from runbook.actions.queue.system import Counters, Message, MoveReport, Stats, Target

BACKEND = "kafka"


def _lag(ctx: ActionContext, target: Target) -> tuple[int, int, int]:
    if not target.group:
        raise ActionError("system kafka needs `group` (the consumer group)", backend=BACKEND)
    topics = [target.queue] if target.queue and target.queue != "*" else None
    r = consumer_lag(ctx, LagParams.model_validate({"group": target.group, "topics": topics}))
    committed = sum(p.committed or 0 for p in r.partitions)
    high = sum(p.high_watermark or 0 for p in r.partitions)
    return r.total_lag, committed, high


class KafkaLag:
    name = "kafka"

    def stats(self, ctx: ActionContext, target: Target) -> Stats:
        lag, committed, high = _lag(ctx, target)
        return Stats(
            depth=lag,
            ready=lag,
            in_flight=0,
            completed_total=committed,
            details={"high_watermark_total": high},
        )

    def window(self, ctx: ActionContext, target: Target, seconds: float) -> tuple[Counters, Counters]:
        def read() -> Counters:
            lag, committed, high = _lag(ctx, target)
            return Counters(
                at=time.time(),
                depth=lag,
                in_flight=0,
                consumers=None,
                completed=committed,
                delivered=committed,
                redelivered=0,
                published=high,
            )

        a = read()
        time.sleep(seconds)
        return a, read()

    def sample(self, ctx: ActionContext, target: Target, count: int) -> list[Message]:
        if not target.group:
            raise ActionError("system kafka needs `group` (the consumer group)", backend=BACKEND)
        topics = [target.queue] if target.queue and target.queue != "*" else None
        r = sample_head(
            ctx,
            SampleHeadParams(
                group=target.group,
                topics=topics,
                per_partition=max(1, min(count, 100)),
                max_messages=max(1, min(count, 1000)),
                max_seconds=10.0,
            ),
        )
        return [
            Message(
                id=f"{m.partition}:{m.offset}",
                attempts=m.retry_count,
                age_seconds=m.age_seconds,
                size=m.value_size,
            )
            for m in r.messages
        ]

    def _refuse(self) -> ActionError:
        return ActionError(
            "Kafka offsets move only through kafka.reset_offsets (behind its approval)", backend=BACKEND
        )

    def describe_quarantine(self, ctx: ActionContext, target: Target, ids: list[str]) -> str:
        raise self._refuse()

    def quarantine(self, ctx: ActionContext, target: Target, ids: list[str], reason: str) -> MoveReport:
        raise self._refuse()

    def describe_redrive(self, ctx: ActionContext, target: Target, count: int | None) -> str:
        raise self._refuse()

    def redrive(self, ctx: ActionContext, target: Target, count: int | None) -> MoveReport:
        raise self._refuse()
