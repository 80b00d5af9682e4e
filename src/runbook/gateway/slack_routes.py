"""``POST /slack/interactions``: Approve/Deny clicks from Slack (DESIGN.md, HTTP gateway).

The signature (``X-Slack-Signature`` v0 over the *raw* body, ``X-Slack-Request-Timestamp`` within
5 minutes) is checked before anything is parsed; a missing secret, a bad or stale signature is a
401 and nothing else happens; the body is bounded before it is read (413). A signed request seen
before (same timestamp and signature, remembered in the store by every replica) is a replay and
decides nothing. Only clicks from the workspace ``RUNBOOK_SLACK_TEAM_ID`` names count, and the
clicker is their Slack user id (see :func:`_identity`). A verified click is decided synchronously
(one short store transaction, so the 3 s acknowledgement holds) and the rest happens in the
background: resuming the paused Prefect run, the ephemeral "why not" to a refused clicker, posting the outbox.

The app includes ``router``; ``get_approvals`` is a dependency the app (or a test) may override.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from runbook.approvals.policy import Identity
from runbook.approvals.service import Approvals, VoteResult
from runbook.core.redact import redact
from runbook.gateway.bodies import BodyTooLarge, read_limited
from runbook.slack.blocks import REASON_ACTION, REASON_BLOCK, ApprovalAction, shown_whole
from runbook.slack.client import signature_problem
from runbook.slack.text import escape
from runbook.store.database import StoreError
from runbook.store.slack import SlackStore

log = logging.getLogger("runbook.gateway.slack")

router = APIRouter()
#: Slack's block_actions payloads carry the whole message; 256 KiB is far above any we post
MAX_BODY = 256 * 1024


def get_approvals(request: Request) -> Approvals:
    """The decision service of the app that received the request: the one ``create_app`` built from
    the settings and store it was given (a test or another app may still override the dependency)."""
    built: Approvals | None = getattr(request.app.state, "approvals", None)
    if built is None:
        raise RuntimeError("mount this router in an app built by runbook.gateway.app.create_app")
    return built


def _unauthorized(why: str) -> Response:
    log.warning("slack interaction refused: %s", why)
    return JSONResponse({"error": "invalid request signature"}, status_code=401)


def verify(secret: str | None, body: bytes, headers: Any) -> str | None:
    """None when the request is Slack's; else why not (see :func:`runbook.slack.client.signature_problem`)."""
    return signature_problem(secret, body, headers)


def _reason(payload: dict[str, Any]) -> str | None:
    values = ((payload.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
    text = (values.get(REASON_ACTION) or {}).get("value")
    return text.strip()[:500] if isinstance(text, str) and text.strip() else None


def clicker_team(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the clicker's own workspace, the Enterprise Grid org) as Slack states them in the payload.

    The user's ``team_id`` is their home workspace: in a channel shared with another organisation
    (Slack Connect) it differs from the channel's ``team``, and it is the one that must match."""
    user = payload.get("user") or {}
    team = payload.get("team") or {}
    enterprise = payload.get("enterprise") or {}
    home = user.get("team_id") or team.get("id")
    org = enterprise.get("id") or team.get("enterprise_id") or user.get("enterprise_id")
    return (str(home) if home else None), (str(org) if org else None)


def team_problem(approvals: Approvals, payload: dict[str, Any]) -> str | None:
    """None when the click comes from the one workspace (or org) ``RUNBOOK_SLACK_TEAM_ID`` names."""
    allowed = approvals.settings.slack_team_id
    if not allowed:
        return "RUNBOOK_SLACK_TEAM_ID is not set, so no Slack workspace is trusted to decide"
    home, org = clicker_team(payload)
    if allowed in {home, org} - {None}:
        return None
    return f"the click came from Slack workspace {home or 'unknown'}, not {allowed}"


def _identity(approvals: Approvals, user: dict[str, Any], team: str | None) -> Identity:
    """The Slack user id (exact), plus the email only when Slack says it is confirmed.

    The email comes from ``users.info`` (the bot must have ``users:read.email``) and counts only when
    ``is_email_confirmed`` is true and the user is of the same workspace; the payload's ``username``
    and display names are never identities (anyone can change them)."""
    slack_id = str(user.get("id") or "") or None
    email = None
    if approvals.settings.slack_bot_token and slack_id:
        try:
            from runbook.slack.client import make_client

            info = make_client(approvals.settings, quick=True).users_info(user=slack_id).get("user") or {}
            same_team = not info.get("team_id") or info.get("team_id") == team
            if info.get("is_email_confirmed") is True and same_team and info.get("id") == slack_id:
                email = (info.get("profile") or {}).get("email")
        except Exception as exc:  # noqa: BLE001 - the id alone still identifies the clicker
            log.debug("users.info %s: %s", slack_id, exc)
    return Identity(slack=slack_id, email=email, team=team)


def _where(payload: dict[str, Any]) -> dict[str, Any]:
    """The channel and user an ephemeral answer to this click goes to."""
    return {
        "channel": (payload.get("container") or {}).get("channel_id")
        or (payload.get("channel") or {}).get("id"),
        "user": (payload.get("user") or {}).get("id"),
    }


def decide(approvals: Approvals, payload: dict[str, Any]) -> tuple[VoteResult | None, dict[str, Any]]:
    """Apply one block_actions click; returns the result and where to tell the clicker."""
    actions = payload.get("actions") or []
    action = next((a for a in actions if a.get("action_id") in set(ApprovalAction)), None)
    user = payload.get("user") or {}
    where = _where(payload)
    if payload.get("type") != "block_actions" or action is None:
        return None, where  # e.g. typing in the reason field: nothing to decide
    request_id, _, digest = str(action.get("value") or "").partition(":")
    row = approvals.store.get(int(request_id)) if request_id.isdigit() else None
    if row is None:
        return VoteResult(False, "This approval request is unknown to runbook.", "missing"), where
    if digest != row.plan_hash:
        why = "the button does not match the plan it was posted for"
        return approvals.refuse(row, str(user.get("id")), why, "slack", None), where
    if row.status != "pending":
        what = f"already {row.status}" + (f" by {row.decided_by}" if row.decided_by else "")
        return VoteResult(False, f"{row.request.step_title}: {what}; nothing changed", "closed", row), where
    problem = team_problem(approvals, payload)
    if problem:
        return approvals.refuse(row, f"slack:{user.get('id')}", problem, "slack", None), where
    who = _identity(approvals, user, clicker_team(payload)[0])
    approve = action["action_id"] == ApprovalAction.APPROVE
    if approve and not shown_whole(row.request):
        why = "this call was too long to show in Slack in full, so it cannot be approved from Slack"
        return approvals.refuse(row, who.label(), why + " (use runbook approve)", "slack", None), where
    return approvals.vote(
        row, who, approve=approve, reason=_reason(payload), channel="slack", resume_now=False
    ), where


def _tell(approvals: Approvals, where: dict[str, Any], result: VoteResult) -> None:
    if not approvals.settings.slack_bot_token or not where.get("channel") or not where.get("user"):
        return
    try:
        from runbook.slack.client import make_client

        make_client(approvals.settings).chat_postEphemeral(
            channel=where["channel"], user=where["user"], text=escape(result.message)
        )
    except Exception as exc:  # noqa: BLE001 - the timeline already holds the refusal
        log.warning("ephemeral reply failed: %s", exc)


def _after(approvals: Approvals, where: dict[str, Any], result: VoteResult | None) -> None:
    """After the acknowledgement: resume the paused run, tell a refused clicker why, post the outbox."""
    if result is not None and result.state == "decided" and result.row is not None:
        approvals.nudge(result.row)
    if result is not None and (not result.ok or result.state in ("duplicate", "counted")):
        _tell(approvals, where, result)
    if approvals.settings.slack_bot_token:
        approvals.flush_slack()


@router.post("/slack/interactions")
async def slack_interactions(
    request: Request, background: BackgroundTasks, approvals: Approvals = Depends(get_approvals)
) -> Response:
    try:
        body = await read_limited(request, MAX_BODY)
    except BodyTooLarge as exc:
        log.warning("slack interaction refused (413): %s", exc)
        return JSONResponse({"error": "request body too large"}, status_code=413)
    problem = verify(approvals.settings.slack_signing_secret, body, request.headers)
    if problem:
        return _unauthorized(problem)
    fresh = await run_in_threadpool(
        SlackStore(approvals.store.db).first_sight,
        request.headers.get("X-Slack-Request-Timestamp", ""),
        request.headers.get("X-Slack-Signature", ""),
    )
    if not fresh:
        log.warning("slack interaction replayed (same timestamp and signature): ignored")
        return JSONResponse({"ok": False, "state": "replayed", "text": "Already received; nothing changed."})
    try:
        payload = json.loads(parse_qs(body.decode("utf-8"), strict_parsing=False)["payload"][0])
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        return JSONResponse({"error": "expected form field 'payload' with JSON"}, status_code=400)
    try:
        result, where = await run_in_threadpool(decide, approvals, payload)
    except StoreError as exc:  # the decision and its record commit together or not at all
        log.warning("slack interaction not recorded: %s", exc)
        why = redact(str(exc))[:200]
        text = f"Not recorded: the runbook store could not take it ({why}). Nothing was decided; click again."
        result, where = VoteResult(False, text, "error"), _where(payload)
    background.add_task(_after, approvals, where, result)
    if result is None:
        return Response(status_code=200)
    return JSONResponse({"ok": result.ok, "state": result.state, "text": result.message})
