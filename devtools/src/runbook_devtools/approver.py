"""A scripted approver: answers one requester's approval requests through the real decision service.

Why one: drills (``runbook drill --approve``), the end-to-end tests and the load benchmark all need
"somebody" to approve or deny gated steps while a run waits, and all of them must go through the same
path an operator's ``runbook approve`` takes — ``Approvals.vote`` on the ``cli`` channel under the
approvers file, each person voting as their own Unix login (``unix:<person>``) — so a gate is never
passed around. Only what to answer differs, which :class:`Ballot` carries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.core.gate import GateRequest
    from runbook.core.settings import Settings


@dataclass(frozen=True)
class Ballot:
    """How to answer one request: who votes, which way, why. ``until_decided`` stops the votes as soon
    as the request is decided (the rest of ``people`` do not vote)."""

    people: Sequence[str]
    approve: bool
    reason: str
    until_decided: bool = False


class ScriptedApprover:
    """Polls the pending requests raised by ``unix:<requested_by>`` and answers each once with the
    :class:`Ballot` ``ballot(row)`` returns, on the CLI channel.

    Kept for the caller: ``requests`` (each request seen, with its rendered params), ``outputs``
    (``"<step> <person> -> <0|1>: <message>"`` per vote, as ``runbook approve`` would exit) and
    ``decisions`` (``"<step>: approved|denied — <description>"`` per request). ``on_request`` maps a
    step id to a hook called with the request before it is answered."""

    def __init__(
        self,
        settings: Settings,
        requested_by: str,
        ballot: Callable[[Any], Ballot],
        *,
        interval: float = 0.1,
        name: str = "scripted-approver",
    ) -> None:
        from runbook.runtime import build_runtime

        self.approvals = build_runtime(settings).approvals()
        self.store = self.approvals.store
        self.requested_by = requested_by
        self.ballot = ballot
        self.interval = interval
        self.requests: list[GateRequest] = []
        self.outputs: list[str] = []
        self.decisions: list[str] = []
        self.on_request: dict[str, Callable[[GateRequest], None]] = {}
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ScriptedApprover:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> ScriptedApprover:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what was asked ----------------------------------------------------------------------------
    def steps(self) -> list[str]:
        return [r.step_id for r in self.requests]

    def request(self, step_id: str) -> GateRequest:
        return next(r for r in self.requests if r.step_id == step_id)

    # -- answering ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        requester = f"unix:{self.requested_by}"
        while not self._stop.wait(self.interval):
            try:
                rows = [r for r in self.store.pending() if r.request.requested_by == requester]
            except Exception:  # noqa: BLE001 - the store is busy for a moment (SQLite): next tick
                continue
            for row in rows:
                if row.id not in self._seen:
                    self._seen.add(row.id)
                    self._answer(row)

    def _answer(self, row: Any) -> None:
        from runbook.approvals.policy import Identity

        self.requests.append(row.request)
        hook = self.on_request.get(row.step_id)
        if hook is not None:
            hook(row.request)
        ballot = self.ballot(row)
        for person in ballot.people:
            result = self.approvals.vote(
                row,
                Identity(unix=person),  # each person votes as their own login
                approve=ballot.approve,
                reason=ballot.reason,
                channel="cli",
            )
            self.outputs.append(f"{row.step_id} {person} -> {0 if result.ok else 1}: {result.message}")
            if ballot.until_decided and result.state == "decided":
                break
        verb = "approved" if ballot.approve else "denied"
        self.decisions.append(f"{row.step_id}: {verb} — {row.request.description}")


def scripted(
    script: Mapping[str, Any], people_of: Mapping[str, Sequence[str]], reason: str = "scripted"
) -> Callable[[Any], Ballot]:
    """A ballot per step from ``script``: ``"approve"``, ``"deny"``, or a list of people who approve.
    Steps not in the script are denied (an unexpected gated step must never pass silently); without
    a list, the first person of the request's first approver role (``people_of``) votes."""

    def ballot(row: Any) -> Ballot:
        plan = script.get(row.step_id, "deny")
        deny = plan == "deny"
        people = list(plan) if isinstance(plan, list) else [people_of[row.request.approvers[0]][0]]
        return Ballot(people, not deny, f"{reason}: {'deny' if deny else 'approve'} {row.step_id}")

    return ballot
