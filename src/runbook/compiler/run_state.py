"""What one run carries and the vocabulary of a step's failure: run options and outcome, the
state steps read (``params``, ``steps.<id>``, ``incident``, ``run``), the seam to Prefect
(``StepRunner``), bounded calls, and which errors are worth a retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from runbook.actions.context import ActionError
from runbook.actions.registry import ActionSpec
from runbook.core.bounded import DeadlineExceeded, run_bounded
from runbook.core.durations import format_duration
from runbook.core.expressions import ExpressionError, Obj, wrap
from runbook.core.redact import redact
from runbook.core.states import EXIT_CODES as STATE_EXIT_CODES
from runbook.core.states import StepStatus
from runbook.spec.models import Playbook, Step
from runbook.timeline.recorder import Recorder

EXIT_CODES = {str(status): code for status, code in STATE_EXIT_CODES.items()}


class StepRunner(Protocol):
    def __call__(
        self, step: Step, spec: ActionSpec, call: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]: ...


def direct_runner(step: Step, spec: ActionSpec, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return call()


class StepFailed(Exception):
    """A step's action failed; the message is one redacted line naming the step and cause."""


class StepTimeout(StepFailed):
    pass


@dataclass
class RunOptions:
    run_id: str
    params: dict[str, Any]
    incident: dict[str, Any] | None = None
    requested_by: str | None = None
    trigger: str = "manual"
    dry_run: bool = False


@dataclass
class RunOutcome:
    run_id: str
    status: str
    reason: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)


class Skipped(dict):  # type: ignore[type-arg]
    """What ``steps.<id>`` holds for a skipped step: reading a field is a clear error."""

    def __init__(self, step_id: str, why: str) -> None:
        super().__init__(skipped=True, why=why)
        self.step_id = step_id

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        raise ExpressionError(f"steps.{self.step_id} was skipped ({self['why']}); it has no '{name}'")


def call_with_timeout(fn: Callable[[], Any], seconds: float | None, what: str) -> Any:
    """Run ``fn`` and give up after ``seconds`` (the worker thread is abandoned, not killed)."""
    if seconds is None:
        return fn()
    try:
        return run_bounded(fn, seconds, f"step:{what}")
    except DeadlineExceeded:
        raise StepTimeout(f"{what}: timed out after {format_duration(seconds)}") from None


def is_transient(exc: BaseException) -> bool:
    """Worth trying the same call again: an unreachable backend or a timeout. A guardrail refusal, a
    validation or expression error, or an action's own verdict fails the step at once."""
    if isinstance(exc, ActionError):
        return exc.transient
    return isinstance(exc, StepTimeout | TimeoutError | ConnectionError)


def error_line(exc: BaseException) -> str:
    """One redacted line for the operator: typed action errors as they are, others with their type."""
    if isinstance(exc, ActionError | StepFailed | ExpressionError):
        text = str(exc)
    elif isinstance(exc, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        text = f"bad parameters: {text}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split()))[:2000]


def as_output(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if isinstance(result, dict):
        return result
    raise ActionError(f"action returned {type(result).__name__}, not its result model")


def brief(output: dict[str, Any], limit: int = 4000) -> dict[str, Any]:
    """Output kept in the event details, without huge lists (the full output stays in the run)."""
    import json

    text = json.dumps(output, default=str)
    if len(text) <= limit:
        return output
    return {
        k: v
        for k, v in output.items()
        if not isinstance(v, list | dict) or len(json.dumps(v, default=str)) < 500
    }


class RunState:
    """Mutable state of one run: outputs, statuses, the expression context."""

    def __init__(self, playbook: Playbook, opts: RunOptions, rec: Recorder) -> None:
        self.playbook = playbook
        self.opts = opts
        self.rec = rec
        self.outputs: dict[str, Any] = {}
        self.statuses: dict[str, str] = {}
        self.last_error: str | None = None
        self.started_at = datetime.now(UTC).isoformat()
        # the expression view of each value, built once: a step's context is asked for several
        # times per step, and re-wrapping every earlier output made a 200-step run quadratic
        self._views: dict[str, tuple[Any, Any]] = {}

    def skip(self, step_id: str, why: str) -> None:
        self.outputs[step_id] = Skipped(step_id, why)
        self.statuses.setdefault(step_id, StepStatus.SKIPPED)

    def _view(self, key: str, value: Any) -> Any:
        """``wrap(value)``, cached while ``value`` is the same object (outputs are replaced, never
        changed in place, and the sandbox is immutable, so a view is never altered by a template)."""
        hit = self._views.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        view = value if isinstance(value, Skipped) else wrap(value)
        self._views[key] = (value, view)
        return view

    def context(self) -> dict[str, Any]:
        return {
            "params": self._view("\0params", self.opts.params),
            "steps": StepsView({k: self._view(k, v) for k, v in self.outputs.items()}),
            "incident": self._view("\0incident", self.opts.incident or {}),
            "run": {
                "id": self.opts.run_id,
                "playbook": self.playbook.name,
                "dry_run": self.opts.dry_run,
                "trigger": self.opts.trigger,
                "requested_by": self.opts.requested_by,
                "started_at": self.started_at,
                "statuses": dict(self.statuses),
            },
        }

    def evidence(self, step: Step) -> dict[str, Any]:
        """What the approver reads as why: the steps the playbook names (``evidence:``), else the last
        five that ran and did not fail (a notification nobody received is no evidence)."""
        if step.evidence:
            ids = [i for i in step.evidence if i in self.outputs]
        else:
            ran = [s for s, o in self.outputs.items() if not isinstance(o, Skipped) and not o.get("failed")]
            ids = ran[-5:]
        return {i: self.outputs[i].get("summary", "") for i in ids}


class StepsView(Obj):
    """``steps`` in expressions: attribute access to outputs (``steps.snapshot.consumers``)."""

    def __getattr__(self, name: str) -> Any:
        raise ExpressionError(f"steps.{name} has no output (not run yet, or not a step)")
