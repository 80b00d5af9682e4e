"""Durable intake: webhook deliveries (dedup) and run claims (one run per incident and playbook).

``Database.ensure_schema`` imports this module, so the tables exist wherever the store is opened.
Both guarantees are unique keys in the shared store, not in-process state, so several gateway
replicas behind a load balancer (same PostgreSQL) still start one run per incident and playbook:

* ``runbook_webhook_deliveries``: one row per delivery, keyed on signed content (``event:<id>`` from
  the body, else ``sha256:<body hash>``; never the unsigned ``X-Webhook-Id`` header); a redelivery or a
  replayed body hits the key and starts nothing;
* ``runbook_run_claims``: primary key ``(incident_id, playbook)``; a claim is ``pending`` until a
  starter (any replica, under a short lease) has created the Prefect flow run, then ``started``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from runbook.core.clock import ts
from runbook.core.redact import redact, redact_data
from runbook.store import launches
from runbook.store.database import Database, IntegrityConflict
from runbook.store.launches import Launch

#: this module's tables (assembled with the others in runbook.store.schema)
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runbook_webhook_deliveries (
        delivery_id TEXT PRIMARY KEY,
        event_id TEXT,
        event_type TEXT NOT NULL,
        incident_id TEXT,
        outcome TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS runbook_webhook_deliveries_event"
    " ON runbook_webhook_deliveries (event_id)",
    """CREATE TABLE IF NOT EXISTS runbook_run_claims (
        incident_id TEXT NOT NULL,
        playbook TEXT NOT NULL,
        status TEXT NOT NULL,
        parameters TEXT NOT NULL,
        event_id TEXT,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION,
        flow_run_id TEXT,
        started_at TEXT,
        resolved_at TEXT,
        last_error TEXT,
        PRIMARY KEY (incident_id, playbook)
    )""",
    "CREATE INDEX IF NOT EXISTS runbook_run_claims_due ON runbook_run_claims (status, next_attempt_at)",
)

PENDING, STARTED, SKIPPED, FAILED = "pending", "started", "skipped", "failed"


def _now_iso() -> str:
    return ts()


@dataclass(frozen=True)
class Claim:
    incident_id: str
    playbook: str
    parameters: dict[str, Any]
    attempts: int


@dataclass
class Accepted:
    """What one accepted delivery did."""

    duplicate: bool = False
    new_claims: list[str] = field(default_factory=list)
    #: (flow_run_id, playbook) of the runs already started for a resolved incident
    runs_to_note: list[tuple[str, str]] = field(default_factory=list)


class IntakeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- request path ----------------------------------------------------------------------------
    def accept(
        self,
        *,
        delivery_id: str,
        event_id: str | None,
        event_type: str,
        incident: dict[str, Any] | None,
        playbooks: list[str],
        size: int,
        outcome: str = "accepted",
        resolved: bool = False,
    ) -> Accepted:
        """Record the delivery and claim a run per matched playbook, in one short transaction."""
        incident_id = str(incident["id"]) if incident and incident.get("id") else None
        now = _now_iso()
        result = Accepted(new_claims=[], runs_to_note=[])
        try:
            with self.db.transaction() as cur:
                cur.execute(
                    "INSERT INTO runbook_webhook_deliveries (delivery_id, event_id, event_type, incident_id,"
                    " outcome, size, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (delivery_id, event_id or None, event_type, incident_id, outcome, size, now),
                )
                if incident_id is None:
                    return result
                # who started the run travels as a one-time launch token, never as a flow parameter
                # anyone could set (see runbook.store.launches)
                launch = Launch("pagerduty", None, redact_data(incident))
                for name in playbooks:
                    params = json.dumps(
                        {"incident": redact_data(incident), "launch": launches.issue(cur, launch)},
                        default=str,
                    )
                    if cur.execute(
                        "INSERT INTO runbook_run_claims (incident_id, playbook, status, parameters, event_id,"
                        " created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (incident_id, playbook) DO NOTHING",
                        (incident_id, name, PENDING, params, event_id, now, time.time()),
                    ):
                        result.new_claims.append(name)
                if resolved:
                    cur.execute(
                        "UPDATE runbook_run_claims SET resolved_at = ? WHERE incident_id = ?",
                        (now, incident_id),
                    )
                    cur.execute(
                        "UPDATE runbook_run_claims SET status = ?, last_error = ? WHERE incident_id = ?"
                        " AND status = ? AND (lease_until IS NULL OR lease_until < ?)",
                        (
                            SKIPPED,
                            "incident resolved before the run started",
                            incident_id,
                            PENDING,
                            time.time(),
                        ),
                    )
                    rows = cur.query(
                        "SELECT flow_run_id, playbook FROM runbook_run_claims WHERE incident_id = ?"
                        " AND status = ? AND flow_run_id IS NOT NULL",
                        (incident_id, STARTED),
                    )
                    result.runs_to_note = [(r["flow_run_id"], r["playbook"]) for r in rows]
        except IntegrityConflict:
            return Accepted(duplicate=True)
        return result

    # -- starter side ----------------------------------------------------------------------------
    def lease_due(self, owner: str, *, limit: int = 20, lease_seconds: float = 30.0) -> list[Claim]:
        """Pending claims whose turn has come, each leased to ``owner`` (other replicas skip them)."""
        now = time.time()
        rows = self.db.query(
            "SELECT incident_id, playbook, parameters, attempts FROM runbook_run_claims WHERE status = ?"
            " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
            f" ORDER BY next_attempt_at LIMIT {int(limit)}",
            (PENDING, now, now),
        )
        leased = []
        for r in rows:
            got = self.db.execute(
                "UPDATE runbook_run_claims SET lease_owner = ?, lease_until = ? WHERE incident_id = ?"
                " AND playbook = ? AND status = ? AND (lease_until IS NULL OR lease_until < ?)",
                (owner, now + lease_seconds, r["incident_id"], r["playbook"], PENDING, now),
            )
            if got == 1:
                leased.append(
                    Claim(r["incident_id"], r["playbook"], json.loads(r["parameters"]), int(r["attempts"]))
                )
        return leased

    def mark_started(self, claim: Claim, owner: str, flow_run_id: str) -> bool:
        """Record the flow run; True when the incident was resolved meanwhile (caller notes it)."""
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE runbook_run_claims SET status = ?, flow_run_id = ?, started_at = ?,"
                " lease_owner = NULL, lease_until = NULL, attempts = attempts + 1, last_error = NULL"
                " WHERE incident_id = ? AND playbook = ?",
                (STARTED, flow_run_id, _now_iso(), claim.incident_id, claim.playbook),
            )
            rows = cur.query(
                "SELECT resolved_at FROM runbook_run_claims WHERE incident_id = ? AND playbook = ?",
                (claim.incident_id, claim.playbook),
            )
        return bool(rows and rows[0]["resolved_at"])

    def mark_retry(self, claim: Claim, owner: str, error: str, delay: float) -> None:
        self.db.execute(
            "UPDATE runbook_run_claims SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
            " lease_owner = NULL, lease_until = NULL"
            " WHERE incident_id = ? AND playbook = ? AND lease_owner = ?",
            (time.time() + delay, redact(error)[:500], claim.incident_id, claim.playbook, owner),
        )

    def mark_failed(self, claim: Claim, owner: str, error: str) -> None:
        """Give up on a claim (deployment gone for good); it stays visible with its last error."""
        self.db.execute(
            "UPDATE runbook_run_claims SET status = ?, attempts = attempts + 1, last_error = ?,"
            " lease_owner = NULL, lease_until = NULL"
            " WHERE incident_id = ? AND playbook = ? AND lease_owner = ?",
            (FAILED, redact(error)[:500], claim.incident_id, claim.playbook, owner),
        )

    # -- reading -------------------------------------------------------------------------------
    def claims(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        if incident_id is None:
            return self.db.query("SELECT * FROM runbook_run_claims ORDER BY created_at")
        return self.db.query(
            "SELECT * FROM runbook_run_claims WHERE incident_id = ? ORDER BY playbook", (incident_id,)
        )

    def delivery_count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) AS n FROM runbook_webhook_deliveries")[0]["n"])

    def pending_count(self) -> int:
        rows = self.db.query("SELECT COUNT(*) AS n FROM runbook_run_claims WHERE status = ?", (PENDING,))
        return int(rows[0]["n"])
