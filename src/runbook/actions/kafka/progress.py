"""Stuck or slow? Committed-offset movement per partition over a window: ``kafka.lag_progress``.

Why per partition: one consumer of a group wedged on a poison message leaves its partitions'
committed offsets frozen while the others move, and the group total hides it. The rule, stated
once here and in the action's docs:

- ``stuck``: lag > 0 and the committed offset did not move over the window;
- ``slow``: the committed offset moved but the lag grew (producers outpace the consumer);
- ``catching_up``: it moved and the lag did not grow;
- ``caught_up``: no lag at the end of the window.

The group's state is the worst of its partitions' in that order (stuck, slow, catching_up,
caught_up): a single stuck partition is what an operator must hear first.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from runbook.actions.context import ActionContext
from runbook.actions.kafka.lag import consumer_lag
from runbook.actions.kafka.models import LagParams, LagResult
from runbook.actions.registry import ActionResult

State = Literal["stuck", "slow", "catching_up", "caught_up"]
ORDER: tuple[State, ...] = ("stuck", "slow", "catching_up", "caught_up")


class LagProgressParams(BaseModel):
    model_config = {"extra": "forbid"}

    group: str = Field(min_length=1, description="consumer group")
    topics: list[str] | None = Field(
        None, description="topics to watch (default: every topic the group has committed offsets on)"
    )
    window: float = Field(30.0, gt=0, le=3600, description="seconds between the two reads")


class PartitionProgress(BaseModel):
    topic: str
    partition: int
    committed_before: int | None
    committed_after: int | None
    consumed: int = Field(description="committed offset movement over the window")
    lag_before: int | None
    lag_after: int | None
    lag_change: int | None
    state: State


class LagProgressResult(ActionResult):
    group: str
    state: State
    seconds: float
    stuck: list[str] = Field(description="topic[partition] of stuck partitions")
    slow: list[str]
    consumed: int
    produced: int
    lag_before: int
    lag_after: int
    consume_rate: float = Field(description="committed offsets per second over the window")
    produce_rate: float
    partitions: list[PartitionProgress]
    lags: list[str] = Field(description="'topic[p]=lag state' per partition, for findings")
    evidence: list[str]


def partition_state(consumed: int, lag_before: int | None, lag_after: int | None) -> State:
    """The rule of the module docstring for one partition."""
    if not lag_after:
        return "caught_up"
    if consumed <= 0:
        return "stuck"
    if lag_before is not None and lag_after > lag_before:
        return "slow"
    return "catching_up"


def compare(a: LagResult, b: LagResult, seconds: float) -> LagProgressResult:
    """Per-partition movement between two lag reads ``seconds`` apart (pure)."""
    before = {(p.topic, p.partition): p for p in a.partitions}
    rows: list[PartitionProgress] = []
    produced = 0
    for p in b.partitions:
        q = before.get((p.topic, p.partition))
        c0 = q.committed if q else None
        moved = (p.committed or 0) - (c0 or 0) if p.committed is not None else 0
        if q and q.high_watermark is not None and p.high_watermark is not None:
            produced += max(0, p.high_watermark - q.high_watermark)
        l0 = q.lag if q else None
        rows.append(
            PartitionProgress(
                topic=p.topic,
                partition=p.partition,
                committed_before=c0,
                committed_after=p.committed,
                consumed=max(0, moved),
                lag_before=l0,
                lag_after=p.lag,
                lag_change=(p.lag - l0) if p.lag is not None and l0 is not None else None,
                state=partition_state(max(0, moved), l0, p.lag),
            )
        )
    states = {r.state for r in rows}
    state: State = next((s for s in ORDER if s in states), "caught_up")
    stuck = [f"{r.topic}[{r.partition}]" for r in rows if r.state == "stuck"]
    slow = [f"{r.topic}[{r.partition}]" for r in rows if r.state == "slow"]
    consumed = sum(r.consumed for r in rows)
    secs = max(seconds, 1e-6)
    evidence = [
        f"over {seconds:.0f}s the group committed {consumed:,} offsets ({consumed / secs:.1f}/s) while "
        f"{produced:,} were produced ({produced / secs:.1f}/s); lag {a.total_lag:,} -> {b.total_lag:,}"
    ]
    if stuck:
        frozen = ", ".join(
            f"{r.topic}[{r.partition}]@{r.committed_after}" for r in rows if r.state == "stuck"
        )
        evidence.append(
            f"{len(stuck)} partition(s) with lag whose committed offset did not move: {frozen[:400]}"
        )
    if slow:
        evidence.append(f"{len(slow)} partition(s) moving but with growing lag: {', '.join(slow)[:400]}")
    return LagProgressResult(
        summary=f"group {b.group} {state}: " + "; ".join(evidence[:2]),
        group=b.group,
        state=state,
        seconds=round(seconds, 2),
        stuck=stuck,
        slow=slow,
        consumed=consumed,
        produced=produced,
        lag_before=a.total_lag,
        lag_after=b.total_lag,
        consume_rate=round(consumed / secs, 2),
        produce_rate=round(produced / secs, 2),
        partitions=rows,
        lags=[f"{r.topic}[{r.partition}]={r.lag_after} {r.state}" for r in rows],
        evidence=evidence,
    )


def lag_progress(ctx: ActionContext, params: LagProgressParams) -> LagProgressResult:
    """Two lag reads ``window`` seconds apart (cut to the step's remaining time), compared."""
    window = min(params.window, max(0.5, ctx.remaining(params.window + 30.0) - 3.0))
    lag_params = LagParams(group=params.group, topics=params.topics, top=1)
    start = time.monotonic()
    a = consumer_lag(ctx, lag_params)
    time.sleep(max(0.0, window - (time.monotonic() - start)))
    b = consumer_lag(ctx, lag_params)
    return compare(a, b, time.monotonic() - start)
