"""The approval gate contract between the engine and whoever decides.

The engine builds a :class:`GateRequest` for every gated step (destructive actions and manual steps)
and blocks on ``Gate.request`` until a :class:`Decision`. The identity of a request is the hash of
the exact call (action + rendered params): a decision only ever applies to that call.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from runbook.core.events import Kind


def plan_hash(action: str, params: dict[str, Any]) -> str:
    """sha256 of the canonical call; what an approval is bound to."""
    canonical = json.dumps(
        {"action": action, "params": params}, sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class GateRequest(BaseModel):
    run_id: str
    playbook: str
    step_id: str
    step_title: str
    kind: Literal["approval", "manual"] = "approval"
    action: str
    params: dict[str, Any]
    description: str
    plan_hash: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = 1
    two_person: bool = False
    requested_by: str | None = None
    timeout_seconds: float = 900.0
    incident_id: str | None = None
    attempt: int = 1

    def timeline_details(self, **extra: Any) -> dict[str, Any]:
        """What an ``approval.requested`` event records of this request, whichever gate asked: the
        exact call and its hash (what the approver saw), the evidence, and who may decide."""
        return {
            "playbook": self.playbook,
            "step_title": self.step_title,
            "kind": self.kind,
            "action": self.action,
            "params": self.params,
            "description": self.description,
            "plan_hash": self.plan_hash,
            "evidence": self.evidence,
            "min_approvals": self.min_approvals,
            "two_person": self.two_person,
            "timeout_seconds": self.timeout_seconds,
            "attempt": self.attempt,
            **extra,
        }


class Decision(BaseModel):
    outcome: Literal["approved", "denied", "expired"]
    approvers: list[str] = Field(default_factory=list)
    reason: str | None = None
    plan_hash: str
    decided_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    channel: str = ""

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"


class Recorder(Protocol):
    def emit(
        self,
        kind: Kind,
        summary: str,
        *,
        step_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Any: ...


class Gate(Protocol):
    def request(self, req: GateRequest, recorder: Recorder) -> Decision: ...


class RefusingGate:
    """No approval channel is configured: every gated step is denied, loudly. Never passes silently."""

    def request(self, req: GateRequest, recorder: Recorder) -> Decision:
        reason = "no approval channel is configured for this run; the step was not executed"
        recorder.emit(
            Kind.APPROVAL_DENIED, f"{req.step_title}: {reason}", step_id=req.step_id, actor="runbook"
        )
        return Decision(outcome="denied", reason=reason, plan_hash=req.plan_hash, channel="none")
