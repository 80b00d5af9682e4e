"""Prometheus actions: read-only metric steps (``PROMETHEUS_URL``; without it they say "not checked").

Only this module declares actions (the registry loads it). The work is in ``queries`` (PromQL over
the HTTP API) and ``scrape`` (one ``/metrics`` endpoint, parsed by prometheus_client's parser);
params and results in ``models``; ``client`` alone imports httpx and the parser. Credentials
(basic auth in ``PROMETHEUS_URL``, ``PROMETHEUS_BEARER_TOKEN``) are registered with the redactor.
"""

from __future__ import annotations

from runbook.actions.context import ActionContext
from runbook.actions.prometheus import queries
from runbook.actions.prometheus import scrape as scraping
from runbook.actions.prometheus.models import (
    QueryParams,
    QueryResult,
    RangeParams,
    RangeResult,
    ScrapeParams,
    ScrapeResult,
)
from runbook.actions.registry import action


@action("prometheus.query", summary="Evaluate a PromQL expression now (vector or scalar, with labels)")
def query(ctx: ActionContext, params: QueryParams) -> QueryResult:
    """Instant query. ``steps.<id>.value`` is the single value (the highest when several series
    answer), ``series`` the labelled values, ``breached`` whether ``above``/``below`` was crossed.
    Without ``PROMETHEUS_URL`` the step succeeds with ``checked: false`` ("metrics not checked")."""
    return queries.instant(ctx, params)


@action(
    "prometheus.query_range",
    summary="Summarise PromQL over a window (first, last, min, max, rate)",
)
def query_range(ctx: ActionContext, params: RangeParams) -> RangeResult:
    """Range query over ``window`` ending at ``end`` (default now) every ``step``. Each series is
    summarised (first, last, min, max, change, rate per second); the top-level fields are those of
    the series with the highest last value (min/max over all). ``checked: false`` without Prometheus."""
    return queries.window(ctx, params)


@action("prometheus.scrape", summary="Read one /metrics endpoint, filtered by metric name and labels")
def scrape(ctx: ActionContext, params: ScrapeParams) -> ScrapeResult:
    """Reads an exposition in the Prometheus text format (an application's own ``/metrics``),
    keeps the samples whose name matches ``match`` and whose labels match ``labels`` (regexes), and
    sums them in ``total``. Credentials are sent only to the ``PROMETHEUS_URL`` origin."""
    return scraping.scrape(ctx, params)
