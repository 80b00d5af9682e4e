"""Alertmanager intake: one run per (alert fingerprint, playbook) while the alert fires.

``runbook_alert_runs`` holds the *firing episode* of an alert for a playbook: primary key
``(fingerprint, playbook)``, so however many notifications repeat it (group updates, repeat
intervals, retries, several gateway replicas), the first one claims the run and the others find the
row. The run itself is an ordinary claim in ``runbook_run_claims`` (the starter makes it a Prefect
flow run) whose key is ``alertmanager:<fingerprint>:<episode>``; who started it travels as a one-time
launch token (trigger ``alertmanager``), never as a flow parameter. When the alert resolves, the
episode row is deleted (a later firing is a new episode, hence a new run), a claim not yet started
is skipped, and the started run gets a note.

Deliveries are deduplicated in ``runbook_webhook_deliveries`` on a key the gateway derives from the
group key and each alert's fingerprint, status and start (an identical re-send stores nothing).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from runbook.core.clock import ts
from runbook.store import launches
from runbook.store.database import Database, IntegrityConflict
from runbook.store.intake import PENDING, SKIPPED, STARTED
from runbook.store.launches import Launch

#: this module's tables (assembled with the others in runbook.store.schema)
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runbook_alert_runs (
        fingerprint TEXT NOT NULL,
        playbook TEXT NOT NULL,
        claim_id TEXT NOT NULL,
        alertname TEXT,
        group_key TEXT,
        starts_at TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (fingerprint, playbook)
    )""",
)

CLAIM_PREFIX = "alertmanager:"


@dataclass(frozen=True)
class AlertRun:
    """A run an alert asks for: the playbook, its checked params, and what identifies the episode.

    ``once_key`` set: a run started by a *resolved* alert (``status: resolved`` trigger), claimed once
    under that key instead of a firing episode."""

    fingerprint: str
    playbook: str
    params: dict[str, Any]
    alertname: str | None = None
    starts_at: str | None = None
    once_key: str | None = None


@dataclass
class AlertIntake:
    duplicate: bool = False
    #: (fingerprint, playbook) of the runs claimed by this delivery
    new_runs: list[tuple[str, str]] = field(default_factory=list)
    #: (flow_run_id, playbook, fingerprint, alertname) of started runs whose alert resolved
    runs_to_note: list[tuple[str, str, str, str | None]] = field(default_factory=list)


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def accept(
        self,
        *,
        delivery_id: str,
        group_key: str,
        status: str,
        runs: list[AlertRun],
        resolved: list[str],
        size: int,
    ) -> AlertIntake:
        """Record the delivery, claim runs of new firing episodes, close resolved ones (one transaction)."""
        now = ts()
        result = AlertIntake()
        try:
            with self.db.transaction() as cur:
                cur.execute(
                    "INSERT INTO runbook_webhook_deliveries (delivery_id, event_id, event_type, incident_id,"
                    " outcome, size, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (delivery_id, None, f"alertmanager.{status}", group_key[:200], "accepted", size, now),
                )
                for run in runs:
                    if self._claim(cur, run, group_key, now):
                        result.new_runs.append((run.fingerprint, run.playbook))
                for fingerprint in resolved:
                    result.runs_to_note.extend(self._resolve(cur, fingerprint, now))
        except IntegrityConflict:
            return AlertIntake(duplicate=True)
        return result

    @staticmethod
    def _claim(cur: Any, run: AlertRun, group_key: str, now: str) -> bool:
        if run.once_key is not None:
            claim_id = f"{CLAIM_PREFIX}{run.fingerprint}:{run.once_key}"
        else:
            claim_id = f"{CLAIM_PREFIX}{run.fingerprint}:{secrets.token_hex(6)}"
            if not cur.execute(
                "INSERT INTO runbook_alert_runs (fingerprint, playbook, claim_id, alertname, group_key,"
                " starts_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (fingerprint, playbook) DO NOTHING",
                (run.fingerprint, run.playbook, claim_id, run.alertname, group_key[:500], run.starts_at, now),
            ):
                return False  # this episode already has its run
        token = launches.issue(cur, Launch("alertmanager"))
        params = json.dumps({**run.params, "launch": token}, default=str)
        return bool(
            cur.execute(
                "INSERT INTO runbook_run_claims (incident_id, playbook, status, parameters, event_id,"
                " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (incident_id, playbook) DO NOTHING",
                (claim_id, run.playbook, PENDING, params, None, now, time.time()),
            )
        )

    @staticmethod
    def _resolve(cur: Any, fingerprint: str, now: str) -> list[tuple[str, str, str, str | None]]:
        episodes = cur.query(
            "SELECT claim_id, playbook, alertname FROM runbook_alert_runs WHERE fingerprint = ?",
            (fingerprint,),
        )
        noted: list[tuple[str, str, str, str | None]] = []
        for ep in episodes:
            cur.execute(
                "DELETE FROM runbook_alert_runs WHERE fingerprint = ? AND playbook = ?",
                (fingerprint, ep["playbook"]),
            )
            cur.execute(
                "UPDATE runbook_run_claims SET resolved_at = ? WHERE incident_id = ?", (now, ep["claim_id"])
            )
            cur.execute(
                "UPDATE runbook_run_claims SET status = ?, last_error = ? WHERE incident_id = ?"
                " AND status = ? AND (lease_until IS NULL OR lease_until < ?)",
                (SKIPPED, "alert resolved before the run started", ep["claim_id"], PENDING, time.time()),
            )
            rows = cur.query(
                "SELECT flow_run_id FROM runbook_run_claims WHERE incident_id = ? AND status = ?"
                " AND flow_run_id IS NOT NULL",
                (ep["claim_id"], STARTED),
            )
            noted += [(r["flow_run_id"], ep["playbook"], fingerprint, ep["alertname"]) for r in rows]
        return noted

    # -- reading -------------------------------------------------------------------------------
    def firing(self) -> list[dict[str, Any]]:
        return self.db.query("SELECT * FROM runbook_alert_runs ORDER BY created_at")

    def claims(self) -> list[dict[str, Any]]:
        """Every run claim an alert made, with its params (tests, /healthz-style inspection)."""
        rows = self.db.query(
            "SELECT * FROM runbook_run_claims WHERE incident_id LIKE ? ORDER BY created_at",
            (CLAIM_PREFIX + "%",),
        )
        for r in rows:
            r["parameters"] = json.loads(r["parameters"])
        return rows
