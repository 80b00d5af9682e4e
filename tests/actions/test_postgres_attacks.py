"""Issue 12, classes 1, 3, 4 and 7 (PostgreSQL), attacked through the engine with the real server.

Each attack is a playbook (linted, then run by the real engine, or refused by lint / param
validation first) or a direct call of the action the engine would make. Every test asserts the
refusal message *and* that nothing changed: rows still there, sessions alive, files absent,
audit tables empty.
"""

from __future__ import annotations

import dataclasses
import os
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
from runbook.actions.postgres.execute import check_outcome
from runbook.compiler.engine import Engine, RunOptions
from runbook.compiler.params import ParamError, coerce_params
from runbook.core.settings import Settings
from runbook.spec.lint import lint_text
from runbook.store.timeline import TimelineStore
from tests.support.pg_roles import reader_url, writer_url
from tests.support.postgres import ADMIN_URL

pytestmark = pytest.mark.usefixtures("postgres_available")
HEAD = "name: attack\ntitle: Attack\nowner: red-team\n"


@pytest.fixture
def victim(admin: psycopg.Connection[Any], unique: str) -> Iterator[str]:
    name = f"rb_victim_{unique}"
    admin.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
    admin.execute(f"INSERT INTO {name} SELECT g, 'keep' FROM generate_series(1, 5) g")
    yield name
    admin.execute(f"DROP TABLE IF EXISTS {name} CASCADE")


def _count(admin: psycopg.Connection[Any], table: str) -> int:
    row = admin.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def _run(
    text: str,
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> tuple[str, dict[str, str]]:
    """Lint and run a playbook with the real engine; (run status, step id -> last failure)."""
    pb, problems = lint_text(HEAD + text, "attack.yaml", registry)
    assert not problems, [str(p) for p in problems]
    s = dataclasses.replace(settings, database_inspect_url=url)
    run_id = f"attack-{os.urandom(4).hex()}"
    outcome = Engine(s, registry, store).run(
        pb, RunOptions(run_id=run_id, params=coerce_params(pb, params or {}), dry_run=dry_run)
    )
    errors = {e.step_id: str(e.details.get("error")) for e in store.events(run_id) if e.kind == "step.failed"}
    dry = {e.step_id: str(e.details.get("would")) for e in store.events(run_id) if e.kind == "step.dry_run"}
    return outcome.status, {**errors, **{f"{k}:would": v for k, v in dry.items()}}


def _lint(text: str, registry: ActionRegistry) -> list[str]:
    return [p.message for p in lint_text(HEAD + text, "attack.yaml", registry)[1]]


# -- class 1: SQL shaped by parameters ----------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["x; DROP TABLE y", '"Victim"', "public.victim--", "a.b.c", "victim where 1=1", "pg_catalog.pg_authid "],
)
def test_identifier_params_refuse_sql_and_quoted_names(registry: ActionRegistry, value: str) -> None:
    pb, problems = lint_text(
        HEAD + "params:\n  t: {type: identifier, default: plain}\nsteps:\n  - id: s\n    action: core.set\n"
        '    with: {values: {t: "{{ params.t }}"}}\n',
        "attack.yaml",
        registry,
    )
    assert pb is not None and not problems
    with pytest.raises(ParamError, match="is not a plain table name"):
        coerce_params(pb, {"t": value})


def test_a_run_param_cannot_aim_a_query_at_a_system_catalog(
    registry: ActionRegistry, settings: Settings, store: TimelineStore
) -> None:
    text = """
params:
  t: {type: identifier, default: public.nothing}
steps:
  - id: read
    action: postgres.query
    with: {table: "{{ params.t }}", sql: "SELECT * FROM {table}"}
"""
    for target in ("pg_catalog.pg_authid", "information_schema.tables", "pg_authid"):
        status, errors = _run(text, registry, settings, store, reader_url(), params={"t": target})
        assert status == "failed"
        assert "is a system catalog; playbook steps never read or change those" in errors["read"], errors


def test_values_are_data_never_sql(
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    victim: str,
    admin: psycopg.Connection[Any],
) -> None:
    text = f"""
params:
  note: {{type: string, default: keep}}
steps:
  - id: wipe
    action: postgres.execute
    with:
      sql: "DELETE FROM {victim} WHERE note = %(note)s AND id < 0"
      params: {{note: "{{{{ params.note }}}}"}}
      max_rows: 0
    approval: {{policy: none, justification: attack test}}
"""
    for note in ("x'; DROP TABLE " + victim + "; --", "keep' OR '1'='1", "%(note)s"):
        status, errors = _run(text, registry, settings, store, writer_url(), params={"note": note})
        assert status == "completed", errors
        assert _count(admin, victim) == 5


def test_string_params_pattern_and_enum_are_enforced(registry: ActionRegistry) -> None:
    pb, problems = lint_text(
        HEAD + "params:\n  q: {type: string, default: plans, pattern: '[a-z][a-z0-9-]*'}\n"
        "  mode: {type: string, default: a, enum: [a, b]}\nsteps:\n  - id: s\n    action: core.set\n"
        '    with: {values: {q: "{{ params.q }}"}}\n',
        "attack.yaml",
        registry,
    )
    assert pb is not None and not problems
    with pytest.raises(ParamError) as info:
        coerce_params(pb, {"q": "plans; DROP TABLE x", "mode": "c"})
    assert "does not match the pattern '[a-z][a-z0-9-]*'" in str(info.value)
    assert "'c' is not one of ['a', 'b']" in str(info.value)


# -- class 3: statements read by the server's parser --------------------------------------------
@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("/* /* */ UPDATE {t} SET note = note */ TRUNCATE {t}", "not TRUNCATE"),
        ("/* /* */ UPDATE {t} SET note = note */ DROP TABLE {t}", "not DROP"),
        ("/* /* */ */ UPDATE {t} SET note = 'x' WHERE id = 1 /* */ */; DELETE FROM {t}", "not valid SQL"),
        ("DELETE FROM {t} WHERE id = 1; DROP TABLE {t}", "2 statements; exactly one is run"),
        ("UPDATE {t} SET note = 'x' WHERE id = 1; COMMIT; TRUNCATE {t}", "3 statements; exactly one is run"),
        (
            "WITH gone AS (DELETE FROM {t} RETURNING id) UPDATE {t} SET note = 'x' WHERE id = 0",
            "data-modifying",
        ),
        ("WITH gone AS (DELETE FROM {t} RETURNING id) SELECT count(*) FROM gone", "not SELECT"),
        (
            "UPDATE {t} SET note = (SELECT 'x' FROM pg_terminate_backend(1)) WHERE id = 1",
            "pg_terminate_backend",
        ),
        ("DELETE FROM {t} WHERE id = 1 AND lo_import('/etc/passwd') > 0", "lo_import"),
    ],
)
def test_execute_tricks_are_refused_and_nothing_changes(
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    victim: str,
    admin: psycopg.Connection[Any],
    sql: str,
    why: str,
) -> None:
    statement = sql.format(t=victim)
    problems = _lint(
        f'steps:\n  - id: x\n    action: postgres.execute\n    with: {{sql: "{statement}", max_rows: 100}}\n'
        "    approval: {policy: none, justification: attack}\n",
        registry,
    )
    assert any(why in p for p in problems), problems
    # the engine path (params rendered at run time) refuses the same way
    with pytest.raises(ValidationError, match=why):
        invoke(
            registry["postgres.execute"],
            ActionContext(Connections(dataclasses.replace(settings, database_inspect_url=writer_url()))),
            {"sql": statement, "max_rows": 100},
        )
    assert _count(admin, victim) == 5
    assert admin.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (victim,)).fetchone() == (1,)


def test_cascaded_deletes_are_refused_or_counted_against_max_rows(
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    victim: str,
    admin: psycopg.Connection[Any],
) -> None:
    child = f"{victim}_child"
    admin.execute(
        f"CREATE TABLE {child} (id serial PRIMARY KEY, parent int REFERENCES {victim} ON DELETE CASCADE)"
    )
    admin.execute(f"INSERT INTO {child} (parent) SELECT 1 FROM generate_series(1, 5)")
    base = f"""
steps:
  - id: prune
    action: postgres.execute
    with: {{sql: "DELETE FROM {victim} WHERE id = 1", max_rows: 3{{extra}}}}
    approval: {{policy: none, justification: attack test}}
"""
    status, errors = _run(base.replace("{extra}", ""), registry, settings, store, writer_url())
    assert status == "failed"
    assert "ON DELETE CASCADE: refused (set allow_cascade: true" in errors["prune"], errors
    status, errors = _run(
        base.replace("{extra}", ", allow_cascade: true"), registry, settings, store, writer_url()
    )
    assert status == "failed"
    assert (
        "would change 6 rows (1 by the statement, 5 through cascades/triggers), more than max_rows=3"
        in (errors["prune"])
    ), errors
    assert "rolled back, nothing changed" in errors["prune"]
    assert _count(admin, victim) == 5 and _count(admin, child) == 5


def test_trigger_writes_count_against_max_rows(
    registry: ActionRegistry, settings: Settings, victim: str, admin: psycopg.Connection[Any], unique: str
) -> None:
    audit = f"{victim}_audit"
    admin.execute(f"CREATE TABLE {audit} (id int)")
    admin.execute(
        f"CREATE FUNCTION rb_fan_{unique}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" INSERT INTO {audit} SELECT g FROM generate_series(1, 10) g; RETURN OLD; END $$"
    )
    try:
        admin.execute(
            f"CREATE TRIGGER fan BEFORE DELETE ON {victim} FOR EACH ROW EXECUTE FUNCTION rb_fan_{unique}()"
        )
        ctx = ActionContext(Connections(dataclasses.replace(settings, database_inspect_url=writer_url())))
        with pytest.raises(GuardrailRefused, match="trigger fan"):
            invoke(
                registry["postgres.execute"],
                ctx,
                {"sql": f"DELETE FROM {victim} WHERE id = 1", "max_rows": 5},
            )
        with pytest.raises(
            GuardrailRefused, match=r"11 rows \(1 by the statement, 10 through cascades/triggers\)"
        ):
            invoke(
                registry["postgres.execute"],
                ctx,
                {"sql": f"DELETE FROM {victim} WHERE id = 1", "max_rows": 5, "allow_cascade": True},
            )
        ctx.connections.close()
        assert _count(admin, victim) == 5 and _count(admin, audit) == 0
    finally:
        admin.execute(f"DROP TABLE {audit}")
        admin.execute(f"DROP TABLE {victim}")
        admin.execute(f"DROP FUNCTION rb_fan_{unique}()")


@pytest.mark.parametrize("volatility", ["VOLATILE", "IMMUTABLE"])
def test_describe_and_dry_run_never_call_side_effecting_functions(
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    victim: str,
    admin: psycopg.Connection[Any],
    unique: str,
    volatility: str,
) -> None:
    """An audit function in the WHERE: neither the approval description nor --dry-run may call it
    (an IMMUTABLE label is a lie the planner would believe: EXPLAIN runs in a READ ONLY transaction)."""
    audit = f"{victim}_audit"
    fn = f"rb_touch_{unique}"
    admin.execute(f"CREATE TABLE {audit} (at timestamptz DEFAULT now())")
    admin.execute(f"GRANT INSERT ON {audit} TO runbook_writer")
    admin.execute(
        f"CREATE FUNCTION {fn}() RETURNS boolean LANGUAGE plpgsql {volatility} AS $$ BEGIN"
        f" INSERT INTO {audit} DEFAULT VALUES; RETURN true; END $$"
    )
    try:
        text = f"""
steps:
  - id: purge
    action: postgres.execute
    with: {{sql: "DELETE FROM {victim} WHERE id > 3 AND {fn}()", max_rows: 10}}
    approval: {{approvers: [dba]}}
"""
        status, out = _run(text, registry, settings, store, writer_url(), dry_run=True)
        would = out["purge:would"]
        assert "estimated by the planner, not counted" in would and f"{fn}()" in would, out
        ctx = ActionContext(Connections(dataclasses.replace(settings, database_inspect_url=writer_url()), {}))
        described = describe(
            registry["postgres.execute"], ctx, {"sql": f"DELETE FROM {victim} WHERE {fn}()", "max_rows": 1}
        )
        dry = invoke(
            registry["postgres.execute"],
            dataclasses.replace(ctx, dry_run=True),
            {"sql": f"DELETE FROM {victim} WHERE id > 3 AND {fn}()", "max_rows": 10},
        )
        ctx.connections.close()
        assert "not counted" in described and not dry.committed
        assert _count(admin, audit) == 0 and _count(admin, victim) == 5
    finally:
        admin.execute(f"DROP TABLE {audit}")
        admin.execute(f"DROP FUNCTION {fn}()")


def test_the_approver_sees_the_whole_statement_or_nothing(
    registry: ActionRegistry, settings: Settings, victim: str, admin: psycopg.Connection[Any]
) -> None:
    ctx = ActionContext(Connections(dataclasses.replace(settings, database_inspect_url=writer_url())))
    try:
        long_where = " AND ".join(f"note <> 'n{i:03d}'" for i in range(60))  # far beyond any clip
        sql = f"UPDATE {victim} SET note = 'x' WHERE {long_where}"
        text = describe(registry["postgres.execute"], ctx, {"sql": sql, "max_rows": 10})
        assert sql in text and "…" not in text
        with pytest.raises(GuardrailRefused, match="looks like a secret.*refused rather than shown redacted"):
            describe(
                registry["postgres.execute"],
                ctx,
                {
                    "sql": f"UPDATE {victim} SET note = %(n)s WHERE id = 1",
                    "params": {"n": "password=hunter2"},
                    "max_rows": 1,
                },
            )
    finally:
        ctx.connections.close()
    assert _count(admin, victim) == 5


@pytest.mark.parametrize(
    ("tag", "rowcount", "why"),
    [
        ("DELETE 3", -1, r"no row count \(-1\)"),
        ("SELECT 3", 3, "'SELECT', not the declared DELETE"),
        ("", -1, "unknown"),
    ],
)
def test_command_tag_and_rowcount_are_the_servers_word(tag: str, rowcount: int, why: str) -> None:
    with pytest.raises(GuardrailRefused, match=why):
        check_outcome("DELETE", tag, rowcount)
    assert check_outcome("DELETE", "DELETE 0", 0) == 0


# -- class 4: read-only means read-only ----------------------------------------------------------
@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("COPY (SELECT 1) TO PROGRAM 'touch /tmp/rb_pwned'", "not COPY"),
        ("COPY {t} TO '/tmp/rb_pwned'", "not COPY"),
        ("SELECT pg_terminate_backend({pid})", "pg_terminate_backend"),
        ("SELECT pg_catalog.pg_cancel_backend({pid})", "pg_cancel_backend"),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ("SELECT * FROM {t} FOR UPDATE", "FOR UPDATE/SHARE"),
        ("SELECT * INTO rb_copy FROM {t}", "SELECT ... INTO"),
        ("EXPLAIN ANALYZE DELETE FROM {t}", "EXPLAIN ANALYZE runs the statement"),
        ("WITH d AS (DELETE FROM {t} RETURNING 1) SELECT * FROM d", "data-modifying"),
        ("SELECT 1; SELECT pg_terminate_backend({pid})", "2 statements"),
        ("/* /* */ SELECT 1 */ SELECT pg_terminate_backend({pid})", "pg_terminate_backend"),
    ],
)
def test_query_refuses_writes_programs_files_and_signals(
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    victim: str,
    admin: psycopg.Connection[Any],
    sql: str,
    why: str,
) -> None:
    bystander = psycopg.connect(ADMIN_URL, autocommit=True)
    try:
        statement = sql.format(t=victim, pid=bystander.info.backend_pid)
        with pytest.raises(ValidationError, match=why):
            invoke(
                registry["postgres.query"],
                ActionContext(Connections(dataclasses.replace(settings, database_inspect_url=reader_url()))),
                {"sql": statement},
            )
        assert bystander.execute("SELECT 1").fetchone() == (1,)  # session alive
    finally:
        bystander.close()
    assert _count(admin, victim) == 5 and not Path("/tmp/rb_pwned").exists()


@pytest.fixture
def signaller(admin: psycopg.Connection[Any], unique: str) -> Iterator[str]:
    role = f"rb_signal_{unique}"
    admin.execute(f"CREATE ROLE {role} LOGIN IN ROLE pg_read_all_data, pg_signal_backend")
    yield f"postgresql://{role}@127.0.0.1:5432/test"
    admin.execute(f"DROP ROLE {role}")


def test_query_refuses_privileged_roles_at_connection_time(
    registry: ActionRegistry, settings: Settings, store: TimelineStore, signaller: str
) -> None:
    bystander = psycopg.connect(ADMIN_URL, autocommit=True)
    try:
        text = (
            "steps:\n  - id: peek\n    action: postgres.query\n"
            '    with: {sql: "SELECT count(*) AS n FROM pg_stat_activity"}\n'
        )
        status, errors = _run(text, registry, settings, store, ADMIN_URL)
        assert status == "failed"
        assert "DATABASE_URL connects as role 'root', which is a superuser" in errors["peek"]
        assert "CREATE ROLE runbook_reader LOGIN; GRANT pg_read_all_data TO runbook_reader" in errors["peek"]
        status, errors = _run(text, registry, settings, store, signaller)
        assert status == "failed" and "which is a member of pg_signal_backend" in errors["peek"], errors
        status, _ = _run(text, registry, settings, store, reader_url())
        assert status == "completed"
        assert bystander.execute("SELECT 1").fetchone() == (1,)
    finally:
        bystander.close()


def test_execute_refuses_a_superuser_too(
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    victim: str,
    admin: psycopg.Connection[Any],
) -> None:
    text = f"""
steps:
  - id: wipe
    action: postgres.execute
    with: {{sql: "DELETE FROM {victim} WHERE id = 1", max_rows: 1}}
    approval: {{policy: none, justification: attack test}}
"""
    status, errors = _run(text, registry, settings, store, ADMIN_URL)
    assert status == "failed" and "which is a superuser" in errors["wipe"]
    assert _count(admin, victim) == 5


# -- class 7: dump files only under the data directory -------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/tmp/rb_dump_escape.csv", "../escape.csv", "a/../../escape.csv", "~/escape.csv", "link/escape.csv"],
)
def test_table_dump_refuses_paths_outside_the_dumps_folder(
    registry: ActionRegistry,
    settings: Settings,
    victim: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    home = tmp_path / "home"
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "dumps").mkdir(parents=True)
    (home / "dumps" / "link").symlink_to(outside)
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    ctx = ActionContext(Connections(dataclasses.replace(settings, database_inspect_url=reader_url())))
    try:
        with pytest.raises(ActionError, match="unsafe path.*nothing written"):
            invoke(registry["postgres.table_dump"], ctx, {"table": victim, "path": path})
    finally:
        ctx.connections.close()
    assert list(outside.iterdir()) == []
    assert not Path("/tmp/rb_dump_escape.csv").exists() and not (tmp_path / "escape.csv").exists()
    assert sorted(p.name for p in (home / "dumps").iterdir()) == ["link"]
