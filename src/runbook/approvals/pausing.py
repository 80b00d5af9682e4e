"""How a waiting step parks the orchestrator's run and how a decision wakes it: a protocol.

The approvals layer must not know Prefect. Inside a Prefect flow run the composition root hands in
:class:`runbook.compiler.prefect_runs.PrefectPauser`; everywhere else (tests, rehearsals, a process
that is not a flow run) :class:`NoPauser` makes the gate wait on the store alone.
"""

from __future__ import annotations

from typing import Any, Protocol


class RunPauser(Protocol):
    def current_run_id(self) -> str | None:
        """The orchestrator run this thread executes, or None outside one."""

    def pause(self, request_id: int, nonce: str, timeout_seconds: int) -> tuple[Any, Any]:
        """Park the run until resumed; what the resume claimed as (request id, outcome)."""

    def resume(self, flow_run_id: str, request_id: int, outcome: str) -> bool:
        """Wake the run if it is parked for this request; True when it was."""


class NoPauser:
    """No orchestrator: nothing to park, nothing to wake."""

    def current_run_id(self) -> str | None:
        return None

    def pause(self, request_id: int, nonce: str, timeout_seconds: int) -> tuple[Any, Any]:
        raise RuntimeError("no orchestrator run to pause")

    def resume(self, flow_run_id: str, request_id: int, outcome: str) -> bool:
        return False
