"""PostgreSQL actions: look at the database playbooks inspect (``DATABASE_URL``) and, gated, change it.

Safety by construction:

- SQL is fixed by the playbook: values only as ``%(name)s`` parameters, a table chosen at run time
  only through ``table:`` (a plain ``name``/``schema.name`` resolved with ``to_regclass`` and quoted
  by the driver into the ``{table}`` placeholder). No templates; lint refuses them.
- What a statement is comes from PostgreSQL's own parser (``pglast``): ``postgres.query`` runs only
  a read (SELECT, VALUES, TABLE, SHOW, EXPLAIN without ANALYZE; no writing WITH, no SELECT INTO, no
  row locks, no side-effect functions) in a ``READ ONLY`` transaction that is always rolled back,
  and refuses to run at all on a role that is superuser or can signal backends, run programs or
  read/write server files (see :func:`~runbook.actions.postgres.client.check_role`).
- ``postgres.execute`` runs exactly one UPDATE, DELETE or INSERT, checks the server's command tag
  and row count, counts rows changed through cascades and triggers (the transaction's own
  counters), and rolls back over ``max_rows``; its description never runs it (EXPLAIN and a
  read-only count).
- Every statement is bounded by the step's remaining time (``statement_timeout``); connection
  failures surface as ``BackendUnavailable`` within a second, with passwords redacted.
- ``postgres.table_dump`` writes only under ``<data dir>/dumps/`` (``runbook.core.files``).

Connections come from one pool per run (:mod:`runbook.actions.postgres.client`), closed with the
run's ``Connections``. Give ``DATABASE_URL`` a least-privilege role (docs/SECURITY.md, PostgreSQL):
``pg_read_all_data`` or SELECT grants, ``pg_monitor`` to see every session in ``postgres.activity``,
and only the write grants your playbooks need.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.postgres.activity import (
    ActivityParams,
    ActivityResult,
    ConnectionLimits,
    connection_limits,
    snapshot_activity,
)
from runbook.actions.postgres.client import (
    BACKEND,
    PgError,
    PgProgrammingError,
    check_role,
    compose,
    dict_row,
    get_pool,
    json_safe,
    map_error,
    pgsql,
    resolve_table,
    row_text,
    set_timeouts,
    stream_rows,
)
from runbook.actions.postgres.execute import ExecuteParams, ExecuteResult, describe_execute, run_execute
from runbook.actions.postgres.sql import (
    StatementRefused,
    check_final,
    read_statement,
    table_placeholder_problem,
)
from runbook.actions.registry import ActionResult, action
from runbook.core.files import UnsafePath, data_dir, relative_parts, write_private
from runbook.core.identifiers import check_identifier

__all__ = ["ConnectionLimits", "activity", "connection_limits", "execute", "query", "table_dump"]


# == postgres.query ================================================================================
class QueryParams(BaseModel):
    model_config = {"extra": "forbid"}

    table: str | None = Field(
        None,
        description="the table {table} in sql stands for: name or schema.name, resolved with to_regclass"
        " and quoted by the driver (use a type: identifier param to choose it at run time)",
    )
    sql: str = Field(
        description="one read-only statement (SELECT, VALUES, TABLE, SHOW, EXPLAIN); values as %(name)s"
        " parameters, the table as {table} (or written literally); no templates, no other braces"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="values for the %(name)s placeholders")
    max_rows: int = Field(
        100, ge=1, le=10_000, description="return at most this many rows (truncated is set)"
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)

    @field_validator("sql")
    @classmethod
    def _sql(cls, value: str) -> str:
        try:
            read_statement(value)
        except StatementRefused as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _table_used(self) -> QueryParams:
        problem = table_placeholder_problem(self.sql, self.table)
        if problem:
            raise ValueError(problem)
        return self


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
    """Run one read-only statement in a READ ONLY transaction against ``DATABASE_URL``; its rows.

    The statement is read by PostgreSQL's parser first: only SELECT, VALUES, TABLE, SHOW and
    EXPLAIN without ANALYZE; no data-modifying WITH, no ``SELECT ... INTO``, no ``FOR UPDATE``, no
    ``COPY``, no functions with side effects (``pg_terminate_backend``, ``pg_read_file``,
    ``set_config``, ``dblink``...). Before it runs, the connection's role is checked: a superuser or
    a member of pg_signal_backend, pg_execute_server_program, pg_read_server_files or
    pg_write_server_files is refused with the way to configure a read-only role. Any write that
    slips through still fails: the transaction is read-only and always rolled back. Use named
    parameters (``%(queue)s``) for every value that comes from params or earlier steps, and
    ``table:`` with ``{table}`` for a table chosen by a param.
    Rows are streamed and cut at ``max_rows`` (``truncated`` tells); values are JSON-safe
    (timestamps ISO 8601, numerics float). ``first`` is the first row, so a later step can test
    ``steps.stuck.first.count > 0``. Bounded by the step's timeout (statement_timeout).
    """
    args = dict(params.params)
    pool = get_pool(ctx)
    rows: list[dict[str, Any]] = []
    truncated = False
    columns: list[str] = []
    with pool.connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                set_timeouts(cur, ctx)
                check_role(cur, "query")
                table = resolve_table(cur, params.table, kinds="rpvmf") if params.table else None
                statement = compose(params.sql, table)
                try:
                    check_final(statement.as_string(conn), read=True)
                except StatementRefused as exc:
                    raise ActionError(f"query: {exc}", backend=BACKEND) from None
                stream = stream_rows(cur, statement, args)
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
        except PgProgrammingError as exc:
            if "didn't produce a result" in str(exc):  # a command (SET, LISTEN...), not a query
                raise ActionError(
                    "query: the statement returns no rows; postgres.query is for SELECT, SHOW, EXPLAIN",
                    backend=BACKEND,
                ) from None
            raise map_error(exc, ctx, "query") from None
        except PgError as exc:
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

    The statement is read by PostgreSQL's parser (not a regex): exactly one UPDATE, DELETE or
    INSERT (of ``operation`` when declared), no data-modifying WITH, no side-effect functions; the
    target is a table (not a view or catalog) named literally or through ``table:``/``{table}``.
    The role is checked as for ``postgres.query``.

    Cascades and triggers: before running, foreign keys that cascade from the table (ON DELETE /
    ON UPDATE CASCADE, SET NULL, SET DEFAULT), enabled user triggers and rules on it are looked up;
    if there are any the step is refused unless it says ``allow_cascade: true``. Either way, every
    row the statement changes *and* every row changed through cascades and triggers (counted by
    the server in ``pg_stat_xact_all_tables`` for this transaction) counts against ``max_rows``.

    After running, the server's command tag must name the declared verb and the row count must be
    known (not -1); otherwise, or over ``max_rows``, the transaction is rolled back and the step
    fails with GuardrailRefused, leaving everything unchanged. Declare the bound from the evidence
    of an earlier step (e.g. the count of stuck executions).

    The description (approvals, ``--dry-run``) never runs the statement: the planner estimate from
    EXPLAIN without ANALYZE, and an exact read-only ``SELECT count(*)`` over the same WHERE when that
    calls no functions beyond pure builtins; then the whole statement and its values, unclipped
    (a call holding anything that looks like a secret is refused rather than shown redacted). A
    dry run describes and does not execute. Bounded by the step's timeout (statement_timeout).
    """
    return run_execute(ctx, params)


# == postgres.table_dump ===========================================================================
class TableDumpParams(BaseModel):
    model_config = {"extra": "forbid"}

    table: str = Field(description="table to back up: name or schema.name")
    path: str | None = Field(
        None,
        description="file name relative to <data dir>/dumps/ (default: <schema.table>-<UTC time>.<format>);"
        " absolute paths, '..' and symlinks are refused",
    )
    format: Literal["csv", "text"] = Field("csv", description="COPY format; csv has a header line")
    overwrite: bool = Field(False, description="replace an existing file at path")

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return check_identifier(value)


class TableDumpResult(ActionResult):
    table: str = Field(description="schema-qualified table dumped")
    path: str = Field(description="the dump file (mode 0600, under <data dir>/dumps/)")
    rows: int
    bytes: int
    sha256: str = Field(description="checksum of the file, to quote in the maintenance record")


DUMPS = "dumps"


@action(
    "postgres.table_dump", summary="Back up a table to a file under the data directory (COPY ... TO STDOUT)"
)
def table_dump(ctx: ActionContext, params: TableDumpParams) -> TableDumpResult:
    """Copy every row of a table to a file before maintenance touches it; read-only.

    Runs ``COPY (SELECT * FROM table) TO STDOUT`` in a READ ONLY transaction (one consistent
    snapshot) and streams it into ``<data dir>/dumps/<path>`` (``runbook.core.files``): the name
    is relative to that folder (absolute paths, ``..`` and symlinks anywhere on the way are
    refused before anything is read or written), folders are 0700, the file 0600 (dumps hold
    production data), written under a temporary name and renamed into place only when complete.
    Refuses to replace an existing file unless ``overwrite``. Bounded by the step's timeout.
    """
    if params.path is not None:
        try:
            relative_parts(params.path)
        except UnsafePath as exc:
            raise ActionError(f"table dump: unsafe path: {exc}; nothing written", backend=BACKEND) from None
    root = data_dir() / DUMPS
    digest = hashlib.sha256()
    size = 0
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                set_timeouts(cur, ctx)
                table = resolve_table(cur, params.table, kinds="rpvmf")
                name = params.path or f"{table.qualified}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{params.format}"
                options = pgsql.SQL("FORMAT csv, HEADER true" if params.format == "csv" else "FORMAT text")
                copy_sql = pgsql.SQL("COPY (SELECT * FROM {}) TO STDOUT ({})").format(
                    table.identifier(), options
                )
                with cur.copy(copy_sql) as copy:

                    def chunks() -> Iterator[bytes]:
                        nonlocal size
                        for chunk in copy:
                            data = bytes(chunk)
                            digest.update(data)
                            size += len(data)
                            yield data

                    path = write_private(root, name, chunks(), overwrite=params.overwrite)
                rows = cur.rowcount
        except PgError as exc:
            raise map_error(exc, ctx, "table dump") from None
        except UnsafePath as exc:
            raise ActionError(f"table dump: unsafe path: {exc}; nothing written", backend=BACKEND) from None
        except FileExistsError:
            raise ActionError(
                f"table dump: {name} exists in {root} (set overwrite: true to replace it); nothing written",
                backend=BACKEND,
            ) from None
        except OSError as exc:
            raise ActionError(
                f"table dump: cannot write {name} under {root}: {exc.strerror}", backend=BACKEND
            ) from None
    return TableDumpResult(
        summary=f"dumped {rows} rows of {table.qualified} to {path} ({size} bytes)",
        table=table.qualified,
        path=str(path),
        rows=rows,
        bytes=size,
        sha256=digest.hexdigest(),
    )
