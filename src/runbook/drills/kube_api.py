"""A loopback Kubernetes API server for tests, playbook end-to-end runs, game-day drills and `make demo`.

No kube-apiserver can be had on these machines (see ../shared/NOTES.md), and the official client talks
urllib3 (and websocket-client for exec), so HTTP mocking libraries cannot intercept it. This module is
a small threaded HTTP server that speaks enough of the real API, with real status codes and ``Status``
bodies, for the actions in ``runbook.actions.kubernetes`` to be driven end to end by the real client:

- an in-memory store of namespaces, nodes, pods, events, deployments, statefulsets and
  PodDisruptionBudgets; list with ``labelSelector`` / ``fieldSelector``; create, replace (with
  ``resourceVersion`` conflicts), delete; strategic-merge patch (merge-patch semantics, lists of named
  items merged by ``name``), JSON merge patch and JSON Patch;
- a tiny controller: deployments and statefulsets own pods; a spec change bumps ``generation`` and the
  status (observedGeneration, updated/ready/available replicas) and the pods catch up after
  ``rollout_delay`` seconds; deleted or evicted pods are replaced after ``replace_delay`` seconds on a
  schedulable node (``None`` stops the controller, for stuck-rollout scenarios);
- the ``scale`` subresource, pod logs (current and previous container), the Eviction API answering 429
  when a PodDisruptionBudget would be violated (computed from the ready pods its selector matches),
  and ``exec`` over the websocket channel protocol v4 (stdout, stderr and the exit-status channel);
- fault injection (answer an HTTP error, or hang, for the next N matching requests) and a request log.

Use it in tests as a context manager::

    with KubeAPIServer() as kube:
        kube.seed_demo()
        settings = dataclasses.replace(settings, kubeconfig=str(kube.write_kubeconfig(tmp_path / "kc")))

or run it for a drill: ``python -m runbook.drills.kube_api --port 6443 --kubeconfig /tmp/kubeconfig``
(seeds the demo cluster: namespace ``orchestrator`` with deployment ``orchestrator`` (3 pods) and
statefulset ``rabbitmq`` (3 pods) on two nodes).

It lives in the package (not only under tests/) because ``make demo`` serves the demo cluster to
a ``runbook serve`` subprocess through ``KUBECONFIG``; ``tests.support.kube_api`` re-exports it.

Not implemented (the actions do not need it): watches, pagination, RBAC, admission, ReplicaSet objects,
graceful pod termination (deletes are immediate), strategic-merge ``$patch`` directives.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import itertools
import json
import math
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# plural -> (apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": ("v1", "Namespace", False),
    "nodes": ("v1", "Node", False),
    "pods": ("v1", "Pod", True),
    "events": ("v1", "Event", True),
    "deployments": ("apps/v1", "Deployment", True),
    "statefulsets": ("apps/v1", "StatefulSet", True),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget", True),
}
WORKLOADS = ("deployments", "statefulsets")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_TOKEN = "loopback-token"


def now_iso(offset_seconds: float = 0.0) -> str:
    """RFC 3339 timestamps as the API server writes them (second precision, Z)."""
    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ExecResult:
    """What a simulated command prints and returns inside a pod."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


@dataclass
class Fault:
    """Answer ``status`` (or hang ``hang`` seconds) to the next ``count`` requests that match."""

    count: int
    status: int = 500
    hang: float | None = None
    method: str | None = None
    path: str | None = None  # regular expression searched in the request path
    message: str = "injected fault"

    def matches(self, method: str, path: str) -> bool:
        if self.count <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not (self.path and not re.search(self.path, path))


@dataclass
class RequestRecord:
    """One request as the server saw it (for assertions in tests)."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)


class ApiError(Exception):
    """Raised inside the handler to answer a Kubernetes ``Status`` failure."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def not_found(plural: str, name: str) -> ApiError:
    group = {"deployments": "apps", "statefulsets": "apps", "poddisruptionbudgets": "policy"}.get(plural)
    what = f"{plural}.{group}" if group else plural
    return ApiError(
        404, "NotFound", f'{what} "{name}" not found', {"name": name, "kind": plural, "group": group}
    )


# --------------------------------------------------------------------------------------------- selectors


def _split_top(expr: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector syntax: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
    ``a``, ``!a``."""
    for req in _split_top(selector or ""):
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\((.*)\)", req)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            present = key in labels and labels[key] in values
            if (op == "in") != present:
                return False
            continue
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", req)
        if m:
            key, op, value = m.groups()
            equal = labels.get(key) == value
            if (op == "!=") == equal:
                return False
            continue
        if req.startswith("!"):
            if req[1:].strip() in labels:
                return False
            continue
        if req not in labels:
            return False
    return True


def match_labels_selector(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A ``LabelSelector`` object (matchLabels and matchExpressions) against labels."""
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _dig(obj: Any, dotted: str) -> str:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return ""
        obj = obj.get(part)
    if obj is None:
        return ""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return str(obj)


def field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    for req in _split_top(selector or ""):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", req)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector {req!r}")
        key, op, value = m.groups()
        if (_dig(obj, key) == value) == (op == "!="):
            return False
    return True


# --------------------------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; with ``strategic``, lists of objects that all carry ``name`` merge by name
    (the strategic-merge key of containers, volumes, env...)."""
    if not isinstance(patch, dict):
        if (
            strategic
            and isinstance(patch, list)
            and isinstance(target, list)
            and _named(patch)
            and _named(target)
        ):
            merged = {item["name"]: item for item in copy.deepcopy(target)}
            for item in patch:
                merged[item["name"]] = merge_patch(merged.get(item["name"], {}), item, strategic=True)
            return list(merged.values())
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON Patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        try:
            parts = _pointer(op["path"])
            parent = _resolve(doc, parts[:-1])
            last = parts[-1]
            if kind == "test":
                if _resolve(doc, parts) != op.get("value"):
                    raise ApiError(422, "Invalid", f"JSON patch test failed at {op['path']}")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(_resolve(doc, _pointer(op["from"])))
                if kind == "move":
                    src = _pointer(op["from"])
                    src_parent = _resolve(doc, src[:-1])
                    del src_parent[int(src[-1]) if isinstance(src_parent, list) else src[-1]]
                kind, op = "add", {**op, "value": value}
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), op["value"])
                else:
                    parent[last] = op["value"]
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    if last not in parent:
                        raise KeyError(last)
                    parent[last] = op["value"]
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422, "Invalid", f"JSON patch {kind} {op.get('path')}: no such path ({exc})"
            ) from exc
    return doc


# --------------------------------------------------------------------------------------------- the server


def pod_ready(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def demo_exec(namespace: str, pod: str, container: str, command: list[str]) -> ExecResult:
    """Default exec simulator: a few commands drills and tests use.

    ``echo ARGS``, ``seq N``, ``false``, ``sleep S``, ``rabbitmqctl forget_cluster_node NODE``,
    ``rabbitmqctl cluster_status``, ``printenv`` (prints a secret, for redaction tests); anything else
    answers exit code 127 like a missing binary.
    """
    if not command:
        return ExecResult(stderr="no command", exit_code=1)
    prog, args = command[0].rsplit("/", 1)[-1], command[1:]
    if prog == "echo":
        return ExecResult(stdout=" ".join(args) + "\n")
    if prog == "seq" and args:
        return ExecResult(stdout="".join(f"{i}\n" for i in range(1, int(args[-1]) + 1)))
    if prog == "false":
        return ExecResult(stderr="", exit_code=1)
    if prog == "true":
        return ExecResult()
    if prog == "sleep" and args:
        time.sleep(float(args[0]))
        return ExecResult()
    if prog == "printenv":
        return ExecResult(stdout="HOME=/root\nRABBITMQ_PASSWORD=hunter2hunter2\n")
    if prog == "rabbitmqctl" and args[:1] == ["forget_cluster_node"] and len(args) >= 2:
        return ExecResult(stdout=f"Removing node {args[1]} from the cluster\n")
    if prog == "rabbitmqctl" and args[:1] == ["cluster_status"]:
        return ExecResult(stdout=f"Cluster status of node rabbit@{pod} ...\nRunning Nodes\n\nrabbit@{pod}\n")
    return ExecResult(stderr=f'exec: "{command[0]}": executable file not found in $PATH\n', exit_code=127)


class KubeAPIServer:
    """The loopback API server. Thread-safe; every seeding helper may be called while it serves."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = DEFAULT_TOKEN,
        rollout_delay: float | None = 0.3,
        replace_delay: float | None = 0.3,
    ) -> None:
        self.host, self._want_port, self.token = host, port, token
        self.rollout_delay = rollout_delay
        self.replace_delay = replace_delay
        self.lock = threading.RLock()
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {p: {} for p in RESOURCES}
        self.logs: dict[tuple[str, str, str, bool], list[str]] = {}
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.exec_handler: Callable[[str, str, str, list[str]], ExecResult] = demo_exec
        self.execs: list[tuple[str, str, str, list[str]]] = []
        self.extra_status: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._owner: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, pod) -> (workload plural, name)
        self._observed: dict[tuple[str, str, str], int] = {}
        self._due: dict[tuple[str, str, str], float | None] = {}
        self._rv = itertools.count(1000)
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------- lifecycle

    def start(self) -> KubeAPIServer:
        server = self

        class Handler(_Handler):
            kube = server

        self._httpd = ThreadingHTTPServer((self.host, self._want_port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kube-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        # Keep-alive connections outlive shutdown(): cut them so clients see a dead server.
        with self.lock:
            conns, self._conns = set(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """A kubeconfig whose current context points at this server (bearer token auth)."""
        path = Path(path)
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "loopback", "cluster": {"server": self.url}}],
            "users": [{"name": "loopback", "user": user}],
            "contexts": [
                {
                    "name": "loopback",
                    "context": {"cluster": "loopback", "user": "loopback", "namespace": namespace},
                }
            ],
            "current-context": "loopback",
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML: the client's loader reads it
        return path

    # -------------------------------------------------------------------------------- faults and log

    def inject_fault(
        self,
        count: int = 1,
        *,
        status: int = 500,
        hang: float | None = None,
        method: str | None = None,
        path: str | None = None,
        message: str = "injected fault",
    ) -> Fault:
        """Answer ``status`` (or hang ``hang`` seconds, then drop the connection) for the next ``count``
        requests whose method and path (regex) match."""
        fault = Fault(count=count, status=status, hang=hang, method=method, path=path, message=message)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def find_requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Logged requests by method and path regex."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or re.search(path, r.path))
            ]

    # -------------------------------------------------------------------------------- seeding

    def _meta(self, name: str, namespace: str | None, labels: dict[str, str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(next(self._rv)),
            "creationTimestamp": now_iso(),
            "labels": dict(labels or {}),
            "annotations": {},
        }
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as-is (filling apiVersion/kind); returns it."""
        api_version, kind, namespaced = RESOURCES[plural]
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_iso())
        meta["resourceVersion"] = str(next(self._rv))
        with self.lock:
            self.objects[plural][(meta.get("namespace", "") if namespaced else "", meta["name"])] = obj
        return obj

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A deep copy of a stored object (status refreshed), or None."""
        with self.lock:
            self._tick()
            obj = self.objects[plural].get((namespace if RESOURCES[plural][2] else "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            self._tick()
            return [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self.objects[plural].items())
                if namespace in (None, ns)
            ]

    def add_namespace(self, name: str) -> dict[str, Any]:
        return self.put("namespaces", {"metadata": self._meta(name, None), "status": {"phase": "Active"}})

    def add_node(self, name: str, *, unschedulable: bool = False, ready: bool = True) -> dict[str, Any]:
        return self.put(
            "nodes",
            {
                "metadata": self._meta(name, None, {"kubernetes.io/hostname": name}),
                "spec": {"unschedulable": True} if unschedulable else {},
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"}
                    ]
                },
            },
        )

    def _ensure_namespace(self, namespace: str) -> None:
        if ("", namespace) not in self.objects["namespaces"]:
            self.add_namespace(namespace)

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        labels: dict[str, str] | None = None,
        image: str = "registry.local/app:1.0",
        containers: list[str] | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        """A deployment whose pods exist and are ready right away."""
        return self._add_workload("deployments", namespace, name, replicas, labels, image, containers, paused)

    def add_statefulset(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        labels: dict[str, str] | None = None,
        image: str = "rabbitmq:3.13-management",
        containers: list[str] | None = None,
    ) -> dict[str, Any]:
        """A statefulset with pods NAME-0..NAME-(replicas-1), ready right away."""
        return self._add_workload("statefulsets", namespace, name, replicas, labels, image, containers, False)

    def _add_workload(
        self,
        plural: str,
        namespace: str,
        name: str,
        replicas: int,
        labels: dict[str, str] | None,
        image: str,
        containers: list[str] | None,
        paused: bool,
    ) -> dict[str, Any]:
        labels = labels or {"app": name}
        with self.lock:
            self._ensure_namespace(namespace)
            spec: dict[str, Any] = {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": c, "image": image} for c in (containers or [name])]},
                },
            }
            if plural == "deployments":
                spec["strategy"] = {"type": "RollingUpdate"}
                spec["progressDeadlineSeconds"] = 600
                if paused:
                    spec["paused"] = True
            else:
                spec["serviceName"] = name
                spec["updateStrategy"] = {"type": "RollingUpdate"}
            meta = self._meta(name, namespace, labels)
            meta["generation"] = 1
            obj = self.put(plural, {"metadata": meta, "spec": spec, "status": {}})
            self._reconcile((plural, namespace, name))
            self._refresh_status()
            return obj

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        node: str | None = None,
        containers: list[str] | None = None,
        owner: tuple[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        ready: bool = True,
        phase: str = "Running",
        empty_dir: bool = False,
    ) -> dict[str, Any]:
        """A pod. ``owner`` is an ownerReference ``(kind, name)`` such as ``("DaemonSet", "node-exporter")``;
        a pod without one is unmanaged (drain will not evict it)."""
        with self.lock:
            self._ensure_namespace(namespace)
            meta = self._meta(name, namespace, labels)
            meta["annotations"] = dict(annotations or {})
            if owner:
                meta["ownerReferences"] = [
                    {
                        "apiVersion": "apps/v1",
                        "kind": owner[0],
                        "name": owner[1],
                        "uid": str(uuid.uuid4()),
                        "controller": True,
                    }
                ]
            spec: dict[str, Any] = {
                "containers": [{"name": c, "image": "registry.local/app:1.0"} for c in containers or ["app"]]
            }
            if node:
                spec["nodeName"] = node
            if empty_dir:
                spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
            pod = {"metadata": meta, "spec": spec, "status": {}}
            self._set_running(pod, ready=ready, phase=phase)
            return self.put("pods", pod)

    def _set_running(self, pod: dict[str, Any], *, ready: bool = True, phase: str = "Running") -> None:
        started = now_iso()
        pod["status"] = {
            "phase": phase,
            "hostIP": "10.0.0.1" if pod["spec"].get("nodeName") else None,
            "podIP": f"10.244.0.{next(self._rv) % 250 + 2}" if phase == "Running" else None,
            "startTime": started,
            "conditions": [
                {"type": "PodScheduled", "status": "True" if pod["spec"].get("nodeName") else "False"},
                {"type": "Ready", "status": "True" if ready and phase == "Running" else "False"},
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": ready and phase == "Running",
                    "restartCount": 0,
                    "started": phase == "Running",
                    "state": {"running": {"startedAt": started}}
                    if phase == "Running"
                    else {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": {},
                }
                for c in pod["spec"]["containers"]
            ],
        }
        pod["status"] = {k: v for k, v in pod["status"].items() if v is not None}

    def set_pod_state(
        self,
        namespace: str,
        name: str,
        *,
        container: str | None = None,
        ready: bool | None = None,
        phase: str | None = None,
        restarts: int | None = None,
        waiting_reason: str | None = None,
        last_termination_reason: str | None = None,
        last_exit_code: int = 137,
    ) -> dict[str, Any]:
        """Give a pod the status of a sick container: e.g. ``waiting_reason="CrashLoopBackOff",
        last_termination_reason="OOMKilled", restarts=12, ready=False``."""
        with self.lock:
            pod = self.objects["pods"][(namespace, name)]
            status = pod["status"]
            if phase is not None:
                status["phase"] = phase
            for cs in status.get("containerStatuses", []):
                if container and cs["name"] != container:
                    continue
                if ready is not None:
                    cs["ready"] = ready
                if restarts is not None:
                    cs["restartCount"] = restarts
                if waiting_reason is not None:
                    cs["state"] = {
                        "waiting": {"reason": waiting_reason, "message": f"back-off restarting {cs['name']}"}
                    }
                    cs["started"] = False
                if last_termination_reason is not None:
                    cs["lastState"] = {
                        "terminated": {
                            "reason": last_termination_reason,
                            "exitCode": last_exit_code,
                            "startedAt": now_iso(-120),
                            "finishedAt": now_iso(-60),
                        }
                    }
            all_ready = all(cs.get("ready") for cs in status.get("containerStatuses", []))
            for cond in status.get("conditions", []):
                if cond["type"] == "Ready":
                    cond["status"] = "True" if all_ready and status.get("phase") == "Running" else "False"
            pod["metadata"]["resourceVersion"] = str(next(self._rv))
            self._refresh_status()
            return copy.deepcopy(pod)

    def set_logs(
        self,
        namespace: str,
        pod: str,
        lines: list[str],
        *,
        container: str | None = None,
        previous: bool = False,
    ) -> None:
        """Log lines a pod's container printed (``previous`` for the container before its last restart)."""
        with self.lock:
            if container is None:
                container = self.objects["pods"][(namespace, pod)]["spec"]["containers"][0]["name"]
            self.logs[(namespace, pod, container, previous)] = list(lines)

    def add_event(
        self,
        namespace: str,
        involved: tuple[str, str],
        reason: str,
        message: str,
        *,
        type: str = "Normal",
        count: int = 1,
        age_seconds: float = 0,
    ) -> dict[str, Any]:
        """A core/v1 event about ``involved`` = ``(kind, name)``."""
        kind, name = involved
        stamp = now_iso(-age_seconds)
        return self.put(
            "events",
            {
                "metadata": self._meta(f"{name}.{uuid.uuid4().hex[:12]}", namespace),
                "involvedObject": {"kind": kind, "name": name, "namespace": namespace, "apiVersion": "v1"},
                "reason": reason,
                "message": message,
                "type": type,
                "count": count,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {"component": "kubelet"},
            },
        )

    def add_pdb(
        self,
        namespace: str,
        name: str,
        match_labels: dict[str, str],
        *,
        min_available: int | str | None = None,
        max_unavailable: int | str | None = None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"selector": {"matchLabels": dict(match_labels)}}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        meta = self._meta(name, namespace)
        meta["generation"] = 1
        with self.lock:
            obj = self.put("poddisruptionbudgets", {"metadata": meta, "spec": spec, "status": {}})
            self._refresh_status()
            return obj

    def set_workload_status(self, plural: str, namespace: str, name: str, **status: Any) -> None:
        """Fields merged over the computed status, e.g. ``conditions=[...ProgressDeadlineExceeded...]``."""
        with self.lock:
            self.extra_status[(plural, namespace, name)] = status
            self._refresh_status()

    def seed_demo(self) -> None:
        """The demo cluster drills use: nodes node-a and node-b; namespace orchestrator with deployment
        orchestrator (3 pods) and statefulset rabbitmq (3 pods), a PDB keeping 2 rabbitmq pods up,
        and a node-exporter DaemonSet pod on each node."""
        with self.lock:
            self.add_node("node-a")
            self.add_node("node-b")
            self.add_deployment(
                "orchestrator", "orchestrator", replicas=3, image="registry.local/orchestrator:2.4.1"
            )
            self.add_statefulset("orchestrator", "rabbitmq", replicas=3)
            self.add_pdb("orchestrator", "rabbitmq", {"app": "rabbitmq"}, min_available=2)
            for node in ("node-a", "node-b"):
                self.add_pod(
                    "orchestrator",
                    f"node-exporter-{node}",
                    labels={"app": "node-exporter"},
                    node=node,
                    owner=("DaemonSet", "node-exporter"),
                )
            for pod in self.list("pods", "orchestrator"):
                name = pod["metadata"]["name"]
                self.set_logs(
                    "orchestrator",
                    name,
                    [
                        f"{now_iso(-30)} INFO {name} started",
                        f"{now_iso(-20)} INFO connected to amqp://orchestrator:s3cretpass@rabbitmq:5672/",
                        f"{now_iso(-10)} ERROR plan 42 failed: timeout talking to postgres",
                    ],
                )
            self.add_event(
                "orchestrator", ("Deployment", "orchestrator"), "ScalingReplicaSet", "Scaled up to 3"
            )

    # -------------------------------------------------------------------------------- the controller

    def _pods_of(self, plural: str, namespace: str, name: str) -> list[dict[str, Any]]:
        return [
            p
            for (ns, pname), p in sorted(self.objects["pods"].items())
            if ns == namespace and self._owner.get((ns, pname)) == (plural, name)
        ]

    def _schedule(self, key: tuple[str, str, str], delay: float | None) -> None:
        if delay is None:
            self._due.setdefault(key, None)
        else:
            due = time.monotonic() + delay
            current = self._due.get(key)
            self._due[key] = due if current is None else min(current, due)

    def _pick_node(self) -> str | None:
        nodes = [
            n["metadata"]["name"]
            for n in self.objects["nodes"].values()
            if not n.get("spec", {}).get("unschedulable")
        ]
        if not nodes:
            return None
        load = {n: 0 for n in nodes}
        for p in self.objects["pods"].values():
            if p["spec"].get("nodeName") in load:
                load[p["spec"]["nodeName"]] += 1
        return min(sorted(nodes), key=lambda n: load[n])

    def _new_pod(self, plural: str, wl: dict[str, Any], pod_name: str, revision: str) -> None:
        ns = wl["metadata"]["namespace"]
        template = wl["spec"]["template"]
        labels = dict(template.get("metadata", {}).get("labels") or {})
        hash_label = "pod-template-hash" if plural == "deployments" else "controller-revision-hash"
        labels[hash_label] = revision
        meta = self._meta(pod_name, ns, labels)
        meta["annotations"] = dict(template.get("metadata", {}).get("annotations") or {})
        owner_kind = "ReplicaSet" if plural == "deployments" else "StatefulSet"
        owner_name = (
            f"{wl['metadata']['name']}-{revision}" if plural == "deployments" else wl["metadata"]["name"]
        )
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": owner_kind,
                "name": owner_name,
                "uid": wl["metadata"]["uid"],
                "controller": True,
            }
        ]
        spec = copy.deepcopy(template.get("spec") or {})
        node = self._pick_node()
        if node:
            spec["nodeName"] = node
        pod = {"metadata": meta, "spec": spec, "status": {}}
        if node:
            self._set_running(pod)
        else:
            self._set_running(pod, ready=False, phase="Pending")
        self.put("pods", pod)
        self._owner[(ns, pod_name)] = (plural, wl["metadata"]["name"])

    def _delete_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pod = self.objects["pods"].pop((namespace, name), None)
        owner = self._owner.pop((namespace, name), None)
        for key in [k for k in self.logs if k[0] == namespace and k[1] == name]:
            del self.logs[key]
        if owner:
            self._schedule((owner[0], namespace, owner[1]), self.replace_delay)
        return pod

    def _reconcile(self, key: tuple[str, str, str]) -> None:
        plural, ns, name = key
        wl = self.objects[plural].get((ns, name))
        if wl is None:
            return
        revision = template_hash(wl["spec"]["template"])
        hash_label = "pod-template-hash" if plural == "deployments" else "controller-revision-hash"
        desired = int(wl["spec"].get("replicas", 1))
        pods = self._pods_of(plural, ns, name)
        if plural == "deployments":
            current = []
            for p in pods:
                if p["metadata"]["labels"].get(hash_label) != revision:
                    self._delete_pod(ns, p["metadata"]["name"])
                else:
                    current.append(p)
            for extra in current[desired:]:
                self._delete_pod(ns, extra["metadata"]["name"])
            for _ in range(desired - len(current)):
                self._new_pod(plural, wl, f"{name}-{revision[:9]}-{uuid.uuid4().hex[:5]}", revision)
        else:
            by_name = {p["metadata"]["name"]: p for p in pods}
            for pname, p in by_name.items():
                ordinal = int(pname.rsplit("-", 1)[-1])
                if ordinal >= desired or p["metadata"]["labels"].get(hash_label) != revision:
                    self._delete_pod(ns, pname)
                    by_name[pname] = None  # type: ignore[assignment]
            for i in range(desired):
                if by_name.get(f"{name}-{i}") is None:
                    self._new_pod(plural, wl, f"{name}-{i}", revision)
        self._due.pop(key, None)
        self._observed[key] = int(wl["metadata"].get("generation", 1))

    def _tick(self) -> None:
        now = time.monotonic()
        for key, due in list(self._due.items()):
            if due is not None and due <= now:
                self._reconcile(key)
        self._refresh_status()

    def _refresh_status(self) -> None:
        for plural in WORKLOADS:
            for (ns, name), wl in self.objects[plural].items():
                key = (plural, ns, name)
                revision = template_hash(wl["spec"]["template"])
                hash_label = "pod-template-hash" if plural == "deployments" else "controller-revision-hash"
                pods = self._pods_of(plural, ns, name)
                ready = sum(1 for p in pods if pod_ready(p))
                updated = sum(1 for p in pods if p["metadata"]["labels"].get(hash_label) == revision)
                status: dict[str, Any] = {
                    "observedGeneration": self._observed.get(key, 0),
                    "replicas": len(pods),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "updatedReplicas": updated,
                }
                desired = int(wl["spec"].get("replicas", 1))
                if plural == "deployments":
                    status["unavailableReplicas"] = max(0, desired - ready)
                    status["conditions"] = [
                        {
                            "type": "Available",
                            "status": "True" if ready >= desired else "False",
                            "reason": "MinimumReplicasAvailable"
                            if ready >= desired
                            else "MinimumReplicasUnavailable",
                            "message": "Deployment has minimum availability."
                            if ready >= desired
                            else "Deployment does not have minimum availability.",
                        },
                        {
                            "type": "Progressing",
                            "status": "True",
                            "reason": "NewReplicaSetAvailable"
                            if key not in self._due
                            else "ReplicaSetUpdated",
                            "message": f'ReplicaSet "{name}-{revision[:9]}" is progressing.',
                        },
                    ]
                else:
                    status["currentRevision"] = status["updateRevision"] = f"{name}-{revision[:9]}"
                    status["currentReplicas"] = updated
                status.update(self.extra_status.get(key, {}))
                wl["status"] = status
        for pdb in self.objects["poddisruptionbudgets"].values():
            pdb["status"] = self._pdb_status(pdb)

    def _pdb_pods(self, pdb: dict[str, Any]) -> list[dict[str, Any]]:
        ns = pdb["metadata"]["namespace"]
        return [
            p
            for (pns, _), p in self.objects["pods"].items()
            if pns == ns
            and match_labels_selector(pdb["spec"].get("selector"), p["metadata"].get("labels") or {})
        ]

    def _pdb_status(self, pdb: dict[str, Any]) -> dict[str, Any]:
        pods = self._pdb_pods(pdb)
        expected = len(pods)
        healthy = sum(1 for p in pods if pod_ready(p))
        spec = pdb["spec"]

        def scaled(value: int | str) -> int:
            if isinstance(value, str) and value.endswith("%"):
                return math.ceil(expected * int(value[:-1]) / 100)
            return int(value)

        if "minAvailable" in spec:
            desired = scaled(spec["minAvailable"])
        elif "maxUnavailable" in spec:
            desired = max(0, expected - scaled(spec["maxUnavailable"]))
        else:
            desired = expected
        return {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "expectedPods": expected,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "disruptionsAllowed": max(0, healthy - desired),
        }

    # -------------------------------------------------------------------------------- request handling

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, content_type: str
    ) -> tuple[int, Any]:
        """Route one REST request; returns (status, JSON body or str for text)."""
        with self.lock:
            self._tick()
            route = self._route(path)
            plural, ns, name, sub = route
            if sub:
                return self._subresource(method, plural, ns, name, sub, query, body, content_type)
            if name is None:
                if method == "GET":
                    return 200, self._list(plural, ns, query)
                if method == "POST":
                    return 201, self._create(plural, ns, body)
                raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on a collection")
            if method == "GET":
                return 200, self._get(plural, ns, name)
            if method == "PUT":
                return 200, self._replace(plural, ns, name, body)
            if method == "PATCH":
                return 200, self._patch(plural, ns, name, body, content_type)
            if method == "DELETE":
                return 200, self._delete(plural, ns, name)
            raise ApiError(405, "MethodNotAllowed", f"{method} not allowed")

    def _route(self, path: str) -> tuple[str, str, str | None, str | None]:
        m = re.fullmatch(r"/api/v1/(.+)|/apis/(apps|policy)/v1/(.+)", path.rstrip("/"))
        if not m:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        group = m.group(2) or ""
        # path segments arrive percent-encoded (the client quotes names); decode them as the API server does
        parts = [unquote(p) for p in (m.group(1) or m.group(3)).split("/")]
        if parts[0] == "namespaces" and len(parts) >= 3:
            ns, plural, rest = parts[1], parts[2], parts[3:]
        elif parts[0] == "namespaces":
            ns, plural, rest = "", "namespaces", parts[1:]
        else:
            ns, plural, rest = "", parts[0], parts[1:]
        if plural not in RESOURCES or RESOURCES[plural][0].split("/")[0] != (group or "v1"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if ns and ("", ns) not in self.objects["namespaces"] and plural != "namespaces":
            raise ApiError(
                404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
            )
        name = rest[0] if rest else None
        sub = rest[1] if len(rest) > 1 else None
        return plural, ns, name, sub

    def _obj(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects[plural].get((ns if RESOURCES[plural][2] else "", name))
        if obj is None:
            raise not_found(plural, name)
        return obj

    def _get(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._obj(plural, ns, name))

    def _list(self, plural: str, ns: str, query: dict[str, list[str]]) -> dict[str, Any]:
        labels = (query.get("labelSelector") or [""])[0]
        fields = (query.get("fieldSelector") or [""])[0]
        items = []
        for (ons, _), obj in sorted(self.objects[plural].items()):
            if ns and ons != ns:
                continue
            if labels and not label_selector_matches(labels, obj["metadata"].get("labels") or {}):
                continue
            if fields and not field_selector_matches(fields, obj):
                continue
            items.append(copy.deepcopy(obj))
        api_version, kind, _ = RESOURCES[plural]
        return {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(next(self._rv))},
            "items": items,
        }

    def _create(self, plural: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("metadata", {}).get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        name = body["metadata"]["name"]
        key = (ns if RESOURCES[plural][2] else "", name)
        if key in self.objects[plural]:
            what = f"{plural}.policy" if plural == "poddisruptionbudgets" else plural
            raise ApiError(
                409, "AlreadyExists", f'{what} "{name}" already exists', {"name": name, "kind": plural}
            )
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        if RESOURCES[plural][2]:
            meta["namespace"] = ns
        meta.pop("resourceVersion", None)
        meta["generation"] = 1
        obj.setdefault("spec", {})
        obj.setdefault("status", {})
        self.put(plural, obj)
        if plural in WORKLOADS:
            self._schedule((plural, ns, name), self.rollout_delay)
        self._refresh_status()
        return copy.deepcopy(obj)

    def _store_update(
        self, plural: str, ns: str, name: str, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        """Write ``new`` over ``old``: keeps identity, bumps resourceVersion and (on spec change) generation,
        and tells the controller."""
        new["metadata"]["uid"] = old["metadata"]["uid"]
        new["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        new["metadata"]["name"] = name
        if RESOURCES[plural][2]:
            new["metadata"]["namespace"] = ns
        if "status" not in new:
            new["status"] = old.get("status", {})
        spec_changed = new.get("spec") != old.get("spec")
        if "generation" in old["metadata"]:
            new["metadata"]["generation"] = old["metadata"]["generation"] + (1 if spec_changed else 0)
        self.put(plural, new)
        if plural in WORKLOADS and spec_changed:
            paused = plural == "deployments" and new["spec"].get("paused")
            template_changed = new["spec"].get("template") != old["spec"].get("template")
            if not (paused and template_changed):
                self._schedule((plural, ns, name), self.rollout_delay)
        self._refresh_status()
        return copy.deepcopy(new)

    def _replace(self, plural: str, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self._obj(plural, ns, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        new = copy.deepcopy(body)
        new.setdefault("metadata", {})
        return self._store_update(plural, ns, name, old, new)

    def _apply_patch(self, obj: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
        ctype = content_type.split(";")[0].strip()
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "JSON patch body must be a list of operations")
            return json_patch(obj, body)
        if ctype in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "merge patch body must be an object")
            return merge_patch(obj, body, strategic=ctype.startswith("application/strategic"))
        raise ApiError(
            415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}"
        )

    def _patch(self, plural: str, ns: str, name: str, body: Any, content_type: str) -> dict[str, Any]:
        old = self._obj(plural, ns, name)
        new = self._apply_patch(old, body, content_type)
        return self._store_update(plural, ns, name, old, new)

    def _delete(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        obj = self._obj(plural, ns, name)
        if plural == "pods":
            self._delete_pod(ns, name)
            gone = copy.deepcopy(obj)
            gone["metadata"]["deletionTimestamp"] = now_iso()
            return gone
        self.objects[plural].pop((ns if RESOURCES[plural][2] else "", name), None)
        self._refresh_status()
        return status_body(200, "", "deleted", {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]})

    def _subresource(
        self,
        method: str,
        plural: str,
        ns: str,
        name: str,
        sub: str,
        query: dict[str, list[str]],
        body: Any,
        content_type: str,
    ) -> tuple[int, Any]:
        if plural in WORKLOADS and sub == "scale":
            return 200, self._scale(method, plural, ns, name, body, content_type)
        if plural in WORKLOADS and sub == "status" and method == "GET":
            return 200, self._get(plural, ns, name)
        if plural == "pods" and sub == "log" and method == "GET":
            return 200, self._log(ns, name, query)
        if plural == "pods" and sub == "eviction" and method == "POST":
            return 201, self._evict(ns, name, body)
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural}/{sub})")

    def _scale(
        self, method: str, plural: str, ns: str, name: str, body: Any, content_type: str
    ) -> dict[str, Any]:
        wl = self._obj(plural, ns, name)

        def as_scale(obj: dict[str, Any]) -> dict[str, Any]:
            return {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    k: obj["metadata"][k]
                    for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                },
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {
                    "replicas": obj.get("status", {}).get("replicas", 0),
                    "selector": ",".join(
                        f"{k}={v}" for k, v in obj["spec"]["selector"]["matchLabels"].items()
                    ),
                },
            }

        if method == "GET":
            return as_scale(wl)
        if method in ("PATCH", "PUT"):
            scale = as_scale(wl)
            new_scale = self._apply_patch(scale, body, content_type) if method == "PATCH" else body
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}")
            new = copy.deepcopy(wl)
            new["spec"]["replicas"] = replicas
            return as_scale(self._store_update(plural, ns, name, wl, new))
        raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on scale")

    def _log(self, ns: str, name: str, query: dict[str, list[str]]) -> str:
        pod = self._obj("pods", ns, name)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = (query.get("container") or [None])[0]
        if container is None:
            if len(containers) > 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]",
                )
            container = containers[0]
        if container not in containers:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        previous = (query.get("previous") or ["false"])[0] == "true"
        lines = self.logs.get((ns, name, container, previous))
        if lines is None:
            if previous:
                raise ApiError(
                    400,
                    "BadRequest",
                    f'previous terminated container "{container}" in pod "{name}" not found',
                )
            lines = []
        tail = (query.get("tailLines") or [None])[0]
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) > 0 else []
        text = "".join(line + "\n" for line in lines)
        limit = (query.get("limitBytes") or [None])[0]
        if limit is not None:
            text = text[: int(limit)]
        return text

    def _evict(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        pod = self._obj("pods", ns, name)
        labels = pod["metadata"].get("labels") or {}
        pdbs = [
            p
            for (pns, _), p in self.objects["poddisruptionbudgets"].items()
            if pns == ns and match_labels_selector(p["spec"].get("selector"), labels)
        ]
        if len(pdbs) > 1:
            raise ApiError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                "does not support.",
            )
        finished = pod["status"].get("phase") in ("Succeeded", "Failed")
        if pdbs and not finished:
            pdb = pdbs[0]
            status = self._pdb_status(pdb)
            healthy = pod_ready(pod)
            allowed = (
                status["disruptionsAllowed"] > 0
                if healthy
                else status["currentHealthy"] >= status["desiredHealthy"]
            )
            if not allowed:
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    {
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {pdb['metadata']['name']} needs "
                                f"{status['desiredHealthy']} healthy pods and has "
                                f"{status['currentHealthy']} currently",
                            }
                        ]
                    },
                )
        self._delete_pod(ns, name)
        self._refresh_status()
        return status_body(201, "", "", None) | {"status": "Success"}

    # ---- exec (websocket) ----------------------------------------------------------------------

    def exec_target(self, path: str) -> tuple[str, str, list[str]]:
        """Validate an exec request's pod; returns (namespace, pod, container names)."""
        with self.lock:
            m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec", path)
            if not m:
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
            pod = self._obj("pods", m.group(1), m.group(2))
            if pod["status"].get("phase") != "Running":
                raise ApiError(
                    400,
                    "BadRequest",
                    "cannot exec into a container in a completed pod; "
                    f"current phase is {pod['status'].get('phase')}",
                )
            return m.group(1), m.group(2), [c["name"] for c in pod["spec"]["containers"]]


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, like the real API server (urllib3 pools connections)."""

    kube: KubeAPIServer
    protocol_version = "HTTP/1.1"
    server_version = "kube-loopback/1"

    def setup(self) -> None:
        super().setup()
        with self.kube.lock:
            self.kube._conns.add(self.connection)

    def finish(self) -> None:
        with self.kube.lock:
            self.kube._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def _send(self, code: int, payload: Any) -> None:
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = RequestRecord(self.command, url.path, query, ctype, body)
        kube = self.kube
        with kube.lock:
            kube.requests.append(record)
            fault = next((f for f in kube.faults if f.matches(self.command, url.path)), None)
            if fault is not None:
                fault.count -= 1
        if fault is not None:
            if fault.hang is not None:
                record.status = -1
                kube._stop.wait(fault.hang)
                self.close_connection = True
                return
            record.status = fault.status
            self._send(fault.status, status_body(fault.status, "InternalError", fault.message))
            return
        if kube.token and self.headers.get("Authorization") != f"Bearer {kube.token}":
            record.status = 401
            self._send(401, status_body(401, "Unauthorized", "Unauthorized"))
            return
        if self.command == "GET" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket_exec(url.path, query, record)
            return
        try:
            code, payload = kube.handle(self.command, url.path, query, body, ctype)
        except ApiError as err:
            code, payload = err.code, status_body(err.code, err.reason, err.message, err.details)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must show as a 500, not a hung client
            code, payload = 500, status_body(500, "InternalError", f"loopback server bug: {exc!r}")
        record.status = code
        self._send(code, payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    # websocket exec: channel protocol v4 (first payload byte = channel: 1 stdout, 2 stderr, 3 status)

    def _websocket_exec(self, path: str, query: dict[str, list[str]], record: RequestRecord) -> None:
        kube = self.kube
        try:
            ns, pod, containers = kube.exec_target(path)
            container = (query.get("container") or [containers[0]])[0]
            if container not in containers:
                raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        except ApiError as err:
            record.status = err.code
            self._send(err.code, status_body(err.code, err.reason, err.message, err.details))
            return
        command = query.get("command") or []
        record.status = 101
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        with kube.lock:
            kube.execs.append((ns, pod, container, list(command)))
        try:
            result = kube.exec_handler(ns, pod, container, list(command))
        except Exception as exc:  # noqa: BLE001 - reported on the status channel like a runtime error
            result = ExecResult(stderr=f"{exc}\n", exit_code=126)
        try:
            for channel, text in ((1, result.stdout), (2, result.stderr)):
                data = text.encode()
                for i in range(0, len(data), 16384):
                    self._ws_send(0x2, bytes([channel]) + data[i : i + 16384])
            if result.exit_code == 0:
                status = {"metadata": {}, "status": "Success"}
            else:
                status = {
                    "metadata": {},
                    "status": "Failure",
                    "message": f"command terminated with non-zero exit code: exit status {result.exit_code}",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(result.exit_code)}]},
                }
            self._ws_send(0x2, bytes([3]) + json.dumps(status).encode())
            self._ws_send(0x8, (1000).to_bytes(2, "big"))
            self.connection.settimeout(2)
            self.rfile.read(2)  # the client's close frame (or EOF); either way we are done
        except OSError:
            pass

    def _ws_send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, n])
        elif n < 65536:
            header = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        self.wfile.write(header + payload)
        self.wfile.flush()


def main(argv: list[str] | None = None) -> None:
    """Serve the seeded demo cluster until interrupted (drills, demos, manual poking with the client)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", default="kubeconfig.loopback", help="where to write the kubeconfig")
    parser.add_argument("--rollout-delay", type=float, default=2.0, help="seconds a rollout takes")
    parser.add_argument(
        "--replace-delay", type=float, default=2.0, help="seconds before a deleted pod is replaced"
    )
    parser.add_argument("--empty", action="store_true", help="do not seed the demo cluster")
    args = parser.parse_args(argv)
    server = KubeAPIServer(
        args.host, args.port, rollout_delay=args.rollout_delay, replace_delay=args.replace_delay
    )
    server.start()
    if not args.empty:
        server.seed_demo()
    path = server.write_kubeconfig(args.kubeconfig, namespace="orchestrator")
    print(json.dumps({"url": server.url, "kubeconfig": str(path.resolve())}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for callers that need the port before starting the server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
