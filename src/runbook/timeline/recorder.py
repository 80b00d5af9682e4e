"""The write side of the timeline a run uses: store first, then fan out to live sinks.

The store is the source of truth; sinks (console, Slack thread) are best effort, so a sink that
fails never fails the run. A Slack sink that could not post keeps its own backlog and posts later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from runbook.core.events import Event, Kind
from runbook.store.database import Cursor
from runbook.store.timeline import TimelineStore
from runbook.timeline.console import ConsoleSink

__all__ = ["ConsoleSink", "Recorder", "Sink", "StepWrite"]

log = logging.getLogger("runbook.timeline")


class Sink(Protocol):
    def publish(self, event: Event) -> None: ...


class StepWrite:
    """The events a step records in one transaction (see :meth:`Recorder.step_write`); ``cur`` is
    that transaction, for the ledger rows that must commit with them."""

    def __init__(self, recorder: Recorder, cur: Cursor) -> None:
        self.recorder = recorder
        self.cur = cur
        self.events: list[Event] = []

    def emit(
        self,
        kind: Kind,
        summary: str,
        *,
        step_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Event:
        if kind == Kind.RUN_FINISHED:
            raise ValueError("run.finished is recorded with Recorder.emit, never inside a step's write")
        event = self.recorder.event(kind, summary, step_id, actor, details)
        event = self.recorder.store.append(event, cur=self.cur)
        self.events.append(event)
        return event


class Recorder:
    """Records the events of one run."""

    def __init__(
        self,
        store: TimelineStore,
        run_id: str,
        *,
        incident_id: str | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.incident_id = incident_id
        self.sinks = list(sinks)
        self._after_finish: list[Callable[[Event], None]] = []

    def after_finish(self, hook: Callable[[Event], None]) -> None:
        """Call ``hook(run_finished_event)`` once the run's end is recorded (e.g. the postmortem
        draft written in ``finally`` re-rendered, so the file on disk is final). Best effort."""
        self._after_finish.append(hook)

    def emit(
        self,
        kind: Kind,
        summary: str,
        *,
        step_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Event:
        if kind == Kind.RUN_FINISHED:  # nothing of an ended run may stay waiting for a decision
            from runbook.timeline.closing import void_pending

            why = f"the run ended ({(details or {}).get('status', 'finished')}) before a decision"
            void_pending(self.store, self.run_id, why, self._publish)
        event = self.store.append(self.event(kind, summary, step_id, actor, details))
        self._publish(event)
        if kind == Kind.RUN_FINISHED:
            for hook in self._after_finish:
                try:
                    hook(event)
                except Exception as exc:  # noqa: BLE001 - the run has ended; a hook never changes that
                    log.warning("after-finish hook failed: %s", exc)
        return event

    def event(
        self, kind: Kind, summary: str, step_id: str | None, actor: str | None, details: dict[str, Any] | None
    ) -> Event:
        return Event(
            run_id=self.run_id,
            kind=kind,
            summary=summary,
            step_id=step_id,
            actor=actor,
            incident_id=self.incident_id,
            details=details or {},
        )

    @contextmanager
    def step_write(self) -> Iterator[StepWrite]:
        """One durable transaction for what a step records at one moment: its events and the
        ledger rows written with ``write.cur`` commit together or not at all. Sinks hear of the
        events once they are committed (store first, as for :meth:`emit`), in order.

        Why: a destructive step's claim and its ``step.started`` (before the call), and its
        outcome, ledger update and notes (after), each cost one commit instead of one per row."""
        with self.store.db.transaction() as cur:
            write = StepWrite(self, cur)
            yield write
        for event in write.events:
            self._publish(event)

    #: the same for an approval decision and its event (:mod:`runbook.approvals.service`): the
    #: waiting run must never see a decision whose event is not committed with it
    decision_write = step_write

    def _publish(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.publish(event)
            except Exception as exc:  # noqa: BLE001 - a sink never fails the run
                log.warning("timeline sink %s failed: %s", type(sink).__name__, exc)

    def note(
        self, summary: str, details: dict[str, Any] | None = None, *, step_id: str | None = None
    ) -> None:
        self.emit(Kind.NOTE, summary, step_id=step_id, details=details)
