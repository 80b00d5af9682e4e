"""Annotations on deployments, statefulsets, nodes and pods (``kubernetes.annotate``): the diff
between what is set and what the step asks, shown by ``describe`` and applied by the action.
"""

from __future__ import annotations

from typing import Any

from runbook.actions.context import ActionContext, GuardrailRefused
from runbook.actions.kubernetes.client import BACKEND, call, clients, patch_workload, read_workload
from runbook.actions.kubernetes.models import AnnotateParams, AnnotateResult


def _read_annotatable(ctx: ActionContext, params: AnnotateParams) -> Any:
    kc = clients(ctx)
    ns = params.namespace or ""
    if params.kind == "node":
        return call(ctx, f"read node {params.name}", kc.core.read_node, params.name)
    if params.kind == "pod":
        return call(ctx, f"read pod {ns}/{params.name}", kc.core.read_namespaced_pod, params.name, ns)
    return read_workload(ctx, params.kind, ns, params.name)


def _patch_annotatable(ctx: ActionContext, params: AnnotateParams, changes: dict[str, str | None]) -> Any:
    """Patch the annotations and return the updated object (a node, pod, deployment or statefulset)."""
    kc = clients(ctx)
    body = {"metadata": {"annotations": changes}}
    what = f"annotate {_target(params)}"
    if params.kind == "node":
        return call(ctx, what, kc.core.patch_node, params.name, body)
    if params.kind == "pod":
        return call(ctx, what, kc.core.patch_namespaced_pod, params.name, params.namespace, body)
    return patch_workload(ctx, params.kind, params.namespace or "", params.name, body)


def _annotations_of(obj: Any) -> dict[str, str]:
    """The object's annotations (none when it has no metadata or no annotations)."""
    meta = obj.metadata
    return dict(meta.annotations or {}) if meta is not None else {}


def _annotation_changes(current: dict[str, str], params: AnnotateParams) -> dict[str, str | None]:
    changes = {}
    for key, value in params.values().items():
        if current.get(key) != value and not (value is None and key not in current):
            changes[key] = value
    return changes


def _target(params: AnnotateParams) -> str:
    return (
        f"{params.kind} {params.name}"
        if params.kind == "node"
        else f"{params.kind} {params.namespace}/{params.name}"
    )


def describe_annotate(ctx: ActionContext, params: AnnotateParams) -> str:
    current = _annotations_of(_read_annotatable(ctx, params))
    changes = _annotation_changes(current, params)
    if not changes:
        return f"annotate {_target(params)}: nothing changes (already {params.values()})"
    parts = [f"{k}: {current[k]!r}" if k in current else f"{k}: (unset)" for k in changes]
    parts = [
        f"{p} -> {'(removed)' if changes[k] is None else repr(changes[k])}"
        for p, k in zip(parts, changes, strict=True)
    ]
    return f"annotate {_target(params)}: " + "; ".join(parts)


def annotate(ctx: ActionContext, params: AnnotateParams) -> AnnotateResult:
    """Apply the annotation changes, refusing to overwrite unless allowed (see ``kubernetes.annotate``)."""
    current = _annotations_of(_read_annotatable(ctx, params))
    changes = _annotation_changes(current, params)
    clash = [k for k, v in changes.items() if k in current and v is not None]
    if clash and not params.overwrite:
        raise GuardrailRefused(
            f"{_target(params)} already has {', '.join(f'{k}={current[k]!r}' for k in clash)} "
            f"(overwrite is false)",
            backend=BACKEND,
        )
    if changes:
        current = _annotations_of(_patch_annotatable(ctx, params, changes))
    summary = (
        f"annotated {_target(params)}: "
        + ", ".join(f"{k}={'(removed)' if v is None else v}" for k, v in changes.items())
        if changes
        else f"{_target(params)}: annotations already as requested"
    )
    return AnnotateResult(
        summary=summary,
        kind=params.kind,
        name=params.name,
        namespace=params.namespace,
        changed=changes,
        annotations=current,
    )
