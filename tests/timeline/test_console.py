"""The console sink when its stream is not a terminal: plain lines, nothing rewritten, and a
decision another process recorded still shown (once) while the approval waits."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

from runbook.core.events import Event, Kind
from runbook.store.timeline import TimelineStore
from runbook.timeline.console import ConsoleSink


def test_not_a_terminal_plain_lines_and_decisions_from_elsewhere(store: TimelineStore) -> None:
    store.start_run("run-console", "p", params={})
    out = io.StringIO()
    sink = ConsoleSink(out, store=store, run_id="run-console")
    expires = (datetime.now(UTC) + timedelta(minutes=42)).isoformat()

    def emit(kind: Kind, summary: str, **kw: object) -> Event:
        event = store.append(Event(run_id="run-console", kind=kind, summary=summary, **kw))  # type: ignore[arg-type]
        sink.publish(event)
        return event

    emit(Kind.RUN_STARTED, "start")
    emit(Kind.APPROVAL_REQUESTED, "purge: needs 1 approval", step_id="purge", details={"expires_at": expires})
    assert sink.live_text(time.monotonic() + 5) == "waiting for approval of purge — 41m left"
    # another process records the decision in the store; this sink never gets it published
    store.append(
        Event(
            run_id="run-console",
            kind=Kind.APPROVAL_APPROVED,
            summary="purge: approved",
            step_id="purge",
            actor="carol",
        )
    )
    deadline = time.monotonic() + 5
    while "approval.approved" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.1)
    emit(Kind.STEP_STARTED, "purge", step_id="purge", details={"params": {"seconds": 15}})
    assert sink.live_text(time.monotonic() + 9) == "progress: purge 9s/15s"
    emit(Kind.RUN_FINISHED, "run completed", details={"status": "completed"})
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text  # no colour, no live line
    lines = text.splitlines()
    assert [line.split()[2] for line in lines] == [
        "run.started",
        "approval.requested",
        "approval.approved",
        "step.started",
        "run.finished",
    ]
    assert lines[2].endswith("[carol]")
