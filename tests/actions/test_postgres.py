"""postgres.query, postgres.activity and connection_limits against the local PostgreSQL.

Everything runs on the real server: the blocked-lock scenario holds a real row lock in one
connection and blocks a second one on it in a thread. Tables get unique names and are dropped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError
from runbook_devtools.net import free_port

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    BackendUnavailable,
    Connections,
    invoke,
)
from runbook.actions.postgres.actions import ConnectionLimits, connection_limits
from runbook.core.settings import Settings
from tests.support.pg_roles import reader_url
from tests.support.postgres import ADMIN_URL
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("postgres_available")


@pytest.fixture
def reader_settings(postgres_available: None) -> Settings:
    """DATABASE_URL as a least-privilege role: the actions refuse the test server's superuser."""
    return Settings.from_env({"DATABASE_URL": reader_url()})


@pytest.fixture
def ctx(reader_settings: Settings) -> Iterator[ActionContext]:
    connections = Connections(reader_settings)
    yield ActionContext(connections)
    connections.close()


@pytest.fixture
def table(admin: psycopg.Connection[Any], unique: str) -> Iterator[str]:
    name = f"rb_q_{unique}"
    admin.execute(
        f"CREATE TABLE {name} (id serial PRIMARY KEY, status text NOT NULL, attempts numeric,"
        " updated timestamptz NOT NULL DEFAULT now(), ref uuid DEFAULT gen_random_uuid(), meta jsonb)"
    )
    admin.execute(
        f"INSERT INTO {name} (status, attempts, meta) SELECT CASE WHEN g <= 3 THEN 'running' ELSE 'done' END,"
        " g * 1.5, jsonb_build_object('g', g) FROM generate_series(1, 10) g"
    )
    yield name
    admin.execute(f"DROP TABLE IF EXISTS {name}")


def _count(admin: psycopg.Connection[Any], sql: str) -> int:
    row = admin.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


# -- postgres.query -------------------------------------------------------------------------------
def test_query_named_params_and_json_safe_rows(
    registry: ActionRegistry, ctx: ActionContext, table: str
) -> None:
    result = invoke(
        registry["postgres.query"],
        ctx,
        {
            "sql": f"SELECT id, status, attempts, updated, ref, meta FROM {table}"
            " WHERE status = %(status)s AND id <= %(max_id)s ORDER BY id",
            "params": {"status": "running", "max_id": 2},
        },
    )
    assert result.row_count == 2 and not result.truncated
    assert result.columns == ["id", "status", "attempts", "updated", "ref", "meta"]
    assert result.first == result.rows[0]
    assert result.first["id"] == 1 and result.first["attempts"] == 1.5  # numeric -> float
    assert isinstance(result.first["updated"], str) and "T" in result.first["updated"]  # ISO 8601
    assert isinstance(result.first["ref"], str)
    assert result.first["meta"] == {"g": 1}
    json.dumps(result.model_dump())  # everything is JSON-safe for later steps, timeline and Slack
    assert "2 rows" in result.summary


def test_query_first_supports_count_checks(registry: ActionRegistry, ctx: ActionContext, table: str) -> None:
    result = invoke(
        registry["postgres.query"],
        ctx,
        {"sql": f"SELECT count(*) AS count FROM {table} WHERE status = %(s)s", "params": {"s": "running"}},
    )
    assert result.first == {"count": 3}
    empty = invoke(registry["postgres.query"], ctx, {"sql": f"SELECT id FROM {table} WHERE false"})
    assert empty.row_count == 0 and empty.rows == [] and empty.first == {}


def test_query_row_cap_sets_truncated(registry: ActionRegistry, ctx: ActionContext) -> None:
    spec = registry["postgres.query"]
    capped = invoke(spec, ctx, {"sql": "SELECT g FROM generate_series(1, 250) g"})
    assert capped.row_count == 100 and len(capped.rows) == 100 and capped.truncated  # default cap 100
    assert capped.rows[-1] == {"g": 100}
    exact = invoke(spec, ctx, {"sql": "SELECT g FROM generate_series(1, 5) g", "max_rows": 5})
    assert exact.row_count == 5 and not exact.truncated
    small = invoke(spec, ctx, {"sql": "SELECT g FROM generate_series(1, 5) g", "max_rows": 2})
    assert small.row_count == 2 and small.truncated
    # the pooled connection is usable after a truncated (cancelled) stream
    assert invoke(spec, ctx, {"sql": "SELECT 7 AS x"}).first == {"x": 7}


def test_query_literal_percent_needs_no_escaping(
    registry: ActionRegistry, ctx: ActionContext, table: str
) -> None:
    spec = registry["postgres.query"]
    no_params = invoke(spec, ctx, {"sql": f"SELECT count(*) AS n FROM {table} WHERE status LIKE 'run%'"})
    assert no_params.first == {"n": 3}
    with_params = invoke(
        spec,
        ctx,
        {
            "sql": f"SELECT count(*) AS n, '100%' AS pct FROM {table}"
            " WHERE status LIKE 'run%' AND id > %(id)s",
            "params": {"id": 1},
        },
    )
    assert with_params.first == {"n": 2, "pct": "100%"}


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM {t}",
        "UPDATE {t} SET status = 'x'",
        "WITH gone AS (DELETE FROM {t} RETURNING id) SELECT count(*) FROM gone",
        "SELECT 1; COMMIT; DELETE FROM {t}",  # the sneaky one: a second transaction after COMMIT
        "SELECT nextval('{t}_id_seq')",
    ],
)
def test_query_cannot_write(
    registry: ActionRegistry, ctx: ActionContext, table: str, admin: psycopg.Connection[Any], sql: str
) -> None:
    before = admin.execute(f"SELECT last_value FROM {table}_id_seq").fetchone()
    with pytest.raises((ActionError, ValidationError)) as info:
        invoke(registry["postgres.query"], ctx, {"sql": sql.format(t=table)})
    text = str(info.value)
    assert any(
        why in text for why in ("runs only SELECT", "data-modifying", "statements; exactly one", "nextval()")
    ), text
    assert _count(admin, f"SELECT count(*) FROM {table} WHERE status IN ('running', 'done')") == 10
    assert admin.execute(f"SELECT last_value FROM {table}_id_seq").fetchone() == before


def test_query_session_changes_do_not_leak_into_later_steps(
    registry: ActionRegistry, ctx: ActionContext
) -> None:
    spec = registry["postgres.query"]
    default = invoke(spec, ctx, {"sql": "SELECT current_setting('search_path') AS p"}).first["p"]
    with pytest.raises(ValidationError, match="not SET"):
        invoke(spec, ctx, {"sql": "SET search_path TO nowhere"})
    with pytest.raises(ValidationError, match="set_config"):
        invoke(spec, ctx, {"sql": "SELECT set_config('work_mem', '1MB', false) AS w"})
    after = invoke(
        spec, ctx, {"sql": "SELECT current_setting('search_path') AS p, current_setting('work_mem') AS w"}
    )
    assert after.first["p"] == default
    assert after.first["w"] != "1MB"


def test_query_bounded_by_step_timeout(registry: ActionRegistry, ctx: ActionContext) -> None:
    ctx.deadline = time.monotonic() + 1.5
    started = time.monotonic()
    with pytest.raises(ActionError, match="statement timeout"):
        invoke(registry["postgres.query"], ctx, {"sql": "SELECT pg_sleep(10)"})
    assert time.monotonic() - started < 3
    ctx.deadline = None
    assert invoke(registry["postgres.query"], ctx, {"sql": "SELECT 1 AS ok"}).first == {"ok": 1}


def test_query_sql_error_is_one_redacted_line(
    registry: ActionRegistry, ctx: ActionContext, unique: str
) -> None:
    with pytest.raises(ActionError) as info:
        invoke(registry["postgres.query"], ctx, {"sql": f"SELECT * FROM missing_{unique}"})
    text = str(info.value)
    assert f'relation "missing_{unique}" does not exist' in text
    assert "\n" not in text and not isinstance(info.value, BackendUnavailable)


# -- connection failures --------------------------------------------------------------------------
def test_refused_connection_is_backend_unavailable_quickly(registry: ActionRegistry, unique: str) -> None:
    password = f"pw-{unique}-secret"
    settings = Settings.from_env(
        {"DATABASE_URL": f"postgresql://root:{password}@127.0.0.1:{free_port()}/test"}
    )
    connections = Connections(settings)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable) as info:
            invoke(registry["postgres.query"], ActionContext(connections), {"sql": "SELECT 1"})
    finally:
        connections.close()
    elapsed = time.monotonic() - started
    text = str(info.value)
    assert text.startswith("postgres:") and "refused" in text.lower()
    assert password not in text and password not in repr(info.value)
    assert elapsed < 3, f"took {elapsed:.1f}s to report a refused connection"


def test_auth_failure_names_the_cause_without_the_password(
    registry: ActionRegistry, unique: str, postgres_available: None
) -> None:
    password = f"pw-{unique}-hunter2"
    settings = Settings.from_env(
        {"DATABASE_URL": f"postgresql://nobody_{unique}:{password}@127.0.0.1:5432/test"}
    )
    connections = Connections(settings)
    try:
        with pytest.raises(BackendUnavailable) as info:
            invoke(registry["postgres.activity"], ActionContext(connections), {})
    finally:
        connections.close()
    text = str(info.value)
    assert f'role "nobody_{unique}" does not exist' in text
    assert password not in text


def test_connection_limits_refused_is_backend_unavailable(unique: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": f"postgresql://root@127.0.0.1:{free_port()}/test"})
    connections = Connections(settings)
    try:
        with pytest.raises(BackendUnavailable, match="postgres"):
            connection_limits(ActionContext(connections))
    finally:
        connections.close()


def test_missing_database_url_says_what_to_set(registry: ActionRegistry) -> None:
    connections = Connections(Settings(database_inspect_url=None))
    with pytest.raises(ActionError, match="DATABASE_URL is not set"):
        invoke(registry["postgres.query"], ActionContext(connections), {"sql": "SELECT 1"})


def test_connections_close_closes_the_pool(registry: ActionRegistry, reader_settings: Settings) -> None:
    connections = Connections(reader_settings)
    invoke(registry["postgres.query"], ActionContext(connections), {"sql": "SELECT 1"})
    pool = connections._built["postgres.pool"].pool
    assert not pool.closed
    connections.close()
    assert pool.closed


# -- connection_limits ----------------------------------------------------------------------------
def test_connection_limits_match_the_server(ctx: ActionContext, admin: psycopg.Connection[Any]) -> None:
    limits = connection_limits(ctx)
    assert isinstance(limits, ConnectionLimits)
    assert limits.max_connections == _count(admin, "SELECT current_setting('max_connections')::int")
    assert limits.superuser_reserved == _count(
        admin, "SELECT current_setting('superuser_reserved_connections')::int"
    )
    assert 2 <= limits.used <= limits.max_connections  # at least this test's admin and pool connections
    assert limits.usable == limits.max_connections - limits.superuser_reserved


# -- postgres.activity ----------------------------------------------------------------------------
def test_activity_reports_a_real_blocked_lock(
    registry: ActionRegistry, ctx: ActionContext, table: str, unique: str
) -> None:
    holder = psycopg.connect(ADMIN_URL, application_name=f"rb-holder-{unique}")
    waiter = psycopg.connect(ADMIN_URL, application_name=f"rb-waiter-{unique}", autocommit=True)
    waiter_error: list[BaseException] = []

    def blocked_update() -> None:
        try:
            waiter.execute(f"UPDATE {table} SET status = 'waiter' WHERE id = 1")
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            waiter_error.append(exc)

    thread = threading.Thread(target=blocked_update, daemon=True)
    try:
        holder.execute(f"UPDATE {table} SET status = 'holder' WHERE id = 1")  # row lock, transaction open
        held_since = time.monotonic()
        thread.start()
        spec = registry["postgres.activity"]
        # a wait shorter than blocked_seconds is contention, not a problem
        wait_until(
            lambda: any(
                b["application_name"] == f"rb-waiter-{unique}"
                for b in invoke(spec, ctx, {"blocked_seconds": 0}).blocked
            ),
            what="the waiter to reach the lock",
        )
        brief = invoke(spec, ctx, {"blocked_seconds": 120})
        assert waiter.info.backend_pid not in [b["pid"] for b in brief.blocked]
        assert not any("blocked" in p for p in brief.problems)
        params = {"long_transaction_seconds": 0.5, "idle_in_transaction_seconds": 0.5, "blocked_seconds": 0.5}
        deadline = held_since + 10
        while True:  # the waiter needs a moment to reach the lock; the holder to grow "long"
            time.sleep(0.3)
            result = invoke(spec, ctx, params)
            waiting = any(b["pid"] == waiter.info.backend_pid for b in result.blocked)
            if (waiting and time.monotonic() - held_since > 1.0) or time.monotonic() > deadline:
                break
        blocked = next(b for b in result.blocked if b["pid"] == waiter.info.backend_pid)
        assert blocked["blocked_by"] == [holder.info.backend_pid]
        assert f"UPDATE {table} SET status = 'waiter'" in blocked["query"]
        assert blocked["application_name"] == f"rb-waiter-{unique}"
        assert blocked["wait_event_type"] == "Lock"
        blocker = next(b for b in result.blockers if b["pid"] == holder.info.backend_pid)
        assert blocker["state"] == "idle in transaction"
        assert holder.info.backend_pid in result.root_blockers
        assert waiter.info.backend_pid not in result.root_blockers
        assert holder.info.backend_pid in [t["pid"] for t in result.long_transactions]
        assert result.idle_in_transaction >= 1
        assert result.by_application.get(f"rb-holder-{unique}") == 1
        assert not result.ok
        assert any("blocked" in p and str(holder.info.backend_pid) in p for p in result.problems)
        assert any("idle in transaction" in p for p in result.problems)
        assert "blocked" in result.summary
        json.dumps(result.model_dump())
    finally:
        holder.rollback()
        thread.join(10)
        holder.close()
        waiter.close()
    assert not thread.is_alive() and not waiter_error


def test_activity_connection_usage_threshold(registry: ActionRegistry, ctx: ActionContext) -> None:
    result = invoke(registry["postgres.activity"], ctx, {"max_usage": 0.001, "database": "test"})
    assert result.used >= 1 and result.usable == result.max_connections - result.superuser_reserved
    assert result.usage == pytest.approx(result.used / result.usable, abs=1e-3)
    assert any(p.startswith("connections ") for p in result.problems) and not result.ok
    assert sum(result.by_state.values()) >= 1


def test_activity_ok_without_problems(registry: ActionRegistry, ctx: ActionContext, unique: str) -> None:
    result = invoke(registry["postgres.activity"], ctx, {"database": f"no_such_db_{unique}"})
    assert result.ok and result.problems == [] and result.blocked == []


def test_connection_killed_mid_query_is_backend_unavailable_and_pool_recovers(
    registry: ActionRegistry, ctx: ActionContext, admin: psycopg.Connection[Any], unique: str
) -> None:
    marker = f"rb_kill_{unique}"

    def kill_when_running() -> None:
        for _ in range(50):
            time.sleep(0.1)
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                (f"%{marker}%",),
            ).fetchone()
            if row:
                admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                return

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        with pytest.raises(BackendUnavailable, match="connection lost"):
            invoke(registry["postgres.query"], ctx, {"sql": f"SELECT pg_sleep(10) AS {marker}"})
    finally:
        killer.join(10)
    assert invoke(registry["postgres.query"], ctx, {"sql": "SELECT 1 AS ok"}).first == {"ok": 1}
