"""The background starter: turns pending run claims into Prefect flow runs, retrying while Prefect is down.

The webhook handler only writes claims (fast, durable); this loop does the slow part. It talks to
Prefect's REST API directly with one keep-alive ``httpx`` client (``POST
/deployments/{id}/create_flow_run``, the call behind ``run_deployment(timeout=0)``), so a dead Prefect
costs one refused connection per attempt instead of the Prefect client's own retry ladder, and the
gateway does not import Prefect (~1.2 s, ~100 MB) at all.

Exactly-once across replicas: claims are leased in the store, and each create carries the idempotency
key ``runbook:<incident>:<playbook>``, so even a replica that dies between creating the run and
recording it cannot make a second run: Prefect answers the retry with the run it already made.

Which deployment: ``<playbook>/<playbook>`` (``runbook serve`` and ``prefect.yaml`` name each
deployment after its playbook). Earlier versions named every deployment ``runbook``; when
``<playbook>/<playbook>`` does not exist the starter uses ``<playbook>/runbook`` instead, so a new
gateway keeps starting runs while an older ``runbook serve`` is still running during an upgrade. Such a
fallback is looked up again after :data:`LEGACY_RECHECK_SECONDS`, so the runs move to the new
deployment as soon as the new ``serve`` has registered it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from runbook.core import files
from runbook.core.events import Event, Kind
from runbook.core.redact import redact
from runbook.gateway import metrics
from runbook.store.alerts import CLAIM_PREFIX as ALERT_CLAIM_PREFIX
from runbook.store.intake import Claim, IntakeStore
from runbook.store.timeline import TimelineStore

log = logging.getLogger("runbook.gateway")
#: the name every deployment had before they were named after their playbook (see the module doc)
LEGACY_DEPLOYMENT_NAME = "runbook"
LEGACY_RECHECK_SECONDS = 30.0


def deployment_path(playbook: str, deployment: str | None = None) -> str:
    """``<flow>/<deployment>``: the flow is named after the playbook (see compiler.flow), and so is
    its deployment unless ``deployment`` says otherwise."""
    return f"{playbook}/{deployment or playbook}"


def resolved_note(store: TimelineStore, run_id: str, incident_id: str, agent: str | None = None) -> None:
    if incident_id.startswith(ALERT_CLAIM_PREFIX):  # alertmanager:<fingerprint>:<episode>
        fingerprint = incident_id.split(":")[1]
        store.append(
            Event(
                run_id=run_id,
                kind=Kind.NOTE,
                summary=f"Alertmanager: alert {fingerprint} resolved",
                actor="alertmanager",
                details={"source": "alertmanager", "status": "resolved", "fingerprint": fingerprint},
            )
        )
        return
    store.append(
        Event(
            run_id=run_id,
            kind=Kind.NOTE,
            summary=f"PagerDuty: incident {incident_id} was resolved",
            actor=agent or "pagerduty",
            incident_id=incident_id,
            details={"source": "pagerduty", "event_type": "incident.resolved"},
        )
    )


class Spool:
    """Local fallback when the store cannot take a delivery in time: one fsynced JSON file each.

    Holds the parsed claim request (ids, the incident fields), not the raw body. Replayed into the
    store by the starter; replay is idempotent because the store dedups on the delivery id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, record: dict[str, Any]) -> None:
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        # folder 0700, file 0600, fsynced, renamed into place, no symlink followed (core.files)
        files.write_private(self.folder, name, json.dumps(record, default=str).encode("utf-8"))

    def drain(self, intake: IntakeStore) -> int:
        if not self.folder.is_dir():
            return 0
        done = 0
        for f in sorted(self.folder.glob("*.json")):
            record = json.loads(f.read_text(encoding="utf-8"))
            intake.accept(**record)  # raises StoreError while the store is still down
            f.unlink()
            done += 1
        return done


class RunStarter:
    """One daemon thread per gateway process; wake it after each accepted delivery."""

    def __init__(
        self,
        intake: IntakeStore,
        timeline: TimelineStore,
        prefect_api_url: str,
        *,
        spool: Spool | None = None,
        deployment: str | None = None,
        poll_seconds: float = 1.0,
        max_backoff: float = 15.0,
        max_attempts: int = 240,
    ) -> None:
        self.intake = intake
        self.timeline = timeline
        self.api = prefect_api_url.rstrip("/")
        self.spool = spool
        self.deployment = deployment  # None: ``<playbook>/<playbook>``, else ``<playbook>/runbook``
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts  # 240 attempts at 15 s: about an hour of Prefect outage
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deployments: dict[str, tuple[str, float]] = {}  # playbook -> (deployment id, valid until)
        self._used: dict[str, str] = {}  # playbook -> the deployment path last logged for it
        self._http = httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0))

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="runbook-run-starter", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._http.close()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a store outage
                log.warning("run starter: %s", redact(f"{type(exc).__name__}: {exc}"))
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    # -- one pass ------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Replay the spool, then start every due claim; returns how many runs were created."""
        if self.spool is not None:
            replayed = self.spool.drain(self.intake)
            if replayed:
                log.info("replayed %d spooled webhook deliveries into the store", replayed)
        started = 0
        while not self._stop.is_set():
            claims = self.intake.lease_due(self.owner)
            if not claims:
                break
            for claim in claims:
                started += self._start(claim)
        return started

    def _deployment_id(self, playbook: str) -> str:
        cached = self._deployments.get(playbook)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        names = [self.deployment] if self.deployment else [None, LEGACY_DEPLOYMENT_NAME]
        for name in names:
            path = deployment_path(playbook, name)
            r = self._http.get(f"{self.api}/deployments/name/{path}")
            if r.status_code == 404:
                continue
            r.raise_for_status()
            legacy = name == LEGACY_DEPLOYMENT_NAME
            valid_until = time.monotonic() + LEGACY_RECHECK_SECONDS if legacy else float("inf")
            self._deployments[playbook] = (r.json()["id"], valid_until)
            if self._used.get(playbook) != path:
                self._used[playbook] = path
                log.info(
                    "starting runs of %s as deployment %s%s",
                    playbook,
                    path,
                    f" ({deployment_path(playbook)} not found: an older `runbook serve`?)" if legacy else "",
                )
            return self._deployments[playbook][0]
        tried = " or ".join(deployment_path(playbook, n) for n in names)
        raise LookupError(
            f"no deployment {tried} on Prefect (is `runbook serve` running, or `prefect deploy` done?)"
        )

    def _start(self, claim: Claim) -> int:
        incident = claim.parameters.get("incident") or {}
        trigger, prefix = "pagerduty", "pd"
        if claim.incident_id.startswith(ALERT_CLAIM_PREFIX):
            trigger, prefix = "alertmanager", "am"
        try:
            dep = self._deployment_id(claim.playbook)
            body = {
                "parameters": claim.parameters,
                "idempotency_key": f"runbook:{claim.incident_id}:{claim.playbook}",
                "name": f"{prefix}-{incident.get('number') or claim.incident_id}-{claim.playbook}"[:100],
                "tags": ["runbook", f"trigger:{trigger}", f"incident:{claim.incident_id}"],
            }
            r = self._http.post(f"{self.api}/deployments/{dep}/create_flow_run", json=body)
            if r.status_code == 404:
                self._deployments.pop(claim.playbook, None)  # deployment re-created: look it up again
            r.raise_for_status()
            run_id = r.json()["id"]
        except (httpx.HTTPError, LookupError, KeyError, ValueError) as exc:
            reason = "prefect_unreachable" if isinstance(exc, httpx.TransportError) else "refused"
            delay = min(self.max_backoff, 0.5 * 2 ** min(claim.attempts, 6))
            message = redact(f"{type(exc).__name__}: {exc}")
            if claim.attempts in (0, 3) or claim.attempts % 20 == 0:
                log.warning(
                    "cannot start %s for incident %s yet (attempt %d, retry in %.1fs): %s",
                    claim.playbook,
                    claim.incident_id,
                    claim.attempts + 1,
                    delay,
                    message,
                )
            metrics.run_start_failed(claim.playbook, reason)
            if claim.attempts + 1 >= self.max_attempts:
                log.error(
                    "giving up on %s for incident %s after %d attempts: %s",
                    claim.playbook,
                    claim.incident_id,
                    claim.attempts + 1,
                    message,
                )
                self.intake.mark_failed(claim, self.owner, message)
            else:
                self.intake.mark_retry(claim, self.owner, message, delay)
            return 0
        resolved = self.intake.mark_started(claim, self.owner, run_id)
        metrics.run_started(claim.playbook, trigger)
        log.info("started %s for incident %s: flow run %s", claim.playbook, claim.incident_id, run_id)
        if resolved:
            resolved_note(self.timeline, run_id, claim.incident_id)
        return 1
