"""postgres.execute: one bounded UPDATE/DELETE/INSERT, and its side-effect-free description.

The implementation behind the destructive ``postgres.execute`` action (declared in
:mod:`runbook.actions.postgres`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from runbook.actions.context import ActionContext, GuardrailRefused
from runbook.actions.postgres_support import (
    BACKEND,
    Table,
    bind_params,
    dml_target,
    error_text,
    get_pool,
    json_safe,
    map_error,
    resolve_table,
    set_timeouts,
    shown_sql,
)
from runbook.actions.registry import ActionResult
from runbook.redact import redact

DESCRIBE_LOCK_TIMEOUT_MS = 2000  # a trial run must not queue behind production locks for long


# == postgres.execute (destructive) ================================================================
class ExecuteParams(BaseModel):
    model_config = {"extra": "forbid"}

    sql: str = Field(description="exactly one UPDATE, DELETE or INSERT; named parameters as %(name)s")
    params: dict[str, Any] = Field(default_factory=dict, description="values for the %(name)s placeholders")
    max_rows: int = Field(
        ge=0, description="the most rows the statement may change; if it changes more it is rolled back"
    )


class ExecuteResult(ActionResult):
    table: str = Field(description="schema-qualified target table")
    operation: str = Field(description="UPDATE, DELETE or INSERT")
    rows_affected: int = Field(description="rows the statement changed (dry run: would have changed)")
    max_rows: int
    committed: bool = Field(description="false in a dry run (rolled back)")


def _hazards(cur: psycopg.Cursor[Any], table: Table, operation: str, statement: str) -> list[str]:
    """Reasons a rolled-back trial run would still leave a trace (so describe only estimates)."""
    found: list[str] = []
    cur.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal AND tgenabled <> 'D'",
        (table.oid,),
    )
    triggers = [r["tgname"] for r in cur.fetchall()]
    if triggers:
        found.append(f"table has triggers ({', '.join(triggers[:3])})")
    if operation == "INSERT":
        cur.execute(
            "SELECT a.attname FROM pg_attribute a LEFT JOIN pg_attrdef d"
            " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped"
            " AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE %s)",
            (table.oid, "%nextval(%"),
        )
        columns = [r["attname"] for r in cur.fetchall()]
        if columns:
            found.append(f"inserting advances sequences ({', '.join(columns[:3])})")
    lowered = statement.lower()
    if "nextval" in lowered or "setval" in lowered:
        found.append("statement uses sequences")
    return found


def _estimate(cur: psycopg.Cursor[Any], statement: str, args: dict[str, Any]) -> int:
    """The planner's row estimate for the statement (EXPLAIN without ANALYZE executes nothing)."""
    # binary=True: extended protocol, so nothing can be chained after the statement.
    cur.execute("EXPLAIN (FORMAT JSON) " + statement, args, binary=True)
    row = cur.fetchone()
    plan = (row["QUERY PLAN"] if row else [{}])[0].get("Plan", {})
    children = plan.get("Plans") or [plan]
    return int(children[0].get("Plan Rows", 0))


def describe_execute(ctx: ActionContext, params: ExecuteParams) -> str:
    """Exactly how many rows the statement would change, found without changing anything.

    A trial run inside a transaction that is always rolled back gives the exact count (with a
    short lock timeout so it never queues behind production locks for long). When a rollback
    would not undo everything (triggers, sequences) or the trial cannot run in time, the planner
    estimate from EXPLAIN is given instead, and said to be one.
    """
    operation, target = dml_target(params.sql)
    statement, args = bind_params(params.sql, params.params)
    shown = f"{shown_sql(params.sql)}" + (
        f" with {redact(str(json_safe(params.params)))}" if params.params else ""
    )
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                set_timeouts(cur, ctx, lock_timeout_ms=DESCRIBE_LOCK_TIMEOUT_MS)
                table = resolve_table(cur, target)
                hazards = _hazards(cur, table, operation, params.sql)
                count: int | None = None
                estimate = 0
                if not hazards:
                    try:
                        cur.execute(statement, args, binary=True)
                        count = cur.rowcount
                    except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
                        hazards.append(f"trial run stopped: {error_text(exc)}")
                    finally:
                        conn.rollback()
                if count is None:
                    cur.execute("SET TRANSACTION READ ONLY")
                    set_timeouts(cur, ctx)
                    estimate = _estimate(cur, statement, args)
        except psycopg.Error as exc:
            raise map_error(exc, ctx, "describe execute") from None
    if count is not None:
        rows = f"{count} row{'s' if count != 1 else ''}"
        what = f"would change exactly {rows} of {table.qualified} (trial run, rolled back)"
        over = count > params.max_rows
    else:
        what = (
            f"would change about {estimate} row(s) of {table.qualified}"
            f" (planner estimate, not trial-run: {'; '.join(hazards)})"
        )
        over = estimate > params.max_rows
    bound = (
        f"over the bound max_rows={params.max_rows}: execute would roll back and refuse"
        if over
        else f"bound max_rows={params.max_rows}"
    )
    return f"{operation} {what}; {bound}. Statement: {shown}"


def run_execute(ctx: ActionContext, params: ExecuteParams) -> ExecuteResult:
    """The body of ``postgres.execute`` (see its docstring there)."""
    operation, target = dml_target(params.sql)
    statement, args = bind_params(params.sql, params.params)
    committed = False
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.transaction():
                with conn.cursor(row_factory=dict_row) as cur:
                    set_timeouts(cur, ctx)
                    table = resolve_table(cur, target)
                    # binary=True forces the extended protocol: one statement, nothing chained.
                    cur.execute(statement, args, binary=True)
                    count = cur.rowcount
                    if count > params.max_rows:
                        raise GuardrailRefused(
                            f"{operation} on {table.qualified} would change {count} rows, more than"
                            f" max_rows={params.max_rows}: rolled back, nothing changed",
                            backend=BACKEND,
                        )
                    if ctx.dry_run:
                        raise psycopg.Rollback()
                    committed = True
        except psycopg.Error as exc:
            raise map_error(exc, ctx, "execute") from None
    verb = "changed" if committed else "would change (dry run, rolled back)"
    return ExecuteResult(
        summary=f"{operation} {verb} {count} row{'s' if count != 1 else ''} of {table.qualified}"
        f" (bound {params.max_rows})",
        table=table.qualified,
        operation=operation,
        rows_affected=count,
        max_rows=params.max_rows,
        committed=committed,
    )
