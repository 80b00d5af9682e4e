"""Params and results of the Kafka actions (``kafka.reset_offsets``'s are in ``reset``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from runbook.actions.kafka.health import LIST_CAP
from runbook.actions.registry import ActionResult


class _Params(BaseModel):
    model_config = {"extra": "forbid"}


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
