"""queue.* with system pg_table on the real PostgreSQL: StarForge's queue_jobs / queue_jobs_dlq (seed 004)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runbook.actions import ActionContext, ActionError, ActionRegistry, Connections, invoke
from runbook.core.settings import Settings

DSN = "postgresql://root@127.0.0.1:5432/test"


def starforge_schema(schema: str) -> str:
    return f"""
    CREATE SCHEMA {schema};
    CREATE TABLE {schema}.queue_jobs (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(), type text NOT NULL,
      payload jsonb NOT NULL DEFAULT '{{}}',
      status text NOT NULL DEFAULT 'pending', attempts int NOT NULL DEFAULT 0, last_error jsonb,
      run_after timestamptz NOT NULL DEFAULT now(), created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE {schema}.queue_jobs_dlq (
      id uuid PRIMARY KEY, original_job_id uuid NOT NULL, type text, payload jsonb, reason text,
      created_at timestamptz NOT NULL);
    """


@pytest.fixture
def schema(postgres_available: None, unique: str) -> Iterator[str]:
    name = f"sf_{unique}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(starforge_schema(name))
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def sql(query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(DSN, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def call(registry: ActionRegistry, settings: Settings, name: str, params: dict[str, Any]) -> Any:
    ctx = ActionContext(Connections(settings), deadline=time.monotonic() + 30)
    return invoke(registry[name], ctx, params).model_dump()


def target(schema: str) -> dict[str, Any]:
    return {
        "system": "pg_table",
        "queue": "queue_jobs",
        "table": {
            "preset": "starforge",
            "table": f"{schema}.queue_jobs",
            "dlq_table": f"{schema}.queue_jobs_dlq",
        },
    }


def test_row_retried_past_its_attempts_is_the_suspect_and_only_it_is_quarantined(
    schema: str, registry: ActionRegistry, settings: Settings
) -> None:
    sql(
        f"INSERT INTO {schema}.queue_jobs (type, created_at, run_after) SELECT 'process_snapshot',"
        " now() - interval '20 minutes', now() - interval '20 minutes' FROM generate_series(1, 50)"
    )
    poison = sql(
        f"INSERT INTO {schema}.queue_jobs (type, attempts, last_error, created_at) VALUES"
        " ('backfill_range', 7, '{\"error\": \"division by zero\"}', now() - interval '30 minutes')"
        " RETURNING id::text"
    )[0][0]
    q = target(schema)
    stats = call(registry, settings, "queue.stats", q)
    assert stats["depth"] == 51 and stats["oldest_age_seconds"] >= 1150
    sample = call(registry, settings, "queue.sample", {**q, "count": 20})
    assert sample["suspects"] == [poison] and "7 attempts" in sample["suspect_evidence"][0]
    before = sql(f"SELECT payload FROM {schema}.queue_jobs WHERE id = %s", poison)[0][0]
    moved = call(registry, settings, "queue.quarantine", {**q, "ids": [poison]})
    assert moved["ids"] == [poison]
    assert sql(f"SELECT original_job_id::text, payload FROM {schema}.queue_jobs_dlq") == [(poison, before)]
    assert sql(f"SELECT count(*) FROM {schema}.queue_jobs WHERE status = 'failed'") == [(1,)]
    assert sql(f"SELECT count(*) FROM {schema}.queue_jobs WHERE status = 'pending'") == [(50,)]


def test_redrive_skips_quarantined_rows_and_loses_none(schema: str, registry, settings) -> None:
    sql(f"INSERT INTO {schema}.queue_jobs (type, status) SELECT 'x', 'failed' FROM generate_series(1, 30)")
    live = sql(f"INSERT INTO {schema}.queue_jobs (type) VALUES ('x') RETURNING id::text")[0][0]
    q = target(schema)
    call(registry, settings, "queue.quarantine", {**q, "ids": [live]})
    canary = call(registry, settings, "queue.redrive", {**q, "count": 5})
    assert canary["moved"] == 5 and canary["remaining"] == 26
    rest = call(registry, settings, "queue.redrive", q)
    assert rest["moved"] == 25 and rest["remaining"] == 1
    assert sql(f"SELECT id::text FROM {schema}.queue_jobs WHERE status = 'failed'") == [(live,)]


@pytest.mark.parametrize(
    "table",
    [
        {"table": "queue_jobs; DROP TABLE x", "preset": "starforge"},
        {"table": "pg_catalog.pg_class"},
        {"preset": "starforge", "table": "nope.queue_jobs"},
        "no-such-preset",
    ],
)
def test_hostile_mappings_are_refused(schema: str, registry, settings, table: Any) -> None:
    with pytest.raises(ActionError):
        call(registry, settings, "queue.stats", {"system": "pg_table", "queue": "q", "table": table})


def test_hostile_ids_match_nothing(schema: str, registry, settings) -> None:
    sql(f"INSERT INTO {schema}.queue_jobs (type) SELECT 'x' FROM generate_series(1, 3)")
    with pytest.raises(ActionError):
        call(
            registry,
            settings,
            "queue.quarantine",
            {**target(schema), "ids": ["00000000-0000-0000-0000-000000000000' OR '1'='1"]},
        )
    assert sql(f"SELECT count(*) FROM {schema}.queue_jobs WHERE status = 'pending'") == [(3,)]


def test_progress_counts_retries_past_the_first_attempt_and_rows_inserted(
    schema: str, settings: Settings
) -> None:
    """A worker counts the attempt when it claims a row: a row done on its first attempt is one
    delivery and no retry (counting every attempt as a retry made a healthy worker a 50% retry
    storm); a row that failed once and then succeeded is two deliveries, one retry; every row
    inserted is published (a producer storm read as publish rate 0)."""
    from runbook.actions.pg_table.system import TableQueue
    from runbook.actions.queue.system import Target

    q = target(schema)
    t = Target.model_validate({"queue": q["queue"], "table": q["table"]})
    ctx = ActionContext(Connections(settings), deadline=time.monotonic() + 30)
    sql(f"INSERT INTO {schema}.queue_jobs (type) SELECT 'x' FROM generate_series(1, 10)")
    a = TableQueue()._counters(ctx, t)
    ids = [r[0] for r in sql(f"SELECT id::text FROM {schema}.queue_jobs ORDER BY id LIMIT 4")]
    sql(f"UPDATE {schema}.queue_jobs SET status = 'done', attempts = 1 WHERE id = ANY(%s::uuid[])", ids[:3])
    sql(f"UPDATE {schema}.queue_jobs SET status = 'done', attempts = 2 WHERE id = %s::uuid", ids[3])
    sql(f"INSERT INTO {schema}.queue_jobs (type) SELECT 'x' FROM generate_series(1, 5)")
    b = TableQueue()._counters(ctx, t)
    assert (b.completed - a.completed, b.delivered - a.delivered, b.redelivered - a.redelivered) == (4, 5, 1)
    assert b.published - a.published == 5 and b.depth - a.depth == 1
