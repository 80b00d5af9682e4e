"""Seeding helpers: build a cluster (nodes, workloads, pods, events, PDBs, logs) directly in the store,
with the fields the API server would have defaulted, so kubectl and the official client read what a
real cluster shows (e.g. ``spec.strategy.rollingUpdate`` that ``kubectl describe`` prints, events whose
``involvedObject.uid`` lets ``kubectl describe`` find them)."""

from __future__ import annotations

import uuid
from typing import Any

from .base import now_iso
from .pods import PodSeeding, default_pod_spec

KUBELET_VERSION = "v1.32.0"


class Seeding(PodSeeding):
    """Nodes, workloads (deployments, statefulsets, daemonsets), PDBs and the demo cluster."""

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
