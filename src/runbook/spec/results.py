"""Lint checks that need to know what earlier steps return, and who may approve.

``steps.<id>.<field>`` is checked against the result model of the action step ``<id>`` calls, so a
typo (``steps.snapshot.mesages``) is a lint error with a suggestion instead of an expression error in
the middle of an incident. Results that accept extra fields (``core.set``'s values, etc.) are not
checked past their declared fields. Approver roles are checked against the approvers file when one
is configured (``RUNBOOK_APPROVERS``): a misspelt role would make the request expire unseen.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import nodes

from runbook.actions.registry import ActionRegistry
from runbook.core.expressions import TemplateSyntaxError, is_expression, parse_template
from runbook.spec.yamlsource import Path_, Problem, Source, strings_in

#: what every step output may hold besides its result fields (skipped, failed, dry-run outputs) and
#: the mapping methods expressions use on outputs
ALWAYS = frozenset(
    {"summary", "skipped", "why", "failed", "error", "dry_run", "would", "get", "keys", "items"}
)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _listed(names: Iterable[str], most: int = 12) -> str:
    shown = sorted(names)
    return ", ".join(shown[:most]) + (f", … ({len(shown)} in all)" if len(shown) > most else "")


def result_fields(registry: ActionRegistry, action: str) -> list[str] | None:
    """The fields ``steps.<id>.`` offers for an action; None when any field is allowed."""
    spec = registry.get(action)
    if spec is None:
        return None
    model = spec.result_model
    if model.model_config.get("extra") == "allow":
        return None
    return [f.alias or n for n, f in model.model_fields.items()]


def _step_fields(tree: nodes.Node) -> Iterator[tuple[str, str]]:
    """``(step id, field)`` for every ``steps.<id>.<field>`` (or ``steps.<id>['field']``) in ``tree``."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        inner = node.node
        if isinstance(inner, nodes.Getattr):
            sid = inner.attr
        elif isinstance(inner, nodes.Getitem) and isinstance(inner.arg, nodes.Const):
            sid = str(inner.arg.value)
        else:
            continue
        if not (isinstance(inner.node, nodes.Name) and inner.node.name == "steps"):
            continue
        if isinstance(node, nodes.Getattr):
            yield sid, node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield sid, node.arg.value


def _expressions(path: Path_, step: dict[str, Any]) -> Iterator[tuple[Path_, str, bool]]:
    for sub, text in strings_in(step.get("with", {}), (*path, "with")):
        if is_expression(text):
            yield sub, text, False
    if isinstance(step.get("when"), str):
        yield (*path, "when"), step["when"], True
    approval = step.get("approval")
    if isinstance(approval, dict) and isinstance(approval.get("precondition"), str):
        yield (*path, "approval", "precondition"), approval["precondition"], True


def _steps(data: dict[str, Any]) -> Iterator[tuple[Path_, dict[str, Any]]]:
    for section in ("steps", "finally"):
        steps = data.get(section)
        for index, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, dict):
                yield (section, index), step


def result_field_problems(src: Source, data: dict[str, Any], registry: ActionRegistry) -> list[Problem]:
    """``steps.<id>.<field>`` naming a field the action of step ``<id>`` does not return."""
    actions = {
        step["id"]: step["action"]
        for _, step in _steps(data)
        if isinstance(step.get("id"), str) and isinstance(step.get("action"), str)
    }
    problems: list[Problem] = []
    for path, step in _steps(data):
        for where, text, condition in _expressions(path, step):
            try:
                tree = parse_template(text, condition=condition)
            except TemplateSyntaxError:
                continue  # reported by the expression check
            for sid, name in dict.fromkeys(_step_fields(tree)):
                fields = result_fields(registry, actions[sid]) if sid in actions else None
                if fields is None or name in fields or name in ALWAYS:
                    continue
                hint = _suggest(name, fields) or f" (it returns {_listed(fields)})"
                message = f"steps.{sid}.{name}: '{actions[sid]}' returns no field '{name}'{hint}"
                problems.append(src.problem(where, message))
    return problems


def role_warnings(src: Source, data: dict[str, Any], roles: Iterable[str]) -> list[Problem]:
    """Approver roles the approvers file does not define (the request would expire unseen)."""
    known = sorted(roles)
    problems: list[Problem] = []
    for path, step in _steps(data):
        approval = step.get("approval")
        approvers = approval.get("approvers") if isinstance(approval, dict) else None
        for i, role in enumerate(approvers if isinstance(approvers, list) else []):
            if isinstance(role, str) and role not in known:
                message = (
                    f"warning: approver role '{role}' is not in the approvers file{_suggest(role, known)}"
                    f" (it defines {', '.join(known) or 'no roles'})"
                )
                problems.append(src.problem((*path, "approval", "approvers", i), message))
    return problems
