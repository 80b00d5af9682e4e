"""The approval gate end to end without Prefect: the real engine, the store-backed gate, the Slack
thread on a loopback Slack API (real slack_sdk), and signed clicks through the gateway route."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runbook.approvals.policy import Identity
from runbook.approvals.service import Approvals
from runbook.slack.blocks import ApprovalAction
from runbook.store.database import StoreError
from tests.approvals.conftest import SlackDesk, wait_until
from tests.approvals.helpers import HEAD, kinds
from tests.support.slack_api import SlackAPI


def gated(out: Path, *, timeout: str = "30s", extra: str = "") -> str:
    return (
        HEAD
        + f"""
steps:
  - id: look
    title: Look at the queue
    action: core.set
    with: {{values: {{depth: 42}}, summary: "42 messages stuck"}}
  - id: purge
    title: Purge the stuck queue
    action: testing.record
    with: {{file: "{out}", label: "purged"}}
    approval: {{approvers: [incident-commander], timeout: {timeout}{extra}}}
finally:
  - id: wrapup
    action: timeline.note
    with: {{text: "wrap-up ran"}}
"""
    )


def approval_message(slack: SlackAPI) -> dict:
    msgs = slack.wait_for("chat.postMessage", where=lambda c: c["args"].get("blocks"))
    return msgs[-1]["args"]


def button_value(slack: SlackAPI) -> str:
    blocks = approval_message(slack)["blocks"]
    actions = next(b for b in blocks if b["type"] == "actions")
    return actions["elements"][0]["value"]


def request_update(slack: SlackAPI) -> dict:
    """The last ``chat.update`` of the approval request (the thread's root is updated too, at the end)."""
    return slack.wait_for("chat.update", where=lambda c: c["args"].get("blocks"))[-1]["args"]


def header(blocks: list[dict]) -> str:
    return next(b["text"]["text"] for b in blocks if b["type"] == "header")


def pending_id(approvals: Approvals) -> int:
    return wait_until(lambda: approvals.store.pending(), what="a pending request")[0].id


def test_approve_in_slack_executes_once_and_updates_the_message(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-approve")
    value = button_value(desk.slack)
    msg = approval_message(desk.slack)
    text = str(msg["blocks"])
    assert "testing.record" in text and "42 messages stuck" in text and "incident-commander" in text
    assert msg["thread_ts"] and msg["reply_broadcast"] is True
    # the approvers are @-mentioned by their Slack ids (from the approvers file), so Slack notifies them
    assert "<@U0ALICE> <@U0BOB> <@U0CAROL>" in text and "<@U0DAVE>" not in text
    # what it does comes first; a destructive Approve asks for confirmation
    assert msg["blocks"][1]["text"]["text"].startswith("*What it does:*")
    approve = next(b for b in msg["blocks"] if b["type"] == "actions")["elements"][0]
    assert approve["action_id"] == ApprovalAction.APPROVE and approve["confirm"]["style"] == "danger"
    assert "testing.record will run now" in approve["confirm"]["text"]["text"]
    assert not out.exists()

    r = desk.click("U0ALICE", ApprovalAction.APPROVE, value, reason="queue is poisoned")
    assert r.status_code == 200 and r.json()["state"] == "decided"
    outcome = run.join()
    assert outcome.status == "completed"
    assert out.read_text().splitlines() == ["purged"]

    events = desk.timeline.events("run-approve")
    approved = [e for e in events if e.kind == "approval.approved"]
    assert len(approved) == 1
    assert approved[0].actor == "alice" and approved[0].details["reason"] == "queue is poisoned"
    assert (
        approved[0].details["plan_hash"] == value.split(":")[1] and approved[0].details["channel"] == "slack"
    )
    assert kinds(desk.timeline, "run-approve").index(("approval.approved", "purge")) < kinds(
        desk.timeline, "run-approve"
    ).index(("step.started", "purge"))

    # a double click decides nothing more and tells the clicker why
    r = desk.click("U0ALICE", ApprovalAction.APPROVE, value)
    assert r.json()["ok"] is False and "already approved" in r.json()["text"]
    desk.slack.wait_for("chat.postEphemeral")
    assert len([e for e in desk.timeline.events("run-approve") if e.kind == "approval.approved"]) == 1
    assert out.read_text().splitlines() == ["purged"]

    # the request message was updated in place: who, what, when, and no buttons
    update = request_update(desk.slack)
    assert update["ts"] == approval_message(desk.slack).get("ts", update["ts"])
    assert "Approved" in update["text"] and "alice" in update["text"]
    assert header(update["blocks"]) == "Approved: Purge the stuck queue"
    assert not [b for b in update["blocks"] if b["type"] in ("actions", "input")]
    # the whole timeline is in one thread, started by the run-started message
    root = desk.slack.named("chat.postMessage")[0]["args"]
    assert "thread_ts" not in root and "run-approve" in root["text"]
    wait_until(lambda: any("Run finished" in t for t in desk.slack.texts()), what="run finished posted")
    # the run's end is broadcast to the channel, and the thread's first message says how it ended
    end = next(c["args"] for c in desk.slack.named("chat.postMessage") if "Run finished" in c["args"]["text"])
    assert end["reply_broadcast"] is True and "✅ Completed" in end["text"]
    root_update = desk.slack.wait_for("chat.update", where=lambda c: c["args"]["ts"] == end["thread_ts"])
    assert (
        root_update[-1]["args"]["text"].startswith("*✅ Completed*")
        and "run-approve" in root_update[-1]["args"]["text"]
    )


def test_deny_does_not_execute_and_finally_runs(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-deny")
    r = desk.click("U0BOB", ApprovalAction.DENY, button_value(desk.slack), reason="not yet")
    assert r.json()["state"] == "decided"
    outcome = run.join()
    assert outcome.status == "denied" and outcome.exit_code == 2
    assert not out.exists()
    ks = kinds(desk.timeline, "run-deny")
    assert ("approval.denied", "purge") in ks and ("step.succeeded", "wrapup") in ks
    assert ("step.started", "purge") not in ks
    denied = next(e for e in desk.timeline.events("run-deny") if e.kind == "approval.denied")
    assert denied.actor == "bob" and denied.details["reason"] == "not yet"
    update = request_update(desk.slack)
    assert "Denied" in update["text"] and "not yet" in update["text"]
    assert header(update["blocks"]) == "Denied: Purge the stuck queue"


def test_expiry_is_a_recorded_denial(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out, timeout="1s"), run_id="run-expire")
    outcome = run.join()
    assert outcome.status == "denied" and "expired" in (outcome.reason or "")
    assert not out.exists()
    expired = [e for e in desk.timeline.events("run-expire") if e.kind == "approval.expired"]
    assert len(expired) == 1 and expired[0].actor == "runbook"
    update = request_update(desk.slack)
    assert "Expired" in update["text"] and header(update["blocks"]) == "Expired: Purge the stuck queue"


def test_unauthorised_clicker_is_refused_and_told_why(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-eve")
    value = button_value(desk.slack)
    r = desk.click("U0DAVE", ApprovalAction.APPROVE, value)  # sre, not incident-commander
    assert r.status_code == 200 and r.json()["ok"] is False
    eph = desk.slack.wait_for("chat.postEphemeral")[-1]["args"]
    assert eph["user"] == "U0DAVE" and "not in the approver roles" in eph["text"]
    refused = [e for e in desk.timeline.events("run-eve") if e.kind == "approval.refused"]
    assert refused and refused[0].actor == "dave"
    assert desk.approvals.store.pending() and not desk.approvals.store.votes(
        desk.approvals.store.pending()[0].id
    )
    # a proper approver still can
    desk.click("U0ALICE", ApprovalAction.APPROVE, value)
    assert run.join().status == "completed"


def test_two_person_rule_refuses_the_requester(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(
        gated(out, extra=", two_person: true"),
        run_id="run-2p",
        requested_by="email:carol@example.com",
    )
    value = button_value(desk.slack)
    # carol clicks from Slack (U0CAROL is carol per the people map): she started the run
    r = desk.click("U0CAROL", ApprovalAction.APPROVE, value)
    assert r.json()["ok"] is False and "started this run" in r.json()["text"]
    assert desk.approvals.store.pending()
    # bob is recognised by his email too (users.info); he may approve
    r = desk.click("U0BOB", ApprovalAction.APPROVE, value)
    assert r.json()["state"] == "decided"
    assert run.join().status == "completed"
    refused = next(e for e in desk.timeline.events("run-2p") if e.kind == "approval.refused")
    assert refused.actor == "carol"


def test_quorum_of_two_needs_two_different_people(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out, extra=", min_approvals: 2"), run_id="run-q")
    value = button_value(desk.slack)
    assert desk.click("U0ALICE", ApprovalAction.APPROVE, value).json()["state"] == "counted"
    assert desk.click("U0ALICE", ApprovalAction.APPROVE, value).json()["state"] == "duplicate"
    assert desk.approvals.store.pending(), "one person twice is not a quorum"
    # the message shows progress and keeps its buttons
    partial = request_update(desk.slack)
    assert "1 of 2" in str(partial["blocks"]) and any(b["type"] == "actions" for b in partial["blocks"])
    assert desk.click("U0BOB", ApprovalAction.APPROVE, value).json()["state"] == "decided"
    assert run.join().status == "completed"
    assert out.read_text().splitlines() == ["purged"]
    approved = next(e for e in desk.timeline.events("run-q") if e.kind == "approval.approved")
    assert approved.details["approvers"] == "alice, bob"


def test_simultaneous_clicks_decide_once(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-race")
    value = button_value(desk.slack)
    barrier = threading.Barrier(6)
    states: list[str] = []

    def go(user: str, action: str) -> None:
        barrier.wait()
        states.append(desk.click(user, action, value).json()["state"])

    users = [
        ("U0ALICE", ApprovalAction.APPROVE),
        ("U0BOB", ApprovalAction.DENY),
        ("U0ALICE", ApprovalAction.APPROVE),
        ("U0CAROL", ApprovalAction.APPROVE),
        ("U0BOB", ApprovalAction.DENY),
        ("U0CAROL", ApprovalAction.APPROVE),
    ]
    threads = [threading.Thread(target=go, args=u) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert states.count("decided") == 1, states
    run.join()
    decided = [
        e for e in desk.timeline.events("run-race") if e.kind in ("approval.approved", "approval.denied")
    ]
    assert len(decided) == 1
    executions = len(out.read_text().splitlines()) if out.exists() else 0
    assert executions == (1 if decided[0].kind == "approval.approved" else 0)


def test_incident_channel_is_created_for_the_run(desk: SlackDesk) -> None:
    text = gated(desk.tmp_path / "executed").replace("owner: me\n", "owner: me\nincident_channel: true\n")
    run = desk.start(
        text,
        run_id="run-inc",
        incident={"id": "P1234AB", "title": "Queue 'plans' stuck!"},
    )
    created = desk.slack.wait_for("conversations.create")[0]["args"]
    assert created["name"] == "inc-p1234ab-queue-plans-stuck"
    desk.click("U0ALICE", ApprovalAction.APPROVE, button_value(desk.slack))
    assert run.join().status == "completed"
    channel_id = desk.slack.channels["inc-p1234ab-queue-plans-stuck"]
    wait_until(
        lambda: (
            all(c["args"]["channel"] == channel_id for c in desk.slack.named("chat.postMessage"))
            and any("Run finished" in t for t in desk.slack.texts())
        ),
        what="every event in the incident channel",
    )


def test_a_decision_never_stands_without_its_timeline_event(desk: SlackDesk) -> None:
    """The decision and its ``approval.approved`` commit together. The waiting run goes on the moment
    it sees a decision, so one committed before its event let the step start ahead of its approval
    in the timeline (seen in CI), and one whose event then failed to write let the step run with no
    approval in the timeline at all. Here the store refuses the event: the decision must not stand,
    the run keeps waiting, and the next click decides with the event first."""
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-atomic")
    value = button_value(desk.slack)
    (row,) = desk.approvals.store.pending()
    db = desk.timeline.db
    assert not db.is_postgres  # SQLite's RAISE stands in for a store that refuses the write
    db.execute(
        "CREATE TRIGGER refuse_approved BEFORE INSERT ON runbook_events WHEN NEW.kind = 'approval.approved'"
        " BEGIN SELECT RAISE(ABORT, 'the store refused the event'); END"
    )
    with pytest.raises(StoreError, match="refused the event"):
        desk.approvals.vote(row, Identity(slack="U0ALICE"), approve=True, reason="first", channel="slack")
    # through Slack: the clicker is told nothing was decided, and why
    r = desk.click("U0ALICE", ApprovalAction.APPROVE, value, reason="first click")
    assert r.status_code == 200 and r.json()["state"] == "error" and not r.json()["ok"]
    told = desk.slack.wait_for("chat.postEphemeral", where=lambda c: c["args"].get("user") == "U0ALICE")
    assert "Not recorded" in told[-1]["args"]["text"] and "refused the event" in told[-1]["args"]["text"]
    fresh = desk.approvals.store.get(row.id)
    assert fresh is not None and fresh.status == "pending" and not desk.approvals.store.votes(row.id)
    time.sleep(0.3)  # the run's watcher polls every 50 ms: a committed decision would start the step
    assert not out.exists() and ("step.started", "purge") not in kinds(desk.timeline, "run-atomic")

    db.execute("DROP TRIGGER refuse_approved")
    r = desk.click("U0ALICE", ApprovalAction.APPROVE, value, reason="second")
    assert r.status_code == 200 and r.json()["state"] == "decided"
    assert run.join().status == "completed" and out.read_text().splitlines() == ["purged"]
    seen = kinds(desk.timeline, "run-atomic")
    assert seen.count(("approval.approved", "purge")) == 1
    assert seen.index(("approval.approved", "purge")) < seen.index(("step.started", "purge"))
    (approved,) = [e for e in desk.timeline.events("run-atomic") if e.kind == "approval.approved"]
    assert approved.details["reason"] == "second"
