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

import re
from enum import StrEnum
from typing import Any

from runbook.core.durations import format_duration
from runbook.core.events import ICONS, Event, Kind
from runbook.core.gate import GateRequest
from runbook.core.redact import redact
from runbook.slack.callview import MAX_CALL_SECTIONS as MAX_CALL_SECTIONS
from runbook.slack.callview import MAX_TEXT as MAX_TEXT
from runbook.slack.callview import call_sections as call_sections
from runbook.slack.callview import shown_whole as shown_whole
from runbook.slack.callview import too_long_sections
from runbook.slack.text import code, code_block, escape
from runbook.store.approvals import RequestRow


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


OUTCOME_MARKS = {
    "completed": "✅ Completed",
    "failed": "❌ Failed",
    "aborted": "⛔ Aborted",
    "denied": "⛔ Denied",
    "crashed": "💥 Crashed",
}


def outcome_line(finished: Event) -> str:
    """How the run ended, in words first: ``✅ Completed — run completed (3 succeeded)``."""
    status = str(finished.details.get("status") or "finished")
    mark = OUTCOME_MARKS.get(status, f"■ {_e(status.capitalize())}")
    return f"*{mark}* — {_e(finished.summary)}"


def finished_text(finished: Event, playbook: str) -> str:
    """The run's end, posted to the channel (a broadcast reply), so the channel learns how it ended."""
    icon = ICONS[Kind.RUN_FINISHED]
    where = f"*{_e(playbook)}* · run {_c(finished.run_id)}"
    return _clip(f"{icon} *Run finished* {outcome_line(finished)}\n{where}")


def finished_root_text(started: Event | None, finished: Event) -> str:
    """The thread's first message once the run ended: the outcome on top, the start below."""
    head = outcome_line(finished)
    body = root_text(started, finished.run_id) if started is not None else f"run {_c(finished.run_id)}"
    return _clip(f"{head}\n{body}")


HEADERS = {
    "approved": "Approved",
    "denied": "Denied",
    "expired": "Expired",
    "voided": "Voided",
}
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def mention_text(req: GateRequest, mentions: list[str] | None) -> str:
    """Who may approve: the people @-mentioned by their Slack ids (so Slack notifies them), with the
    roles; only well-formed user ids become mentions, everything else is escaped text."""
    roles = ", ".join(_e(a) for a in req.approvers) or "none"
    ids = [m for m in dict.fromkeys(mentions or []) if SLACK_USER_ID.fullmatch(m)]
    if not ids:
        return f"approvers: {roles}"
    return f"approvers: {' '.join(f'<@{m}>' for m in ids)} ({roles})"


def _header(row: RequestRow) -> str:
    req = row.request
    kind = HEADERS.get(row.status) or ("Manual step" if req.kind == "manual" else "Approval needed")
    return _clip(f"{kind}: {req.step_title}", 150)


def _request_blocks(row: RequestRow, mentions: list[str] | None = None) -> list[dict[str, Any]]:
    req = row.request
    evidence = "\n".join(f"• *{_e(k)}*: {_e(v)}" for k, v in req.evidence.items()) or "_no earlier findings_"
    parts = call_sections(req)
    if parts is None:
        parts = too_long_sections(req)
    what, rest = parts[:1], parts[1:]
    rules = [f"{req.min_approvals} approval{'s' if req.min_approvals > 1 else ''} needed"]
    if req.two_person:
        rules.append(f"not {_e(req.requested_by)}" if req.requested_by else "two-person rule")
    meta = f"*Playbook* {_c(req.playbook)} · *step* {_c(req.step_id)} · run {_c(req.run_id)}" + (
        f" · attempt {req.attempt}" if req.attempt > 1 else ""
    )
    context = (
        f"{mention_text(req, mentions)} · {', '.join(rules)} · expires "
        f"{row.expires_at.strftime('%H:%M')} UTC ({format_duration(req.timeout_seconds)})"
        f" · plan {_c(req.plan_hash[:12])} · full record: {_c('runbook timeline --json ' + req.run_id)}"
    )
    return [
        {"type": "header", "text": {"type": "plain_text", "text": _header(row)}},
        *({"type": "section", "text": {"type": "mrkdwn", "text": t}} for t in what),
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"{meta}\n*Why:*\n{evidence}")}},
        *({"type": "section", "text": {"type": "mrkdwn", "text": t}} for t in rest),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(context, 2000)}]},
    ]


def _confirm(req: GateRequest) -> dict[str, Any]:
    """The dialog a destructive Approve opens: plain text (never markup), the action and its effect."""
    what = redact(req.description or req.action)
    text = f"{req.action} will run now, exactly as shown (plan {req.plan_hash[:12]}): {what}"
    return {
        "title": {"type": "plain_text", "text": "Run this destructive step?"},
        "text": {"type": "plain_text", "text": text if len(text) <= 300 else text[:299] + "…"},
        "confirm": {"type": "plain_text", "text": "Approve and run"},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "danger",
    }


def approval_blocks(
    row: RequestRow, votes: list[dict[str, Any]] | None = None, mentions: list[str] | None = None
) -> list[dict[str, Any]]:
    """The request while it waits: details, a reason field and Approve/Deny buttons (Approve only
    when the whole call was shown; a destructive Approve asks for confirmation first)."""
    blocks = _request_blocks(row, mentions)
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
    if row.request.kind != "manual":
        approve_button["confirm"] = _confirm(row.request)
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


def decided_blocks(row: RequestRow, mentions: list[str] | None = None) -> list[dict[str, Any]]:
    """The request once decided: the header says how, same details, the outcome, and no buttons."""
    return [
        *_request_blocks(row, mentions),
        {"type": "section", "text": {"type": "mrkdwn", "text": decided_text(row)}},
    ]


def request_fallback(row: RequestRow) -> str:
    req = row.request
    return _clip(
        f"Approval needed: {_e(req.step_title)} — {_e(req.action)} (plan {_e(req.plan_hash[:12])})", 300
    )
