"""Running a playbook text through the real engine (no Prefect) with the built-in actions plus the
game-day test actions, and reading the outcome back from the timeline."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from runbook.actions import ActionRegistry
from runbook.actions.registry import BUILTIN_MODULES
from runbook.compiler.engine import Engine, RunOptions, RunOutcome
from runbook.compiler.params import coerce_params
from runbook.core.events import Event
from runbook.core.settings import Settings
from runbook.runtime import Runtime
from runbook.spec.lint import lint_text
from runbook.store.timeline import TimelineStore

HEAD = "name: gameday\ntitle: Game day\nowner: sre\n"


def registry() -> ActionRegistry:
    return ActionRegistry.from_modules([*BUILTIN_MODULES, "tests.gameday.actions"])


@dataclass
class Ran:
    outcome: RunOutcome
    events: list[Event]
    seconds: float

    def failed(self, step: str) -> str:
        """The final failure message of a step (the last step.failed event)."""
        found = [e for e in self.events if e.kind == "step.failed" and e.step_id == step]
        assert found, f"step {step} did not fail: {[(e.kind.value, e.step_id) for e in self.events]}"
        print(f"[gameday] {step}: {found[-1].details['error']}")  # shown with -s; quoted in GAMEDAY.md
        return found[-1].details["error"]

    def status(self, step: str) -> str:
        kinds = [e.kind.value for e in self.events if e.step_id == step]
        return kinds[-1] if kinds else "never"


def run_text(
    text: str,
    settings: Settings,
    store: TimelineStore,
    *,
    run_id: str,
    reg: ActionRegistry | None = None,
    params: dict[str, Any] | None = None,
    sinks: bool = False,
) -> Ran:
    reg = reg or registry()
    pb, problems = lint_text(HEAD + text, "gameday.yaml", reg)
    assert not problems, [str(p) for p in problems]
    rt = Runtime(settings, reg, store)
    engine = Engine(settings, reg, store, gate=rt.gate(), sinks=rt.sinks(run_id, pb) if sinks else [])
    started = time.monotonic()
    outcome = engine.run(pb, RunOptions(run_id=run_id, params=coerce_params(pb, params or {})))
    return Ran(outcome, store.events(run_id), time.monotonic() - started)
