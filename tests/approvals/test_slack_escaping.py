"""Slack mrkdwn injection (issue 12, class 8): data shows as text, never as a mention or a link.

A run whose incident title is ``<!channel> click <https://evil.example|https://good.example>`` and whose
queue is ``<@U0ADMIN>`` goes through the real engine, gate and Slack sink to the loopback Slack API;
every posted message carries only the escaped forms (``&lt;!channel&gt;``), a code fence in a value
cannot close the request's code block, and a reason typed by the clicker is escaped in the update."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runbook.slack.blocks import ApprovalAction
from runbook.slack.text import code, code_block, escape
from tests.approvals.conftest import SlackDesk
from tests.approvals.helpers import HEAD
from tests.support.waiting import wait_until

TITLE = "<!channel> click <https://evil.example|https://good.example>"
QUEUE = "<@U0ADMIN> & <!here>"
FENCE = "x```\n*bold* <!everyone>\n```y"
RAW_MARKUP = ("<!channel>", "<!here>", "<!everyone>", "<@U0ADMIN>", "<https://evil.example")


def hostile(out: Path) -> str:
    return (
        HEAD
        + f"""
params:
  queue: {{type: string, default: plans}}
  label: {{type: string, default: x}}
steps:
  - id: look
    title: Look at the queue
    action: core.set
    with:
      values: {{depth: 42, queue: "{{{{ params.queue }}}}"}}
      summary: "queue {{{{ params.queue }}}} for {{{{ incident.title }}}}: 42 stuck"
  - id: purge
    title: Purge the stuck queue
    action: testing.record
    with: {{file: "{out}", label: "{{{{ params.label }}}}"}}
    approval: {{approvers: [incident-commander], timeout: 30s}}
"""
    )


def texts_of(args: dict[str, Any]) -> list[str]:
    """Every mrkdwn string of a posted message: the top-level text and each mrkdwn text object."""
    found = [args.get("text") or ""]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    blocks = args.get("blocks")
    walk(json.loads(blocks) if isinstance(blocks, str) else blocks)
    return found


def test_helpers_follow_slacks_escaping_rules() -> None:
    assert escape("a & <b> <!here>") == "a &amp; &lt;b&gt; &lt;!here&gt;"
    assert escape("&lt;") == "&amp;lt;"  # already-escaped text is shown as typed, not unescaped
    assert code("a`b") == "`aˋb`"
    block = code_block("```<!channel>```")
    assert block.startswith("```") and block.endswith("```")
    assert "```" not in block[3:-3] and "&lt;!channel&gt;" in block


def test_incident_title_queue_and_reason_are_escaped_in_every_posted_message(desk: SlackDesk) -> None:
    out = desk.tmp_path / "executed"
    incident = {"id": "PINJ001", "title": TITLE, "service": {"summary": "queues"}}
    run = desk.start(
        hostile(out),
        run_id="run-inject",
        incident=incident,
        params={"queue": QUEUE, "label": FENCE},
    )
    request = desk.slack.wait_for("chat.postMessage", where=lambda c: c["args"].get("blocks"))[-1]["args"]
    value = next(b for b in request["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    r = desk.click("U0BOB", ApprovalAction.DENY, value, reason="<!here> see <https://evil.example|docs>")
    assert r.status_code == 200, r.text
    outcome = run.join()
    assert outcome.status == "denied" and not out.exists()
    desk.slack.wait_for("chat.update")
    wait_until(lambda: any("Run finished" in t for t in desk.slack.texts()), what="run finished posted")

    posted = [c["args"] for c in desk.slack.named("chat.postMessage") + desk.slack.named("chat.update")]
    everything = [t for args in posted for t in texts_of(args)]
    for text in everything:
        for markup in RAW_MARKUP:
            assert markup not in text, (markup, text)
    joined = "\n".join(everything)
    # the values are all there, shown as text
    assert "&lt;!channel&gt; click &lt;https://evil.example|https://good.example&gt;" in joined  # root
    assert "queue &lt;@U0ADMIN&gt; &amp; &lt;!here&gt; for &lt;!channel&gt;" in joined  # step summary
    assert "&lt;!here&gt; see &lt;https://evil.example|docs&gt;" in joined  # the typed reason
    # the label's code fence cannot close the request's code block
    will_run = next(t for t in texts_of(request) if t.startswith("*Will run*"))
    fenced = will_run.split("• *label*: \n", 1)[1].split("\n•", 1)[0]
    assert fenced.startswith("```") and fenced.endswith("```") and "```" not in fenced[3:-3]
    assert "&lt;!everyone&gt;" in fenced
    # runbook's own markup is intact
    assert "*Playbook* `gated`" in joined and "*Why:*" in joined
