"""backlog-triage on BullMQ for the incidents that look alike from the counters (issue 14): a retry
storm, slow processing, a producer storm and a database lock - each made with the real ``bullmq``
package (Queue, Worker) and, for the lock, a real PostgreSQL session.

The RabbitMQ versions live in ``test_triage_incidents``; these pin that the BullMQ backend's
counters (the ``events`` stream: ``added``, ``active``, ``completed``, retries) lead the same rules
to the same verdicts. Each test asserts the verdict, its evidence in the posted finding, that no
quarantine or redrive ran, and that every job is accounted for afterwards: each completed exactly
once by the worker (``BullBench.processed``), none failed or moved."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import psycopg
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.e2e.conftest import PG_URL, Approver, run_playbook
from tests.e2e.test_triage_outages import MOVES, finding, nothing_moved
from tests.e2e.test_triage_systems import (  # noqa: F401  (fixtures)
    bull,
    bull_params,
    redis_available,
    sql,
)
from tests.support.bullmq_jobs import BullBench
from tests.support.waiting import wait_until


class Pace:
    """How long the worker's handler takes per attempt; set to 0 after the run so the rest drains
    quickly and every job can be counted."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def sleep(self) -> None:
        if self.seconds:
            await asyncio.sleep(self.seconds)


def all_completed(b: BullBench, ids: list[str], timeout: float = 120) -> None:
    """Every id completed exactly once by the worker; nothing failed, nothing left."""
    wait_until(lambda: b.counts()["completed"] == len(ids) or None, timeout, f"{len(ids)} completed")
    assert sorted(b.processed) == sorted(ids)
    assert b.failed_ids() == []
    assert b.counts() == {"wait": 0, "active": 0, "failed": 0, "completed": len(ids), "delayed": 0}


def test_bullmq_retry_storm_many_jobs_each_retried_once(e2e_env: Settings, bull: BullBench) -> None:  # noqa: F811
    # every job fails its first attempt and succeeds on the second. ``lifo`` puts a retried job back
    # at the head (as RabbitMQ's requeue does), so failures and completions interleave throughout
    ids = [f"r-{i}" for i in range(1000)]
    opts = {"attempts": 2, "lifo": True}
    bull.run(bull.queue.addBulk([{"name": "job", "data": {}, "opts": {"jobId": i, **opts}} for i in ids]))
    pace = Pace(0.03)
    failures: list[str] = []

    async def flaky(job: Any) -> None:
        await pace.sleep()
        if job.attemptsMade == 0:
            failures.append(job.id)
            raise RuntimeError("upstream 503")  # transient: the retry succeeds

    bull.worker(flaky)
    wait_until(
        lambda: len(failures) >= 5 and bull.counts()["completed"] >= 5 or None, 30, "retries and completions"
    )
    with Approver(e2e_env, "e2e-bv-storm", {}) as approver:
        result = run_playbook("backlog-triage", bull_params(bull), "e2e-bv-storm")
    pace.seconds = 0
    # what tells it from poison: many different jobs retried (no one job keeps failing) and work
    # still completes - so no suspect is named and nothing is quarantined
    assert result.verdict == "retry_storm", result.text()
    evidence = finding(result, "retry_storm")
    assert "of deliveries are redeliveries/retries while work still completes" in evidence, evidence
    progress = result.output("progress")
    assert progress["completed"] > 0 and progress["redelivered"] > 0, progress
    assert result.output("facts")["values"]["redeliver_ratio"] >= 0.3
    assert result.output("sample")["suspects"] == []
    nothing_moved(result, approver)
    assert result.statuses["retry_storm_advice"] == "succeeded"
    all_completed(bull, ids)
    assert len(failures) == len(set(failures)) == len(ids)  # each failed exactly once


def test_bullmq_slow_processing_healthy_worker_no_poison(e2e_env: Settings, bull: BullBench) -> None:  # noqa: F811
    ids = bull.add(300, prefix="s")
    pace = Pace(0.2)  # ~5 jobs/s, below min_ack_rate 10; never fails

    async def slow(job: Any) -> None:
        await pace.sleep()

    bull.worker(slow)
    wait_until(lambda: bull.counts()["completed"] >= 3 or None, 30, "work flowing")
    with Approver(e2e_env, "e2e-bv-slow", {}) as approver:
        result = run_playbook("backlog-triage", bull_params(bull), "e2e-bv-slow")
    pace.seconds = 0
    assert result.verdict == "slow_processing", result.text()
    evidence = finding(result, "slow_processing")
    assert "with no poison evidence" in evidence and "(< 10" in evidence, evidence
    facts = result.output("facts")["values"]
    assert 0 < facts["ack_rate"] < 10 and facts["redeliver_ratio"] == 0, facts
    assert result.output("sample")["suspects"] == [] and not result.output("sample")["indistinguishable"]
    nothing_moved(result, approver)  # no Kubernetes here: nothing to scale
    all_completed(bull, ids)


class Producer(threading.Thread):
    """Adds ``batch`` jobs every ``every`` seconds through the bench's Queue until stopped."""

    def __init__(self, b: BullBench, batch: int = 20, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.b, self.batch, self.every = b, batch, every
        self.stop = threading.Event()
        self.ids: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.ids += self.b.add(self.batch, prefix=f"p{n}")
            n += 1
            self.stop.wait(self.every)


def test_bullmq_producer_storm_worker_healthy(
    e2e_env: Settings,
    bull: BullBench,  # noqa: F811
    kube: KubeAPIServer,
) -> None:
    kube.add_deployment("ingest", "ingest-api", replicas=1, labels={"app": "ingest-api"})
    pace = Pace(0.04)

    async def healthy(job: Any) -> None:
        await pace.sleep()

    bull.worker(healthy, concurrency=2)  # ~40 jobs/s: above min_ack_rate, far below the add rate
    producer = Producer(bull)  # ~200 jobs/s
    producer.start()
    try:
        wait_until(lambda: bull.counts()["completed"] >= 20 or None, 30, "work flowing")
        with Approver(e2e_env, "e2e-bv-prod", {}) as approver:
            params = bull_params(bull, pause_method="annotation")
            result = run_playbook("backlog-triage", params, "e2e-bv-prod")
    finally:
        producer.stop.set()
        producer.join(30)
    pace.seconds = 0
    assert result.verdict == "producer_storm", result.text()
    evidence = finding(result, "producer_storm")
    assert "publishers at" in evidence and "consumers healthy" in evidence, evidence
    facts = result.output("facts")["values"]
    assert facts["storm_factor"] >= 2 and facts["ack_rate"] >= 10 and facts["redeliver_ratio"] == 0, facts
    assert result.output("sample")["suspects"] == []
    assert approver.steps() == ["pause_producer_annotation"]  # proposed (denied here)
    ran = {s: result.statuses.get(s) for s in MOVES if result.statuses.get(s) == "succeeded"}
    assert ran == {}, ran
    all_completed(bull, producer.ids, timeout=180)


def test_bullmq_database_lock_is_database_trouble(e2e_env: Settings, bull: BullBench) -> None:  # noqa: F811
    locked = f"e2e_bv_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE TABLE {locked} (id text PRIMARY KEY)")
    holder = psycopg.connect(PG_URL)  # a migration holding a lock the workers need
    holder.execute(f"LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE")
    holder_pid = holder.info.backend_pid
    ids = bull.add(30, prefix="d")

    async def write(job: Any) -> None:  # each job writes a row: blocked by the lock
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute(f"INSERT INTO {locked} VALUES (%s)", (job.id,))

    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        f" AND query LIKE 'INSERT INTO {locked} %' AND now() - query_start > interval '6 seconds'"
    )
    try:
        bull.worker(write)
        wait_until(lambda: bull.counts()["active"] == 1 or None, 30, "a job stuck on the lock")
        wait_until(lambda: sql(waiting)[0][0] == 1 or None, 60, "the job's INSERT waiting on the lock", 0.25)
        with Approver(e2e_env, "e2e-bv-db", {}) as approver:
            params = bull_params(bull, check_database=True, database="test")
            result = run_playbook("backlog-triage", params, "e2e-bv-db")
        assert bull.counts()["completed"] == 0  # the lock held for the whole run
        holder.rollback()  # the lock goes: the worker resumes
        all_completed(bull, ids)
        assert sorted(r[0] for r in sql(f"SELECT id FROM {locked}")) == sorted(ids)
    finally:
        holder.close()
        sql(f"DROP TABLE IF EXISTS {locked}")
    assert result.verdict == "database_trouble", result.text()
    evidence = finding(result, "database_trouble")
    assert evidence.startswith("PostgreSQL: ") and "blocked" in evidence, evidence
    assert any(f"root blocker pid {holder_pid}" in p for p in result.output("db")["problems"])
    nothing_moved(result, approver)  # no Kubernetes: no consumers to halve
