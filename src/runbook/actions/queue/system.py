"""The queue-system interface every backend implements, and the plain records it returns.

Why an interface: backlog-triage, stuck-queue and daily-hygiene ask the same questions of every
queue (how deep, is it progressing, which messages carry evidence of failing, move exactly these
ids aside, redrive a canary then the rest). Each backend answers them from its own data model;
the playbooks and the verdict rules stay the same whatever ``system`` is.

Evidence rule shared by every implementation: a head sample never *creates* evidence. A message
looks suspect only because of what happened to it before we looked (attempts made, x-death,
delivery counts, time held by a worker), never because the triage itself touched it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions.context import ActionContext


class Target(BaseModel):
    """Where the queue is, in each system's terms; fields a system does not use are ignored."""

    model_config = ConfigDict(extra="forbid")
    queue: str = Field(
        description="queue name (RabbitMQ queue, BullMQ queue, Kafka topic, SQS queue or table queue label)"
    )
    vhost: str = Field("/", description="RabbitMQ virtual host")
    dlq: str | None = Field(
        None,
        description="RabbitMQ dead-letter queue (SQS: only without a redrive policy; others: failed set)",
    )
    quarantine_queue: str | None = Field(
        None, description="RabbitMQ or SQS queue poison messages are moved to"
    )
    prefix: str = Field("bull", description="BullMQ key prefix")
    table: dict[str, Any] | str | None = Field(
        None,
        description="pg_table: a mapping (table, id/status columns ...) or a preset name (starforge, attune)",
    )
    group: str | None = Field(None, description="Kafka consumer group")


@dataclass
class Stats:
    depth: int
    ready: int
    in_flight: int
    consumers: int | None = None
    delayed: int = 0
    publish_rate: float = 0.0
    complete_rate: float = 0.0
    oldest_age_seconds: float | None = None
    dlq_depth: int | None = None
    completed_total: int | None = None
    failed_total: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counters:
    """Monotonic counters read at one instant; two of them make a progress window."""

    at: float
    depth: int
    in_flight: int
    consumers: int | None
    completed: int
    delivered: int
    redelivered: int
    failed: int = 0
    published: int = 0


@dataclass
class Message:
    """Per-message evidence; never a body."""

    id: str
    state: str = "waiting"
    type: str | None = None
    attempts: int | None = None
    delivery_count: int | None = None
    deaths: int = 0
    failed_reason: str | None = None
    in_flight_seconds: float | None = None
    age_seconds: float | None = None
    redelivered_before_look: bool = False
    size: int | None = None

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class MoveReport:
    moved: int
    ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    remaining: int | None = None
    destination: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


class QueueSystem(Protocol):
    """One queue system. Every method is bounded by ``ctx.remaining()``."""

    name: str

    def stats(self, ctx: ActionContext, target: Target) -> Stats: ...

    def window(self, ctx: ActionContext, target: Target, seconds: float) -> tuple[Counters, Counters]:
        """Two reads ``seconds`` apart; their differences are the progress over the window."""
        ...

    def sample(self, ctx: ActionContext, target: Target, count: int) -> list[Message]: ...

    def quarantine(self, ctx: ActionContext, target: Target, ids: list[str], reason: str) -> MoveReport: ...

    def redrive(self, ctx: ActionContext, target: Target, count: int | None) -> MoveReport: ...

    def describe_quarantine(self, ctx: ActionContext, target: Target, ids: list[str]) -> str: ...

    def describe_redrive(self, ctx: ActionContext, target: Target, count: int | None) -> str: ...
