"""Seeding helpers: build a cluster (nodes, workloads, pods, events, PDBs, logs) directly in the store,
with the fields the API server would have defaulted, so kubectl and the official client read what a
real cluster shows (e.g. ``spec.strategy.rollingUpdate`` that ``kubectl describe`` prints, events whose
``involvedObject.uid`` lets ``kubectl describe`` find them)."""

from __future__ import annotations

import copy
import itertools
import uuid
from typing import Any

from .base import now_iso
from .resources import RESOURCES
from .store import Store

KUBELET_VERSION = "v1.32.0"
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


class Seeding(Store):
    def add_namespace(self, name: str) -> dict[str, Any]:
        return self.put("namespaces", {"metadata": self._meta(name, None), "status": {"phase": "Active"}})

    def add_node(self, name: str, *, unschedulable: bool = False, ready: bool = True) -> dict[str, Any]:
        with self.lock:
            ip = f"10.0.0.{len(self.objects['nodes']) + 1}"
        return self.put(
            "nodes",
            {
                "metadata": self._meta(
                    name, None, {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
                ),
                "spec": {"unschedulable": True} if unschedulable else {},
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "KubeletNotReady",
                            "message": "kubelet is posting ready status" if ready else "kubelet stopped",
                            "lastHeartbeatTime": now_iso(),
                            "lastTransitionTime": now_iso(),
                        }
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": ip},
                        {"type": "Hostname", "address": name},
                    ],
                    "nodeInfo": {
                        "kubeletVersion": KUBELET_VERSION,
                        "kubeProxyVersion": KUBELET_VERSION,
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "containerRuntimeVersion": "containerd://1.7.24",
                        "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "kernelVersion": "6.1.0",
                        "bootID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.boot")),
                        "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.machine").hex,
                        "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.system")),
                    },
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
        """A deployment whose ReplicaSet and pods exist and are ready right away."""
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
            if paused:
                spec["paused"] = True
            if plural == "statefulsets":
                spec["serviceName"] = name
            obj = {"metadata": self._meta(name, namespace, labels), "spec": spec, "status": {}}
            self.apply_defaults(plural, obj)
            self.put(plural, obj)
            self._reconcile((plural, namespace, name))
            self._refresh_status()
            return obj

    def apply_defaults(self, plural: str, obj: dict[str, Any]) -> None:
        """Workload defaults kube-apiserver applies on create (strategy, history limit, pod spec)."""
        spec = obj.setdefault("spec", {})
        obj["metadata"]["generation"] = 1
        if plural == "deployments":
            spec.setdefault("strategy", {"type": "RollingUpdate"})
            if spec["strategy"].get("type") == "RollingUpdate":
                spec["strategy"].setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        elif plural == "statefulsets":
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("revisionHistoryLimit", 10)
        if plural in ("deployments", "statefulsets", "replicasets"):
            spec.setdefault("replicas", 1)
        if plural in ("deployments", "statefulsets", "daemonsets", "replicasets"):
            default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))

    def add_daemonset(
        self, namespace: str, name: str, labels: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A DaemonSet object (``kubectl drain --ignore-daemonsets`` reads it); its pods are added with
        ``add_pod(owner=("DaemonSet", name))``, the bench runs no DaemonSet controller."""
        labels = labels or {"app": name}
        with self.lock:
            self._ensure_namespace(namespace)
            existing = self.objects["daemonsets"].get((namespace, name))
            if existing is not None:
                return existing
            spec = {
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": name, "image": f"registry.local/{name}:1.0"}]},
                },
                "updateStrategy": {"type": "RollingUpdate"},
            }
            obj = {"metadata": self._meta(name, namespace, labels), "spec": spec, "status": {}}
            self.apply_defaults("daemonsets", obj)
            return self.put("daemonsets", obj)

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
            self._ensure_namespace(namespace)
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

    # provided by the controller mixin
    def _reconcile(self, key: tuple[str, str, str]) -> None:
        raise NotImplementedError

    def _refresh_status(self) -> None:
        raise NotImplementedError
