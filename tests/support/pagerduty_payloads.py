"""PagerDuty V3 webhook deliveries shaped like PagerDuty's documented examples.

The incident body below is PagerDuty's own example (developer docs, "Webhooks v3 overview", event data
type ``incident``: id PGR0VU2, "A little bump in the road", service PF9KMXH "API Service", escalation
policy PUS0KTE, priority P1, urgency high), wrapped in the documented envelope (``event.id``,
``event_type``, ``resource_type``, ``occurred_at``, ``agent``, ``client``, ``data``). Tests vary only
ids, titles and services; headers are the ones PagerDuty sends (``X-PagerDuty-Signature`` with one or
more ``v1=`` HMAC-SHA256 values of the raw body, ``X-Webhook-Id`` repeated on every retry).
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from runbook_devtools.signing import pagerduty_headers, pagerduty_signature

DOC_INCIDENT: dict[str, Any] = {
    "id": "PGR0VU2",
    "type": "incident",
    "self": "https://api.pagerduty.com/incidents/PGR0VU2",
    "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
    "number": 2,
    "status": "triggered",
    "incident_key": "d3640fbd41094207a1c11e58e46b1662",
    "created_at": "2020-04-09T15:16:27Z",
    "title": "A little bump in the road",
    "service": {
        "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
        "id": "PF9KMXH",
        "self": "https://api.pagerduty.com/services/PF9KMXH",
        "summary": "API Service",
        "type": "service_reference",
    },
    "assignees": [
        {
            "html_url": "https://acme.pagerduty.com/users/PTUXL6G",
            "id": "PTUXL6G",
            "self": "https://api.pagerduty.com/users/PTUXL6G",
            "summary": "User 123",
            "type": "user_reference",
        }
    ],
    "escalation_policy": {
        "html_url": "https://acme.pagerduty.com/escalation_policies/PUS0KTE",
        "id": "PUS0KTE",
        "self": "https://api.pagerduty.com/escalation_policies/PUS0KTE",
        "summary": "Default",
        "type": "escalation_policy_reference",
    },
    "teams": [
        {
            "html_url": "https://acme.pagerduty.com/teams/PFCVPS0",
            "id": "PFCVPS0",
            "self": "https://api.pagerduty.com/teams/PFCVPS0",
            "summary": "Engineering",
            "type": "team_reference",
        }
    ],
    "priority": {
        "html_url": "https://acme.pagerduty.com/account/incident_priorities",
        "id": "PSO75BM",
        "self": "https://api.pagerduty.com/priorities/PSO75BM",
        "summary": "P1",
        "type": "priority_reference",
    },
    "urgency": "high",
    "conference_bridge": {
        "conference_number": "+1 1234123412,,987654321#",
        "conference_url": "https://example.com",
    },
    "resolve_reason": None,
}

DOC_AGENT = {
    "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
    "id": "PLH1HKV",
    "self": "https://api.pagerduty.com/users/PLH1HKV",
    "summary": "Tenex Engineer",
    "type": "user_reference",
}


def incident_event(
    event_type: str = "incident.triggered",
    *,
    incident_id: str = "PGR0VU2",
    number: int = 2,
    title: str = "A little bump in the road",
    service_id: str = "PF9KMXH",
    service_name: str = "API Service",
    urgency: str = "high",
    status: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A documented V3 payload for ``event_type`` about one incident."""
    data = copy.deepcopy(DOC_INCIDENT)
    data.update(
        id=incident_id,
        number=number,
        title=title,
        urgency=urgency,
        status=status
        or {"incident.resolved": "resolved", "incident.acknowledged": "acknowledged"}.get(
            event_type, "triggered"
        ),
        self=f"https://api.pagerduty.com/incidents/{incident_id}",
        html_url=f"https://acme.pagerduty.com/incidents/{incident_id}",
    )
    data["service"].update(
        id=service_id,
        summary=service_name,
        self=f"https://api.pagerduty.com/services/{service_id}",
        html_url=f"https://acme.pagerduty.com/services/{service_id}",
    )
    return {
        "event": {
            "id": event_id or str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2020-10-02T18:45:22.169Z",
            "agent": copy.deepcopy(DOC_AGENT),
            "client": {"name": "PagerDuty"},
            "data": data,
        }
    }


def service_updated_event() -> dict[str, Any]:
    """PagerDuty's documented ``service.updated`` example (no incident in it)."""
    return {
        "event": {
            "id": "01BRB6ZP4M6T8ZG4X6BP63ZB9O",
            "event_type": "service.updated",
            "resource_type": "service",
            "occurred_at": "2021-03-02T13:35:11.682Z",
            "agent": None,
            "client": None,
            "data": {
                "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                "id": "PF9KMXH",
                "self": "https://api.pagerduty.com/services/PF9KMXH",
                "summary": "testing service updates",
                "alert_creation": "create_alerts_and_incidents",
                "teams": [],
                "type": "service",
            },
        }
    }


def encode(payload: dict[str, Any]) -> bytes:
    """Serialised as PagerDuty does: UTF-8 JSON, non-ASCII characters kept as they are."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def signature(body: bytes, *secrets: str) -> str:
    """``X-PagerDuty-Signature``: one ``v1=`` value per signing secret, comma separated (docs' format).

    Written independently of the gateway (:mod:`runbook_devtools.signing`, from PagerDuty's
    "Verifying Signatures" page)."""
    return pagerduty_signature(body, *secrets)


def headers(body: bytes, *secrets: str, webhook_id: str | None = None) -> dict[str, str]:
    return pagerduty_headers(body, *secrets, webhook_id=webhook_id, subscription="PY1OYTU")
