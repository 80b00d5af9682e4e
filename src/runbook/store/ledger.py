"""Durable record of destructive executions, so a step never runs twice for one approval.

Before a destructive call runs, the engine claims ``(run_id, step_id, plan_hash)`` with an INSERT
that a unique key protects; a second worker (after a crash, a retry or on another host) finds the
claim and does not execute again. A claim left in ``started`` means a worker died mid-call: the
outcome is unknown, so the engine reports it instead of guessing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from runbook.core.redact import redact_data
from runbook.store.database import Database, IntegrityConflict

#: this module's tables (assembled with the others in runbook.store.schema)
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runbook_executions (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        plan_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        output TEXT,
        PRIMARY KEY (run_id, step_id, plan_hash)
    )""",
)


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, run_id: str, step_id: str, plan_hash: str) -> dict[str, Any] | None:
        """Claim the execution; None if claimed now, else the existing record."""
        try:
            self.db.execute(
                "INSERT INTO runbook_executions (run_id, step_id, plan_hash, status, started_at)"
                " VALUES (?, ?, ?, 'started', ?)",
                (run_id, step_id, plan_hash, datetime.now(UTC).isoformat()),
            )
            return None
        except IntegrityConflict:
            rows = self.db.query(
                "SELECT * FROM runbook_executions WHERE run_id = ? AND step_id = ? AND plan_hash = ?",
                (run_id, step_id, plan_hash),
            )
            row = rows[0]
            row["output"] = json.loads(row["output"]) if row["output"] else None
            return row

    def finish(self, run_id: str, step_id: str, plan_hash: str, status: str, output: Any = None) -> None:
        self.db.execute(
            "UPDATE runbook_executions SET status = ?, finished_at = ?, output = ?"
            " WHERE run_id = ? AND step_id = ? AND plan_hash = ?",
            (
                status,
                datetime.now(UTC).isoformat(),
                json.dumps(redact_data(output), default=str) if output is not None else None,
                run_id,
                step_id,
                plan_hash,
            ),
        )
