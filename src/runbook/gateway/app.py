"""The HTTP gateway: PagerDuty webhooks in, health and metrics out, Slack interactivity mounted.

PagerDuty waits 5 s for a 2xx, retries 5xx and disables a subscription after three failed deliveries,
so the webhook path does the least that makes an event safe: verify the signature over the raw body,
parse, match playbooks, and write the delivery and its run claims to the store in one short
transaction (or, if the store does not answer within ``STORE_BUDGET`` seconds, to a local fsynced
spool). Starting the Prefect flow runs happens afterwards in :class:`RunStarter`, which retries while
Prefect is down. Nothing about a request that fails the signature check is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from runbook.core.redact import redact
from runbook.core.settings import Settings, data_dir
from runbook.gateway import metrics
from runbook.gateway.alertmanager import alertmanager_delivery
from runbook.gateway.bodies import BodyTooLarge, read_limited
from runbook.gateway.pagerduty_events import (
    MalformedEvent,
    PlaybookCatalog,
    matching_playbooks,
    parse_event,
    verify_signature,
)
from runbook.gateway.slack_routes import router as slack_router
from runbook.gateway.starter import RunStarter, Spool, resolved_note
from runbook.runtime import Runtime, build_runtime
from runbook.store.database import Database
from runbook.store.intake import Accepted, IntakeStore
from runbook.store.timeline import TimelineStore

log = logging.getLogger("runbook.gateway")
MAX_BODY = 256 * 1024  # PagerDuty drops anything larger; so do we, before reading it all
STORE_BUDGET = 2.0  # seconds the request may wait for the store before spooling locally


@dataclass
class Gateway:
    """Everything the routes need; one per app."""

    settings: Settings
    db: Database
    intake: IntakeStore
    timeline: TimelineStore
    catalog: PlaybookCatalog
    starter: RunStarter
    spool: Spool
    runtime: Runtime


def _gateway(runtime: Runtime, prefect_api_url: str | None) -> Gateway:
    settings, db = runtime.settings, runtime.store.db
    intake, timeline = IntakeStore(db), runtime.store
    spool = Spool(
        data_dir() / "gateway-spool" / hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
    )
    starter = RunStarter(intake, timeline, prefect_api_url or settings.prefect_api_url, spool=spool)
    catalog = PlaybookCatalog(settings.playbooks, runtime.registry)
    return Gateway(settings, db, intake, timeline, catalog, starter, spool, runtime)


def _answer(status: int, outcome: str, **extra: Any) -> JSONResponse:
    metrics.webhook(outcome)
    return JSONResponse({"status": outcome, **extra}, status_code=status)


class _Housekeeping:
    """Background duties of a gateway replica: mark runs whose worker died as crashed (so nothing
    stays "running" forever) and post Slack messages left in the outbox by runs whose process
    exited while Slack was down. Both are idempotent across replicas (guarded updates in the store)."""

    def __init__(self, gw: Gateway, interval: float = 15.0) -> None:
        self.gw = gw
        self.interval = interval
        self.reaper = gw.runtime.reaper()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gateway-housekeeping", daemon=True)

    def start(self) -> None:
        self.reaper.start()
        if self.gw.settings.slack_bot_token:
            self._thread.start()

    def stop(self) -> None:
        self.reaper.stop()
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.gw.runtime.flush_slack()
            except Exception as exc:  # noqa: BLE001 - Slack or the store may be down; try again later
                log.warning("slack outbox flush failed: %s", exc)


async def _authentic_event(gw: Gateway, request: Request, webhook_id: str) -> tuple[bytes, Any]:
    """The raw body and its parsed event, or the Response refusing it (413, 401, 400)."""
    try:
        raw = await read_limited(request, MAX_BODY)
    except BodyTooLarge as exc:
        log.warning("webhook %s refused: %s", webhook_id or "-", exc)
        return b"", _answer(413, "too_large")
    if not verify_signature(
        raw, request.headers.get("x-pagerduty-signature"), gw.settings.pagerduty_webhook_secrets
    ):
        why = (
            "no secrets configured"
            if not gw.settings.pagerduty_webhook_secrets
            else "bad or missing signature"
        )
        log.warning("webhook %s refused (401): %s; %d bytes", webhook_id or "-", why, len(raw))
        return raw, _answer(401, "unauthorized")
    try:
        return raw, parse_event(json.loads(raw))
    except (ValueError, MalformedEvent) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning(
            "webhook %s malformed (400): %s; %d bytes", webhook_id or "-", type(exc).__name__, len(raw)
        )
        return raw, _answer(400, "malformed", error="body is not a PagerDuty V3 webhook event")


async def _record(gw: Gateway, record: dict[str, Any]) -> Accepted | Response:
    """Write the delivery and its claims to the store (or, when it is slow or down, the local spool)."""
    started = time.perf_counter()
    try:
        accepted: Accepted = await asyncio.wait_for(
            asyncio.to_thread(gw.intake.accept, **record), timeout=STORE_BUDGET
        )
        return accepted
    except Exception as exc:  # noqa: BLE001 - store down or slow: keep the event locally instead
        try:
            await asyncio.to_thread(gw.spool.put, record)
        except OSError as spool_exc:
            log.error(
                "webhook %s lost: store (%s) and spool (%s) both failed",
                record["delivery_id"],
                redact(str(exc))[:200],
                spool_exc,
            )
            return _answer(503, "unavailable")
        log.warning(
            "webhook %s spooled locally; store: %s",
            record["delivery_id"],
            redact(f"{type(exc).__name__}: {exc}")[:200],
        )
        gw.starter.wake()
        return _answer(202, "spooled")
    finally:
        metrics.INTAKE_SECONDS.observe(time.perf_counter() - started)


async def pagerduty_delivery(gw: Gateway, request: Request) -> Response:
    """``POST /webhooks/pagerduty``: verify, parse, match playbooks, record the claims (DESIGN.md)."""
    # X-Webhook-Id is not signed: it is logged, never used as the deduplication key
    webhook_id = (request.headers.get("x-webhook-id") or "")[:200]
    raw, event = await _authentic_event(gw, request, webhook_id)
    if isinstance(event, Response):
        return event
    resolved = event.event_type == "incident.resolved"
    # file I/O when a playbook changed: off the event loop; a broken playbook is skipped in there
    catalog = await asyncio.to_thread(gw.catalog.playbooks)
    playbooks = [pb.name for pb in matching_playbooks(catalog, event)]
    if not playbooks and not resolved:
        incident = (event.incident or {}).get("id")
        log.info(
            "webhook %s %s for %s: no playbook matches, ignored",
            webhook_id or "-",
            event.event_type,
            incident,
        )
        return _answer(202, "ignored", event_type=event.event_type)
    # The key is signed content: the event id inside the body, else the body's hash. A captured
    # signed body replayed with a fresh X-Webhook-Id is the same delivery (a PagerDuty retry of a
    # delivery resends the same body, so it is one too).
    delivery_id = f"event:{event.event_id}" if event.event_id else "sha256:" + hashlib.sha256(raw).hexdigest()
    accepted = await _record(
        gw,
        dict(
            delivery_id=delivery_id,
            event_id=event.event_id or None,
            event_type=event.event_type,
            incident=event.incident,
            playbooks=playbooks,
            size=len(raw),
            resolved=resolved,
        ),
    )
    if isinstance(accepted, Response):
        return accepted
    if accepted.duplicate:
        log.info(
            "webhook %s (X-Webhook-Id %s) is a duplicate delivery: nothing new",
            delivery_id,
            webhook_id or "-",
        )
        return _answer(202, "duplicate")
    incident_id = (event.incident or {}).get("id")
    for run_id, _playbook in accepted.runs_to_note:
        await asyncio.to_thread(resolved_note, gw.timeline, run_id, str(incident_id), event.agent)
    if accepted.new_claims:
        gw.starter.wake()
    log.info(
        "webhook %s (X-Webhook-Id %s) %s for incident %s: new runs %s",
        delivery_id,
        webhook_id or "-",
        event.event_type,
        incident_id,
        accepted.new_claims or "none",
    )
    return _answer(202, "accepted", runs=accepted.new_claims, noted=len(accepted.runs_to_note))


async def health(gw: Gateway) -> JSONResponse:
    """``GET /healthz``: 200 when the store answers; which playbooks intake uses and which it skipped."""
    try:
        ok = await asyncio.wait_for(asyncio.to_thread(gw.db.ping), timeout=3)
    except TimeoutError:
        ok = False
    try:  # a broken playbook never fails health: it is named here
        playbooks: dict[str, Any] = await asyncio.wait_for(asyncio.to_thread(gw.catalog.status), timeout=5)
    except Exception as exc:  # noqa: BLE001 - the catalog's own trouble is reported, not raised
        playbooks = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if not ok:
        return JSONResponse(
            {"status": "unavailable", "store": "unreachable", "playbooks": playbooks}, status_code=503
        )
    return JSONResponse({"status": "ok", "store": "ok", "playbooks": playbooks})


def create_app(
    source: Runtime | Settings | None = None,
    *,
    prefect_api_url: str | None = None,
    run_starter: bool = True,
) -> FastAPI:
    """The gateway app for a ``Runtime`` or ``Settings`` (default: settings from the environment).

    Both routes and the housekeeping share the one runtime built here (composition root), so a
    gateway created with a store decides clicks in that store. ``run_starter=False`` accepts
    webhooks without starting runs (used to measure intake alone)."""
    runtime = source if isinstance(source, Runtime) else build_runtime(source)
    gw = _gateway(runtime, prefect_api_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        housekeeping = _Housekeeping(gw) if run_starter else None
        if housekeeping is not None:
            gw.starter.start()
            housekeeping.start()
        try:
            yield
        finally:
            gw.starter.stop()
            if housekeeping is not None:
                housekeeping.stop()

    app = FastAPI(title="runbook gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gw
    # the Slack route decides clicks in this gateway's own store, with its own settings
    app.state.approvals = gw.runtime.approvals()

    @app.post("/webhooks/pagerduty")
    async def pagerduty_webhook(request: Request) -> Response:
        return await pagerduty_delivery(gw, request)

    @app.post("/webhooks/alertmanager")
    async def alertmanager_webhook(request: Request) -> Response:
        return await alertmanager_delivery(gw, request)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return await health(gw)

    follower = metrics.StoreFollower(gw.timeline)

    @app.get("/metrics")
    async def prometheus() -> Response:
        try:
            await asyncio.wait_for(asyncio.to_thread(follower.sync), timeout=3)
        except Exception as exc:  # noqa: BLE001 - metrics of the gateway itself still answer
            log.warning("metrics: could not read step events from the store: %s", exc)
        text, content_type = metrics.render()
        return Response(text, media_type=content_type)

    app.include_router(slack_router)
    return app
