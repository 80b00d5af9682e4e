"""Lint: every problem of a playbook at once, each as ``FILE:LINE:COL: message``.

Three passes over the same loaded source: YAML syntax (``yamlsource``), structure (the pydantic model)
and meaning (actions and their parameters, expressions and what they reference, approval rules). The
meaning pass works on the raw data, so a structural error elsewhere never hides it. Nothing here
raises for a bad playbook: problems are values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runbook.actions.registry import ActionRegistry, ActionSpec
from runbook.core.expressions import TemplateSyntaxError, is_expression, parse_template, references
from runbook.spec.models import Playbook
from runbook.spec.results import result_field_problems, role_warnings
from runbook.spec.yamlsource import (
    Path_,
    Problem,
    Source,
    UnreadableSource,
    load_source,
    read_source_text,
    strings_in,
)

PLAYBOOK_SUFFIXES = (".yaml", ".yml")


class PlaybookError(Exception):
    """A playbook that does not lint clean; ``problems`` has every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _clean_msg(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _dotted(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _model_problems(src: Source, exc: ValidationError, base: Path_ = (), model: Any = None) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = (*base, *err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _fields_at(model or Playbook, err["loc"][:-1]) if not base else _fields_at(model, ())
            key = str(loc[-1])
            problems.append(src.problem(loc, f"unknown key '{key}'{_suggest(key, allowed)}", key=True))
        elif kind == "missing":
            where = _dotted(loc[:-1]) or "playbook"
            problems.append(src.problem(loc[:-1], f"{where}: missing required field '{loc[-1]}'"))
        else:
            problems.append(src.problem(loc, f"{_dotted(loc)}: {_clean_msg(err['msg'])}"))
    return problems


def _fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Names a model accepts at ``loc`` (for 'did you mean')."""
    import typing

    current = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part) or next(
            (f for f in getattr(current, "model_fields", {}).values() if f.alias == part), None
        )
        if field is None:
            return []
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        nested = [a for c in candidates for a in (c, *typing.get_args(c)) if hasattr(a, "model_fields")]
        current = nested[0] if nested else None
    if current is None:
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def lint_source(src: Source, registry: ActionRegistry) -> tuple[Playbook | None, list[Problem]]:
    problems = list(src.problems)
    data = src.data
    if data is None:
        return None, problems
    if not isinstance(data, dict):
        return None, [*problems, src.problem((), "a playbook is a mapping (name:, title:, steps: ...)")]
    playbook: Playbook | None = None
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems.extend(_model_problems(src, exc))
    problems.extend(_semantic_problems(src, data, registry))
    problems.extend(result_field_problems(src, data, registry))
    problems.sort(key=lambda p: (p.line, p.col))
    unique: list[Problem] = []
    for p in problems:
        if not unique or (p.line, p.col, p.message) != (unique[-1].line, unique[-1].col, unique[-1].message):
            unique.append(p)
    return (playbook if not unique else None), unique


def _semantic_problems(src: Source, data: dict[str, Any], registry: ActionRegistry) -> list[Problem]:
    problems: list[Problem] = []
    raw_params = data.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    problems.extend(_schedule_param_problems(src, data, params))
    problems.extend(_alert_param_problems(src, data, params))
    seen: set[str] = set()
    main_ids: list[str] = []
    for section in ("steps", "finally"):
        steps = data.get(section)
        if not isinstance(steps, list):
            continue
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            path: Path_ = (section, index)
            sid = step.get("id")
            if isinstance(sid, str):
                if sid in seen:
                    problems.append(src.problem((*path, "id"), f"duplicate step id '{sid}'"))
            earlier = set(seen) if section == "steps" else set(main_ids) | set(seen)
            problems.extend(_step_problems(src, path, step, earlier, params, registry))
            if isinstance(sid, str):
                seen.add(sid)
                if section == "steps":
                    main_ids.append(sid)
    return problems


def _step_problems(
    src: Source,
    path: Path_,
    step: dict[str, Any],
    earlier: set[str],
    params: dict[str, Any],
    registry: ActionRegistry,
) -> list[Problem]:
    problems: list[Problem] = []
    name = step.get("action")
    spec = registry.get(name) if isinstance(name, str) else None
    if isinstance(name, str) and spec is None:
        problems.append(
            src.problem((*path, "action"), f"unknown action '{name}'{_suggest(name, registry.names())}")
        )
    with_ = step.get("with", {})
    if spec is not None and isinstance(with_, dict):
        problems.extend(_param_problems(src, (*path, "with"), with_, spec))
        problems.extend(_literal_problems(src, (*path, "with"), with_, spec))
        problems.extend(_table_problems(src, path, step, with_, spec, params))
    problems.extend(_sql_template_problems(src, (*path, "with"), with_))
    if spec is not None and (spec.destructive or spec.manual):
        approval = step.get("approval")
        if not isinstance(approval, dict):
            what = "destructive" if spec.destructive else "a manual step"
            problems.append(
                src.problem(
                    (*path, "action"),
                    f"action '{name}' is {what}: add approval: {{approvers: [role, ...]}}"
                    " (or approval: {policy: none, justification: ...})",
                )
            )
        elif spec.manual and approval.get("policy") == "none":
            problems.append(src.problem((*path, "approval"), "a manual step needs someone to click Done"))
    # expressions
    deferred = spec.deferred_fields() if spec is not None else set()
    for sub, value in strings_in(with_, (*path, "with")):
        allow = {"result"} if len(sub) > len(path) + 1 and sub[len(path) + 1] in deferred else set()
        problems.extend(_expr_problems(src, sub, value, earlier, params, condition=False, allow=allow))
    when = step.get("when")
    if isinstance(when, str):
        problems.extend(_expr_problems(src, (*path, "when"), when, earlier, params, condition=True))
    approval = step.get("approval")
    if isinstance(approval, dict) and isinstance(approval.get("precondition"), str):
        pre = (*path, "approval", "precondition")
        problems.extend(_expr_problems(src, pre, approval["precondition"], earlier, params, condition=True))
    for i, ev in enumerate(step.get("evidence") or []):
        if isinstance(ev, str) and ev not in earlier:
            problems.append(src.problem((*path, "evidence", i), f"evidence '{ev}' is not an earlier step"))
    return problems


def _param_problems(src: Source, path: Path_, with_: dict[str, Any], spec: ActionSpec) -> list[Problem]:
    problems: list[Problem] = []
    fields = spec.params_model.model_fields
    accepted = {f.alias or n: n for n, f in fields.items()}
    for key in with_:
        if key not in accepted:
            problems.append(
                src.problem(
                    (*path, key),
                    f"action '{spec.name}' has no parameter '{key}'{_suggest(key, accepted)}",
                    key=True,
                )
            )
    for alias, fname in accepted.items():
        if fields[fname].is_required() and alias not in with_:
            problems.append(src.problem(path, f"action '{spec.name}' needs parameter '{alias}'"))
    literal = {k: v for k, v in with_.items() if k in accepted and not _has_expression(v)}
    try:
        spec.params_model.model_validate(literal)
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] in ("missing", "extra_forbidden") or not err["loc"]:
                continue
            key = str(err["loc"][0])
            if key not in literal:
                continue
            loc = (*path, *err["loc"])
            problems.append(
                src.problem(
                    loc, f"parameter '{_dotted(err['loc'])}' of '{spec.name}': {_clean_msg(err['msg'])}"
                )
            )
    return problems


def _literal_problems(src: Source, path: Path_, with_: dict[str, Any], spec: ActionSpec) -> list[Problem]:
    """Parameters marked ``json_schema_extra={"literal": True}`` (e.g. ``kubernetes.exec``'s ``allow``)
    are part of the reviewed playbook: no expression anywhere inside them, or a run could widen them."""
    problems: list[Problem] = []
    for name, f in spec.params_model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        key = f.alias or name
        if extra.get("literal") and key in with_:
            for sub, value in strings_in(with_[key], (*path, key)):
                if any(mark in value for mark in ("{{", "{%", "{#")):
                    problems.append(
                        src.problem(
                            sub,
                            f"parameter '{key}' of '{spec.name}' must be written out in the playbook,"
                            " not an expression",
                        )
                    )
    return problems


# -- SQL: fixed text, tables as typed values ----------------------------------------------------
_TEMPLATE_MARKS = ("{{", "{%", "{#")
TABLE_PLACEHOLDER = "{table}"


def _sql_template_problems(src: Source, path: Path_, with_: Any) -> list[Problem]:
    """A ``sql:`` value (of any action, at any depth: ``core.wait`` nests calls) is never a template.

    Parameters reach SQL only as ``%(name)s`` values and ``table:`` identifiers; text rendered from
    params or step outputs could turn into any statement."""
    problems = []
    for sub, value in strings_in(with_, path):
        if sub and sub[-1] == "sql" and any(mark in value for mark in _TEMPLATE_MARKS):
            problems.append(
                src.problem(
                    sub,
                    "sql must not contain templates ({{ ... }} or {% ... %}): pass values as %(name)s"
                    " parameters and name a table chosen at run time with table: and {table}",
                )
            )
    return problems


def _table_problems(
    src: Source,
    path: Path_,
    step: dict[str, Any],
    with_: dict[str, Any],
    spec: ActionSpec,
    params: dict[str, Any],
) -> list[Problem]:
    """``{table}`` and ``table:`` go together; an unapproved step never lets a free param pick its table."""
    fields = spec.params_model.model_fields
    if "table" not in fields:
        return []
    problems: list[Problem] = []
    sql, table = with_.get("sql"), with_.get("table")
    if "sql" in fields and isinstance(sql, str) and not _has_expression(sql):
        if TABLE_PLACEHOLDER in sql and table is None:
            problems.append(
                src.problem((*path, "with", "sql"), "sql uses {table} but the step has no table:")
            )
        if table is not None and TABLE_PLACEHOLDER not in sql:
            problems.append(
                src.problem((*path, "with", "table"), "table: is given but sql does not use {table}")
            )
    approval = step.get("approval")
    ungated = isinstance(approval, dict) and approval.get("policy") == "none"
    if ungated and spec.destructive and isinstance(table, str) and _has_expression(table):
        name = _param_reference(table)
        pspec = params.get(name) if name else None
        if not (
            isinstance(pspec, dict)
            and pspec.get("type") == "identifier"
            and isinstance(pspec.get("enum"), list)
        ):
            what = f"param '{name}'" if name else "an expression"
            fix = (
                f"declare {name}: {{type: identifier, enum: [schema.table, ...]}}"
                if name
                else "use {{ params.<name> }} of a type: identifier param with enum: [...]"
            )
            problems.append(
                src.problem(
                    (*path, "with", "table"),
                    f"a step without approval (policy: none) must not let {what} choose its table:"
                    f" {fix} (or require an approval)",
                )
            )
    return problems


def _param_reference(text: str) -> str | None:
    """``name`` when ``text`` is exactly ``{{ params.name }}``, else None."""
    import re

    match = re.fullmatch(r"\{\{\s*params\.([a-z][a-z0-9_]*)\s*\}\}", text.strip())
    return match[1] if match else None


def _unfilled_required(src: Source, i: int, given: dict[str, Any], params: dict[str, Any]) -> list[Problem]:
    """A schedule has nobody to ask: every required param without a default must come from its
    ``params`` (a maintenance window must never start without a node)."""
    missing = [
        name
        for name, raw in params.items()
        if isinstance(raw, dict) and raw.get("required") and raw.get("default") is None and name not in given
    ]
    return [
        src.problem(
            ("triggers", "schedule", i),
            f"a schedule would start runs without param '{name}' (required, no default):"
            f" pass it in triggers.schedule.{i}.params or give it a default",
        )
        for name in missing
    ]


def _schedule_param_problems(src: Source, data: dict[str, Any], params: dict[str, Any]) -> list[Problem]:
    """Values a schedule passes are checked like any run's (type, pattern, enum) at lint time."""
    from runbook.spec.models import ParamSpec

    problems: list[Problem] = []
    raw_triggers = data.get("triggers")
    triggers: dict[str, Any] = raw_triggers if isinstance(raw_triggers, dict) else {}
    raw_schedules = triggers.get("schedule")
    schedules: list[Any] = raw_schedules if isinstance(raw_schedules, list) else []
    for i, sched in enumerate(schedules):
        given = sched.get("params") if isinstance(sched, dict) else None
        problems.extend(_unfilled_required(src, i, given if isinstance(given, dict) else {}, params))
        if not isinstance(given, dict):
            continue
        for name, value in given.items():
            where = ("triggers", "schedule", i, "params", name)
            raw = params.get(name)
            if raw is None:
                problems.append(
                    src.problem(where, f"unknown param '{name}'{_suggest(name, params)}", key=True)
                )
                continue
            try:
                ParamSpec.model_validate(raw).coerce(name, value)
            except (ValidationError, ValueError) as exc:
                problems.append(src.problem(where, str(exc).splitlines()[0]))
    return problems


def _alert_param_problems(src: Source, data: dict[str, Any], params: dict[str, Any]) -> list[Problem]:
    """``triggers.alertmanager[].params``: known params, templates over ``alert`` only, literals typed."""
    from jinja2 import nodes

    from runbook.spec.models import ParamSpec

    problems: list[Problem] = []
    raw_triggers = data.get("triggers")
    triggers: dict[str, Any] = raw_triggers if isinstance(raw_triggers, dict) else {}
    entries = triggers.get("alertmanager")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        given = entry.get("params") if isinstance(entry, dict) else None
        for name, value in (given if isinstance(given, dict) else {}).items():
            where = ("triggers", "alertmanager", i, "params", name)
            if name not in params:
                problems.append(
                    src.problem(where, f"unknown param '{name}'{_suggest(name, params)}", key=True)
                )
            elif is_expression(value):
                try:
                    tree = parse_template(str(value))
                except TemplateSyntaxError as exc:
                    problems.append(src.problem(where, f"template syntax error: {exc.message}"))
                    continue
                names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} - {"alert"}
                if names:
                    message = f"alert trigger params may read only alert.*, not {sorted(names)}"
                    problems.append(src.problem(where, message))
            else:
                try:
                    ParamSpec.model_validate(params[name]).coerce(name, value)
                except (ValidationError, ValueError) as exc:
                    problems.append(src.problem(where, str(exc).splitlines()[0]))
    return problems


def _has_expression(value: Any) -> bool:
    return any(is_expression(v) for _, v in strings_in(value, ()))


def _expr_problems(
    src: Source,
    path: Path_,
    text: str,
    earlier: set[str],
    params: dict[str, Any],
    *,
    condition: bool,
    allow: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[Problem]:
    if not condition and not is_expression(text):
        return []
    try:
        tree = parse_template(text, condition=condition)
    except TemplateSyntaxError as exc:
        return [src.problem(path, f"Jinja2 syntax error in {text.strip()!r}: {exc.message}")]
    problems = []
    refs, unknown = references(tree)
    for ref in refs:
        if ref.root == "steps" and ref.name is not None and ref.name not in earlier:
            problems.append(src.problem(path, f"steps.{ref.name} is not an earlier step"))
        elif ref.root == "params" and ref.name is not None and ref.name not in params:
            problems.append(src.problem(path, f"unknown param '{ref.name}'{_suggest(ref.name, params)}"))
    for ref in unknown:
        if ref.root in allow:
            continue
        problems.append(
            src.problem(path, f"unknown name '{ref.root}' (expressions see params, steps, incident, run)")
        )
    return problems


# -- entry points ------------------------------------------------------------------------------
def lint_text(text: str, file: str, registry: ActionRegistry) -> tuple[Playbook | None, list[Problem]]:
    return lint_source(load_source(text, file), registry)


def lint_paths(
    paths: Iterable[str | Path], registry: ActionRegistry, roles: Iterable[str] | None = None
) -> list[Problem]:
    """Every problem of every playbook under ``paths``; with ``roles`` (the approvers file's), also
    a ``warning:`` for each approver role it does not define."""
    from runbook.spec.loading import playbook_files

    files, problems = playbook_files(paths)
    names: dict[str, Path] = {}
    for f in files:
        try:
            text = read_source_text(f)
        except UnreadableSource as exc:
            problems.append(exc.problem)
            continue
        playbook, found = lint_text(text, str(f), registry)
        problems.extend(found)
        if roles is not None:
            src = load_source(text, str(f))
            if isinstance(src.data, dict):
                problems.extend(role_warnings(src, src.data, roles))
        if playbook is not None:
            if playbook.name in names:
                src = load_source(text, str(f))
                problems.append(
                    src.problem(
                        ("name",), f"playbook name '{playbook.name}' is also used by {names[playbook.name]}"
                    )
                )
            names[playbook.name] = f
    return problems
