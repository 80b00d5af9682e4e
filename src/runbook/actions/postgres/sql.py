"""What a playbook's SQL is, read by PostgreSQL's own parser (``pglast``), never by a regex.

Both PostgreSQL actions take SQL written in the playbook, so this module decides what a statement
*is* the way the server will: block comments nest (``/* /* */ TRUNCATE t */ UPDATE ...`` is an
UPDATE; a regex that stops at the first ``*/`` reads it as something else), ``WITH`` clauses can hide
writes, and a "SELECT" can lock rows or create a table (``SELECT ... INTO``).

The statement text is fixed by the playbook. Values come in only as ``%(name)s`` parameters (sent
separately, never spliced), and a table chosen at run time only through the ``{table}``
placeholder, which is filled with the catalog's own quoted name (``psycopg.sql.Identifier``) of
what the step's ``table:`` resolved to. Braces have no meaning in SQL outside literals, so any other
``{`` or ``}`` is refused rather than escaped: JSON and array literals go in as parameters. Jinja
(``{{ ... }}``) can therefore never shape a statement; lint refuses it in ``sql:`` too.

The checks here are static (they run when params are validated, so ``runbook lint`` reports them
with the value's line and column); the actions re-check the final text, with the real table name in
place, right before sending it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

PLACEHOLDER = "{table}"
# What {table} stands for while the statement is parsed: an unquoted identifier no playbook uses.
_SENTINEL = "runbook_table_placeholder_q7"
_NAMED = re.compile(r"%\((\w+)\)[sbt]")
_BRACE = re.compile(r"[{}]")

# Functions whose *call* is a side effect (sessions, files, programs, server state, other
# databases) or changes the session a pooled connection keeps. Refused by name in both actions as
# defence in depth; the guarantees are the role check (no superuser, no pg_signal_backend, no
# server-file or -program roles) and, for postgres.query, the READ ONLY transaction.
SIDE_EFFECT_FUNCTIONS = frozenset(
    {
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_log_backend_memory_contexts",
        "pg_logical_emit_message",
        "pg_create_logical_replication_slot",
        "pg_create_physical_replication_slot",
        "pg_drop_replication_slot",
        "pg_replication_origin_create",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_file_write",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "lo_create",
        "lo_creat",
        "lo_put",
        "lo_from_bytea",
        "set_config",
        "pg_notify",
        "setval",
        "nextval",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_all",
        "pg_advisory_unlock_shared",
        "txid_current",
        "pg_current_xact_id",
    }
)
_SIDE_EFFECT_PREFIXES = ("dblink", "pg_file_", "lo_", "pg_replication_")

READ_KINDS = ("SELECT", "VALUES", "TABLE", "SHOW", "EXPLAIN")
DML_KINDS = ("UPDATE", "DELETE", "INSERT")
_DML_NODES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


class StatementRefused(ValueError):
    """A statement the action will not run; the message says why and what to write instead."""


@dataclass(frozen=True)
class Statement:
    """One statement, parsed: its kind and, for DML, the table it names."""

    kind: str  # SELECT, VALUES, TABLE, SHOW, EXPLAIN, UPDATE, DELETE or INSERT
    uses_table: bool  # the text names its table through {table}
    target: str | None  # DML: "schema.name" / "name" as written, or PLACEHOLDER
    where: ast.Node | None = None  # DML: the WHERE clause (UPDATE/DELETE)
    has_from: bool = False  # UPDATE ... FROM / DELETE ... USING


def walk(node: Any) -> Iterator[ast.Node]:
    """``node`` and every node below it (``node`` may be a node, a tuple or list of them, or a leaf)."""
    if isinstance(node, ast.Node):
        yield node
        for name in node:  # a node iterates over its attribute names
            yield from walk(getattr(node, name, None))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from walk(item)


def template_parts(sql: str) -> list[str]:
    """The text around each ``{table}``; :class:`StatementRefused` for any other brace."""
    parts = sql.split(PLACEHOLDER)
    for part in parts:
        stray = _BRACE.search(part)
        if stray:
            if part[stray.start() : stray.start() + 2] in ("{{", "{%", "{#"):
                raise StatementRefused(
                    "sql must not contain templates ({{ ... }} or {% ... %}): pass values as %(name)s"
                    " parameters and name the table with table: and {table}"
                )
            raise StatementRefused(
                f"sql may contain braces only as the {PLACEHOLDER} placeholder; found {part[stray.start()]!r}"
                " elsewhere: pass JSON or array literals as a %(name)s parameter (e.g. %(result)s::jsonb)"
            )
    return parts


def parse_one(text: str) -> ast.Node:
    """The single statement of ``text`` (``%(name)s`` parameters allowed), parsed as the server would."""
    numbered: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbered.setdefault(match[1], len(numbered) + 1)}"

    parsable = _NAMED.sub(number, text).replace("%%", "%")
    try:
        stmts = parse_sql(parsable)
    except ParseError as exc:
        raise StatementRefused(f"not valid SQL: {exc}") from None
    if len(stmts) != 1:
        raise StatementRefused(
            f"sql holds {len(stmts)} statements; exactly one is run (no ';'-separated batches)"
        )
    stmt = stmts[0].stmt
    if stmt is None:
        raise StatementRefused("sql holds no statement")
    return stmt


def func_name(call: ast.FuncCall) -> str:
    """The called function's name, lower case, without its schema (``pg_catalog.now`` -> ``now``)."""
    return str(call.funcname[-1].sval).lower() if call.funcname else ""


def dml_target(node: ast.Node) -> ast.RangeVar:
    """The table an UPDATE, DELETE or INSERT names; :class:`StatementRefused` for anything else."""
    rel = node.relation if isinstance(node, ast.UpdateStmt | ast.DeleteStmt | ast.InsertStmt) else None
    if rel is None:
        raise StatementRefused(f"{_kind(node)} names no target table; execute runs UPDATE, DELETE or INSERT")
    return rel


def _func_names(node: ast.Node) -> Iterator[str]:
    for item in walk(node):
        if isinstance(item, ast.FuncCall):
            yield func_name(item)


def _refuse_side_effect_calls(node: ast.Node) -> None:
    for name in _func_names(node):
        if name in SIDE_EFFECT_FUNCTIONS or name.startswith(_SIDE_EFFECT_PREFIXES):
            raise StatementRefused(
                f"calls {name}(), a function with side effects (sessions, files, server or session"
                " state); playbook SQL may not call it"
            )


def _check_placeholder(node: ast.Node, text: str) -> bool:
    """Whether the statement uses {table}; refuses a {table} anywhere but where a table name goes."""
    uses = text.count(_SENTINEL)
    if not uses:
        return False
    as_table = sum(
        1
        for item in walk(node)
        if isinstance(item, ast.RangeVar) and item.relname == _SENTINEL and not item.schemaname
    )
    if as_table != uses:
        raise StatementRefused(
            f"{PLACEHOLDER} may only stand where a table name goes (FROM {PLACEHOLDER}, UPDATE"
            f" {PLACEHOLDER}, ...), not in a literal, comment, column reference or after a schema:"
            " use an alias for columns (UPDATE {table} AS t ... WHERE t.id = ...)"
        )
    return True


def _statement(sql: str) -> tuple[ast.Node, bool]:
    if _SENTINEL in sql:
        raise StatementRefused(f"sql must not contain the reserved name {_SENTINEL}")
    text = _SENTINEL.join(template_parts(sql))
    node = parse_one(text)
    return node, _check_placeholder(node, text)


def _kind(node: ast.Node) -> str:
    if isinstance(node, ast.SelectStmt):
        if node.valuesLists:
            return "VALUES"
        return "SELECT"
    names = {
        ast.VariableShowStmt: "SHOW",
        ast.ExplainStmt: "EXPLAIN",
        ast.UpdateStmt: "UPDATE",
        ast.DeleteStmt: "DELETE",
        ast.InsertStmt: "INSERT",
        ast.CopyStmt: "COPY",
        ast.MergeStmt: "MERGE",
        ast.TruncateStmt: "TRUNCATE",
        ast.DropStmt: "DROP",
        ast.VariableSetStmt: "SET",
        ast.TransactionStmt: "a transaction command",
        ast.DoStmt: "DO",
        ast.CallStmt: "CALL",
        ast.CreateTableAsStmt: "CREATE TABLE AS",
    }
    for cls, name in names.items():
        if isinstance(node, cls):
            return name
    return type(node).__name__.removesuffix("Stmt").upper()


def _refuse_writes_inside(node: ast.Node, top: ast.Node | None = None) -> None:
    for item in walk(node):
        if item is top:
            continue
        if isinstance(item, _DML_NODES):
            raise StatementRefused(
                f"contains a data-modifying {_kind(item)} inside the statement (a WITH clause or"
                " subquery); its rows would not be counted or bounded"
            )
        if isinstance(item, ast.SelectStmt):
            if item.intoClause is not None:
                raise StatementRefused("SELECT ... INTO creates a table; it is not a read")
            if item.lockingClause:
                raise StatementRefused(
                    "FOR UPDATE/SHARE locks rows; a read-only step must not take row locks"
                )


def read_statement(sql: str) -> Statement:
    """A statement ``postgres.query`` may run, or :class:`StatementRefused`.

    Only SELECT, VALUES, TABLE, SHOW and EXPLAIN without ANALYZE; no writing WITH clause, no
    ``SELECT ... INTO``, no row locks, no calls of functions with side effects."""
    node, uses_table = _statement(sql)
    kind = _kind(node)
    inner = node
    if isinstance(node, ast.ExplainStmt):
        for opt in node.options or ():
            if opt.defname.lower() == "analyze" and (
                opt.arg is None
                or str(getattr(opt.arg, "sval", getattr(opt.arg, "boolval", "true"))).lower()
                not in ("false", "off", "0", "no")
            ):
                raise StatementRefused("EXPLAIN ANALYZE runs the statement; use EXPLAIN without ANALYZE")
        if node.query is None:
            raise StatementRefused("EXPLAIN names no statement")
        inner = node.query
    if not isinstance(inner, ast.SelectStmt | ast.VariableShowStmt):
        raise StatementRefused(
            f"postgres.query runs only SELECT, VALUES, TABLE, SHOW or EXPLAIN (without ANALYZE),"
            f" not {_kind(inner)}; changes go through the gated postgres.execute"
        )
    _refuse_writes_inside(node)
    _refuse_side_effect_calls(node)
    return Statement(kind=kind, uses_table=uses_table, target=None)


def dml_statement(sql: str, operation: str | None = None) -> Statement:
    """A statement ``postgres.execute`` may run, or :class:`StatementRefused`.

    Exactly one UPDATE, DELETE or INSERT (of ``operation`` when the step declares it), at the top
    level, on a named table; no data-modifying WITH, no side-effect function calls."""
    node, uses_table = _statement(sql)
    kind = _kind(node)
    if kind not in DML_KINDS:
        raise StatementRefused(
            f"execute runs exactly one UPDATE, DELETE or INSERT statement, not {kind}"
            " (no WITH-wrapped writes, no other commands), so that its row bound counts every changed row"
        )
    if operation is not None and kind != operation.upper():
        raise StatementRefused(f"the step declares operation {operation.upper()} but the statement is {kind}")
    _refuse_writes_inside(node, top=node)
    _refuse_side_effect_calls(node)
    rel = dml_target(node)
    target = (
        PLACEHOLDER if rel.relname == _SENTINEL else ".".join(p for p in (rel.schemaname, rel.relname) if p)
    )
    if not isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
        return Statement(kind=kind, uses_table=uses_table, target=target)
    has_from = bool(node.fromClause if isinstance(node, ast.UpdateStmt) else node.usingClause)
    return Statement(
        kind=kind, uses_table=uses_table, target=target, where=node.whereClause, has_from=has_from
    )


def check_final(
    text: str, *, read: bool, operation: str | None = None, target: tuple[str, str] | None = None
) -> None:
    """Re-read the exact text about to be sent (the table's quoted name filled in): still the same
    kind of statement and, when ``target`` is given, still aimed at that ``(schema, name)``."""
    if read:
        read_statement(text)
        return
    dml_statement(text, operation)
    if target is not None:
        rel = dml_target(parse_one(text))
        if (rel.schemaname, rel.relname) != target:
            raise StatementRefused("the statement's target changed when the table name was filled in")


def table_placeholder_problem(sql: str, table: str | None) -> str | None:
    """Why ``sql`` and ``table`` do not go together (the ``{table}`` placeholder needs a table, a
    table needs the placeholder); None when they do."""
    uses = PLACEHOLDER in sql
    if uses and table is None:
        return f"sql uses {PLACEHOLDER} but the step names no table:"
    if table is not None and not uses:
        return f"table: is given but sql does not use {PLACEHOLDER}"
    return None
