"""Run parameters: a playbook's typed ``params`` turned into checked values."""

from __future__ import annotations

from typing import Any

from runbook.spec.models import Playbook


class ParamError(ValueError):
    """A run parameter that is unknown, missing or of the wrong type."""


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["queue=plans", "n=3"]`` → dict; ``k=v`` is the only accepted form."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"bad parameter {pair!r}: use -p name=value")
        out[key.strip()] = value
    return out


def coerce_params(playbook: Playbook, given: dict[str, Any]) -> dict[str, Any]:
    """Defaults applied, types checked, unknown and missing names refused (all problems at once)."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in playbook.params:
            known = ", ".join(sorted(playbook.params)) or "none"
            problems.append(f"unknown param '{name}' for playbook {playbook.name} (known: {known})")
    for name, spec in playbook.params.items():
        if name in given and given[name] is not None:
            try:
                values[name] = spec.coerce(name, given[name])
            except ValueError as exc:
                problems.append(str(exc))
        elif spec.default is not None:
            values[name] = spec.coerce(name, spec.default)
        elif spec.required:
            problems.append(f"param '{name}' is required ({spec.description or spec.type})")
        else:
            values[name] = None
    if problems:
        raise ParamError("; ".join(problems))
    return values
