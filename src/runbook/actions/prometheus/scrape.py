"""One ``/metrics`` endpoint read and filtered (seed 001's ``curl …/metrics | grep goqueue_``)."""

from __future__ import annotations

import math
import re

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.prometheus.client import BACKEND, parse_metrics, scrape_text
from runbook.actions.prometheus.models import ScrapedSample, ScrapeParams, ScrapeResult


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ActionError(f"{what}: bad regular expression {pattern!r}: {exc}", backend=BACKEND) from None


def scrape(ctx: ActionContext, p: ScrapeParams) -> ScrapeResult:
    name_re = _compile(p.match, "match")
    label_res = {k: _compile(v, f"labels.{k}") for k, v in p.labels.items()}
    text = scrape_text(ctx, p.url)
    total_seen = 0
    matched: list[ScrapedSample] = []
    count = 0
    total = 0.0
    for s in parse_metrics(text):
        total_seen += 1
        if not name_re.search(s.name):
            continue
        if any(s.labels.get(k) is None or not r.fullmatch(s.labels[k]) for k, r in label_res.items()):
            continue
        count += 1
        finite = s.value if math.isfinite(s.value) else None
        if finite is not None:
            total += finite
        if len(matched) < p.limit:
            matched.append(ScrapedSample(name=s.name, labels=s.labels, value=finite))
    what = f"/{p.match}/" if p.match else "all"
    return ScrapeResult(
        url=p.url,
        samples_total=total_seen,
        matched=count,
        samples=matched,
        truncated=count > len(matched),
        total=total if count else None,
        summary=f"{p.url}: {count} of {total_seen} samples match {what}"
        + (f", sum {total:.4g}" if count else ""),
    )
