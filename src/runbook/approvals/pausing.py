"""How a waiting step keeps the orchestrator's record of its run, and how a decision reaches it.

The approvals layer must not know Prefect. The waiting run itself learns of a decision from the
runbook store (pushed: :data:`decisions` in the same process, PostgreSQL LISTEN/NOTIFY across
processes, a short poll on SQLite); the orchestrator is only told: the run is parked while it waits
(the Prefect UI shows what is waiting) and unparked once it knows its answer. Inside a Prefect flow
run the composition root hands in :class:`runbook.compiler.prefect_runs.PrefectPauser`; everywhere
else (tests, rehearsals, a process that is not a flow run) :class:`NoPauser`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("runbook.approvals")

#: PostgreSQL channel a recorded decision is announced on (payload: the request id)
NOTIFY_CHANNEL = "runbook_approvals"

Reporter = Callable[[str], None]


class RunPauser(Protocol):
    def current_run_id(self) -> str | None:
        """The orchestrator run this thread executes, or None outside one."""

    def park(
        self,
        flow_run_id: str,
        request_id: int,
        nonce: str,
        timeout_seconds: int,
        *,
        description: str = "",
        message: str = "",
    ) -> bool:
        """Mark the run as waiting for this request; False when the orchestrator could not be told
        (retried within a bound; the run waits on the store either way). ``description`` is the
        request in Markdown (what the orchestrator's UI shows of the pause), ``message`` one line
        for the paused state itself."""

    def still_parked(self, flow_run_id: str, request_id: int) -> bool | None:
        """True while the orchestrator still shows the run parked for this request, False when
        something resumed it there, None when the orchestrator cannot be asked right now."""

    def unpark(self, flow_run_id: str, request_id: int, outcome: str, report: Reporter) -> None:
        """Tell the orchestrator the run goes on (in the background, retried until it answers);
        ``report`` receives one line for the timeline when that was late or failed."""


class NoPauser:
    """No orchestrator: nothing to park, nothing to tell."""

    def current_run_id(self) -> str | None:
        return None

    def park(
        self,
        flow_run_id: str,
        request_id: int,
        nonce: str,
        timeout_seconds: int,
        *,
        description: str = "",
        message: str = "",
    ) -> bool:
        return False

    def still_parked(self, flow_run_id: str, request_id: int) -> bool | None:
        return None

    def unpark(self, flow_run_id: str, request_id: int, outcome: str, report: Reporter) -> None:
        return None


class DecisionBus:
    """In-process wake-up: a decision recorded in this process wakes its waiters at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[int], None]] = []

    def subscribe(self, fn: Callable[[int], None]) -> None:
        with self._lock:
            self._subscribers.append(fn)

    def publish(self, request_id: int) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            try:
                fn(request_id)
            except Exception as exc:  # noqa: BLE001 - a wake-up is a hint; the store is the truth
                log.debug("decision wake-up: %s", exc)


decisions = DecisionBus()
