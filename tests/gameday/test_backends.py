"""Backends failing mid-run: every step fails (or retries) with one clear line naming the backend and
the cause, within its timeout; ``finally`` still runs; nothing hangs (generous wall-time bounds).

RabbitMQ is stopped for real on a dedicated standalone node (rbfault, ports 5674/15674/25674) — the
shared node on 5672 is never touched. PostgreSQL refuses on a closed port and on a role whose
connection limit is used up. Kubernetes answers 500s and hangs (loopback API fault injection), Kafka
brokers are down (librdkafka mock), Slack answers 500/429 or is down (loopback), PagerDuty answers
5xx or is unreachable (``responses``)."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import responses
from runbook_devtools.drills.rabbit_node import RabbitNode

from runbook.core.settings import Settings
from runbook.store.timeline import TimelineStore
from tests.gameday.conftest import wait_until
from tests.gameday.helpers import run_text
from tests.support.kafka_mock import MockKafkaCluster
from tests.support.kube_api import KubeAPIServer
from tests.support.slack_api import SlackAPI

FINALLY = "finally:\n  - id: wrapup\n    action: core.set\n    with: {values: {done: true}}\n"


def assert_finally_ran(ran) -> None:  # type: ignore[no-untyped-def]
    assert ran.status("wrapup") == "step.succeeded"
    assert ran.events[-1].kind == "run.finished"


@pytest.fixture(scope="module")
def fault_node() -> Iterator[RabbitNode]:
    node = RabbitNode("rbfault", 5674, 25674, 15674, clustered=False, base=Path("/tmp/runbook-rbfault"))
    node.start()
    yield node
    node.remove()


def test_rabbitmq_node_stopped_mid_run(
    fault_node: RabbitNode, settings: Settings, store: TimelineStore, tmp_path: Path
) -> None:
    q = f"gd-{uuid.uuid4().hex[:8]}"
    httpx.put(
        f"http://127.0.0.1:15674/api/queues/%2F/{q}",
        json={"durable": True},
        auth=("guest", "guest"),
        timeout=10,
    ).raise_for_status()
    s = dataclasses.replace(
        settings, rabbitmq_url=fault_node.amqp_url, rabbitmq_management_url=fault_node.management_url
    )
    hold = tmp_path / "hold"
    hold.touch()
    text = f"""steps:
  - id: before
    action: rabbitmq.queue_stats
    with: {{queue: {q}}}
  - id: pause
    action: gameday.step
    with: {{log: "{tmp_path / "log"}", label: pause, hold: "{hold}"}}
  - id: stats
    action: rabbitmq.queue_stats
    with: {{queue: {q}}}
    timeout: 15s
    on_failure: continue
  - id: canary
    action: rabbitmq.publish_canary
    with: {{queue: {q}}}
    timeout: 15s
{FINALLY}"""
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(ran=run_text(text, s, store, run_id=q)), daemon=True)
    t.start()
    wait_until(lambda: (tmp_path / "log").exists(), what="the run to reach the pause")
    subprocess.run(
        ["rabbitmqctl", "-n", fault_node.node, "stop"], check=True, capture_output=True, timeout=60
    )
    hold.unlink()
    t.join(60)
    assert not t.is_alive(), "the run hung after RabbitMQ stopped"
    ran = box["ran"]
    assert ran.status("before") == "step.succeeded"
    for step in ("stats", "canary"):
        msg = ran.failed(step)
        assert "rabbitmq" in msg.lower() and ("refused" in msg.lower() or "unreachable" in msg.lower()), msg
    assert ran.outcome.status == "failed"
    assert_finally_ran(ran)
    assert ran.seconds < 45


def test_postgres_refusing_connections(settings: Settings, store: TimelineStore) -> None:
    s = dataclasses.replace(settings, database_inspect_url="postgresql://root@127.0.0.1:1/test")
    ran = run_text(
        f"steps:\n  - id: db\n    action: postgres.activity\n    timeout: 20s\n{FINALLY}",
        s,
        store,
        run_id=f"pg-{uuid.uuid4().hex[:6]}",
    )
    msg = ran.failed("db")
    assert "postgres" in msg.lower() and "refused" in msg.lower(), msg
    assert_finally_ran(ran)
    assert ran.seconds < 20


def test_postgres_connection_limit_used_up(
    postgres_available: None, settings: Settings, store: TimelineStore
) -> None:
    """A real 'too many connections' from the shared server, on a throwaway role limited to 2."""
    import psycopg

    role = f"rb_gd_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("postgresql://root@127.0.0.1:5432/test", autocommit=True)
    admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
    url = f"postgresql://{role}@127.0.0.1:5432/test"
    held = [psycopg.connect(url) for _ in range(2)]
    try:
        s = dataclasses.replace(settings, database_inspect_url=url)
        text = (
            "steps:\n  - id: q\n    action: postgres.query\n    with: {sql: 'SELECT 1'}\n"
            f"    retries: 1\n    retry_delay: 100ms\n{FINALLY}"
        )
        ran = run_text(text, s, store, run_id=f"pgx-{uuid.uuid4().hex[:6]}")
        msg = ran.failed("q")
        assert "postgres" in msg.lower() and "too many connections" in msg.lower(), msg
        retried = [e for e in ran.events if e.kind == "step.failed" and e.details.get("will_retry")]
        assert len(retried) == 1 and "retrying" in retried[0].summary
        assert_finally_ran(ran)
        assert ran.seconds < 20
    finally:
        for c in held:
            c.close()
        admin.execute(f"DROP ROLE {role}")
        admin.close()


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, str]]:
    with KubeAPIServer(rollout_delay=0.1, replace_delay=0.1) as server:
        server.seed_demo()
        yield server, str(server.write_kubeconfig(tmp_path / "kubeconfig"))


def test_kubernetes_answering_500(kube, settings: Settings, store: TimelineStore) -> None:  # type: ignore[no-untyped-def]
    server, cfg = kube
    server.inject_fault(count=100, status=500, message="etcdserver: leader changed")
    s = dataclasses.replace(settings, kubeconfig=cfg)
    text = (
        "steps:\n  - id: dep\n    action: kubernetes.get_deployment\n"
        "    with: {namespace: orchestrator, deployment: orchestrator}\n"
        f"    timeout: 20s\n    retries: 1\n    retry_delay: 100ms\n{FINALLY}"
    )
    ran = run_text(text, s, store, run_id=f"k500-{uuid.uuid4().hex[:6]}")
    msg = ran.failed("dep")
    assert "kubernetes" in msg.lower() and "500" in msg, msg
    assert_finally_ran(ran)
    assert ran.seconds < 30


def test_kubernetes_api_hanging_times_out(kube, settings: Settings, store: TimelineStore) -> None:  # type: ignore[no-untyped-def]
    server, cfg = kube
    server.inject_fault(count=100, hang=60)
    s = dataclasses.replace(settings, kubeconfig=cfg)
    text = (
        "steps:\n  - id: pods\n    action: kubernetes.list_pods\n    with: {namespace: orchestrator}\n"
        f"    timeout: 3s\n{FINALLY}"
    )
    ran = run_text(text, s, store, run_id=f"khang-{uuid.uuid4().hex[:6]}")
    msg = ran.failed("pods")
    assert "timed out" in msg.lower() or "timeout" in msg.lower(), msg
    assert_finally_ran(ran)
    assert ran.seconds < 15


def test_kafka_brokers_down(settings: Settings, store: TimelineStore) -> None:
    with MockKafkaCluster(brokers=3, topics={"plans": 3}) as kafka:
        s = dataclasses.replace(settings, kafka_bootstrap_servers=kafka.bootstraps)
        for b in kafka.broker_ids():
            kafka.broker_set_down(b)
        text = (
            "steps:\n  - id: health\n    action: kafka.cluster_health\n    timeout: 4s\n"
            "    on_failure: continue\n  - id: lag\n    action: kafka.consumer_lag\n"
            f"    with: {{group: g1}}\n    timeout: 4s\n{FINALLY}"
        )
        ran = run_text(text, s, store, run_id=f"kdown-{uuid.uuid4().hex[:6]}")
    for step in ("health", "lag"):
        msg = ran.failed(step)
        assert "kafka" in msg.lower(), msg
    assert_finally_ran(ran)
    assert ran.seconds < 30


@pytest.mark.parametrize("mode", ["500", "429", "down"])
def test_slack_failing_never_slows_or_fails_a_run(
    mode: str, settings: Settings, store: TimelineStore
) -> None:
    from runbook.slack.sink import flush_outbox
    from runbook.store.slack import SlackStore

    api = SlackAPI().start()
    try:
        s = dataclasses.replace(
            settings, slack_bot_token=api.token, slack_api_url=api.url, slack_channel="C0GAMEDAY"
        )
        if mode == "down":
            api.down()
        else:
            api.fail_next(200, status=int(mode), retry_after=1 if mode == "429" else None)
        run_id = f"slack{mode}-{uuid.uuid4().hex[:6]}"
        ran = run_text(
            f"steps:\n  - id: a\n    action: core.set\n    with: {{values: {{x: 1}}}}\n{FINALLY}",
            s,
            store,
            run_id=run_id,
            sinks=True,
        )
        assert ran.outcome.status == "completed" and ran.seconds < 15
        assert_finally_ran(ran)
        assert SlackStore(store.db).outbox_counts(run_id).get("unsent", 0) > 0  # kept, not lost
        api.up()
        with api.lock:
            api.failures.clear()
        wait_until(
            lambda: (
                (flush_outbox(s, store) or True)
                and SlackStore(store.db).outbox_counts(run_id).get("unsent", 0) == 0
            ),
            30,
            "the outbox",
        )
        assert any("run completed" in t or "Game day" in t for t in api.texts())
    finally:
        api.down()


@pytest.mark.parametrize("failure", ["503", "connection"])
def test_pagerduty_down(failure: str, settings: Settings, store: TimelineStore) -> None:
    s = dataclasses.replace(
        settings, pagerduty_api_token="u+pd-gameday-token", pagerduty_from_email="ops@example.com"
    )
    text = f"""steps:
  - id: note
    action: pagerduty.add_note
    with: {{incident_id: PT4KHLK, content: "runbook gameday"}}
    timeout: 20s
    on_failure: continue
{FINALLY}"""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
        url = "https://api.pagerduty.com/incidents/PT4KHLK/notes"
        if failure == "503":
            rs.add(responses.POST, url, status=503, json={"error": {"message": "down"}})
        else:
            rs.add(responses.POST, url, body=requests.ConnectionError("connection refused"))
        started = time.monotonic()
        ran = run_text(text, s, store, run_id=f"pd{failure}-{uuid.uuid4().hex[:6]}")
    msg = ran.failed("note")
    assert "pagerduty" in msg.lower() and ("503" in msg or "unreachable" in msg.lower()), msg
    assert ran.outcome.status == "completed"  # on_failure: continue
    assert_finally_ran(ran)
    assert time.monotonic() - started < 20
