"""Rehearsals: replay a playbook against recorded action results, without touching any service.

A rehearsal file (YAML, orquesta-style) gives a playbook's params and incident, the results each
backend step returned (recorded per step id or per action), the approval decisions a human would
make, and what must happen: the step sequence with statuses, the approval prompts (step, approvers,
rendered params) and chosen outputs. The *real* engine runs the *real* playbook: expressions,
``when`` conditions, params validation, gating, ``on_failure``/``on_denied`` and ``finally`` all run
as in production. Only the backend calls are replaced:

* actions of the ``core`` and ``timeline`` backends run for real (they need no service), so
  ``core.classify`` really classifies and ``core.wait`` really polls (the polled action answers
  from the recording);
* every other action keeps its real :class:`ActionSpec` (params model, result model, destructive
  flag) but its function returns the recorded result, validated against the real result model,
  and its ``describe`` renders the call instead of reading the backend.

Recordings are merged over ``baseline.yaml`` (one complete, healthy result per action) found beside
the rehearsal file or in a parent folder, so a rehearsal only states what differs from a healthy
system while every result still has every field the real action returns; a step with no recording
at all answers the healthy baseline (the expected step sequence still shows every call).

This is why the module exists: every shipped playbook's logic (each verdict path, approve vs
deny) is tested in milliseconds and in CI, and a change to an action's params or result model
breaks the rehearsals that relied on the old shape.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable, GuardrailRefused
from runbook.actions.registry import ActionRegistry, ActionSpec
from runbook.compiler.engine import Engine, RunOptions, RunOutcome
from runbook.compiler.params import coerce_params
from runbook.core.events import Event, Kind
from runbook.core.gate import Decision, GateRequest, Recorder
from runbook.core.settings import Settings
from runbook.spec.loading import find_playbook, load_playbook
from runbook.store.timeline import TimelineStore

Outcome = Literal["approved", "denied", "expired"]
OUTCOMES: dict[str, Outcome] = {"approve": "approved", "deny": "denied", "expire": "expired"}

#: Backends whose actions need no service and run for real in a rehearsal.
LIVE_BACKENDS = frozenset({"core", "timeline"})
BASELINE_FILE = "baseline.yaml"
STATUSES = ("succeeded", "skipped", "failed", "denied", "dry_run")


class RehearsalError(Exception):
    """The rehearsal itself is wrong (missing recording, result that does not fit the model)."""


# -- the file ------------------------------------------------------------------------------------
class Answer(BaseModel):
    """How the scripted approver answers one gated step."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "deny", "expire"] = "approve"
    by: list[str] = Field(default_factory=list, description="who decided (default: one per approval)")
    reason: str | None = None


class ExpectedApproval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str
    approvers: list[str] | None = None
    min_approvals: int | None = None
    kind: Literal["approval", "manual"] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="subset of the rendered params")
    description_contains: str | None = None


class Expectations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["completed", "failed", "denied", "aborted"] = "completed"
    steps: list[dict[str, str]] = Field(description="the full step sequence, one {step_id: status} each")
    approvals: list[ExpectedApproval] | None = Field(
        None, description="every approval prompt in order (None: not checked)"
    )
    outputs: dict[str, Any] = Field(default_factory=dict, description="step id -> subset of its output")
    calls: dict[str, Any] = Field(
        default_factory=dict, description="step id -> subset of the params the backend received"
    )
    findings: list[str] = Field(default_factory=list, description="substrings some finding must contain")


class RehearsalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playbook: str = Field(description="playbook file (relative to the playbooks folder) or name")
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    incident: dict[str, Any] | None = None
    requested_by: str | None = "rehearsal"
    trigger: str = "rehearsal"
    dry_run: bool = False
    results: dict[str, Any] = Field(
        default_factory=dict,
        description="step id -> recorded result (a list: successive calls; the last one repeats)",
    )
    actions: dict[str, Any] = Field(
        default_factory=dict, description="action name -> recorded result for steps not in `results`"
    )
    approvals: dict[str, Answer | Literal["approve", "deny", "expire"]] = Field(default_factory=dict)
    expect: Expectations

    def answer(self, step_id: str) -> Answer | None:
        raw = self.approvals.get(step_id)
        if raw is None or isinstance(raw, Answer):
            return raw
        return Answer(decision=raw)


def load_rehearsal(path: str | Path) -> RehearsalSpec:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    try:
        return RehearsalSpec.model_validate(data)
    except ValidationError as exc:
        raise RehearsalError(f"{path}: not a valid rehearsal file:\n{exc}") from None


def find_baseline(start: Path, *, levels: int = 3) -> dict[str, Any]:
    """``baseline.yaml`` beside ``start`` or in one of its parents; ``{}`` when there is none."""
    folder = start if start.is_dir() else start.parent
    for _ in range(levels + 1):
        candidate = folder / BASELINE_FILE
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
        folder = folder.parent
    return {}


# -- recorded backends ---------------------------------------------------------------------------
@dataclass
class Call:
    step_id: str
    action: str
    params: dict[str, Any]


@dataclass
class Recording:
    """Recorded results; hands out the next one for a step (or action) on every call."""

    by_step: dict[str, Any]
    by_action: dict[str, Any]
    baseline: dict[str, Any]
    calls: list[Call] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _cursor: dict[str, int] = field(default_factory=dict)

    def _next(self, key: str, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        if not value:
            raise RehearsalError(f"recording {key!r} is an empty list")
        i = self._cursor.get(key, 0)
        self._cursor[key] = i + 1
        return value[min(i, len(value) - 1)]

    def result(self, spec: ActionSpec, step_id: str, params: dict[str, Any]) -> BaseModel:
        self.calls.append(Call(step_id, spec.name, params))
        if step_id in self.by_step:
            recorded = self._next(f"step:{step_id}", self.by_step[step_id])
        elif spec.name in self.by_action:
            recorded = self._next(f"action:{spec.name}", self.by_action[spec.name])
        elif spec.name in self.baseline:
            recorded = {"summary": f"(baseline) {spec.name}: healthy"}
        else:
            msg = f"no recorded result for step {step_id!r} (action {spec.name})"
            self.problems.append(msg)
            raise RehearsalError(msg)
        if not isinstance(recorded, dict):
            msg = f"recorded result for step {step_id!r} must be a mapping, got {recorded!r}"
            self.problems.append(msg)
            raise RehearsalError(msg)
        if "raise" in recorded:
            raise _recorded_error(spec, recorded)
        merged = {**(self.baseline.get(spec.name) or {}), **recorded}
        if "summary" not in recorded:
            shown = ", ".join(f"{k}={v}" for k, v in recorded.items() if not isinstance(v, list | dict))
            merged["summary"] = f"(recorded) {spec.name}" + (f": {shown}" if shown else "")
        try:
            return spec.result_model.model_validate(merged)
        except ValidationError as exc:
            msg = f"recorded result for step {step_id!r} does not fit {spec.result_model.__name__}: {exc}"
            self.problems.append(msg)
            raise RehearsalError(msg) from None


def _recorded_error(spec: ActionSpec, recorded: dict[str, Any]) -> ActionError:
    kinds: dict[str, type[ActionError]] = {
        "error": ActionError,
        "unavailable": BackendUnavailable,
        "guardrail": GuardrailRefused,
    }
    kind = kinds.get(str(recorded.get("kind", "error")), ActionError)
    return kind(str(recorded["raise"]), backend=spec.backend)


def _recorded_fn(spec: ActionSpec, recording: Recording) -> Callable[[ActionContext, BaseModel], BaseModel]:
    def fn(ctx: ActionContext, params: BaseModel) -> BaseModel:
        dumped = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return recording.result(spec, ctx.step_id, dumped)

    fn.__name__ = f"recorded_{spec.name.replace('.', '_')}"
    fn.__doc__ = spec.doc
    return fn


def _rendered_describe(spec: ActionSpec) -> Callable[[ActionContext, BaseModel], str]:
    """A describe that never reads a backend: the action's summary and its exact parameters."""

    def describe(ctx: ActionContext, params: BaseModel) -> str:
        dumped = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return f"{spec.summary} {json.dumps(dumped, sort_keys=True, default=str)}"

    return describe


def rehearsal_registry(real: ActionRegistry, recording: Recording) -> ActionRegistry:
    """The real specs; backend functions (and describes) answered from ``recording``."""
    specs = []
    for spec in real:
        if spec.backend in LIVE_BACKENDS:
            specs.append(spec)
            continue
        specs.append(
            dataclasses.replace(
                spec,
                fn=_recorded_fn(spec, recording),
                describe=_rendered_describe(spec) if spec.describe is not None else None,
            )
        )
    return ActionRegistry(specs)


# -- the scripted approver -----------------------------------------------------------------------
class ScriptedGate:
    """Answers every gated step from the rehearsal file and keeps every request it saw.

    It writes the same timeline events a human decision writes (requested, then approved / denied /
    expired with the approvers as actor), so the postmortem of a rehearsal run shows who decided.
    An approval the file does not script is denied and reported as unexpected.
    """

    def __init__(self, answer: Callable[[str], Answer | None]) -> None:
        self.answer = answer
        self.requests: list[GateRequest] = []
        self.unexpected: list[str] = []

    def request(self, req: GateRequest, recorder: Recorder) -> Decision:
        self.requests.append(req)
        roles = ", ".join(req.approvers) or "anyone"
        recorder.emit(
            Kind.APPROVAL_REQUESTED,
            f"{req.step_title}: {'done?' if req.kind == 'manual' else 'approve?'} {req.description}"
            f" (needs {req.min_approvals} of: {roles})",
            step_id=req.step_id,
            details=req.timeline_details(approvers=req.approvers),
        )
        answer = self.answer(req.step_id)
        if answer is None:
            self.unexpected.append(req.step_id)
            answer = Answer(decision="deny", by=["rehearsal"], reason="not scripted in the rehearsal")
        role = req.approvers[0] if req.approvers else "approver"
        people = answer.by or [f"{role}-{i + 1}" for i in range(req.min_approvals)]
        outcome = OUTCOMES[answer.decision]
        kind = {
            "approved": Kind.APPROVAL_APPROVED,
            "denied": Kind.APPROVAL_DENIED,
            "expired": Kind.APPROVAL_EXPIRED,
        }[outcome]
        who = [] if outcome == "expired" else people
        recorder.emit(
            kind,
            f"{req.step_title}: {outcome}"
            + (f" by {', '.join(who)}" if who else "")
            + (f" — {answer.reason}" if answer.reason else ""),
            step_id=req.step_id,
            actor=", ".join(who) or None,
            details={"plan_hash": req.plan_hash, "reason": answer.reason, "approvers": who},
        )
        return Decision(
            outcome=outcome,
            approvers=who,
            reason=answer.reason,
            plan_hash=req.plan_hash,
            channel="rehearsal",
        )


# -- running and checking ------------------------------------------------------------------------
@dataclass
class RehearsalReport:
    path: Path
    spec: RehearsalSpec
    outcome: RunOutcome
    statuses: dict[str, str]
    requests: list[GateRequest]
    calls: list[Call]
    events: list[Event]
    problems: list[str]

    @property
    def run_id(self) -> str:
        return self.outcome.run_id

    def explain(self) -> str:
        """What went wrong, with the run's timeline: what a failing test prints."""
        lines = [f"rehearsal {self.path}:", *(f"  - {p}" for p in self.problems), "  timeline:"]
        lines += [f"    {e.line()}" for e in self.events]
        return "\n".join(lines)


def _subset_problems(expected: Any, actual: Any, where: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing (have {sorted(actual)})")
            else:
                out.extend(_subset_problems(value, actual[key], f"{where}.{key}"))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in _subset_problems(e, a, f"{where}[{i}]")
        ]
    if expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def _approval_problems(expected: list[Any], requests: list[GateRequest]) -> list[str]:
    """How the approval prompts differ from the ones the rehearsal file expects."""
    problems: list[str] = []
    asked = [r.step_id for r in requests]
    wanted = [a.step for a in expected]
    if asked != wanted:
        problems.append(f"approval prompts: expected {wanted}, got {asked}")
    for want, req in zip(expected, requests, strict=False):
        if want.step != req.step_id:
            continue
        where = f"approval {req.step_id}"
        if want.approvers is not None and want.approvers != req.approvers:
            problems.append(f"{where}: approvers {req.approvers}, expected {want.approvers}")
        if want.min_approvals is not None and want.min_approvals != req.min_approvals:
            problems.append(f"{where}: min_approvals {req.min_approvals}, expected {want.min_approvals}")
        if want.kind is not None and want.kind != req.kind:
            problems.append(f"{where}: kind {req.kind}, expected {want.kind}")
        problems.extend(_subset_problems(want.params, req.params, f"{where}.params"))
        if want.description_contains and want.description_contains not in req.description:
            problems.append(f"{where}: description {req.description!r} lacks {want.description_contains!r}")
    return problems


def check(spec: RehearsalSpec, report_parts: dict[str, Any]) -> list[str]:
    """Every difference between what the file expects and what the run did."""
    exp = spec.expect
    outcome: RunOutcome = report_parts["outcome"]
    statuses: dict[str, str] = report_parts["statuses"]
    requests: list[GateRequest] = report_parts["requests"]
    problems: list[str] = []
    if outcome.status != exp.status:
        problems.append(f"run status: expected {exp.status}, got {outcome.status} ({outcome.reason})")
    expected_steps = [(k, v) for item in exp.steps for k, v in item.items()]
    for step_id, status in expected_steps:
        if status not in STATUSES:
            problems.append(f"expect.steps: {step_id}: unknown status {status!r} (one of {STATUSES})")
    actual_steps = list(statuses.items())
    if expected_steps != actual_steps:
        problems.append(
            "step sequence differs:\n      expected: "
            + ", ".join(f"{k}={v}" for k, v in expected_steps)
            + "\n      actual:   "
            + ", ".join(f"{k}={v}" for k, v in actual_steps)
        )
    if exp.approvals is not None:
        problems.extend(_approval_problems(exp.approvals, requests))
    for step_id, subset in exp.outputs.items():
        problems.extend(_subset_problems(subset, outcome.outputs.get(step_id), f"outputs.{step_id}"))
    calls: list[Call] = report_parts["calls"]
    for step_id, subset in exp.calls.items():
        made = [c for c in calls if c.step_id == step_id]
        if not made:
            problems.append(f"calls.{step_id}: the backend was never called")
            continue
        problems.extend(_subset_problems(subset, made[0].params, f"calls.{step_id}"))
    findings = [e.summary for e in report_parts["events"] if e.kind == Kind.FINDING]
    for text in exp.findings:
        if not any(text in f for f in findings):
            problems.append(f"no finding contains {text!r} (findings: {findings})")
    return problems


def _playbook_path(spec: RehearsalSpec, playbooks_dir: Path) -> Path | str:
    candidate = playbooks_dir / spec.playbook
    for path in (candidate, candidate.with_suffix(".yaml")):
        if path.is_file():
            return path
    return spec.playbook


def run_rehearsal(
    path: str | Path,
    *,
    registry: ActionRegistry,
    settings: Settings,
    store: TimelineStore,
    playbooks_dir: str | Path = "playbooks",
    run_id: str | None = None,
) -> RehearsalReport:
    """Run the rehearsal at ``path`` through the real engine; ``problems`` lists every mismatch."""
    path = Path(path)
    spec = load_rehearsal(path)
    folder = Path(playbooks_dir)
    target = _playbook_path(spec, folder)
    playbook = (
        load_playbook(target, registry)
        if isinstance(target, Path)
        else find_playbook(target, folder, registry)
    )
    recording = Recording(by_step=spec.results, by_action=spec.actions, baseline=find_baseline(path))
    gate = ScriptedGate(spec.answer)
    engine = Engine(
        settings, rehearsal_registry(registry, recording), store, gate=gate, heartbeat_seconds=3600
    )
    opts = RunOptions(
        run_id=run_id or f"rehearsal-{path.stem}-{uuid.uuid4().hex[:8]}",
        params=coerce_params(playbook, spec.params),
        incident=spec.incident,
        requested_by=spec.requested_by,
        trigger=spec.trigger,
        dry_run=spec.dry_run,
    )
    outcome = engine.run(playbook, opts)
    events = store.events(outcome.run_id)
    finished = next((e for e in reversed(events) if e.kind == Kind.RUN_FINISHED), None)
    statuses = dict(finished.details.get("steps", {})) if finished else {}
    parts = {
        "outcome": outcome,
        "statuses": statuses,
        "requests": gate.requests,
        "calls": recording.calls,
        "events": events,
    }
    problems = [*recording.problems]
    problems += [
        f"approval asked for step {s!r} but the rehearsal does not script it" for s in gate.unexpected
    ]
    unused = sorted(set(spec.approvals) - {r.step_id for r in gate.requests})
    problems += [f"approvals scripts step {s!r} but no approval was asked for it" for s in unused]
    problems += check(spec, parts)
    return RehearsalReport(
        path=path,
        spec=spec,
        outcome=outcome,
        statuses=statuses,
        requests=gate.requests,
        calls=recording.calls,
        events=events,
        problems=problems,
    )


__all__ = [
    "Answer",
    "Call",
    "Recording",
    "RehearsalError",
    "RehearsalReport",
    "RehearsalSpec",
    "ScriptedGate",
    "check",
    "load_rehearsal",
    "rehearsal_registry",
    "run_rehearsal",
]
