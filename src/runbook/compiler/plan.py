"""``runbook plan``: the steps that would run, rendered as far as possible, touching nothing.

Values that depend on earlier steps' outputs cannot be known before the run; they are shown as the
expression with ``(at run time)``. Gated steps are marked with who must approve and the timeout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runbook.actions.registry import ActionRegistry
from runbook.core.durations import format_duration
from runbook.core.expressions import ExpressionError, is_expression, render_value
from runbook.spec.models import Playbook, Step


@dataclass
class PlannedStep:
    index: int
    step: Step
    section: str
    action: str
    destructive: bool
    manual: bool
    params: dict[str, Any] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)

    def gate_text(self) -> str:
        a = self.step.approval
        if a is None:
            return "DESTRUCTIVE, NO GATE CONFIGURED" if self.destructive else ""
        if a.policy == "none":
            return f"no approval: {a.justification}"
        parts = [f"approvers {', '.join(a.approvers)}", f"timeout {format_duration(a.timeout)}"]
        if a.min_approvals > 1:
            parts.append(f"{a.min_approvals} approvals")
        if a.two_person:
            parts.append("two-person")
        if a.on_denied == "skip":
            parts.append("skip if denied")
        return ("WAITS FOR DONE: " if self.manual else "GATED: ") + ", ".join(parts)


class _Unknown(dict):  # type: ignore[type-arg]
    def __getattr__(self, name: str) -> Any:
        raise ExpressionError("depends on an earlier step")

    def __getitem__(self, name: str) -> Any:
        raise ExpressionError("depends on an earlier step")


def plan(
    playbook: Playbook,
    params: dict[str, Any],
    registry: ActionRegistry,
    incident: dict[str, Any] | None = None,
) -> list[PlannedStep]:
    context = {
        "params": params,
        "steps": _Unknown(),
        "incident": incident or {},
        "run": {
            "id": "(plan)",
            "playbook": playbook.name,
            "dry_run": True,
            "trigger": "plan",
            "requested_by": None,
            "started_at": "",
            "statuses": {},
        },
    }
    out = []
    sections = [("steps", s) for s in playbook.steps] + [("finally", s) for s in playbook.finally_]
    for i, (section, step) in enumerate(sections, 1):
        spec = registry[step.action]
        planned = PlannedStep(i, step, section, spec.name, spec.destructive, spec.manual)
        deferred = spec.deferred_fields()
        for key, value in step.with_.items():
            if key in deferred:
                planned.params[key] = value
                continue
            try:
                planned.params[key] = render_value(value, context)
            except ExpressionError:
                planned.params[key] = value if is_expression(value) else value
                planned.deferred.append(key)
        out.append(planned)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value if " " not in value and value else json.dumps(value)
    return json.dumps(value, default=str)


def format_plan(playbook: Playbook, params: dict[str, Any], steps: list[PlannedStep]) -> str:
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "none"
    lines = [f"Plan: {playbook.name} — {playbook.title}", f"params: {shown}", ""]
    section = "steps"
    for p in steps:
        if p.section != section:
            lines.append("finally (always runs):")
            section = p.section
        mark = "!" if p.destructive else ("✋" if p.manual else " ")
        lines.append(f"{p.index:>2}. {mark} {p.step.id}  [{p.action}]  {p.step.label}")
        if p.step.when:
            lines.append(f"       when: {p.step.when.strip()}")
        for key, value in p.params.items():
            later = "  (at run time)" if key in p.deferred else ""
            lines.append(f"       {key} = {_fmt(value)}{later}")
        gate = p.gate_text()
        if gate:
            lines.append(f"       {gate}")
        extras = []
        if p.step.retries:
            extras.append(f"retries {p.step.retries}")
        if p.step.timeout:
            extras.append(f"timeout {format_duration(p.step.timeout)}")
        if p.step.on_failure == "continue":
            extras.append("continues on failure")
        if extras:
            lines.append("       " + ", ".join(extras))
    gated = sum(1 for p in steps if p.step.gated)
    lines += [
        "",
        f"{len(steps)} steps, {gated} gated, {sum(p.destructive for p in steps)} destructive."
        " Nothing was executed.",
    ]
    return "\n".join(lines)
