"""Params and results of the generic ``queue.*`` actions (the same shape for every system)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from runbook.actions.queue.system import Target
from runbook.actions.registry import ActionResult

SystemName = Literal["rabbitmq", "bullmq", "pg_table", "kafka", "sqs"]


class QueueParams(Target):
    system: SystemName = Field(
        "rabbitmq", description="queue system: rabbitmq, bullmq, pg_table, kafka or sqs"
    )


class StatsParams(QueueParams):
    pass


class StatsResult(ActionResult):
    system: str
    queue: str
    depth: int
    ready: int
    in_flight: int
    delayed: int = 0
    consumers: int | None = None
    publish_rate: float = 0.0
    complete_rate: float = 0.0
    oldest_age_seconds: float | None = None
    dlq_depth: int | None = None
    completed_total: int | None = None
    failed_total: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ProgressParams(QueueParams):
    window: float = Field(15.0, ge=0.5, le=600, description="seconds between the two reads")


class ProgressResult(ActionResult):
    system: str
    queue: str
    verdict: Literal["idle", "draining", "progressing", "stalled"]
    evidence: list[str]
    seconds: float
    depth_before: int
    depth_after: int
    depth_change: int
    completed: int
    delivered: int
    redelivered: int
    failed: int
    published: int
    consumers: int | None
    in_flight: int
    redeliver_ratio: float


class SampleParams(QueueParams):
    count: int = Field(
        20, ge=1, le=200, description="messages inspected at the head (and every in-flight one)"
    )
    min_attempts: int = Field(3, ge=1, description="attempts / deliveries that mark a message as a suspect")
    min_deaths: int = Field(3, ge=1, description="x-death count that marks a message as a suspect")
    wedge_seconds: float = Field(
        60.0, ge=0, description="held by a worker this long (and 10x the others): wedged"
    )


class SampleResult(ActionResult):
    system: str
    queue: str
    count: int
    messages: list[dict[str, Any]]
    suspects: list[str]
    suspect_count: int
    strong_suspects: list[str] = Field(
        default_factory=list,
        description="suspects on counted evidence (attempts, deliveries, x-death): hold while work completes",
    )
    suspect_evidence: list[str]
    indistinguishable: bool
    candidates: list[str]
    wedged: list[str]
    oldest_age_seconds: float | None
    max_attempts: int


class QuarantineParams(QueueParams):
    ids: list[str] = Field(
        description="exactly the message / job / row ids to move aside", min_length=1, max_length=1000
    )
    reason: str = Field(
        "quarantined by runbook", max_length=200, description="recorded with each moved message"
    )


class RedriveParams(QueueParams):
    count: int | None = Field(None, ge=1, le=1_000_000, description="how many (oldest first); none: all")


class MoveResult(ActionResult):
    system: str
    queue: str
    moved: int
    ids: list[str]
    missing: list[str]
    remaining: int | None
    destination: str
    seconds: float
    warnings: list[str]
