"""backlog-triage on the StarForge table queue (``system: pg_table``) for the incidents that
``test_triage_incidents`` makes on RabbitMQ: a retry storm, slow processing, a producer storm and a
database lock. Rows are made and worked with psycopg by a StarForge-style worker (claim the due
pending row with SKIP LOCKED, mark it running and count the attempt, then done or back to pending
with the error).

Each test asserts the verdict, its evidence in the posted finding, that no quarantine or redrive
ran, and that every row is accounted for afterwards (done or still pending, none lost, none in the
DLQ table). Why these: on a table queue the counters come from the rows themselves (done rows,
attempts, rows inserted), so each verdict's numbers must come out of them as they do on a broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.e2e.conftest import PG_URL, Approver, run_playbook
from tests.e2e.test_triage_outages import MOVES, finding, nothing_moved, table_params
from tests.e2e.test_triage_systems import TableWorker, sql, table  # noqa: F401  (table: fixture)
from tests.support.waiting import wait_until

Handler = Callable[[psycopg.Connection[Any], str, int], str]  # (conn, row id, attempts) -> done | retry


class JobWorker(TableWorker):
    """Claims the due pending row (oldest ``run_after`` first, SKIP LOCKED), marks it running and
    counts the attempt, runs ``handle`` and marks the row done, or, on ``"retry"``, puts it back to
    pending with ``last_error`` (its ``run_after`` unchanged: it is retried next). Done ids are kept."""

    def __init__(self, schema: str, handle: Handler) -> None:
        super().__init__(schema)
        self.handle = handle
        self.done: list[str] = []
        self.retried: list[str] = []

    def run(self) -> None:
        q = f"{self.schema}.queue_jobs"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    f"UPDATE {q} SET status = 'running', attempts = attempts + 1, updated_at = now()"
                    f" WHERE id = (SELECT id FROM {q} WHERE status = 'pending' AND run_after <= now()"
                    " ORDER BY run_after, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    " RETURNING id::text, attempts"
                ).fetchone()
                if row is None:
                    time.sleep(0.05)
                    continue
                rid, attempts = row
                if self.handle(conn, rid, attempts) == "retry":
                    conn.execute(
                        f"UPDATE {q} SET status = 'pending', updated_at = now(),"
                        " last_error = '\"TimeoutError: upstream\"'::jsonb WHERE id = %s",
                        (rid,),
                    )
                    self.retried.append(rid)
                else:
                    conn.execute(f"UPDATE {q} SET status = 'done', updated_at = now() WHERE id = %s", (rid,))
                    self.done.append(rid)

    def __enter__(self) -> JobWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(30)
        assert not self.is_alive(), "worker did not stop"


def slow(seconds: float) -> Handler:
    def handle(_conn: psycopg.Connection[Any], _rid: str, _attempts: int) -> str:
        time.sleep(seconds)
        return "done"

    return handle


def insert(schema: str, n: int) -> list[str]:
    return [
        r[0]
        for r in sql(
            f"INSERT INTO {schema}.queue_jobs (type) SELECT 'process_snapshot' FROM generate_series(1, {n})"
            " RETURNING id::text"
        )
    ]


def count(schema: str, where: str) -> int:
    return int(sql(f"SELECT count(*) FROM {schema}.queue_jobs WHERE {where}")[0][0])


def accounted(schema: str, worker: JobWorker, ids: list[str]) -> None:
    """Every row exactly once: done by the worker or still pending (the worker has stopped); none
    failed, quarantined or moved to the DLQ table."""
    got = dict(sql(f"SELECT id::text, status FROM {schema}.queue_jobs"))
    assert sorted(got) == sorted(ids), (len(got), len(ids))
    assert set(got.values()) <= {"done", "pending"}, set(got.values())
    assert sorted(i for i, s in got.items() if s == "done") == sorted(worker.done)
    assert len(set(worker.done)) == len(worker.done)  # none completed twice
    assert sql(f"SELECT count(*) FROM {schema}.queue_jobs_dlq") == [(0,)]


def test_table_retry_storm_many_rows_each_retried_once(e2e_env: Settings, table: str) -> None:  # noqa: F811
    ids = insert(table, 3000)

    def flaky(_conn: psycopg.Connection[Any], _rid: str, attempts: int) -> str:
        if attempts == 1:  # every row fails its first try, then succeeds
            return "retry"
        time.sleep(0.03)
        return "done"

    with JobWorker(table, flaky) as worker:
        wait_until(lambda: len(worker.done) >= 10 or None, 60, "rows failing once, then completing")
        with Approver(e2e_env, "e2e-tv-storm", {}) as approver:
            result = run_playbook("backlog-triage", table_params(table), "e2e-tv-storm")
    # what tells it from poison: many different rows retried (no one row keeps failing) and work still
    # completes - so no suspect is named and nothing is quarantined
    assert result.verdict == "retry_storm", result.text()
    evidence = finding(result, "retry_storm")
    assert "of deliveries are redeliveries/retries while work still completes" in evidence, evidence
    facts = result.output("facts")["values"]
    assert facts["completed"] > 0 and facts["redeliver_ratio"] >= 0.3, facts
    assert result.output("sample")["suspects"] == []
    nothing_moved(result, approver)
    assert result.statuses["retry_storm_advice"] == "succeeded"
    accounted(table, worker, ids)
    assert count(table, "status = 'done' AND (attempts <> 2 OR last_error IS NULL)") == 0  # failed once each


def test_table_slow_processing_healthy_worker_no_poison(e2e_env: Settings, table: str) -> None:  # noqa: F811
    ids = insert(table, 600)  # 2 minutes of work: still a backlog however late the run looks
    with JobWorker(table, slow(0.2)) as worker:  # ~5 rows/s, below min_ack_rate 10; never fails
        wait_until(lambda: len(worker.done) >= 3 or None, 60, "rows completing")
        with Approver(e2e_env, "e2e-tv-slow", {}) as approver:
            result = run_playbook("backlog-triage", table_params(table), "e2e-tv-slow")
    assert result.verdict == "slow_processing", result.text()
    evidence = finding(result, "slow_processing")
    assert "with no poison evidence" in evidence and "(< 10" in evidence, evidence
    facts = result.output("facts")["values"]
    assert facts["completed"] > 0 and facts["redeliver_ratio"] == 0, facts  # a healthy worker retries nothing
    sample = result.output("sample")
    assert sample["suspects"] == [] and not sample["indistinguishable"], sample
    nothing_moved(result, approver)  # no Kubernetes here: nothing to scale
    accounted(table, worker, ids)
    assert worker.retried == [] and count(table, "last_error IS NOT NULL") == 0


class Producer(threading.Thread):
    """Inserts about ``per_second`` rows a second (in batches) until stopped; keeps the ids."""

    def __init__(self, schema: str, per_second: int) -> None:
        super().__init__(daemon=True)
        self.schema, self.batch = schema, max(1, per_second // 10)
        self.stop = threading.Event()
        self.ids: list[str] = []

    def run(self) -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                cur = conn.execute(
                    f"INSERT INTO {self.schema}.queue_jobs (type) SELECT 'ingest'"
                    " FROM generate_series(1, %s) RETURNING id::text",
                    (self.batch,),
                )
                self.ids.extend(r[0] for r in cur.fetchall())
                self.stop.wait(max(0.0, 0.1 - (time.monotonic() - started)))


def test_table_producer_storm_worker_healthy(
    e2e_env: Settings,
    table: str,  # noqa: F811
    kube: KubeAPIServer,
) -> None:
    kube.add_deployment("ingest", "ingest-api", replicas=1, labels={"app": "ingest-api"})
    producer = Producer(table, 600)
    with JobWorker(table, slow(0.01)) as worker:  # ~60 rows/s: above min_ack_rate, far below 600/s
        producer.start()
        try:
            wait_until(lambda: len(worker.done) >= 20 or None, 60, "rows completing")
            wait_until(lambda: count(table, "status = 'pending'") >= 200 or None, 60, "a backlog")
            with Approver(e2e_env, "e2e-tv-prod", {}) as approver:
                params = {**table_params(table), "pause_method": "annotation"}
                result = run_playbook("backlog-triage", params, "e2e-tv-prod")
        finally:
            producer.stop.set()
            producer.join(10)
    assert result.verdict == "producer_storm", result.text()
    evidence = finding(result, "producer_storm")
    assert "publishers at" in evidence and "consumers healthy" in evidence, evidence
    facts = result.output("facts")["values"]
    assert facts["storm_factor"] >= 2 and facts["ack_rate"] >= 10 and facts["redeliver_ratio"] == 0, facts
    assert approver.steps() == ["pause_producer_annotation"]  # proposed (denied here)
    ran = {s: result.statuses.get(s) for s in MOVES if result.statuses.get(s) == "succeeded"}
    assert ran == {}, ran
    accounted(table, worker, producer.ids)


def test_table_database_lock_is_database_trouble(e2e_env: Settings, table: str) -> None:  # noqa: F811
    locked = f"e2e_tv_{uuid.uuid4().hex[:8]}"
    sql(f"CREATE TABLE {table}.{locked} (id uuid PRIMARY KEY)")
    holder = psycopg.connect(PG_URL)  # a migration holding a lock the jobs need, for the whole run
    holder.execute(f"LOCK TABLE {table}.{locked} IN ACCESS EXCLUSIVE MODE")
    holder_pid = holder.info.backend_pid
    ids = insert(table, 30)

    def write(conn: psycopg.Connection[Any], rid: str, _attempts: int) -> str:  # blocked by the lock
        conn.execute(f"INSERT INTO {table}.{locked} VALUES (%s)", (rid,))
        return "done"

    try:
        with JobWorker(table, write) as worker:
            stuck = "status = 'running' AND updated_at < now() - interval '6 seconds'"
            wait_until(lambda: count(table, stuck) or None, 60, "a job stuck on the lock for 6 s")
            with Approver(e2e_env, "e2e-tv-db", {}) as approver:
                params = {**table_params(table), "check_database": True, "database": "test"}
                result = run_playbook("backlog-triage", params, "e2e-tv-db")
            assert count(table, "status = 'done'") == 0  # the lock was held for the whole run
            holder.rollback()  # the lock goes: the worker resumes
            wait_until(lambda: len(worker.done) == 30 or None, 60, "the backlog done")
    finally:
        holder.close()
    assert result.verdict == "database_trouble", result.text()
    evidence = finding(result, "database_trouble")
    assert evidence.startswith("PostgreSQL: ") and "blocked" in evidence, evidence
    assert any(f"root blocker pid {holder_pid}" in p for p in result.output("db")["problems"])
    nothing_moved(result, approver)  # no Kubernetes: no consumers to halve
    accounted(table, worker, ids)
    assert sorted(r[0] for r in sql(f"SELECT id::text FROM {table}.{locked}")) == sorted(ids)
