"""Helpers behind the Kubernetes actions: describe() texts, guardrail plans, drain and exec loops.

Split from ``kubernetes.py`` (which must hold the ``@action`` functions, since the registry loads
that module) to keep each file readable. Nothing here is an action.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.kubernetes.client import (
    BACKEND,
    KubeApiError,
    call,
    clients,
    controller_of,
    is_mirror,
    label_selector,
    pod_is_ready,
    read_workload,
    rollout_of,
)
from runbook.actions.kubernetes.models import (
    AnnotateParams,
    ApplyPdbParams,
    DeletePodParams,
    DrainParams,
    ExecParams,
    NodeParams,
    NodeResult,
    PodInfo,
    ScaleParams,
    WorkloadParams,
    allowed_by,
)


def _pod_info(pod: Any) -> PodInfo:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    waiting = term = ""
    exit_code = None
    for cs in statuses:
        if cs.state and cs.state.waiting and cs.state.waiting.reason and not waiting:
            waiting = cs.state.waiting.reason
        if cs.state and cs.state.terminated and cs.state.terminated.reason and not term:
            term, exit_code = cs.state.terminated.reason, cs.state.terminated.exit_code
        last = cs.last_state.terminated if cs.last_state else None
        if last and last.reason and not term:
            term, exit_code = last.reason, last.exit_code
    owner = controller_of(pod)
    return PodInfo(
        name=pod.metadata.name,
        phase=(pod.status.phase if pod.status else None) or "Unknown",
        ready=pod_is_ready(pod),
        ready_containers=f"{sum(1 for cs in statuses if cs.ready)}/{len(pod.spec.containers)}",
        restarts=sum(int(cs.restart_count or 0) for cs in statuses),
        node=pod.spec.node_name or "",
        waiting_reason=waiting,
        last_termination_reason=term,
        last_exit_code=exit_code,
        owner=f"{owner[0]}/{owner[1]}" if owner else "",
    )


def _event_time(ev: Any) -> datetime:
    for value in (
        ev.last_timestamp,
        getattr(ev, "event_time", None),
        ev.first_timestamp,
        ev.metadata.creation_timestamp,
    ):
        if value:
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def _db_budget(ctx: ActionContext, params: ScaleParams) -> tuple[int, int, int]:
    """(budget, max_connections, used): the seed's rule floor((max_connections - headroom) / pool_size)."""
    from runbook.actions.postgres.actions import (
        actions as postgres,  # the PostgreSQL module owns psycopg; we only ask it for limits
    )

    limits_fn = getattr(postgres, "connection_limits", None)
    if limits_fn is None:
        raise ActionError(
            "cannot check the DB-connection budget: runbook.actions.postgres.actions.connection_limits is missing",
            backend=BACKEND,
        )
    limits = limits_fn(ctx)
    assert params.db_pool_size is not None
    budget = max(0, (int(limits.max_connections) - params.db_headroom) // params.db_pool_size)
    return budget, int(limits.max_connections), int(limits.used)


def _scale_plan(ctx: ActionContext, params: ScaleParams) -> tuple[int, int | None, str, str]:
    """(current, budget, refusal or "", description) — shared by describe and the action."""
    obj = read_workload(ctx, params.kind, params.namespace, params.deployment)
    current = int(obj.spec.replicas if obj.spec.replicas is not None else 1)
    what = f"{params.kind} {params.namespace}/{params.deployment}"
    text = f"scale {what} from {current} to {params.replicas} replicas (max_replicas {params.max_replicas}"
    refusal = ""
    growing = params.replicas > current
    budget = None
    if params.use_database:
        budget, max_conn, used = _db_budget(ctx, params)
        text += (
            f"; DB budget floor(({max_conn} max_connections - {params.db_headroom} headroom) / "
            f"{params.db_pool_size} pool) = {budget} replicas, {used} connections in use now"
        )
        if growing and params.replicas > budget:
            refusal = (
                f"{params.replicas} replicas x {params.db_pool_size} connections exceeds the "
                f"DB-connection budget "
                f"of {budget} replicas (max_connections {max_conn}, headroom {params.db_headroom})"
            )
    if growing and params.replicas > params.max_replicas:
        refusal = f"{params.replicas} replicas exceeds max_replicas {params.max_replicas}"
    text += ")"
    if params.replicas == current:
        text += "; already at that count, nothing changes"
    return current, budget, refusal, text + (f"; REFUSED: {refusal}" if refusal else "")


def describe_scale(ctx: ActionContext, params: ScaleParams) -> str:
    return _scale_plan(ctx, params)[3]


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def describe_rollout_restart(ctx: ActionContext, params: WorkloadParams) -> str:
    obj = read_workload(ctx, params.kind, params.namespace, params.deployment)
    r = rollout_of(obj)
    before = ((obj.spec.template.metadata.annotations if obj.spec.template.metadata else None) or {}).get(
        RESTARTED_AT
    )
    text = (
        f"rolling restart of {params.kind} {params.namespace}/{params.deployment}: replaces its "
        f"{r.desired} pods "
        f"({r.ready}/{r.desired} ready now) by setting pod-template annotation {RESTARTED_AT} "
        f"{before or '(unset)'} -> <now>"
    )
    if getattr(obj.spec, "paused", False):
        text += "; REFUSED: the deployment is paused"
    return text


def _read_annotatable(ctx: ActionContext, params: AnnotateParams) -> Any:
    kc = clients(ctx)
    ns = params.namespace or ""
    if params.kind == "node":
        return call(ctx, f"read node {params.name}", kc.core.read_node, params.name)
    if params.kind == "pod":
        return call(ctx, f"read pod {ns}/{params.name}", kc.core.read_namespaced_pod, params.name, ns)
    return read_workload(ctx, params.kind, ns, params.name)


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
    current = dict(_read_annotatable(ctx, params).metadata.annotations or {})
    changes = _annotation_changes(current, params)
    if not changes:
        return f"annotate {_target(params)}: nothing changes (already {params.values()})"
    parts = [f"{k}: {current[k]!r}" if k in current else f"{k}: (unset)" for k in changes]
    parts = [
        f"{p} -> {'(removed)' if changes[k] is None else repr(changes[k])}"
        for p, k in zip(parts, changes, strict=True)
    ]
    return f"annotate {_target(params)}: " + "; ".join(parts)


def _read_pod(ctx: ActionContext, namespace: str, name: str) -> Any:
    return call(ctx, f"read pod {namespace}/{name}", clients(ctx).core.read_namespaced_pod, name, namespace)


def describe_delete_pod(ctx: ActionContext, params: DeletePodParams) -> str:
    pod = _read_pod(ctx, params.namespace, params.pod)
    owner = controller_of(pod)
    info = _pod_info(pod)
    text = (
        f"delete pod {params.namespace}/{params.pod} (phase {info.phase}, "
        f"{'ready' if info.ready else 'not ready'}, "
        f"{info.restarts} restarts, node {info.node or '-'}); "
    )
    if owner:
        return text + f"{owner[0]} {owner[1]} recreates it"
    return text + (
        "it is unmanaged and will NOT be recreated"
        if params.allow_unmanaged
        else "REFUSED: it is unmanaged (no controller would recreate it); set allow_unmanaged"
    )


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


def _set_unschedulable(ctx: ActionContext, node: str, value: bool) -> NodeResult:
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
                pod = _read_pod(ctx, ns, name)
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


def _exec_target(ctx: ActionContext, params: ExecParams) -> tuple[Any, str]:
    pod = _read_pod(ctx, params.namespace, params.pod)
    names = [c.name for c in pod.spec.containers]
    container = params.container or names[0]
    if container not in names:
        raise ActionError(
            f"pod {params.namespace}/{params.pod} has no container {container!r} (has {names})",
            backend=BACKEND,
        )
    if (pod.status.phase if pod.status else None) != "Running":
        raise ActionError(
            f"pod {params.namespace}/{params.pod} is {pod.status.phase if pod.status else 'Unknown'}, "
            "not Running: cannot exec",
            backend=BACKEND,
        )
    return pod, container


def describe_exec(ctx: ActionContext, params: ExecParams) -> str:
    pod, container = _exec_target(ctx, params)
    return (
        f"run {params.command!r} (no shell; allowed by '{allowed_by(params.command, params.allow)}') "
        f"in pod {params.namespace}/{params.pod} container {container} "
        f"(pod {'ready' if pod_is_ready(pod) else 'NOT ready'}, node {pod.spec.node_name or '-'}); "
        f"timeout {params.timeout_seconds:g}s, output capped at {params.max_output_bytes} bytes"
    )


def _exit_code(status: str) -> int | None:
    """Exit code from the exec status channel: Success -> 0, NonZeroExitCode -> its cause."""
    import json

    if not status:
        return None
    try:
        data = json.loads(status)
    except ValueError:
        return None
    if data.get("status") == "Success":
        return 0
    for cause in (data.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return None
    return None
