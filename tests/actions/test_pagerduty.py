"""PagerDuty actions through pdpyras against ``responses`` (pdpyras speaks requests).

Response bodies follow PagerDuty's REST API reference examples (incident, note, oncalls with
``include[]=users``)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import responses

from runbook.actions import ActionContext, ActionError, BackendUnavailable, Connections, describe, invoke
from runbook.core.settings import Settings

API = "https://api.pagerduty.com"
INCIDENT = {
    "id": "PT4KHLK",
    "type": "incident",
    "summary": "[#1234] The server is on fire.",
    "self": f"{API}/incidents/PT4KHLK",
    "html_url": "https://subdomain.pagerduty.com/incidents/PT4KHLK",
    "incident_number": 1234,
    "title": "The server is on fire.",
    "status": "triggered",
    "urgency": "high",
    "incident_key": "baf7cf21b1da41b4b0221008339ff357",
    "service": {"id": "PIJ90N7", "type": "service_reference", "summary": "My Mail Service"},
    "assignments": [
        {
            "at": "2015-11-10T00:31:52Z",
            "assignee": {"id": "PXPGF42", "type": "user_reference", "summary": "Earline Greenholt"},
        }
    ],
    "escalation_policy": {
        "id": "PT20YPA",
        "type": "escalation_policy_reference",
        "summary": "Another Escalation Policy",
    },
    "priority": {"id": "P53ZZH5", "type": "priority", "summary": "P2"},
}


@pytest.fixture
def ctx(settings: Settings) -> ActionContext:
    s = dataclasses.replace(
        settings, pagerduty_api_token="u+pd-test-token-123", pagerduty_from_email="ops@example.com"
    )
    return ActionContext(Connections(s))


def test_get_incident_reads_fields(ctx: ActionContext, registry) -> None:
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/incidents/PT4KHLK", json={"incident": INCIDENT})
        out = invoke(registry["pagerduty.get_incident"], ctx, {"incident_id": "PT4KHLK"})
        assert rs.calls[0].request.headers["Authorization"] == "Token token=u+pd-test-token-123"
    assert out.number == 1234 and out.status == "triggered" and out.priority == "P2"
    assert out.service == "My Mail Service" and out.escalation_policy_id == "PT20YPA"
    assert out.assignees == ["Earline Greenholt"]
    assert "The server is on fire." in out.summary


def test_add_note_posts_redacted_content(ctx: ActionContext, registry) -> None:
    from runbook.core import redact

    redact.register(["hunter2-secret-value"])
    with responses.RequestsMock() as rs:
        rs.post(
            f"{API}/incidents/PT4KHLK/notes",
            json={"note": {"id": "PWL7QXS", "content": "x", "created_at": "2013-03-06T15:28:51-05:00"}},
        )
        out = invoke(
            registry["pagerduty.add_note"],
            ctx,
            {"incident_id": "PT4KHLK", "content": "timeline: http://rb/runs/1 pw hunter2-secret-value"},
        )
        sent = json.loads(rs.calls[0].request.body)
        assert rs.calls[0].request.headers["From"] == "ops@example.com"
    assert out.note_id == "PWL7QXS"
    assert (
        "hunter2-secret-value" not in sent["note"]["content"]
        and "http://rb/runs/1" in sent["note"]["content"]
    )


def test_acknowledge_checks_target_then_updates(ctx: ActionContext, registry) -> None:
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/incidents/PT4KHLK", json={"incident": INCIDENT})
        rs.put(f"{API}/incidents/PT4KHLK", json={"incident": {**INCIDENT, "status": "acknowledged"}})
        out = invoke(registry["pagerduty.acknowledge"], ctx, {"incident_id": "PT4KHLK"})
        body = json.loads(rs.calls[1].request.body)
    assert body == {"incident": {"type": "incident_reference", "status": "acknowledged"}}
    assert out.changed and out.previous_status == "triggered" and out.status == "acknowledged"


def test_acknowledge_of_resolved_incident_is_a_no_op(ctx: ActionContext, registry) -> None:
    with responses.RequestsMock() as rs:  # a PUT would fail: RequestsMock refuses unregistered calls
        rs.get(f"{API}/incidents/PT4KHLK", json={"incident": {**INCIDENT, "status": "resolved"}})
        out = invoke(registry["pagerduty.acknowledge"], ctx, {"incident_id": "PT4KHLK"})
    assert not out.changed and "already resolved" in out.summary


def test_resolve_is_destructive_and_describes_exactly(ctx: ActionContext, registry) -> None:
    spec = registry["pagerduty.resolve"]
    assert spec.destructive
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/incidents/PT4KHLK", json={"incident": INCIDENT})
        text = describe(spec, ctx, {"incident_id": "PT4KHLK", "resolution": "consumers restarted"})
    assert "resolve PagerDuty incident #1234 (PT4KHLK)" in text and "currently triggered" in text
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/incidents/PT4KHLK", json={"incident": INCIDENT})
        rs.put(f"{API}/incidents/PT4KHLK", json={"incident": {**INCIDENT, "status": "resolved"}})
        out = invoke(spec, ctx, {"incident_id": "PT4KHLK", "resolution": "consumers restarted"})
        body = json.loads(rs.calls[1].request.body)
    assert (
        body["incident"]["status"] == "resolved" and body["incident"]["resolution"] == "consumers restarted"
    )
    assert out.status == "resolved"


def test_resolve_of_missing_incident_fails_before_acting(ctx: ActionContext, registry) -> None:
    with responses.RequestsMock() as rs:
        rs.get(
            f"{API}/incidents/PNOPE00",
            status=404,
            json={"error": {"message": "Not Found", "code": 2100, "errors": []}},
        )
        with pytest.raises(ActionError, match="404 Not Found"):
            invoke(registry["pagerduty.resolve"], ctx, {"incident_id": "PNOPE00"})
        assert len(rs.calls) == 1


def test_oncall_lists_users_with_emails_by_level(ctx: ActionContext, registry) -> None:
    def row(uid: str, name: str, email: str, level: int) -> dict:
        return {
            "escalation_policy": {"id": "PT20YPA", "type": "escalation_policy_reference"},
            "escalation_level": level,
            "schedule": None,
            "user": {"id": uid, "type": "user", "name": name, "summary": name, "email": email},
            "start": "2015-03-06T15:28:51-05:00",
            "end": "2015-03-07T15:28:51-05:00",
        }

    page = {
        "oncalls": [
            row("PB4M7GF", "Alice Ops", "alice@example.com", 2),
            row("PXPGF42", "Earline Greenholt", "earline@example.com", 1),
            row("PXPGF42", "Earline Greenholt", "earline@example.com", 3),
        ],
        "limit": 100,
        "offset": 0,
        "more": False,
        "total": None,
    }
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/oncalls", json=page)
        out = invoke(registry["pagerduty.oncall"], ctx, {"escalation_policy_id": "PT20YPA"})
        url = rs.calls[0].request.url
    assert "escalation_policy_ids%5B%5D=PT20YPA" in url and "include%5B%5D=users" in url
    assert out.emails == ["earline@example.com", "alice@example.com"]
    assert [u.level for u in out.users] == [1, 2]
    with responses.RequestsMock() as rs:
        rs.get(f"{API}/oncalls", json=page)
        only = invoke(registry["pagerduty.oncall"], ctx, {"escalation_policy_id": "PT20YPA", "level": 2})
    assert only.emails == ["alice@example.com"]


def test_unreachable_and_server_errors_are_backend_unavailable_without_token(ctx, registry) -> None:
    import requests

    with responses.RequestsMock() as rs:
        rs.get(f"{API}/incidents/PT4KHLK", body=requests.ConnectionError("connection refused"))
        with pytest.raises(BackendUnavailable) as err:
            invoke(registry["pagerduty.get_incident"], ctx, {"incident_id": "PT4KHLK"})
    assert "u+pd-test-token-123" not in str(err.value)


def test_missing_token_is_a_clear_error(settings: Settings, registry) -> None:
    ctx = ActionContext(Connections(dataclasses.replace(settings, pagerduty_api_token=None)))
    with pytest.raises(ActionError, match="PAGERDUTY_API_TOKEN is not set"):
        invoke(registry["pagerduty.get_incident"], ctx, {"incident_id": "PT4KHLK"})
