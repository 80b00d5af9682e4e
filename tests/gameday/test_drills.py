"""``runbook drill``: each fault's inject (the symptom is real on the local services), its wiring to
the Kubernetes stand-in (the right mitigation really acts), and its cleanup (nothing left behind);
then full drills through the CLI: found and fixed with ``--approve`` (exit 0), found but not fixed
without it (approvals denied, exit 1)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from runbook_devtools.drills.faults import FAULTS, Fault
from runbook_devtools.drills.kube_standin import KubeWorld

from runbook.actions import ActionContext, Connections, invoke
from runbook.cli import main
from runbook.core.settings import Settings
from runbook.runtime import cached_registry
from tests.actions.test_queue_bullmq import redis_available  # noqa: F401  (fixture)
from tests.gameday.conftest import wait_until

# The RabbitMQ drills share the queue-name prefix drill- and one asserts that none of its quarantine
# queues is left: those run on one worker (xdist_group "drill-queues"); the others run anywhere.
DRILL_QUEUES = pytest.mark.xdist_group("drill-queues")

MGMT = "http://127.0.0.1:15672/api"
GUEST = ("guest", "guest")


def queue_doc(name: str) -> dict[str, Any] | None:
    r = httpx.get(f"{MGMT}/queues/%2F/{name}", auth=GUEST, timeout=10)
    return r.json() if r.status_code == 200 else None


@pytest.fixture
def drill_settings(rabbitmq_available: None, postgres_available: None) -> Settings:
    return Settings.from_env({"DATABASE_URL": "postgresql://root@127.0.0.1:5432/test"})


@pytest.fixture
def injected(
    request: pytest.FixtureRequest, drill_settings: Settings, unique: str
) -> Iterator[tuple[Fault, KubeWorld]]:
    fault = FAULTS[request.param](unique[:8], drill_settings)
    kube = KubeWorld()
    try:
        fault.inject(kube)
        yield fault, kube
    finally:
        fault.cleanup()
    assert not fault.notes, fault.notes


def scale(kube: KubeWorld, replicas: int) -> None:
    kube.scale(
        {"namespace": "orchestrator", "deployment": "orchestrator", "replicas": replicas, "max_replicas": 10}
    )


@DRILL_QUEUES
@pytest.mark.parametrize("injected", ["backlog-poison"], indirect=True)
def test_backlog_poison(injected: tuple[Fault, KubeWorld]) -> None:
    fault, _ = injected
    doc = queue_doc(fault.queue)
    assert doc and doc["messages"] == 302 and doc["consumers"] == 1
    head = httpx.post(
        f"{MGMT}/queues/%2F/{fault.queue}/get",
        auth=GUEST,
        timeout=10,
        json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
    ).json()[0]
    assert head["properties"]["message_id"] == f"poison-{fault.tag}" and head["redelivered"]
    assert fault.fixed()[0] is False
    fault.cleanup()
    assert queue_doc(fault.queue) is None and queue_doc(f"{fault.queue}-quarantine") is None


@DRILL_QUEUES
@pytest.mark.parametrize("injected", ["no-consumers"], indirect=True)
def test_no_consumers(injected: tuple[Fault, KubeWorld]) -> None:
    fault, kube = injected
    assert fault.rabbit.counts(fault.queue) == (200, 0)
    assert kube.get_deployment({"namespace": "orchestrator", "deployment": "orchestrator"})["desired"] == 0
    scale(kube, 2)  # what the playbook's approved mitigation does: real consumers start
    assert fault.fixed() == (True, f"{fault.queue}: 0 ready, 2 consumers")
    fault.cleanup()
    assert queue_doc(fault.queue) is None


@pytest.mark.parametrize("injected", ["stuck-executions"], indirect=True)
def test_stuck_executions(injected: tuple[Fault, KubeWorld], drill_settings: Settings) -> None:
    import psycopg

    fault, _ = injected
    assert fault._stuck() == 3 and fault.rabbit.counts(fault.queue)[1] == 1
    assert fault.fixed()[0] is False
    with psycopg.connect(fault._db(), autocommit=True) as c:
        c.execute(f"UPDATE {fault.table} SET status = 'failed' WHERE status IN ('running', 'requested')")
    assert fault.fixed()[0] is True
    wait_until(lambda: fault.rabbit.counts(fault.queue)[0] == 0, 15, "held workers to resume once slots free")
    fault.cleanup()
    with psycopg.connect(fault._db(), autocommit=True) as c:
        schema = fault.table.split(".")[0]
        assert not c.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall()


@pytest.mark.parametrize("injected", ["pg-connection-exhaustion"], indirect=True)
def test_pg_connection_exhaustion(injected: tuple[Fault, KubeWorld]) -> None:
    import psycopg

    fault, kube = injected
    pg = fault.pg  # type: ignore[attr-defined]
    with pytest.raises(psycopg.OperationalError, match="connection slots|too many clients"):
        psycopg.connect(pg.url("drill"), connect_timeout=5).close()
    ctx = ActionContext(Connections(Settings.from_env({"DATABASE_URL": pg.url()})))
    out = invoke(cached_registry()["postgres.activity"], ctx, {"max_usage": 0.8})
    assert out.ok is False and out.usage > 0.8
    scale(kube, 2)  # halving the consumers releases their pools
    # a closed connection's backend leaves pg_stat_activity a moment later (longer under load)
    wait_until(lambda: fault.fixed()[0], 10, "the released connections to leave the server")
    fault.cleanup()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", pg.port), timeout=2).close()


@pytest.mark.parametrize("injected", ["kafka-broker-down"], indirect=True)
def test_kafka_broker_down(injected: tuple[Fault, KubeWorld]) -> None:
    fault, kube = injected
    ctx = ActionContext(Connections(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": fault.bootstraps})))
    health = invoke(cached_registry()["kafka.cluster_health"], ctx, {"expected_brokers": 3})
    assert health.missing_brokers == [2] and not health.ok
    kube.delete_pod({"namespace": "kafka", "pod": "kafka-2"})  # the StatefulSet "recreates" broker 2
    assert fault.fixed()[0] is True
    proc = fault.proc  # type: ignore[attr-defined]
    fault.cleanup()
    assert proc.poll() is not None


@pytest.mark.serial  # the drill's node joins the local broker
@pytest.mark.parametrize("injected", ["rabbit-node-down"], indirect=True)
def test_rabbit_node_down(injected: tuple[Fault, KubeWorld]) -> None:
    fault, kube = injected
    node = fault.node  # type: ignore[attr-defined]
    assert node.running() is False and fault.fixed()[0] is False
    pod = node.node.replace("rabbit@", "").split(".")[0]
    kube.delete_pod({"namespace": "rabbitmq", "pod": pod})
    assert node.running() is True and fault.fixed()[0] is True
    fault.cleanup()
    assert node.running() is None  # left the cluster; the main node is single again


def test_unknown_fault_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "backlog-triage", "--fault", "nope"]) == 1
    assert "known: backlog-poison" in capsys.readouterr().err


@DRILL_QUEUES
@pytest.mark.parametrize("approve", [True, False], ids=["approve", "observe-only"])
def test_full_drill_backlog_poison(
    approve: bool,
    prefect_server: str,
    drill_settings: Settings,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'runbook.db'}")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    args = ["drill", "backlog-triage", "--fault", "backlog-poison", "-p", "check_database=false"]
    code = main(args + (["--approve"] if approve else []))
    out = capsys.readouterr().out
    assert "found: yes — verdict poison_messages" in out
    if approve:
        assert code == 0 and "fixed: yes" in out and "approval: quarantine: approved" in out
    else:
        assert code == 1 and "fixed: NO" in out and "approval: quarantine: denied" in out
    assert not [
        q
        for q in httpx.get(f"{MGMT}/queues", auth=GUEST, timeout=10).json()
        if q["name"].startswith("drill-") and q["name"].endswith("-quarantine")
    ], "cleaned up"


@pytest.mark.parametrize(
    ("fault", "verdict", "approved"),
    [
        ("bullmq-poison", "poison_messages", "quarantine"),
        ("table-stuck", "poison_messages", "quarantine"),
        ("kafka-lag", "consumer_outage", "start_consumers"),
    ],
)
def test_full_drill_per_queue_system(
    fault: str,
    verdict: str,
    approved: str,
    prefect_server: str,
    drill_settings: Settings,
    redis_available: None,  # noqa: F811
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 14: a drill per queue system (params set ``system``); found, and fixed on the real
    system (BullMQ failed set, the DLQ table, the group's committed offsets) after approval."""
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", f"sqlite:///{tmp_path / 'runbook.db'}")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert FAULTS[fault]("x", drill_settings).params()["system"] in ("bullmq", "pg_table", "kafka")
    code = main(["drill", "backlog-triage", "--fault", fault, "--approve"])
    out = capsys.readouterr().out
    assert f"found: yes — verdict {verdict}" in out, out
    assert code == 0 and "fixed: yes" in out and f"approval: {approved}: approved" in out, out
