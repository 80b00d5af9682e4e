"""``POST /webhooks/alertmanager``: Alertmanager's webhook (version 4) as a trigger.

Authentication is what Alertmanager's ``http_config`` can send: ``Authorization: Bearer <token>``,
compared in constant time with ``RUNBOOK_ALERTMANAGER_TOKEN``. It is checked *before* the body is
read (a stranger cannot make the gateway read or store anything: 401); the body is then read through
:func:`runbook.gateway.bodies.read_limited` (413 over :data:`MAX_BODY`).

Each alert is matched against every playbook's ``triggers.alertmanager`` (alert name and label
regexes, status); the trigger's ``params`` are rendered in the expression sandbox with the alert as
``alert`` and checked against the playbook's param types, patterns and enums, because alert labels
are whatever the alerting rules (and the metrics they read) put there. An alert whose params do not
pass starts nothing for that playbook (logged, counted); a broken playbook is skipped by the catalog;
neither breaks intake for the others. The store keeps one run per (fingerprint, playbook) while the
alert fires (:mod:`runbook.store.alerts`); ``resolved`` is noted on the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter

from runbook.compiler.params import ParamError, coerce_params
from runbook.core.events import Event, Kind
from runbook.core.expressions import render_value, wrap
from runbook.core.redact import redact
from runbook.core.sandbox import ExpressionError
from runbook.gateway import metrics
from runbook.gateway.bodies import BodyTooLarge, read_limited
from runbook.spec.models import AlertmanagerTrigger, Playbook
from runbook.store.alerts import AlertIntake, AlertRun, AlertStore
from runbook.store.timeline import TimelineStore

log = logging.getLogger("runbook.gateway")
MAX_BODY = 1024 * 1024  # Alertmanager groups can be large; anything over this is refused unread
STORE_BUDGET = 2.0
_FINGERPRINT = re.compile(r"[A-Za-z0-9]{1,64}")
_MAX_LABEL = 4096

DELIVERIES = Counter(
    "runbook_alertmanager_deliveries_total",
    "Alertmanager notifications by outcome (accepted, duplicate, unauthorized, malformed, too_large,"
    " unavailable)",
    ["outcome"],
    registry=metrics.REGISTRY,
)
ALERTS_REFUSED = Counter(
    "runbook_alertmanager_alerts_refused_total",
    "Alerts that matched a playbook but whose mapped params were refused (type, pattern, enum, template)",
    ["playbook"],
    registry=metrics.REGISTRY,
)


class MalformedNotification(ValueError):
    """JSON that is not an Alertmanager version 4 notification."""


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str
    generator_url: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def view(self) -> dict[str, Any]:
        """What a trigger's params template reads as ``alert``."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at,
            "fingerprint": self.fingerprint,
            "generatorURL": self.generator_url,
            "name": self.name,
        }


@dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    alerts: list[Alert]

    def delivery_id(self) -> str:
        """Signed-equivalent content only: group key and each alert's fingerprint, status, start."""
        parts = sorted((a.fingerprint, a.status, a.starts_at) for a in self.alerts)
        digest = hashlib.sha256(json.dumps([self.group_key, self.status, parts]).encode()).hexdigest()
        return f"alertmanager:{digest}"


def authorized(header: str | None, token: str | None) -> bool:
    """``Authorization: Bearer <token>`` equal to the configured token, compared in constant time."""
    if not token:
        return False
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= _MAX_LABEL for k, v in value.items()
    ):
        raise MalformedNotification(f"{what} must map names to strings of at most {_MAX_LABEL} characters")
    return dict(value)


def parse_notification(payload: Any) -> Notification:
    if not isinstance(payload, dict) or str(payload.get("version")) != "4":
        raise MalformedNotification("not an Alertmanager version 4 notification")
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list):
        raise MalformedNotification("alerts must be a list")
    alerts = []
    for raw in raw_alerts:
        if not isinstance(raw, dict):
            raise MalformedNotification("an alert must be an object")
        fingerprint = raw.get("fingerprint")
        status = raw.get("status")
        if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
            raise MalformedNotification("an alert needs a fingerprint (letters and digits)")
        if status not in ("firing", "resolved"):
            raise MalformedNotification("an alert's status is firing or resolved")
        alerts.append(
            Alert(
                status=status,
                labels=_strings(raw.get("labels"), "labels"),
                annotations=_strings(raw.get("annotations"), "annotations"),
                starts_at=str(raw.get("startsAt") or "")[:64],
                fingerprint=fingerprint,
                generator_url=str(raw.get("generatorURL") or "")[:2000],
            )
        )
    return Notification(str(payload.get("groupKey") or "")[:2000], str(payload.get("status") or ""), alerts)


def trigger_matches(trigger: AlertmanagerTrigger, alert: Alert) -> bool:
    if alert.status != trigger.status:
        return False
    if trigger.alertname is not None and not re.fullmatch(trigger.alertname, alert.name):
        return False
    return all(
        label in alert.labels and re.fullmatch(pattern, alert.labels[label])
        for label, pattern in trigger.labels.items()
    )


def mapped_params(playbook: Playbook, trigger: AlertmanagerTrigger, alert: Alert) -> dict[str, Any]:
    """The trigger's params rendered over the alert in the sandbox and checked against the playbook's
    declarations; :class:`ParamError` when a value does not fit (the alert then starts nothing)."""
    try:
        rendered = render_value(dict(trigger.params), {"alert": wrap(alert.view())})
    except ExpressionError as exc:
        raise ParamError(str(exc)) from None
    coerce_params(playbook, rendered)  # every problem at once; defaults stay the playbook's own
    return {name: playbook.params[name].coerce(name, value) for name, value in rendered.items()}


def runs_for(playbooks: list[Playbook], notification: Notification) -> list[AlertRun]:
    """One :class:`AlertRun` per (alert, playbook) whose first matching trigger maps valid params."""
    runs = []
    for alert in notification.alerts:
        for pb in playbooks:
            trigger = next((t for t in pb.triggers.alertmanager if trigger_matches(t, alert)), None)
            if trigger is None:
                continue
            try:
                params = mapped_params(pb, trigger, alert)
            except ParamError as exc:
                ALERTS_REFUSED.labels(pb.name).inc()
                log.warning(
                    "alert %s (%s) matches %s but its params are refused: %s",
                    alert.name[:100],
                    alert.fingerprint,
                    pb.name,
                    redact(str(exc))[:300],
                )
                continue
            once = (
                hashlib.sha256(alert.starts_at.encode()).hexdigest()[:16]
                if alert.status == "resolved"
                else None
            )
            runs.append(AlertRun(alert.fingerprint, pb.name, params, alert.name[:200], alert.starts_at, once))
    return runs


def resolved_note(store: TimelineStore, run_id: str, fingerprint: str, alertname: str | None) -> None:
    store.append(
        Event(
            run_id=run_id,
            kind=Kind.NOTE,
            summary=f"Alertmanager: alert {alertname or fingerprint} resolved",
            actor="alertmanager",
            details={"source": "alertmanager", "status": "resolved", "fingerprint": fingerprint},
        )
    )


def _answer(status: int, outcome: str, **extra: Any) -> JSONResponse:
    DELIVERIES.labels(outcome).inc()
    return JSONResponse({"status": outcome, **extra}, status_code=status)


async def _notification(request: Request, token: str | None) -> tuple[int, Notification | Response]:
    """(body size, the parsed notification) or the refusal: 401 before reading, 413, 400."""
    if not authorized(request.headers.get("authorization"), token):
        why = "no token configured" if not token else "bad or missing bearer token"
        log.warning("alertmanager notification refused (401): %s", why)
        return 0, _answer(401, "unauthorized")
    try:
        raw = await read_limited(request, MAX_BODY)
    except BodyTooLarge as exc:
        log.warning("alertmanager notification refused: %s", exc)
        return 0, _answer(413, "too_large")
    try:
        return len(raw), parse_notification(json.loads(raw))
    except ValueError as exc:  # JSON, Unicode and MalformedNotification
        log.warning("alertmanager notification malformed (400): %s; %d bytes", str(exc)[:200], len(raw))
        return len(raw), _answer(400, "malformed", error="body is not an Alertmanager version 4 notification")


async def alertmanager_delivery(gw: Any, request: Request) -> Response:
    """Authenticate, bound, parse, match, record; then note resolutions and wake the starter."""
    size, notification = await _notification(request, gw.settings.alertmanager_token)
    if isinstance(notification, Response):
        return notification
    catalog = await asyncio.to_thread(gw.catalog.playbooks)
    runs = runs_for(catalog, notification)
    resolved = sorted({a.fingerprint for a in notification.alerts if a.status == "resolved"})
    store = AlertStore(gw.db)
    try:
        accepted: AlertIntake = await asyncio.wait_for(
            asyncio.to_thread(
                store.accept,
                delivery_id=notification.delivery_id(),
                group_key=notification.group_key,
                status=notification.status,
                runs=runs,
                resolved=resolved,
                size=size,
            ),
            timeout=STORE_BUDGET,
        )
    except Exception as exc:  # noqa: BLE001 - store down or slow: Alertmanager retries a 5xx
        log.error("alertmanager notification not stored: %s", redact(f"{type(exc).__name__}: {exc}")[:200])
        return _answer(503, "unavailable")
    if accepted.duplicate:
        return _answer(202, "duplicate")
    for run_id, _playbook, fingerprint, alertname in accepted.runs_to_note:
        await asyncio.to_thread(resolved_note, gw.timeline, run_id, fingerprint, alertname)
    if accepted.new_runs:
        gw.starter.wake()
    log.info(
        "alertmanager %s notification, %d alerts: new runs %s, resolved runs noted %d",
        notification.status,
        len(notification.alerts),
        [pb for _fp, pb in accepted.new_runs] or "none",
        len(accepted.runs_to_note),
    )
    return _answer(
        202,
        "accepted",
        runs=[{"fingerprint": fp, "playbook": pb} for fp, pb in accepted.new_runs],
        noted=len(accepted.runs_to_note),
    )
