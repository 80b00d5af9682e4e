"""A Kubernetes stand-in for drills on a machine without a cluster.

Why: the shipped playbooks read the consumer deployment and its pods and mitigate through
Kubernetes (scale, restart, delete a broker pod). A laptop or CI box running a drill has RabbitMQ,
PostgreSQL and a Kafka peer, but no cluster. The stand-in keeps the real action specs (params
validation, result models, destructive flags, approvals) and answers the calls from a small world
model whose workloads are *wired to the real local services*: scaling the consumer deployment starts
or stops real consumers on the drill's queue, deleting a broker "pod" restarts the real RabbitMQ
node or Kafka broker. So a playbook that picks the right mitigation really fixes the fault, and the
drill's post-check sees it. With ``KUBECONFIG`` set, drills use the real cluster instead.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.registry import ActionRegistry, ActionSpec


@dataclass
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    owner: str = ""
    ready: bool = True
    restarts: int = 0
    waiting_reason: str = ""
    logs: list[str] = field(default_factory=list)
    on_delete: Callable[[], None] | None = None


@dataclass
class Workload:
    namespace: str
    name: str
    replicas: int
    labels: dict[str, str]
    kind: str = "deployment"
    on_scale: Callable[[int, int], None] | None = None  # (old, new)
    on_restart: Callable[[], None] | None = None
    generation: int = 1
    annotations: dict[str, str] = field(default_factory=dict)


class KubeWorld:
    """Workloads and pods the drill's fault wires to local services; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.workloads: dict[tuple[str, str], Workload] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def add_workload(self, w: Workload, pod_names: list[str] | None = None) -> Workload:
        with self.lock:
            self.workloads[(w.namespace, w.name)] = w
            names = pod_names if pod_names is not None else [f"{w.name}-{i}" for i in range(w.replicas)]
            for n in names:
                self.pods[(w.namespace, n)] = Pod(n, w.namespace, dict(w.labels), owner=w.name)
        return w

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self.pods.get((namespace, name))

    def _workload(self, namespace: str, name: str) -> Workload:
        w = self.workloads.get((namespace, name))
        if w is None:
            raise ActionError(f"deployment {namespace}/{name} not found", backend="kubernetes")
        return w

    def _select(self, namespace: str, selector: str) -> list[Pod]:
        want = dict(p.split("=", 1) for p in selector.split(",") if "=" in p)
        return [
            p
            for (ns, _), p in sorted(self.pods.items())
            if ns == namespace and all(p.labels.get(k) == v for k, v in want.items())
        ]

    # -- actions ----------------------------------------------------------------------------------
    def get_deployment(self, p: dict[str, Any]) -> dict[str, Any]:
        w = self._workload(p["namespace"], p["deployment"])
        ready = sum(1 for x in self._select(w.namespace, _sel(w.labels)) if x.ready)
        return {
            "summary": f"{w.kind} {w.namespace}/{w.name}: {ready}/{w.replicas} ready (drill stand-in)",
            "namespace": w.namespace,
            "name": w.name,
            "kind": p.get("kind", w.kind),
            "desired": w.replicas,
            "ready": ready,
            "available": ready,
            "updated": w.replicas,
            "generation": w.generation,
            "observed_generation": w.generation,
            "rollout_complete": ready == w.replicas,
            "paused": False,
            "images": ["drill/consumer:1"],
            "conditions": [],
            "annotations": dict(w.annotations),
        }

    def list_pods(self, p: dict[str, Any]) -> dict[str, Any]:
        pods = self._select(p["namespace"], p.get("selector", ""))
        rows = [
            {
                "name": x.name,
                "phase": "Running" if x.ready else "Pending",
                "ready": x.ready,
                "ready_containers": "1/1" if x.ready else "0/1",
                "restarts": x.restarts,
                "node": "drill-node",
                "waiting_reason": x.waiting_reason,
                "owner": x.owner,
            }
            for x in pods
        ]
        ready = sum(1 for x in pods if x.ready)
        crash = sum(1 for x in pods if x.waiting_reason == "CrashLoopBackOff")
        return {
            "summary": f"{len(pods)} pods, {ready} ready (drill stand-in)",
            "namespace": p["namespace"],
            "selector": p.get("selector", ""),
            "total": len(pods),
            "ready": ready,
            "not_ready": len(pods) - ready,
            "crash_looping": crash,
            "oom_killed": 0,
            "restarts": sum(x.restarts for x in pods),
            "pods": rows,
        }

    def pod_logs(self, p: dict[str, Any]) -> dict[str, Any]:
        import re

        pods = (
            [self.pod(p["namespace"], p["pod"])]
            if p.get("pod")
            else self._select(p["namespace"], p.get("selector") or "")
        )
        pattern = re.compile(p["grep"]) if p.get("grep") else None
        lines, rows = [], []
        for x in [x for x in pods if x is not None][: p.get("max_pods", 5)]:
            kept = [line for line in x.logs if pattern is None or pattern.search(line)]
            lines += [f"{x.name}: {line}" for line in kept]
            rows.append({"pod": x.name, "lines": len(x.logs), "matched": len(kept)})
        return {
            "summary": f"{len(lines)} matching log lines (drill stand-in)",
            "namespace": p["namespace"],
            "lines": lines,
            "matched": len(lines),
            "pods": rows,
        }

    def events(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "summary": "no events (drill stand-in)",
            "namespace": p["namespace"],
            "total": 0,
            "warnings": 0,
            "reasons": {},
            "events": [],
        }

    def wait_rollout(self, p: dict[str, Any]) -> dict[str, Any]:
        w = self._workload(p["namespace"], p["deployment"])
        return {
            "summary": f"{w.name}: rollout complete (drill stand-in)",
            "namespace": w.namespace,
            "name": w.name,
            "desired": w.replicas,
            "ready": w.replicas,
            "updated": w.replicas,
            "waited_seconds": 0.0,
        }

    def scale(self, p: dict[str, Any]) -> dict[str, Any]:
        w = self._workload(p["namespace"], p["deployment"])
        new = int(p["replicas"])
        if new > int(p["max_replicas"]) and new > w.replicas:
            raise ActionError(
                f"refusing to scale beyond max_replicas {p['max_replicas']}", backend="kubernetes"
            )
        with self.lock:
            old, w.replicas = w.replicas, new
            for key in [k for k, x in self.pods.items() if x.owner == w.name and k[0] == w.namespace]:
                del self.pods[key]
        self.add_workload(w)
        if w.on_scale:
            w.on_scale(old, new)
        return {
            "summary": f"scaled {w.namespace}/{w.name} {old} -> {new} (drill stand-in)",
            "namespace": w.namespace,
            "name": w.name,
            "previous": old,
            "replicas": new,
        }

    def rollout_restart(self, p: dict[str, Any]) -> dict[str, Any]:
        w = self._workload(p["namespace"], p["deployment"])
        w.generation += 1
        if w.on_restart:
            w.on_restart()
        return {
            "summary": f"restarted {w.namespace}/{w.name} (drill stand-in)",
            "namespace": w.namespace,
            "name": w.name,
            "restarted_at": datetime.now(UTC).isoformat(),
            "generation": w.generation,
            "pods": w.replicas,
        }

    def delete_pod(self, p: dict[str, Any]) -> dict[str, Any]:
        pod = self.pod(p["namespace"], p["pod"])
        if pod is None:
            raise ActionError(f"pod {p['namespace']}/{p['pod']} not found", backend="kubernetes")
        if pod.on_delete:
            pod.on_delete()  # the StatefulSet "recreates" it: the real service comes back
        pod.restarts += 1
        return {
            "summary": f"deleted pod {pod.namespace}/{pod.name}; recreated (drill stand-in)",
            "namespace": pod.namespace,
            "pod": pod.name,
            "node": "drill-node",
            "owner": pod.owner,
        }

    def exec(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "summary": f"ran {' '.join(p['command'])} (drill stand-in: not executed)",
            "namespace": p["namespace"],
            "pod": p["pod"],
            "container": p.get("container") or "main",
            "exit_code": 0,
            "stdout": "",
            "stderr": "",
            "truncated": False,
        }

    def annotate(self, p: dict[str, Any]) -> dict[str, Any]:
        w = self.workloads.get((p.get("namespace") or "", p["name"]))
        changed = {k: (None if v is None else str(v)) for k, v in p["annotations"].items()}
        if w is not None:
            w.annotations.update({k: v for k, v in changed.items() if v is not None})
        return {
            "summary": f"annotated {p['kind']} {p['name']} (drill stand-in)",
            "kind": p["kind"],
            "name": p["name"],
            "namespace": p.get("namespace"),
            "changed": changed,
            "annotations": dict(w.annotations) if w else {},
        }

    # -- wiring -----------------------------------------------------------------------------------
    def registry(self, real: ActionRegistry) -> ActionRegistry:
        """The real registry with every ``kubernetes.*`` action answered by this world."""
        specs = []
        for spec in real:
            if spec.backend != "kubernetes":
                specs.append(spec)
                continue
            specs.append(
                dataclasses.replace(
                    spec, fn=self._fn(spec), describe=_describe(spec) if spec.describe is not None else None
                )
            )
        return ActionRegistry(specs)

    def _fn(self, spec: ActionSpec) -> Callable[[ActionContext, BaseModel], BaseModel]:
        handler = getattr(self, spec.name.split(".", 1)[1], None)

        def fn(ctx: ActionContext, params: BaseModel) -> BaseModel:
            dumped = params.model_dump(mode="json", by_alias=True)
            self.calls.append((spec.name, dumped))
            if handler is None:
                raise ActionError(
                    f"{spec.name} is not simulated by the drill's Kubernetes stand-in; set KUBECONFIG",
                    backend="kubernetes",
                )
            time.sleep(0.01)
            return spec.result_model.model_validate(handler(dumped))

        return fn


def _sel(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _describe(spec: ActionSpec) -> Callable[[ActionContext, BaseModel], str]:
    def describe(ctx: ActionContext, params: BaseModel) -> str:
        dumped = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return f"{spec.summary} {json.dumps(dumped, sort_keys=True, default=str)} (drill stand-in cluster)"

    return describe
