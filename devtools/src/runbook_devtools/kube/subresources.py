"""Subresources as Kubernetes documents them: ``scale`` (autoscaling/v1 Scale; GET, PATCH, PUT with a
resourceVersion precondition), ``status`` (GET), ``log`` (container, previous, tailLines, limitBytes,
timestamps), ``eviction`` (policy/v1; 429 TooManyRequests when a PodDisruptionBudget would be
violated, 500 when two budgets select the pod) and ``exec`` (websocket only; see :mod:`.http`)."""

from __future__ import annotations

import copy
import re
from typing import Any

from .base import ApiError, now_iso
from .controller import Controller, pod_ready
from .patches import apply_patch
from .resources import WORKLOADS
from .selectors import match_labels_selector, selector_string


def q(query: dict[str, list[str]], name: str, default: str = "") -> str:
    """One query parameter's first value."""
    return (query.get(name) or [default])[0]


class Subresources(Controller):
    """Needs ``_obj``, ``_get``, ``_store_update`` and ``_conflict`` from :class:`.rest.Rest`."""

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
        if plural == "pods" and sub == "exec":
            self._obj("pods", ns, name)
            raise ApiError(400, "BadRequest", "Upgrade request required")
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural}/{sub})")

    def _as_scale(self, obj: dict[str, Any]) -> dict[str, Any]:
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
                "selector": selector_string(obj["spec"].get("selector")),
            },
        }

    def _scale(
        self, method: str, plural: str, ns: str, name: str, body: Any, content_type: str
    ) -> dict[str, Any]:
        wl = self._obj(plural, ns, name)
        scale = self._as_scale(wl)
        if method == "GET":
            return scale
        if method not in ("PATCH", "PUT"):
            raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on scale")
        new_scale = apply_patch(scale, body, content_type) if method == "PATCH" else body
        if not isinstance(new_scale, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a Scale")
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != wl["metadata"]["resourceVersion"]:
            raise self._conflict(plural, name)
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}")
        new = copy.deepcopy(wl)
        new["spec"]["replicas"] = replicas
        return self._as_scale(self._store_update(plural, ns, name, wl, new))

    def _log(self, ns: str, name: str, query: dict[str, list[str]]) -> str:
        pod = self._obj("pods", ns, name)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = q(query, "container") or None
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
        previous = q(query, "previous", "false") == "true"
        lines = self.logs.get((ns, name, container, previous))
        if lines is None:
            if previous:
                raise ApiError(
                    400,
                    "BadRequest",
                    f'previous terminated container "{container}" in pod "{name}" not found',
                )
            lines = []
        tail = q(query, "tailLines") or None
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) > 0 else []
        if q(query, "timestamps") == "true":
            lines = [f"{now_iso()} {line}" for line in lines]
        text = "".join(line + "\n" for line in lines)
        limit = q(query, "limitBytes") or None
        if limit is not None:
            text = text[: int(limit)]
        return text

    def _evict(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        pod = self._obj("pods", ns, name)
        if isinstance(body, dict) and (body.get("metadata") or {}).get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
        labels = pod["metadata"].get("labels") or {}
        pdbs = [
            p
            for (pns, _), p in self.objects["poddisruptionbudgets"].items()
            if pns == ns and self._selects(p, labels)
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
            allowed = (
                status["disruptionsAllowed"] > 0
                if pod_ready(pod)
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
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _selects(self, pdb: dict[str, Any], labels: dict[str, str]) -> bool:
        return match_labels_selector(pdb["spec"].get("selector"), labels)

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
