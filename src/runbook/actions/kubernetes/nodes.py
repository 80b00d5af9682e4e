"""Nodes: cordon, uncordon and a PodDisruptionBudget-respecting drain.

The drain plan (what is evicted, skipped or refused) is computed once for ``describe`` and again at
execution, so an approval shows exactly the rules the action applies.
"""

from __future__ import annotations

import time
from typing import Any

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.kubernetes.client import (
    BACKEND,
    KubeApiError,
    call,
    clients,
    controller_of,
    eviction,
    is_mirror,
)
from runbook.actions.kubernetes.models import DrainParams, DrainResult, NodeParams, NodeResult
from runbook.actions.kubernetes.pods import read_pod


def _node_pods(ctx: ActionContext, node: str) -> list[Any]:
    pods = call(
        ctx,
        f"list pods on node {node}",
        clients(ctx).core.list_pod_for_all_namespaces,
        field_selector=f"spec.nodeName={node}",
    )
    return list(pods.items)


def _read_node(ctx: ActionContext, node: str) -> Any:
    return call(ctx, f"read node {node}", clients(ctx).core.read_node, node)


def set_unschedulable(ctx: ActionContext, node: str, value: bool) -> NodeResult:
    obj = _read_node(ctx, node)
    before = bool(obj.spec.unschedulable) if obj.spec else False
    if before != value:
        call(
            ctx,
            f"{'cordon' if value else 'uncordon'} node {node}",
            clients(ctx).core.patch_node,
            node,
            {"spec": {"unschedulable": value or None}},
        )
    pods = len(_node_pods(ctx, node))
    verb = "cordoned" if value else "uncordoned"
    return NodeResult(
        summary=f"{verb} node {node} ({pods} pods keep running)"
        if before != value
        else f"node {node} already {verb}",
        node=node,
        unschedulable=value,
        changed=before != value,
        pods=pods,
    )


def _describe_node_flag(ctx: ActionContext, node: str, value: bool) -> str:
    obj = _read_node(ctx, node)
    before = bool(obj.spec.unschedulable) if obj.spec else False
    state = {True: "unschedulable", False: "schedulable"}
    if before == value:
        return f"node {node} is already {state[value]}: nothing changes"
    verb = "cordon" if value else "uncordon"
    pods = len(_node_pods(ctx, node))
    return f"{verb} node {node}: {state[before]} -> {state[value]} ({pods} pods keep running)"


def describe_cordon(ctx: ActionContext, params: NodeParams) -> str:
    return _describe_node_flag(ctx, params.node, True)


def describe_uncordon(ctx: ActionContext, params: NodeParams) -> str:
    return _describe_node_flag(ctx, params.node, False)


def _drain_plan(ctx: ActionContext, params: DrainParams) -> tuple[Any, list[Any], list[str], list[str]]:
    """(node, pods to evict, skipped "ns/name (why)", refused "ns/name (why)")."""
    node = _read_node(ctx, params.node)
    evict, skipped, refused = [], [], []
    for pod in _node_pods(ctx, params.node):
        ref = f"{pod.metadata.namespace}/{pod.metadata.name}"
        owner = controller_of(pod)
        finished = pod.status is not None and pod.status.phase in ("Succeeded", "Failed")
        if owner and owner[0] == "DaemonSet":
            skipped.append(f"{ref} (DaemonSet)")
        elif is_mirror(pod):
            skipped.append(f"{ref} (static mirror pod)")
        elif owner is None and not finished and not params.evict_unmanaged:
            refused.append(f"{ref} (unmanaged: set evict_unmanaged)")
        elif any(v.empty_dir is not None for v in pod.spec.volumes or []) and not params.delete_emptydir_data:
            refused.append(f"{ref} (emptyDir data would be lost: set delete_emptydir_data)")
        else:
            evict.append(pod)
    return node, evict, skipped, refused


def describe_drain(ctx: ActionContext, params: DrainParams) -> str:
    node, evict, skipped, refused = _drain_plan(ctx, params)
    cordoned = "already cordoned" if node.spec and node.spec.unschedulable else "schedulable -> unschedulable"
    names = ", ".join(f"{p.metadata.namespace}/{p.metadata.name}" for p in evict) or "none"
    text = (
        f"drain node {params.node}: cordon ({cordoned}); evict {len(evict)} pods via the Eviction API "
        f"(PodDisruptionBudgets respected, retried up to {params.timeout_seconds:g}s): {names}"
    )
    if skipped:
        text += f"; skip {', '.join(skipped)}"
    if refused:
        text += f"; REFUSED: {', '.join(refused)}"
    return text


def _wait_gone(ctx: ActionContext, pods: list[Any], deadline: float) -> list[str]:
    """Evicted pods still terminating at the deadline (a pod recreated under the same name, as
    statefulset pods are, counts as gone once its uid changed)."""
    waiting = {(p.metadata.namespace, p.metadata.name): p.metadata.uid for p in pods}
    while waiting:
        for (ns, name), uid in list(waiting.items()):
            try:
                pod = read_pod(ctx, ns, name)
            except KubeApiError as exc:
                if exc.status == 404:
                    waiting.pop((ns, name))
                    continue
                raise
            if pod.metadata.uid != uid:
                waiting.pop((ns, name))
        left = deadline - time.monotonic()
        if not waiting or left <= 0:
            break
        time.sleep(min(1.0, left))
    return [f"{ns}/{name}" for ns, name in waiting]


def drain(ctx: ActionContext, params: DrainParams) -> DrainResult:
    """Cordon, evict under PodDisruptionBudgets until the deadline, wait for the pods to go.

    See ``kubernetes.drain``.
    """
    start = time.monotonic()
    deadline = start + min(params.timeout_seconds, ctx.remaining(default=params.timeout_seconds))
    node, pending, skipped, refused = _drain_plan(ctx, params)
    if refused:
        raise GuardrailRefused(f"refusing to drain node {params.node}: {', '.join(refused)}", backend=BACKEND)
    kc = clients(ctx)
    if not (node.spec and node.spec.unschedulable):
        call(
            ctx,
            f"cordon node {params.node}",
            kc.core.patch_node,
            params.node,
            {"spec": {"unschedulable": True}},
        )
    evicted: list[Any] = []
    blocked: dict[str, str] = {}
    while pending:
        for pod in list(pending):
            ns, name = pod.metadata.namespace, pod.metadata.name
            body = eviction(name, ns, params.grace_period_seconds)
            try:
                call(
                    ctx,
                    f"evict pod {ns}/{name}",
                    kc.core.create_namespaced_pod_eviction,
                    name,
                    ns,
                    body,
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            except KubeApiError as exc:
                if exc.status == 404:  # already gone: nothing left to evict
                    pending.remove(pod)
                    continue
                if exc.status == 429:
                    blocked[f"{ns}/{name}"] = str(exc).split(": ", 2)[-1]
                    continue
                raise
            pending.remove(pod)
            blocked.pop(f"{ns}/{name}", None)
            evicted.append(pod)
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            break
        time.sleep(min(params.retry_interval, left))
    terminating = _wait_gone(ctx, evicted, deadline)
    names = [f"{p.metadata.namespace}/{p.metadata.name}" for p in evicted]
    complete = not pending
    summary = f"drained node {params.node}: evicted {len(evicted)} pods" + (
        f", skipped {len(skipped)}" if skipped else ""
    )
    if not complete:
        summary = (
            f"drain of node {params.node} incomplete after {time.monotonic() - start:.1f}s: "
            f"{len(pending)} pods blocked by PodDisruptionBudgets ("
            + "; ".join(f"{k}: {v}" for k, v in blocked.items())
            + f"); evicted {len(evicted)}; node stays cordoned"
        )
        if params.fail_on_blocked:
            raise ActionError(summary, backend=BACKEND)
    return DrainResult(
        summary=summary,
        node=params.node,
        complete=complete,
        evicted=names,
        blocked=[f"{k} ({v})" for k, v in blocked.items()],
        skipped=skipped,
        terminating=terminating,
    )
