"""stuck-queue end to end: a queue nobody consumes, and executions stuck `running` in PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from runbook_devtools.drills.local import Consumer
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.e2e.conftest import (
    AMQP,
    Approver,
    ReplicaWiring,
    declare,
    delete_queues,
    pg_execute,
    publish,
    ready,
    run_playbook,
    settle,
)
from tests.support.pg_roles import writer_url

FAST = {"window": 5, "poll_interval": 0.5, "allow_purge": False}


def test_no_consumers_starts_them_after_approval(e2e_env: Settings, kube: KubeAPIServer) -> None:
    tag = uuid.uuid4().hex[:8]
    queue = f"e2e-stuck-{tag}"
    kube.add_deployment("orchestrator", "orchestrator", replicas=0, labels={"app": "orchestrator"})
    declare(queue)
    try:
        publish(queue, 40)
        settle(queue, 40, 0)
        with ReplicaWiring(kube, "orchestrator", "orchestrator", queue) as wiring:
            with Approver(e2e_env, f"e2e-{tag}", {"start_consumers": "approve"}) as approver:
                result = run_playbook(
                    "stuck-queue",
                    {**FAST, "queue": queue, "check_executions": False, "verify_timeout": 30},
                    f"e2e-{tag}",
                )
            assert result.status == "completed", result.text()
            assert result.verdict == "no_consumers"
            assert approver.steps() == ["start_consumers"]
            call = approver.request("start_consumers")
            assert call.action == "kubernetes.scale"
            assert (call.params["namespace"], call.params["deployment"], call.params["replicas"]) == (
                "orchestrator",
                "orchestrator",
                2,
            )
            assert kube.get("deployments", "orchestrator", "orchestrator")["spec"]["replicas"] == 2
            assert len(wiring.group.members) == 2
            assert result.statuses["verify"] == "succeeded"
            assert ready(queue) == 0
    finally:
        delete_queues(queue)


@pytest.fixture
def executions(monkeypatch: pytest.MonkeyPatch, e2e_env: Settings) -> Iterator[str]:
    """A unique executions table: 101/107 running and 115 requested for over an hour (stuck), 120
    completed long ago and 130 running but updated a minute ago (neither may be touched). The run
    connects as a least-privilege writer role: the PostgreSQL actions refuse a superuser."""
    monkeypatch.setenv("DATABASE_URL", writer_url())
    schema = f"e2e_{uuid.uuid4().hex[:8]}"
    table = f"{schema}.execution"
    pg_execute(f"CREATE SCHEMA {schema}")
    pg_execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, status text NOT NULL, created timestamptz NOT NULL,"
        " updated timestamptz NOT NULL, result jsonb)"
    )
    pg_execute(
        f"INSERT INTO {table} VALUES"
        " (101, 'running', now() - interval '2 hours', now() - interval '2 hours', NULL),"
        " (107, 'running', now() - interval '90 minutes', now() - interval '80 minutes', NULL),"
        " (115, 'requested', now() - interval '1 hour', now() - interval '1 hour', NULL),"
        " (120, 'completed', now() - interval '1 hour', now() - interval '50 minutes', '{}'),"
        " (130, 'running', now() - interval '1 minute', now() - interval '1 minute', NULL)"
    )
    yield table
    pg_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _rows(table: str) -> dict[int, str]:
    return dict(pg_execute(f"SELECT id, status FROM {table} ORDER BY id"))  # type: ignore[arg-type]


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_stuck_executions_force_failed_only_after_approval(
    e2e_env: Settings, kube: KubeAPIServer, executions: str, decision: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    queue = f"e2e-stuckx-{tag}"
    kube.add_deployment("orchestrator", "orchestrator", replicas=2, labels={"app": "orchestrator"})
    declare(queue)
    stuck = (
        f"SELECT count(*) FROM {executions} WHERE status IN ('running', 'requested')"
        " AND updated < now() - interval '10 minutes'"
    )
    # the worker waits for a free execution slot: it holds its message until the stuck rows clear
    worker = Consumer(AMQP, queue, "held", release=lambda: pg_execute(stuck)[0][0] == 0).start()
    try:
        publish(queue, 30)
        settle(queue, 30, 1)
        with Approver(e2e_env, f"e2e-{tag}", {"force_fail": decision}) as approver:
            result = run_playbook(
                "stuck-queue",
                {
                    **FAST,
                    "queue": queue,
                    "executions_table": executions,
                    "verify_timeout": 20 if decision == "approve" else 1,
                    "max_force_fail": 10,
                },
                f"e2e-{tag}",
            )
        assert result.verdict == "executions_stuck", result.text()
        assert approver.steps() == ["force_fail"]
        call = approver.request("force_fail")
        assert call.action == "postgres.execute"
        assert sorted(call.params["params"]["ids"]) == [101, 107, 115]
        assert call.params["max_rows"] == 3
        assert call.params["table"] == executions and call.params["operation"] == "UPDATE"
        assert call.params["sql"].startswith("UPDATE {table} SET status = 'failed'")
        assert "status IN ('running', 'requested')" in call.params["sql"]
        assert "exactly 3 rows" in call.description and call.params["sql"] in call.description
        assert set(call.approvers) == {"dba", "incident-commander"}
        rows = _rows(executions)
        if decision == "approve":
            assert result.status == "completed", result.text()
            assert result.output("force_fail")["rows_affected"] == 3
            assert rows == {101: "failed", 107: "failed", 115: "failed", 120: "completed", 130: "running"}
            assert result.statuses["verify"] == "succeeded"
        else:
            assert result.statuses["force_fail"] == "skipped"
            assert rows == {
                101: "running",
                107: "running",
                115: "requested",
                120: "completed",
                130: "running",
            }
            assert result.statuses["verify"] == "failed"  # still stuck: the run says so
            assert result.status == "failed"
    finally:
        worker.stop()
        delete_queues(queue)
