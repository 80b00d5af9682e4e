"""Params and results of the cluster-state actions beyond Deployments: nodes, volume claims, storage
classes, rollout history (ReplicaSets / ControllerRevisions), Helm release history, PVC expansion,
rollback to a revision, and the read-only exec (kept apart from :mod:`.models`, which holds the
Deployment-era actions)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from runbook.actions.kubernetes.models import ANY_ONE, ANY_REST, ExecParams, Workload, _Params, _pattern
from runbook.actions.registry import ActionResult

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50})
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)([KMGTP]i|[kMGTP]?)")


def quantity_bytes(text: str) -> int:
    """A Kubernetes storage quantity (``10Gi``, ``500M``, ``1073741824``) in bytes; ValueError otherwise."""
    m = _QUANTITY.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a storage quantity like 20Gi")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


# ----------------------------------------------------------------------------------------- nodes


class ListNodesParams(_Params):
    selector: str = Field("", description="label selector, e.g. node-role.kubernetes.io/worker= (empty: all)")


class NodeInfo(BaseModel):
    name: str
    ready: bool
    unschedulable: bool
    pressure: list[str]
    roles: list[str]
    kubelet_version: str
    taints: list[str]
    pods: int


class ListNodesResult(ActionResult):
    total: int
    ready: int
    not_ready: list[str]
    unschedulable: list[str]
    pressure: dict[str, list[str]]
    nodes: list[NodeInfo]


# ----------------------------------------------------------------------------------------- storage


class PvcParams(_Params):
    namespace: str = Field(description="namespace of the claim")
    name: str = Field(description="PersistentVolumeClaim name, e.g. data-goqueue-0")


class PvcResult(ActionResult):
    namespace: str
    name: str
    phase: str
    requested: str
    capacity: str
    requested_bytes: int
    capacity_bytes: int
    storage_class: str
    volume: str
    access_modes: list[str]
    resizing: bool
    conditions: list[str]
    expandable: bool | None


class StorageClassParams(_Params):
    name: str = Field(description="StorageClass name")


class StorageClassResult(ActionResult):
    name: str
    provisioner: str
    allow_volume_expansion: bool
    reclaim_policy: str
    binding_mode: str
    default: bool


class PatchPvcParams(PvcParams):
    size: str = Field(description="new requested size, e.g. 20Gi (must be larger than the current request)")
    max_size: str = Field(description="guardrail: refuse to request more than this, e.g. 100Gi")

    @field_validator("size", "max_size")
    @classmethod
    def _quantity(cls, value: str) -> str:
        quantity_bytes(value)
        return value


class PatchPvcResult(ActionResult):
    namespace: str
    name: str
    previous: str
    requested: str
    capacity: str
    storage_class: str


# ----------------------------------------------------------------------------------------- history


class HistoryParams(_Params):
    namespace: str = Field(description="namespace of the workload")
    name: str = Field(description="statefulset or deployment name")
    kind: Workload = Field("statefulset", description="statefulset (ControllerRevisions) or deployment")


class Revision(BaseModel):
    revision: int
    name: str
    images: list[str]
    change_cause: str
    current: bool


class HistoryResult(ActionResult):
    namespace: str
    name: str
    kind: str
    current_revision: int
    previous_revision: int | None
    update_revision: str
    current_revision_name: str
    desired: int
    ready: int
    updated: int
    images: list[str]
    revisions: list[Revision]


class UndoParams(HistoryParams):
    to_revision: int = Field(
        ge=0, description="revision number to roll back to (0: the one before the current, as kubectl)"
    )


class UndoResult(ActionResult):
    namespace: str
    name: str
    kind: str
    from_revision: int
    to_revision: int
    images_before: list[str]
    images_after: list[str]
    changed: bool


class HelmHistoryParams(_Params):
    namespace: str = Field(description="namespace the release is installed in")
    release: str = Field(description="Helm release name")
    max_revisions: int = Field(20, ge=1, le=256, description="newest N revisions listed")


class HelmRevision(BaseModel):
    revision: int
    status: str
    chart: str
    chart_version: str
    app_version: str
    description: str
    updated: str


class HelmHistoryResult(ActionResult):
    namespace: str
    release: str
    deployed_revision: int | None
    last_good_revision: int | None
    failed: list[int]
    revisions: list[HelmRevision]


# ----------------------------------------------------------------------------------------- exec


class ExecReadonlyParams(ExecParams):
    """Like ``kubernetes.exec``'s, but every ``allow`` entry is a whole command, word for word: no ``*``
    and no ``...``, so what runs without an approval is exactly what the playbook's reviewers read."""

    @field_validator("allow")
    @classmethod
    def _allowed(cls, value: list[str | list[str]], info: ValidationInfo) -> list[str | list[str]]:
        for entry in value:
            words = _pattern(entry)
            if any(w in (ANY_ONE, ANY_REST) for w in words):
                raise ValueError(
                    f"allow entry {entry!r}: kubernetes.exec_readonly takes whole commands only (no '*' or"
                    " '...'); a command with variable arguments needs kubernetes.exec and an approval"
                )
        result: list[str | list[str]] = ExecParams._allowed(value, info)
        return result
