"""postgres.execute (destructive, row-bounded), its description, and postgres.table_dump.

Against the local PostgreSQL, on uniquely named tables that are dropped afterwards. "Unchanged" is
always checked through a separate connection, never through the action's own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    Connections,
    GuardrailRefused,
    describe,
    invoke,
)
from runbook.core.settings import Settings
from tests.support.pg_roles import writer_url
from tests.support.postgres import ADMIN_URL

pytestmark = pytest.mark.usefixtures("postgres_available")


@pytest.fixture
def writer_settings(postgres_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """DATABASE_URL as a least-privilege writer (the actions refuse a superuser); dumps in tmp."""
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    return Settings.from_env({"DATABASE_URL": writer_url()})


@pytest.fixture
def ctx(writer_settings: Settings) -> Iterator[ActionContext]:
    connections = Connections(writer_settings)
    yield ActionContext(connections)
    connections.close()


@pytest.fixture
def executions(admin: psycopg.Connection[Any], unique: str) -> Iterator[str]:
    """The seeds' stuck-executions shape: 4 running for an hour, 6 done."""
    name = f"rb_exec_{unique}"
    admin.execute(
        f"CREATE TABLE {name} (id serial PRIMARY KEY, action text NOT NULL, status text NOT NULL,"
        " updated timestamptz NOT NULL, result jsonb)"
    )
    admin.execute(
        f"INSERT INTO {name} (action, status, updated) SELECT 'core.http', CASE WHEN g <= 4 THEN 'running'"
        " ELSE 'done' END, CASE WHEN g <= 4 THEN now() - interval '1 hour' ELSE now() END"
        " FROM generate_series(1, 10) g"
    )
    yield name
    admin.execute(f"DROP TABLE IF EXISTS {name}")


def _statuses(admin: psycopg.Connection[Any], table: str) -> dict[str, int]:
    rows = admin.execute(f"SELECT status, count(*) FROM {table} GROUP BY status").fetchall()
    return {status: int(n) for status, n in rows}


def _sequence(admin: psycopg.Connection[Any], table: str) -> tuple[Any, ...] | None:
    return admin.execute(f"SELECT last_value, is_called FROM {table}_id_seq").fetchone()


FAIL_STUCK = (
    "UPDATE {t} SET status = 'failed', result = %(result)s::jsonb, updated = now()"
    " WHERE status = 'running' AND updated < now() - %(stale)s * interval '1 minute'"
)
STUCK_ARGS = {"stale": 10, "result": '{"error": "stuck, failed by runbook"}'}


# -- execute --------------------------------------------------------------------------------------
def test_execute_within_bound_commits(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any]
) -> None:
    result = invoke(
        registry["postgres.execute"],
        ctx,
        {"sql": FAIL_STUCK.format(t=executions), "params": STUCK_ARGS, "max_rows": 4},
    )
    assert result.rows_affected == 4 and result.committed
    assert result.table == f"public.{executions}" and result.operation == "UPDATE"
    assert "changed 4 rows" in result.summary
    assert _statuses(admin, executions) == {"failed": 4, "done": 6}


def test_execute_over_bound_rolls_back(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any]
) -> None:
    with pytest.raises(GuardrailRefused) as info:
        invoke(
            registry["postgres.execute"],
            ctx,
            {
                "sql": f"DELETE FROM {executions} WHERE status <> %(keep)s",
                "params": {"keep": "x"},
                "max_rows": 3,
            },
        )
    assert (
        "10 rows" in str(info.value) and "max_rows=3" in str(info.value) and "rolled back" in str(info.value)
    )
    assert _statuses(admin, executions) == {"running": 4, "done": 6}
    # the pooled connection is clean afterwards: a bounded statement still commits
    ok = invoke(
        registry["postgres.execute"],
        ctx,
        {"sql": f"DELETE FROM {executions} WHERE id = %(id)s", "params": {"id": 10}, "max_rows": 1},
    )
    assert ok.rows_affected == 1 and _statuses(admin, executions) == {"running": 4, "done": 5}


def test_execute_insert_counts_rows(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any]
) -> None:
    result = invoke(
        registry["postgres.execute"],
        ctx,
        {
            "sql": f"INSERT INTO {executions} (action, status, updated)"
            " SELECT 'requeue', 'queued', now() FROM generate_series(1, %(n)s)",
            "params": {"n": 2},
            "max_rows": 2,
        },
    )
    assert result.operation == "INSERT" and result.rows_affected == 2
    assert _statuses(admin, executions)["queued"] == 2


def test_execute_missing_table_is_refused(registry: ActionRegistry, ctx: ActionContext, unique: str) -> None:
    with pytest.raises(ActionError, match=f"table 'nope_{unique}' does not exist"):
        invoke(registry["postgres.execute"], ctx, {"sql": f"DELETE FROM nope_{unique}", "max_rows": 1})


@pytest.mark.parametrize(
    "sql",
    [
        "WITH gone AS (DELETE FROM {t} RETURNING id) SELECT count(*) FROM gone",  # rows not counted
        "SELECT * FROM {t}",
        "TRUNCATE {t}",
        "DROP TABLE {t}",
    ],
)
def test_execute_accepts_only_one_plain_dml_statement(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any], sql: str
) -> None:
    with pytest.raises(ValidationError, match="exactly one UPDATE, DELETE or INSERT|data-modifying"):
        invoke(registry["postgres.execute"], ctx, {"sql": sql.format(t=executions), "max_rows": 100})
    with pytest.raises(ValidationError):
        describe(registry["postgres.execute"], ctx, {"sql": sql.format(t=executions), "max_rows": 100})
    assert _statuses(admin, executions) == {"running": 4, "done": 6}


def test_execute_refuses_a_chained_second_statement(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any]
) -> None:
    sql = f"DELETE FROM {executions} WHERE id = 1; DELETE FROM {executions}"
    with pytest.raises(ValidationError, match="2 statements; exactly one is run"):
        invoke(registry["postgres.execute"], ctx, {"sql": sql, "max_rows": 1})
    assert _statuses(admin, executions) == {"running": 4, "done": 6}


def test_execute_dry_run_does_not_execute(
    registry: ActionRegistry, writer_settings: Settings, executions: str, admin: psycopg.Connection[Any]
) -> None:
    connections = Connections(writer_settings)
    try:
        result = invoke(
            registry["postgres.execute"],
            ActionContext(connections, dry_run=True),
            {"sql": FAIL_STUCK.format(t=executions), "params": STUCK_ARGS, "max_rows": 5},
        )
    finally:
        connections.close()
    assert not result.committed and result.rows_affected == 4 and "dry run: not executed" in result.summary
    assert _statuses(admin, executions) == {"running": 4, "done": 6}


# -- describe -------------------------------------------------------------------------------------
def test_describe_gives_the_exact_count_without_side_effects(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any]
) -> None:
    before = admin.execute(f"SELECT id, status, updated, result FROM {executions} ORDER BY id").fetchall()
    text = describe(
        registry["postgres.execute"],
        ctx,
        {"sql": FAIL_STUCK.format(t=executions), "params": STUCK_ARGS, "max_rows": 5},
    )
    assert f"UPDATE would change exactly 4 rows of public.{executions}" in text
    assert "counted with a read-only SELECT" in text
    assert "bound max_rows=5" in text and "refuse" not in text
    assert FAIL_STUCK.format(t=executions) in text and '"stale": 10' in text  # the whole call, unclipped
    over = describe(
        registry["postgres.execute"],
        ctx,
        {"sql": f"DELETE FROM {executions}", "max_rows": 3},
    )
    assert "exactly 10 rows" in over and "over the bound max_rows=3" in over
    assert (
        admin.execute(f"SELECT id, status, updated, result FROM {executions} ORDER BY id").fetchall()
        == before
    )


def test_describe_insert_does_not_advance_sequences(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any]
) -> None:
    seq = _sequence(admin, executions)
    text = describe(
        registry["postgres.execute"],
        ctx,
        {
            "sql": f"INSERT INTO {executions} (action, status, updated) SELECT action, 'queued', now()"
            f" FROM {executions} WHERE status = 'running'",
            "max_rows": 10,
        },
    )
    assert "estimated by the planner" in text and "INSERT's rows are only estimated" in text
    assert _sequence(admin, executions) == seq
    assert _statuses(admin, executions) == {"running": 4, "done": 6}


def test_describe_with_trigger_only_estimates(
    registry: ActionRegistry, ctx: ActionContext, executions: str, admin: psycopg.Connection[Any], unique: str
) -> None:
    admin.execute(
        f"CREATE FUNCTION rb_noop_{unique}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$"
    )
    try:
        admin.execute(
            f"CREATE TRIGGER rb_audit BEFORE UPDATE ON {executions}"
            f" FOR EACH ROW EXECUTE FUNCTION rb_noop_{unique}()"
        )
        call = {"sql": f"UPDATE {executions} SET status = 'x' WHERE status = 'running'", "max_rows": 10}
        with pytest.raises(GuardrailRefused, match="trigger rb_audit.*allow_cascade: true"):
            describe(registry["postgres.execute"], ctx, call)
        text = describe(registry["postgres.execute"], ctx, {**call, "allow_cascade": True})
        assert "exactly 4 rows" in text and "trigger rb_audit (allowed by allow_cascade)" in text
        assert _statuses(admin, executions) == {"running": 4, "done": 6}
    finally:
        admin.execute(f"DROP TABLE {executions}")
        admin.execute(f"DROP FUNCTION rb_noop_{unique}()")


def test_describe_does_not_queue_behind_production_locks(
    registry: ActionRegistry, ctx: ActionContext, executions: str
) -> None:
    holder = psycopg.connect(ADMIN_URL)
    try:
        holder.execute(f"UPDATE {executions} SET status = status WHERE id = 1")  # row lock held
        started = time.monotonic()
        text = describe(
            registry["postgres.execute"],
            ctx,
            {"sql": f"UPDATE {executions} SET status = 'x' WHERE status = 'running'", "max_rows": 10},
        )
        assert time.monotonic() - started < 3  # a count takes no row locks, so it never waits
        assert "exactly 4 rows" in text
    finally:
        holder.rollback()
        holder.close()


def test_execute_over_bound_leaves_no_locks_behind(
    registry: ActionRegistry, ctx: ActionContext, executions: str
) -> None:
    with pytest.raises(GuardrailRefused):
        invoke(
            registry["postgres.execute"], ctx, {"sql": f"UPDATE {executions} SET status = 'x'", "max_rows": 0}
        )
    done = threading.Event()

    def other_writer() -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '2s'")
            conn.execute(f"UPDATE {executions} SET status = status WHERE id = 1")
        done.set()

    thread = threading.Thread(target=other_writer)
    thread.start()
    thread.join(5)
    assert done.is_set()


def test_registry_contract_for_postgres(registry: ActionRegistry) -> None:
    assert registry["postgres.execute"].destructive and registry["postgres.execute"].describe is not None
    for name in ("postgres.query", "postgres.activity", "postgres.table_dump"):
        assert not registry[name].destructive
    for name in ("postgres.query", "postgres.activity", "postgres.execute", "postgres.table_dump"):
        spec = registry[name]
        assert spec.summary and spec.doc
        assert all(row["description"] for row in spec.parameters())
    required = {row["name"] for row in registry["postgres.execute"].parameters() if row["required"]}
    assert required == {"sql", "max_rows"}


# -- table_dump -----------------------------------------------------------------------------------
def test_table_dump_writes_a_private_complete_file(
    registry: ActionRegistry, ctx: ActionContext, executions: str, tmp_path: Path
) -> None:
    target = tmp_path / "home" / "dumps" / "backup" / f"{executions}.csv"
    name = f"backup/{executions}.csv"
    result = invoke(registry["postgres.table_dump"], ctx, {"table": executions, "path": name})
    assert result.rows == 10 and result.path == str(target) and result.table == f"public.{executions}"
    data = target.read_bytes()
    assert result.bytes == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == 10 and set(rows[0]) == {"id", "action", "status", "updated", "result"}
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no partial file left

    with pytest.raises(ActionError, match="exists"):
        invoke(registry["postgres.table_dump"], ctx, {"table": executions, "path": name})
    again = invoke(
        registry["postgres.table_dump"], ctx, {"table": executions, "path": name, "overwrite": True}
    )
    assert again.rows == 10
    default = invoke(registry["postgres.table_dump"], ctx, {"table": executions})
    assert default.path.startswith(str(tmp_path / "home" / "dumps" / f"public.{executions}-"))


def test_table_dump_missing_table(
    registry: ActionRegistry, ctx: ActionContext, unique: str, tmp_path: Path
) -> None:
    with pytest.raises(ActionError, match="does not exist"):
        invoke(registry["postgres.table_dump"], ctx, {"table": f"nope_{unique}", "path": "x.csv"})
    assert not (tmp_path / "home" / "dumps" / "x.csv").exists()
