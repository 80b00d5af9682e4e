"""The timeline at the terminal: one line per event, coloured on a terminal, and a live line while
the run waits.

- **Colour** only when the stream is a terminal and ``NO_COLOR`` is not set (https://no-color.org):
  failures and denials red, successes and approvals green, requests and expiries yellow, findings
  bold. Piped or redirected output is the plain text ``runbook timeline`` prints.
- **A live line** on a terminal while something takes time: ``waiting for approval of purge — 42m
  left`` while an approval is pending, ``progress: sample 9s/15s`` while a step runs (its
  ``seconds``/``window``/``timeout`` parameter, when it has one, is the second figure). It is one
  line rewritten in place and erased before the next event line; nothing of it is written when the
  stream is not a terminal.
- **Decisions made elsewhere** (a Slack click, ``runbook approve`` in another shell) are recorded
  in the store by the deciding process, not published to this one: while an approval is pending,
  the sink reads the run's new events from the store every second and prints those it has not
  printed (terminal or not), so the operator watching ``runbook run`` sees who decided.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

from runbook.core.events import Event, Kind
from runbook.store.timeline import TimelineStore

RED, GREEN, YELLOW, BOLD, DIM, RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[2m", "\x1b[0m"
CLEAR_LINE = "\r\x1b[K"
KIND_COLOUR = {
    Kind.STEP_FAILED: RED,
    Kind.APPROVAL_DENIED: RED,
    Kind.APPROVAL_REFUSED: RED,
    Kind.STEP_SUCCEEDED: GREEN,
    Kind.APPROVAL_APPROVED: GREEN,
    Kind.APPROVAL_REQUESTED: YELLOW,
    Kind.APPROVAL_EXPIRED: YELLOW,
    Kind.APPROVAL_VOIDED: YELLOW,
    Kind.STEP_SKIPPED: DIM,
    Kind.STEP_DRY_RUN: DIM,
    Kind.FINDING: BOLD,
    Kind.RUN_STARTED: BOLD,
}
STATUS_COLOUR = {"completed": GREEN, "failed": RED, "crashed": RED, "denied": YELLOW, "aborted": YELLOW}
DECIDED = {Kind.APPROVAL_APPROVED, Kind.APPROVAL_DENIED, Kind.APPROVAL_EXPIRED, Kind.APPROVAL_VOIDED}
STEP_ENDS = {Kind.STEP_SUCCEEDED, Kind.STEP_FAILED, Kind.STEP_SKIPPED, Kind.STEP_DRY_RUN}
#: a step's own duration parameters, shown as the second figure of its progress line
BUDGET_PARAMS = ("seconds", "window", "window_seconds", "duration", "timeout")
TICK_SECONDS = 1.0
#: the live line appears only once a wait or a step has lasted this long (no flicker for fast steps)
LIVE_AFTER_SECONDS = 1.5


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a file
        return False


def wants_colour(stream: Any, environ: Any = None) -> bool:
    """Colour for ``stream``: a terminal, ``NO_COLOR`` unset (any value, even empty, turns it off)
    and ``TERM`` not ``dumb``."""
    env = os.environ if environ is None else environ
    return is_terminal(stream) and "NO_COLOR" not in env and env.get("TERM") != "dumb"


def paint(text: str, colour: str, enabled: bool) -> str:
    return f"{colour}{text}{RESET}" if enabled and colour else text


def event_colour(event: Event) -> str:
    if event.kind == Kind.RUN_FINISHED:
        return BOLD + STATUS_COLOUR.get(str(event.details.get("status")), "")
    return KIND_COLOUR.get(event.kind, "")


def _short(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _budget(params: Any) -> float | None:
    if not isinstance(params, dict):
        return None
    for key in BUDGET_PARAMS:
        value = params.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


class ConsoleSink:
    """Prints each event as one line as it happens (see the module doc for colour and the live
    line). ``store`` and ``run_id`` let it show decisions other processes record."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        store: TimelineStore | None = None,
        run_id: str | None = None,
        colour: bool | None = None,
        live: bool | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.stream = stream
        self.store = store
        self.run_id = run_id
        self._colour = colour
        self._live = live
        self.poll_seconds = poll_seconds
        self._lock = threading.RLock()
        self._printed: set[int] = set()
        self._pending: dict[str, tuple[str, datetime | None, float]] = {}  # step -> (title, expiry, since)
        self._running: dict[str, tuple[str, float | None, float]] = {}  # step -> (label, budget, since)
        self._shown = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_poll = 0.0

    # -- what the terminal can do ---------------------------------------------------------------
    @property
    def out(self) -> Any:
        return self.stream or sys.stdout

    @property
    def colour(self) -> bool:
        return wants_colour(self.out) if self._colour is None else self._colour

    @property
    def live(self) -> bool:
        return is_terminal(self.out) if self._live is None else self._live

    # -- the sink ---------------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        with self._lock:
            if self._pending and self._can_poll():
                # a decision another process recorded comes before what it caused here
                self._poll(force=True)
            self._print(event)
            self._track(event)
        if event.kind == Kind.RUN_FINISHED:
            self.close()
        elif self._thread is None and (self.live or self._can_poll()):
            self._thread = threading.Thread(target=self._tick, name="runbook-console", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._erase()

    def _can_poll(self) -> bool:
        return self.store is not None and self.run_id is not None

    def _print(self, event: Event) -> None:
        if event.id is not None:
            if event.id in self._printed:
                return
            self._printed.add(event.id)
        self._erase()
        print(paint(event.line(), event_colour(event), self.colour), file=self.out, flush=True)

    def _track(self, event: Event) -> None:
        step = event.step_id or ""
        now = time.monotonic()
        if event.kind == Kind.APPROVAL_REQUESTED:
            expiry = event.details.get("expires_at")
            try:
                when = datetime.fromisoformat(str(expiry)) if expiry else None
            except ValueError:
                when = None
            self._pending[step] = (step, when, now)
        elif event.kind in DECIDED:
            self._pending.pop(step, None)
        elif event.kind == Kind.STEP_STARTED:
            self._running[step] = (step, _budget(event.details.get("params")), now)
        elif event.kind in STEP_ENDS:
            self._running.pop(step, None)
            self._pending.pop(step, None)
        elif event.kind == Kind.RUN_FINISHED:
            self._pending.clear()
            self._running.clear()

    # -- the live line ----------------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                if self._pending and self._can_poll():
                    self._poll()
                if self.live:
                    with self._lock:
                        self._draw()
            except Exception:  # noqa: BLE001 - the live line is decoration; the run goes on
                continue

    def _poll(self, *, force: bool = False) -> None:
        """Print the events other processes recorded for this run (a decision from Slack or another
        ``runbook approve``), once each."""
        if not force and time.monotonic() - self._last_poll < self.poll_seconds:
            return
        self._last_poll = time.monotonic()
        assert self.store is not None and self.run_id is not None
        events = self.store.events(self.run_id)
        with self._lock:
            for e in events:
                if e.id is not None and e.id not in self._printed and e.kind != Kind.RUN_FINISHED:
                    self._print(e)
                    self._track(e)

    def live_text(self, now: float | None = None) -> str | None:
        """The live line now, or None when nothing has waited long enough to show one."""
        mono = time.monotonic() if now is None else now
        for step, expiry, since in self._pending.values():
            if mono - since < LIVE_AFTER_SECONDS:
                continue
            if expiry is None:
                return f"waiting for approval of {step}"
            left = (expiry - datetime.now(UTC)).total_seconds()
            return f"waiting for approval of {step} — {_short(left)} left"
        for step, budget, since in self._running.values():
            elapsed = mono - since
            if elapsed < LIVE_AFTER_SECONDS:
                continue
            total = f"/{_short(budget)}" if budget else ""
            return f"progress: {step} {_short(elapsed)}{total}"
        return None

    def _draw(self) -> None:
        text = self.live_text()
        if text is None:
            self._erase()
            return
        self.out.write(CLEAR_LINE + paint(text, DIM, self.colour))
        self.out.flush()
        self._shown = True

    def _erase(self) -> None:
        if self._shown:
            self.out.write(CLEAR_LINE)
            self.out.flush()
            self._shown = False
