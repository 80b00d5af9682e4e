"""Small real actions for engine tests: they count calls in a file so tests see side effects.

They are ordinary registered actions (not mocks of the engine): the engine under test validates
their params, gates them, times them out and retries them exactly as it does backend actions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionResult,
    BackendUnavailable,
    GuardrailRefused,
    action,
)


class CountParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counter: str = Field(description="file counting executions")
    fail_first: int = Field(0, description="fail this many times before succeeding")
    sleep: float = Field(0.0, description="seconds to sleep")
    message: str = Field("boom", description="error text when failing")
    failure: Literal["unavailable", "refused", "error"] = Field(
        "unavailable", description="how it fails: backend unreachable (transient), a refusal, a plain error"
    )


class CountResult(ActionResult):
    calls: int


def _bump(path: str) -> int:
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n


@action("test.count", summary="Count a call; optionally fail or sleep first")
def count(ctx: ActionContext, params: CountParams) -> CountResult:
    """Read-only test action."""
    n = _bump(params.counter)
    time.sleep(params.sleep)
    if n <= params.fail_first:
        kind = {"unavailable": BackendUnavailable, "refused": GuardrailRefused}.get(
            params.failure, ActionError
        )
        raise kind(params.message, backend="test")
    return CountResult(calls=n, summary=f"call {n}")


def describe_destroy(ctx: ActionContext, params: CountParams) -> str:
    return f"destroy things (counter {Path(params.counter).name})"


@action(
    "test.destroy",
    summary="A destructive test action that counts executions",
    destructive=True,
    describe=describe_destroy,
)
def destroy(ctx: ActionContext, params: CountParams) -> CountResult:
    """Destructive test action."""
    n = _bump(params.counter)
    return CountResult(calls=n, summary=f"destroyed ({n})")
