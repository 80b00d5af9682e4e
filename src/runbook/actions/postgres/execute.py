"""postgres.execute: one bounded UPDATE/DELETE/INSERT, and its side-effect-free description.

The implementation behind the destructive ``postgres.execute`` action (declared in
:mod:`runbook.actions.postgres.actions`). What the statement *is* comes from PostgreSQL's parser
(:mod:`runbook.actions.postgres.sql`); what it *did* comes from the server (command tag, row count,
the transaction's own per-table change counters), never from reading the SQL with a regex.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pglast import ast
from pglast.parser import scan
from pglast.stream import RawStream
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.postgres.client import (
    BACKEND,
    Connection,
    Cursor,
    PgError,
    Table,
    check_role,
    compose,
    dict_row,
    error_text,
    escape_percent,
    get_pool,
    json_safe,
    map_error,
    pgsql,
    resolve_table,
    set_timeouts,
)
from runbook.actions.postgres.sql import (
    PLACEHOLDER,
    Statement,
    StatementRefused,
    check_final,
    dml_statement,
    dml_target,
    func_name,
    table_placeholder_problem,
    walk,
)
from runbook.actions.registry import ActionResult
from runbook.core.identifiers import check_identifier
from runbook.core.redact import redact

DESCRIBE_LOCK_TIMEOUT_MS = 2000  # a count must not queue behind production locks for long
# Functions a describe-time count may evaluate (inside a READ ONLY transaction): pure builtins.
COUNT_SAFE_FUNCTIONS = frozenset(
    {
        "now",
        "make_interval",
        "lower",
        "upper",
        "length",
        "abs",
        "date_trunc",
        "to_timestamp",
        "greatest",
        "least",
        "jsonb_extract_path_text",
        "array_length",
        "cardinality",
        "btrim",
        "trim",
        "statement_timestamp",
        "transaction_timestamp",
        "clock_timestamp",
        "age",
    }
)


# == postgres.execute (destructive) ================================================================
class ExecuteParams(BaseModel):
    model_config = {"extra": "forbid"}

    table: str | None = Field(
        None,
        description="the table {table} in sql stands for: name or schema.name, resolved with to_regclass"
        " and quoted by the driver (use a type: identifier param to choose it at run time)",
    )
    operation: Literal["UPDATE", "DELETE", "INSERT"] | None = Field(
        None, description="the statement's verb; when given, any other statement is refused"
    )
    sql: str = Field(
        description="exactly one UPDATE, DELETE or INSERT; values as %(name)s parameters, the table as"
        " {table} (or written literally); no templates, no other braces"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="values for the %(name)s placeholders")
    max_rows: int = Field(
        ge=0,
        description="the most rows the statement (with cascades and triggers) may change; more rolls back",
    )
    allow_cascade: bool = Field(
        False,
        description="run even when foreign keys cascade from the table, or it has triggers or rules"
        " (their rows still count against max_rows)",
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return None if value is None else check_identifier(value)

    @field_validator("sql")
    @classmethod
    def _sql(cls, value: str, info: ValidationInfo) -> str:
        try:
            dml_statement(value, info.data.get("operation"))
        except StatementRefused as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _table_used(self) -> ExecuteParams:
        problem = table_placeholder_problem(self.sql, self.table)
        if problem:
            raise ValueError(problem)
        return self


class ExecuteResult(ActionResult):
    table: str = Field(description="schema-qualified target table")
    operation: str = Field(description="UPDATE, DELETE or INSERT")
    rows_affected: int = Field(
        description="rows the statement changed (dry run: would change, counted or estimated)"
    )
    cascaded_rows: int = Field(default=0, description="further rows changed by cascades, triggers and rules")
    max_rows: int
    committed: bool = Field(description="false in a dry run (nothing executed)")


# -- the shown call ------------------------------------------------------------------------------
def shown_call(params: ExecuteParams) -> str:
    """The statement and its values exactly as they will be sent, for approvers and dry runs.

    A pure function of the params (no database), so a gate could show and hash the same thing.
    Nothing is clipped. If redaction would change a single character, the call is refused instead:
    an approver must never approve something other than what they were shown."""
    text = params.sql
    if params.table is not None:
        text += f"  [{PLACEHOLDER} = {params.table}]"
    if params.params:
        text += f" with {json.dumps(json_safe(params.params), sort_keys=True, ensure_ascii=False)}"
    if redact(text) != text:
        raise GuardrailRefused(
            "the statement or its parameters hold a value that looks like a secret; an approver must"
            " see the whole call, so it is refused rather than shown redacted: keep secrets out of"
            " playbook SQL and step parameters",
            backend=BACKEND,
        )
    return text


# -- checks that need the database -------------------------------------------------------------
def _cascades(cur: Cursor[Any], table: Table, operation: str) -> list[str]:
    """What would change rows beyond the statement's own: cascading foreign keys, triggers, rules."""
    found: list[str] = []
    if operation in ("DELETE", "UPDATE"):
        column = "confdeltype" if operation == "DELETE" else "confupdtype"
        cur.execute(
            f"SELECT conname, conrelid::regclass::text AS child, {column} AS action FROM pg_constraint"
            f" WHERE contype = 'f' AND {column} IN ('c', 'n', 'd')"
            " AND (confrelid = %(t)s OR confrelid IN (SELECT relid FROM pg_partition_tree(%(t)s::regclass)))"
            " ORDER BY conname",
            {"t": table.oid},
        )
        names = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
        for r in cur.fetchall():
            found.append(f"foreign key {r['conname']} on {r['child']} ON {operation} {names[r['action']]}")
    cur.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'"
        " AND (tgrelid = %(t)s OR tgrelid IN (SELECT relid FROM pg_partition_tree(%(t)s::regclass)))"
        " ORDER BY tgname",
        {"t": table.oid},
    )
    found += [f"trigger {r['tgname']}" for r in cur.fetchall()]
    event = {"UPDATE": "2", "INSERT": "3", "DELETE": "4"}[operation]
    cur.execute(
        "SELECT rulename FROM pg_rewrite WHERE ev_class = %s AND ev_type = %s ORDER BY rulename",
        (table.oid, event),
    )
    found += [f"rule {r['rulename']}" for r in cur.fetchall()]
    return found


def _refuse_cascades(hazards: list[str], params: ExecuteParams, table: Table) -> None:
    if hazards and not params.allow_cascade:
        raise GuardrailRefused(
            f"{params_kind(params)} on {table.qualified} would also change rows through"
            f" {'; '.join(hazards)}: refused (set allow_cascade: true to run it anyway; those rows"
            " count against max_rows)",
            backend=BACKEND,
        )


def params_kind(params: ExecuteParams) -> str:
    return dml_statement(params.sql, params.operation).kind


def _target(cur: Cursor[Any], params: ExecuteParams, stmt: Statement) -> Table:
    name = params.table if stmt.uses_table else stmt.target
    assert name is not None
    return resolve_table(cur, name, kinds="rp")


def _final(conn: Connection[Any], params: ExecuteParams, stmt: Statement, table: Table) -> pgsql.Composed:
    """The composed statement, re-read by the parser with the real table name in place."""
    composed = compose(params.sql, table if stmt.uses_table else None)
    text = composed.as_string(conn)
    try:
        check_final(
            text,
            read=False,
            operation=stmt.kind,
            target=(table.schema_name, table.name) if stmt.uses_table else None,
        )
    except StatementRefused as exc:
        raise ActionError(f"execute: {exc}", backend=BACKEND) from None
    return composed


# -- describe (never runs the statement) ---------------------------------------------------------
@dataclass
class Plan:
    table: Table
    kind: str
    counted: int | None = None
    estimate: int | None = None
    notes: list[str] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)


def _count_sql(stmt: Statement, table: Table) -> str | None:
    """``SELECT count(*)`` over the statement's own WHERE, when that is a pure read; else None."""
    if stmt.kind == "INSERT" or stmt.has_from:
        return None
    if stmt.where is None:
        return "SELECT count(*) AS n FROM {table}"
    for item in walk(stmt.where):
        if isinstance(item, ast.FuncCall) and func_name(item) not in COUNT_SAFE_FUNCTIONS:
            return None
        if isinstance(item, ast.SubLink | ast.RangeFunction | ast.CurrentOfExpr):
            return None
    where = RawStream()(stmt.where)
    # back from the parser's $n to the step's %(name)s, token by token (never inside a literal)
    return f"SELECT count(*) AS n FROM {{table}}{{alias}} WHERE {where}"


def _named(text: str, names: list[str]) -> str:
    out, last = [], 0
    for tok in scan(text):
        if tok.name == "PARAM":
            index = int(text[tok.start + 1 : tok.end + 1]) - 1
            out.append(escape_percent(text[last : tok.start]))
            out.append(f"%({names[index]})s")
            last = tok.end + 1
    out.append(escape_percent(text[last:]))
    return "".join(out)


def _param_names(sql: str) -> list[str]:
    import re

    names: list[str] = []
    for m in re.finditer(r"%\((\w+)\)[sbt]", sql):
        if m[1] not in names:
            names.append(m[1])
    return names


def plan_execute(ctx: ActionContext, params: ExecuteParams) -> Plan:
    """How many rows the statement would change, found without running it.

    In a READ ONLY transaction that is always rolled back: the planner's estimate from EXPLAIN
    (without ANALYZE, which plans but executes nothing), and, when the WHERE clause only uses plain
    columns, operators and known pure builtins, an exact ``SELECT count(*)`` over the same WHERE
    and the resolved table. A function in the WHERE (which could have side effects) is never
    called: then only the estimate is given, and said to be one."""
    stmt = dml_statement(params.sql, params.operation)
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                set_timeouts(cur, ctx, lock_timeout_ms=DESCRIBE_LOCK_TIMEOUT_MS)
                check_role(cur, "execute")
                table = _target(cur, params, stmt)
                plan = Plan(table=table, kind=stmt.kind, hazards=_cascades(cur, table, stmt.kind))
                composed = _final(conn, params, stmt, table)
                args = dict(params.params)
                cur.execute("SAVEPOINT estimate")
                try:
                    cur.execute(pgsql.SQL("EXPLAIN (FORMAT JSON) ") + composed, args, binary=True)
                    row = cur.fetchone()
                    top = (row["QUERY PLAN"] if row else [{}])[0].get("Plan", {})
                    children = top.get("Plans") or [top]
                    plan.estimate = int(children[0].get("Plan Rows", 0))
                except PgError as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT estimate")
                    plan.notes.append(f"no planner estimate ({error_text(exc)})")
                count_sql = _count_sql(stmt, table)
                if count_sql is not None:
                    alias = _alias(params.sql)
                    text = _named(count_sql, _param_names(params.sql))
                    query = pgsql.SQL(text.replace("{table}", "{t}").replace("{alias}", "{a}")).format(
                        t=table.identifier(),
                        a=pgsql.SQL(" AS ") + pgsql.Identifier(alias) if alias else pgsql.SQL(""),
                    )
                    cur.execute("SAVEPOINT count")
                    try:
                        cur.execute(query, {k: v for k, v in args.items() if f"%({k})s" in text}, binary=True)
                        got = cur.fetchone()
                        plan.counted = int(got["n"]) if got else 0
                    except PgError as exc:
                        cur.execute("ROLLBACK TO SAVEPOINT count")
                        plan.notes.append(f"not counted ({error_text(exc)})")
                elif stmt.kind == "INSERT":
                    plan.notes.append("an INSERT's rows are only estimated")
                else:
                    plan.notes.append(
                        "the WHERE clause calls functions or reads other tables, so nothing runs it"
                    )
        except PgError as exc:
            raise map_error(exc, ctx, "describe execute") from None
    return plan


def _alias(sql: str) -> str | None:
    from runbook.actions.postgres.sql import _SENTINEL, parse_one, template_parts

    alias = dml_target(parse_one(_SENTINEL.join(template_parts(sql)))).alias
    return alias.aliasname if alias is not None else None


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def describe_execute(ctx: ActionContext, params: ExecuteParams) -> str:
    """What the statement would change, found without running it (see :func:`plan_execute`),
    followed by the whole statement and its values exactly as they will be sent."""
    shown = shown_call(params)
    plan = plan_execute(ctx, params)
    _refuse_cascades(plan.hazards, params, plan.table)
    if plan.counted is not None:
        what = (
            f"would change exactly {_rows(plan.counted)} of {plan.table.qualified}"
            " (counted with a read-only SELECT)"
        )
        n = plan.counted
    else:
        n = plan.estimate or 0
        what = (
            f"would change about {_rows(n)} of {plan.table.qualified} (estimated by the planner, not"
            f" counted{': ' + '; '.join(plan.notes) if plan.notes else ''})"
        )
    if plan.hazards:
        what += f"; plus rows changed through {'; '.join(plan.hazards)} (allowed by allow_cascade)"
    bound = (
        f"over the bound max_rows={params.max_rows}: execute would roll back and refuse"
        if n > params.max_rows
        else f"bound max_rows={params.max_rows}"
    )
    return f"{plan.kind} {what}; {bound}. Statement: {shown}"


# -- execute --------------------------------------------------------------------------------------
def check_outcome(operation: str, statusmessage: str | None, rowcount: int) -> int:
    """The row count the server reported, if the server says it ran the declared verb; else refuse.

    The command tag (``DELETE 3``, ``UPDATE 4``, ``INSERT 0 2``) is the server's own statement of
    what ran; a row count of -1 means it did not report one, which no bound can be checked on."""
    verb = (statusmessage or "").split(" ", 1)[0].upper()
    if verb != operation:
        raise GuardrailRefused(
            f"the server ran {verb or 'an unknown command'!r}, not the declared {operation}: rolled back,"
            " nothing changed",
            backend=BACKEND,
        )
    if rowcount < 0:
        raise GuardrailRefused(
            f"{operation} reported no row count (-1), so max_rows cannot be checked: rolled back,"
            " nothing changed",
            backend=BACKEND,
        )
    return rowcount


_CHANGES_SQL = (
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint AS n FROM pg_stat_xact_all_tables"
)


def _changed_rows(cur: Cursor[Any]) -> int:
    """Rows this transaction has inserted, updated or deleted so far, in every table (the server's
    own per-transaction counters: they include rows changed by cascades, triggers and rules)."""
    cur.execute(_CHANGES_SQL)
    row = cur.fetchone()
    if row is None:
        raise ActionError("execute: the server returned no row for its change counters", backend=BACKEND)
    return int(row["n"])


def run_execute(ctx: ActionContext, params: ExecuteParams) -> ExecuteResult:
    """The body of ``postgres.execute`` (see its docstring there)."""
    stmt = dml_statement(params.sql, params.operation)
    if ctx.dry_run:
        shown_call(params)
        plan = plan_execute(ctx, params)
        _refuse_cascades(plan.hazards, params, plan.table)
        n = plan.counted if plan.counted is not None else (plan.estimate or 0)
        how = "counted" if plan.counted is not None else "estimated"
        return ExecuteResult(
            summary=f"{plan.kind} would change {_rows(n)} of {plan.table.qualified} ({how}; dry run:"
            f" not executed) (bound {params.max_rows})",
            table=plan.table.qualified,
            operation=plan.kind,
            rows_affected=n,
            max_rows=params.max_rows,
            committed=False,
        )
    committed = False
    with get_pool(ctx).connection(ctx.remaining()) as conn:
        try:
            with conn.transaction():
                with conn.cursor(row_factory=dict_row) as cur:
                    set_timeouts(cur, ctx)
                    check_role(cur, "execute")
                    table = _target(cur, params, stmt)
                    hazards = _cascades(cur, table, stmt.kind)
                    _refuse_cascades(hazards, params, table)
                    composed = _final(conn, params, stmt, table)
                    before = _changed_rows(cur)
                    # binary=True forces the extended protocol: one statement, nothing chained.
                    cur.execute(composed, dict(params.params), binary=True)
                    count = check_outcome(stmt.kind, cur.statusmessage, cur.rowcount)
                    total = _changed_rows(cur) - before
                    cascaded = max(0, total - count)
                    if count + cascaded > params.max_rows:
                        extra = (
                            f" ({count} by the statement, {cascaded} through cascades/triggers)"
                            if cascaded
                            else ""
                        )
                        raise GuardrailRefused(
                            f"{stmt.kind} on {table.qualified} would change {count + cascaded} rows{extra},"
                            f" more than max_rows={params.max_rows}: rolled back, nothing changed",
                            backend=BACKEND,
                        )
                    committed = True
        except PgError as exc:
            raise map_error(exc, ctx, "execute") from None
    extra = f" (+{cascaded} through cascades/triggers)" if cascaded else ""
    return ExecuteResult(
        summary=f"{stmt.kind} changed {_rows(count)}{extra} of {table.qualified} (bound {params.max_rows})",
        table=table.qualified,
        operation=stmt.kind,
        rows_affected=count,
        cascaded_rows=cascaded,
        max_rows=params.max_rows,
        committed=committed,
    )
