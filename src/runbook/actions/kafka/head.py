"""The head of what a consumer group has not consumed, read without committing: ``kafka.sample_head``.

Why a separate reader: the group's own consumers must not see a rebalance and its committed offsets
must not move because we looked. The reader (``client.read_at``) uses ``assign()`` at each lagging
partition's committed offset under a throw-away group id with auto-commit and offset-store off, and
is closed before returning; the group's offsets are read back unchanged by the tests.

Per-message evidence only: partition, offset, timestamp and age, key and value sizes, header names,
and a retry count when a header that carries one is present (``retry-count``, ``x-retry``...). Never
a body, a key or any other header value (they may carry personal data or tokens).
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import BaseModel, Field

from runbook.actions.context import ActionContext
from runbook.actions.kafka.client import RoundTrips, clients_of, read_at
from runbook.actions.kafka.lag import consumer_lag
from runbook.actions.kafka.models import LagParams
from runbook.actions.registry import ActionResult

# Header names (lower-cased) that retry frameworks use for "how many times was this tried":
# Spring Kafka (kafka_deliveryAttempt, retry_topic-attempts), common hand-rolled ones, KafkaJS/Karafka.
RETRY_HEADER = re.compile(
    r"^(x-)?(retry[-_]?count|retries|retry|attempts?|delivery[-_]?(count|attempt)|redelivery[-_]?count)$"
    r"|^kafka_deliveryattempt$|^retry_topic-attempts$"
)


class SampleHeadParams(BaseModel):
    model_config = {"extra": "forbid"}

    group: str = Field(min_length=1, description="consumer group whose unconsumed head is read")
    topics: list[str] | None = Field(
        None, description="topics to read (default: every topic the group has committed offsets on)"
    )
    per_partition: int = Field(3, ge=1, le=100, description="messages read at each lagging partition's head")
    max_messages: int = Field(50, ge=1, le=1000, description="most messages read in total")
    max_seconds: float = Field(10.0, gt=0, le=120, description="stop reading after this many seconds")


class HeadMessage(BaseModel):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = Field(description="the message's timestamp (create or log-append time)")
    age_seconds: float | None
    key_size: int | None = Field(description="bytes of the key; null when the message has none")
    value_size: int | None
    headers: list[str] = Field(description="header names only; values are never read out")
    retry_count: int | None = Field(description="from a retry header (retry-count, x-retry...) if any")


class PartitionHead(BaseModel):
    topic: str
    partition: int
    committed: int | None
    high_watermark: int | None
    lag: int | None
    read: int
    oldest_age_seconds: float | None


class SampleHeadResult(ActionResult):
    group: str
    count: int
    messages: list[HeadMessage]
    positions: list[str] = Field(description="'topic[p]@offset' of each message read, for findings")
    partitions: list[PartitionHead]
    oldest_age_seconds: float | None
    max_retry_count: int | None
    retried: int = Field(description="messages that carry a retry count above zero")
    complete: bool = Field(description="false when the count or time bound cut the sample short")


def retry_count(headers: list[tuple[str, bytes | None]]) -> int | None:
    """The largest retry count any retry header carries: ASCII digits, or a 1-8 byte big-endian int."""
    found: int | None = None
    for name, value in headers:
        if value is None or not RETRY_HEADER.match(name.lower()):
            continue
        text = value.strip()
        if text.isdigit() and len(text) <= 12:
            n = int(text)
        elif 1 <= len(value) <= 8:
            n = int.from_bytes(value, "big", signed=False)
        else:
            continue
        found = n if found is None else max(found, n)
    return found


def sample_head(ctx: ActionContext, params: SampleHeadParams) -> SampleHeadResult:
    """Lag first (which partitions lag, from where), then the bounded read at those offsets."""
    lag = consumer_lag(ctx, LagParams(group=params.group, topics=params.topics, top=1))
    lagging = [
        p for p in lag.partitions if p.lag and p.committed is not None and p.high_watermark is not None
    ]
    starts = {(p.topic, p.partition): (int(p.committed or 0), int(p.high_watermark or 0)) for p in lagging}
    budget = min(params.max_seconds, max(0.5, ctx.remaining() - 2.0))
    raw, complete = read_at(
        clients_of(ctx), starts, params.per_partition, params.max_messages, budget, RoundTrips()
    )
    now_ms = time.time() * 1000
    messages = [_evidence(m, now_ms) for m in raw]
    per: dict[tuple[str, int], list[HeadMessage]] = {}
    for m in messages:
        per.setdefault((m.topic, m.partition), []).append(m)
    heads = [
        PartitionHead(
            topic=p.topic,
            partition=p.partition,
            committed=p.committed,
            high_watermark=p.high_watermark,
            lag=p.lag,
            read=len(per.get((p.topic, p.partition), [])),
            oldest_age_seconds=_oldest(per.get((p.topic, p.partition), [])),
        )
        for p in lagging
    ]
    retries = [m.retry_count for m in messages if m.retry_count is not None]
    oldest = _oldest(messages)
    said = (
        f"sampled {len(messages)} head message(s) of {len(lagging)} lagging partition(s)"
        f" of group {params.group}"
    )
    if oldest is not None:
        said += f"; oldest {oldest:.0f}s"
    if retries:
        said += f"; max retry count {max(retries)}"
    if not complete:
        said += " (cut short by the count or time bound)"
    return SampleHeadResult(
        summary=said,
        group=params.group,
        count=len(messages),
        messages=messages,
        positions=[f"{m.topic}[{m.partition}]@{m.offset}" for m in messages],
        partitions=heads,
        oldest_age_seconds=oldest,
        max_retry_count=max(retries) if retries else None,
        retried=sum(1 for r in retries if r > 0),
        complete=complete,
    )


def _oldest(messages: list[HeadMessage]) -> float | None:
    ages = [m.age_seconds for m in messages if m.age_seconds is not None]
    return max(ages) if ages else None


def _evidence(m: dict[str, Any], now_ms: float) -> HeadMessage:
    ts = m.get("timestamp_ms")
    headers: list[tuple[str, bytes | None]] = m.get("headers") or []
    return HeadMessage(
        topic=m["topic"],
        partition=m["partition"],
        offset=m["offset"],
        timestamp_ms=ts,
        age_seconds=round(max(0.0, (now_ms - ts) / 1000), 1) if ts is not None else None,
        key_size=m.get("key_size"),
        value_size=m.get("value_size"),
        headers=sorted({name for name, _ in headers}),
        retry_count=retry_count(headers),
    )
