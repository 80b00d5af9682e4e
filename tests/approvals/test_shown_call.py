"""An approval means what the approver saw: the whole call is shown in Slack, never clipped, or
Slack offers no Approve button and the gateway refuses an Approve click for it."""

from __future__ import annotations

import re

import pytest

from runbook.core.gate import GateRequest
from runbook.slack.blocks import MAX_TEXT, ApprovalAction, call_sections, shown_whole
from tests.approvals.conftest import SlackDesk
from tests.approvals.test_gate_slack import approval_message, gated


def request(ids: list[int], description: str = "delete exactly these rows") -> GateRequest:
    return GateRequest(
        run_id="r1",
        playbook="p",
        step_id="s",
        step_title="S",
        action="postgres.execute",
        params={"sql": "DELETE FROM {table} WHERE id = ANY(%(ids)s)", "params": {"ids": ids}, "max_rows": 5},
        description=description,
        plan_hash="h" * 64,
    )


@pytest.mark.parametrize("n", [1, 200, 1000])
def test_every_id_and_the_statement_are_shown_in_closed_fences(n: int) -> None:
    ids = list(range(100000, 100000 + n))
    sections = call_sections(request(ids, "would delete exactly 5 rows of public.jobs"))
    assert sections is not None
    text = "\n".join(sections)
    assert all(len(s) <= 3000 for s in sections)
    assert "…" not in text
    shown = {int(x) for x in re.findall(r"\b1\d{5}\b", text)}
    assert shown == set(ids), "every id the hash covers is on screen"
    assert "DELETE FROM {table} WHERE id = ANY(%(ids)s)" in text
    assert "would delete exactly 5 rows" in text
    for s in sections:
        assert s.count("```") % 2 == 0, "no fence is left open"


def test_a_call_too_long_to_show_is_not_approvable_in_slack() -> None:
    huge = request(list(range(10**6, 10**6 + 40_000)))
    assert call_sections(huge) is None and not shown_whole(huge)
    assert shown_whole(request([1, 2, 3]))
    one_long_line = request([1], description="x" * (MAX_TEXT * 3))
    assert call_sections(one_long_line) is not None, "a long line is cut, not clipped"


def test_slack_offers_no_approve_for_an_unreadable_call_and_refuses_a_forged_click(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    text = gated(out).replace('label: "purged"', 'label: "' + "purge " * 60_000 + '"')
    run = desk.start(text, run_id="run-huge")
    msg = approval_message(desk.slack)
    actions = next(b for b in msg["blocks"] if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [ApprovalAction.DENY.value]
    assert "too long to show here in full" in str(msg["blocks"])
    value = actions["elements"][0]["value"]
    r = desk.click("U0ALICE", ApprovalAction.APPROVE, value)  # a hand-made Approve with the Deny value
    assert r.json()["ok"] is False and "too long to show" in r.json()["text"]
    assert desk.approvals.store.pending() and not out.exists()
    assert desk.click("U0ALICE", ApprovalAction.DENY, value).json()["state"] == "decided"
    assert run.join().status in {"denied", "aborted"}
    assert not out.exists()


def test_a_call_carrying_a_secret_is_never_offered_for_approval(desk: SlackDesk) -> None:
    """The approver would see ``***`` where the hash covers the real value: nobody could see what
    would run, so the step fails before any approval is asked and nothing executes."""
    from runbook.core import redact

    secret = "tok-4f9a8c2e7d61b0aa"
    redact.register([secret])
    out = desk.tmp_path / "executed"
    run = desk.start(
        gated(out).replace('label: "purged"', f'label: "purge with {secret}"'), run_id="run-secret"
    )
    outcome = run.join()
    assert outcome.status == "failed" and "secret value" in (outcome.reason or "")
    assert not desk.approvals.store.pending() and not out.exists()
    kinds = [e.kind for e in desk.timeline.events("run-secret")]
    assert "approval.requested" not in kinds
    assert all(secret not in e.summary for e in desk.timeline.events("run-secret"))
