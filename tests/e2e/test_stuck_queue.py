"""stuck-queue end to end: a queue nobody consumes, and executions stuck `running` in PostgreSQL."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from runbook_devtools import systemd_box
from runbook_devtools.drills.local import Consumer
from runbook_devtools.kube_api import KubeAPIServer
from runbook_devtools.systemd_box import SystemdBox

from runbook.core.settings import Settings
from tests.actions.test_queue_bullmq import redis_available  # noqa: F401  (fixture)
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
    wait_until,
)
from tests.support.bullmq_jobs import BullBench
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
        # the seed's order: the workers are restarted first (denied here: not scripted), then the
        # stuck rows are counted again and only then is the force-fail proposed
        assert approver.steps() == ["restart_consumers", "force_fail"]
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
            assert result.statuses["progress_restored"] == "failed"
            assert result.status == "failed"
    finally:
        worker.stop()
        delete_queues(queue)


# -- Attune as a table queue (system pg_table): its own definition of stuck from queue_stats ----


@pytest.fixture
def attune(monkeypatch: pytest.MonkeyPatch, e2e_env: Settings) -> Iterator[str]:
    """A unique Attune-like schema: ``execution`` (3 stuck for over an hour: 201/202 running, 203
    requested; 210 finished; 220-229 fresh requests waiting behind them) and ``queue_stats``
    (action 12 holds work and was last updated 40 minutes ago: Attune's stuck; action 14 is fresh,
    action 16 stale but empty: neither counts). The run connects as the least-privilege writer."""
    monkeypatch.setenv("DATABASE_URL", writer_url())
    schema = f"e2e_attune_{uuid.uuid4().hex[:8]}"
    pg_execute(f"CREATE SCHEMA {schema}")
    pg_execute(
        f"CREATE TABLE {schema}.execution (id bigint PRIMARY KEY, action text NOT NULL, status text NOT NULL,"
        " created timestamptz NOT NULL, updated timestamptz NOT NULL, result jsonb)"
    )
    pg_execute(
        f"INSERT INTO {schema}.execution VALUES"
        " (201, 'core.http', 'running', now() - interval '2 hours', now() - interval '2 hours', NULL),"
        " (202, 'core.http', 'running', now() - interval '1 hour', now() - interval '1 hour', NULL),"
        " (203, 'core.http', 'requested', now() - interval '1 hour', now() - interval '50 minutes', NULL),"
        " (210, 'core.http', 'completed', now() - interval '3 hours', now() - interval '3 hours', '{}')"
    )
    pg_execute(
        f"INSERT INTO {schema}.execution SELECT g, 'core.http', 'requested', now(), now(), NULL"
        " FROM generate_series(220, 229) g"
    )
    pg_execute(
        f"CREATE TABLE {schema}.queue_stats (action_id bigint PRIMARY KEY, queue_length int,"
        " active_count int, max_concurrent int, oldest_enqueued_at timestamptz, last_updated timestamptz)"
    )
    pg_execute(
        f"INSERT INTO {schema}.queue_stats VALUES"
        " (12, 11, 2, 2, now() - interval '2 hours', now() - interval '40 minutes'),"
        " (14, 3, 1, 2, now(), now()), (16, 0, 0, 2, NULL, now() - interval '3 hours')"
    )
    yield schema
    pg_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class AttuneWorker:
    """Attune's worker, as a thread against the table: it finishes requested executions one by one
    (status completed, updated now) only while no execution is stuck - the concurrency slots the
    stuck ones hold are what it waits for."""

    def __init__(self, schema: str) -> None:
        import threading

        self.schema = schema
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)

    def _work(self) -> None:
        stuck = (
            f"SELECT count(*) FROM {self.schema}.execution WHERE status IN ('running', 'requested')"
            " AND updated < now() - interval '10 minutes'"
        )
        finish = (
            f"UPDATE {self.schema}.execution SET status = 'completed', updated = now() WHERE id ="
            f" (SELECT min(id) FROM {self.schema}.execution WHERE status = 'requested')"
        )
        while not self.stop_event.wait(0.1):
            if pg_execute(stuck)[0][0] == 0:
                pg_execute(finish)

    def __enter__(self) -> AttuneWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(5)


def _attune_params(schema: str, **more: object) -> dict[str, object]:
    return {
        "system": "pg_table",
        "queue": "attune-executions",
        "table_mapping": {"preset": "attune", "table": f"{schema}.execution"},
        "queue_stats_table": f"{schema}.queue_stats",
        "executions_table": f"{schema}.execution",
        "check_kubernetes": False,
        "window": 0.5,
        "poll_interval": 0.2,
        "verify_timeout": 5,
        "allow_purge": False,
        **more,
    }


def test_attune_table_queue_stuck_force_failed_by_id(e2e_env: Settings, attune: str) -> None:
    """system=pg_table on Attune's own tables: queue_stats says stuck (action 12), the executions
    table holds three stuck rows; after the DBA's approval exactly those are failed, and the worker
    then drains the waiting requests, which the run verifies."""
    tag = uuid.uuid4().hex[:8]
    with AttuneWorker(attune), Approver(e2e_env, f"e2e-{tag}", {"force_fail": "approve"}) as approver:
        result = run_playbook("stuck-queue", _attune_params(attune), f"e2e-{tag}")
    assert result.status == "completed", result.text()
    assert result.verdict == "executions_stuck"
    assert [r["action_id"] for r in result.output("attune_stats")["rows"]] == [12]
    assert approver.steps() == ["force_fail"]  # no Kubernetes, no units: nothing to restart
    call = approver.request("force_fail")
    assert sorted(call.params["params"]["ids"]) == [201, 202, 203] and call.params["max_rows"] == 3
    statuses = dict(pg_execute(f"SELECT id, status FROM {attune}.execution WHERE id IN (201, 202, 203, 210)"))
    assert statuses == {201: "failed", 202: "failed", 203: "failed", 210: "completed"}
    # the worker drains the ten waiting requests once the stuck ones are failed (the verify may see
    # them being finished, or already all done)
    assert result.output("verify")["result"]["verdict"] in ("progressing", "draining", "idle")
    wait_until(
        lambda: pg_execute(f"SELECT count(*) FROM {attune}.execution WHERE status = 'requested'")[0][0] == 0,
        10,
        "the worker to drain the waiting requests",
    )
    findings = " ".join(e.summary for e in result.events if e.kind.value == "finding")
    assert "Attune queue_stats: 1 stale rows" in findings
    assert "Not checked: Kubernetes" in findings


def test_attune_too_many_stuck_asks_no_approval_for_a_doomed_update(e2e_env: Settings, attune: str) -> None:
    """Three stuck executions but max_force_fail 2: the bounded UPDATE would roll back, so the
    run counts the rows first, says so, asks nobody, changes nothing and ends failed (still stuck)."""
    tag = uuid.uuid4().hex[:8]
    with Approver(e2e_env, f"e2e-{tag}", {}) as approver:
        result = run_playbook(
            "stuck-queue", _attune_params(attune, max_force_fail=2, verify_timeout=1), f"e2e-{tag}"
        )
    assert result.status == "failed", result.text()
    assert result.verdict == "executions_stuck"
    assert approver.steps() == []
    assert result.statuses["too_many_stuck"] == "succeeded" and result.statuses["force_fail"] == "skipped"
    assert result.output("stuck_now")["row_count"] == 3  # the bounded count: max_force_fail + 1
    rows = pg_execute(f"SELECT count(*) FROM {attune}.execution WHERE status = 'failed'")
    assert rows[0][0] == 0


# -- BullMQ (system bullmq): the same verdicts from Redis, nothing RabbitMQ-only proposed -------


@pytest.fixture
def bull(e2e_env: Settings, redis_available: None) -> Iterator[BullBench]:  # noqa: F811
    b = BullBench(f"e2e-stuck-{uuid.uuid4().hex[:8]}")
    yield b
    b.close()


def test_bullmq_worker_holding_its_job_is_consumers_hung(e2e_env: Settings, bull: BullBench) -> None:
    """A real BullMQ worker (the ``bullmq`` package) takes a job and never finishes it; 12 wait.
    system=bullmq, a team without Kubernetes or PostgreSQL: the run proves the queue stalled from
    Redis, says consumers_hung with the worker count and the job in flight, proposes nothing it
    cannot do on BullMQ (no purge), and ends failed because the queue still does not progress."""
    bull.add(13)

    async def handler(job: Any) -> None:
        await asyncio.sleep(3600)

    bull.worker(handler)
    wait_until(lambda: bull.counts()["active"] == 1 or None, 15, "the first job active")
    with Approver(e2e_env, f"e2e-{bull.name}", {}) as approver:
        result = run_playbook(
            "stuck-queue",
            {
                "system": "bullmq",
                "queue": bull.name,
                "check_kubernetes": False,
                "check_executions": False,
                "window": 0.5,
                "poll_interval": 0.2,
                "verify_timeout": 1,
            },
            f"e2e-{bull.name}",
        )
    assert result.verdict == "consumers_hung", result.text()
    assert "1 in flight" in result.output("classify")["evidence"]
    assert approver.steps() == []
    assert result.statuses["broker"] == "skipped" and result.statuses["purge_check"] == "skipped"
    assert result.status == "failed" and result.statuses["progress_restored"] == "failed"
    findings = " ".join(e.summary for e in result.events if e.kind.value == "finding")
    assert "Not checked: Kubernetes" in findings and "NO - still stuck" in findings
    assert bull.counts()["wait"] == 12  # read-only: nothing moved


# -- Attune on systemd: workers, then the executor, then the force-fail, on a real systemd -------


def _main_pid(box: SystemdBox, unit: str) -> int:
    out = subprocess.run(
        [*box.systemctl, "show", "-p", "MainPID", "--value", unit], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.xdist_group("systemd")  # the box's Debian tree boots once at a time (nspawn locks it)
def test_attune_restarts_worker_then_executor_then_force_fails(
    e2e_env: Settings, attune: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 002's order with a real systemd (Debian's, booted with systemd-nspawn; RUNBOOK_SYSTEMCTL
    reaches it): restarting the worker unit does not unstick the executions, nor does restarting the
    executor, so only then is the force-fail proposed - three approvals in that order, each unit
    really restarted (a new main pid), and the queue progresses after the force-fail."""
    missing = systemd_box.missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {systemd_box.INSTALL_HINT}")
    tag = uuid.uuid4().hex[:8]
    worker, executor = "attune-worker@1.service", "attune-executor.service"
    with SystemdBox() as box:
        monkeypatch.setenv("RUNBOOK_SYSTEMCTL", shlex.join(box.systemctl))
        before = {u: _main_pid(box, u) for u in (worker, executor)}
        script = {"restart_worker": "approve", "restart_executor": "approve", "force_fail": "approve"}
        with AttuneWorker(attune), Approver(e2e_env, f"e2e-{tag}", script) as approver:
            params = _attune_params(attune, worker_unit=worker, executor_unit=executor)
            result = run_playbook("stuck-queue", params, f"e2e-{tag}")
        after = {u: _main_pid(box, u) for u in (worker, executor)}
    assert result.status == "completed", result.text()
    assert result.verdict == "executions_stuck"
    assert approver.steps() == ["restart_worker", "restart_executor", "force_fail"]
    assert result.output("after_workers")["verdict"] == "stalled"
    assert result.output("after_executor")["verdict"] == "stalled"
    assert all(after[u] not in (0, before[u]) for u in (worker, executor)), (before, after)
    assert result.output("units")["active"] == 2
    statuses = dict(pg_execute(f"SELECT id, status FROM {attune}.execution WHERE id IN (201, 202, 203)"))
    assert set(statuses.values()) == {"failed"}
