"""A worker that dies while a run waits for approval: the decision made meanwhile is not lost, and
if the call changed by the time the run comes back (the live value it was rendered from moved), the
old approval is void and a new one is asked — the purge runs once, with what was approved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runbook.actions import ActionRegistry
from runbook.approvals.policy import Identity
from runbook.approvals.service import Approvals
from runbook.cli import main
from runbook.core.settings import Settings
from runbook.store.timeline import TimelineStore
from tests.approvals.conftest import wait_until
from tests.approvals.helpers import HEAD, BackgroundRun, kinds

ROOT = Path(__file__).resolve().parents[2]


def text(tmp: Path) -> str:
    return (
        HEAD
        + f"""
steps:
  - id: look
    action: testing.read_value
    with: {{file: "{tmp / "depth"}"}}
  - id: purge
    title: Purge up to the measured depth
    action: testing.record
    with: {{file: "{tmp / "executed"}", label: "purge {{{{ steps.look.value }}}}"}}
    approval: {{approvers: [incident-commander], timeout: 60s}}
"""
    )


def start_and_kill_worker(tmp: Path, run_id: str, approvals: Approvals) -> None:
    """Start the run in a child process, wait until it asks, then kill the worker."""
    pb = tmp / "pb.yaml"
    pb.write_text(text(tmp), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.approvals.child_run", str(pb), run_id],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: (
                ("approval.requested", "purge") in kinds(approvals.timeline, run_id)
                or child.poll() is not None
            ),
            timeout=30,
            what="request",
        )
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
    finally:
        child.kill()
        child.wait()


def test_decision_made_while_the_worker_was_down_is_not_lost(
    reg: ActionRegistry,
    slack_env: Settings,
    timeline: TimelineStore,
    approvals: Approvals,
    tmp_path: Path,
) -> None:
    (tmp_path / "depth").write_text("10")
    start_and_kill_worker(tmp_path, "run-restart", approvals)
    assert main(["approve", "run-restart", "purge", "--as", "carol", "--reason", "go"]) == 0
    # the run comes back (a Prefect retry re-runs the flow with the same run id)
    outcome = BackgroundRun(text(tmp_path), reg, slack_env, timeline, run_id="run-restart").join()
    assert outcome.status == "completed"
    assert (tmp_path / "executed").read_text().splitlines() == ["purge 10"]
    assert [k for k, s in kinds(timeline, "run-restart") if s == "purge"].count("approval.requested") == 1


def test_changed_call_voids_the_approval_and_asks_again(
    reg: ActionRegistry,
    slack_env: Settings,
    timeline: TimelineStore,
    approvals: Approvals,
    tmp_path: Path,
) -> None:
    (tmp_path / "depth").write_text("10")
    start_and_kill_worker(tmp_path, "run-void", approvals)
    first = approvals.store.pending()[0]
    assert main(["approve", "run-void", "purge", "--as", "carol"]) == 0  # approves "purge 10"
    (tmp_path / "depth").write_text("5000")  # the world moved on
    run = BackgroundRun(text(tmp_path), reg, slack_env, timeline, run_id="run-void")
    second = wait_until(lambda: approvals.store.pending(), timeout=20, what="a new request")[0]
    assert second.id != first.id and second.plan_hash != first.plan_hash
    assert second.request.params["label"] == "purge 5000"
    assert not (tmp_path / "executed").exists(), "the stale approval executed nothing"
    assert approvals.vote(second, Identity(slack="U0BOB"), approve=True, reason=None, channel="slack").ok
    assert run.join().status == "completed"
    assert (tmp_path / "executed").read_text().splitlines() == ["purge 5000"]
    purge = [k for k, s in kinds(timeline, "run-void") if s == "purge"]
    assert purge.index("approval.voided") < len(purge) - 1 - purge[::-1].index("approval.requested")
    voided = next(e for e in timeline.events("run-void") if e.kind == "approval.voided")
    assert voided.details["approved_hash"] == first.plan_hash
    assert approvals.store.get(first.id).status == "voided"  # type: ignore[union-attr]
