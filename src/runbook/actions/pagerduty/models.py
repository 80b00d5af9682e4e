"""Params and results of the PagerDuty actions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions.registry import ActionResult

#: a PagerDuty object id (incident, escalation policy, schedule)
ID = r"^[A-Z0-9]{2,32}$"


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


class NoteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident_id: str = Field(pattern=ID, description="PagerDuty incident id")
    content: str = Field(min_length=1, max_length=25000, description="note text (timeline link, summary)")


class NoteResult(ActionResult):
    note_id: str


class StatusResult(ActionResult):
    id: str
    previous_status: str
    status: str
    changed: bool


class ResolveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident_id: str = Field(pattern=ID, description="PagerDuty incident id")
    resolution: str | None = Field(None, max_length=1000, description="resolution note shown on the incident")


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
