"""The gateway starts Prefect flow runs of ``<playbook>/<playbook>`` on the real Prefect server.

* an alert storm (500 signed events, 20 incidents, 8 concurrent senders, real uvicorn) -> 20 runs;
* Prefect unreachable -> still 202, and the run is created once Prefect answers again;
* a deployment still named ``runbook`` (an older ``runbook serve`` during an upgrade) gets the runs
  until ``<playbook>/<playbook>`` exists;
* ``runbook serve`` end to end: webhook -> first step on the timeline; schedules stay active after
  the serve process is stopped (``pause_on_shutdown=False``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from runbook.compiler.flow import build_flow
from runbook.core.settings import Settings
from runbook.gateway import starter
from runbook.gateway.app import create_app
from runbook.runtime import from_environment
from runbook.spec.loading import load_playbook
from tests.conftest import ROOT
from tests.gateway.conftest import SECRET
from tests.support.pagerduty_gateway import Forwarder, UvicornThread, write_playbook
from tests.support.pagerduty_payloads import encode, headers, incident_event
from tests.support.waiting import wait_until as wait_for


@pytest.fixture
def deployment(prefect_server: str, gw_settings: Settings, playbook_name: str, registry):  # type: ignore[no-untyped-def]
    """The test playbook registered as ``<name>/<name>`` (not served: runs stay Scheduled)."""
    dep_id = _register(gw_settings, playbook_name, registry, playbook_name)
    yield dep_id
    httpx.delete(f"{prefect_server}/deployments/{dep_id}", timeout=10)


def _register(gw_settings: Settings, playbook_name: str, registry, name: str) -> str:  # type: ignore[no-untyped-def]
    pb = load_playbook(gw_settings.playbooks / f"{playbook_name}.yaml", registry)
    return str(build_flow(pb, from_environment).to_deployment(name=name).apply())


def flow_runs(api: str, dep_id: str) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [dep_id]}}, "limit": 200}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


def test_storm_of_500_events_for_20_incidents_starts_20_runs(prefect_server, gw_settings, deployment) -> None:
    incidents = [f"PSTORM{i:02d}" for i in range(20)]
    bodies = []
    for i in range(500):
        inc = incidents[i % 20]
        kind = (
            "incident.triggered" if i < 400 else random.choice(["incident.triggered", "incident.escalated"])
        )
        payload = incident_event(kind, incident_id=inc, number=100 + i % 20, title=f"Queue stuck {inc}")
        bodies.append(encode(payload))
    app = create_app(gw_settings, prefect_api_url=prefect_server)
    with UvicornThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:

        def send(body: bytes) -> int:
            return http.post("/webhooks/pagerduty", content=body, headers=headers(body, SECRET)).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(send, bodies))
        assert codes == [202] * 500
        intake = app.state.gateway.intake
        wait_for(lambda: intake.pending_count() == 0, 60, "all claims started")
        runs = flow_runs(prefect_server, deployment)
    assert len(runs) == 20
    assert sorted(r["parameters"]["incident"]["id"] for r in runs) == incidents
    assert all(set(r["parameters"]) == {"incident", "launch"} for r in runs)
    assert len({c["flow_run_id"] for c in intake.claims()}) == 20


def test_prefect_down_still_202_and_run_starts_when_back(prefect_server, gw_settings, deployment) -> None:
    host, port = prefect_server.split("//")[1].split("/")[0].split(":")
    proxy = Forwarder((host, int(port)))  # refuses connections until up()
    app = create_app(gw_settings, prefect_api_url=f"http://127.0.0.1:{proxy.port}/api")
    intake = app.state.gateway.intake
    try:
        with UvicornThread(app) as server:
            body = encode(incident_event(incident_id="PDOWN01", title="stuck queue"))
            t0 = time.monotonic()
            r = httpx.post(f"{server.url}/webhooks/pagerduty", content=body, headers=headers(body, SECRET))
            assert r.status_code == 202 and time.monotonic() - t0 < 1.0
            wait_for(lambda: intake.claims("PDOWN01")[0]["attempts"] >= 2, 10, "failed attempts")
            claim = intake.claims("PDOWN01")[0]
            assert claim["status"] == "pending" and "ConnectError" in claim["last_error"]
            assert flow_runs(prefect_server, deployment) == []
            proxy.up()  # Prefect is back
            wait_for(lambda: intake.claims("PDOWN01")[0]["status"] == "started", 30, "run started")
            metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        proxy.close()
    [run] = flow_runs(prefect_server, deployment)
    assert run["parameters"]["incident"]["id"] == "PDOWN01"
    assert 'reason="prefect_unreachable"' in metrics


def test_a_deployment_still_named_runbook_gets_runs_until_the_playbook_named_one_exists(
    prefect_server, gw_settings, playbook_name, registry, monkeypatch, caplog
) -> None:
    """Upgrade order: a new gateway while an older ``runbook serve`` still serves ``<playbook>/runbook``."""
    monkeypatch.setattr(starter, "LEGACY_RECHECK_SECONDS", 0.0)  # look the name up again every time
    legacy = _register(gw_settings, playbook_name, registry, "runbook")
    new = None
    app = create_app(gw_settings, prefect_api_url=prefect_server)
    intake = app.state.gateway.intake
    caplog.set_level("INFO", logger="runbook.gateway")
    try:
        with UvicornThread(app) as server:

            def trigger(incident: str) -> None:
                body = encode(incident_event(incident_id=incident, title="stuck queue"))
                r = httpx.post(
                    f"{server.url}/webhooks/pagerduty", content=body, headers=headers(body, SECRET)
                )
                assert r.status_code == 202
                wait_for(lambda: intake.claims(incident)[0]["status"] == "started", 30, f"{incident} started")

            trigger("PLEGACY1")
            trigger("PLEGACY2")
            assert [r["parameters"]["incident"]["id"] for r in flow_runs(prefect_server, legacy)] in (
                ["PLEGACY1", "PLEGACY2"],
                ["PLEGACY2", "PLEGACY1"],
            )
            new = _register(gw_settings, playbook_name, registry, playbook_name)  # the new serve is up
            trigger("PNEWNAME")
        [run] = flow_runs(prefect_server, new)
        assert run["parameters"]["incident"]["id"] == "PNEWNAME"
        assert len(flow_runs(prefect_server, legacy)) == 2
        used = [r.getMessage() for r in caplog.records if r.getMessage().startswith("starting runs of")]
        assert used == [  # once per deployment used, not once per run
            f"starting runs of {playbook_name} as deployment {playbook_name}/runbook"
            f" ({playbook_name}/{playbook_name} not found: an older `runbook serve`?)",
            f"starting runs of {playbook_name} as deployment {playbook_name}/{playbook_name}",
        ]
    finally:
        for dep_id in (legacy, new):
            if dep_id:
                httpx.delete(f"{prefect_server}/deployments/{dep_id}", timeout=10)


def test_serve_end_to_end_first_step_and_schedules_survive_shutdown(
    prefect_server, gw_settings, playbook_name, tmp_path: Path
) -> None:
    write_playbook(
        gw_settings.playbooks,
        playbook_name,
        extra='  schedule:\n    - cron: "0 7 * * *"\n'
        "      timezone: Europe/Paris\n      params: {note: daily}",
    )
    (gw_settings.playbooks / f"{playbook_name}-other.yaml").unlink()
    env = {
        **os.environ,
        "RUNBOOK_PLAYBOOKS": str(gw_settings.playbooks),
        "RUNBOOK_DATABASE_URL": gw_settings.database_url,
        "PREFECT_API_URL": prefect_server,
        "RUNBOOK_HOME": str(tmp_path / "home"),
    }
    serve = subprocess.Popen(
        [sys.executable, "-m", "runbook.cli", "serve", "--limit", "4"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    app = create_app(gw_settings, prefect_api_url=prefect_server)
    try:
        dep = wait_for(lambda: _deployment(prefect_server, playbook_name), 60, "served deployment", 0.5)
        assert dep["schedules"][0]["schedule"]["cron"] == "0 7 * * *"
        assert dep["schedules"][0]["schedule"]["timezone"] == "Europe/Paris"
        assert dep["schedules"][0]["parameters"] == {"note": "daily"}
        time.sleep(1.5)  # let the runner and the fast lane finish their first poll
        with UvicornThread(app) as server:
            body = encode(incident_event(incident_id="PE2E001", number=77, title="bump in the queue"))
            t0 = time.time()
            r = httpx.post(f"{server.url}/webhooks/pagerduty", content=body, headers=headers(body, SECRET))
            assert r.status_code == 202
            intake, timeline = app.state.gateway.intake, app.state.gateway.timeline

            def first_step():  # type: ignore[no-untyped-def]
                claim = intake.claims("PE2E001")
                if not claim or not claim[0]["flow_run_id"]:
                    return None
                return [e for e in timeline.events(claim[0]["flow_run_id"]) if e.kind.value == "step.started"]

            [started] = wait_for(first_step, 30, "first step on the timeline")
        # how fast (the fast lane's p50/p95) is benchmarks/webhook_intake.py's figure, not a timed test
        assert started.time.timestamp() >= t0 - 1
        note = wait_for(
            lambda: [e for e in timeline.events(started.run_id) if e.kind.value == "note"], 10, "note"
        )
        assert note[0].summary == "triage PE2E001 #77: bump in the queue"
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            out, _ = serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            out, _ = serve.communicate()
    dep = _deployment(prefect_server, playbook_name)
    try:
        assert dep is not None and not dep["paused"], out[-2000:]
        assert all(s["active"] for s in dep["schedules"])
    finally:
        httpx.delete(f"{prefect_server}/deployments/{dep['id']}", timeout=10)


def _deployment(api: str, playbook: str) -> dict | None:
    r = httpx.get(f"{api}/deployments/name/{playbook}/{playbook}", timeout=5)
    return r.json() if r.status_code == 200 else None
