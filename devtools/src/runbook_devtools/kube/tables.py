"""Server-side printing: ``meta.k8s.io/v1 Table`` answers for ``kubectl get``.

kubectl asks ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...``. Without a Table it can only
print NAME and AGE (the per-type printers live in the API server since 1.16), so the bench renders the
columns kube-apiserver's printers do for the types it serves (same names, order and wide-only priority).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .base import parse_iso
from .selectors import selector_string

Row = list[Any]
Column = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    return f"{h // (24 * 365)}y{(h // 24) % 365}d"


def age(stamp: str | None) -> str:
    when = parse_iso(stamp)
    if when is None:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - when).total_seconds())


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []


def _pod_row(p: dict[str, Any]) -> Row:
    st = p.get("status") or {}
    cstats = st.get("containerStatuses") or []
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for cs in cstats:
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    ready = sum(1 for cs in cstats if cs.get("ready"))
    total = len((p.get("spec") or {}).get("containers") or [])
    restarts = sum(int(cs.get("restartCount") or 0) for cs in cstats)
    return [
        p["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        str(restarts),
        age(p["metadata"].get("creationTimestamp")),
        st.get("podIP") or "<none>",
        (p.get("spec") or {}).get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _deployment_row(d: dict[str, Any]) -> Row:
    st, spec = d.get("status") or {}, d.get("spec") or {}
    cs = _containers(d)
    return [
        d["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(d["metadata"].get("creationTimestamp")),
        ",".join(c["name"] for c in cs),
        ",".join(c.get("image", "") for c in cs),
        selector_string(spec.get("selector")),
    ]


def _statefulset_row(s: dict[str, Any]) -> Row:
    st, spec = s.get("status") or {}, s.get("spec") or {}
    cs = _containers(s)
    return [
        s["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        age(s["metadata"].get("creationTimestamp")),
        ",".join(c["name"] for c in cs),
        ",".join(c.get("image", "") for c in cs),
    ]


def _replicaset_row(r: dict[str, Any]) -> Row:
    st, spec = r.get("status") or {}, r.get("spec") or {}
    cs = _containers(r)
    return [
        r["metadata"]["name"],
        spec.get("replicas", 1),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        age(r["metadata"].get("creationTimestamp")),
        ",".join(c["name"] for c in cs),
        ",".join(c.get("image", "") for c in cs),
        selector_string(spec.get("selector")),
    ]


def _daemonset_row(d: dict[str, Any]) -> Row:
    st = d.get("status") or {}
    node_sel = ((d.get("spec") or {}).get("template") or {}).get("spec", {}).get("nodeSelector") or {}
    return [
        d["metadata"]["name"],
        st.get("desiredNumberScheduled", 0),
        st.get("currentNumberScheduled", 0),
        st.get("numberReady", 0),
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(node_sel.items())) or "<none>",
        age(d["metadata"].get("creationTimestamp")),
    ]


def _node_row(n: dict[str, Any]) -> Row:
    conds = {c["type"]: c.get("status") for c in (n.get("status") or {}).get("conditions") or []}
    status = {"True": "Ready", "False": "NotReady"}.get(conds.get("Ready") or "", "Unknown")
    if (n.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = n["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = (n.get("status") or {}).get("nodeInfo") or {}
    addresses = {a["type"]: a["address"] for a in (n.get("status") or {}).get("addresses") or []}
    return [
        n["metadata"]["name"],
        status,
        ",".join(roles) or "<none>",
        age(n["metadata"].get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
    ]


def _event_row(e: dict[str, Any]) -> Row:
    inv = e.get("involvedObject") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    return [
        age(last),
        e.get("type", ""),
        e.get("reason", ""),
        f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}",
        (e.get("message") or "").strip(),
    ]


def _pdb_row(p: dict[str, Any]) -> Row:
    spec, st = p.get("spec") or {}, p.get("status") or {}
    return [
        p["metadata"]["name"],
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        st.get("disruptionsAllowed", 0),
        age(p["metadata"].get("creationTimestamp")),
    ]


def _namespace_row(n: dict[str, Any]) -> Row:
    return [
        n["metadata"]["name"],
        (n.get("status") or {}).get("phase", ""),
        age(n["metadata"].get("creationTimestamp")),
    ]


def _pvc_row(p: dict[str, Any]) -> Row:
    st, spec = p.get("status") or {}, p.get("spec") or {}
    modes = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return [
        p["metadata"]["name"],
        st.get("phase", "Pending"),
        spec.get("volumeName", ""),
        (st.get("capacity") or {}).get("storage", ""),
        ",".join(modes.get(m, m) for m in st.get("accessModes") or []),
        spec.get("storageClassName", ""),
        age(p["metadata"].get("creationTimestamp")),
        spec.get("volumeMode", "Filesystem"),
    ]


def _storageclass_row(c: dict[str, Any]) -> Row:
    default = (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class")
    return [
        c["metadata"]["name"] + (" (default)" if default == "true" else ""),
        c.get("provisioner", ""),
        c.get("reclaimPolicy", "Delete"),
        c.get("volumeBindingMode", "Immediate"),
        bool(c.get("allowVolumeExpansion")),
        age(c["metadata"].get("creationTimestamp")),
    ]


def _revision_row(r: dict[str, Any]) -> Row:
    owner = next((o for o in r["metadata"].get("ownerReferences") or [] if o.get("controller")), None)
    return [
        r["metadata"]["name"],
        f"statefulset.apps/{owner['name']}" if owner else "<none>",
        r.get("revision", 0),
        age(r["metadata"].get("creationTimestamp")),
    ]


def _secret_row(x: dict[str, Any]) -> Row:
    return [
        x["metadata"]["name"],
        x.get("type", "Opaque"),
        len(x.get("data") or {}),
        age(x["metadata"].get("creationTimestamp")),
    ]


def _s(name: str, priority: int = 0) -> Column:
    return (name, "string", priority)


_NAME = ("Name", "string", 0)
_AGE = ("Age", "string", 0)
PRINTERS: dict[str, tuple[list[Column], Callable[[dict[str, Any]], Row]]] = {
    "pods": (
        [
            _NAME,
            _s("Ready"),
            _s("Status"),
            ("Restarts", "string", 0),
            _AGE,
            _s("IP", 1),
            _s("Node", 1),
            _s("Nominated Node", 1),
            _s("Readiness Gates", 1),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            _NAME,
            _s("Ready"),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            _AGE,
            _s("Containers", 1),
            _s("Images", 1),
            _s("Selector", 1),
        ],
        _deployment_row,
    ),
    "statefulsets": ([_NAME, _s("Ready"), _AGE, _s("Containers", 1), _s("Images", 1)], _statefulset_row),
    "replicasets": (
        [
            _NAME,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            _AGE,
            _s("Containers", 1),
            _s("Images", 1),
            _s("Selector", 1),
        ],
        _replicaset_row,
    ),
    "daemonsets": (
        [
            _NAME,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            _s("Node Selector"),
            _AGE,
        ],
        _daemonset_row,
    ),
    "nodes": (
        [_NAME, _s("Status"), _s("Roles"), _AGE, _s("Version"), _s("Internal-IP", 1), _s("External-IP", 1)],
        _node_row,
    ),
    "events": ([_s("Last Seen"), _s("Type"), _s("Reason"), _s("Object"), _s("Message")], _event_row),
    "poddisruptionbudgets": (
        [_NAME, _s("Min Available"), _s("Max Unavailable"), ("Allowed Disruptions", "integer", 0), _AGE],
        _pdb_row,
    ),
    "namespaces": ([_NAME, _s("Status"), _AGE], _namespace_row),
    "persistentvolumeclaims": (
        [
            _NAME,
            _s("Status"),
            _s("Volume"),
            _s("Capacity"),
            _s("Access Modes"),
            _s("StorageClass"),
            _AGE,
            _s("VolumeMode", 1),
        ],
        _pvc_row,
    ),
    "storageclasses": (
        [
            _NAME,
            _s("Provisioner"),
            _s("ReclaimPolicy"),
            _s("VolumeBindingMode"),
            ("AllowVolumeExpansion", "boolean", 0),
            _AGE,
        ],
        _storageclass_row,
    ),
    "controllerrevisions": (
        [_NAME, _s("Controller"), ("Revision", "integer", 0), _AGE],
        _revision_row,
    ),
    "secrets": ([_NAME, _s("Type"), ("Data", "integer", 0), _AGE], _secret_row),
}


def wants_table(accept: str) -> bool:
    return "as=Table" in (accept or "")


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(
    plural: str, items: list[dict[str, Any]], list_meta: dict[str, Any], include: str = ""
) -> dict[str, Any]:
    """A Table of ``items`` (``include`` is the ``includeObject`` query: None, Metadata (default), Object)."""
    columns, row = PRINTERS.get(
        plural,
        ([_NAME, _AGE], lambda o: [o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"))]),
    )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": n, "priority": p}
            for n, t, p in columns
        ],
        "rows": [{"cells": row(o), "object": _row_object(o, include)} for o in items],
    }
