"""The real alert pipeline, nothing simulated: RabbitMQ's own exporter (rabbitmq_prometheus, :15692) ->
Prometheus 2.42 (a rule "ready messages of this queue above 50 for 10s") -> Alertmanager 0.25 (webhook
with a bearer token) -> the gateway -> a Prefect run of backlog-triage (served by ``runbook serve``)
for the queue named in the alert's labels. Draining the queue resolves the alert and the resolution
is noted on that run. ``scripts/services.sh monitoring`` starts Prometheus and Alertmanager.

The shipped backlog-triage is served under a unique name (so parallel sessions on one Prefect server
never share a deployment); everything else about it is the shipped playbook.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from runbook.gateway.app import create_app
from runbook.store.alerts import AlertStore
from tests.conftest import ROOT
from tests.support import rabbit
from tests.support.alertmanager_payloads import TOKEN, alert, notification
from tests.support.monitoring import (
    ALERTMANAGER,
    promql,
    remove_rules,
    require_monitoring,
    write_alertmanager,
    write_rules,
)
from tests.support.pagerduty_gateway import UvicornThread
from tests.support.waiting import wait_until

# the test rewrites Alertmanager's one config: one worker runs it
pytestmark = pytest.mark.xdist_group("alertmanager")

THRESHOLD = 50
RULE = """groups:
  - name: runbook-pipeline-{unique}
    rules:
      - alert: QueueBacklog
        expr: rabbitmq_detailed_queue_messages_ready{{queue="{queue}"}} > {threshold}
        for: 10s
        labels: {{severity: page, team: platform}}
        annotations: {{summary: "{{{{ $labels.queue }}}} has {{{{ $value }}}} ready messages"}}
"""
# Only this run's queues reach this gateway: alerts of earlier runs (their rules removed) stay in
# Alertmanager until they time out and must not start runs here.
ALERTMANAGER_CONFIG = """route:
  receiver: none
  group_by: [alertname, queue]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4s
  routes:
    - matchers: ['queue=~"{queues}"']
      receiver: runbook
receivers:
  - name: none
  - name: runbook
    webhook_configs:
      - url: {url}/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: {token}}}
"""
IDLE_ALERTMANAGER = "route: {receiver: none}\nreceivers: [{name: none}]\n"


def served_backlog_triage(folder: Path, name: str) -> Path:
    """The shipped playbook under ``name``, with an Alertmanager trigger if it has none yet."""
    doc = yaml.safe_load((ROOT / "playbooks" / "backlog_triage.yaml").read_text(encoding="utf-8"))
    doc["name"] = name
    doc.setdefault("triggers", {}).setdefault(
        "alertmanager",
        [
            {
                "alertname": "QueueBacklog",
                "params": {"queue": "{{ alert.labels.queue }}", "dlq": "{{ alert.labels.queue }}-dlq"},
            }
        ],
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _deployment(api: str, flow: str) -> dict | None:
    r = httpx.get(f"{api}/deployments/name/{flow}/{flow}", timeout=5)
    return r.json() if r.status_code == 200 else None


@pytest.fixture
def pipeline(e2e_env: Settings, kube: KubeAPIServer, prefect_server: str, tmp_path: Path, unique: str):
    base = require_monitoring()
    kube.add_deployment("orchestrator", "orchestrator", replicas=0, labels={"app": "orchestrator"})
    name = f"backlog-triage-am-{unique}"
    folder = tmp_path / "playbooks"
    served_backlog_triage(folder, name)
    settings = dataclasses.replace(e2e_env, playbooks=folder, alertmanager_token=TOKEN)
    env = {**os.environ, "RUNBOOK_PLAYBOOKS": str(folder), "PREFECT_API_URL": prefect_server}
    serve = subprocess.Popen(
        [sys.executable, "-m", "runbook.cli", "serve", "--limit", "4"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    queue = f"am-pipe-{unique}"
    conn = rabbit.connect()
    ch = conn.channel()
    rabbit.declare(ch, queue, f"{queue}-dlq")
    rules = None
    app = create_app(settings, prefect_api_url=prefect_server)
    try:
        wait_until(lambda: _deployment(prefect_server, name), 90, "served deployment", 0.5)
        with UvicornThread(app) as server:
            write_alertmanager(base, ALERTMANAGER_CONFIG.format(url=server.url, token=TOKEN, queues=queue))
            rules = write_rules(
                base, f"pipeline-{unique}", RULE.format(unique=unique, queue=queue, threshold=THRESHOLD)
            )
            yield {
                "app": app,
                "url": server.url,
                "queue": queue,
                "ch": ch,
                "playbook": name,
                "api": prefect_server,
            }
    finally:
        if rules is not None:
            remove_rules(rules)
        write_alertmanager(base, IDLE_ALERTMANAGER)
        ch.queue_delete(queue)
        ch.queue_delete(f"{queue}-dlq")
        conn.close()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.communicate()
        dep = _deployment(prefect_server, name)
        if dep:
            for run in httpx.post(
                f"{prefect_server}/flow_runs/filter",
                json={"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}},
                timeout=10,
            ).json():
                if run["state_type"] in ("RUNNING", "PAUSED", "SCHEDULED", "PENDING"):
                    httpx.post(
                        f"{prefect_server}/flow_runs/{run['id']}/set_state",
                        json={"state": {"type": "CANCELLED"}, "force": True},
                        timeout=10,
                    )
            httpx.delete(f"{prefect_server}/deployments/{dep['id']}", timeout=10)


def test_filling_a_queue_fires_a_real_alert_that_starts_backlog_triage_and_draining_resolves_it(
    pipeline,
) -> None:
    p: dict[str, Any] = pipeline
    gw = p["app"].state.gateway
    alerts = AlertStore(gw.db)
    # forged and missing tokens against the real server: 401, nothing stored
    body = notification([alert({"alertname": "QueueBacklog", "queue": p["queue"]})])
    for headers in ({"Authorization": "Bearer forged-token-1234"}, {}):
        assert httpx.post(f"{p['url']}/webhooks/alertmanager", json=body, headers=headers).status_code == 401
    assert alerts.claims() == []

    rabbit.publish_numbered(p["ch"], p["queue"], THRESHOLD + 30)
    filled = time.monotonic()
    [claim] = wait_until(lambda: alerts.claims(), 90, "the real alert to claim a run", 0.5)
    assert claim["playbook"] == p["playbook"]
    assert claim["parameters"]["queue"] == p["queue"]  # taken from the alert's labels
    assert set(claim["parameters"]) == {"queue", "dlq", "launch"}
    run_id = wait_until(
        lambda: next((c["flow_run_id"] for c in alerts.claims() if c["flow_run_id"]), None), 60, "flow run"
    )

    def findings() -> list:
        return [e for e in gw.timeline.events(run_id) if e.kind.value == "finding"]

    try:
        finding = wait_until(findings, 120, "the triage's first finding", 0.5)[0]
    except AssertionError as exc:
        lines = "\n".join(e.line() for e in gw.timeline.events(run_id))
        raise AssertionError(f"{exc}; the run's timeline:\n{lines}") from None
    started = [e for e in gw.timeline.events(run_id) if e.kind.value == "run.started"]
    assert started and started[0].details.get("trigger") == "alertmanager", started
    assert "Root cause:" in finding.summary and p["queue"] in str(finding.details) + finding.summary
    print(f"queue filled -> finding: {time.monotonic() - filled:.1f}s; {finding.summary}")

    # Alertmanager repeats the firing group every few seconds: still one run
    time.sleep(6)
    assert len(alerts.claims()) == 1

    p["ch"].queue_purge(p["queue"])
    note = wait_until(
        lambda: [
            e for e in gw.timeline.events(run_id) if e.actor == "alertmanager" and e.kind.value == "note"
        ],
        90,
        "the resolution noted on the run",
        0.5,
    )
    assert note[0].summary == "Alertmanager: alert QueueBacklog resolved"
    assert alerts.firing() == []
    assert not promql(f'ALERTS{{alertname="QueueBacklog",queue="{p["queue"]}",alertstate="firing"}}')
    assert httpx.get(f"{ALERTMANAGER}/-/ready", timeout=5).status_code == 200
