"""PagerDuty REST actions: read an incident, note on it, acknowledge, resolve, and who is on call.

Only this module declares actions (the registry loads it): each is its contract and user docs. The
work is in ``incidents`` and ``oncall``; params and results in ``models``; ``client`` alone imports
pdpyras. The session comes from ``PAGERDUTY_API_TOKEN`` through ``ctx.connections``; write calls
need a ``From`` email (``PAGERDUTY_FROM_EMAIL``), as the REST API requires for incident updates.
Notes pass through the redactor: a note is visible to everyone with access to the incident.

:func:`oncall_role_source` (the ``pagerduty:<id>`` approvers) lives in ``oncall`` and is re-exported
here for the composition root.
"""

from __future__ import annotations

from runbook.actions.context import ActionContext
from runbook.actions.pagerduty import incidents
from runbook.actions.pagerduty import oncall as oncall_
from runbook.actions.pagerduty.client import pagerduty_session
from runbook.actions.pagerduty.models import (
    IncidentParams,
    IncidentResult,
    NoteParams,
    NoteResult,
    OnCallParams,
    OnCallResult,
    ResolveParams,
    StatusResult,
)
from runbook.actions.pagerduty.oncall import ONCALL_CACHE_SECONDS, oncall_role_source
from runbook.actions.registry import action


@action("pagerduty.get_incident", summary="Read a PagerDuty incident (status, urgency, service, assignees)")
def get_incident(ctx: ActionContext, params: IncidentParams) -> IncidentResult:
    """Fetches the incident as PagerDuty has it now (the webhook's copy may be minutes old)."""
    return incidents.as_result(incidents.incident(ctx, params.incident_id))


@action("pagerduty.add_note", summary="Add a note to a PagerDuty incident (e.g. the timeline link)")
def add_note(ctx: ActionContext, params: NoteParams) -> NoteResult:
    """Posts a note on the incident, typically the run's timeline link and its verdict, so responders
    who live in PagerDuty see what the runbook found. The text is redacted first."""
    return incidents.add_note(ctx, params)


@action("pagerduty.acknowledge", summary="Acknowledge a PagerDuty incident (stops escalation)")
def acknowledge(ctx: ActionContext, params: IncidentParams) -> StatusResult:
    """Acknowledges a triggered incident so it stops escalating while the runbook works; an
    acknowledged or resolved incident is left as it is."""
    return incidents.set_status(ctx, params.incident_id, "acknowledged")


@action(
    "pagerduty.resolve",
    summary="Resolve a PagerDuty incident",
    destructive=True,
    describe=incidents.describe_resolve,
)
def resolve(ctx: ActionContext, params: ResolveParams) -> StatusResult:
    """Resolves the incident (ends paging and closes it). Use only after the finding is confirmed
    fixed; gated by an approval. An already resolved incident is left as it is."""
    return incidents.set_status(ctx, params.incident_id, "resolved", params.resolution)


@action("pagerduty.oncall", summary="Who is on call now for an escalation policy (with emails)")
def oncall(ctx: ActionContext, params: OnCallParams) -> OnCallResult:
    """Lists the people on call now for the policy, lowest level first, with their emails, so a
    playbook can use them as approvers (``steps.<id>.emails``)."""
    return oncall_.oncall(ctx, params)


__all__ = [
    "ONCALL_CACHE_SECONDS",
    "acknowledge",
    "add_note",
    "get_incident",
    "oncall",
    "oncall_role_source",
    "pagerduty_session",
    "resolve",
]
