"""A schedule has nobody to ask for a value: every required param without a default must be passed by
the schedule itself (a maintenance window can never start without a node). Golden FILE:LINE:COL."""

from __future__ import annotations

from pathlib import Path

from runbook.actions import ActionRegistry
from runbook.spec.lint import lint_text

CASES = Path(__file__).parent / "cases"


def test_required_params_without_default_must_come_from_the_schedule(registry: ActionRegistry) -> None:
    name = "schedule_required_param.yaml"
    _, problems = lint_text((CASES / name).read_text(), name, registry)
    assert [str(p) for p in problems] == [
        f"{name}:6:7: a schedule would start runs without param 'node' (required, no default):"
        " pass it in triggers.schedule.0.params or give it a default",
        f"{name}:6:7: a schedule would start runs without param 'disk' (required, no default):"
        " pass it in triggers.schedule.0.params or give it a default",
        f"{name}:7:7: a schedule would start runs without param 'disk' (required, no default):"
        " pass it in triggers.schedule.1.params or give it a default",
    ]


def test_a_playbook_without_schedule_may_require_params(registry: ActionRegistry) -> None:
    text = (CASES / "schedule_required_param.yaml").read_text()
    start, end = text.index("triggers:"), text.index("params:\n")
    _, problems = lint_text(text[:start] + text[end:], "p.yaml", registry)
    assert [str(p) for p in problems] == []
