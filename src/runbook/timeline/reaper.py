"""Lost-worker detection: runs left ``running`` by a dead worker are marked ``crashed``.

Why: a worker killed with -9 (OOM killer, node loss, ``kubectl delete --force``) runs no ``finally``
and writes no ``run.finished``; without a reaper the run says "running" forever, the Slack thread
never gets an ending, and nobody knows that a destructive step may have been half done. Every live
run's engine refreshes ``runbook_runs.heartbeat_at`` every few seconds, also while it waits for an
approval (the heartbeat is its own thread), so a heartbeat older than the threshold means the
process is gone. The reaper then:

* compare-and-sets the run ``running`` → ``crashed`` (a run that beat in the meantime, or that a
  second reaper on another host already handled, is left alone: one event per crash);
* writes a ``run.finished`` event with status ``crashed`` saying what was in flight: the last step
  started without an outcome, destructive calls claimed in the ledger but never finished (outcome
  unknown: the engine will not re-run them), and approvals still pending (they stay pending: a
  decision recorded now is honoured when the run is retried with the same run id);
* calls ``on_crash(run_id, reason)`` when given: the composition root passes
  :func:`runbook.compiler.prefect_runs.crash_flow_run`, which marks the Prefect flow run Crashed
  when Prefect still says Running, so the UI agrees.

A crashed run that is retried (same run id) goes back to ``running`` through ``start_run``.
``reap_lost_runs`` is a plain function: the gateway's background loop and ``runbook serve`` call it
periodically (:class:`Reaper`), tests call it directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.core.clock import ts
from runbook.core.events import Event, Kind
from runbook.core.states import RunStatus
from runbook.store.timeline import RUNNING, TimelineStore

log = logging.getLogger("runbook.reaper")

#: Default threshold: nine missed beats of the engine's default 10 s heartbeat.
DEFAULT_STALE_AFTER_SECONDS = 90.0
CRASHED = RunStatus.CRASHED


_ts = ts


def in_flight(store: TimelineStore, run_id: str) -> dict[str, Any]:
    """What a run was doing when its worker vanished, from the timeline, ledger and approvals."""
    events = store.events(run_id)
    open_steps: dict[str, Event] = {}
    for e in events:
        if not e.step_id:
            continue
        if e.kind == Kind.STEP_STARTED:
            open_steps[e.step_id] = e
        elif e.kind in (Kind.STEP_SUCCEEDED, Kind.STEP_SKIPPED, Kind.STEP_DRY_RUN) or (
            e.kind == Kind.STEP_FAILED and not e.details.get("will_retry")
        ):
            open_steps.pop(e.step_id, None)
    last = max(open_steps.values(), key=lambda e: e.id or 0, default=None)
    claims = _rows(
        store,
        "SELECT step_id, plan_hash, started_at FROM runbook_executions"
        " WHERE run_id = ? AND status = 'started'",
        (run_id,),
    )
    pending = _rows(
        store,
        "SELECT id, step_id, plan_hash, expires_at FROM runbook_approval_requests"
        " WHERE run_id = ? AND status = 'pending' ORDER BY id",
        (run_id,),
    )
    return {
        "step": last.step_id if last else None,
        "step_action": last.details.get("action") if last else None,
        "step_started_at": last.time.isoformat() if last else None,
        "unfinished_destructive": [
            {"step_id": r["step_id"], "plan_hash": r["plan_hash"], "claimed_at": r["started_at"]}
            for r in claims
        ],
        "pending_approvals": [
            {"request_id": int(r["id"]), "step_id": r["step_id"], "expires_at": r["expires_at"]}
            for r in pending
        ],
    }


def _rows(store: TimelineStore, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    try:
        return store.db.query(sql, args)
    except Exception as exc:  # noqa: BLE001 - a store without that table has nothing to report
        log.debug("reaper: %s", exc)
        return []


def describe_in_flight(what: dict[str, Any]) -> str:
    parts = []
    if what["step"]:
        parts.append(f"step {what['step']} ({what['step_action']}) had started and has no outcome")
    for c in what["unfinished_destructive"]:
        parts.append(
            f"destructive step {c['step_id']} was claimed and never finished — outcome unknown, it will"
            " not be re-run automatically: check the target"
        )
    for p in what["pending_approvals"]:
        parts.append(
            f"approval for step {p['step_id']} is still pending (a decision recorded now is honoured"
            " when the run is retried)"
        )
    return "; ".join(parts) or "nothing was in flight"


def reap_lost_runs(
    store: TimelineStore,
    stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
    *,
    on_crash: Callable[[str, str], None] | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Mark runs whose worker is gone ``crashed``; returns their run ids."""
    now = now or datetime.now(UTC)
    cutoff = _ts(now - timedelta(seconds=stale_after_seconds))
    candidates = store.db.query(
        "SELECT run_id, heartbeat_at, started_at FROM runbook_runs WHERE status = ?"
        " AND COALESCE(heartbeat_at, started_at) < ?",
        (RUNNING, cutoff),
    )
    reaped: list[str] = []
    for row in candidates:
        run_id = row["run_id"]
        last_beat = row["heartbeat_at"] or row["started_at"]
        what = in_flight(store, run_id)
        reason = f"worker lost: no heartbeat since {last_beat}; {describe_in_flight(what)}"
        changed = store.db.execute(
            "UPDATE runbook_runs SET status = ?, finished_at = ?, reason = ? WHERE run_id = ? AND status = ?"
            " AND COALESCE(heartbeat_at, started_at) < ?",
            (CRASHED, _ts(now), reason[:2000], run_id, RUNNING, cutoff),
        )
        if changed != 1:
            continue  # it beat again, or another reaper got there first
        run = store.get_run(run_id) or {}
        store.append(
            Event(
                run_id=run_id,
                kind=Kind.RUN_FINISHED,
                summary=f"run crashed: {reason}",
                actor="runbook-reaper",
                incident_id=run.get("incident_id"),
                details={"status": CRASHED, "reason": reason, "last_heartbeat": last_beat, "in_flight": what},
            )
        )
        # pending approvals stay pending: a crashed run is retried with the same run id, and a
        # decision recorded meanwhile is honoured then (docs/APPROVALS.md); only an ended run voids them
        log.warning("run %s marked crashed: %s", run_id, reason)
        if on_crash is not None:
            on_crash(run_id, reason)
        reaped.append(run_id)
    return reaped


class Reaper:
    """Calls :func:`reap_lost_runs` every ``interval`` seconds in a daemon thread (gateway, serve)."""

    def __init__(
        self,
        store: TimelineStore,
        *,
        stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS,
        interval: float = 30.0,
        on_crash: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.stale_after_seconds = stale_after_seconds
        self.interval = interval
        self.on_crash = on_crash
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Reaper:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="runbook-reaper", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reap_lost_runs(self.store, self.stale_after_seconds, on_crash=self.on_crash)
            except Exception as exc:  # noqa: BLE001 - a store outage must not kill the loop
                log.warning("reaper: %s", exc)
