"""PostgreSQL actions: look at the database playbooks inspect (``DATABASE_URL``) and, gated, change it.

Safety by construction:

- ``postgres.query`` runs one statement in a ``READ ONLY`` transaction through the extended query
  protocol (a second statement such as ``...; COMMIT; DELETE ...`` is refused by the server) and
  always rolls back, so session changes do not survive either.
- ``postgres.execute`` accepts exactly one UPDATE, DELETE or INSERT on an existing table and rolls
  back when the statement changed more rows than the step's declared ``max_rows``; its description
  (dry-run, approval message) gives the exact row count from a rolled-back trial run, or a planner
  estimate when a trial run could leave traces (triggers, sequences).
- Every statement is bounded by the step's remaining time (``statement_timeout``); connection
  failures surface as ``BackendUnavailable`` within a second, with passwords redacted.

Connections come from one pool per run (:mod:`runbook.actions.postgres_support`), closed with the
run's ``Connections``. Give ``DATABASE_URL`` a role with ``pg_monitor`` (to see every session in
``postgres.activity``) and only the write grants your playbooks need.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.postgres_activity import (
    ActivityParams,
    ActivityResult,
    ConnectionLimits,
    connection_limits,
    snapshot_activity,
)
from runbook.actions.postgres_execute import ExecuteParams, ExecuteResult, describe_execute, run_execute
from runbook.actions.postgres_support import (
    BACKEND,
    Table,
    bind_params,
    get_pool,
    json_safe,
    map_error,
    resolve_table,
    row_text,
    set_timeouts,
)
from runbook.actions.registry import ActionResult, action
from runbook.config import data_dir

__all__ = ["ConnectionLimits", "activity", "connection_limits", "execute", "query", "table_dump"]


# == postgres.query ================================================================================
class QueryParams(BaseModel):
    model_config = {"extra": "forbid"}

    sql: str = Field(description="one read-only SQL statement; named parameters as %(name)s")
    params: dict[str, Any] = Field(default_factory=dict, description="values for the %(name)s placeholders")
    max_rows: int = Field(
        100, ge=1, le=10_000, description="return at most this many rows (truncated is set)"
    )


class QueryResult(ActionResult):
    columns: list[str] = Field(default_factory=list, description="column names (empty when no row came back)")
    rows: list[dict[str, Any]] = Field(default_factory=list, description="rows as JSON-safe dicts")
    row_count: int = Field(0, description="rows returned (at most max_rows)")
    truncated: bool = Field(False, description="more rows existed than max_rows")
    first: dict[str, Any] = Field(
        default_factory=dict, description="the first row ({} when none): steps.x.first.col"
    )


@action("postgres.query", summary="Run one read-only SQL query and return its rows")
def query(ctx: ActionContext, params: QueryParams) -> QueryResult:
    """Run one SQL statement in a READ ONLY transaction against ``DATABASE_URL`` and return its rows.

    Any write (including ``nextval()`` and writes smuggled after a ``COMMIT``) fails: the
    transaction is read-only, only one statement is accepted, and it is always rolled back. Use
    named parameters (``%(queue)s``) for every value that comes from params or earlier steps.
    Rows are streamed and cut at ``max_rows`` (``truncated`` tells); values are JSON-safe
    (timestamps ISO 8601, numerics float). ``first`` is the first row, so a later step can test
    ``steps.stuck.first.count > 0``. Bounded by the step's timeout (statement_timeout).
    """
    statement, args = bind_params(params.sql, params.params)
    pool = get_pool(ctx)
    rows: list[dict[str, Any]] = []
    truncated = False
    columns: list[str] = []
    with pool.connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                set_timeouts(cur, ctx)
                stream = cur.stream(statement, args)
                try:
                    for row in stream:
                        if not columns and cur.description:
                            columns = [c.name for c in cur.description]
                        if len(rows) >= params.max_rows:
                            truncated = True
                            break
                        rows.append({k: json_safe(v) for k, v in row.items()})
                finally:
                    stream.close()  # cancels the rest of a truncated result
        except psycopg.ProgrammingError as exc:
            if "didn't produce a result" in str(exc):  # a command (SET, LISTEN...), not a query
                raise ActionError(
                    "query: the statement returns no rows; postgres.query is for SELECT, SHOW, EXPLAIN",
                    backend=BACKEND,
                ) from None
            raise map_error(exc, ctx, "query") from None
        except psycopg.Error as exc:
            raise map_error(exc, ctx, "query") from None
    first = rows[0] if rows else {}
    summary = f"{len(rows)} row{'s' if len(rows) != 1 else ''}{' (truncated)' if truncated else ''}"
    if first:
        summary += f"; first: {row_text(first)}"
    return QueryResult(
        summary=summary, columns=columns, rows=rows, row_count=len(rows), truncated=truncated, first=first
    )


# == postgres.activity =============================================================================
@action("postgres.activity", summary="Connections, long transactions and blocked queries of the server")
def activity(ctx: ActionContext, params: ActivityParams) -> ActivityResult:
    """Snapshot ``pg_stat_activity``: what an on-call asks when consumers stall on the database.

    Reports client connections used against ``max_connections`` (minus the superuser-reserved
    slots) by state and by application, sessions idle in an open transaction, transactions open
    longer than ``long_transaction_seconds``, and every blocked query with the sessions blocking it
    (``pg_blocking_pids``) and the root blockers (blocking, not blocked) to look at first.
    ``ok`` is false and ``problems`` says why when usage reaches ``max_usage``, a query is blocked,
    a transaction is long-running or a session idles in a transaction too long. Query texts are
    truncated and redacted. Read-only; the role needs ``pg_monitor`` to see other roles' sessions.
    """
    return snapshot_activity(ctx, params)


# == postgres.execute (destructive) ================================================================
@action(
    "postgres.execute",
    summary="Run one UPDATE/DELETE/INSERT, rolled back if it changes more rows than max_rows",
    destructive=True,
    describe=describe_execute,
)
def execute(ctx: ActionContext, params: ExecuteParams) -> ExecuteResult:
    """Run one parameterised UPDATE, DELETE or INSERT in a transaction, bounded by ``max_rows``.

    The target table must exist. The statement runs; if its row count exceeds ``max_rows`` the
    transaction is rolled back and the step fails with GuardrailRefused, leaving the table
    unchanged: declare the bound from the evidence of an earlier step (e.g. the count of stuck
    executions). Only the statement's own rows are counted (not cascades or trigger writes), which
    is why data-modifying WITH clauses and multiple statements are refused. The description shown
    for dry runs and approvals gives the exact count from a rolled-back trial run (or a planner
    estimate when a rollback would leave traces). In a dry run the statement runs and is rolled
    back. Bounded by the step's timeout (statement_timeout).
    """
    return run_execute(ctx, params)


# == postgres.table_dump ===========================================================================
class TableDumpParams(BaseModel):
    model_config = {"extra": "forbid"}

    table: str = Field(description="table to back up (optionally schema-qualified)")
    path: str | None = Field(
        None, description="file to write (default: <RUNBOOK_HOME>/dumps/<schema.table>-<UTC time>.csv)"
    )
    format: Literal["csv", "text"] = Field("csv", description="COPY format; csv has a header line")
    overwrite: bool = Field(False, description="replace an existing file at path")


class TableDumpResult(ActionResult):
    table: str = Field(description="schema-qualified table dumped")
    path: str = Field(description="the dump file (mode 0600)")
    rows: int
    bytes: int
    sha256: str = Field(description="checksum of the file, to quote in the maintenance record")


@action("postgres.table_dump", summary="Back up a table to a local file (COPY ... TO STDOUT)")
def table_dump(ctx: ActionContext, params: TableDumpParams) -> TableDumpResult:
    """Copy every row of a table to a file before maintenance touches it; read-only.

    Runs ``COPY (SELECT * FROM table) TO STDOUT`` in a READ ONLY transaction (one consistent
    snapshot), writes to ``<path>.partial`` created with mode 0600 (dumps hold production data)
    and renames it into place only when complete, so a file at ``path`` is always a whole dump.
    Refuses to overwrite an existing file unless ``overwrite``. Bounded by the step's timeout.
    """
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                set_timeouts(cur, ctx)
                table = resolve_table(cur, params.table, kinds="rpvmf")
                path = _dump_path(params, table)
                partial = path.with_name(path.name + ".partial")
                digest = hashlib.sha256()
                size = 0
                options = pgsql.SQL("FORMAT csv, HEADER true" if params.format == "csv" else "FORMAT text")
                copy_sql = pgsql.SQL("COPY (SELECT * FROM {}) TO STDOUT ({})").format(
                    table.identifier(), options
                )
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a stale .partial
                    with os.fdopen(fd, "wb") as out, cur.copy(copy_sql) as copy:
                        for chunk in copy:
                            data = bytes(chunk)
                            out.write(data)
                            digest.update(data)
                            size += len(data)
                    rows = cur.rowcount
                    os.replace(partial, path)
                except BaseException:
                    partial.unlink(missing_ok=True)
                    raise
        except psycopg.Error as exc:
            raise map_error(exc, ctx, "table dump") from None
        except OSError as exc:
            raise ActionError(
                f"table dump: cannot write {exc.filename}: {exc.strerror}", backend=BACKEND
            ) from None
    return TableDumpResult(
        summary=f"dumped {rows} rows of {table.qualified} to {path} ({size} bytes)",
        table=table.qualified,
        path=str(path),
        rows=rows,
        bytes=size,
        sha256=digest.hexdigest(),
    )


def _dump_path(params: TableDumpParams, table: Table) -> Path:
    if params.path:
        path = Path(params.path).expanduser()
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = data_dir() / "dumps" / f"{table.qualified}-{stamp}.{params.format}"
    if path.exists() and not params.overwrite:
        raise ActionError(f"table dump: {path} exists (set overwrite: true to replace it)", backend=BACKEND)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
