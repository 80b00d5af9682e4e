"""Only verified Slack requests and the local CLI decide: forged, tampered, stale and unsigned
requests are 401 with nothing recorded; the CLI follows the same policy; the console channel
prints how to answer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from runbook.actions import ActionRegistry
from runbook.approvals.policy import Identity
from runbook.approvals.service import Approvals
from runbook.cli import main
from runbook.core.settings import Settings
from runbook.gateway.slack_routes import get_approvals, router
from runbook.slack.blocks import ApprovalAction
from runbook.store.schema import open_database
from runbook.store.slack import SlackStore
from runbook.store.timeline import TimelineStore
from tests.approvals.conftest import SIGNING_SECRET, SlackDesk, block_actions, form, sign, wait_until
from tests.approvals.helpers import BackgroundRun, kinds
from tests.approvals.test_gate_slack import button_value, gated
from tests.support.approvers import current_login


def decisions(timeline: TimelineStore, run_id: str) -> list[str]:
    return [
        k
        for k, _ in kinds(timeline, run_id)
        if k in ("approval.approved", "approval.denied", "approval.refused")
    ]


def test_forged_tampered_stale_and_unsigned_requests_are_401(desk: SlackDesk) -> None:
    run = desk.start(gated(desk.tmp_path / "x"), run_id="run-sig")
    value = button_value(desk.slack)
    body = form(block_actions("U0ALICE", ApprovalAction.APPROVE, value))
    url = "/slack/interactions"
    forged = desk.gateway.post(url, content=body, headers=sign(body, secret="not-the-signing-secret"))
    tampered_body = form(block_actions("U0ALICE", ApprovalAction.APPROVE, value, reason="changed"))
    tampered = desk.gateway.post(url, content=tampered_body, headers=sign(body))
    stale = desk.gateway.post(url, content=body, headers=sign(body, timestamp=int(time.time()) - 6 * 60))
    future = desk.gateway.post(url, content=body, headers=sign(body, timestamp=int(time.time()) + 6 * 60))
    unsigned = desk.gateway.post(
        url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    garbage = desk.gateway.post(url, content=body, headers={**sign(body), "X-Slack-Signature": "v0=zz"})
    for r in (forged, tampered, stale, future, unsigned, garbage):
        assert r.status_code == 401, r.text
        assert SIGNING_SECRET not in r.text
    row = desk.approvals.store.pending()[0]
    assert not desk.approvals.store.votes(row.id) and decisions(desk.timeline, "run-sig") == []
    # no signing secret configured: every interaction is refused
    bare = Approvals(Settings.from_env({"RUNBOOK_DATABASE_URL": desk.settings.database_url}), desk.timeline)
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_approvals] = lambda: bare
    assert TestClient(app).post(url, content=body, headers=sign(body)).status_code == 401
    assert desk.approvals.store.pending() and decisions(desk.timeline, "run-sig") == []
    # the genuine request still works
    assert desk.gateway.post(url, content=body, headers=sign(body)).json()["state"] == "decided"
    assert run.join().status == "completed"


def test_cli_approve_policy_and_console_instructions(
    reg: ActionRegistry,
    console_env: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    timeline = TimelineStore(open_database(console_env.database_url))
    assert main(["approve", "run-cli", "purge", "--as", "carol"]) == 1  # nothing waiting yet
    run = BackgroundRun(
        gated(tmp_path / "x", extra=", two_person: true"),
        reg,
        console_env,
        timeline,
        run_id="run-cli",
        requested_by=f"unix:{current_login()}",  # carol started it
    )
    approvals = Approvals(console_env, timeline)
    wait_until(lambda: approvals.store.pending(), what="pending")
    # the row is stored before the console channel prints it: wait for the print, keeping all output
    printed: list[str] = []

    def instructions_printed() -> bool:
        printed.append(capsys.readouterr().out)
        return "└ deny:" in "".join(printed)

    wait_until(instructions_printed, what="the console instructions")
    shown = "".join(printed)
    assert "APPROVAL NEEDED" in shown and "runbook approve run-cli purge --as USER" in shown
    assert "--deny" in shown and "testing.record" in shown
    assert main(["approve", "run-cli", "purge", "--as", "mallory"]) == 1  # --as names someone else
    assert main(["approve", "run-cli", "purge", "--as", "U0ALICE"]) == 1  # alice's id is not you
    assert main(["approve", "run-cli", "purge", "--as", "carol"]) == 1  # carol started the run
    approvals = Approvals(console_env, timeline)
    row = approvals.store.pending()[0]
    assert approvals.vote(row, Identity(slack="U0ALICE"), approve=True, reason="ok", channel="slack").ok
    assert run.join().status == "completed"
    assert main(["approve", "run-cli", "purge"]) == 1  # decided already
    approved = next(e for e in timeline.events("run-cli") if e.kind == "approval.approved")
    assert approved.actor == "alice" and approved.details["channel"] == "slack"
    refused = [e.actor for e in timeline.events("run-cli") if e.kind == "approval.refused"]
    me = f"unix:{current_login()}"
    assert refused == [me, me, "carol"]
    err = capsys.readouterr().err
    assert "does not name you" in err and "started this run" in err


def test_slack_down_never_fails_the_run_and_the_timeline_is_posted_later(desk: SlackDesk) -> None:
    slack, timeline, approvals = desk.slack, desk.timeline, desk.approvals
    slack.down()
    run = desk.start(gated(desk.tmp_path / "x"), run_id="run-down")
    row = wait_until(lambda: approvals.store.pending(), what="pending")[0]
    assert main(["approve", "run-down", "purge", "--as", "carol"]) == 0  # the operator (carol) at the CLI
    assert run.join().status == "completed"
    events = timeline.events("run-down")
    unsent = SlackStore(approvals.store.db).outbox_counts("run-down").get("unsent", 0)
    assert unsent >= len(events), "every event waits in the outbox"
    slack.up()
    slack.fail_next(1, status=429, retry_after=1)  # and Slack is rate limiting when it comes back
    from runbook.slack.sink import flush_outbox

    flush_outbox(desk.settings, timeline)
    outbox = SlackStore(approvals.store.db)
    wait_until(lambda: not outbox.outbox_counts("run-down").get("unsent"), what="outbox drained")
    assert [c["status"] for c in slack.calls][0] == 429, "the 429 was retried after Retry-After"
    texts = slack.texts()
    assert "run-down" in texts[0] and "Run finished" in texts[-1]
    assert (
        len(slack.named("chat.postMessage")) == len(events) + 1
    )  # every event (run.started = root) + Block Kit
    assert slack.named("chat.update") and approvals.store.get(row.id).slack_ts  # type: ignore[union-attr]
    thread_ts = slack.named("chat.postMessage")[0]["args"]
    replies = [c["args"] for c in slack.named("chat.postMessage")[1:]]
    assert "thread_ts" not in thread_ts and all(r.get("thread_ts") for r in replies)
    assert json.dumps(slack.calls).count(slack.token) == 0
