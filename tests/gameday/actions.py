"""Test actions for game-day tests: they leave evidence in files and can be held mid-call.

A test creates a *hold file*; the action writes ``start <label>`` to its log and then waits until the
hold file is gone, so the test knows exactly where the worker is when it kills it (-9). They are
ordinary registered actions: the engine gates, claims, times out and records them like any other.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions import ActionContext, ActionResult, action


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log: str = Field(description="file that gets 'start LABEL' / 'done LABEL' lines")
    label: str = Field(description="what to write")
    hold: str = Field("", description="while this file exists the call waits (max 120 s)")


class StepResult(ActionResult):
    starts: int


def _append(path: str, line: str) -> int:
    p = Path(path)
    with p.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
    return sum(1 for x in p.read_text(encoding="utf-8").splitlines() if x == line)


def _hold(hold: str) -> None:
    end = time.monotonic() + 120
    while hold and Path(hold).exists() and time.monotonic() < end:
        time.sleep(0.05)


def _run(params: StepParams) -> StepResult:
    n = _append(params.log, f"start {params.label}")
    _hold(params.hold)
    _append(params.log, f"done {params.label}")
    return StepResult(starts=n, summary=f"{params.label} ({n} starts)")


@action("gameday.step", summary="Read-only step that logs its start and can be held")
def step(ctx: ActionContext, params: StepParams) -> StepResult:
    """Read-only: logs, optionally waits on a hold file."""
    return _run(params)


def describe_destroy(ctx: ActionContext, params: StepParams) -> str:
    return f"destroy {params.label} (log {Path(params.log).name})"


@action(
    "gameday.destroy",
    summary="Destructive step that logs start/done",
    destructive=True,
    describe=describe_destroy,
)
def destroy(ctx: ActionContext, params: StepParams) -> StepResult:
    """Destructive: every start is one real execution the test can count."""
    return _run(params)
