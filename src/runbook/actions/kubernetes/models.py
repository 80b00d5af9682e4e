"""Params and results of the Kubernetes actions (kept apart so ``actions`` reads as the actions).

Validation lives here so a playbook is rejected at lint/plan time, not halfway through an incident:
an exec command its step does not allow, an invalid grep regex, a PDB with both or neither bound, a DB budget
without a pool size.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from runbook.actions.registry import ActionResult

Workload = Literal["deployment", "statefulset"]
_PERCENT_OR_INT = re.compile(r"^\d+%?$")


class _Params(BaseModel):
    model_config = {"extra": "forbid"}


# ----------------------------------------------------------------------------------------- read-only


class WorkloadParams(_Params):
    namespace: str = Field(description="namespace of the workload")
    deployment: str = Field(description="deployment name (the statefulset name when kind is statefulset)")
    kind: Workload = Field("deployment", description="deployment or statefulset")


class Condition(BaseModel):
    type: str
    status: str
    reason: str = ""
    message: str = ""


class DeploymentResult(ActionResult):
    namespace: str
    name: str
    kind: str
    desired: int
    ready: int
    available: int
    updated: int
    generation: int
    observed_generation: int
    rollout_complete: bool
    paused: bool
    images: list[str]
    conditions: list[Condition]
    annotations: dict[str, str]


class ListPodsParams(_Params):
    namespace: str = Field(description="namespace to list")
    selector: str = Field("", description="label selector, e.g. app=orchestrator (empty: every pod)")
    node: str | None = Field(None, description="only pods scheduled on this node")
    limit: int = Field(50, ge=1, le=1000, description="pods listed in the result (counts cover all)")


class PodInfo(BaseModel):
    name: str
    phase: str
    ready: bool
    ready_containers: str
    restarts: int
    node: str
    waiting_reason: str = ""
    last_termination_reason: str = ""
    last_exit_code: int | None = None
    owner: str = ""


class ListPodsResult(ActionResult):
    namespace: str
    selector: str
    total: int
    ready: int
    not_ready: int
    crash_looping: int
    oom_killed: int
    restarts: int
    pods: list[PodInfo]


class PodLogsParams(_Params):
    namespace: str = Field(description="namespace of the pod(s)")
    pod: str | None = Field(None, description="pod name (or give selector)")
    selector: str | None = Field(
        None, description="label selector: read logs of up to max_pods matching pods"
    )
    container: str | None = Field(None, description="container (required for multi-container pods)")
    tail_lines: int = Field(100, ge=1, le=5000, description="last N lines per pod")
    grep: str | None = Field(None, description="keep only lines matching this regular expression")
    previous: bool = Field(False, description="logs of the previous (crashed) container instance")
    max_pods: int = Field(5, ge=1, le=50, description="with selector: at most this many pods are read")
    max_bytes: int = Field(262144, ge=1024, le=4194304, description="byte cap per pod (limitBytes)")

    @field_validator("grep")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"grep is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _target(self) -> PodLogsParams:
        if bool(self.pod) == bool(self.selector):
            raise ValueError("give exactly one of pod or selector")
        return self


class PodLog(BaseModel):
    pod: str
    lines: int
    matched: int
    error: str = ""


class PodLogsResult(ActionResult):
    namespace: str
    lines: list[str]
    matched: int
    pods: list[PodLog]


class EventsParams(_Params):
    namespace: str = Field(description="namespace whose events to read")
    kind: str | None = Field(None, description="involved object kind filter, e.g. Pod, Deployment")
    name: str | None = Field(None, description="involved object name filter")
    warnings_only: bool = Field(False, description="only type=Warning events")
    since_minutes: float | None = Field(None, gt=0, description="only events seen in the last N minutes")
    limit: int = Field(50, ge=1, le=1000, description="most recent N events")


class EventInfo(BaseModel):
    type: str
    reason: str
    object: str
    message: str
    count: int
    last_seen: str


class EventsResult(ActionResult):
    namespace: str
    total: int
    warnings: int
    reasons: dict[str, int]
    events: list[EventInfo]


class WaitRolloutParams(WorkloadParams):
    timeout_seconds: float = Field(300, gt=0, le=3600, description="give up (step fails) after this long")
    poll_interval: float = Field(2.0, gt=0, le=60, description="seconds between status reads")


class WaitRolloutResult(ActionResult):
    namespace: str
    name: str
    desired: int
    ready: int
    updated: int
    waited_seconds: float


# ----------------------------------------------------------------------------------------- destructive


class ScaleParams(WorkloadParams):
    replicas: int = Field(ge=0, description="new replica count")
    max_replicas: int = Field(ge=0, description="guardrail: refuse to scale up beyond this count")
    use_database: bool = Field(
        False, description="guardrail: also keep replicas within the PostgreSQL connection budget"
    )
    db_pool_size: int | None = Field(
        None, ge=1, description="DB connections each replica's pool opens (PG_POOL_MAX)"
    )
    db_headroom: int = Field(
        20, ge=0, description="connections kept free for admins, migrations, other clients"
    )

    @model_validator(mode="after")
    def _db(self) -> ScaleParams:
        if self.use_database and self.db_pool_size is None:
            raise ValueError("use_database needs db_pool_size (connections per replica)")
        if self.db_pool_size is not None and not self.use_database:
            raise ValueError("db_pool_size is set but use_database is false: set use_database: true")
        return self


class ScaleResult(ActionResult):
    namespace: str
    name: str
    previous: int
    replicas: int
    db_budget: int | None = None


class RestartResult(ActionResult):
    namespace: str
    name: str
    restarted_at: str
    generation: int
    pods: int


Annotatable = Literal["deployment", "statefulset", "node", "pod"]


class AnnotateParams(_Params):
    kind: Annotatable = Field(description="deployment, statefulset, node or pod")
    name: str = Field(description="object name")
    namespace: str | None = Field(None, description="namespace (not for nodes)")
    annotations: dict[str, str | int | float | bool | None] = Field(
        description="annotations to set; null removes one (kubectl annotate KEY-)"
    )
    overwrite: bool = Field(True, description="false: refuse to change an annotation that has another value")

    @field_validator("annotations")
    @classmethod
    def _keys(cls, value: dict[str, object]) -> dict[str, object]:
        if not value:
            raise ValueError("annotations must not be empty")
        for key in value:
            if not re.fullmatch(
                r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", key
            ):
                raise ValueError(f"invalid annotation key {key!r}")
        return value

    @model_validator(mode="after")
    def _ns(self) -> AnnotateParams:
        if self.kind != "node" and not self.namespace:
            raise ValueError(f"namespace is required for a {self.kind}")
        return self

    def values(self) -> dict[str, str | None]:
        """Annotation values as the API wants them: strings (YAML ``true`` becomes ``"true"``) or None."""
        out: dict[str, str | None] = {}
        for key, value in self.annotations.items():
            out[key] = (
                None if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
            )
        return out


class AnnotateResult(ActionResult):
    kind: str
    name: str
    namespace: str | None
    changed: dict[str, str | None]
    annotations: dict[str, str]


class DeletePodParams(_Params):
    namespace: str = Field(description="namespace of the pod")
    pod: str = Field(description="pod name")
    grace_period_seconds: int | None = Field(
        None, ge=0, description="termination grace period (default: the pod's)"
    )
    allow_unmanaged: bool = Field(
        False, description="allow deleting a pod no controller will recreate (it is gone for good)"
    )


class DeletePodResult(ActionResult):
    namespace: str
    pod: str
    node: str
    owner: str


class NodeParams(_Params):
    node: str = Field(description="node name")


class NodeResult(ActionResult):
    node: str
    unschedulable: bool
    changed: bool
    pods: int


class DrainParams(_Params):
    node: str = Field(description="node to cordon and drain")
    timeout_seconds: float = Field(
        300, gt=0, le=3600, description="stop retrying blocked evictions after this"
    )
    retry_interval: float = Field(2.0, gt=0, le=60, description="seconds between eviction retries (PDB 429)")
    grace_period_seconds: int | None = Field(
        None, ge=0, description="termination grace period for evicted pods"
    )
    delete_emptydir_data: bool = Field(
        False, description="also evict pods using emptyDir (their data is lost)"
    )
    evict_unmanaged: bool = Field(False, description="also evict pods no controller will recreate")
    fail_on_blocked: bool = Field(
        True, description="fail the step when pods are still blocked at the deadline"
    )


class DrainResult(ActionResult):
    node: str
    complete: bool
    evicted: list[str]
    blocked: list[str]
    skipped: list[str]
    terminating: list[str]


class ApplyPdbParams(_Params):
    namespace: str = Field(description="namespace of the PodDisruptionBudget")
    name: str = Field(description="PodDisruptionBudget name")
    match_labels: dict[str, str] = Field(min_length=1, description="pod labels the budget selects")
    min_available: int | str | None = Field(None, description="pods that must stay available (N or N%)")
    max_unavailable: int | str | None = Field(None, description="pods that may be down at once (N or N%)")

    @model_validator(mode="after")
    def _one_bound(self) -> ApplyPdbParams:
        bounds = [b for b in (self.min_available, self.max_unavailable) if b is not None]
        if len(bounds) != 1:
            raise ValueError("give exactly one of min_available or max_unavailable")
        if not _PERCENT_OR_INT.match(str(bounds[0])):
            raise ValueError(f"{bounds[0]!r} is neither a count nor a percentage like 50%")
        return self

    def bound(self) -> tuple[str, int | str]:
        key = "minAvailable" if self.min_available is not None else "maxUnavailable"
        value = self.min_available if self.min_available is not None else self.max_unavailable
        assert value is not None
        if isinstance(value, str) and not value.endswith("%"):
            value = int(value)
        return key, value


class ApplyPdbResult(ActionResult):
    namespace: str
    name: str
    created: bool
    expected_pods: int
    disruptions_allowed: int


#: ``allow`` words with a meaning: one argument of any value; any remaining arguments (last word only)
ANY_ONE, ANY_REST = "*", "..."


def _pattern(entry: str | list[str]) -> list[str]:
    return entry.split() if isinstance(entry, str) else list(entry)


def allowed_by(command: list[str], allow: list[str | list[str]]) -> str | None:
    """The ``allow`` entry that admits ``command`` (as written in the playbook), or None.

    Each entry is an argv pattern: its words must equal the command's, position by position, except
    ``*`` (any one argument) and a final ``...`` (any further arguments, none included). Nothing is
    normalised: ``/usr/bin/rabbitmqctl`` is not ``rabbitmqctl``."""
    for entry in allow:
        words = _pattern(entry)
        rest = bool(words) and words[-1] == ANY_REST
        fixed = words[:-1] if rest else words
        if len(command) < len(fixed) or (not rest and len(command) != len(fixed)):
            continue
        if all(w == ANY_ONE or w == arg for w, arg in zip(fixed, command, strict=False)):
            return " ".join(words)
    return None


class ExecParams(_Params):
    """``command`` runs only when an ``allow`` entry admits it. ``allow`` is part of the playbook, not
    of the incident: lint refuses an expression in it (``json_schema_extra={"literal": True}``), so what
    may run in a pod is reviewed with the playbook, and templated values can only fill ``*`` slots."""

    namespace: str = Field(description="namespace of the pod")
    pod: str = Field(description="pod name")
    container: str | None = Field(None, description="container (default: the pod's first)")
    command: list[str] = Field(
        min_length=1, description="fixed argv, no shell, e.g. [rabbitmqctl, forget_cluster_node, rabbit@x]"
    )
    allow: list[str | list[str]] = Field(
        min_length=1,
        max_length=50,
        description="the commands this step may run, literal in the playbook (never an expression):"
        " argv patterns whose words must match exactly, '*' = any one argument, a final '...' = any"
        " further arguments; e.g. ['rabbitmqctl forget_cluster_node *'] (a list of words also works)",
        json_schema_extra={"literal": True},
    )
    timeout_seconds: float = Field(60, gt=0, le=3600, description="give up after this long")
    max_output_bytes: int = Field(65536, ge=256, le=1048576, description="stdout/stderr kept (each)")
    fail_on_nonzero: bool = Field(True, description="fail the step when the command exits non-zero")

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if any("\x00" in a for a in value):
            raise ValueError("command arguments must not contain NUL")
        if not value[0]:
            raise ValueError("command needs a program")
        return value

    @field_validator("allow")
    @classmethod
    def _allowed(cls, value: list[str | list[str]], info: ValidationInfo) -> list[str | list[str]]:
        """Checked on ``allow`` (declared after ``command``) so lint reports it at the allow list when
        the command is literal; at run time the rendered command is always there."""
        for entry in value:
            words = _pattern(entry)
            if not words or not words[0] or words[0] in (ANY_ONE, ANY_REST):
                raise ValueError(f"allow entry {entry!r} must start with the program's name")
            if ANY_REST in words[:-1]:
                raise ValueError(f"allow entry {entry!r}: '...' may only be the last word")
        command = info.data.get("command")
        if command is not None and allowed_by(command, value) is None:
            shown = " | ".join(" ".join(_pattern(e)) for e in value)
            raise ValueError(
                f"command {command!r} is not in this step's allow list ({shown}): kubernetes.exec"
                " runs only commands the playbook allows; nothing was sent to the pod"
            )
        return value


class ExecResultModel(ActionResult):
    namespace: str
    pod: str
    container: str
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
