"""Durable Slack state: each run's thread, the outbox of posts not yet made, and signed requests seen.

Why in the store: Slack is down at the worst moments, and several processes (a run, the gateway, the
CLI) post for the same run. The outbox makes a post survive a crash and go out once, in order; the
thread row makes every process answer in the run's one thread; the replay table makes a captured
signed click decide nothing the second time, whichever gateway replica receives it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.core.clock import ts
from runbook.core.redact import redact, redact_data
from runbook.store.database import Database, IntegrityConflict

#: this module's tables (assembled with the others in runbook.store.schema)
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runbook_slack_threads (
        run_id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        thread_ts TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runbook_slack_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        op TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        claimed_at TEXT,
        sent_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS runbook_slack_outbox_unsent ON runbook_slack_outbox (sent_at, id)",
    # signed Slack requests already received: a replay within Slack's 5-minute window decides nothing
    """CREATE TABLE IF NOT EXISTS runbook_slack_replays (
        signature TEXT PRIMARY KEY,
        seen_at TEXT NOT NULL
    )""",
)
REPLAY_WINDOW = timedelta(minutes=10)  # twice Slack's timestamp window: older ones fail the signature check


class SlackStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- replays -------------------------------------------------------------------------------
    def first_sight(self, timestamp: str, signature: str) -> bool:
        """True the first time a signed (timestamp, signature) pair is seen by any gateway replica."""
        key = f"{timestamp}:{signature}"[:300]
        now = datetime.now(UTC)
        try:
            with self.db.transaction() as cur:
                cur.execute("DELETE FROM runbook_slack_replays WHERE seen_at < ?", (ts(now - REPLAY_WINDOW),))
                cur.execute(
                    "INSERT INTO runbook_slack_replays (signature, seen_at) VALUES (?, ?)", (key, ts(now))
                )
        except IntegrityConflict:
            return False
        return True

    # -- Slack thread and outbox ---------------------------------------------------------------
    def thread(self, run_id: str) -> tuple[str, str] | None:
        rows = self.db.query(
            "SELECT channel, thread_ts FROM runbook_slack_threads WHERE run_id = ?", (run_id,)
        )
        return (rows[0]["channel"], rows[0]["thread_ts"]) if rows else None

    def set_thread(self, run_id: str, channel: str, thread_ts: str) -> None:
        try:
            self.db.execute(
                "INSERT INTO runbook_slack_threads (run_id, channel, thread_ts, created_at)"
                " VALUES (?, ?, ?, ?)",
                (run_id, channel, thread_ts, ts()),
            )
        except IntegrityConflict:
            pass

    def enqueue(self, run_id: str, op: str, body: dict[str, Any]) -> int:
        return self.db.insert_returning_id(
            "INSERT INTO runbook_slack_outbox (run_id, op, body, created_at) VALUES (?, ?, ?, ?)",
            (run_id, op, json.dumps(redact_data(body), default=str), ts()),
        )

    def unsent(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT * FROM runbook_slack_outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?", (int(limit),)
        )
        for r in rows:
            r["body"] = json.loads(r["body"])
        return rows

    def claim(self, row_id: int, stale_seconds: float = 60.0) -> bool:
        """Claim one outbox row so two processes never post it twice (a stale claim is taken over)."""
        stale = ts(datetime.now(UTC) - timedelta(seconds=stale_seconds))
        return (
            self.db.execute(
                "UPDATE runbook_slack_outbox SET claimed_at = ?, attempts = attempts + 1 WHERE id = ?"
                " AND sent_at IS NULL AND (claimed_at IS NULL OR claimed_at < ?)",
                (ts(), int(row_id), stale),
            )
            == 1
        )

    def release(self, row_id: int, error: str) -> None:
        self.db.execute(
            "UPDATE runbook_slack_outbox SET claimed_at = NULL, last_error = ? WHERE id = ?",
            (redact(error)[:500], int(row_id)),
        )

    def mark_sent(self, row_id: int, *, dead: str | None = None) -> None:
        self.db.execute(
            "UPDATE runbook_slack_outbox SET sent_at = ?, last_error = ? WHERE id = ?",
            (ts() if dead is None else f"dead:{ts()}", redact(dead)[:500] if dead else None, int(row_id)),
        )

    def outbox_counts(self, run_id: str | None = None) -> dict[str, int]:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        rows = self.db.query(
            "SELECT CASE WHEN sent_at IS NULL THEN 'unsent' WHEN sent_at LIKE 'dead:%' THEN 'dead'"
            f" ELSE 'sent' END AS state, COUNT(*) AS n FROM runbook_slack_outbox {where} GROUP BY 1",
            args,
        )
        return {r["state"]: int(r["n"]) for r in rows}
