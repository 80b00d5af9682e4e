"""POST /webhooks/pagerduty: signatures, dedup, parsing, limits (store only; no Prefect needed).

The starter is off (``run_starter=False``) so these tests see exactly what the request path wrote."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from fastapi.testclient import TestClient

from runbook.core.settings import Settings
from runbook.gateway.app import create_app
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from tests.gateway.conftest import OLD_SECRET, SECRET
from tests.support.pagerduty_payloads import encode, headers, incident_event, service_updated_event, signature

URL = "/webhooks/pagerduty"


@pytest.fixture
def client(gw_settings: Settings):
    with TestClient(create_app(gw_settings, run_starter=False)) as c:
        yield c


def post(client: TestClient, payload: dict, *secrets: str, webhook_id: str | None = None):
    body = encode(payload)
    return client.post(
        URL, content=body, headers=headers(body, *(secrets or (SECRET,)), webhook_id=webhook_id)
    )


def claims(client: TestClient, incident_id: str | None = None) -> list[dict]:
    return client.app.state.gateway.intake.claims(incident_id)


def test_signed_documented_payload_claims_one_run_with_incident(client, playbook_name) -> None:
    r = post(client, incident_event(incident_id="PGR0VU2"))
    assert r.status_code == 202 and r.json() == {"status": "accepted", "runs": [playbook_name], "noted": 0}
    [claim] = claims(client, "PGR0VU2")
    assert claim["playbook"] == playbook_name and claim["status"] == "pending"
    params = json.loads(claim["parameters"])
    assert set(params) == {"incident", "launch"}  # who started it is a one-time token, not a claim
    assert len(params["launch"]) >= 32
    inc = params["incident"]
    assert inc["id"] == "PGR0VU2" and inc["number"] == 2 and inc["title"] == "A little bump in the road"
    assert inc["urgency"] == "high" and inc["priority"] == "P1" and inc["status"] == "triggered"
    assert inc["service"]["id"] == "PF9KMXH" and inc["service"]["summary"] == "API Service"
    assert inc["html_url"] == "https://acme.pagerduty.com/incidents/PGR0VU2"
    assert [a["summary"] for a in inc["assignees"]] == ["User 123"]


def test_rotation_any_of_several_signatures_and_secrets(gw_settings: Settings) -> None:
    payload = incident_event(incident_id="PROT001")
    body = encode(payload)
    # PagerDuty signs with old and new secret during rotation; we know only the new one
    with TestClient(create_app(gw_settings, run_starter=False)) as c:
        h = headers(body, OLD_SECRET, SECRET)
        assert "," in h["X-PagerDuty-Signature"]
        assert c.post(URL, content=body, headers=h).status_code == 202
    # we know both (old listed first); PagerDuty already signs with the new one only
    both = dataclasses.replace(gw_settings, pagerduty_webhook_secrets=(OLD_SECRET, SECRET))
    with TestClient(create_app(both, run_starter=False)) as c:
        body2 = encode(incident_event(incident_id="PROT002"))
        assert c.post(URL, content=body2, headers=headers(body2, SECRET)).status_code == 202
        assert c.post(URL, content=body2, headers=headers(body2, "some-other-secret")).status_code == 401


def test_tampered_body_is_401_and_nothing_is_stored(client, caplog) -> None:
    body = encode(incident_event(incident_id="PTAMP01"))
    h = headers(body, SECRET)
    tampered = body.replace(b"A little bump", b"A little BUMP")
    with caplog.at_level(logging.WARNING, logger="runbook.gateway"):
        r = client.post(URL, content=tampered, headers=h)
    assert r.status_code == 401
    assert claims(client, "PTAMP01") == [] and client.app.state.gateway.intake.delivery_count() == 0
    assert SECRET not in caplog.text and h["X-PagerDuty-Signature"] not in caplog.text


@pytest.mark.parametrize("header", [None, "", "v0=abc", "v1=", "sha256=deadbeef"])
def test_missing_or_foreign_signature_header_is_401(client, header) -> None:
    body = encode(incident_event(incident_id="PMISS01"))
    h = headers(body, SECRET)
    if header is None:
        del h["X-PagerDuty-Signature"]
    else:
        h["X-PagerDuty-Signature"] = header
    assert client.post(URL, content=body, headers=h).status_code == 401
    assert client.app.state.gateway.intake.delivery_count() == 0


def test_no_secrets_configured_refuses_everything(gw_settings: Settings) -> None:
    s = dataclasses.replace(gw_settings, pagerduty_webhook_secrets=())
    with TestClient(create_app(s, run_starter=False)) as c:
        body = encode(incident_event())
        assert c.post(URL, content=body, headers=headers(body, SECRET)).status_code == 401


def test_duplicate_delivery_and_same_event_start_nothing_new(client) -> None:
    payload = incident_event(incident_id="PDUP001")
    assert post(client, payload, webhook_id="wh-1").json()["status"] == "accepted"
    assert post(client, payload, webhook_id="wh-1").json()["status"] == "duplicate"  # PagerDuty retry
    assert post(client, payload, webhook_id="wh-2").json()["status"] == "duplicate"  # same event id
    again = incident_event(incident_id="PDUP001")  # a re-trigger: new event, same incident
    r = post(client, again)
    assert r.status_code == 202 and r.json()["runs"] == []
    assert len(claims(client, "PDUP001")) == 1


def test_malformed_and_unknown_events(client, caplog) -> None:
    bad = b'{"event": {"event_type": "incident.triggered", '
    with caplog.at_level(logging.WARNING, logger="runbook.gateway"):
        r = client.post(URL, content=bad, headers={"X-PagerDuty-Signature": signature(bad, SECRET)})
    assert r.status_code == 400 and "malformed" in caplog.text
    not_v3 = encode({"messages": [{"event": "incident.trigger"}]})  # a V2-shaped body
    assert client.post(URL, content=not_v3, headers=headers(not_v3, SECRET)).status_code == 400
    latin = "titre é".encode("latin-1")
    assert client.post(URL, content=latin, headers=headers(latin, SECRET)).status_code == 400
    r = post(client, service_updated_event())
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    r = post(client, incident_event("incident.acknowledged", incident_id="PACK001"))
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    r = post(client, incident_event(incident_id="PNOM001", title="Disk almost full"))  # no title match
    assert r.json()["status"] == "ignored" and claims(client, "PNOM001") == []


def test_body_limit_256kb(client) -> None:
    payload = incident_event(incident_id="PBIG001")
    payload["event"]["data"]["description"] = ""
    size = len(encode(payload))
    payload["event"]["data"]["description"] = "x" * (256 * 1024 - size)
    body = encode(payload)
    assert len(body) == 256 * 1024
    assert client.post(URL, content=body, headers=headers(body, SECRET)).status_code == 202
    payload["event"]["data"]["description"] += "y"
    body = encode(payload)
    assert client.post(URL, content=body, headers=headers(body, SECRET)).status_code == 413
    assert len(claims(client, "PBIG001")) == 1


def test_unicode_title_matches_and_survives(client, playbook_name) -> None:
    title = "Очередь застряла: ünïcode 流量 ✓ — stuck"
    r = post(
        client,
        incident_event(incident_id="PUNI001", title=title, service_id="PQUEUE1", service_name="Queues"),
    )
    assert r.status_code == 202 and r.json()["runs"] == [f"{playbook_name}-other"]
    [claim] = claims(client, "PUNI001")
    assert json.loads(claim["parameters"])["incident"]["title"] == title


def test_resolved_is_noted_on_the_started_run(client, playbook_name) -> None:
    gw = client.app.state.gateway
    post(client, incident_event(incident_id="PRES001"))
    # what the starter does once Prefect created the run
    [claim] = gw.intake.lease_due("test-owner")
    gw.intake.mark_started(claim, "test-owner", "run-PRES001")
    r = post(client, incident_event("incident.resolved", incident_id="PRES001"))
    assert r.status_code == 202 and r.json()["noted"] == 1
    notes = [e for e in gw.timeline.events("run-PRES001") if e.kind.value == "note"]
    assert notes and "PRES001 was resolved" in notes[0].summary
    # resolved before the run was started: the pending claim is skipped, no run starts
    post(client, incident_event(incident_id="PRES002"))
    post(client, incident_event("incident.resolved", incident_id="PRES002"))
    assert claims(client, "PRES002")[0]["status"] == "skipped"


def test_health_and_metrics(client) -> None:
    post(client, incident_event(incident_id="PMET001"))
    client.post(URL, content=b"{}", headers={"X-PagerDuty-Signature": "v1=00"})
    assert client.get("/healthz").json() == {
        "status": "ok",
        "store": "ok",
        "playbooks": {"loaded": 2, "skipped": {}},
    }
    text = client.get("/metrics").text
    assert 'runbook_webhooks_total{outcome="accepted"}' in text
    assert 'runbook_webhooks_total{outcome="unauthorized"}' in text
    for name in (
        "runbook_approval_latency_seconds",
        "runbook_step_duration_seconds",
        "runbook_step_failures_total",
        "runbook_runs_started_total",
    ):
        assert f"# TYPE {name}" in text


def test_healthz_503_when_store_unreachable(gw_settings: Settings, tmp_path) -> None:
    app = create_app(gw_settings, run_starter=False)
    gw = app.state.gateway
    gw.db.url = "postgresql://root@127.0.0.1:1/none"  # the store "goes away"
    gw.db.is_postgres = True
    gw.db.close()
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 503
        # webhooks still answer 202: the delivery is spooled locally and replayed later
        body = encode(incident_event(incident_id="PSPL001"))
        r = c.post(URL, content=body, headers=headers(body, SECRET))
        assert r.status_code == 202 and r.json()["status"] == "spooled"
    good = open_database(gw_settings.database_url)
    gw.db, gw.intake.db = good, good
    assert gw.spool.drain(gw.intake) == 1
    assert gw.intake.claims("PSPL001")[0]["status"] == "pending"
    TimelineStore(good)  # store intact


def test_metrics_follow_steps_recorded_by_any_process(client) -> None:
    """Steps run in flow-run processes; /metrics reads their events from the shared store."""
    from runbook.core.events import Event, Kind

    store = client.app.state.gateway.timeline
    action = "rabbitmq.metrics_probe_action"
    store.append(
        Event(
            run_id="run-m1",
            kind=Kind.STEP_SUCCEEDED,
            summary="ok",
            step_id="a",
            details={"action": action, "seconds": 0.3},
        )
    )
    store.append(
        Event(
            run_id="run-m1",
            kind=Kind.STEP_FAILED,
            summary="boom",
            step_id="b",
            details={"action": action, "seconds": 1.2, "error": "x"},
        )
    )
    store.append(
        Event(
            run_id="run-m1",
            kind=Kind.STEP_FAILED,
            summary="retrying",
            step_id="b",
            details={"action": action, "error": "x", "will_retry": True},
        )
    )
    text = client.get("/metrics").text
    assert f'runbook_step_duration_seconds_count{{action="{action}"}} 2.0' in text
    assert f'runbook_step_failures_total{{action="{action}"}} 1.0' in text
    again = client.get("/metrics").text  # a second scrape does not count the same events twice
    assert f'runbook_step_failures_total{{action="{action}"}} 1.0' in again
