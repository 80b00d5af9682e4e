"""The states of runs, steps and approvals: one vocabulary for the engine, the store, the reaper,
the CLI's exit codes and the gateway.

They are ``StrEnum``s, so a state read back from the store (text) compares equal to its member and
a member is written to the store as its text: the database format is unchanged, and a misspelt
state is a NameError in review instead of a comparison that is silently never true.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    DENIED = "denied"
    CRASHED = "crashed"

    @property
    def final(self) -> bool:
        return self is not RunStatus.RUNNING

    @property
    def exit_code(self) -> int:
        """The CLI contract: 0 completed, 1 failed (or crashed), 2 aborted or denied."""
        return EXIT_CODES[self]


EXIT_CODES: dict[RunStatus, int] = {
    RunStatus.RUNNING: 1,
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.ABORTED: 2,
    RunStatus.DENIED: 2,
    RunStatus.CRASHED: 1,
}
FINAL_RUN_STATUSES = tuple(s for s in RunStatus if s.final)


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: failed, and the playbook says ``on_failure: continue``: the run goes on
    CONTINUED = "continued"
    SKIPPED = "skipped"
    DENIED = "denied"
    DRY_RUN = "dry_run"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    #: an approval of a call that changed before it ran: asked again
    VOIDED = "voided"

    @property
    def decided(self) -> bool:
        return self in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.EXPIRED)


FINAL_APPROVALS = (ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.EXPIRED)
