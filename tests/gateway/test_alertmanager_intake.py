"""POST /webhooks/alertmanager: bearer token, bounded body, matching, label -> param mapping checked
against the playbook's declarations, one run per (fingerprint, playbook) while firing, resolved noted.
The starter is off (``run_starter=False``): these tests see exactly what the request path wrote."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runbook.actions import default_registry
from runbook.core.settings import Settings
from runbook.gateway.app import create_app
from runbook.spec.lint import lint_text
from runbook.store import launches
from runbook.store.alerts import AlertStore
from runbook.store.intake import IntakeStore
from tests.support.alertmanager_payloads import TOKEN, alert, auth, notification

URL = "/webhooks/alertmanager"
PLAYBOOK = """
name: {name}
title: Alert test {name}
owner: test
triggers:
  alertmanager:
    - alertname: "QueueBacklog|QueueDepthHigh"
      labels: {{severity: "page|critical"}}
      params:
        queue: "{{{{ alert.labels.queue }}}}"
        note: "{{{{ alert.annotations.summary }}}}"
params:
  queue: {{type: string, default: plans, pattern: "[a-z][a-z0-9._-]{{0,99}}"}}
  note: {{type: string, default: "-"}}
  system: {{type: string, default: rabbitmq, enum: [rabbitmq, bullmq]}}
steps:
  - id: first
    action: timeline.note
    with: {{text: "{{{{ params.queue }}}}"}}
"""


@pytest.fixture
def am_settings(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str) -> Settings:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "am.yaml").write_text(PLAYBOOK.format(name=f"am-{unique}"), encoding="utf-8")
    (folder / "broken.yaml").write_text("name: broken\nsteps: [", encoding="utf-8")  # never breaks intake
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    return dataclasses.replace(settings, playbooks=folder, alertmanager_token=TOKEN)


@pytest.fixture
def client(am_settings: Settings):
    with TestClient(create_app(am_settings, run_starter=False)) as c:
        yield c


def stores(client: TestClient) -> tuple[AlertStore, IntakeStore]:
    gw = client.app.state.gateway
    return AlertStore(gw.db), gw.intake


def backlog(queue: str = "plans", **extra: str) -> dict[str, str]:
    return {"alertname": "QueueBacklog", "severity": "page", "queue": queue, **extra}


def post(client: TestClient, payload: dict, headers: dict | None = None):
    sent = auth() if headers is None else headers
    return client.post(URL, content=json.dumps(payload).encode(), headers=sent)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0000"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
    ],
    ids=["missing", "forged", "wrong-scheme", "longer", "prefix"],
)
def test_forged_or_missing_token_is_401_and_nothing_is_stored(client, headers) -> None:
    r = post(client, notification([alert(backlog())]), headers)
    assert r.status_code == 401
    alerts, intake = stores(client)
    assert intake.delivery_count() == 0 and alerts.claims() == [] and alerts.firing() == []
    assert client.app.state.gateway.db.query("SELECT COUNT(*) AS n FROM runbook_launches")[0]["n"] == 0


def test_no_token_configured_refuses_everything(am_settings) -> None:
    app = create_app(dataclasses.replace(am_settings, alertmanager_token=None), run_starter=False)
    with TestClient(app) as c:
        assert post(c, notification([alert(backlog())]), {"Authorization": "Bearer "}).status_code == 401
        assert post(c, notification([alert(backlog())])).status_code == 401


def test_body_is_bounded_before_reading(client) -> None:
    r = client.post(URL, content=b"{" + b" " * (1024 * 1024 + 10) + b"}", headers=auth())
    assert r.status_code == 413
    assert post(client, {"version": "3", "alerts": []}).status_code == 400
    bad = notification([alert(backlog())])
    bad["alerts"][0]["fingerprint"] = "../../etc"
    assert post(client, bad).status_code == 400
    assert stores(client)[1].delivery_count() == 0


def test_firing_alert_claims_one_run_with_the_queue_from_its_labels(client, unique) -> None:
    r = post(client, notification([alert(backlog("orders.eu-1"))]))
    assert r.status_code == 202 and r.json()["status"] == "accepted"
    alerts, _ = stores(client)
    [claim] = alerts.claims()
    assert claim["playbook"] == f"am-{unique}" and claim["status"] == "pending"
    params = claim["parameters"]
    assert set(params) == {"queue", "note", "launch"}  # system keeps the playbook's default
    assert params["queue"] == "orders.eu-1" and params["note"] == "backlog on orders.eu-1"
    launch = launches.redeem(client.app.state.gateway.db, params["launch"], "flow-run-1")
    assert launch is not None and launch.trigger == "alertmanager" and launch.requested_by is None
    assert launch.incident is None  # no PagerDuty incident: PagerDuty steps stay skipped


def test_alert_storm_in_one_group_starts_one_run(client) -> None:
    fired = alert(backlog())
    bodies = []
    for i in range(120):  # repeats, retries and group updates of the same firing alert
        extra = [alert(backlog(f"other{i}", severity="info"))] if i % 3 else []
        bodies.append(notification([fired, *extra], group={"alertname": "QueueBacklog"}))
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda b: post(client, b).status_code, bodies))
    assert set(codes) == {202}
    alerts, intake = stores(client)
    assert len(alerts.claims()) == 1 and len(alerts.firing()) == 1
    assert intake.delivery_count() < 120  # identical re-sends are one delivery


def test_untrusted_labels_are_checked_against_the_params_declarations(client) -> None:
    hostile = [
        backlog("{{ 7*7 }}"),  # never evaluated: a string the pattern refuses
        backlog("plans; rm -rf /"),
        backlog("x" * 300),
        {"alertname": "QueueBacklog", "severity": "page"},  # no queue label: template undefined
    ]
    r = post(client, notification([alert(lbl) for lbl in hostile]))
    assert r.status_code == 202 and r.json()["runs"] == []
    assert stores(client)[0].claims() == []
    note = backlog("plans", x="1")
    r = post(client, notification([alert(note, annotations={"summary": "{{ ''.__class__ }} {% for %}"})]))
    [claim] = stores(client)[0].claims()
    assert claim["parameters"]["note"] == "{{ ''.__class__ }} {% for %}"  # data, never a template


def test_matchers_name_labels_and_status(client) -> None:
    nomatch = [
        alert({"alertname": "DiskFull", "severity": "page", "queue": "plans"}),
        alert(backlog(severity="info")),
        alert({"alertname": "QueueBacklogX", "severity": "page", "queue": "plans"}),  # full match only
        alert(backlog("resolved-only"), status="resolved"),
    ]
    r = post(client, notification(nomatch))
    assert r.status_code == 202 and r.json()["runs"] == [] and stores(client)[0].claims() == []


def test_resolved_is_noted_on_the_run_and_a_new_firing_is_a_new_run(client) -> None:
    alerts, intake = stores(client)
    timeline = client.app.state.gateway.timeline
    fired = alert(backlog())
    post(client, notification([fired]))
    [claim] = intake.lease_due("test-owner")
    intake.mark_started(claim, "test-owner", "flow-run-am-1")
    resolved = {**fired, "status": "resolved"}
    r = post(client, notification([resolved]))
    assert r.status_code == 202 and r.json()["noted"] == 1
    [note] = [e for e in timeline.events("flow-run-am-1") if e.kind.value == "note"]
    assert note.summary == "Alertmanager: alert QueueBacklog resolved" and note.actor == "alertmanager"
    assert alerts.firing() == []
    post(client, notification([alert(backlog(), starts_at="2026-11-30T11:00:00.000Z")]))
    assert len(alerts.claims()) == 2  # fired again after it resolved: a new episode


def test_resolved_before_the_run_started_skips_the_claim(client) -> None:
    alerts, _ = stores(client)
    fired = alert(backlog())
    post(client, notification([fired]))
    post(client, notification([{**fired, "status": "resolved"}]))
    [claim] = alerts.claims()
    assert claim["status"] == "skipped" and claim["resolved_at"]


def test_lint_checks_alert_trigger_params(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        PLAYBOOK.format(name="bad")
        .replace('note: "{{ alert.annotations.summary }}"', 'nope: "{{ alert.labels.x }}"')
        .replace('queue: "{{ alert.labels.queue }}"', 'queue: "{{ params.queue }}"')
        .replace('labels: {severity: "page|critical"}', 'labels: {severity: "(unclosed"}'),
        encoding="utf-8",
    )
    problems = lint_text(f.read_text(encoding="utf-8"), str(f), default_registry())[1]
    text = "\n".join(p.message for p in problems)
    assert "unknown param 'nope'" in text
    assert "may read only alert.*" in text
    assert "bad regular expression" in text


def test_shipped_backlog_triage_takes_queue_and_dlq_from_a_backlog_alert() -> None:
    from runbook.gateway.alertmanager import parse_notification, runs_for
    from runbook.spec.loading import load_playbook
    from tests.conftest import ROOT

    pb = load_playbook(ROOT / "playbooks" / "backlog_triage.yaml", default_registry())
    good = alert({"alertname": "QueueBacklog", "queue": "orders"})
    hostile = alert({"alertname": "QueueBacklog", "queue": 'orders"} or vector(1) #'})
    other = alert({"alertname": "DiskFull", "queue": "orders"})
    runs = runs_for([pb], parse_notification(notification([good, hostile, other])))
    assert [(r.playbook, r.params) for r in runs] == [
        ("backlog-triage", {"queue": "orders", "dlq": "orders-dlq"})
    ]
