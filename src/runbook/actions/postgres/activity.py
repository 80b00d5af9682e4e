"""postgres.activity and connection_limits: what the server's connections are doing right now.

The implementation behind the ``postgres.activity`` action (declared in
:mod:`runbook.actions.postgres.actions`) and :func:`connection_limits`, which the ``kubernetes.scale``
guardrail imports from here to keep consumers within the DB connection budget.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from runbook.actions.context import ActionContext
from runbook.actions.postgres.client import (
    Cursor,
    PgError,
    dict_row,
    get_pool,
    json_safe,
    map_error,
    set_timeouts,
)
from runbook.actions.registry import ActionResult
from runbook.core.redact import redact


# == connection limits (used by kubernetes.scale's guardrail) =====================================
class ConnectionLimits(BaseModel):
    """How many connections the server allows and how many are in use right now."""

    max_connections: int
    superuser_reserved: int
    used: int

    @property
    def usable(self) -> int:
        """Connections ordinary roles can open: ``max_connections - superuser_reserved``."""
        return self.max_connections - self.superuser_reserved

    @property
    def available(self) -> int:
        return max(0, self.usable - self.used)


_LIMITS_SQL = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used
"""


def connection_limits(ctx: ActionContext) -> ConnectionLimits:
    """``max_connections``, reserved slots and client connections in use on ``DATABASE_URL``.

    A plain function (not an action) so other guardrails (the DB connection budget of
    ``kubernetes.scale``) share this module's pool, timeouts and error handling.
    """
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                set_timeouts(cur, ctx)
                cur.execute(_LIMITS_SQL)
                row = cur.fetchone()
        except PgError as exc:
            raise map_error(exc, ctx, "connection limits") from None
    assert row is not None
    return ConnectionLimits.model_validate(row)


# == postgres.activity =============================================================================
class ActivityParams(BaseModel):
    model_config = {"extra": "forbid"}

    long_transaction_seconds: float = Field(
        300, gt=0, description="a transaction open longer than this is reported as long-running"
    )
    idle_in_transaction_seconds: float = Field(
        60, gt=0, description="a session idle in an open transaction longer than this is a problem"
    )
    max_usage: float = Field(
        0.8,
        gt=0,
        le=1,
        description="fraction of usable connections (max - superuser reserved) that is a problem",
    )
    blocked_seconds: float = Field(
        5,
        ge=0,
        description="a query waiting on a lock longer than this is a problem (shorter waits are the"
        " normal contention of a busy database)",
    )
    database: str | None = Field(None, description="only sessions of this database (default: every database)")
    max_items: int = Field(20, ge=1, le=500, description="at most this many entries per list")


class ActivityResult(ActionResult):
    ok: bool = Field(description="no problem found")
    problems: list[str] = Field(default_factory=list, description="one line per problem found")
    max_connections: int
    superuser_reserved: int
    used: int = Field(description="client connections open (whole server)")
    usable: int = Field(description="max_connections - superuser_reserved")
    usage: float = Field(description="used / usable")
    by_state: dict[str, int] = Field(default_factory=dict, description="client connections per state")
    by_application: dict[str, int] = Field(
        default_factory=dict, description="client connections per application_name"
    )
    idle_in_transaction: int = Field(0, description="sessions idle inside an open transaction")
    long_transactions: list[dict[str, Any]] = Field(default_factory=list, description="oldest first")
    blocked: list[dict[str, Any]] = Field(
        default_factory=list, description="waiting sessions with blocked_by pids"
    )
    blockers: list[dict[str, Any]] = Field(default_factory=list, description="the sessions holding them up")
    root_blockers: list[int] = Field(
        default_factory=list, description="blocker pids that are not blocked themselves"
    )


_SESSION_COLS = """pid, usename AS user, datname AS database, application_name,
       host(client_addr) AS client_addr, state, wait_event_type, wait_event,
       round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_seconds,
       round(extract(epoch FROM now() - query_start)::numeric, 1) AS query_seconds,
       round(extract(epoch FROM now() - state_change)::numeric, 1) AS state_seconds,
       left(query, 300) AS query"""
_DB_FILTER = "(%(db)s::text IS NULL OR datname = %(db)s)"


def _sessions(
    cur: Cursor[Any], where: str, args: dict[str, Any], order: str, limit: int
) -> list[dict[str, Any]]:
    cur.execute(
        f"SELECT {_SESSION_COLS} FROM pg_stat_activity WHERE {where} ORDER BY {order} LIMIT {int(limit)}",
        args,
    )
    out = []
    for row in cur.fetchall():
        item = {k: json_safe(v) for k, v in row.items()}
        if isinstance(item.get("query"), str):
            item["query"] = redact(item["query"])  # statement text can hold literals
        out.append(item)
    return out


def snapshot_activity(ctx: ActionContext, params: ActivityParams) -> ActivityResult:
    """The body of ``postgres.activity`` (see its docstring there)."""
    args: dict[str, Any] = {
        "db": params.database,
        "long": params.long_transaction_seconds,
        "blocked": params.blocked_seconds,
    }
    client = "backend_type = 'client backend' AND pid <> pg_backend_pid()"
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                set_timeouts(cur, ctx)
                cur.execute(_LIMITS_SQL)
                limits = ConnectionLimits.model_validate(cur.fetchone())
                cur.execute(
                    "SELECT coalesce(state, 'unknown') AS k, count(*)::int AS n FROM pg_stat_activity"
                    f" WHERE backend_type = 'client backend' AND {_DB_FILTER} GROUP BY 1 ORDER BY 2 DESC, 1",
                    args,
                )
                by_state = {r["k"]: r["n"] for r in cur.fetchall()}
                cur.execute(
                    "SELECT coalesce(nullif(application_name, ''), '(none)') AS k, count(*)::int AS n"
                    f" FROM pg_stat_activity WHERE backend_type = 'client backend' AND {_DB_FILTER}"
                    f" GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {params.max_items}",
                    args,
                )
                by_app = {r["k"]: r["n"] for r in cur.fetchall()}
                long_tx = _sessions(
                    cur,
                    f"{client} AND {_DB_FILTER} AND xact_start < now() - make_interval(secs => %(long)s)",
                    args,
                    "xact_start",
                    params.max_items,
                )
                stale_idle = _sessions(
                    cur,
                    f"{client} AND {_DB_FILTER} AND state LIKE 'idle in transaction%%'"
                    " AND state_change < now() - make_interval(secs => %(idle)s)",
                    {**args, "idle": params.idle_in_transaction_seconds},
                    "state_change",
                    params.max_items,
                )
                blocked = _sessions(
                    cur,
                    f"{client} AND {_DB_FILTER} AND cardinality(pg_blocking_pids(pid)) > 0"
                    " AND query_start < now() - make_interval(secs => %(blocked)s)",
                    args,
                    "query_start",
                    params.max_items,
                )
                cur.execute(
                    "SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity"
                    " WHERE pid = ANY(%s)",
                    ([b["pid"] for b in blocked],),
                )
                blocked_by = {r["pid"]: list(r["blocked_by"]) for r in cur.fetchall()}
                for item in blocked:
                    item["blocked_by"] = blocked_by.get(item["pid"], [])
                blocker_pids = sorted({p for b in blocked for p in b["blocked_by"]})
                blockers = _sessions(
                    cur, "pid = ANY(%(pids)s)", {"pids": blocker_pids}, "pid", params.max_items
                )
                cur.execute(
                    "SELECT pid FROM unnest(%s::int[]) AS pid WHERE cardinality(pg_blocking_pids(pid)) = 0",
                    (blocker_pids,),
                )
                roots = [r["pid"] for r in cur.fetchall()]
        except PgError as exc:
            raise map_error(exc, ctx, "activity") from None

    idle_in_tx = sum(n for state, n in by_state.items() if state.startswith("idle in transaction"))
    usage = limits.used / limits.usable if limits.usable > 0 else 1.0
    problems: list[str] = []
    if usage >= params.max_usage:
        problems.append(
            f"connections {limits.used}/{limits.usable} usable ({usage:.0%}) >= {params.max_usage:.0%};"
            f" top application: {next(iter(by_app.items()), ('-', 0))[0]}"
        )
    if blocked:
        # every root blocker, oldest transaction first (up to 5): two unrelated lock chains on one
        # server must not hide each other's culprit
        root_rows = [b for b in blockers if b["pid"] in roots] or blockers[:1]
        root_rows.sort(key=lambda b: -(b["xact_seconds"] or 0))
        who = "; ".join(
            f"root blocker pid {r['pid']} ({r['application_name'] or '?'}, {r['state']},"
            f" {r['xact_seconds']}s in transaction)"
            for r in root_rows[:5]
        )
        more = f" (+{len(root_rows) - 5} more)" if len(root_rows) > 5 else ""
        count = f"{len(blocked)} blocked quer{'y' if len(blocked) == 1 else 'ies'}"
        problems.append(f"{count}; {who}{more}" if who else count)
    if long_tx:
        oldest = long_tx[0]
        problems.append(
            f"{len(long_tx)} transaction(s) open > {params.long_transaction_seconds:g}s"
            f" (oldest pid {oldest['pid']}, {oldest['xact_seconds']}s, {oldest['state']})"
        )
    if stale_idle:
        problems.append(
            f"{len(stale_idle)} session(s) idle in transaction > {params.idle_in_transaction_seconds:g}s"
            f" (pids {', '.join(str(s['pid']) for s in stale_idle[:5])})"
        )
    summary = (
        f"{limits.used}/{limits.usable} connections ({usage:.0%}), {len(blocked)} blocked,"
        f" {len(long_tx)} long transactions, {idle_in_tx} idle in transaction"
    )
    if problems:
        summary += f": {problems[0]}"
    return ActivityResult(
        summary=summary,
        ok=not problems,
        problems=problems,
        max_connections=limits.max_connections,
        superuser_reserved=limits.superuser_reserved,
        used=limits.used,
        usable=limits.usable,
        usage=round(usage, 4),
        by_state=by_state,
        by_application=by_app,
        idle_in_transaction=idle_in_tx,
        long_transactions=long_tx,
        blocked=blocked,
        blockers=blockers,
        root_blockers=roots,
    )
