"""PromQL through the HTTP API: instant vectors/scalars and range summaries (first, last, min, max, rate)."""

from __future__ import annotations

import math
import time
from typing import Any

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.prometheus.client import BACKEND, api_get, configured
from runbook.actions.prometheus.models import (
    QueryParams,
    QueryResult,
    RangeParams,
    RangeResult,
    RangeSeries,
    SeriesValue,
)
from runbook.core.durations import format_duration

NOT_CHECKED = "metrics not checked: PROMETHEUS_URL is not set"


def number(text: Any) -> float | None:
    """A sample value as Prometheus sends it (a string); NaN and infinities become None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _breached(values: list[float], above: float | None, below: float | None) -> bool | None:
    if above is None and below is None:
        return None
    return any((above is not None and v > above) or (below is not None and v < below) for v in values)


def _labels(metric: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in metric.items()} if isinstance(metric, dict) else {}


def _instant_series(data: dict[str, Any]) -> tuple[str, list[SeriesValue]]:
    kind = str(data.get("resultType") or "")
    result = data.get("result")
    if kind == "vector" and isinstance(result, list):
        return kind, [
            SeriesValue(labels=_labels(r.get("metric")), value=number((r.get("value") or [0, None])[1]))
            for r in result
            if isinstance(r, dict)
        ]
    if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        return kind, [SeriesValue(labels={}, value=number(result[1]))]
    if kind == "matrix":
        raise ActionError(
            "an instant query returned a range vector: use prometheus.query_range", backend=BACKEND
        )
    return kind, []


def _order(value: float | None) -> float:
    return value if value is not None else -math.inf


def instant(ctx: ActionContext, p: QueryParams) -> QueryResult:
    if not configured(ctx.settings):
        return QueryResult(checked=False, query=p.query, summary=NOT_CHECKED)
    args: dict[str, Any] = {"query": p.query}
    if p.time:
        args["time"] = p.time
    kind, series = _instant_series(api_get(ctx, "query", args))
    series.sort(key=lambda s: _order(s.value), reverse=True)
    values = [s.value for s in series if s.value is not None]
    out = QueryResult(
        checked=True,
        query=p.query,
        result_type=kind,
        count=len(series),
        series=series[: p.limit],
        truncated=len(series) > p.limit,
        value=max(values) if values else None,
        min=min(values) if values else None,
        max=max(values) if values else None,
        breached=_breached(values, p.above, p.below),
    )
    out.summary = _instant_summary(out)
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _instant_summary(r: QueryResult) -> str:
    if not r.series:
        return f"{r.query}: no data"
    if r.count == 1:
        head = f"{r.query} = {_fmt(r.value)}"
    else:
        head = f"{r.query}: {r.count} series, max {_fmt(r.max)}, min {_fmt(r.min)}"
    return head + (" (threshold crossed)" if r.breached else "")


def _range_series(raw: dict[str, Any]) -> RangeSeries:
    points = [(float(t), number(v)) for t, v in raw.get("values") or [] if number(t) is not None]
    known = [(t, v) for t, v in points if v is not None]
    first = known[0] if known else None
    last = known[-1] if known else None
    change = last[1] - first[1] if first and last else None
    elapsed = last[0] - first[0] if first and last else 0.0
    vals = [v for _, v in known]
    return RangeSeries(
        labels=_labels(raw.get("metric")),
        points=len(points),
        first=first[1] if first else None,
        last=last[1] if last else None,
        min=min(vals) if vals else None,
        max=max(vals) if vals else None,
        change=change,
        rate_per_second=change / elapsed if change is not None and elapsed > 0 else None,
    )


def window(ctx: ActionContext, p: RangeParams) -> RangeResult:
    if not configured(ctx.settings):
        return RangeResult(checked=False, query=p.query, summary=NOT_CHECKED)
    end = _timestamp(p.end) if p.end else time.time()
    args: dict[str, Any] = {"query": p.query, "start": end - p.window, "end": end, "step": p.step}
    data = api_get(ctx, "query_range", args)
    if data.get("resultType") != "matrix":
        raise ActionError(f"range query returned {data.get('resultType')!r}, not a matrix", backend=BACKEND)
    series = [_range_series(r) for r in data.get("result") or [] if isinstance(r, dict)]
    series.sort(key=lambda s: _order(s.last), reverse=True)
    mins = [s.min for s in series if s.min is not None]
    maxs = [s.max for s in series if s.max is not None]
    top = series[0] if series else None
    out = RangeResult(
        checked=True,
        query=p.query,
        window_seconds=p.window,
        step_seconds=p.step,
        count=len(series),
        series=series[: p.limit],
        truncated=len(series) > p.limit,
        first=top.first if top else None,
        last=top.last if top else None,
        change=top.change if top else None,
        rate_per_second=top.rate_per_second if top else None,
        min=min(mins) if mins else None,
        max=max(maxs) if maxs else None,
        breached=_breached([*mins, *maxs], p.above, p.below),
    )
    span = format_duration(p.window)
    if top is None:
        out.summary = f"{p.query} over {span}: no data"
    else:
        out.summary = (
            f"{p.query} over {span}: {_fmt(top.first)} -> {_fmt(top.last)}"
            f" (min {_fmt(out.min)}, max {_fmt(out.max)}"
            + (f", {out.count} series)" if out.count > 1 else ")")
            + (" (threshold crossed)" if out.breached else "")
        )
    return out


def _timestamp(text: str) -> float:
    """Unix seconds or RFC 3339 (``2026-11-22T10:00:00Z``) as unix seconds."""
    from datetime import datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ActionError(f"end {text!r} is neither RFC 3339 nor unix seconds", backend=BACKEND) from None
