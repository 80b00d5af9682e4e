"""Queue crosses the threshold -> backlog-triage's first finding on the timeline, over the real pipeline.

RabbitMQ (rabbitmq_prometheus, queue stats sampled every 5 s) -> Prometheus (scrape and rule
evaluation every 2 s, rule ``ready > 50 for 10s``) -> Alertmanager (group_wait 1 s) -> the gateway ->
``runbook serve`` -> the shipped backlog-triage (served under a unique name). Per episode the time is
split into:

* ``exporter_and_scrape``: threshold crossed in the broker -> first Prometheus sample above it;
* ``prometheus_evaluation``: that sample -> the alert is firing (includes the rule's ``for: 10s``);
* ``alertmanager``: firing -> the gateway has the notification (group wait, delivery);
* ``runbook_share``: the gateway has it -> the run has started (intake, Prefect run, worker pick-up);
* ``triage``: run started -> first finding (the playbook's own steps, incl. its 15 s progress window).

Needs ``scripts/services.sh monitoring`` and the Prefect server. Prints ONE JSON line; ``--small``: one
episode.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runbook_devtools.kube_api import KubeAPIServer  # noqa: E402
from runbook_devtools.net import UvicornThread  # noqa: E402

from runbook.core.settings import Settings  # noqa: E402
from runbook.gateway.app import create_app  # noqa: E402
from runbook.store.alerts import AlertStore  # noqa: E402
from tests.e2e.test_alert_pipeline import (  # noqa: E402
    ALERTMANAGER_CONFIG,
    IDLE_ALERTMANAGER,
    RULE,
    THRESHOLD,
    served_backlog_triage,
)
from tests.support import rabbit  # noqa: E402
from tests.support.alertmanager_payloads import TOKEN  # noqa: E402
from tests.support.monitoring import PROMETHEUS, remove_rules, write_alertmanager, write_rules  # noqa: E402

INTERVALS = {
    "rabbitmq_stats_interval_s": 5,
    "prometheus_scrape_interval_s": 2,
    "prometheus_evaluation_interval_s": 2,
    "rule_for_s": 10,
    "alertmanager_group_wait_s": 1,
    "alertmanager_group_interval_s": 2,
}


def wait(pred, timeout: float, what: str, every: float = 0.25):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def raw_samples(selector: str) -> list[tuple[float, float]]:
    r = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": f"{selector}[10m]"}, timeout=10).json()
    out = []
    for series in r["data"]["result"]:
        out += [(float(t), float(v)) for t, v in series["values"]]
    return sorted(out)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def episode(ch, gw, alerts: AlertStore, base: Path, tag: str) -> dict[str, float]:
    queue = f"am-bench-{tag}"
    rabbit.declare(ch, queue, f"{queue}-dlq")
    rules = write_rules(base, f"bench-{tag}", RULE.format(unique=tag, queue=queue, threshold=THRESHOLD))
    try:
        time.sleep(3)  # the rule is loaded and has evaluated once below the threshold
        rabbit.publish_numbered(ch, queue, THRESHOLD + 30)
        crossed = time.time()
        claim = wait(
            lambda: [
                c for c in alerts.claims() if c["parameters"].get("queue") == queue and c["flow_run_id"]
            ],
            120,
            "the run",
        )[0]
        run_id = claim["flow_run_id"]

        def first(kind: str):  # type: ignore[no-untyped-def]
            return next((e for e in gw.timeline.events(run_id) if e.kind.value == kind), None)

        finding = wait(lambda: first("finding"), 180, "the first finding")
        started = first("run.started")
        scraped = next(
            t
            for t, v in raw_samples(f'rabbitmq_detailed_queue_messages_ready{{queue="{queue}"}}')
            if v > THRESHOLD
        )
        fired = raw_samples(f'ALERTS{{alertname="QueueBacklog",queue="{queue}",alertstate="firing"}}')[0][0]
        received = epoch(claim["created_at"])
        out = {
            "exporter_and_scrape": scraped - crossed,
            "prometheus_evaluation": fired - scraped,
            "alertmanager": received - fired,
            "runbook_share": started.time.timestamp() - received,
            "triage": finding.time.timestamp() - started.time.timestamp(),
            "total": finding.time.timestamp() - crossed,
        }
        ch.queue_purge(queue)
        wait(
            lambda: [e for e in gw.timeline.events(run_id) if e.actor == "alertmanager"], 120, "resolved note"
        )
        return out
    finally:
        remove_rules(rules)
        ch.queue_delete(queue)
        ch.queue_delete(f"{queue}-dlq")


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="one episode (CI)")
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args()
    n = 1 if args.small else args.episodes
    api = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    flags = httpx.get(f"{PROMETHEUS}/api/v1/status/flags", timeout=5).json()["data"]
    base = Path(flags["config.file"]).parent.parent
    tmp = Path(tempfile.mkdtemp(prefix="alert-bench-"))
    run_tag = uuid.uuid4().hex[:6]
    name = f"backlog-triage-bench-{run_tag}"
    folder = tmp / "playbooks"
    served_backlog_triage(folder, name)
    env = {
        **os.environ,
        "RUNBOOK_PLAYBOOKS": str(folder),
        "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp / 'runbook.db'}",
        "RUNBOOK_HOME": str(tmp / "home"),
        "PREFECT_API_URL": api,
        "DATABASE_URL": "postgresql://root@127.0.0.1:5432/test",
    }
    for k in ("SLACK_BOT_TOKEN", "PAGERDUTY_API_TOKEN", "KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(k, None)
    samples: list[dict[str, float]] = []
    with KubeAPIServer(rollout_delay=0.2, replace_delay=0.2) as kube:
        kube.add_node("node-a")
        kube.add_deployment("orchestrator", "orchestrator", replicas=0, labels={"app": "orchestrator"})
        env["KUBECONFIG"] = str(kube.write_kubeconfig(tmp / "kubeconfig"))
        settings = Settings.from_env({**env, "RUNBOOK_ALERTMANAGER_TOKEN": TOKEN})
        serve = subprocess.Popen(
            [sys.executable, "-m", "runbook.cli", "serve", "--limit", "4"],
            cwd=ROOT,
            env=env,
            stdout=(tmp / "serve.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        os.environ["KUBECONFIG"] = env["KUBECONFIG"]
        app = create_app(settings, prefect_api_url=api)
        conn = rabbit.connect()
        ch = conn.channel()
        try:
            wait(
                lambda: httpx.get(f"{api}/deployments/name/{name}/{name}", timeout=5).status_code == 200,
                180,
                f"served deployment (runbook serve's output: {tmp / 'serve.log'})",
            )
            with UvicornThread(app) as server:
                queues = f"am-bench-{run_tag}.*"
                write_alertmanager(
                    base, ALERTMANAGER_CONFIG.format(url=server.url, token=TOKEN, queues=queues)
                )
                alerts = AlertStore(app.state.gateway.db)
                for i in range(n):
                    samples.append(episode(ch, app.state.gateway, alerts, base, f"{run_tag}{i}"))
        finally:
            write_alertmanager(base, IDLE_ALERTMANAGER)
            conn.close()
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.kill()
            dep = httpx.get(f"{api}/deployments/name/{name}/{name}", timeout=5)
            if dep.status_code == 200:
                dep_id = dep.json()["id"]
                runs = httpx.post(
                    f"{api}/flow_runs/filter",
                    json={"flow_runs": {"deployment_id": {"any_": [dep_id]}}},
                    timeout=10,
                ).json()
                for run in runs:
                    if run["state_type"] in ("RUNNING", "PAUSED", "SCHEDULED", "PENDING"):
                        httpx.post(
                            f"{api}/flow_runs/{run['id']}/set_state",
                            json={"state": {"type": "CANCELLED"}, "force": True},
                            timeout=10,
                        )
                httpx.delete(f"{api}/deployments/{dep_id}", timeout=10)
    shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, object] = {"benchmark": "alert_to_finding", "episodes": n, "intervals": INTERVALS}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        out[f"{key}_s"] = {"p50": round(statistics.median(vals), 3), "p95": round(p95(vals), 3)}
    out["runbook_share_target_p95_s"] = 1.0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
