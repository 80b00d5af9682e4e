"""Durable approval state: requests, votes and final decisions (Slack's own tables: store.slack).

The store is the only source of truth for a decision. A paused flow run, the gateway and the CLI
may all be different processes (or hosts); they meet here. Unique keys make every decision happen
once: a vote is ``UNIQUE(request_id, approver)`` and a request leaves ``pending`` through a single
compare-and-set ``UPDATE ... WHERE status = 'pending'``, so a double click, a late click racing the
expiry, or two approvers clicking at once all end in exactly one recorded outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.core.clock import parse_ts, ts
from runbook.core.gate import Decision, GateRequest
from runbook.core.redact import redact, redact_data
from runbook.core.states import FINAL_APPROVALS, ApprovalStatus
from runbook.store.database import Cursor, Database, IntegrityConflict

#: this module's tables (assembled with the others in runbook.store.schema)
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS runbook_approval_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        plan_hash TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        decided_at TEXT,
        decided_by TEXT,
        reason TEXT,
        channel TEXT,
        flow_run_id TEXT,
        slack_channel TEXT,
        slack_ts TEXT,
        UNIQUE (run_id, step_id, plan_hash, attempt)
    )""",
    "CREATE INDEX IF NOT EXISTS runbook_approval_requests_run ON runbook_approval_requests (run_id, step_id)",
    """CREATE TABLE IF NOT EXISTS runbook_approval_votes (
        request_id INTEGER NOT NULL,
        approver TEXT NOT NULL,
        vote TEXT NOT NULL,
        time TEXT NOT NULL,
        reason TEXT,
        plan_hash TEXT NOT NULL,
        channel TEXT NOT NULL,
        PRIMARY KEY (request_id, approver)
    )""",
)

PENDING = ApprovalStatus.PENDING
FINAL = FINAL_APPROVALS


@dataclass
class RequestRow:
    """One approval request as stored: the engine's request plus its lifecycle."""

    id: int
    request: GateRequest
    status: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    channel: str | None
    flow_run_id: str | None
    slack_channel: str | None
    slack_ts: str | None

    @property
    def run_id(self) -> str:
        return self.request.run_id

    @property
    def step_id(self) -> str:
        return self.request.step_id

    @property
    def plan_hash(self) -> str:
        return self.request.plan_hash

    @property
    def decided(self) -> bool:
        return self.status in FINAL

    def decision(self, votes: list[dict[str, Any]]) -> Decision:
        """The engine-facing decision: who approved (or denied), why, for which call."""
        wanted = "approve" if self.status == ApprovalStatus.APPROVED else "deny"
        people = [v["approver"] for v in votes if v["vote"] == wanted] or (
            [self.decided_by] if self.decided_by else []
        )
        # 'voided' rows were approvals (of a call that changed since)
        outcome: Any = self.status if self.status in FINAL else ApprovalStatus.APPROVED
        return Decision(
            outcome=outcome,
            approvers=people,
            reason=self.reason,
            plan_hash=self.plan_hash,
            decided_at=self.decided_at or datetime.now(UTC),
            channel=self.channel or "",
        )


def _row(r: dict[str, Any]) -> RequestRow:
    return RequestRow(
        id=int(r["id"]),
        request=GateRequest.model_validate_json(r["request"]),
        status=r["status"],
        created_at=parse_ts(r["created_at"]),
        expires_at=parse_ts(r["expires_at"]),
        decided_at=parse_ts(r["decided_at"]) if r["decided_at"] else None,
        decided_by=r["decided_by"],
        reason=r["reason"],
        channel=r["channel"],
        flow_run_id=r["flow_run_id"],
        slack_channel=r["slack_channel"],
        slack_ts=r["slack_ts"],
    )


@dataclass
class VoteOutcome:
    """What one vote did: ``decided`` (this vote settled it), ``counted`` (quorum not reached yet),
    ``duplicate`` (this person already voted), ``closed`` (already decided or expired)."""

    result: str
    row: RequestRow
    votes: list[dict[str, Any]]


class ApprovalStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- requests ------------------------------------------------------------------------------
    def create(self, req: GateRequest, flow_run_id: str | None) -> tuple[RequestRow, bool]:
        """Insert the request (or find it again after a restart); True when created now."""
        now = datetime.now(UTC)
        try:
            self.db.execute(
                "INSERT INTO runbook_approval_requests (run_id, step_id, plan_hash, attempt, request, status,"
                " created_at, expires_at, flow_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    req.run_id,
                    req.step_id,
                    req.plan_hash,
                    req.attempt,
                    json.dumps(redact_data(req.model_dump(mode="json")), default=str),
                    PENDING,
                    ts(now),
                    ts(now + timedelta(seconds=req.timeout_seconds)),
                    flow_run_id,
                ),
            )
            created = True
        except IntegrityConflict:
            created = False
            if flow_run_id:
                self.db.execute(
                    "UPDATE runbook_approval_requests SET flow_run_id = ? WHERE run_id = ? AND step_id = ?"
                    " AND plan_hash = ? AND attempt = ?",
                    (flow_run_id, req.run_id, req.step_id, req.plan_hash, req.attempt),
                )
        rows = self.db.query(
            "SELECT * FROM runbook_approval_requests WHERE run_id = ? AND step_id = ? AND plan_hash = ?"
            " AND attempt = ?",
            (req.run_id, req.step_id, req.plan_hash, req.attempt),
        )
        return _row(rows[0]), created

    def get(self, request_id: int) -> RequestRow | None:
        rows = self.db.query("SELECT * FROM runbook_approval_requests WHERE id = ?", (int(request_id),))
        return _row(rows[0]) if rows else None

    def latest(self, run_id: str, step_id: str, *, status: str | None = None) -> RequestRow | None:
        """The newest request of a step (optionally in one status); ``run_id`` may be a unique prefix."""
        sql = "SELECT * FROM runbook_approval_requests WHERE (run_id = ? OR run_id LIKE ?) AND step_id = ?"
        args: list[Any] = [run_id, run_id + "%", step_id]
        if status:
            sql += " AND status = ?"
            args.append(status)
        rows = self.db.query(sql + " ORDER BY id DESC", args)
        if len({r["run_id"] for r in rows}) > 1:
            rows = [r for r in rows if r["run_id"] == run_id]
        return _row(rows[0]) if rows else None

    def pending(self) -> list[RequestRow]:
        return [
            _row(r)
            for r in self.db.query(
                "SELECT * FROM runbook_approval_requests WHERE status = ? ORDER BY id", (PENDING,)
            )
        ]

    def statuses(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        marks = ",".join("?" for _ in ids)
        rows = self.db.query(f"SELECT id, status FROM runbook_approval_requests WHERE id IN ({marks})", ids)
        return {int(r["id"]): r["status"] for r in rows}

    def votes(self, request_id: int) -> list[dict[str, Any]]:
        return self.db.query(
            "SELECT * FROM runbook_approval_votes WHERE request_id = ? ORDER BY time", (int(request_id),)
        )

    def set_flow_run(self, request_id: int, flow_run_id: str) -> None:
        self.db.execute(
            "UPDATE runbook_approval_requests SET flow_run_id = ? WHERE id = ?",
            (flow_run_id, int(request_id)),
        )

    def set_slack_message(self, request_id: int, channel: str, message_ts: str) -> None:
        self.db.execute(
            "UPDATE runbook_approval_requests SET slack_channel = ?, slack_ts = ? WHERE id = ?",
            (channel, message_ts, int(request_id)),
        )

    # -- decisions -----------------------------------------------------------------------------
    def vote(
        self,
        request_id: int,
        approver: str,
        approve: bool,
        reason: str | None,
        channel: str,
        plan_hash: str,
        *,
        cur: Cursor | None = None,
    ) -> VoteOutcome:
        """Record one authorised vote and settle the request if it now has its answer.

        One transaction: read the request (row-locked on PostgreSQL; SQLite's BEGIN IMMEDIATE already
        serialises writers), insert the vote, count, compare-and-set the status. With ``cur``, the
        caller's transaction: the decision and its timeline event commit together, so no reader -
        the waiting run above all - ever sees a decision whose record is not there yet."""
        if cur is None:
            with self.db.transaction() as own:
                return self.vote(request_id, approver, approve, reason, channel, plan_hash, cur=own)
        now = ts()
        reason = redact(reason) if reason else None
        lock = " FOR UPDATE" if self.db.is_postgres else ""
        rows = cur.query(f"SELECT * FROM runbook_approval_requests WHERE id = ?{lock}", (int(request_id),))
        row = _row(rows[0])
        if row.status != PENDING or row.expires_at <= datetime.now(UTC):
            return VoteOutcome("closed", row, [])
        try:
            cur.execute(
                "INSERT INTO runbook_approval_votes (request_id, approver, vote, time, reason, plan_hash,"
                " channel) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.id, approver, "approve" if approve else "deny", now, reason, plan_hash, channel),
            )
        except IntegrityConflict:
            return VoteOutcome("duplicate", row, [])
        votes = cur.query(
            "SELECT * FROM runbook_approval_votes WHERE request_id = ? ORDER BY time", (row.id,)
        )
        approvals = {v["approver"] for v in votes if v["vote"] == "approve"}
        status = (
            "denied" if not approve else ("approved" if len(approvals) >= row.request.min_approvals else None)
        )
        if status is None:
            return VoteOutcome("counted", row, votes)
        who = approver if status == "denied" else ", ".join(sorted(approvals))
        cur.execute(
            "UPDATE runbook_approval_requests SET status = ?, decided_at = ?, decided_by = ?, reason = ?,"
            " channel = ? WHERE id = ? AND status = ?",
            (status, now, who, reason, channel, row.id, PENDING),
        )
        rows = cur.query("SELECT * FROM runbook_approval_requests WHERE id = ?", (row.id,))
        return VoteOutcome("decided", _row(rows[0]), votes)

    def close(
        self,
        request_id: int,
        status: str,
        reason: str,
        *,
        by: str = "runbook",
        channel: str = "runbook",
        from_status: str = PENDING,
        cur: Cursor | None = None,
    ) -> RequestRow | None:
        """Compare-and-set a request out of ``from_status`` (expiry, supersede); None if it had moved.
        With ``cur``, inside the caller's transaction (as :meth:`vote`)."""
        if cur is None:
            with self.db.transaction() as own:
                return self.close(
                    request_id, status, reason, by=by, channel=channel, from_status=from_status, cur=own
                )
        n = cur.execute(
            "UPDATE runbook_approval_requests SET status = ?, decided_at = COALESCE(decided_at, ?),"
            " decided_by = COALESCE(decided_by, ?), reason = COALESCE(reason, ?),"
            " channel = COALESCE(channel, ?)"
            " WHERE id = ? AND status = ?",
            (status, ts(), by, reason, channel, int(request_id), from_status),
        )
        if not n:
            return None
        rows = cur.query("SELECT * FROM runbook_approval_requests WHERE id = ?", (int(request_id),))
        return _row(rows[0])
