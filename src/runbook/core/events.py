"""Timeline event kinds and the event record.

The same events feed the console, the Slack thread, ``runbook timeline`` and the postmortem, so the
kinds are an enum and each event carries a one-line summary a human can read at 3 a.m.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Kind(StrEnum):
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    STEP_STARTED = "step.started"
    STEP_SUCCEEDED = "step.succeeded"
    STEP_FAILED = "step.failed"
    STEP_SKIPPED = "step.skipped"
    STEP_DRY_RUN = "step.dry_run"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_APPROVED = "approval.approved"
    APPROVAL_DENIED = "approval.denied"
    APPROVAL_EXPIRED = "approval.expired"
    APPROVAL_VOIDED = "approval.voided"
    APPROVAL_REFUSED = "approval.refused"
    NOTE = "note"
    FINDING = "finding"


ICONS = {
    Kind.RUN_STARTED: "▶",
    Kind.RUN_FINISHED: "■",
    Kind.STEP_STARTED: "…",
    Kind.STEP_SUCCEEDED: "✔",
    Kind.STEP_FAILED: "✖",
    Kind.STEP_SKIPPED: "↷",
    Kind.STEP_DRY_RUN: "◌",
    Kind.APPROVAL_REQUESTED: "?",
    Kind.APPROVAL_APPROVED: "✔",
    Kind.APPROVAL_DENIED: "✖",
    Kind.APPROVAL_EXPIRED: "⌛",
    Kind.APPROVAL_VOIDED: "⊘",
    Kind.APPROVAL_REFUSED: "⛔",
    Kind.NOTE: "✎",
    Kind.FINDING: "★",
}


def now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    id: int | None = None
    run_id: str
    kind: Kind
    summary: str
    time: datetime = Field(default_factory=now)
    step_id: str | None = None
    actor: str | None = None
    incident_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    def line(self) -> str:
        """The event as one console line."""
        t = self.time.astimezone(UTC).strftime("%H:%M:%S")
        who = f" [{self.actor}]" if self.actor else ""
        step = f" {self.step_id}:" if self.step_id else ""
        return f"{t} {ICONS.get(self.kind, '·')} {self.kind.value:<18}{step} {self.summary}{who}"
