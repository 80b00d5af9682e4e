"""The resource types the bench serves, and the discovery documents built from them.

kubectl cannot issue a single request before discovery: it resolves ``deployments`` (or ``deploy``) to a
group, version and scope through ``/api``, ``/apis`` and each group-version's ``APIResourceList``; it
finds the scale subresource's kind there (``kubectl scale``) and whether ``pods/eviction`` is served and
in which group (``kubectl drain``). Only verbs and subresources the bench really implements are listed.

Aggregated discovery (``Accept: ...;as=APIGroupDiscoveryList``) is not served: the bench answers the
legacy documents as plain ``application/json``, and client-go falls back to the legacy path when the
response's content type is not the aggregated one (verified with kubectl 1.32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import ApiError

VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-loopback",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Sub:
    """A subresource as ``APIResourceList`` names it (``group``/``version`` set when they differ)."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = ""


@dataclass(frozen=True)
class Resource:
    plural: str
    group: str  # "" for the core group
    version: str
    kind: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Sub, ...] = field(default_factory=tuple)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` as the API server names a resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_STATUS = Sub("status", "", ("get",))
TYPES: tuple[Resource, ...] = (
    Resource("namespaces", "", "v1", "Namespace", False, "namespace", ("ns",)),
    Resource("nodes", "", "v1", "Node", False, "node", ("no",)),
    Resource(
        "pods",
        "",
        "v1",
        "Pod",
        True,
        "pod",
        ("po",),
        ("all",),
        (
            Sub("eviction", "Eviction", ("create",), "policy", "v1"),
            Sub("exec", "PodExecOptions", ("create", "get")),
            Sub("log", "Pod", ("get",)),
        ),
    ),
    Resource("events", "", "v1", "Event", True, "event", ("ev",)),
    Resource(
        "deployments",
        "apps",
        "v1",
        "Deployment",
        True,
        "deployment",
        ("deploy",),
        ("all",),
        (Sub("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1"), _STATUS),
    ),
    Resource(
        "statefulsets",
        "apps",
        "v1",
        "StatefulSet",
        True,
        "statefulset",
        ("sts",),
        ("all",),
        (Sub("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1"), _STATUS),
    ),
    Resource("replicasets", "apps", "v1", "ReplicaSet", True, "replicaset", ("rs",), ("all",)),
    Resource("daemonsets", "apps", "v1", "DaemonSet", True, "daemonset", ("ds",), ("all",)),
    Resource(
        "poddisruptionbudgets", "policy", "v1", "PodDisruptionBudget", True, "poddisruptionbudget", ("pdb",)
    ),
    Resource(
        "persistentvolumeclaims",
        "",
        "v1",
        "PersistentVolumeClaim",
        True,
        "persistentvolumeclaim",
        ("pvc",),
        (),
        (_STATUS,),
    ),
    Resource("secrets", "", "v1", "Secret", True, "secret"),
    Resource("controllerrevisions", "apps", "v1", "ControllerRevision", True, "controllerrevision"),
    Resource("storageclasses", "storage.k8s.io", "v1", "StorageClass", False, "storageclass", ("sc",)),
)
BY_PLURAL: dict[str, Resource] = {r.plural: r for r in TYPES}
# plural -> (apiVersion, kind, namespaced): the shape older callers import
RESOURCES: dict[str, tuple[str, str, bool]] = {r.plural: (r.api_version, r.kind, r.namespaced) for r in TYPES}
WORKLOADS = ("deployments", "statefulsets")
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(r.group for r in TYPES if r.group))


def resource(plural: str) -> Resource:
    return BY_PLURAL[plural]


def not_found(plural: str, name: str) -> ApiError:
    res = BY_PLURAL.get(plural)
    group = res.group if res and res.group else None
    what = res.qualified if res else plural
    return ApiError(
        404, "NotFound", f'{what} "{name}" not found', {"name": name, "kind": plural, "group": group}
    )


def _resource_entries(group: str, version: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for r in TYPES:
        if (r.group, r.version) != (group, version):
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(VERBS),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for sub in r.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{r.plural}/{sub.name}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind or r.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group:
                sub_entry["group"], sub_entry["version"] = sub.group, sub.version
            entries.append(sub_entry)
    return entries


def discovery(path: str, server_address: str) -> dict[str, Any] | None:
    """The discovery document for ``path``, or None when ``path`` is not a discovery path."""
    path = path.rstrip("/") or "/"
    if path == "/version":
        return dict(SERVER_VERSION)
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    if path == "/api/v1":
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": _resource_entries("", "v1")}
    if path == "/apis":
        groups = []
        for g in GROUPS:
            gv = {"groupVersion": f"{g}/v1", "version": "v1"}
            groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == "apis" and parts[2] in GROUPS:
        gv = {"groupVersion": f"{parts[2]}/v1", "version": "v1"}
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": parts[2],
            "versions": [gv],
            "preferredVersion": gv,
        }
    if len(parts) == 4 and parts[1] == "apis" and parts[2] in GROUPS and parts[3] == "v1":
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{parts[2]}/v1",
            "resources": _resource_entries(parts[2], "v1"),
        }
    return None
