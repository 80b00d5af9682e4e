"""What a run shows on its Prefect page besides its state: the timeline as the run's log, the verdict
and the postmortem as Markdown artifacts, and Prefect's own task-failure lines without tracebacks
for the failures runbook expects (a typed action error is a finding, not a crash).

* :class:`PrefectRunSink` is a timeline sink: every event of the run becomes one line of the flow
  run's log (INFO; WARNING for tolerated failures, refusals, denials and expiries; ERROR for a failure
  that stops the run), events other processes recorded (a decision made in Slack) included, in order.
  A ``Root cause: …`` finding also becomes the run's ``verdict`` artifact. The lines are posted in
  batches by one thread per process (:class:`_RunLogShipper`), never on the run's own thread.
* :func:`quiet_expected_failures` installs one filter on Prefect's task-run logger: for a task run
  that failed with an expected error (marked by :func:`expect_failure`), Prefect's "Task run failed"
  line is dropped and its "Finished in state Failed" line keeps no traceback, at WARNING when the
  playbook tolerates the failure.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from runbook.core.events import Event, Kind
from runbook.store.timeline import TimelineStore

log = logging.getLogger("runbook.prefect")

#: the logger name of the flow run's log lines runbook writes (the timeline, how to decide on a
#: waiting step); they go to the Prefect API only, never to the console, which has its own sink
RUN_LOGGER = "runbook.run"
VERDICT_PREFIX = "Root cause:"
WARNING_KINDS = {Kind.APPROVAL_DENIED, Kind.APPROVAL_EXPIRED, Kind.APPROVAL_VOIDED, Kind.APPROVAL_REFUSED}


def level_of(event: Event) -> int:
    if event.kind == Kind.STEP_FAILED:
        d = event.details
        tolerated = d.get("will_retry") or d.get("on_failure") == "continue"
        return logging.WARNING if tolerated else logging.ERROR
    if event.kind in WARNING_KINDS:
        return logging.WARNING
    if event.kind == Kind.RUN_FINISHED:
        status = str(event.details.get("status", ""))
        return {"failed": logging.ERROR, "crashed": logging.ERROR, "completed": logging.INFO}.get(
            status, logging.WARNING
        )
    return logging.INFO


def log_line(event: Event) -> str:
    step = f"{event.step_id}: " if event.step_id else ""
    who = f" [{event.actor}]" if event.actor else ""
    return f"{event.kind.value} {step}{event.summary}{who}"


def verdict_markdown(event: Event) -> str:
    details = {k: v for k, v in event.details.items() if isinstance(v, str | int | float | bool)}
    rows = [f"| {k} | {' '.join(str(v).split())[:300]} |" for k, v in details.items()]
    table = ["", "| field | value |", "| --- | --- |", *rows] if rows else []
    step = f" (step `{event.step_id}`)" if event.step_id else ""
    return "\n".join([f"### {event.summary}", f"Recorded {event.time:%Y-%m-%d %H:%M:%S} UTC{step}", *table])


#: how often the shipper posts what the runs of this process logged (one API call a batch)
SHIP_INTERVAL_SECONDS = 2.0
#: most lines in one POST, and most lines a process keeps while Prefect is away (oldest dropped)
SHIP_BATCH_LINES = 200
SHIP_BACKLOG_LINES = 20_000
#: one line's message at most (Prefect refuses a log over its max size; the store has the whole event)
MAX_LINE_CHARS = 8_000
#: how long one POST of a batch may retry transient errors before the batch waits for the next tick
SHIP_RETRY_SECONDS = 2.0


class _RunLogShipper:
    """Posts the timeline lines of every run in this process to the Prefect API in batches.

    Why not ``logging`` with Prefect's ``APILogHandler``: that builds a pydantic ``LogCreate`` and
    wakes Prefect's log thread for every line, on the run's own thread; two lines a step cost more
    than the rest of the engine's work for that step. Here a line is a plain dict appended to a
    list; one daemon thread posts what is there every two seconds, and a finishing run waits (bounded)
    for its own lines. Prefect is bookkeeping: a batch that cannot be posted stays queued (up to
    :data:`SHIP_BACKLOG_LINES`) and is tried again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[dict[str, Any]] = []
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None

    def add(self, line: dict[str, Any]) -> None:
        with self._lock:
            self._lines.append(line)
            if len(self._lines) > SHIP_BACKLOG_LINES:
                del self._lines[: len(self._lines) - SHIP_BACKLOG_LINES]
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="prefect-run-log", daemon=True)
                self._thread.start()

    def flush(self, flow_run_id: str, timeout: float) -> bool:
        """Wait until no line of ``flow_run_id`` is waiting or being posted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while any(x["flow_run_id"] == flow_run_id for x in self._lines + self._in_flight):
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.2))
        return True

    def _loop(self) -> None:
        while True:
            self._wake.wait(SHIP_INTERVAL_SECONDS)
            self._wake.clear()
            self._ship()

    def _ship(self) -> None:
        while True:
            with self._lock:
                batch = self._in_flight = self._lines[:SHIP_BATCH_LINES]
                del self._lines[:SHIP_BATCH_LINES]
            if not batch:
                with self._idle:
                    self._idle.notify_all()
                return
            ok = self._post(batch)
            with self._idle:
                if not ok:  # back to the front, in order; the next tick tries again
                    self._lines[:0] = batch
                self._in_flight = []
                self._idle.notify_all()
            if not ok:
                return

    @staticmethod
    def _post(batch: list[dict[str, Any]]) -> bool:
        from runbook.compiler.prefect_runs import _sync_client, is_transient_prefect, with_retries

        try:
            with_retries(lambda: _sync_client().create_logs(batch), SHIP_RETRY_SECONDS, "logs")
            return True
        except Exception as exc:  # noqa: BLE001 - the Prefect log is a mirror; the store is the record
            if not is_transient_prefect(exc):  # refused, not away: trying again would be refused again
                log.warning("prefect run log: %d lines refused (%s)", len(batch), type(exc).__name__)
                return True
            log.info("prefect run log: %d lines not posted yet (%s)", len(batch), type(exc).__name__)
            return False


_shipper = _RunLogShipper()


def post_run_log(flow_run_id: str, level: int, message: str, at: datetime | None = None) -> None:
    """One line of the flow run's log, posted with the next batch."""
    if len(message) > MAX_LINE_CHARS:
        message = message[:MAX_LINE_CHARS] + "... [clipped; the runbook timeline has the whole event]"
    _shipper.add(
        {
            "name": RUN_LOGGER,
            "level": level,
            "message": message,
            "timestamp": (at or datetime.now(UTC)).isoformat(),
            "flow_run_id": flow_run_id,
            "task_run_id": None,
        }
    )


def flush_run_log(flow_run_id: str, timeout: float = 10.0) -> bool:
    """Wait (bounded) until every timeline line of that run has reached Prefect's log."""
    return _shipper.flush(flow_run_id, timeout)


class PrefectRunSink:
    """The run's timeline mirrored to its Prefect flow run (see the module doc). Best effort."""

    def __init__(self, store: TimelineStore, flow_run_id: str) -> None:
        self.store = store
        self.flow_run_id = flow_run_id
        self._last_id = 0
        self._lock = threading.Lock()

    def publish(self, event: Event) -> None:
        try:
            with self._lock:
                if event.id is not None and event.id > self._last_id + 1:
                    self._catch_up(before=event.id)  # recorded by another process meanwhile
                self._write(event)
        except Exception as exc:  # noqa: BLE001 - the Prefect log is a mirror; the store is the record
            log.info("prefect run log: %s", type(exc).__name__)

    def catch_up(self) -> None:
        """Log what other processes recorded after our last event."""
        try:
            with self._lock:
                self._catch_up(before=None)
        except Exception as exc:  # noqa: BLE001 - as above
            log.info("prefect run log: %s", type(exc).__name__)

    def _catch_up(self, before: int | None) -> None:
        for e in self.store.events(self.flow_run_id, after_id=self._last_id):
            if before is not None and e.id is not None and e.id >= before:
                break
            self._write(e)

    def _write(self, event: Event) -> None:
        if event.id is not None:
            if event.id <= self._last_id:
                return
            self._last_id = event.id
        post_run_log(self.flow_run_id, level_of(event), log_line(event), event.time)
        if event.kind == Kind.FINDING and event.summary.startswith(VERDICT_PREFIX):
            from runbook.compiler.prefect_runs import create_artifact

            create_artifact(self.flow_run_id, "verdict", verdict_markdown(event), event.summary)


# -- Prefect's own lines for expected task failures ------------------------------------------------

_expected: dict[str, int] = {}  # task run id -> level for its failure lines
_expected_lock = threading.Lock()
_installed = False


def expect_failure(task_run_id: str, tolerated: bool) -> None:
    """This task run is failing with an error runbook expects (no traceback, level by tolerance)."""
    with _expected_lock:
        _expected[task_run_id] = logging.WARNING if tolerated else logging.ERROR
        if len(_expected) > 10_000:  # a long-lived worker: forget the oldest
            for key in list(_expected)[:5_000]:
                _expected.pop(key, None)


class _ExpectedFailureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        task_run_id = str(getattr(record, "task_run_id", "") or "")
        if not task_run_id:
            return True
        with _expected_lock:
            level = _expected.get(task_run_id)
        if level is None:
            return True
        message = str(record.msg)
        if message.startswith("Task run failed with"):
            return False  # the timeline's step.failed line says it, once
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        if record.levelno > level:
            record.levelno = level
            record.levelname = logging.getLevelName(level)
        return True


def quiet_expected_failures() -> None:
    """Install the filter on Prefect's task-run logger (once per process)."""
    global _installed
    with _expected_lock:
        if _installed:
            return
        logging.getLogger("prefect.task_runs").addFilter(_ExpectedFailureFilter())
        _installed = True


def postmortem_artifact(store: TimelineStore, flow_run_id: str) -> bool:
    """The run's postmortem draft (the last one ``timeline.postmortem`` wrote) as an artifact."""
    from pathlib import Path

    from runbook.compiler.prefect_runs import create_artifact

    path = ""
    for e in store.events(flow_run_id):
        if e.kind == Kind.STEP_SUCCEEDED and e.details.get("action") == "timeline.postmortem":
            output: Any = e.details.get("output") or {}
            path = str(output.get("path") or "") or path
    if not path:
        return False
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        log.info("postmortem artifact: %s", type(exc).__name__)
        return False
    if len(text) > 200_000:
        text = text[:200_000] + f"\n\n… (clipped; the full draft is {path})"
    return create_artifact(flow_run_id, "postmortem", text, f"Postmortem draft ({Path(path).name})")
