"""Nodes, volume claims and storage classes: the read-only inventory a broker's disk incident needs,
and the one write, expanding a PVC (``kubernetes.list_nodes``, ``get_pvc``, ``get_storageclass``,
``patch_pvc``, declared with their user docs in :mod:`runbook.actions.kubernetes.actions`).

A claim may only grow, and only where its StorageClass says ``allowVolumeExpansion: true``; both are
checked here (the refusal names the class) before the API server would refuse them too, so the
approval request never proposes an expansion that cannot happen.
"""

from __future__ import annotations

from typing import Any

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.kubernetes.client import BACKEND, KubeApiError, call, clients
from runbook.actions.kubernetes.state_models import (
    ListNodesParams,
    ListNodesResult,
    NodeInfo,
    PatchPvcParams,
    PatchPvcResult,
    PvcParams,
    PvcResult,
    StorageClassParams,
    StorageClassResult,
    quantity_bytes,
)

PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
ROLE_PREFIX = "node-role.kubernetes.io/"


def _node_info(node: Any, pods: int) -> NodeInfo:
    conditions = {c.type: c.status for c in (node.status.conditions if node.status else None) or []}
    labels = node.metadata.labels or {}
    info = node.status.node_info if node.status else None
    return NodeInfo(
        name=node.metadata.name,
        ready=conditions.get("Ready") == "True",
        unschedulable=bool(node.spec.unschedulable) if node.spec else False,
        pressure=[c for c in PRESSURE if conditions.get(c) == "True"],
        roles=sorted(k[len(ROLE_PREFIX) :] for k in labels if k.startswith(ROLE_PREFIX)),
        kubelet_version=(info.kubelet_version or "") if info else "",
        taints=[
            f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}"
            for t in (node.spec.taints if node.spec else None) or []
        ],
        pods=pods,
    )


def list_nodes(ctx: ActionContext, params: ListNodesParams) -> ListNodesResult:
    """Every node's readiness, pressure conditions, cordon, taints and pod count."""
    kc = clients(ctx)
    nodes = call(ctx, "list nodes", kc.core.list_node, label_selector=params.selector or None).items
    pods = call(ctx, "list pods", kc.core.list_pod_for_all_namespaces).items
    per_node: dict[str, int] = {}
    for pod in pods:
        if pod.spec and pod.spec.node_name:
            per_node[pod.spec.node_name] = per_node.get(pod.spec.node_name, 0) + 1
    infos = [_node_info(n, per_node.get(str(n.metadata.name if n.metadata else ""), 0)) for n in nodes]
    not_ready = [n.name for n in infos if not n.ready]
    cordoned = [n.name for n in infos if n.unschedulable]
    pressure = {c: [n.name for n in infos if c in n.pressure] for c in PRESSURE}
    pressure = {c: names for c, names in pressure.items() if names}
    parts = [f"{len(infos) - len(not_ready)}/{len(infos)} nodes Ready"]
    if not_ready:
        parts.append(f"NotReady: {', '.join(not_ready)}")
    if cordoned:
        parts.append(f"cordoned: {', '.join(cordoned)}")
    parts.extend(f"{c}: {', '.join(names)}" for c, names in pressure.items())
    return ListNodesResult(
        summary="; ".join(parts),
        total=len(infos),
        ready=len(infos) - len(not_ready),
        not_ready=not_ready,
        unschedulable=cordoned,
        pressure=pressure,
        nodes=infos,
    )


def _read_pvc(ctx: ActionContext, namespace: str, name: str) -> Any:
    return call(
        ctx,
        f"read persistentvolumeclaim {namespace}/{name}",
        clients(ctx).core.read_namespaced_persistent_volume_claim,
        name,
        namespace,
    )


def _read_class(ctx: ActionContext, name: str) -> Any:
    return call(ctx, f"read storageclass {name}", clients(ctx).storage.read_storage_class, name)


def _expandable(ctx: ActionContext, class_name: str) -> bool | None:
    """Whether the class allows expansion; None when there is no class or it cannot be read."""
    if not class_name:
        return None
    try:
        return bool(_read_class(ctx, class_name).allow_volume_expansion)
    except KubeApiError:
        return None


def _sizes(pvc: Any) -> tuple[str, str]:
    requested = str(((pvc.spec.resources.requests if pvc.spec.resources else None) or {}).get("storage", "0"))
    capacity = str(((pvc.status.capacity if pvc.status else None) or {}).get("storage", "0"))
    return requested, capacity


def get_pvc(ctx: ActionContext, params: PvcParams) -> PvcResult:
    pvc = _read_pvc(ctx, params.namespace, params.name)
    requested, capacity = _sizes(pvc)
    conditions = [f"{c.type}={c.status}" for c in (pvc.status.conditions if pvc.status else None) or []]
    resizing = any(c.startswith(("Resizing=", "FileSystemResizePending=")) for c in conditions)
    class_name = pvc.spec.storage_class_name or ""
    expandable = _expandable(ctx, class_name)
    phase = (pvc.status.phase if pvc.status else None) or "Pending"
    state = "resizing" if resizing else phase
    return PvcResult(
        summary=f"pvc {params.namespace}/{params.name}: {state}, capacity {capacity} (requested {requested}),"
        f" class {class_name or '-'} ({'expandable' if expandable else 'not expandable'})",
        namespace=params.namespace,
        name=params.name,
        phase=phase,
        requested=requested,
        capacity=capacity,
        requested_bytes=quantity_bytes(requested),
        capacity_bytes=quantity_bytes(capacity),
        storage_class=class_name,
        volume=pvc.spec.volume_name or "",
        access_modes=list(pvc.spec.access_modes or []),
        resizing=resizing,
        conditions=conditions,
        expandable=expandable,
    )


def get_storageclass(ctx: ActionContext, params: StorageClassParams) -> StorageClassResult:
    sc = _read_class(ctx, params.name)
    default = (sc.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    allow = bool(sc.allow_volume_expansion)
    return StorageClassResult(
        summary=f"storageclass {params.name}{' (default)' if default else ''}: {sc.provisioner}, volume"
        f" expansion {'allowed' if allow else 'NOT allowed'}",
        name=params.name,
        provisioner=sc.provisioner or "",
        allow_volume_expansion=allow,
        reclaim_policy=sc.reclaim_policy or "Delete",
        binding_mode=sc.volume_binding_mode or "Immediate",
        default=default,
    )


def _check_expansion(ctx: ActionContext, params: PatchPvcParams) -> tuple[Any, str, str]:
    """The claim, its current request and capacity, once every rule holds (else a refusal)."""
    where = f"pvc {params.namespace}/{params.name}"
    pvc = _read_pvc(ctx, params.namespace, params.name)
    requested, capacity = _sizes(pvc)
    new = quantity_bytes(params.size)
    if new > quantity_bytes(params.max_size):
        raise GuardrailRefused(f"{where}: {params.size} is above max_size {params.max_size}", backend=BACKEND)
    if new <= quantity_bytes(requested):
        raise GuardrailRefused(
            f"{where}: {params.size} is not larger than the current request {requested}"
            " (a volume claim can only grow)",
            backend=BACKEND,
        )
    class_name = pvc.spec.storage_class_name or ""
    if not class_name:
        raise GuardrailRefused(f"{where} has no StorageClass: it cannot be expanded", backend=BACKEND)
    if not _read_class(ctx, class_name).allow_volume_expansion:
        raise GuardrailRefused(
            f"{where}: storageclass {class_name} does not allow volume expansion"
            " (allowVolumeExpansion is not true)",
            backend=BACKEND,
        )
    return pvc, requested, capacity


def describe_patch_pvc(ctx: ActionContext, params: PatchPvcParams) -> str:
    pvc, requested, capacity = _check_expansion(ctx, params)
    return (
        f"expand pvc {params.namespace}/{params.name} from {requested} (capacity {capacity}) to {params.size}"
        f" (storageclass {pvc.spec.storage_class_name} allows expansion; the volume cannot shrink back;"
        " some drivers finish the filesystem resize only when the pod restarts)"
    )


def patch_pvc(ctx: ActionContext, params: PatchPvcParams) -> PatchPvcResult:
    pvc, requested, _ = _check_expansion(ctx, params)
    try:
        after = call(
            ctx,
            f"expand persistentvolumeclaim {params.namespace}/{params.name}",
            clients(ctx).core.patch_namespaced_persistent_volume_claim,
            params.name,
            params.namespace,
            {"spec": {"resources": {"requests": {"storage": params.size}}}},
        )
    except KubeApiError as exc:
        raise ActionError(str(exc), backend=BACKEND) from None
    _, capacity = _sizes(after)
    return PatchPvcResult(
        summary=f"pvc {params.namespace}/{params.name}: requested {requested} -> {params.size}"
        f" (capacity now {capacity}; the resize completes asynchronously)",
        namespace=params.namespace,
        name=params.name,
        previous=requested,
        requested=params.size,
        capacity=capacity,
        storage_class=pvc.spec.storage_class_name or "",
    )
