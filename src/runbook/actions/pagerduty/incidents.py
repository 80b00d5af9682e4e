"""Incidents: read one, note on it, move its status forward (acknowledge, resolve).

Bodies and the ``describe`` text of the incident actions. Write calls need a ``From`` email
(``PAGERDUTY_FROM_EMAIL``), as the REST API requires for incident updates; notes and resolutions
pass through the redactor, since they are visible to everyone with access to the incident.
"""

from __future__ import annotations

from typing import Any

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.pagerduty.client import BACKEND, call, session
from runbook.actions.pagerduty.models import (
    IncidentResult,
    NoteParams,
    NoteResult,
    ResolveParams,
    StatusResult,
)
from runbook.core.redact import redact


def incident(ctx: ActionContext, incident_id: str) -> dict[str, Any]:
    """The incident as PagerDuty has it now."""
    found: dict[str, Any] = call(
        f"get incident {incident_id}", session(ctx).rget, f"/incidents/{incident_id}"
    )
    return found


def as_result(inc: dict[str, Any]) -> IncidentResult:
    """The action result of an incident document (REST API shape, or the webhook's)."""
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


def add_note(ctx: ActionContext, params: NoteParams) -> NoteResult:
    """Post the redacted note (see ``pagerduty.add_note``)."""
    note = call(
        f"note on {params.incident_id}",
        session(ctx).rpost,
        f"/incidents/{params.incident_id}/notes",
        json={"note": {"content": redact(params.content)}},
    )
    return NoteResult(note_id=str(note.get("id", "")), summary=f"note added to incident {params.incident_id}")


def set_status(
    ctx: ActionContext, incident_id: str, status: str, resolution: str | None = None
) -> StatusResult:
    """Move the incident forward to ``status``; never backwards (an already later status is left)."""
    if not ctx.settings.pagerduty_from_email:
        raise ActionError(
            "PAGERDUTY_FROM_EMAIL is not set (PagerDuty requires it to update incidents)", backend=BACKEND
        )
    current = incident(ctx, incident_id)  # validates the target exists before acting
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
    updated = call(
        f"{status} {incident_id}", session(ctx).rput, f"/incidents/{incident_id}", json={"incident": body}
    )
    after = updated.get("status", status)
    return StatusResult(
        id=incident_id,
        previous_status=before,
        status=after,
        changed=True,
        summary=f"incident {incident_id}: {before} -> {after}",
    )


def describe_resolve(ctx: ActionContext, params: ResolveParams) -> str:
    inc = as_result(incident(ctx, params.incident_id))
    why = f" with resolution {params.resolution!r}" if params.resolution else ""
    if inc.status == "resolved":
        return f"nothing: PagerDuty incident #{inc.number} ({inc.id}) is already resolved"
    return (
        f"resolve PagerDuty incident #{inc.number} ({inc.id}) {inc.title!r} on service {inc.service!r},"
        f" currently {inc.status}{why}; this stops all paging for it"
    )
