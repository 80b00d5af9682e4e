"""Prometheus metrics of the gateway and the runs it starts, on a registry of our own.

A private ``CollectorRegistry`` (not prometheus_client's global one) keeps ``/metrics`` to what runbook
means and lets tests build several apps in one process. Other modules record through the small
functions below (e.g. the approvals code calls :func:`observe_approval_latency`), so nobody needs to
know metric names or label sets.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter(
    "runbook_webhooks_total",
    "PagerDuty webhook deliveries by outcome (accepted, duplicate, ignored, unauthorized, malformed, "
    "too_large, spooled)",
    ["outcome"],
    registry=REGISTRY,
)
RUNS_STARTED = Counter(
    "runbook_runs_started_total",
    "Flow runs the gateway created, by playbook and trigger",
    ["playbook", "trigger"],
    registry=REGISTRY,
)
RUN_START_FAILURES = Counter(
    "runbook_run_start_failures_total",
    "Attempts to create a flow run that failed (Prefect down, deployment missing); retried",
    ["playbook", "reason"],
    registry=REGISTRY,
)
APPROVAL_LATENCY = Histogram(
    "runbook_approval_latency_seconds",
    "Time from an approval request to its decision, by outcome",
    ["outcome"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
    registry=REGISTRY,
)
STEP_DURATION = Histogram(
    "runbook_step_duration_seconds",
    "Duration of executed steps by action",
    ["action"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
STEP_FAILURES = Counter(
    "runbook_step_failures_total", "Failed steps by action", ["action"], registry=REGISTRY
)
INTAKE_SECONDS = Histogram(
    "runbook_webhook_intake_seconds",
    "Time to verify and durably accept one webhook (the part PagerDuty waits for)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)


def webhook(outcome: str) -> None:
    WEBHOOKS.labels(outcome=outcome).inc()


def run_started(playbook: str, trigger: str = "pagerduty") -> None:
    RUNS_STARTED.labels(playbook=playbook, trigger=trigger).inc()


def run_start_failed(playbook: str, reason: str) -> None:
    RUN_START_FAILURES.labels(playbook=playbook, reason=reason).inc()


def observe_approval_latency(seconds: float, outcome: str = "approved") -> None:
    """Called by the approvals code when a request is decided (approved, denied, expired)."""
    APPROVAL_LATENCY.labels(outcome=outcome).observe(max(0.0, seconds))


def observe_step(action: str, seconds: float, failed: bool = False) -> None:
    """Called once per executed step (by the engine or a timeline sink)."""
    STEP_DURATION.labels(action=action).observe(max(0.0, seconds))
    if failed:
        STEP_FAILURES.labels(action=action).inc()


class StoreFollower:
    """Feeds step and approval metrics from the shared timeline store at scrape time.

    Steps run in flow-run processes (workers, the fast lane, the CLI), not in the gateway that serves
    ``/metrics``; the store is where all of them meet. Each scrape reads only the events added since
    the previous one, so the cost is proportional to new activity.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.last_id = 0
        self._lock = threading.Lock()

    def sync(self) -> None:
        from runbook.core.events import Kind

        kinds = [
            Kind.STEP_SUCCEEDED,
            Kind.STEP_FAILED,
            Kind.APPROVAL_APPROVED,
            Kind.APPROVAL_DENIED,
            Kind.APPROVAL_EXPIRED,
        ]
        with self._lock:
            while True:
                events = self.store.events_since(self.last_id, kinds)
                if not events:
                    return
                for e in events:
                    self.last_id = max(self.last_id, e.id or 0)
                    self._observe(e)

    @staticmethod
    def _observe(event: Any) -> None:
        d = event.details or {}
        kind = event.kind.value
        if kind.startswith("step."):
            if d.get("will_retry"):
                return
            seconds = d.get("seconds")
            action = str(d.get("action") or "unknown")
            if seconds is not None:
                STEP_DURATION.labels(action=action).observe(max(0.0, float(seconds)))
            if kind == "step.failed":
                STEP_FAILURES.labels(action=action).inc()
        else:
            waited = d.get("waited_seconds")
            if waited is not None:
                observe_approval_latency(float(waited), kind.split(".", 1)[1])


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
