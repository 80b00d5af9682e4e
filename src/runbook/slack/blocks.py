"""What runbook says in Slack: timeline lines, the approval request, the decided message.

Written for someone woken at 3 a.m.: the first words say what happened, the step and who acted
follow, times are UTC. An approval message shows the step, why it is proposed (evidence), the exact
call with its rendered parameters and the action's own description, the plan hash, who may approve
and when it expires. Button action ids are an enum: the gateway routes on them.

Every value that comes from data (incident titles, summaries, params, evidence, names, reasons) is
placed through :mod:`runbook.slack.text` (``_e``, ``_c``, ``_fence`` here: redacted, then
escaped), so it shows as text and never as a mention or a link; only the markup written here is markup.
Header blocks are ``plain_text``, which Slack never reads as markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from runbook.core.durations import format_duration
from runbook.core.events import ICONS, Event, Kind
from runbook.core.gate import GateRequest
from runbook.core.redact import redact
from runbook.slack.text import code, code_block, escape
from runbook.store.approvals import RequestRow

MAX_TEXT = 2900  # Slack section text limit is 3000 characters
MAX_CALL_SECTIONS = 30  # a message holds 50 blocks; the rest of a request takes fewer than 10


class ApprovalAction(StrEnum):
    APPROVE = "runbook_approve"
    DENY = "runbook_deny"


REASON_BLOCK = "runbook_reason"
REASON_ACTION = "runbook_reason_input"

LABELS = {
    Kind.RUN_STARTED: "Run started",
    Kind.RUN_FINISHED: "Run finished",
    Kind.STEP_STARTED: "Started",
    Kind.STEP_SUCCEEDED: "Done",
    Kind.STEP_FAILED: "FAILED",
    Kind.STEP_SKIPPED: "Skipped",
    Kind.STEP_DRY_RUN: "Dry run",
    Kind.APPROVAL_REQUESTED: "Approval needed",
    Kind.APPROVAL_APPROVED: "Approved",
    Kind.APPROVAL_DENIED: "Denied",
    Kind.APPROVAL_EXPIRED: "Expired",
    Kind.APPROVAL_VOIDED: "Approval void",
    Kind.APPROVAL_REFUSED: "Refused",
    Kind.NOTE: "Note",
    Kind.FINDING: "Finding",
}


def _e(value: Any) -> str:
    """A data value as mrkdwn text (secrets redacted first, so a secret is still found)."""
    return escape(redact(str(value)))


def _c(value: Any) -> str:
    """A data value as an inline code span."""
    return code(redact(str(value)))


def _fence(value: Any) -> str:
    """A data value as a fenced code block."""
    return code_block(redact(str(value)))


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_text(event: Event) -> str:
    """One timeline event as one Slack line (mrkdwn)."""
    t = event.time.strftime("%H:%M:%S")
    who = f" — _{_e(event.actor)}_" if event.actor else ""
    icon = ICONS.get(event.kind, "·")
    return _clip(f"`{t}Z` {icon} *{LABELS.get(event.kind, event.kind.value)}* {_e(event.summary)}{who}")


def root_text(event: Event, run_id: str) -> str:
    """The first message of a run's thread: what runs, why, for whom."""
    d = event.details
    incident = d.get("incident") or {}
    lines = [f"{ICONS[Kind.RUN_STARTED]} *{_e(d.get('playbook', 'run'))}*: {_e(event.summary)}"]
    bits = [f"run {_c(run_id)}", f"trigger {_e(d.get('trigger', 'manual'))}"]
    if event.actor:
        bits.append(f"by {_e(event.actor)}")
    if incident.get("id"):
        title = f" — {_e(incident['title'])}" if incident.get("title") else ""
        bits.append(f"incident {_e(incident.get('id'))}{title}")
    lines.append(" · ".join(bits))
    if d.get("params"):
        lines.append("params: " + ", ".join(_c(f"{k}={v}") for k, v in d["params"].items()))
    lines.append("_Every step of this run is posted in this thread._")
    return _clip("\n".join(lines))


def _request_blocks(row: RequestRow) -> list[dict[str, Any]]:
    req = row.request
    evidence = "\n".join(f"• *{_e(k)}*: {_e(v)}" for k, v in req.evidence.items()) or "_no earlier findings_"
    parts = call_sections(req)
    if parts is None:
        size = len(json.dumps(req.params, default=str)) + len(req.description)
        parts = [
            f"*Will run* {_c(req.action)} — the call is too long to show here in full ({size:,} characters)."
            f" Read it with {_c('runbook timeline --json ' + req.run_id)}; deny here, or approve with"
            f" {_c(f'runbook approve {req.run_id} {req.step_id}')} once you have read it."
            " *Approve is not offered in Slack for a call nobody could read whole.*"
        ]
    call = [{"type": "section", "text": {"type": "mrkdwn", "text": t}} for t in parts]
    who = ", ".join(_e(a) for a in req.approvers)
    rules = [f"{req.min_approvals} approval{'s' if req.min_approvals > 1 else ''} needed"]
    if req.two_person:
        rules.append(f"not {_e(req.requested_by)}" if req.requested_by else "two-person rule")
    kind = "Manual step" if req.kind == "manual" else "Approval needed"
    return [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"{kind}: {req.step_title}", 150)}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _clip(
                    f"*Playbook* {_c(req.playbook)} · *step* {_c(req.step_id)} · run {_c(req.run_id)}"
                    + (f" · attempt {req.attempt}" if req.attempt > 1 else "")
                    + f"\n*Why:*\n{evidence}"
                ),
            },
        },
        *call,
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _clip(
                        f"plan {_c(req.plan_hash[:12])} · approvers: {who} · {', '.join(rules)} · expires "
                        f"{row.expires_at.strftime('%H:%M')} UTC ({format_duration(req.timeout_seconds)})",
                        2000,
                    ),
                }
            ],
        },
    ]


def _chunks(text: str, shown: Callable[[str], str], limit: int) -> list[str]:
    """``text`` cut at line ends (a longer line is cut inside) so that ``shown(chunk)`` fits ``limit``."""
    out: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(shown(line)) > limit:  # one line alone is too long: cut it where it still fits
            cut = max(1, limit // 6)
            while cut < len(line) and len(shown(line[: cut * 2])) <= limit:
                cut *= 2
            while cut > 1 and len(shown(line[:cut])) > limit:
                cut -= max(1, cut // 8)
            if current:
                out.append(current)
                current = ""
            out.append(line[:cut])
            line = line[cut:]
        if current and len(shown(current + line)) > limit:
            out.append(current)
            current = ""
        current += line
    if current or not out:
        out.append(current)
    return out


def call_sections(req: GateRequest) -> list[str] | None:
    """The exact call (every rendered parameter) and the action's own description, as section texts
    that each fit Slack's limit, never clipped; None when the whole call does not fit one message.

    What an approver clicks on must be what they could read: a clipped call is never shown with an
    Approve button (see :func:`shown_whole`, which the gateway checks before counting an approval)."""
    params = json.dumps(req.params, indent=2, sort_keys=True, default=str)
    if len(params) + len(req.description) > MAX_CALL_SECTIONS * MAX_TEXT:
        return None  # escaping only lengthens text: it cannot fit, so do not cut it up to find out
    lead = f"*Will run* {_c(req.action)}:\n"
    budget = MAX_TEXT - len(lead)
    texts = [
        (lead if i == 0 else "") + _fence(chunk) for i, chunk in enumerate(_chunks(params, _fence, budget))
    ]
    what = "*What it does:* "
    texts += [
        (what if i == 0 else "") + _e(chunk)
        for i, chunk in enumerate(_chunks(req.description, _e, MAX_TEXT - len(what)))
    ]
    return texts if len(texts) <= MAX_CALL_SECTIONS else None


def shown_whole(req: GateRequest) -> bool:
    """Whether Slack showed this request's whole call (only then may a Slack click approve it)."""
    return call_sections(req) is not None


def approval_blocks(row: RequestRow, votes: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The request while it waits: details, a reason field and Approve/Deny buttons."""
    blocks = _request_blocks(row)
    approvals = [v["approver"] for v in votes or [] if v["vote"] == "approve"]
    if approvals:
        so_far = (
            f"approved so far by {', '.join(_e(a) for a in approvals)}"
            f" ({len(approvals)} of {row.request.min_approvals})"
        )
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(so_far)}]})
    value = f"{row.id}:{row.plan_hash}"
    approve_button = {
        "type": "button",
        "action_id": ApprovalAction.APPROVE.value,
        "style": "primary",
        "value": value,
        "text": {"type": "plain_text", "text": "Approve"},
    }
    blocks += [
        {
            "type": "input",
            "block_id": REASON_BLOCK,
            "optional": True,
            "label": {"type": "plain_text", "text": "Reason (optional)"},
            "element": {
                "type": "plain_text_input",
                "action_id": REASON_ACTION,
                "placeholder": {"type": "plain_text", "text": "why approve or deny"},
            },
        },
        {
            "type": "actions",
            "block_id": f"runbook_decide_{row.id}",
            "elements": [
                *([approve_button] if shown_whole(row.request) else []),
                {
                    "type": "button",
                    "action_id": ApprovalAction.DENY.value,
                    "style": "danger",
                    "value": value,
                    "text": {"type": "plain_text", "text": "Deny"},
                },
            ],
        },
    ]
    return blocks


def decided_text(row: RequestRow) -> str:
    mark = {
        "approved": "✅ *Approved*",
        "denied": "⛔ *Denied*",
        "expired": "⌛ *Expired* (treated as denied)",
        "voided": "⊘ *Void* — the call changed; a new request was posted",
    }.get(row.status, _e(row.status))
    when = row.decided_at.strftime("%H:%M:%S") + " UTC" if row.decided_at else ""
    by = f" by {_e(row.decided_by)}" if row.decided_by and row.status != "expired" else ""
    why = f" — “{_e(row.reason)}”" if row.reason else ""
    return _clip(f"{mark}{by} at {when} via {_e(row.channel or 'runbook')}{why}")


def decided_blocks(row: RequestRow) -> list[dict[str, Any]]:
    """The request once decided: same details, the outcome, and no buttons."""
    return [*_request_blocks(row), {"type": "section", "text": {"type": "mrkdwn", "text": decided_text(row)}}]


def request_fallback(row: RequestRow) -> str:
    req = row.request
    return _clip(
        f"Approval needed: {_e(req.step_title)} — {_e(req.action)} (plan {_e(req.plan_hash[:12])})", 300
    )
