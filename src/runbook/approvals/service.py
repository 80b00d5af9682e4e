"""Deciding approvals: the one code path the Slack route and the CLI share.

A channel identifies the person (a verified Slack request, or the local operator at the CLI) and
calls :meth:`Approvals.vote`. The policy is checked, the vote recorded in the store, and every
outcome becomes a timeline event (approved, denied, expired, refused, or a partial-quorum note) with
actor, time, reason and plan hash. The waiting run learns of the decision from the store, pushed to
it by :meth:`Approvals.nudge` (in-process wake-up, PostgreSQL NOTIFY) so it goes on at once.

This layer knows neither Slack nor Prefect: where timeline events of a run go (``sinks_for``), how
queued Slack messages are flushed (``flush``), how a paused run is resumed (``pauser``) and which
role sources expand approvers (``role_sources``) are handed in by the composition root
(:mod:`runbook.runtime`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runbook.approvals.pausing import NOTIFY_CHANNEL, NoPauser, RunPauser, decisions
from runbook.approvals.policy import Identity, PolicyFile, RoleSource
from runbook.core.durations import format_duration
from runbook.core.events import Kind
from runbook.core.gate import Recorder
from runbook.core.settings import Settings
from runbook.core.states import ApprovalStatus
from runbook.store.approvals import ApprovalStore, RequestRow
from runbook.store.timeline import TimelineStore
from runbook.timeline.recorder import Recorder as TimelineRecorder
from runbook.timeline.recorder import Sink

log = logging.getLogger("runbook.approvals")

AUTHORISED_CHANNELS = ("slack", "cli")


@dataclass
class VoteResult:
    """What a channel tells the person: ``ok`` is False when nothing was (or could be) recorded."""

    ok: bool
    message: str
    state: str  # decided | counted | duplicate | closed | refused | missing
    row: RequestRow | None = None


def short(digest: str) -> str:
    return digest[:12]


class Approvals:
    """Approval decisions over one runbook store (any process: flow run, gateway, CLI)."""

    def __init__(
        self,
        settings: Settings,
        timeline: TimelineStore,
        *,
        sinks_for: Callable[[str], Iterable[Sink]] | None = None,
        flush: Callable[[], None] | None = None,
        pauser: RunPauser | None = None,
        role_sources: dict[str, RoleSource] | None = None,
    ) -> None:
        self.settings = settings
        self.timeline = timeline
        self.store = ApprovalStore(timeline.db)
        self.policy = PolicyFile(settings.approvers_file, sources=role_sources)
        self._sinks_for = sinks_for
        self._flush = flush
        self.pauser: RunPauser = pauser or NoPauser()

    # -- timeline ------------------------------------------------------------------------------
    def recorder_for(self, run_id: str) -> TimelineRecorder:
        """A recorder for a run this process does not execute (gateway, CLI): store + Slack thread."""
        run = self.timeline.get_run(run_id) or {}
        sinks: list[Sink] = list(self._sinks_for(run_id)) if self._sinks_for is not None else []
        return TimelineRecorder(self.timeline, run_id, incident_id=run.get("incident_id"), sinks=sinks)

    def _recorder(self, run_id: str, given: Recorder | None) -> TimelineRecorder:
        """The recorder that writes a decision's event inside the decision's own transaction: the
        run's own (its console and Slack sinks) when it is one, else one for the run."""
        return given if isinstance(given, TimelineRecorder) else self.recorder_for(run_id)

    @staticmethod
    def details(row: RequestRow, **extra: Any) -> dict[str, Any]:
        waited = (datetime.now(UTC) - row.created_at).total_seconds()
        return {
            "request_id": row.id,
            "plan_hash": row.plan_hash,
            "action": row.request.action,
            "attempt": row.request.attempt,
            "waited_seconds": round(waited, 3),  # approval latency metric
            **extra,
        }

    # -- voting --------------------------------------------------------------------------------
    def find(self, run_id: str, step_id: str) -> RequestRow | None:
        return self.store.latest(run_id, step_id, status=ApprovalStatus.PENDING)

    def vote(
        self,
        row: RequestRow,
        who: Identity,
        *,
        approve: bool,
        reason: str | None,
        channel: str,
        recorder: Recorder | None = None,
        resume_now: bool = True,
    ) -> VoteResult:
        """Record one person's Approve/Deny on ``row``, under the policy, once.

        ``resume_now=False`` leaves resuming the paused run to the caller's background work (the
        gateway must acknowledge Slack first)."""
        if channel not in AUTHORISED_CHANNELS:
            why = f"decisions through '{channel}' are not accepted"
            return self.refuse(row, who.label(), why, channel, recorder)
        if (channel == "slack" and (who.unix or not who.slack)) or (
            channel == "cli" and (who.slack or not who.unix)
        ):
            why = f"a {channel} decision must carry a {channel} identity (got {who.label()})"
            return self.refuse(row, who.label(), why, channel, recorder)
        rec = self._recorder(row.run_id, recorder)
        if row.status == ApprovalStatus.PENDING and row.expires_at <= datetime.now(UTC):
            self.expire(row, rec)
            return VoteResult(False, f"{row.request.step_title}: the approval request expired", "closed", row)
        verdict = self.policy.get().check(row.request, who)
        if not verdict.allowed:
            return self.refuse(row, verdict.person or who.label(), verdict.why, channel, rec)
        step = row.request.step_title
        # The decision and its timeline event commit in one transaction: the waiting run goes on as
        # soon as it sees the decision, so a decision visible before its event would let the step
        # start ahead of its approval in the timeline - or with none at all, had the event's write
        # failed after the decision's commit.
        with rec.decision_write() as write:
            out = self.store.vote(
                row.id, verdict.person, approve, reason, channel, row.plan_hash, cur=write.cur
            )
            fresh = out.row
            n = len({v["approver"] for v in out.votes if v["vote"] == "approve"})
            need = row.request.min_approvals
            if out.result == "counted":
                write.emit(
                    Kind.NOTE,
                    f"{step}: approved by {verdict.person} ({n} of {need} approvals needed)",
                    step_id=row.step_id,
                    actor=verdict.person,
                    details=self.details(
                        row,
                        vote="approve",
                        reason=reason,
                        channel=channel,
                        partial=True,
                        approvals=n,
                        needed=need,
                    ),
                )
            elif out.result == "decided":
                approved = fresh.status == ApprovalStatus.APPROVED
                why = f" — {reason}" if reason else ""
                write.emit(
                    Kind.APPROVAL_APPROVED if approved else Kind.APPROVAL_DENIED,
                    f"{step}: {fresh.status} by {fresh.decided_by}{why} (plan {short(row.plan_hash)})",
                    step_id=row.step_id,
                    actor=verdict.person,
                    details=self.details(
                        fresh,
                        reason=reason,
                        channel=channel,
                        approvers=fresh.decided_by,
                        decided_at=fresh.decided_at.isoformat() if fresh.decided_at else None,
                    ),
                )
        if out.result == "closed":
            what = f"already {fresh.status}" + (f" by {fresh.decided_by}" if fresh.decided_by else "")
            return VoteResult(False, f"{step}: {what}; nothing changed", "closed", fresh)
        if out.result == "duplicate":
            return VoteResult(
                True, f"{step}: your vote was already recorded; nothing changed", "duplicate", fresh
            )
        if out.result == "counted":
            text = f"{step}: your approval is recorded ({n} of {need}); waiting for {need - n} more"
            return VoteResult(True, text, "counted", fresh)
        if resume_now:
            self.nudge(fresh)
        return VoteResult(True, f"{step}: {fresh.status} by {fresh.decided_by}", "decided", fresh)

    def refuse(
        self, row: RequestRow, who: str, why: str, channel: str, recorder: Recorder | None
    ) -> VoteResult:
        rec = recorder or self.recorder_for(row.run_id)
        rec.emit(
            Kind.APPROVAL_REFUSED,
            f"{row.request.step_title}: decision from {who} refused — {why}",
            step_id=row.step_id,
            actor=who,
            details=self.details(row, why=why, channel=channel),
        )
        return VoteResult(False, f"Not recorded: {why}. Nothing was decided.", "refused", row)

    def expire(self, row: RequestRow, recorder: Recorder | None = None) -> RequestRow | None:
        """Undecided at its timeout: a denial, recorded once whoever notices first."""
        reason = f"nobody decided within {format_duration(row.request.timeout_seconds)}"
        with self._recorder(row.run_id, recorder).decision_write() as write:  # as in vote
            closed = self.store.close(row.id, ApprovalStatus.EXPIRED, reason, cur=write.cur)
            if closed is not None:
                write.emit(
                    Kind.APPROVAL_EXPIRED,
                    f"{row.request.step_title}: approval expired — {reason}; treated as denied",
                    step_id=row.step_id,
                    actor="runbook",
                    details=self.details(closed, reason=reason),
                )
        if closed is None:
            return None
        self.nudge(closed)
        return closed

    def flush_slack(self) -> None:
        """Short-lived processes (CLI): post what this decision queued before exiting."""
        if self._flush is None:
            return
        try:
            self._flush()
        except Exception as exc:  # noqa: BLE001 - stays in the outbox for the next flusher
            log.warning("slack flush: %s", exc)

    # -- resuming the paused run ---------------------------------------------------------------
    def nudge(self, row: RequestRow) -> None:
        """Push the decision to the waiting run now: a wake-up in this process, a NOTIFY to other
        processes on PostgreSQL (SQLite waiters poll); the waiting run itself tells Prefect."""
        decisions.publish(row.id)
        try:
            self.timeline.db.notify(NOTIFY_CHANNEL, str(row.id))
        except Exception as exc:  # noqa: BLE001 - the waiting run's safety poll is the guarantee
            log.debug("notify of request %s not sent: %s", row.id, exc)
