"""Seeding helpers, first half: namespaces, pods (with the status a kubelet reports), pod states of
sick containers, logs, and events — the objects the workload helpers of :mod:`.seeding` build on."""

from __future__ import annotations

import copy
import itertools
import uuid
from typing import Any

from .base import now_iso
from .resources import RESOURCES
from .store import Store

_ips = itertools.count(2)


def default_pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec defaults kube-apiserver fills in (only the ones kubectl and the actions read)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers") or []:
        c.setdefault("imagePullPolicy", "IfNotPresent")
    return spec


def _pod_ip() -> str:
    n = next(_ips)
    return f"10.244.{n // 250 % 250}.{n % 250 + 2}"


class PodSeeding(Store):
    def add_namespace(self, name: str) -> dict[str, Any]:
        return self.put("namespaces", {"metadata": self._meta(name, None), "status": {"phase": "Active"}})

    def _ensure_namespace(self, namespace: str) -> None:
        if ("", namespace) not in self.objects["namespaces"]:
            self.add_namespace(namespace)

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
        """A pod. ``owner`` is an ownerReference ``(kind, name)`` such as ``("DaemonSet", "node-exporter")``
        (a DaemonSet owner is created if missing, as kubectl drain looks it up); a pod without one is
        unmanaged (drain will not evict it)."""
        with self.lock:
            self._ensure_namespace(namespace)
            meta = self._meta(name, namespace, labels)
            meta["annotations"] = dict(annotations or {})
            if owner:
                uid = str(uuid.uuid4())
                if owner[0] == "DaemonSet":
                    uid = self.add_daemonset(namespace, owner[1], labels)["metadata"]["uid"]
                meta["ownerReferences"] = [
                    {
                        "apiVersion": "apps/v1",
                        "kind": owner[0],
                        "name": owner[1],
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ]
            spec: dict[str, Any] = {
                "containers": [{"name": c, "image": "registry.local/app:1.0"} for c in containers or ["app"]]
            }
            if node:
                spec["nodeName"] = node
            if empty_dir:
                spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
            pod = {"metadata": meta, "spec": default_pod_spec(spec), "status": {}}
            self._set_running(pod, ready=ready, phase=phase)
            obj = self.put("pods", pod)
            self._refresh_status()
            return obj

    def _set_running(self, pod: dict[str, Any], *, ready: bool = True, phase: str = "Running") -> None:
        started = now_iso()
        running = phase == "Running"
        scheduled = bool(pod["spec"].get("nodeName"))
        pod["status"] = {
            "phase": phase,
            "hostIP": "10.0.0.1" if scheduled else None,
            "podIP": _pod_ip() if running else None,
            "startTime": started if scheduled else None,
            "qosClass": "BestEffort",
            "conditions": [
                {"type": "PodScheduled", "status": "True" if scheduled else "False"},
                {"type": "Ready", "status": "True" if ready and running else "False"},
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": ready and running,
                    "restartCount": 0,
                    "started": running,
                    "state": {"running": {"startedAt": started}}
                    if running
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
            old = copy.deepcopy(pod)
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
            self.touch("pods", pod, old)
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
        """A core/v1 event about ``involved`` = ``(kind, name)``; when that object exists its uid,
        apiVersion and resourceVersion are filled in as the recorder does (``kubectl describe`` selects
        events by ``involvedObject.uid``)."""
        kind, name = involved
        stamp = now_iso(-age_seconds)
        involved_obj: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "apiVersion": "v1",
        }
        with self.lock:
            for plural, (api_version, k, namespaced) in RESOURCES.items():
                if k != kind:
                    continue
                involved_obj["apiVersion"] = api_version
                target = self.objects[plural].get((namespace if namespaced else "", name))
                if target is not None:
                    involved_obj["uid"] = target["metadata"]["uid"]
                    involved_obj["resourceVersion"] = target["metadata"]["resourceVersion"]
                    if not namespaced:
                        involved_obj["namespace"] = ""
            return self.put(
                "events",
                {
                    "metadata": self._meta(f"{name}.{uuid.uuid4().hex[:16]}", namespace),
                    "involvedObject": involved_obj,
                    "reason": reason,
                    "message": message,
                    "type": type,
                    "count": count,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "source": {"component": "kubelet" if kind == "Pod" else f"{kind.lower()}-controller"},
                    "reportingComponent": "",
                    "reportingInstance": "",
                },
            )

    # provided by the workload seeding mixin
    def add_daemonset(
        self, namespace: str, name: str, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        raise NotImplementedError

    # provided by the controller mixin
    def _reconcile(self, key: tuple[str, str, str]) -> None:
        raise NotImplementedError

    def _refresh_status(self) -> None:
        raise NotImplementedError
