"""Params and results of the ``prometheus.*`` actions."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from runbook.actions.registry import ActionResult
from runbook.core.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Params(BaseModel):
    model_config = {"extra": "forbid"}


class _Threshold(_Params):
    above: float | None = Field(default=None, description="breached when any value is above this")
    below: float | None = Field(default=None, description="breached when any value is below this")


class QueryParams(_Threshold):
    query: str = Field(min_length=1, max_length=10_000, description="PromQL expression (instant query)")
    time: str | None = Field(
        default=None, description="evaluation time (RFC 3339 or unix seconds); default now"
    )
    limit: int = Field(50, ge=1, le=1000, description="how many series to return (highest values first)")


class RangeParams(_Threshold):
    query: str = Field(min_length=1, max_length=10_000, description="PromQL expression (range query)")
    window: Duration = Field(1800.0, description="how far back from `end` (e.g. 30m, 1h)")
    step: Duration = Field(30.0, description="resolution of the points (e.g. 15s, 1m)")
    end: str | None = Field(
        default=None, description="end of the window (RFC 3339 or unix seconds); default now"
    )
    limit: int = Field(20, ge=1, le=500, description="how many series to return (highest last value first)")

    @field_validator("window", "step")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be above zero")
        return value


class ScrapeParams(_Params):
    url: str = Field(min_length=1, max_length=2000, description="the /metrics endpoint, http(s)")
    match: str = Field(
        "", max_length=500, description="regex searched in each sample's name (e.g. ^goqueue_)"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="label -> regex the whole label value must match"
    )
    limit: int = Field(100, ge=1, le=5000, description="how many matching samples to return")


class SeriesValue(BaseModel):
    labels: dict[str, str]
    value: float | None = Field(description="null when NaN or infinite")


class QueryResult(ActionResult):
    checked: bool = Field(description="false when PROMETHEUS_URL is not set (nothing was read)")
    query: str
    result_type: str = ""
    count: int = 0
    series: list[SeriesValue] = Field(default_factory=list)
    truncated: bool = False
    value: float | None = Field(default=None, description="the single value, or the highest of several")
    min: float | None = None
    max: float | None = None
    breached: bool | None = Field(default=None, description="a threshold (above/below) was crossed")


class RangeSeries(BaseModel):
    labels: dict[str, str]
    points: int
    first: float | None
    last: float | None
    min: float | None
    max: float | None
    change: float | None = Field(description="last - first")
    rate_per_second: float | None = Field(description="(last - first) / seconds between them")


class RangeResult(ActionResult):
    checked: bool
    query: str
    window_seconds: float = 0.0
    step_seconds: float = 0.0
    count: int = 0
    series: list[RangeSeries] = Field(default_factory=list)
    truncated: bool = False
    first: float | None = Field(default=None, description="of the top series (highest last value)")
    last: float | None = None
    change: float | None = None
    rate_per_second: float | None = None
    min: float | None = Field(default=None, description="over every series")
    max: float | None = None
    breached: bool | None = None


class ScrapedSample(BaseModel):
    name: str
    labels: dict[str, str]
    value: float | None


class ScrapeResult(ActionResult):
    checked: bool = True
    url: str
    samples_total: int = 0
    matched: int = 0
    samples: list[ScrapedSample] = Field(default_factory=list)
    truncated: bool = False
    total: float | None = Field(default=None, description="sum of the matching samples' values")
