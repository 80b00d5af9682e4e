"""The timeline store: runs and their events, in the runbook database.

Every write is redacted first: a secret that slipped into a summary or a detail never reaches the
database, and so never reaches Slack, the CLI or the postmortem either.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from runbook.core.clock import ts
from runbook.core.events import Event, Kind
from runbook.core.redact import redact, redact_data
from runbook.core.states import FINAL_RUN_STATUSES, RunStatus
from runbook.store.database import Cursor, Database

#: this module's tables (assembled with the others in runbook.store.schema)
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runbook_runs (
        run_id TEXT PRIMARY KEY,
        playbook TEXT NOT NULL,
        status TEXT NOT NULL,
        incident_id TEXT,
        requested_by TEXT,
        trigger TEXT,
        params TEXT,
        dry_run INTEGER NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        heartbeat_at TEXT,
        reason TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS runbook_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        time TEXT NOT NULL,
        kind TEXT NOT NULL,
        step_id TEXT,
        actor TEXT,
        incident_id TEXT,
        summary TEXT NOT NULL,
        details TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runbook_events_run ON runbook_events (run_id, id)",
)

RUNNING = RunStatus.RUNNING
FINAL_STATUSES = FINAL_RUN_STATUSES


_ts = ts


class TimelineStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- runs ----------------------------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        playbook: str,
        *,
        params: dict[str, Any],
        incident_id: str | None = None,
        requested_by: str | None = None,
        trigger: str = "manual",
        dry_run: bool = False,
    ) -> None:
        now = _ts()
        with self.db.transaction() as cur:
            existing = cur.query("SELECT run_id FROM runbook_runs WHERE run_id = ?", (run_id,))
            if existing:  # a retried/resumed flow run keeps its first record
                cur.execute(
                    "UPDATE runbook_runs SET status = ?, heartbeat_at = ?, finished_at = NULL"
                    " WHERE run_id = ?",
                    (RUNNING, now, run_id),
                )
                return
            cur.execute(
                "INSERT INTO runbook_runs (run_id, playbook, status, incident_id, requested_by, trigger,"
                " params, dry_run, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    playbook,
                    RUNNING,
                    incident_id,
                    requested_by,
                    trigger,
                    json.dumps(redact_data(params), default=str),
                    int(dry_run),
                    now,
                    now,
                ),
            )

    def finish_run(self, run_id: str, status: str, reason: str | None = None) -> None:
        self.db.execute(
            "UPDATE runbook_runs SET status = ?, finished_at = ?, reason = ? WHERE run_id = ?",
            (status, _ts(), redact(reason) if reason else None, run_id),
        )

    def heartbeat(self, run_id: str) -> None:
        self.db.execute("UPDATE runbook_runs SET heartbeat_at = ? WHERE run_id = ?", (_ts(), run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.db.query("SELECT * FROM runbook_runs WHERE run_id = ?", (run_id,))
        if not rows:
            rows = self.db.query(
                "SELECT * FROM runbook_runs WHERE run_id LIKE ? ORDER BY started_at DESC", (run_id + "%",)
            )
            if len(rows) != 1:
                return None
        row = rows[0]
        row["params"] = json.loads(row["params"] or "{}")
        return row

    def runs(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runbook_runs"
        args: tuple[Any, ...] = ()
        if status:
            sql += " WHERE status = ?"
            args = (status,)
        return self.db.query(sql + f" ORDER BY started_at DESC LIMIT {int(limit)}", args)

    # -- events --------------------------------------------------------------------------------
    def append(self, event: Event, *, cur: Cursor | None = None) -> Event:
        """Store ``event`` (redacted) and return it with its id; inside the caller's transaction
        when ``cur`` is given (a step's events and ledger rows commit together)."""
        event = event.model_copy(
            update={"summary": redact(event.summary), "details": redact_data(event.details)}
        )
        sql: Database | Cursor = cur if cur is not None else self.db
        event.id = sql.insert_returning_id(
            "INSERT INTO runbook_events (run_id, time, kind, step_id, actor, incident_id, summary, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.run_id,
                _ts(event.time),
                event.kind.value,
                event.step_id,
                event.actor,
                event.incident_id,
                event.summary,
                json.dumps(event.details, default=str),
            ),
        )
        return event

    def events(self, run_id: str, *, after_id: int = 0) -> list[Event]:
        rows = self.db.query(
            "SELECT * FROM runbook_events WHERE run_id = ? AND id > ? ORDER BY id", (run_id, after_id)
        )
        return self._events(rows)

    def events_since(self, after_id: int, kinds: list[Kind], limit: int = 5000) -> list[Event]:
        """Events of every run after ``after_id`` (for followers such as the metrics exporter)."""
        marks = ", ".join("?" for _ in kinds)
        rows = self.db.query(
            f"SELECT * FROM runbook_events WHERE id > ? AND kind IN ({marks}) ORDER BY id LIMIT {int(limit)}",
            (after_id, *[k.value for k in kinds]),
        )
        return self._events(rows)

    @staticmethod
    def _events(rows: list[dict[str, Any]]) -> list[Event]:
        return [
            Event(
                id=r["id"],
                run_id=r["run_id"],
                time=datetime.fromisoformat(r["time"]),
                kind=Kind(r["kind"]),
                step_id=r["step_id"],
                actor=r["actor"],
                incident_id=r["incident_id"],
                summary=r["summary"],
                details=json.loads(r["details"]),
            )
            for r in rows
        ]
