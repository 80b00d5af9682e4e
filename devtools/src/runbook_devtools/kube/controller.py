"""A tiny controller manager: deployments (through ReplicaSets) and statefulsets own pods, evicted or
deleted pods are replaced, and every status a real controller writes is kept current.

- A deployment's template change rolls out like the deployment controller's default RollingUpdate for
  small replica counts: ``metadata.generation`` goes up at once, ``status.observedGeneration`` follows
  when the controller next acts (``rollout_delay`` seconds later), then one new pod replaces one old pod
  per ``rollout_delay`` step, so ``updatedReplicas`` climbs 1, 2, 3 and ``kubectl rollout status``
  prints its intermediate lines before "successfully rolled out". Each template revision has its own
  ReplicaSet (``NAME-HASH``, labelled ``pod-template-hash``, owned by the deployment, annotated with
  ``deployment.kubernetes.io/revision``); pods are owned by their ReplicaSet, as ``kubectl describe``
  and ``kubectl drain`` expect. Statefulsets replace all changed pods in one step.
- ``rollout_delay`` / ``replace_delay`` ``None`` stop the controller for that purpose (stuck rollouts,
  an unreplaced evicted pod).
- A background thread (see the server) ticks the controller every 50 ms, so watches see the rollout
  progress without anyone polling; every status change gets a new resourceVersion and a MODIFIED event.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import uuid
from typing import Any

from .base import now_iso
from .resources import WORKLOADS
from .selectors import match_labels_selector
from .stateful import Stateful

REVISION = "deployment.kubernetes.io/revision"


def pod_ready(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _pruned(value: Any) -> Any:
    """``value`` without nulls and empty objects: a template kubectl sends back after a Go round trip
    (``creationTimestamp: null``, ``resources: {}``) is the same template."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v != {}}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_pruned(template), sort_keys=True).encode()).hexdigest()[:10]


def _owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner.get("apiVersion", "apps/v1"),
        "kind": owner.get("kind", ""),
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class Controller(Stateful):
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

    def _replicaset(self, wl: dict[str, Any], revision: str) -> dict[str, Any]:
        """The deployment's ReplicaSet for this template revision (created, with the next revision
        number, when the template is new)."""
        ns, name = wl["metadata"]["namespace"], wl["metadata"]["name"]
        rs_name = f"{name}-{revision}"
        rs = self.objects["replicasets"].get((ns, rs_name))
        owned = [
            r
            for r in self.objects["replicasets"].values()
            if any(o.get("uid") == wl["metadata"]["uid"] for o in r["metadata"].get("ownerReferences") or [])
        ]
        top = max((int(r["metadata"]["annotations"].get(REVISION, "0")) for r in owned), default=0)
        if rs is None:
            template = copy.deepcopy(wl["spec"]["template"])
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = revision
            selector = copy.deepcopy(wl["spec"]["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = revision
            meta = self._meta(rs_name, ns, template["metadata"]["labels"])
            meta["generation"] = 1
            meta["ownerReferences"] = [_owner_ref(wl)]
            meta["annotations"] = {REVISION: str(top + 1)}
            spec = {"replicas": 0, "selector": selector, "template": template}
            rs = self.put("replicasets", {"metadata": meta, "spec": spec, "status": {}})
        elif int(rs["metadata"]["annotations"].get(REVISION, "0")) < top:
            # a rollback to an older template: that ReplicaSet becomes the newest revision again
            old = copy.deepcopy(rs)
            rs["metadata"]["annotations"][REVISION] = str(top + 1)
            self.touch("replicasets", rs, old)
        current = wl["metadata"].setdefault("annotations", {}).get(REVISION)
        if current != rs["metadata"]["annotations"][REVISION]:
            old = copy.deepcopy(wl)
            wl["metadata"]["annotations"][REVISION] = rs["metadata"]["annotations"][REVISION]
            self.touch("deployments", wl, old)
        return rs

    def _new_pod(self, plural: str, wl: dict[str, Any], pod_name: str, revision: str) -> None:
        ns = wl["metadata"]["namespace"]
        template = wl["spec"]["template"]
        labels = dict(template.get("metadata", {}).get("labels") or {})
        if plural == "deployments":
            labels["pod-template-hash"] = revision
            owner = _owner_ref(self._replicaset(wl, revision))
        else:
            labels["controller-revision-hash"] = f"{wl['metadata']['name']}-{revision}"
            labels["statefulset.kubernetes.io/pod-name"] = pod_name
            owner = _owner_ref(wl)
        meta = self._meta(pod_name, ns, labels)
        meta["annotations"] = dict(template.get("metadata", {}).get("annotations") or {})
        meta["ownerReferences"] = [owner]
        spec = copy.deepcopy(template.get("spec") or {})
        node = self._pick_node()
        if node:
            spec["nodeName"] = node
        pod = {"metadata": meta, "spec": spec, "status": {}}
        if node:
            self._set_running(pod)
        else:
            self._set_running(pod, ready=False, phase="Pending")
        self._owner[(ns, pod_name)] = (plural, wl["metadata"]["name"])
        self.put("pods", pod)

    def _delete_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pod = self.remove("pods", namespace, name)
        owner = self._owner.pop((namespace, name), None)
        for key in [k for k in self.logs if k[0] == namespace and k[1] == name]:
            del self.logs[key]
        if owner:
            self._schedule((owner[0], namespace, owner[1]), self.replace_delay)
        return pod

    def _is_current(self, plural: str, pod: dict[str, Any], name: str, revision: str) -> bool:
        labels = pod["metadata"].get("labels") or {}
        if plural == "deployments":
            return labels.get("pod-template-hash") == revision
        return labels.get("controller-revision-hash") == f"{name}-{revision}"

    def _reconcile(self, key: tuple[str, str, str]) -> None:
        plural, ns, name = key
        if plural == "persistentvolumeclaims":
            self._due.pop(key, None)
            self._finish_resize(ns, name)
            return
        wl = self.objects[plural].get((ns, name))
        self._due.pop(key, None)
        if wl is None:
            return
        revision = template_hash(wl["spec"]["template"])
        desired = int(wl["spec"].get("replicas", 1))
        pods = self._pods_of(plural, ns, name)
        self._observed[key] = int(wl["metadata"].get("generation", 1))
        if plural == "deployments":
            self._replicaset(wl, revision)
            current = [p for p in pods if self._is_current(plural, p, name, revision)]
            old = [p for p in pods if not self._is_current(plural, p, name, revision)]
            if old and len(current) < desired and self.rollout_delay:
                # one RollingUpdate step (maxSurge 1, maxUnavailable 0 at these sizes): one in, one out
                self._new_pod(plural, wl, f"{name}-{revision}-{uuid.uuid4().hex[:5]}", revision)
                self._delete_pod(ns, old[0]["metadata"]["name"])
                self._due.pop(key, None)  # the replacement scheduled by the delete is this rollout's job
                if len(old) > 1 or len(current) + 1 < desired:
                    self._schedule(key, self.rollout_delay)
            else:
                for p in old:
                    self._delete_pod(ns, p["metadata"]["name"])
                for extra in current[desired:]:
                    self._delete_pod(ns, extra["metadata"]["name"])
                for _ in range(desired - len(current)):
                    self._new_pod(plural, wl, f"{name}-{revision}-{uuid.uuid4().hex[:5]}", revision)
                self._due.pop(key, None)
            self._sync_replicasets(wl, revision)
        else:
            self._record_revision(wl, revision)
            by_name: dict[str, dict[str, Any] | None] = {p["metadata"]["name"]: p for p in pods}
            for pname, p in list(by_name.items()):
                ordinal = int(pname.rsplit("-", 1)[-1])
                if ordinal >= desired or (p and not self._is_current(plural, p, name, revision)):
                    self._delete_pod(ns, pname)
                    by_name[pname] = None
            for i in range(desired):
                if by_name.get(f"{name}-{i}") is None:
                    self._new_pod(plural, wl, f"{name}-{i}", revision)
            self._due.pop(key, None)

    def _sync_replicasets(self, wl: dict[str, Any], revision: str) -> None:
        """Each ReplicaSet's spec.replicas = the pods of its revision the rollout keeps (old ones -> 0)."""
        ns, name = wl["metadata"]["namespace"], wl["metadata"]["name"]
        counts: dict[str, int] = {}
        for p in self._pods_of("deployments", ns, name):
            h = (p["metadata"].get("labels") or {}).get("pod-template-hash", "")
            counts[h] = counts.get(h, 0) + 1
        for rs in list(self.objects["replicasets"].values()):
            if not any(
                o.get("uid") == wl["metadata"]["uid"] for o in rs["metadata"].get("ownerReferences") or []
            ):
                continue
            h = rs["spec"]["template"]["metadata"]["labels"].get("pod-template-hash", "")
            want = int(wl["spec"].get("replicas", 1)) if h == revision else counts.get(h, 0)
            if rs["spec"].get("replicas") != want:
                old = copy.deepcopy(rs)
                rs["spec"]["replicas"] = want
                rs["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
                self.touch("replicasets", rs, old)

    def collect_garbage(self, plural: str, ns: str, name: str, uid: str) -> None:
        """Cascading deletion (background propagation, done at once): a deleted workload's pods and
        ReplicaSets go with it."""
        for pns, pname in [k for k, v in self._owner.items() if v == (plural, name) and k[0] == ns]:
            self._delete_pod(pns, pname)
        self._due.pop((plural, ns, name), None)
        self._collect_revisions(ns, uid)
        for (rns, rname), rs in list(self.objects["replicasets"].items()):
            if rns == ns and any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or []):
                self.remove("replicasets", rns, rname)

    def _tick(self) -> None:
        now = time.monotonic()
        for key, due in list(self._due.items()):
            if due is not None and due <= now:
                self._reconcile(key)
        self._refresh_status()

    def _set_status(self, plural: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if obj.get("status") != status:
            old = copy.deepcopy(obj)
            obj["status"] = status
            self.touch(plural, obj, old)

    def _workload_status(self, plural: str, ns: str, name: str, wl: dict[str, Any]) -> dict[str, Any]:
        key = (plural, ns, name)
        revision = template_hash(wl["spec"]["template"])
        pods = self._pods_of(plural, ns, name)
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if self._is_current(plural, p, name, revision))
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
            ok = ready >= desired
            done = key not in self._due and updated == desired == len(pods)
            status["conditions"] = [
                {
                    "type": "Available",
                    "status": "True" if ok else "False",
                    "reason": "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if ok
                    else "Deployment does not have minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{name}-{revision}" '
                    + ("has successfully progressed." if done else "is progressing."),
                },
            ]
        else:
            status["currentRevision"] = status["updateRevision"] = f"{name}-{revision}"
            status["currentReplicas"] = updated
            status["availableReplicas"] = ready
        status.update(self.extra_status.get(key, {}))
        return {k: v for k, v in status.items() if v != 0 or k in ("observedGeneration", "replicas")}

    def _refresh_status(self) -> None:
        for plural in WORKLOADS:
            for (ns, name), wl in self.objects[plural].items():
                self._set_status(plural, wl, self._workload_status(plural, ns, name, wl))
        for rs in self.objects["replicasets"].values():
            pods = self._selected_pods(rs)
            ready = sum(1 for p in pods if pod_ready(p))
            status = {
                "replicas": len(pods),
                "fullyLabeledReplicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            self._set_status("replicasets", rs, {k: v for k, v in status.items() if v or k == "replicas"})
        for ds in self.objects["daemonsets"].values():
            pods = self._owned_pods(ds)
            ready = sum(1 for p in pods if pod_ready(p))
            n = len(pods)
            status = {
                "currentNumberScheduled": n,
                "desiredNumberScheduled": n,
                "numberMisscheduled": 0,
                "numberReady": ready,
                "numberAvailable": ready,
                "updatedNumberScheduled": n,
                "observedGeneration": ds["metadata"].get("generation", 1),
            }
            self._set_status("daemonsets", ds, status)
        for pdb in self.objects["poddisruptionbudgets"].values():
            self._set_status("poddisruptionbudgets", pdb, self._pdb_status(pdb))

    def _owned_pods(self, owner: dict[str, Any]) -> list[dict[str, Any]]:
        uid = owner["metadata"]["uid"]
        return [
            p
            for p in self.objects["pods"].values()
            if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])
        ]

    def _selected_pods(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        return self._owned_pods(rs)

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
        allowed = max(0, healthy - desired)
        cond_status = "True" if allowed else "False"
        previous = next(iter((pdb.get("status") or {}).get("conditions") or []), {})
        since = previous.get("lastTransitionTime") if previous.get("status") == cond_status else None
        return {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "expectedPods": expected,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "disruptionsAllowed": allowed,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": cond_status,
                    "reason": "SufficientPods" if allowed else "InsufficientPods",
                    "message": "",
                    "lastTransitionTime": since or now_iso(),
                    "observedGeneration": pdb["metadata"].get("generation", 1),
                }
            ],
        }
