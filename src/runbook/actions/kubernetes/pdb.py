"""PodDisruptionBudgets (``kubernetes.apply_pdb``): create, or replace under optimistic concurrency."""

from __future__ import annotations

from typing import Any

from runbook.actions.context import ActionContext
from runbook.actions.kubernetes.client import (
    KubeApiError,
    call,
    clients,
    label_selector,
    pod_disruption_budget,
)
from runbook.actions.kubernetes.models import ApplyPdbParams, ApplyPdbResult


def _pdb_state(ctx: ActionContext, params: ApplyPdbParams) -> tuple[Any | None, int]:
    kc = clients(ctx)
    call(ctx, f"read namespace {params.namespace}", kc.core.read_namespace, params.namespace)
    try:
        existing = call(
            ctx,
            f"read PodDisruptionBudget {params.namespace}/{params.name}",
            kc.policy.read_namespaced_pod_disruption_budget,
            params.name,
            params.namespace,
        )
    except KubeApiError as exc:
        if exc.status != 404:
            raise
        existing = None
    pods = call(
        ctx,
        f"list pods in {params.namespace}",
        kc.core.list_namespaced_pod,
        params.namespace,
        label_selector=label_selector(params.match_labels),
    )
    return existing, len(pods.items)


def describe_apply_pdb(ctx: ActionContext, params: ApplyPdbParams) -> str:
    existing, matching = _pdb_state(ctx, params)
    key, value = params.bound()
    sel = label_selector(params.match_labels)
    if existing is None:
        text = (
            f"create PodDisruptionBudget {params.namespace}/{params.name}: {key}={value} "
            f"selecting {sel} ({matching} pods match)"
        )
    else:
        spec = existing.spec
        old = (
            f"minAvailable={spec.min_available}"
            if spec.min_available is not None
            else f"maxUnavailable={spec.max_unavailable}"
        )
        old_sel = label_selector((spec.selector.match_labels if spec.selector else None) or {})
        text = (
            f"replace PodDisruptionBudget {params.namespace}/{params.name}: {old} selecting {old_sel} -> "
            f"{key}={value} selecting {sel} ({matching} pods match)"
        )
    if key == "minAvailable" and not str(value).endswith("%") and int(value) >= matching:
        text += "; note: this allows no voluntary disruption (drains will block)"
    return text


def apply_pdb(ctx: ActionContext, params: ApplyPdbParams) -> ApplyPdbResult:
    """Create or replace the PodDisruptionBudget (see ``kubernetes.apply_pdb``)."""
    existing, matching = _pdb_state(ctx, params)
    key, value = params.bound()
    body = pod_disruption_budget(
        params.name,
        params.namespace,
        resource_version=existing.metadata.resource_version if existing else None,
        match_labels=params.match_labels,
        min_available=value if key == "minAvailable" else None,
        max_unavailable=value if key == "maxUnavailable" else None,
    )
    kc = clients(ctx)
    what = f"{'replace' if existing else 'create'} PodDisruptionBudget {params.namespace}/{params.name}"
    if existing is None:
        call(ctx, what, kc.policy.create_namespaced_pod_disruption_budget, params.namespace, body)
    else:
        call(
            ctx, what, kc.policy.replace_namespaced_pod_disruption_budget, params.name, params.namespace, body
        )
    fresh = call(
        ctx,
        f"read PodDisruptionBudget {params.namespace}/{params.name}",
        kc.policy.read_namespaced_pod_disruption_budget,
        params.name,
        params.namespace,
    )
    allowed = int(fresh.status.disruptions_allowed or 0) if fresh.status else 0
    return ApplyPdbResult(
        summary=f"{'replaced' if existing else 'created'} PodDisruptionBudget "
        f"{params.namespace}/{params.name} "
        f"({key}={value}, {matching} pods, {allowed} disruptions allowed now)",
        namespace=params.namespace,
        name=params.name,
        created=existing is None,
        expected_pods=matching,
        disruptions_allowed=allowed,
    )
