"""Attacks on who decides, through the public surfaces: signed Slack clicks to the gateway route
(and to an app built exactly as production builds it), the ``runbook approve`` CLI, and the flow's
own parameters. Each asserts the refusal, its record, and that nothing was decided or executed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runbook.cli import main
from runbook.core.settings import Settings
from runbook.slack.blocks import ApprovalAction
from runbook.store.launches import Launch, redeem
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from tests.approvals.conftest import SlackDesk, block_actions, form, sign, wait_until
from tests.approvals.test_gate_slack import button_value, gated
from tests.support.approvers import current_login


def refusals(desk: SlackDesk, run_id: str) -> list[Any]:
    return [e for e in desk.timeline.events(run_id) if e.kind == "approval.refused"]


def nothing_decided(desk: SlackDesk, out: Path) -> None:
    assert desk.approvals.store.pending(), "the request must still wait"
    assert not out.exists(), "nothing may have executed"


def with_team(payload: dict[str, Any], team: str | None, user_team: str | None = None) -> dict[str, Any]:
    payload["team"] = {"id": team, "domain": "other"} if team else None
    payload["user"]["team_id"] = user_team if user_team is not None else team
    return payload


@pytest.mark.parametrize(
    ("team", "user_team"),
    [("T0EVIL", None), ("T0TEAM", "T0EVIL"), (None, None)],
    ids=["other-workspace", "slack-connect-guest", "no-team"],
)
def test_clicks_from_another_workspace_decide_nothing(desk: SlackDesk, team: Any, user_team: Any) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-team")
    value = button_value(desk.slack)
    payload = with_team(block_actions("U0ALICE", ApprovalAction.APPROVE, value), team, user_team)
    body = form(payload)
    r = desk.gateway.post("/slack/interactions", content=body, headers=sign(body))
    assert r.status_code == 200 and r.json()["ok"] is False and "workspace" in r.json()["text"]
    nothing_decided(desk, out)
    assert refusals(desk, "run-team"), "the refusal is recorded"
    desk.click("U0ALICE", ApprovalAction.APPROVE, value)  # the same person from the right workspace
    assert run.join().status == "completed"


def test_no_team_configured_means_no_click_counts(desk: SlackDesk, monkeypatch: pytest.MonkeyPatch) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out, timeout="3s"), run_id="run-noteam")
    value = button_value(desk.slack)
    import dataclasses

    monkeypatch.setattr(desk.approvals, "settings", dataclasses.replace(desk.settings, slack_team_id=None))
    r = desk.click("U0ALICE", ApprovalAction.APPROVE, value)
    assert r.json()["ok"] is False and "RUNBOOK_SLACK_TEAM_ID" in r.json()["text"]
    nothing_decided(desk, out)
    assert run.join().status != "completed"


@pytest.mark.parametrize(
    "spoof",
    [
        {"id": "U0MALLORY", "username": "carol", "name": "carol"},  # display names are not identities
        {"id": "u0alice", "username": "alice"},  # a case variant of a listed Slack id
        {"id": "", "username": "U0ALICE"},
        {"id": "carol@example.com"},  # an email where the id goes
    ],
)
def test_spoofed_clicker_is_refused(desk: SlackDesk, spoof: dict[str, str]) -> None:
    out = desk.tmp_path / "executed"
    desk.start(gated(out, timeout="2s"), run_id="run-spoof")
    value = button_value(desk.slack)
    payload = block_actions("U0ALICE", ApprovalAction.APPROVE, value)
    payload["user"] = {**spoof, "team_id": "T0TEAM"}
    body = form(payload)
    r = desk.gateway.post("/slack/interactions", content=body, headers=sign(body))
    assert r.json()["ok"] is False
    nothing_decided(desk, out)
    assert refusals(desk, "run-spoof")


def test_unconfirmed_email_does_not_identify(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out, extra=", min_approvals: 2"), run_id="run-mail")
    value = button_value(desk.slack)
    desk.slack.users["U0ZED"] = {"id": "U0ZED", "team_id": "T0TEAM", "profile": {"email": "bob@example.com"}}
    assert desk.click("U0ZED", ApprovalAction.APPROVE, value).json()["ok"] is False  # not confirmed
    nothing_decided(desk, out)
    desk.slack.users["U0ZED"]["is_email_confirmed"] = True
    assert desk.click("U0ZED", ApprovalAction.APPROVE, value).json()["state"] == "counted"  # bob, by mail
    # bob again through his own Slack id is the same person: one vote, no quorum
    assert desk.click("U0BOB", ApprovalAction.APPROVE, value).json()["state"] == "duplicate"
    nothing_decided(desk, out)
    assert desk.click("U0ALICE", ApprovalAction.APPROVE, value).json()["state"] == "decided"
    assert run.join().status == "completed"


def test_a_replayed_signed_click_decides_nothing(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-replay")
    value = button_value(desk.slack)
    refused_body = form(block_actions("U0DAVE", ApprovalAction.APPROVE, value))  # dave may not approve
    headers = sign(refused_body)
    for _ in range(3):
        desk.gateway.post("/slack/interactions", content=refused_body, headers=headers)
    assert len(refusals(desk, "run-replay")) == 1, "a replay is not recorded again"
    body = form(block_actions("U0ALICE", ApprovalAction.DENY, value, reason="no"))
    deny_headers = sign(body)
    replay = sign(body)  # same second, same body: the same signature
    assert desk.gateway.post("/slack/interactions", content=body, headers=deny_headers).json()["ok"]
    again = desk.gateway.post("/slack/interactions", content=body, headers=replay).json()
    assert again["state"] == "replayed"
    assert run.join().status in {"denied", "aborted"}


def test_oversized_bodies_are_refused_before_reading(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    desk.start(gated(out, timeout="2s"), run_id="run-big")
    value = button_value(desk.slack)
    payload = block_actions("U0ALICE", ApprovalAction.APPROVE, value, reason="x" * 300_000)
    body = form(payload)
    r = desk.gateway.post("/slack/interactions", content=body, headers=sign(body))
    assert r.status_code == 413
    big = {"X-Slack-Request-Timestamp": str(int(time.time())), "Content-Length": str(10**9)}
    r = desk.gateway.post("/slack/interactions", content=b"payload=", headers={**sign(b"x"), **big})
    assert r.status_code in (400, 413)
    nothing_decided(desk, out)
    assert not refusals(desk, "run-big")


def test_cli_identity_is_the_os_user(
    desk: SlackDesk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = desk.tmp_path / "executed"
    run = desk.start(gated(out, extra=", two_person: true"), run_id="run-os", requested_by="slack:U0CAROL")
    wait_until(lambda: desk.approvals.store.pending(), what="pending")
    monkeypatch.setenv("USER", "alice")  # the environment does not make anyone alice
    monkeypatch.setenv("LOGNAME", "alice")
    for as_user in ("alice", "U0ALICE", "bob@example.com"):
        assert main(["approve", "run-os", "purge", "--as", as_user]) == 1
    assert main(["approve", "run-os", "purge"]) == 1  # carol (the OS user) started the run
    err = capsys.readouterr().err
    assert "does not name you" in err and "started this run" in err
    nothing_decided(desk, out)
    actors = {e.actor for e in refusals(desk, "run-os")}
    assert actors == {f"unix:{current_login()}", "carol"}
    desk.click("U0ALICE", ApprovalAction.APPROVE, button_value(desk.slack))
    assert run.join().status == "completed"


def test_run_cli_refuses_to_run_as_someone_else(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "playbooks/stuck_queue.yaml", "--as", "someone-else", "--dry-run"]) == 1
    assert "--as may only name yourself" in capsys.readouterr().err


def test_requester_cannot_be_a_flow_parameter(slack_env: Settings) -> None:
    from runbook.compiler.flow import build_flow
    from runbook.runtime import cached_registry, from_environment
    from runbook.spec.loading import find_playbook

    pb = find_playbook("stuck-queue", Path("playbooks"), cached_registry())
    flow = build_flow(pb, from_environment)
    for forged in ({"requested_by": "pagerduty"}, {"trigger": "schedule"}):
        with pytest.raises(Exception, match="unexpected keyword argument"):
            flow(**forged, dry_run=True)


def test_launch_tokens_are_redeemed_once(slack_env: Settings) -> None:
    from runbook.store.launches import issue, resolve

    db = open_database(slack_env.database_url)
    with db.transaction() as cur:
        token = issue(cur, Launch("pagerduty", "email:bob@example.com", {"id": "P1"}))
    first = redeem(db, token, "flow-run-1")
    assert first is not None and first.trigger == "pagerduty" and first.incident == {"id": "P1"}
    assert redeem(db, token, "flow-run-1") == first, "a retry of the same flow run keeps its launch"
    stolen = resolve(db, token, "flow-run-2", auto_scheduled=False)
    assert stolen == Launch("prefect"), "a token copied into another run is worth nothing"
    assert resolve(db, "made-up-token", "flow-run-3", auto_scheduled=False) == Launch("prefect")
    assert resolve(db, None, "flow-run-4", auto_scheduled=True).trigger == "schedule"


def test_the_gateway_decides_in_its_own_store(
    desk: SlackDesk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_app exactly as production builds it: the Slack route must use the app's store, not
    whatever the process environment names."""
    from runbook.gateway.app import create_app

    out = desk.tmp_path / "executed"
    run = desk.start(gated(out), run_id="run-app")
    value = button_value(desk.slack)
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    app = create_app(desk.settings, run_starter=False)
    with TestClient(app) as client:
        body = form(block_actions("U0ALICE", ApprovalAction.APPROVE, value))
        r = client.post("/slack/interactions", content=body, headers=sign(body))
        assert r.status_code == 200 and r.json()["state"] == "decided", r.text
    assert run.join().status == "completed"
    other = TimelineStore(open_database(f"sqlite:///{tmp_path / 'elsewhere.db'}"))
    assert other.events("run-app") == []
    assert json.loads(json.dumps(out.read_text().splitlines())) == ["purged"]
