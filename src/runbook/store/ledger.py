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
from runbook.store.database import Cursor, Database

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
    """Claims and outcomes of destructive calls. ``cur`` (a transaction's cursor) lets the engine
    write a claim together with the step's ``step.started`` event, and an outcome together with its
    ``step.succeeded``/``step.failed``, in one durable transaction each."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(
        self, run_id: str, step_id: str, plan_hash: str, *, cur: Cursor | None = None
    ) -> dict[str, Any] | None:
        """Claim the execution; None if claimed now, else the existing record.

        ``ON CONFLICT DO NOTHING`` rather than catching the unique violation, so a refused claim
        leaves a PostgreSQL transaction usable (the caller's step event is then not written)."""
        sql: Database | Cursor = cur if cur is not None else self.db
        inserted = sql.execute(
            "INSERT INTO runbook_executions (run_id, step_id, plan_hash, status, started_at)"
            " VALUES (?, ?, ?, 'started', ?) ON CONFLICT (run_id, step_id, plan_hash) DO NOTHING",
            (run_id, step_id, plan_hash, datetime.now(UTC).isoformat()),
        )
        if inserted == 1:
            return None
        rows = sql.query(
            "SELECT * FROM runbook_executions WHERE run_id = ? AND step_id = ? AND plan_hash = ?",
            (run_id, step_id, plan_hash),
        )
        row = rows[0]
        row["output"] = json.loads(row["output"]) if row["output"] else None
        return row

    def finish(
        self,
        run_id: str,
        step_id: str,
        plan_hash: str,
        status: str,
        output: Any = None,
        *,
        cur: Cursor | None = None,
    ) -> None:
        sql: Database | Cursor = cur if cur is not None else self.db
        sql.execute(
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
