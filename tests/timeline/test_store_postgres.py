"""The timeline store on PostgreSQL (production's RUNBOOK_DATABASE_URL), against the local server.

Runs get unique ids and their rows are deleted afterwards; the tables themselves are shared.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from runbook.core.events import Event, Kind
from runbook.store.database import Database
from runbook.store.schema import open_database
from runbook.store.timeline import TimelineStore

PG_URL = "postgresql://root@127.0.0.1:5432/test"


@pytest.fixture
def run_id(postgres_available: None) -> str:
    """A unique run id (``pg_store`` is a database of its own, dropped after the test)."""
    return f"test-{uuid.uuid4().hex}"


def test_run_lifecycle_and_events(pg_store: TimelineStore, run_id: str) -> None:
    assert pg_store.db.is_postgres
    pg_store.start_run(
        run_id,
        "stuck-queue",
        params={"queue": "plans", "stale_minutes": 10},
        incident_id="PINC1",
        requested_by="pagerduty",
        trigger="pagerduty",
    )
    run = pg_store.get_run(run_id)
    assert run is not None
    assert run["status"] == "running" and run["playbook"] == "stuck-queue"
    assert run["params"] == {"queue": "plans", "stale_minutes": 10} and run["incident_id"] == "PINC1"

    first = pg_store.append(Event(run_id=run_id, kind=Kind.RUN_STARTED, summary="started by pagerduty"))
    second = pg_store.append(
        Event(
            run_id=run_id,
            kind=Kind.STEP_SUCCEEDED,
            step_id="snapshot",
            actor="runbook",
            summary="queue plans: 1200 ready, 0 consumers",
            details={"ready": 1200, "consumers": 0, "nested": {"rates": [1.5, 0.0]}},
        )
    )
    assert first.id is not None and second.id is not None and second.id > first.id

    events = pg_store.events(run_id)
    assert [e.kind for e in events] == [Kind.RUN_STARTED, Kind.STEP_SUCCEEDED]
    assert events[1].step_id == "snapshot" and events[1].actor == "runbook"
    assert events[1].details == {"ready": 1200, "consumers": 0, "nested": {"rates": [1.5, 0.0]}}
    assert events[1].time.tzinfo is not None and events[1].time <= datetime.now(UTC)
    assert [e.id for e in pg_store.events(run_id, after_id=first.id)] == [second.id]

    pg_store.finish_run(run_id, "completed", reason="all steps succeeded")
    run = pg_store.get_run(run_id)
    assert run is not None and run["status"] == "completed" and run["finished_at"]
    assert run["reason"] == "all steps succeeded"
    assert any(r["run_id"] == run_id for r in pg_store.runs(status="completed", limit=500))


def test_restarted_run_keeps_its_first_record(pg_store: TimelineStore, run_id: str) -> None:
    pg_store.start_run(run_id, "stuck-queue", params={"queue": "a"})
    pg_store.finish_run(run_id, "crashed")
    pg_store.start_run(run_id, "stuck-queue", params={"queue": "changed"})
    run = pg_store.get_run(run_id)
    assert run is not None and run["status"] == "running" and run["finished_at"] is None
    assert run["params"] == {"queue": "a"}


def test_secrets_never_reach_the_postgres_store(pg_store: TimelineStore, run_id: str) -> None:
    pg_store.start_run(run_id, "p", params={"url": "postgresql://app:s3cr3t-pw@db:5432/app"})
    pg_store.append(
        Event(
            run_id=run_id,
            kind=Kind.NOTE,
            summary="connecting to amqp://guest:s3cr3t-pw@mq:5672/",
            details={"header": "Authorization: Bearer abcdefghijklmnop"},
        )
    )
    with psycopg.connect(pg_store.db.url) as conn:
        rows = conn.execute(
            "SELECT r.params, e.summary, e.details FROM runbook_runs r JOIN runbook_events e USING (run_id)"
            " WHERE run_id = %s",
            (run_id,),
        ).fetchall()
    assert rows and "s3cr3t-pw" not in str(rows) and "abcdefghijklmnop" not in str(rows)


def test_short_run_id_prefix_lookup(pg_store: TimelineStore, run_id: str) -> None:
    pg_store.start_run(run_id, "p", params={})
    run = pg_store.get_run(run_id[:20])
    assert run is not None and run["run_id"] == run_id


def test_concurrent_appends_from_threads(pg_store: TimelineStore, run_id: str) -> None:
    """Flow runs append from worker threads; each thread gets its own connection."""
    pg_store.start_run(run_id, "p", params={})

    def write(n: int) -> None:
        for i in range(10):
            pg_store.append(Event(run_id=run_id, kind=Kind.NOTE, summary=f"t{n} e{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    events = pg_store.events(run_id)
    assert len(events) == 40 and len({e.id for e in events}) == 40
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_a_second_store_opening_the_same_database(run_id: str) -> None:
    """Several processes open the store: schema creation must be idempotent."""
    a = TimelineStore(open_database(PG_URL))
    b = TimelineStore(open_database(PG_URL))
    a.start_run(run_id, "p", params={})
    b.append(Event(run_id=run_id, kind=Kind.NOTE, summary="from b"))
    try:
        assert [e.summary for e in a.events(run_id)] == ["from b"]
    finally:
        a.db.close()
        b.db.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:  # the shared database keeps no rows
            conn.execute("DELETE FROM runbook_events WHERE run_id = %s", (run_id,))
            conn.execute("DELETE FROM runbook_runs WHERE run_id = %s", (run_id,))


def test_first_open_of_a_fresh_database_from_several_processes_at_once(postgres_available: None) -> None:
    name = f"rb_schema_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    errors: list[BaseException] = []
    opened: list[Database] = []
    barrier = threading.Barrier(6)

    def open_store() -> None:
        barrier.wait()
        try:
            opened.append(open_database(f"postgresql://root@127.0.0.1:5432/{name}"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        with psycopg.connect("postgresql://root@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    assert errors == []


def test_store_survives_a_dropped_connection(pg_store: TimelineStore) -> None:
    from runbook.store.database import StoreError

    pg_store.runs(limit=1)
    pid = pg_store.db._conn().info.backend_pid
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    try:
        pg_store.runs(limit=1)
    except StoreError:
        pass  # acceptable: a store error the caller handles
