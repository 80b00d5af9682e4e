"""Core actions: checks, waits and manual work that need no backend.

``core.wait`` re-runs another (read-only) action until a condition over its result holds; its
``until`` template is *deferred*: the engine leaves it alone and the action evaluates it against
``result`` (the latest output) on every poll.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.registry import ActionResult, action, invoke


class AssertParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    that: bool = Field(description="condition that must hold, usually an expression over earlier steps")
    message: str = Field("assertion failed", description="what is wrong when the condition is false")
    holds: str | None = Field(
        None, description="what is true when the condition holds (the summary on success)"
    )
    details: dict[str, Any] = Field(default_factory=dict, description="evidence shown with the result")


class AssertResult(ActionResult):
    passed: bool


@action("core.assert", summary="Fail the step unless a condition holds")
def assert_(ctx: ActionContext, params: AssertParams) -> AssertResult:
    """Checks a condition computed from earlier steps; a false condition fails the step with
    ``message`` (so ``on_failure`` decides whether the run continues). On success the summary says
    what held (``holds``, else the evidence in ``details``), never the failure text."""
    if not params.that:
        raise ActionError(params.message)
    facts = ", ".join(f"{k}={v}" for k, v in params.details.items())
    said = params.holds or "the condition held"
    return AssertResult(passed=True, summary=f"{said} ({facts})" if facts else said)


class WaitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(description="read-only action to poll, e.g. rabbitmq.queue_stats")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="its parameters")
    until: str = Field(
        description="expression over `result` (the polled action's output) that ends the wait",
        json_schema_extra={"deferred": True},
    )
    interval: float = Field(5.0, gt=0, description="seconds between polls")
    timeout: float = Field(300.0, gt=0, description="seconds before giving up (fails the step)")


class WaitResult(ActionResult):
    polls: int
    waited_seconds: float
    result: dict[str, Any]


@action("core.wait", summary="Poll a read-only action until a condition over its result is true")
def wait(ctx: ActionContext, params: WaitParams) -> WaitResult:
    """Re-runs ``action`` every ``interval`` seconds and evaluates ``until`` against its output,
    e.g. wait until a queue drained or a rollout finished. Only read-only actions can be polled."""
    from runbook.core.expressions import evaluate_condition

    registry = ctx.registry
    spec = registry.get(params.action) if registry is not None else None
    if spec is None:
        raise ActionError(f"core.wait: unknown action {params.action!r}")
    if spec.destructive or spec.manual:
        raise ActionError(f"core.wait: {params.action} is not read-only and cannot be polled")
    started = time.monotonic()
    deadline = started + min(params.timeout, ctx.remaining(params.timeout))
    polls = 0
    while True:
        polls += 1
        output = invoke(spec, ctx, params.with_).model_dump(mode="json")
        if evaluate_condition(params.until, {"result": output, **ctx.run_info.get("context", {})}):
            waited = time.monotonic() - started
            return WaitResult(
                polls=polls,
                waited_seconds=round(waited, 3),
                result=output,
                summary=f"condition met after {waited:.1f}s ({polls} polls): {output.get('summary', '')}",
            )
        if time.monotonic() + params.interval > deadline:
            raise ActionError(
                f"core.wait: condition {params.until.strip()!r} still false after {polls} polls"
                f" ({time.monotonic() - started:.0f}s); last: {output.get('summary', '')}"
            )
        time.sleep(params.interval)


class ManualParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instructions: str = Field(description="what the human must do before clicking Done")
    checklist: list[str] = Field(default_factory=list, description="items to tick off")


class ManualResult(ActionResult):
    instructions: str


def describe_manual(ctx: ActionContext, params: ManualParams) -> str:
    items = "".join(f"\n  - {item}" for item in params.checklist)
    return f"wait for a human to do: {params.instructions}{items}"


@action(
    "core.manual",
    summary="Show instructions and wait for a human to click Done",
    manual=True,
    describe=describe_manual,
)
def manual(ctx: ActionContext, params: ManualParams) -> ManualResult:
    """A step done by hand (maintenance work). The gate shows the instructions and waits for an
    authorised person to click Done; the action itself only records that it was done."""
    return ManualResult(instructions=params.instructions, summary="done by hand")


class SetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any] = Field(description="named values to compute once and reuse as steps.<id>.values")
    summary: str = Field("", description="one line for the timeline")


class SetResult(ActionResult):
    values: dict[str, Any]


@action("core.set", summary="Compute named values from expressions for later steps")
def set_values(ctx: ActionContext, params: SetParams) -> SetResult:
    """Gives a name to derived facts (a verdict, a budget) so later steps and the report reuse them."""
    return SetResult(
        values=params.values,
        summary=params.summary or ", ".join(f"{k}={v}" for k, v in params.values.items()),
    )


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: str = Field(description="name of the root cause this rule recognises")
    when: bool = Field(description="condition (an expression over earlier steps)")
    evidence: str = Field("", description="why, in one line, shown with the verdict")


class ClassifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = Field(description="ordered rules; the first whose `when` holds is the verdict")
    default: str = Field("unknown", description="verdict when no rule holds")


class ClassifyResult(ActionResult):
    verdict: str
    evidence: str
    matched: list[str]


@action("core.classify", summary="Pick a root-cause verdict from ordered rules, with evidence")
def classify(ctx: ActionContext, params: ClassifyParams) -> ClassifyResult:
    """Root-cause triage: rules are checked in order; the first that holds is the verdict, and every
    rule that held is listed so a human sees competing explanations."""
    matched = [r for r in params.rules if r.when]
    if not matched:
        return ClassifyResult(
            verdict=params.default,
            evidence="no rule matched",
            matched=[],
            summary=f"verdict: {params.default}",
        )
    top = matched[0]
    return ClassifyResult(
        verdict=top.verdict,
        evidence=top.evidence,
        matched=[r.verdict for r in matched],
        summary=f"verdict: {top.verdict} — {top.evidence}",
    )
