"""Crash safety: a worker killed (-9) before, during and after a destructive step, or while it waits
for approval, then the same run id re-run through the engine (what a Prefect retry or a new worker
does). Nothing runs twice for one approval, no decision is lost, the reaper marks the lost run
``crashed`` saying what was in flight, and the timeline tells the story. Run on SQLite and on
PostgreSQL (the ledger must hold across hosts: it lives in the shared store)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from runbook.cli import main as cli
from runbook.compiler.engine import RunOptions, RunOutcome
from runbook.core.settings import Settings
from runbook.store.timeline import TimelineStore
from runbook.timeline.reaper import reap_lost_runs
from tests.gameday.conftest import Worker, wait_until
from tests.gameday.worker import build_engine


def write_playbook(tmp: Path) -> Path:
    holds = {k: tmp / f"hold-{k}" for k in ("before", "destroy", "after")}
    log = tmp / "log"
    pb = tmp / "crash.yaml"

    def step(sid: str, action: str, extra: str = "") -> str:
        return (
            f"  - id: {sid}\n    action: {action}\n"
            f'    with: {{log: "{log}", label: {sid}, hold: "{holds.get(sid, "")}"}}\n{extra}'
        )

    pb.write_text(
        "name: crash-drill\ntitle: Crash drill\nowner: sre\nsteps:\n"
        + step("before", "gameday.step")
        + step(
            "destroy", "gameday.destroy", "    approval: {approvers: [incident-commander], timeout: 120s}\n"
        )
        + step("after", "gameday.step")
        + "finally:\n"
        + step("wrapup", "gameday.step"),
        encoding="utf-8",
    )
    return pb


def lines(tmp: Path) -> list[str]:
    p = tmp / "log"
    return p.read_text().splitlines() if p.exists() else []


def kinds(store: TimelineStore, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.kind.value, e.step_id) for e in store.events(run_id)]


def resume(settings: Settings, pb: Path, run_id: str) -> tuple[threading.Thread, dict[str, RunOutcome]]:
    """The same run id through the engine again, in a thread (approvals may still be needed)."""
    box: dict[str, RunOutcome] = {}
    engine, playbook = build_engine(settings, run_id, str(pb), 0.2)

    def go() -> None:
        box["outcome"] = engine.run(playbook, RunOptions(run_id=run_id, params={}, requested_by="oncall"))

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, box


def finish(t: threading.Thread, box: dict[str, RunOutcome]) -> RunOutcome:
    t.join(30)
    assert not t.is_alive(), "resumed run did not finish"
    return box["outcome"]


def approve(run_id: str) -> None:
    assert cli(["approve", run_id, "destroy", "--as", "carol", "--reason", "gameday"]) == 0


def reap(store: TimelineStore, run_id: str) -> dict:
    """The lost worker is detected: run crashed, with a run.finished event naming what was in flight."""
    wait_until(lambda: run_id in reap_lost_runs(store, 1.0), timeout=10, what="the reaper to mark the run")
    run = store.get_run(run_id)
    assert run is not None and run["status"] == "crashed" and "worker lost" in run["reason"]
    crash = [e for e in store.events(run_id) if e.kind == "run.finished"][-1]
    assert crash.details["status"] == "crashed" and crash.actor == "runbook-reaper"
    assert reap_lost_runs(store, 1.0) == []  # once
    return crash.details["in_flight"]


def start(pb: Path, run_id: str, workers: list[Worker]) -> Worker:
    w = Worker(pb, run_id)
    workers.append(w)
    return w


def test_killed_before_the_destructive_step(gd_env, gd_store, workers, tmp_path: Path) -> None:
    pb, run_id = write_playbook(tmp_path), f"crash-before-{uuid.uuid4().hex[:8]}"
    (tmp_path / "hold-before").touch()
    w = start(pb, run_id, workers)
    wait_until(lambda: "start before" in lines(tmp_path) or not w.alive(), what="step before")
    w.kill()
    in_flight = reap(gd_store, run_id)
    assert in_flight["step"] == "before" and not in_flight["unfinished_destructive"]
    (tmp_path / "hold-before").unlink()
    t, box = resume(gd_env, pb, run_id)
    wait_until(lambda: cli(["approve", run_id, "destroy", "--as", "carol"]) == 0, what="the approval")
    outcome = finish(t, box)
    assert outcome.status == "completed"
    assert lines(tmp_path).count("start destroy") == 1
    k = kinds(gd_store, run_id)
    assert k.count(("run.started", None)) == 2 and ("run.finished", None) in k


def test_killed_while_waiting_for_approval_decision_not_lost(
    gd_env, gd_store, workers, tmp_path: Path
) -> None:
    pb, run_id = write_playbook(tmp_path), f"crash-wait-{uuid.uuid4().hex[:8]}"
    w = start(pb, run_id, workers)
    wait_until(lambda: ("approval.requested", "destroy") in kinds(gd_store, run_id), what="the request")
    w.kill()
    in_flight = reap(gd_store, run_id)
    assert [p["step_id"] for p in in_flight["pending_approvals"]] == ["destroy"]
    approve(run_id)  # decided while no worker lives
    outcome = finish(*resume(gd_env, pb, run_id))
    assert outcome.status == "completed"
    assert lines(tmp_path).count("start destroy") == 1
    k = kinds(gd_store, run_id)
    assert k.count(("approval.requested", "destroy")) == 1, "the decision was honoured, not re-asked"
    assert k.count(("approval.approved", "destroy")) == 1


def test_killed_during_the_destructive_step_is_not_rerun(gd_env, gd_store, workers, tmp_path: Path) -> None:
    pb, run_id = write_playbook(tmp_path), f"crash-during-{uuid.uuid4().hex[:8]}"
    (tmp_path / "hold-destroy").touch()
    w = start(pb, run_id, workers)
    wait_until(lambda: ("approval.requested", "destroy") in kinds(gd_store, run_id), what="the request")
    approve(run_id)
    wait_until(lambda: "start destroy" in lines(tmp_path), what="the destructive call")
    w.kill()
    in_flight = reap(gd_store, run_id)
    assert in_flight["step"] == "destroy"
    assert [c["step_id"] for c in in_flight["unfinished_destructive"]] == ["destroy"]
    (tmp_path / "hold-destroy").unlink()
    outcome = finish(*resume(gd_env, pb, run_id))
    assert lines(tmp_path).count("start destroy") == 1, "a half-done destructive call is never re-run"
    assert "done destroy" not in lines(tmp_path)
    assert outcome.status == "failed" and "worker lost mid-call" in (outcome.reason or "")
    assert "start wrapup" in lines(tmp_path), "finally still ran"
    failed = [e for e in gd_store.events(run_id) if e.kind == "step.failed" and e.step_id == "destroy"]
    assert "not re-running it" in failed[-1].summary


def test_killed_after_the_destructive_step_is_not_rerun(gd_env, gd_store, workers, tmp_path: Path) -> None:
    pb, run_id = write_playbook(tmp_path), f"crash-after-{uuid.uuid4().hex[:8]}"
    (tmp_path / "hold-after").touch()
    w = start(pb, run_id, workers)
    wait_until(lambda: ("approval.requested", "destroy") in kinds(gd_store, run_id), what="the request")
    approve(run_id)
    wait_until(lambda: "start after" in lines(tmp_path), what="the step after")
    w.kill()
    in_flight = reap(gd_store, run_id)
    assert in_flight["step"] == "after" and not in_flight["unfinished_destructive"]
    (tmp_path / "hold-after").unlink()
    outcome = finish(*resume(gd_env, pb, run_id))
    assert outcome.status == "completed"
    assert lines(tmp_path).count("start destroy") == 1
    notes = [e.summary for e in gd_store.events(run_id) if e.kind == "note" and e.step_id == "destroy"]
    assert any("already executed for this approval" in n for n in notes)


def test_waiting_run_is_not_reaped_while_its_worker_lives(gd_env, gd_store, workers, tmp_path: Path) -> None:
    """The heartbeat thread keeps beating while the gate waits: a 1 s threshold never reaps it."""
    pb, run_id = write_playbook(tmp_path), f"alive-wait-{uuid.uuid4().hex[:8]}"
    w = start(pb, run_id, workers)
    wait_until(lambda: ("approval.requested", "destroy") in kinds(gd_store, run_id), what="the request")
    first = gd_store.get_run(run_id)["heartbeat_at"]
    for _ in range(6):
        threading.Event().wait(0.5)
        assert run_id not in reap_lost_runs(gd_store, 1.0)
    assert gd_store.get_run(run_id)["heartbeat_at"] > first
    assert gd_store.get_run(run_id)["status"] == "running"
    approve(run_id)
    wait_until(lambda: not w.alive(), what="the worker to finish")
    assert w.proc.returncode == 0, w.stderr()
    assert gd_store.get_run(run_id)["status"] == "completed"
