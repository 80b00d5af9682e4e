"""An approval means what the approver saw: the whole call is shown in Slack, never clipped, or
Slack offers no Approve button and the gateway refuses an Approve click for it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from runbook.core.gate import GateRequest
from runbook.slack.blocks import (
    MAX_TEXT,
    ApprovalAction,
    approval_blocks,
    call_sections,
    decided_blocks,
    shown_whole,
)
from runbook.slack.callview import too_long_sections, what_sections
from runbook.store.approvals import RequestRow
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


def row(req: GateRequest, status: str = "pending") -> RequestRow:
    now = datetime.now(UTC)
    return RequestRow(
        1, req, status, now, now + timedelta(minutes=15), None, None, None, None, None, None, None
    )


def fenced(sections: list[str]) -> str:
    """What the code fences hold, joined (the exact call as JSON when it was summarised)."""
    return "".join(re.findall(r"```(.*?)```", "\n".join(sections), flags=re.S)).replace("\u200b", "")


@pytest.mark.parametrize("n", [1, 200, 1000])
def test_every_id_and_the_statement_are_shown_in_closed_fences(n: int) -> None:
    ids = list(range(100000, 100000 + n))
    sections = call_sections(request(ids, "would delete exactly 5 rows of public.jobs"))
    assert sections is not None
    text = "\n".join(sections)
    assert all(len(s) <= 3000 for s in sections)
    assert sections[0] == "*What it does:* would delete exactly 5 rows of public.jobs", (
        "what it does comes first"
    )
    shown = {int(x) for x in re.findall(r"\b1\d{5}\b", text)}
    assert shown == set(ids), "every id the hash covers is on screen"
    assert "DELETE FROM {table} WHERE id = ANY(%(ids)s)" in text
    for s in sections:
        assert s.count("```") % 2 == 0, "no fence is left open"
    compact = sections[1]
    assert compact.index("*sql*") < compact.index("*max_rows*") < compact.index("*params.ids*"), (
        "scalars first"
    )
    if n == 1:
        assert "*params.ids*: `[100000]`" in compact and "Full call" not in text, (
            "nothing summarised, no repeat"
        )
    else:
        assert f"*params.ids*: {n:,} values, 100000 … {100000 + n - 1}" in compact
        full = fenced(sections[2:])
        assert "…" not in full, "the full call is never clipped"
        assert json.loads(full) == request(ids).params, "the full call is exactly the call the hash covers"


@pytest.mark.parametrize("n", [1, 200, 1000])
def test_the_approval_message_at_three_sizes(n: int) -> None:
    req = request(list(range(100000, 100000 + n)), "would delete exactly 5 rows of public.jobs")
    blocks = approval_blocks(row(req), mentions=["U0ALICE", "<!channel>", "U0BOB"])
    assert len(blocks) <= 50 and all(len(json.dumps(b)) < 3500 for b in blocks)
    assert blocks[0]["text"]["text"] == "Approval needed: S"
    assert blocks[1]["text"]["text"].startswith("*What it does:*")
    actions = next(b for b in blocks if b["type"] == "actions")
    approve, deny = actions["elements"]
    assert approve["action_id"] == ApprovalAction.APPROVE and deny["action_id"] == ApprovalAction.DENY
    assert approve["confirm"]["style"] == "danger" and len(approve["confirm"]["text"]["text"]) <= 300
    context = next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
    assert "<@U0ALICE> <@U0BOB>" in context and "<!channel>" not in context, "only user ids become mentions"
    assert "runbook timeline --json r1" in context
    for status, word in [
        ("approved", "Approved"),
        ("denied", "Denied"),
        ("expired", "Expired"),
        ("voided", "Voided"),
    ]:
        done = decided_blocks(row(req, status))
        assert done[0]["text"]["text"] == f"{word}: S"
        assert not [b for b in done if b["type"] in ("actions", "input")]


def test_a_call_too_long_to_show_is_not_approvable_in_slack() -> None:
    huge = request(list(range(10**6, 10**6 + 40_000)))
    assert call_sections(huge) is None and not shown_whole(huge)
    assert shown_whole(request([1, 2, 3]))
    one_long_line = request([1], description="x" * (MAX_TEXT * 3))
    assert call_sections(one_long_line) is not None, "a long line is cut, not clipped"


@pytest.mark.parametrize(
    "description",
    [
        "purge " * 6_000,  # one 36 KB line (three times the head that is cut): cut inside it
        "\n".join(f"delete row {i} <&> *bold* `tick`" for i in range(20_000)),  # many lines, escaped
        "short",
        "",
    ],
)
def test_a_too_long_call_shows_the_same_head_of_what_it_does(description: str) -> None:
    """Only the first section of the description is cut for a call too long to show (cutting all
    of a 360 KB one took seconds per message); it is the same first section as before."""
    req = request([1], description=description)
    assert what_sections(req, first_only=True) == what_sections(req)[:1]
    assert too_long_sections(req)[0] == what_sections(req)[0]


def test_slack_offers_no_approve_for_an_unreadable_call_and_refuses_a_forged_click(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    text = gated(out).replace('label: "purged"', 'label: "' + "purge " * 60_000 + '"')
    run = desk.start(text, run_id="run-huge")
    msg = approval_message(desk.slack)
    actions = next(b for b in msg["blocks"] if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [ApprovalAction.DENY.value]
    assert "too long to show here in full" in str(msg["blocks"])
    assert msg["blocks"][1]["text"]["text"].startswith("*What it does:*"), "still says what it would do"
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
