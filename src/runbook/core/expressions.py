"""Playbook expressions: Jinja2 in a sandbox where an undefined name is an error.

``with`` values and ``when`` conditions are templates over ``params``, ``steps``, ``incident`` and
``run``. A value that is exactly one ``{{ expression }}`` keeps its native type (a list stays a
list, a number a number); anything else renders to a string. The sandbox blocks attribute tricks
(``__class__`` and friends), and ``StrictUndefined`` turns a typo into an error instead of "".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes

from runbook.core.sandbox import BoundedSandbox, ExpressionError, check_size

ROOTS = ("params", "steps", "incident", "run")
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.S)


class Obj(dict):  # type: ignore[type-arg]
    """A dict whose keys win over dict methods in expressions: ``steps.x.values`` is the key
    ``values``, not ``dict.values``. Nested dicts are wrapped too (see :func:`wrap`)."""

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("__") and dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return super().__getattribute__(name)


def wrap(value: Any) -> Any:
    """``value`` with every nested dict turned into an :class:`Obj`."""
    if isinstance(value, dict):
        return Obj({k: wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@lru_cache(maxsize=1)
def environment() -> BoundedSandbox:
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["tojson"] = lambda v: json.dumps(v, default=str)
    env.filters["pct"] = lambda v, d=1: f"{float(v) * 100:.{d}f}%"
    env.globals.update(min=min, max=max, len=len, sorted=sorted, int=int, float=float, abs=abs, round=round)
    return env


def _single_expression(text: str) -> str | None:
    m = _SINGLE.match(text)
    if m and "{{" not in m.group("expr") and "}}" not in m.group("expr"):
        return m.group("expr")
    return None


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str) -> Any:
    return environment().compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(text: str) -> Any:
    return environment().from_string(text)


def _wrap(exc: Exception, text: str) -> ExpressionError:
    kind = type(exc) if isinstance(exc, ExpressionError) else ExpressionError
    return kind(f"expression {text.strip()!r}: {exc}")


def _evaluate(expr: str, context: dict[str, Any], text: str) -> Any:
    """One compiled expression evaluated within a step budget; its value bounded in size."""
    env = environment()
    with env.budget():
        result = _compiled_expression(expr)(**context)
    _check_defined(result, text)
    return check_size(result, env.output_limit, "value")


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render every template inside ``value`` (dicts and lists recursively)."""
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if not is_expression(value):
        return value
    try:
        single = _single_expression(value)
        if single is not None:
            return _evaluate(single, context, value)
        return environment().render_bounded(_compiled_template(value), context)
    except Exception as exc:  # noqa: BLE001 - jinja raises many types; all mean "bad expression"
        raise _wrap(exc, value) from None


def _check_defined(result: Any, text: str) -> None:
    from jinja2 import Undefined

    if isinstance(result, Undefined):
        result._fail_with_undefined_error()  # raises UndefinedError


def evaluate_condition(text: str, context: dict[str, Any]) -> bool:
    """A ``when``/precondition: either ``{{ expr }}`` or a bare expression."""
    expr = _single_expression(text)
    source = expr if expr is not None else text
    try:
        result = _evaluate(source, context, text)
    except Exception as exc:  # noqa: BLE001
        raise _wrap(exc, text) from None
    if isinstance(result, str):
        return result.strip().lower() not in {"", "false", "0", "no", "none"}
    return bool(result)


@dataclass(frozen=True)
class Reference:
    root: str
    name: str | None
    lineno: int


def parse_template(text: str, *, condition: bool = False) -> nodes.Template:
    """Parse for lint; raises TemplateSyntaxError."""
    env = environment()
    if condition and _single_expression(text) is None and not is_expression(text):
        return env.parse("{{ " + text + " }}")
    return env.parse(text)


def references(tree: nodes.Node) -> tuple[list[Reference], list[Reference]]:
    """(root references like ``steps.x``/``params.y``, unknown free names) found in ``tree``."""
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(True for _ in tree.find_all(nodes.For)):
        assigned.add("loop")  # Jinja's loop variable inside {% for %}
    refs: list[Reference] = []
    unknown: list[Reference] = []
    parents: dict[int, nodes.Node] = {}
    for node in tree.find_all(nodes.Node):
        for child in node.iter_child_nodes():
            parents[id(child)] = node
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or name.name in assigned:
            continue
        if name.name not in ROOTS:
            if name.name not in environment().globals:
                unknown.append(Reference(name.name, None, name.lineno))
            continue
        parent = parents.get(id(name))
        attr: str | None = None
        if isinstance(parent, nodes.Getattr) and parent.node is name:
            attr = parent.attr
        elif (
            isinstance(parent, nodes.Getitem) and parent.node is name and isinstance(parent.arg, nodes.Const)
        ):
            attr = str(parent.arg.value)
        refs.append(Reference(name.name, attr, name.lineno))
    return refs, unknown


__all__ = [
    "ExpressionError",
    "Reference",
    "TemplateSyntaxError",
    "environment",
    "evaluate_condition",
    "is_expression",
    "parse_template",
    "references",
    "render_value",
]
