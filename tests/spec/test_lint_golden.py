"""Golden tests for every lint check: exact file, line, column and message.

Each case file under ``cases/`` is linted and compared line by line with the expectation here, so a
change in any position or wording is visible in review.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runbook.actions import ActionRegistry
from runbook.spec.lint import lint_paths, lint_text

CASES = Path(__file__).parent / "cases"


def lint_case(name: str, registry: ActionRegistry) -> list[str]:
    path = CASES / name
    _, problems = lint_text(path.read_text(), name, registry)
    return [str(p) for p in problems]


def test_every_semantic_and_structural_check_is_reported_at_once(registry: ActionRegistry) -> None:
    assert lint_case("many_problems.yaml", registry) == [
        "many_problems.yaml:4:1: unknown key 'colour'",
        "many_problems.yaml:7:6: params.n: param default: expected integer, got 'x'",
        "many_problems.yaml:11:14: triggers.pagerduty.0.title: bad regular expression '(unclosed':"
        " missing ), unterminated subpattern at position 0",
        "many_problems.yaml:13:13: triggers.schedule.0.cron: bad cron expression '61 * * * *':"
        " five fields, e.g. '0 7 * * *'",
        "many_problems.yaml:15:17: triggers.schedule.1.timezone: unknown timezone 'Mars/Base'",
        "many_problems.yaml:19:18: steps.b is not an earlier step",
        "many_problems.yaml:19:37: action 'core.assert' has no parameter 'mesage' (did you mean 'message'?)",
        "many_problems.yaml:22:65: parameter 'interval' of 'core.wait': Input should be a valid number,"
        " unable to parse string as a number",
        "many_problems.yaml:23:14: steps.1.timeout: bad duration '5 minutes': use e.g. 30s, 15m, 1h",
        "many_problems.yaml:24:9: duplicate step id 'b'",
        "many_problems.yaml:25:13: unknown action 'core.nope' (did you mean 'core.set'?)",
        "many_problems.yaml:27:13: action 'core.manual' is a manual step: add approval:"
        " {approvers: [role, ...]} (or approval: {policy: none, justification: ...})",
        "many_problems.yaml:28:26: unknown param 'queu' (did you mean 'queue'?)",
        "many_problems.yaml:31:11: Jinja2 syntax error in '{{ steps.a.passed and':"
        " unexpected 'end of template'",
        "many_problems.yaml:32:18: unknown name 'foo' (expressions see params, steps, incident, run)",
        "many_problems.yaml:33:5: action 'core.set' needs parameter 'values'",
    ]


def test_yaml_syntax_error_names_line_and_column(registry: ActionRegistry) -> None:
    assert lint_case("syntax_error.yaml", registry) == [
        "syntax_error.yaml:7:1: YAML syntax error: expected ',' or '}', but got '<stream end>'"
    ]


def test_structure_missing_fields_destructive_gates_and_duplicate_keys(registry: ActionRegistry) -> None:
    assert lint_case("structure.yaml", registry) == [
        "structure.yaml:1:1: playbook: missing required field 'title'",
        "structure.yaml:1:7: name: String should match pattern '^[a-z][a-z0-9_-]*$'",
        "structure.yaml:5:13: action 'postgres.execute' is destructive: add approval:"
        " {approvers: [role, ...]} (or approval: {policy: none, justification: ...})",
        "structure.yaml:10:15: steps.1.approval: approval policy none needs a justification",
        "structure.yaml:13:57: parameter 'max_rows' of 'postgres.execute': Input should be a valid integer,"
        " unable to parse string as an integer",
        "structure.yaml:14:42: steps.2.approval.timeout: bad duration 'soon': use e.g. 30s, 15m, 1h",
        "structure.yaml:15:17: steps.2.on_failure: Input should be 'abort' or 'continue'",
        "structure.yaml:23:5: duplicate key 'with'",
    ]


def test_shipped_playbooks_and_design_example_lint_clean(registry: ActionRegistry) -> None:
    root = Path(__file__).resolve().parents[2]
    assert [str(p) for p in lint_paths([root / "playbooks"], registry)] == []


def test_cli_lint_exit_codes_and_format(tmp_path: Path) -> None:
    good = Path(__file__).resolve().parents[2] / "playbooks"
    ok = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "lint", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "runbook.cli",
            "lint",
            str(CASES / "syntax_error.yaml"),
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "Traceback" not in bad.stdout + bad.stderr
    lines = bad.stdout.strip().splitlines()
    assert lines[0].endswith("missing:1:1: no such file or directory")
    assert lines[1].endswith(
        "syntax_error.yaml:7:1: YAML syntax error: expected ',' or '}', but got '<stream end>'"
    )


NO_TEMPLATES = (
    "sql must not contain templates ({{ ... }} or {% ... %}): pass values as %(name)s parameters"
    " and name a table chosen at run time with table: and {table}"
)


def _ungated_table(param: str) -> str:
    return (
        f"a step without approval (policy: none) must not let param '{param}' choose its table:"
        f" declare {param}: {{type: identifier, enum: [schema.table, ...]}} (or require an approval)"
    )


def test_sql_safety_templates_tables_identifier_params_and_statements(registry: ActionRegistry) -> None:
    """Issue 12: no template in any sql: (nested calls too), {table} and table: together, a policy-none
    step's table only from an identifier param with enum, identifier/pattern/enum params checked
    (defaults and schedule values), and statements read by PostgreSQL's parser."""
    assert lint_case("sql_safety.yaml", registry) == [
        "sql_safety.yaml:7:23: param stats: 'attune.other' is not one of ['attune.queue_stats']",
        "sql_safety.yaml:7:44: param queue: 'bad queue' does not match the pattern '[a-z][a-z0-9-]*'",
        "sql_safety.yaml:12:16: params.bad_default: param default: 'x; DROP TABLE y' is not a plain table"
        " name: use name or schema.name (letters, digits and _, starting with a letter or _; no quotes,"
        " spaces or other characters)",
        "sql_safety.yaml:14:16: params.bad_pattern: bad regular expression '(unclosed': missing ),"
        " unterminated subpattern at position 0",
        f"sql_safety.yaml:18:17: {NO_TEMPLATES}",
        f"sql_safety.yaml:23:19: {NO_TEMPLATES}",
        "sql_safety.yaml:27:17: parameter 'sql' of 'postgres.query': postgres.query runs only SELECT,"
        " VALUES, TABLE, SHOW or EXPLAIN (without ANALYZE), not COPY; changes go through the gated"
        " postgres.execute",
        "sql_safety.yaml:30:17: sql uses {table} but the step has no table:",
        "sql_safety.yaml:33:19: table: is given but sql does not use {table}",
        f"sql_safety.yaml:36:19: {_ungated_table('free')}",
        f"sql_safety.yaml:40:19: {_ungated_table('text_table')}",
        "sql_safety.yaml:48:45: parameter 'sql' of 'postgres.execute': sql holds 2 statements; exactly one"
        " is run (no ';'-separated batches)",
        "sql_safety.yaml:52:17: parameter 'sql' of 'postgres.execute': sql may contain braces only as the"
        " {table} placeholder; found '{' elsewhere: pass JSON or array literals as a %(name)s parameter"
        " (e.g. %(result)s::jsonb)",
    ]
