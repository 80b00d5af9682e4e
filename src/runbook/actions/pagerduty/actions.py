"""PagerDuty REST actions: read an incident, note on it, acknowledge, resolve, and who is on call.

pdpyras is the one vendor SDK for PagerDuty here and is imported only in this module (it warns on
import that it is deprecated in favour of ``pagerduty``; that warning is filtered below, so it does
not show in every CLI run). The session comes from ``PAGERDUTY_API_TOKEN`` through
``ctx.connections``; write calls need a ``From`` email (``PAGERDUTY_FROM_EMAIL``), as the REST API
requires for incident updates. Notes pass through the redactor: a note is visible to everyone with
access to the incident.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.actions.registry import ActionResult, action
from runbook.core.redact import redact
from runbook.core.settings import Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*pdpyras.*deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import pdpyras

BACKEND = "pagerduty"
ID = r"^[A-Z0-9]{2,32}$"


def pagerduty_session(settings: Settings) -> Any:
    """The ``ctx.connections`` factory: one API session per run."""
    if not settings.pagerduty_api_token:
        raise ActionError("PAGERDUTY_API_TOKEN is not set", backend=BACKEND)
    session = pdpyras.APISession(settings.pagerduty_api_token, default_from=settings.pagerduty_from_email)
    session.max_network_attempts = 2
    return session


def _session(ctx: ActionContext) -> Any:
    session = ctx.connections.get("pagerduty.api", pagerduty_session)
    session.timeout = ctx.remaining(30.0)
    return session


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one pdpyras call, turning its errors into typed, redacted action errors."""
    try:
        return fn(*args, **kwargs)
    except pdpyras.PDClientError as exc:
        response = getattr(exc, "response", None)
        if response is None:
            raise BackendUnavailable(
                f"{what}: PagerDuty unreachable: {redact(str(exc))}", backend=BACKEND
            ) from None
        detail = ""
        try:
            err = response.json().get("error", {})
            detail = "; ".join([err.get("message", ""), *err.get("errors", [])]).strip("; ")
        except ValueError:
            pass
        status = response.status_code
        if status >= 500:
            raise BackendUnavailable(f"{what}: PagerDuty answered {status}", backend=BACKEND) from None
        raise ActionError(
            f"{what}: PagerDuty answered {status} {redact(detail)}".strip(), backend=BACKEND
        ) from None


class IncidentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident_id: str = Field(pattern=ID, description="PagerDuty incident id, e.g. {{ incident.id }}")


class IncidentResult(ActionResult):
    id: str
    number: int | None
    title: str
    status: str
    urgency: str | None
    priority: str | None
    service: str | None
    service_id: str | None
    escalation_policy_id: str | None
    html_url: str | None
    assignees: list[str]


def _incident(ctx: ActionContext, incident_id: str) -> dict[str, Any]:
    return _call(f"get incident {incident_id}", _session(ctx).rget, f"/incidents/{incident_id}")


def _as_result(inc: dict[str, Any]) -> IncidentResult:
    service = inc.get("service") or {}
    priority = inc.get("priority") or {}
    policy = inc.get("escalation_policy") or {}
    assignees = [
        a.get("assignee", a).get("summary") or a.get("assignee", a).get("id")
        for a in inc.get("assignments") or inc.get("assignees") or []
    ]
    return IncidentResult(
        id=inc["id"],
        number=inc.get("incident_number") or inc.get("number"),
        title=inc.get("title") or inc.get("summary") or "",
        status=inc.get("status", ""),
        urgency=inc.get("urgency"),
        priority=priority.get("summary") if isinstance(priority, dict) else None,
        service=service.get("summary"),
        service_id=service.get("id"),
        escalation_policy_id=policy.get("id"),
        html_url=inc.get("html_url"),
        assignees=[a for a in assignees if a],
        summary=f"incident #{inc.get('incident_number') or inc.get('number')} {inc.get('status')}:"
        f" {inc.get('title') or ''} (service {service.get('summary')})",
    )


@action("pagerduty.get_incident", summary="Read a PagerDuty incident (status, urgency, service, assignees)")
def get_incident(ctx: ActionContext, params: IncidentParams) -> IncidentResult:
    """Fetches the incident as PagerDuty has it now (the webhook's copy may be minutes old)."""
    return _as_result(_incident(ctx, params.incident_id))


class NoteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident_id: str = Field(pattern=ID, description="PagerDuty incident id")
    content: str = Field(min_length=1, max_length=25000, description="note text (timeline link, summary)")


class NoteResult(ActionResult):
    note_id: str


@action("pagerduty.add_note", summary="Add a note to a PagerDuty incident (e.g. the timeline link)")
def add_note(ctx: ActionContext, params: NoteParams) -> NoteResult:
    """Posts a note on the incident, typically the run's timeline link and its verdict, so responders
    who live in PagerDuty see what the runbook found. The text is redacted first."""
    note = _call(
        f"note on {params.incident_id}",
        _session(ctx).rpost,
        f"/incidents/{params.incident_id}/notes",
        json={"note": {"content": redact(params.content)}},
    )
    return NoteResult(note_id=str(note.get("id", "")), summary=f"note added to incident {params.incident_id}")


class StatusResult(ActionResult):
    id: str
    previous_status: str
    status: str
    changed: bool


def _set_status(
    ctx: ActionContext, incident_id: str, status: str, resolution: str | None = None
) -> StatusResult:
    if not ctx.settings.pagerduty_from_email:
        raise ActionError(
            "PAGERDUTY_FROM_EMAIL is not set (PagerDuty requires it to update incidents)", backend=BACKEND
        )
    current = _incident(ctx, incident_id)  # validates the target exists before acting
    before = current.get("status", "")
    order = {"triggered": 0, "acknowledged": 1, "resolved": 2}
    if order.get(before, -1) >= order[status]:
        return StatusResult(
            id=incident_id,
            previous_status=before,
            status=before,
            changed=False,
            summary=f"incident {incident_id} already {before}: nothing to do",
        )
    body: dict[str, Any] = {"type": "incident_reference", "status": status}
    if resolution:
        body["resolution"] = redact(resolution)
    updated = _call(
        f"{status} {incident_id}", _session(ctx).rput, f"/incidents/{incident_id}", json={"incident": body}
    )
    after = updated.get("status", status)
    return StatusResult(
        id=incident_id,
        previous_status=before,
        status=after,
        changed=True,
        summary=f"incident {incident_id}: {before} -> {after}",
    )


@action("pagerduty.acknowledge", summary="Acknowledge a PagerDuty incident (stops escalation)")
def acknowledge(ctx: ActionContext, params: IncidentParams) -> StatusResult:
    """Acknowledges a triggered incident so it stops escalating while the runbook works; an
    acknowledged or resolved incident is left as it is."""
    return _set_status(ctx, params.incident_id, "acknowledged")


class ResolveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident_id: str = Field(pattern=ID, description="PagerDuty incident id")
    resolution: str | None = Field(None, max_length=1000, description="resolution note shown on the incident")


def describe_resolve(ctx: ActionContext, params: ResolveParams) -> str:
    inc = _as_result(_incident(ctx, params.incident_id))
    why = f" with resolution {params.resolution!r}" if params.resolution else ""
    if inc.status == "resolved":
        return f"nothing: PagerDuty incident #{inc.number} ({inc.id}) is already resolved"
    return (
        f"resolve PagerDuty incident #{inc.number} ({inc.id}) {inc.title!r} on service {inc.service!r},"
        f" currently {inc.status}{why}; this stops all paging for it"
    )


@action(
    "pagerduty.resolve", summary="Resolve a PagerDuty incident", destructive=True, describe=describe_resolve
)
def resolve(ctx: ActionContext, params: ResolveParams) -> StatusResult:
    """Resolves the incident (ends paging and closes it). Use only after the finding is confirmed
    fixed; gated by an approval. An already resolved incident is left as it is."""
    return _set_status(ctx, params.incident_id, "resolved", params.resolution)


class OnCallParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    escalation_policy_id: str = Field(pattern=ID, description="escalation policy, e.g. the incident's")
    level: int | None = Field(None, ge=1, le=20, description="only this escalation level (1 = first)")


class OnCallUser(BaseModel):
    id: str
    name: str
    email: str | None
    level: int | None


class OnCallResult(ActionResult):
    users: list[OnCallUser]
    emails: list[str]


@action("pagerduty.oncall", summary="Who is on call now for an escalation policy (with emails)")
def oncall(ctx: ActionContext, params: OnCallParams) -> OnCallResult:
    """Lists the people on call now for the policy, lowest level first, with their emails, so a
    playbook can use them as approvers (``steps.<id>.emails``)."""
    rows = _call(
        f"on-call for {params.escalation_policy_id}",
        lambda: list(
            _session(ctx).iter_all(
                "oncalls",
                params={"escalation_policy_ids[]": [params.escalation_policy_id], "include[]": ["users"]},
            )
        ),
    )
    seen: dict[str, OnCallUser] = {}
    for row in sorted(rows, key=lambda r: r.get("escalation_level") or 99):
        level = row.get("escalation_level")
        if params.level is not None and level != params.level:
            continue
        user = row.get("user") or {}
        if user.get("id") and user["id"] not in seen:
            seen[user["id"]] = OnCallUser(
                id=user["id"],
                name=user.get("name") or user.get("summary") or "",
                email=user.get("email"),
                level=level,
            )
    users = list(seen.values())
    names = ", ".join(f"{u.name} (L{u.level})" for u in users) or "nobody"
    return OnCallResult(
        users=users,
        emails=[u.email for u in users if u.email],
        summary=f"on call for {params.escalation_policy_id}: {names}",
    )


# == PagerDuty on-call as approvers ================================================================
ONCALL_CACHE_SECONDS = 60.0


def oncall_role_source(settings: Settings, *, cache_seconds: float = ONCALL_CACHE_SECONDS) -> Any:
    """A role source for ``approvers`` members ``pagerduty:<id>``: who is on call *now*.

    ``<id>`` is an escalation policy id (``pagerduty:PESCAL1``) or, with a prefix, a schedule
    (``pagerduty:schedule/PSCHED1``) or a policy (``pagerduty:escalation_policy/PESCAL1``). The
    people on call are returned as ``email:`` identities, which the approvers file maps to persons
    (an on-call user who is not a listed person approves nothing). Answers are cached for a minute
    so a burst of clicks costs one API call; an unreachable PagerDuty gives nobody (and a warning),
    never everybody."""
    import threading
    import time

    lock = threading.Lock()
    cache: dict[str, tuple[float, list[str]]] = {}

    def source(value: str) -> list[str]:
        kind, sep, ident = value.partition("/")
        if not sep:
            kind, ident = "escalation_policy", value
        if kind not in ("schedule", "escalation_policy") or not re.match(ID, ident):
            raise ValueError(f"pagerduty:{value}: expected an id, schedule/<id> or escalation_policy/<id>")
        now = time.monotonic()
        with lock:
            hit = cache.get(value)
            if hit and now - hit[0] < cache_seconds:
                return hit[1]
        session = pagerduty_session(settings)
        session.timeout = 5.0
        try:
            rows = list(
                session.iter_all("oncalls", params={f"{kind}_ids[]": [ident], "include[]": ["users"]})
            )
        except pdpyras.PDClientError as exc:
            raise ActionError(f"PagerDuty on-call for {value}: {redact(str(exc))}", backend=BACKEND) from None
        emails = sorted(
            {
                f"email:{(r.get('user') or {}).get('email')}"
                for r in rows
                if (r.get("user") or {}).get("email")
            }
        )
        with lock:
            cache[value] = (now, emails)
        return emails

    return source
