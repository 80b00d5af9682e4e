"""End-to-end scenarios: the shipped playbooks against the real services, through the real engine,
the real Prefect flow (``build_flow``), the real approval path and real backends.

Why: rehearsals prove a playbook's logic with recorded results; only a run against the real broker,
database and (loopback) Kubernetes API proves that the actions, the gates and the verdict rules meet
the real symptoms. Each scenario seeds the actual fault, answers approvals the way an operator
would (``runbook approve`` as an approver listed in a ``RUNBOOK_APPROVERS`` file), and checks the
system afterwards — not the run's own report.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pika
import pytest
from runbook_devtools.approver import ScriptedApprover, scripted
from runbook_devtools.drills.local import Consumers
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.events import Event
from runbook.core.settings import Settings
from runbook.store.launches import Launch, launched_here
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore
from tests.support.approvers import approvers_yaml
from tests.support.waiting import wait_until

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
MGMT = "http://127.0.0.1:15672"
PG_URL = "postgresql://root@127.0.0.1:5432/test"
PEOPLE = {"incident-commander": ["ic-alice"], "queue-owner": ["qo-bob"], "dba": ["dba-dana"]}


@pytest.fixture
def e2e_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rabbitmq_available: None,
    postgres_available: None,
    prefect_server: str,
) -> Settings:
    """The environment a run reads (Settings.from_env): a private SQLite store and RUNBOOK_HOME, an
    approvers file, the local PostgreSQL to inspect, and no real Slack or PagerDuty."""
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(
        approvers_yaml(PEOPLE),
        encoding="utf-8",
    )
    for k in ("SLACK_BOT_TOKEN", "RUNBOOK_SLACK_API_URL", "RUNBOOK_SLACK_CHANNEL", "PAGERDUTY_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'runbook.db'}")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNBOOK_APPROVERS", str(approvers))
    monkeypatch.setenv("DATABASE_URL", PG_URL)
    monkeypatch.setenv("RUNBOOK_HEARTBEAT_SECONDS", "2")
    return Settings.from_env()


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeAPIServer]:
    """The loopback Kubernetes API with two schedulable nodes (pods need one to become ready); the
    run's client finds it through KUBECONFIG."""
    with KubeAPIServer(rollout_delay=0.2, replace_delay=0.2) as server:
        server.add_node("node-a")
        server.add_node("node-b")
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


# -- approvals through the CLI channel ----------------------------------------------------------


class Approver(ScriptedApprover):
    """Answers a run's approval requests on the CLI channel, each person voting as their own
    operating-system user (``unix:<person>``) through the real decision service, as scripted per
    step: ``"approve"``, ``"deny"``, or a list of people. (How the CLI finds the OS user is tested
    in tests/approvals; here several people must vote from one test process.)

    Every request is kept (with its rendered params) so a test can assert what was proposed.
    Steps not in the script are denied: an unexpected gated step must never pass silently."""

    def __init__(self, settings: Settings, requested_by: str, script: dict[str, Any]) -> None:
        super().__init__(settings, requested_by, scripted(script, PEOPLE, reason="e2e"), name="e2e-approver")
        self.script = script


# -- running a shipped playbook through Prefect -------------------------------------------------


@dataclass
class RunResult:
    run_id: str
    status: str
    events: list[Event]
    statuses: dict[str, str]

    def output(self, step_id: str) -> dict[str, Any]:
        for e in self.events:
            if e.kind.value == "step.succeeded" and e.step_id == step_id:
                return dict(e.details.get("output") or {})
        raise AssertionError(f"step {step_id} did not succeed: {self.statuses.get(step_id)}")

    @property
    def verdict(self) -> str | None:
        try:
            return self.output("classify").get("verdict")
        except AssertionError:
            return None

    def text(self) -> str:
        return "\n".join(e.line() for e in self.events)


def run_playbook(playbook: str, params: dict[str, Any], requested_by: str) -> RunResult:
    """Run a shipped playbook as its Prefect flow (real engine, real gate, real registry)."""
    from runbook.compiler.flow import build_flow
    from runbook.compiler.params import coerce_params
    from runbook.runtime import cached_registry, from_environment
    from runbook.spec.loading import find_playbook

    settings = Settings.from_env()
    pb = find_playbook(playbook, Path(__file__).resolve().parents[2] / "playbooks", cached_registry())
    with launched_here(Launch("e2e", f"unix:{requested_by}")):
        state = build_flow(pb, from_environment)(**coerce_params(pb, params), return_state=True)
    run_id = str(state.state_details.flow_run_id)
    store = TimelineStore(open_database(settings.database_url))
    run = store.get_run(run_id) or {}
    events = store.events(run_id)
    finished = [e for e in events if e.kind.value == "run.finished"]
    statuses = dict(finished[-1].details.get("steps") or {}) if finished else {}
    return RunResult(run_id, str(run.get("status")), events, statuses)


# -- RabbitMQ and PostgreSQL helpers ------------------------------------------------------------


def mgmt(method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{MGMT}{path}", auth=("guest", "guest"), timeout=10, **kw)


def connect() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(AMQP))


def declare(*queues: str, arguments: dict[str, Any] | None = None) -> None:
    conn = connect()
    try:
        ch = conn.channel()
        for q in queues:
            ch.queue_declare(q, durable=True, arguments=arguments)
    finally:
        conn.close()


def delete_queues(*queues: str) -> None:
    for q in queues:
        mgmt("DELETE", f"/api/queues/%2F/{quote(q, safe='')}")


def publish(queue: str, n: int, *, prefix: str = "job", headers: dict[str, Any] | None = None) -> None:
    conn = connect()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(n):
            ch.basic_publish(
                "",
                queue,
                b"{}",
                pika.BasicProperties(delivery_mode=2, message_id=f"{prefix}-{i}", headers=headers),
            )
    finally:
        conn.close()


def ready(queue: str) -> int:
    """Ready messages, exact (passive declare), no management-stats lag."""
    conn = connect()
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def settle(queue: str, messages: int, consumers: int, timeout: float = 20.0) -> None:
    """Wait until the management API (5 s samples) shows what was seeded: the playbook reads it."""

    def ok() -> bool:
        doc = mgmt("GET", f"/api/queues/%2F/{quote(queue, safe='')}").json()
        return doc.get("messages") == messages and doc.get("consumers") == consumers

    wait_until(ok, timeout, f"management stats of {queue}")


class ReplicaWiring:
    """Real consumers on a queue that follow a loopback deployment's ``spec.replicas``: what a
    cluster's controller would do, so a scale approved in the run really changes the queue."""

    def __init__(self, kube: KubeAPIServer, namespace: str, name: str, queue: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.group = Consumers(AMQP, queue, "healthy")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="replica-wiring", daemon=True)

    def __enter__(self) -> ReplicaWiring:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.group.stop()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            obj = self.kube.get("deployments", self.namespace, self.name)
            if obj is not None:
                self.group.scale(int(obj["spec"].get("replicas") or 0))


def pg_execute(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else []
