"""Plumbing for the PostgreSQL actions: the pool, error mapping, JSON-safe rows, statement checks.

Split from :mod:`runbook.actions.postgres.actions` (which holds the actions themselves, because the registry
registers the actions defined in that module) so each file stays readable. This is the one module
of the actions layer that imports psycopg and psycopg_pool: the others use the names in ``__all__``
(``Connection``, ``Cursor``, ``PgError``, ``pgsql``, ``dict_row``...).

Why a wrapper around ``psycopg_pool.ConnectionPool``: the pool connects in background workers and a
client waiting for a connection only ever sees ``PoolTimeout`` after its whole timeout, without the
cause. An on-call engineer needs "connection refused" or "role does not exist" within a second, so
:meth:`PostgresPool.connection` waits in short slices, watches the pool's connection-error counter and,
as soon as the pool failed to connect, makes one direct attempt to report the real cause (redacted).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from decimal import Decimal
from enum import Enum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from time import monotonic
from typing import Any, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable, GuardrailRefused
from runbook.core.redact import redact, register, secrets_in_url
from runbook.core.settings import Settings

BACKEND = "postgres"

# The psycopg types and errors the other PostgreSQL modules need, under explicit names.
Connection = psycopg.Connection
Cursor = psycopg.Cursor
PgError = psycopg.Error
PgProgrammingError = psycopg.ProgrammingError

__all__ = [
    "BACKEND",
    "Connection",
    "Cursor",
    "PgError",
    "PgProgrammingError",
    "PostgresPool",
    "Table",
    "bind_params",
    "budget_ms",
    "check_role",
    "compose",
    "dict_row",
    "error_text",
    "escape_percent",
    "get_pool",
    "json_safe",
    "map_error",
    "pgsql",
    "pool_factory",
    "resolve_table",
    "row_text",
    "set_timeouts",
    "stream_rows",
    "unescape_percent",
]
POOL_KEY = "postgres.pool"
POOL_MAX_SIZE = 5
# How often a waiting client looks at the pool's error counter: the delay before a refused
# connection is reported.
_SLICE = 0.2
_MARGIN = 0.25  # seconds kept back from the step budget so our own error beats the engine's timeout


def _reset(conn: psycopg.Connection[Any]) -> None:
    """Return a pooled connection to a pristine session before the next step borrows it.

    A playbook's SQL may change session state (``SET search_path``, temp tables); the next step,
    perhaps a destructive one, must not inherit it. ``DISCARD ALL`` cannot run inside a transaction.
    """
    conn.autocommit = True
    try:
        conn.execute("DISCARD ALL")
    finally:
        conn.autocommit = False


class PostgresPool:
    """The pool of connections to the inspected database (``DATABASE_URL``) for one run.

    Built by :func:`pool_factory` through ``ctx.connections``; ``close()`` is called by
    ``Connections.close()`` at the end of the run.
    """

    def __init__(self, url: str, *, max_size: int = POOL_MAX_SIZE) -> None:
        register(secrets_in_url(url))  # psycopg error text may echo parts of the DSN
        self.url = url
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            # No connection is opened before a step asks for one: a run that never touches
            # PostgreSQL must not fail (or log reconnect noise) because it is down.
            min_size=0,
            max_size=max_size,
            open=True,
            name="runbook-postgres",
            kwargs={
                "connect_timeout": 10,
                "application_name": "runbook",
                # Playbook SQL is arbitrary and connections are shared: no server-side
                # prepared statements to go stale after DISCARD ALL.
                "prepare_threshold": None,
            },
            reset=_reset,
            reconnect_timeout=60,
        )

    @contextmanager
    def connection(self, budget: float) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection within ``budget`` seconds, or :class:`BackendUnavailable` with the cause.

        Whatever the caller left open is rolled back on the way out: read-only work never commits,
        and a failed statement never leaves a transaction (or its locks) behind in the pool.
        """
        conn = self._acquire(budget)
        try:
            yield conn
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
            self.pool.putconn(conn)

    def _acquire(self, budget: float) -> psycopg.Connection[Any]:
        deadline = monotonic() + max(budget, 0.1)
        errors_before = self.pool.get_stats().get("connections_errors", 0)
        while True:
            left = deadline - monotonic()
            if left <= 0:
                raise BackendUnavailable(
                    f"no connection within {budget:.1f}s (all {self.pool.max_size} pooled connections busy"
                    " or the server is slow to accept)",
                    backend=BACKEND,
                )
            try:
                return self.pool.getconn(timeout=min(_SLICE, left))
            except PoolTimeout:
                pass
            if self.pool.get_stats().get("connections_errors", 0) > errors_before:
                cause = self._probe(deadline - monotonic())
                if cause is not None:
                    raise BackendUnavailable(f"cannot connect: {cause}", backend=BACKEND)
                errors_before = self.pool.get_stats().get("connections_errors", 0)

    def _probe(self, left: float) -> str | None:
        """Connect once directly to learn why the pool cannot (``None``: it works now)."""
        try:
            # libpq's connect_timeout is whole seconds and at least 2 in practice.
            conn = psycopg.connect(self.url, connect_timeout=max(2, math.ceil(left)), autocommit=True)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, redacted
            return error_text(exc)
        conn.close()
        return None

    def close(self) -> None:
        self.pool.close(timeout=2)


def pool_factory(settings: Settings) -> PostgresPool:
    """``ctx.connections`` factory: the pool for ``DATABASE_URL`` (``settings.database_inspect_url``)."""
    url = settings.database_inspect_url
    if not url:
        raise ActionError(
            "DATABASE_URL is not set: it names the PostgreSQL database playbooks inspect", backend=BACKEND
        )
    return PostgresPool(url)


def get_pool(ctx: ActionContext) -> PostgresPool:
    """The run's pool (shared by every PostgreSQL step of the run)."""
    return ctx.connections.get(POOL_KEY, pool_factory)


def error_text(exc: BaseException) -> str:
    """One redacted line: psycopg messages can carry the DSN and, after a newline, query text."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0].removeprefix("connection failed: ")
    return redact(first)


def budget_ms(ctx: ActionContext) -> int:
    """The statement timeout for this step: what is left of its budget, minus a small margin."""
    return max(100, int((ctx.remaining() - _MARGIN) * 1000))


def set_timeouts(cur: psycopg.Cursor[Any], ctx: ActionContext, *, lock_timeout_ms: int | None = None) -> None:
    """Bound every statement of the current transaction by the step's remaining time."""
    cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(budget_ms(ctx)),))
    if lock_timeout_ms is not None:
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(lock_timeout_ms),))


def map_error(exc: psycopg.Error, ctx: ActionContext, what: str) -> ActionError:
    """Translate a psycopg error into the action error an operator reads on the timeline."""
    if isinstance(exc, pg_errors.QueryCanceled):
        return ActionError(
            f"{what} cancelled: statement timeout ({budget_ms(ctx) / 1000:.1f}s, the step's budget)",
            backend=BACKEND,
        )
    if isinstance(exc, pg_errors.LockNotAvailable):
        return ActionError(
            f"{what}: rows or table locked by another transaction ({error_text(exc)})", backend=BACKEND
        )
    # No SQLSTATE (client side), class 08 (connection exception) or 57P (server shutting down,
    # backend terminated): the server went away, not the statement's fault.
    state = exc.sqlstate or ""
    if isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(("08", "57P"))):
        return BackendUnavailable(f"{what}: connection lost ({error_text(exc)})", backend=BACKEND)
    return ActionError(f"{what} failed: {error_text(exc)}", backend=BACKEND)


# -- JSON-safe values --------------------------------------------------------------------------
_IP_TYPES = (IPv4Address, IPv6Address, IPv4Interface, IPv6Interface, IPv4Network, IPv6Network)


def json_safe(value: Any) -> Any:
    """A value later steps, the timeline and Slack can serialise: ISO times, floats, strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | Enum) or isinstance(value, _IP_TYPES):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


# -- shared statement helpers ------------------------------------------------------------------
_LONE_PERCENT = re.compile(r"%(?!\([^)]+\)[sbt]|%)")


def escape_percent(text: str) -> str:
    """``text`` with every ``%`` that is not a ``%(name)s`` placeholder doubled for psycopg.

    Playbook authors write SQL as they would in psql (``LIKE 'plans-%'``) plus named placeholders;
    psycopg would reject the lone ``%``."""
    return _LONE_PERCENT.sub("%%", text)


def bind_params(statement: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement with lone ``%`` escaped, and its params (always passed, possibly empty, so
    placeholders are parsed the same way whether or not the step has any)."""
    return escape_percent(statement), dict(params)


def compose(sql: str, table: Table | None) -> pgsql.Composed:
    """The statement to send: the playbook's text with ``{table}`` replaced by the catalog's quoted
    name of the resolved table (``psycopg.sql.Identifier``); nothing else is ever spliced in.

    ``sql`` has passed :func:`runbook.actions.postgres.sql.template_parts` (no other braces)."""
    from runbook.actions.postgres.sql import PLACEHOLDER, template_parts

    parts = template_parts(sql)
    if len(parts) > 1 and table is None:
        raise ActionError(f"sql uses {PLACEHOLDER} but the step names no table:", backend=BACKEND)
    pieces: list[pgsql.Composable] = []
    for i, part in enumerate(parts):
        if i:
            assert table is not None
            pieces.append(table.identifier())
        pieces.append(pgsql.SQL(escape_percent(part)))
    return pgsql.Composed(pieces)


def stream_rows(
    cur: psycopg.Cursor[dict[str, Any]], statement: pgsql.Composed, args: dict[str, Any]
) -> Generator[dict[str, Any], None, None]:
    """``cur.stream(statement, args)``: the rows one by one, as the generator psycopg returns.

    psycopg annotates ``stream`` as a plain ``Iterator``; it is a generator, and ``close()`` on it
    cancels the rest of the result on the server (what a caller that stops early must do)."""
    return cast(Generator[dict[str, Any], None, None], cur.stream(statement, args))


def unescape_percent(text: str) -> str:
    return text.replace("%%", "%")


def row_text(row: dict[str, Any], limit: int = 120) -> str:
    text = ", ".join(f"{k}={v}" for k, v in row.items())
    return redact(text if len(text) <= limit else text[: limit - 1] + "…")


class Table(BaseModel):
    oid: int
    schema_name: str
    name: str
    kind: str

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.name}"

    def identifier(self) -> pgsql.Composed:
        return pgsql.SQL("{}.{}").format(pgsql.Identifier(self.schema_name), pgsql.Identifier(self.name))


SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
KINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}


def resolve_table(cur: psycopg.Cursor[Any], name: str, *, kinds: str = "rpv") -> Table:
    """The table ``name`` resolves to on the search path, or ActionError if there is none."""
    try:
        cur.execute(
            "SELECT c.oid::bigint AS oid, n.nspname AS schema_name, c.relname AS name, c.relkind AS kind"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            (name,),
        )
    except psycopg.errors.InvalidName as exc:  # e.g. too many dots
        raise ActionError(f"bad table name {name!r}: {error_text(exc)}", backend=BACKEND) from None
    row = cur.fetchone()
    if row is None:
        raise ActionError(f"table {name!r} does not exist (or is not visible to this role)", backend=BACKEND)
    table = Table.model_validate(dict(row) if not isinstance(row, dict) else row)
    if table.schema_name in SYSTEM_SCHEMAS or table.schema_name.startswith(("pg_toast", "pg_temp")):
        raise ActionError(
            f"{table.qualified} is a system catalog; playbook steps never read or change those",
            backend=BACKEND,
        )
    if table.kind not in kinds:
        raise ActionError(
            f"{table.qualified} is a {KINDS.get(table.kind, table.kind)}, not one of"
            f" {', '.join(KINDS[k] for k in kinds)}",
            backend=BACKEND,
        )
    return table


# -- least privilege ---------------------------------------------------------------------------
DANGEROUS_ROLES = (
    "pg_signal_backend",
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
)
_ROLE_SQL = (
    "SELECT current_user AS role, session_user AS session_role,"
    " coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false) AS super,"
    " coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = session_user), false) AS session_super, "
    + ", ".join(f"pg_has_role(session_user, '{r}', 'MEMBER') AS {r}" for r in DANGEROUS_ROLES)
)
LEAST_PRIVILEGE_HELP = (
    "connect DATABASE_URL as a least-privilege role instead, e.g. CREATE ROLE runbook_reader LOGIN;"
    " GRANT pg_read_all_data TO runbook_reader (or GRANT SELECT on the tables playbooks read), plus"
    " only the UPDATE/DELETE/INSERT grants your gated steps need (docs/SECURITY.md, PostgreSQL)"
)


def check_role(cur: psycopg.Cursor[Any], what: str) -> None:
    """Refuse to run playbook SQL as a role that can do more than SQL on tables.

    A superuser, or a member of ``pg_signal_backend`` / ``pg_execute_server_program`` /
    ``pg_read_server_files`` / ``pg_write_server_files``, can kill sessions, run programs on the
    database host and read or write its files from inside a plain SELECT (``COPY ... TO PROGRAM``,
    ``pg_read_file``, ``pg_terminate_backend``); a READ ONLY transaction does not stop any of that.
    Checked on every call, for the session user (what the connection logged in as) too, so a
    ``SET ROLE`` to a lesser role does not hide a superuser login."""
    cur.execute(_ROLE_SQL)
    row = cur.fetchone()
    assert row is not None
    info = dict(row) if not isinstance(row, dict) else row
    if info["super"] or info["session_super"]:
        is_ = "a superuser"
    else:
        members = [r for r in DANGEROUS_ROLES if info[r]]
        if not members:
            return
        is_ = "a member of " + ", ".join(members)
    raise GuardrailRefused(
        f"{what} refused: DATABASE_URL connects as role {info['session_role']!r}, which is {is_}:"
        " it could signal backends, run programs or read server files from playbook SQL;"
        f" {LEAST_PRIVILEGE_HELP}",
        backend=BACKEND,
    )
