"""Kubernetes beyond Deployments, against the loopback API server through the official client: nodes,
volume claims and storage classes, StatefulSet history (ControllerRevisions) and rollback, Helm release
history from its Secrets, PVC expansion and the read-only exec."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from runbook_devtools.kube import ExecResult, KubeAPIServer

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    Connections,
    GuardrailRefused,
    describe,
    invoke,
)
from runbook.actions.kubernetes.history import decode_release
from runbook.core.settings import Settings
from tests.support.waiting import wait_until

NS = "goqueue"
STS = {"namespace": NS, "name": "goqueue", "kind": "statefulset"}


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(rollout_delay=0.1, replace_delay=0.1) as server:
        server.seed_demo()
        server.seed_goqueue()
        yield server


@pytest.fixture
def ctx(kube: KubeAPIServer, settings: Settings, tmp_path: Path) -> Iterator[ActionContext]:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    c = ActionContext(Connections(dataclasses.replace(settings, kubeconfig=str(kubeconfig))))
    yield c
    c.connections.close()


def writes(kube: KubeAPIServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in kube.requests if r.method != "GET"]


def upgrade(kube: KubeAPIServer, image: str) -> None:
    sts = kube.get("statefulsets", NS, "goqueue")
    assert sts is not None
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = image
    kube.handle("PUT", f"/apis/apps/v1/namespaces/{NS}/statefulsets/goqueue", {}, sts, "application/json")


def test_list_nodes_reports_pressure_and_cordon(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    node = kube.get("nodes", "", "node-b")
    assert node is not None
    node["status"]["conditions"].append(
        {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure"}
    )
    node["spec"]["unschedulable"] = True
    kube.put("nodes", node)
    res = invoke(registry["kubernetes.list_nodes"], ctx, {})
    assert (res.total, res.ready, res.unschedulable) == (2, 2, ["node-b"])
    assert res.pressure == {"DiskPressure": ["node-b"]}
    assert {n.name: n.pods > 0 for n in res.nodes} == {"node-a": True, "node-b": True}
    assert "DiskPressure: node-b" in res.summary and "cordoned: node-b" in res.summary


def test_pvc_and_storageclass(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    pvc = invoke(registry["kubernetes.get_pvc"], ctx, {"namespace": NS, "name": "goqueue-data-goqueue-0"})
    assert (pvc.phase, pvc.capacity, pvc.storage_class, pvc.expandable) == ("Bound", "10Gi", "standard", True)
    assert pvc.capacity_bytes == 10 * 2**30 and not pvc.resizing
    sc = invoke(registry["kubernetes.get_storageclass"], ctx, {"name": "local"})
    assert (sc.allow_volume_expansion, sc.default) == (False, False)
    assert invoke(registry["kubernetes.get_storageclass"], ctx, {"name": "standard"}).default
    with pytest.raises(ActionError, match="not found"):
        invoke(registry["kubernetes.get_pvc"], ctx, {"namespace": NS, "name": "nope"})


def test_patch_pvc_expands_and_refuses_what_cannot_happen(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.patch_pvc"]
    params = {"namespace": NS, "name": "goqueue-data-goqueue-0", "size": "20Gi", "max_size": "50Gi"}
    assert describe(spec, ctx, params).startswith(
        f"expand pvc {NS}/goqueue-data-goqueue-0 from 10Gi (capacity 10Gi) to 20Gi (storageclass standard"
    )
    for bad, why in (
        ({"size": "5Gi"}, "not larger than the current request 10Gi"),
        ({"size": "10Gi"}, "not larger"),
        ({"size": "60Gi"}, "above max_size 50Gi"),
    ):
        with pytest.raises(GuardrailRefused, match=why):
            invoke(spec, ctx, {**params, **bad})
    kube.add_pvc(NS, "fixed", size="10Gi", storage_class="local")
    with pytest.raises(GuardrailRefused, match="storageclass local does not allow volume expansion"):
        invoke(spec, ctx, {**params, "name": "fixed"})
    assert writes(kube) == []  # every refusal before anything was sent
    res = invoke(spec, ctx, params)
    assert (res.previous, res.requested) == ("10Gi", "20Gi")
    (patch,) = kube.find_requests("PATCH", "persistentvolumeclaims")
    assert patch.body == {"spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    wait_until(
        lambda: (
            invoke(
                registry["kubernetes.get_pvc"], ctx, {"namespace": NS, "name": "goqueue-data-goqueue-0"}
            ).capacity
            == "20Gi"
        ),
        timeout=5,
        what="the resize to complete",
    )
    with pytest.raises(ValidationError):
        invoke(spec, ctx, {**params, "size": "lots"})


def test_statefulset_history_and_undo(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    hist = invoke(registry["kubernetes.rollout_history"], ctx, STS)
    assert (hist.current_revision, hist.previous_revision, hist.images) == (1, None, ["goqueue:1.4.0"])
    upgrade(kube, "goqueue:1.5.0")
    wait_until(
        lambda: invoke(registry["kubernetes.rollout_history"], ctx, STS).current_revision == 2,
        timeout=5,
        what="revision 2",
    )
    hist = invoke(registry["kubernetes.rollout_history"], ctx, STS)
    assert [(r.revision, r.images, r.current) for r in hist.revisions] == [
        (1, ["goqueue:1.4.0"], False),
        (2, ["goqueue:1.5.0"], True),
    ]
    assert hist.previous_revision == 1 and hist.update_revision == hist.current_revision_name

    undo = registry["kubernetes.rollout_undo"]
    with pytest.raises(GuardrailRefused, match=r"revision 7 not found \(history: 1, 2\)"):
        invoke(undo, ctx, {**STS, "to_revision": 7})
    text = describe(undo, ctx, {**STS, "to_revision": 1})
    assert text.startswith(
        f"roll statefulset {NS}/goqueue back from revision 2 (goqueue:1.5.0) to revision 1 (goqueue:1.4.0)"
    )
    res = invoke(undo, ctx, {**STS, "to_revision": 0})
    assert (res.from_revision, res.to_revision, res.changed) == (2, 1, True)
    (patch,) = kube.find_requests("PATCH", "statefulsets/goqueue$")
    assert patch.content_type.startswith("application/strategic-merge-patch+json")
    assert patch.body["spec"]["template"]["$patch"] == "replace"
    invoke(
        registry["kubernetes.wait_rollout"],
        ctx,
        {
            "namespace": NS,
            "deployment": "goqueue",
            "kind": "statefulset",
            "timeout_seconds": 10,
            "poll_interval": 0.05,
        },
    )
    after = invoke(registry["kubernetes.rollout_history"], ctx, STS)
    assert (after.current_revision, after.images) == (3, ["goqueue:1.4.0"])  # the old template, renumbered
    assert [r.revision for r in after.revisions] == [2, 3]
    pods = invoke(
        registry["kubernetes.list_pods"], ctx, {"namespace": NS, "selector": "app.kubernetes.io/name=goqueue"}
    )
    assert pods.ready == 3
    again = invoke(undo, ctx, {**STS, "to_revision": 3})
    assert not again.changed and "nothing changed" in again.summary


def test_deployment_undo(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    dep = {"namespace": "orchestrator", "name": "orchestrator", "kind": "deployment"}
    obj = kube.get("deployments", "orchestrator", "orchestrator")
    assert obj is not None
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.local/orchestrator:9.9.9"
    kube.handle(
        "PUT", "/apis/apps/v1/namespaces/orchestrator/deployments/orchestrator", {}, obj, "application/json"
    )
    wait_until(
        lambda: invoke(registry["kubernetes.rollout_history"], ctx, dep).current_revision == 2,
        timeout=5,
        what="revision 2",
    )
    res = invoke(registry["kubernetes.rollout_undo"], ctx, {**dep, "to_revision": 1})
    assert res.images_after == ["registry.local/orchestrator:2.4.1"]
    (patch,) = kube.find_requests("PATCH", "deployments/orchestrator$")
    assert patch.content_type.startswith("application/json-patch+json")
    assert "pod-template-hash" not in patch.body[0]["value"]["metadata"]["labels"]
    wait_until(
        lambda: invoke(registry["kubernetes.rollout_history"], ctx, dep).current_revision == 3,
        timeout=5,
        what="the old ReplicaSet renumbered",
    )


def test_helm_history_from_secrets(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    kube.add_helm_release(
        NS,
        "goqueue",
        2,
        status="failed",
        app_version="1.5.0",
        description="Upgrade failed",
        values={"auth": {"password": "hunter2hunter2"}},
    )
    res = invoke(registry["kubernetes.helm_history"], ctx, {"namespace": NS, "release": "goqueue"})
    assert [(r.revision, r.status, r.app_version) for r in res.revisions] == [
        (1, "deployed", "1.4.0"),
        (2, "failed", "1.5.0"),
    ]
    assert (res.deployed_revision, res.last_good_revision, res.failed) == (1, 1, [2])
    assert "hunter2" not in res.model_dump_json()
    with pytest.raises(ActionError, match="no Helm release 'other'"):
        invoke(registry["kubernetes.helm_history"], ctx, {"namespace": NS, "release": "other"})


def test_decode_release_refuses_garbage_and_bombs() -> None:
    good = base64.b64encode(base64.b64encode(gzip.compress(json.dumps({"version": 3}).encode()))).decode()
    assert decode_release(good) == {"version": 3}
    with pytest.raises(ValueError, match="not a Helm release"):
        decode_release("!!!")
    bomb = base64.b64encode(base64.b64encode(gzip.compress(b"[" + b" " * (9 << 20) + b"]"))).decode()
    with pytest.raises(ValueError, match="larger than"):
        decode_release(bomb)


def test_exec_readonly_runs_whole_listed_commands_only(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.exec_readonly"]
    assert not spec.destructive
    base = {"namespace": NS, "pod": "goqueue-0", "allow": ["goqueue-admin health", "df -h /data"]}
    res = invoke(spec, ctx, {**base, "command": ["goqueue-admin", "health"]})
    assert res.exit_code == 0 and '"status": "ok"' in res.stdout
    assert "/data" in invoke(spec, ctx, {**base, "command": ["df", "-h", "/data"]}).stdout
    for command in (["goqueue-admin", "topic", "delete"], ["df", "-h", "/"]):
        with pytest.raises(ValidationError, match="not in this step's allow list"):
            invoke(spec, ctx, {**base, "command": command})
    with pytest.raises(ValidationError, match="whole commands only"):
        invoke(spec, ctx, {**base, "allow": ["goqueue-admin *"], "command": ["goqueue-admin", "health"]})
    kube.exec_handler = lambda ns, pod, c, cmd: ExecResult(stdout='{"status": "degraded"}\n', exit_code=1)
    with pytest.raises(ActionError, match="exited 1"):
        invoke(spec, ctx, {**base, "command": ["goqueue-admin", "health"]})
    assert [e[3] for e in kube.execs][-1] == ["goqueue-admin", "health"]
