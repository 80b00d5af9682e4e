"""``Runtime.gate()`` hook: the store-backed gate, with the console channel when Slack is off."""

from __future__ import annotations

from typing import Any

from runbook.approvals.service import Approvals
from runbook.approvals.waiting import StoreGate


def approvals_for(runtime: Any) -> Approvals:
    """The decision service over the runtime's store (shared by the gate, gateway and CLI)."""
    return Approvals(runtime.settings, runtime.store)


def gate_for(runtime: Any) -> StoreGate:
    """Every gated step of a run waits here; without SLACK_BOT_TOKEN the request and the exact
    ``runbook approve`` command are printed to the console."""
    return StoreGate(approvals_for(runtime), console=not runtime.settings.slack_bot_token)
