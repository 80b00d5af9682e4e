"""The real ``kubectl`` against the loopback API server (runbook_devtools.kube), for every operation the
Kubernetes actions perform, and kubectl's view compared with what the actions report.

Why: the bench had only ever been driven by the official Python client, so it served exactly the paths
that client calls; a real client (discovery, Tables, watches, pagination, evictions with retries) is
the check that the bench behaves like a cluster. These tests FAIL, never skip, when kubectl is missing:
install it with ``apt-get install kubernetes-client`` (Debian) or google-cloud-cli's ``kubectl``.

Each test gets its own server (TLS with a throwaway CA, bearer token) seeded with the demo cluster.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runbook_devtools.kube import KubeAPIServer

from runbook.actions import ActionContext, ActionRegistry, Connections, invoke
from runbook.core.settings import Settings

NS = "orchestrator"
DEP = {"namespace": NS, "deployment": "orchestrator"}
INSTALL_HINT = (
    "kubectl is not on the PATH: these tests run the real client against the bench. Install it with "
    "`apt-get install -y kubernetes-client` (Debian) or the `kubectl` component of google-cloud-cli."
)


@pytest.fixture(scope="module")
def kubectl_bin() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(INSTALL_HINT)
    return path


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(rollout_delay=0.2, replace_delay=0.2) as server:
        server.seed_demo()
        yield server


@pytest.fixture
def kubeconfig(kube: KubeAPIServer, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)


@pytest.fixture
def ctx(kubeconfig: Path, settings: Settings) -> Iterator[ActionContext]:
    connections = Connections(dataclasses.replace(settings, kubeconfig=str(kubeconfig)))
    yield ActionContext(connections)
    connections.close()


@pytest.fixture
def kubectl(kubectl_bin: str, kubeconfig: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run kubectl against the bench; a private discovery cache dir so tests never share one."""

    def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        cmd = [kubectl_bin, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    return run


def table(text: str) -> list[list[str]]:
    """kubectl's printed table as rows of cells (split on runs of 2+ spaces, header included)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


# ------------------------------------------------------------------------------------------ reads


def test_get_deployments_pods_nodes_match_the_actions(
    kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    rows = table(kubectl("get", "deployments", "-A").stdout)
    assert rows[0] == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[1][:5] == [NS, "orchestrator", "3/3", "3", "3"]
    dep = invoke(registry["kubernetes.get_deployment"], ctx, DEP)
    assert (dep.ready, dep.desired, dep.updated, dep.available) == (3, 3, 3, 3)

    pods = table(kubectl("get", "pods", "-l", "app=orchestrator", "-o", "wide").stdout)
    assert pods[0][:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in pods[0]
    listed = invoke(registry["kubernetes.list_pods"], ctx, {"namespace": NS, "selector": "app=orchestrator"})
    assert len(pods) - 1 == listed.total == 3
    assert {r[0] for r in pods[1:]} == {p.name for p in listed.pods}
    assert all(r[1:3] == ["1/1", "Running"] for r in pods[1:])

    # a crash-looping pod: kubectl's STATUS column and the action agree
    sick = sorted(p.name for p in listed.pods)[0]
    kube.set_pod_state(NS, sick, ready=False, waiting_reason="CrashLoopBackOff", restarts=7)
    row = table(kubectl("get", "pod", sick).stdout)[1]
    assert row[1:4] == ["0/1", "CrashLoopBackOff", "7"]
    again = invoke(registry["kubernetes.list_pods"], ctx, {"namespace": NS, "selector": "app=orchestrator"})
    assert (again.crash_looping, again.not_ready) == (1, 1)

    nodes = table(kubectl("get", "nodes").stdout)
    assert nodes[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [r[:3] for r in nodes[1:]] == [["node-a", "Ready", "<none>"], ["node-b", "Ready", "<none>"]]

    pdb = table(kubectl("get", "pdb").stdout)
    assert pdb[0][:4] == ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS"]
    assert pdb[1][:4] == ["rabbitmq", "2", "N/A", "1"]

    as_json = json.loads(kubectl("get", "deployment", "orchestrator", "-o", "json").stdout)
    assert as_json["status"]["observedGeneration"] == as_json["metadata"]["generation"]
    assert kubectl("get", "deploy,sts,ds", "-o", "name").stdout.split() == [
        "deployment.apps/orchestrator",
        "statefulset.apps/rabbitmq",
        "daemonset.apps/node-exporter",
    ]


def test_events_match_the_action(
    kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    pod = kube.list("pods", NS)[0]["metadata"]["name"]
    kube.add_event(NS, ("Pod", pod), "BackOff", "Back-off restarting failed container", type="Warning")
    rows = table(kubectl("get", "events").stdout)
    assert rows[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ["Warning", "BackOff", f"pod/{pod}"] in [r[1:4] for r in rows[1:]]
    items = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
    res = invoke(registry["kubernetes.events"], ctx, {"namespace": NS})
    assert res.total == len(items) == 2 and res.warnings == 1
    # field selectors on involvedObject.* and type, as kubectl describe and the action send them
    warned = kubectl(
        "get", "events", "--field-selector", "type=Warning,involvedObject.kind=Pod", "-o", "name"
    )
    assert len(warned.stdout.split()) == 1


def test_describe_deployment_shows_replicaset_and_events(kubectl) -> None:  # type: ignore[no-untyped-def]
    out = kubectl("describe", "deployment", "orchestrator").stdout
    assert "Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in out
    assert "RollingUpdateStrategy:  25% max unavailable, 25% max surge" in out
    assert "NewReplicaSet:   orchestrator-" in out and "(3/3 replicas created)" in out
    assert "ScalingReplicaSet" in out and "Scaled up to 3" in out  # found by involvedObject.uid


def test_logs_by_selector_match_the_action(kubectl, registry: ActionRegistry, ctx: ActionContext) -> None:  # type: ignore[no-untyped-def]
    out = kubectl("logs", "-l", "app=orchestrator", "--tail", "3", "--prefix").stdout.splitlines()
    assert len(out) == 9 and sum("ERROR plan 42 failed" in line for line in out) == 3
    res = invoke(registry["kubernetes.pod_logs"], ctx, {"namespace": NS, "selector": "app=orchestrator"})
    assert len(res.lines) == len(out)
    # kubectl --prefix prints "[pod/NAME/CONTAINER] line"; the action "NAME: line" (secrets redacted)
    seen = sorted(line.split("] ", 1)[1] for line in out if "ERROR" in line)
    assert seen == sorted(line.split(": ", 1)[1] for line in res.lines if "ERROR" in line)
    assert any("s3cretpass" in line for line in out) and not any("s3cretpass" in line for line in res.lines)


def test_exec(kubectl) -> None:  # type: ignore[no-untyped-def]
    """kubectl 1.32 execs over websockets offering only v5 of the channel protocol (the Python client
    offers v4); the bench answers the one offered. SPDY, kubectl's fallback for old servers, is not
    served, so only the websocket path is verified."""
    assert kubectl("exec", "rabbitmq-0", "--", "echo", "hello", "bench").stdout == "hello bench\n"
    failed = kubectl("exec", "rabbitmq-0", "--", "false", check=False)
    assert failed.returncode == 1
    missing = kubectl("exec", "rabbitmq-0", "--", "nosuchtool", check=False)
    assert missing.returncode == 127 and "executable file not found" in missing.stderr


def test_pagination_with_chunk_size(kubectl, kube: KubeAPIServer) -> None:  # type: ignore[no-untyped-def]
    whole = kubectl("get", "pods", "-A", "-o", "name").stdout.split()
    chunked = kubectl("get", "pods", "-A", "-o", "name", "--chunk-size", "2").stdout.split()
    assert chunked == whole and len(whole) == 8
    pages = [r for r in kube.find_requests("GET", r"^/api/v1/pods$") if r.query.get("limit") == ["2"]]
    assert len(pages) == 4 and sum(1 for r in pages if r.query.get("continue")) == 3


def test_label_and_field_selectors(kubectl) -> None:  # type: ignore[no-untyped-def]
    def names(*args: str) -> list[str]:
        return [n.split("/", 1)[1] for n in kubectl("get", "pods", "-o", "name", *args).stdout.split()]

    assert names("-l", "app in (rabbitmq)") == ["rabbitmq-0", "rabbitmq-1", "rabbitmq-2"]
    assert len(names("-l", "app notin (rabbitmq,orchestrator)")) == 2  # the node-exporter pods
    assert len(names("-l", "app!=rabbitmq,app")) == 5
    assert names("-l", "!app") == []
    assert names("-l", "statefulset.kubernetes.io/pod-name=rabbitmq-1") == ["rabbitmq-1"]
    on_a = names("--field-selector", "spec.nodeName=node-a")
    on_b = names("--field-selector", "spec.nodeName!=node-a")
    assert on_a and on_b and not set(on_a) & set(on_b) and len(on_a) + len(on_b) == 8
    assert len(names("--field-selector", "status.phase=Running,metadata.name=rabbitmq-2")) == 1
    bad = kubectl("get", "pods", "--field-selector", "spec.image=x", check=False)
    assert bad.returncode != 0 and "field label not supported: spec.image" in bad.stderr


def test_watch_streams_changes(kubectl_bin: str, kubeconfig: Path, kubectl, kube: KubeAPIServer) -> None:  # type: ignore[no-untyped-def]
    watcher = subprocess.Popen(
        [kubectl_bin, "--kubeconfig", str(kubeconfig), "get", "deployment", "orchestrator", "-w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        kubectl("scale", "deployment", "orchestrator", "--replicas", "1")
        time.sleep(1.5)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    ready = [row[1] for row in table(out) if row[0] == "orchestrator"]
    assert ready[0] == "3/3" and ready[-1] == "1/1", out
    watches = [r for r in kube.find_requests("GET", "/deployments$") if r.query.get("watch") == ["true"]]
    assert watches and watches[0].query["resourceVersion"][0].isdigit()


# ------------------------------------------------------------------------------------------ writes


def test_scale_uses_the_scale_subresource(
    kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    assert (
        "deployment.apps/orchestrator scaled"
        in kubectl("scale", "deploy/orchestrator", "--replicas=5").stdout
    )
    (patch,) = kube.find_requests("PATCH", "/deployments/orchestrator/scale$")
    assert patch.body == {"spec": {"replicas": 5}}
    kubectl("rollout", "status", "deployment/orchestrator", "--timeout=20s")
    dep = invoke(registry["kubernetes.get_deployment"], ctx, DEP)
    assert (dep.desired, dep.ready) == (5, 5)
    assert table(kubectl("get", "deploy", "orchestrator").stdout)[1][1] == "5/5"
    # the action's own scale, seen by kubectl
    invoke(registry["kubernetes.scale"], ctx, {**DEP, "replicas": 2, "max_replicas": 6})
    kubectl("rollout", "status", "deployment/orchestrator", "--timeout=20s")
    assert kubectl("get", "deploy", "orchestrator", "-o", "jsonpath={.spec.replicas}").stdout == "2"


def test_rollout_restart_then_status_follows_generations(
    kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    before = kube.get("deployments", NS, "orchestrator")
    assert "restarted" in kubectl("rollout", "restart", "deployment/orchestrator").stdout
    (patch,) = kube.find_requests("PATCH", "/deployments/orchestrator$")
    assert patch.content_type.startswith("application/strategic-merge-patch+json")
    annotations = patch.body["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    after = kube.get("deployments", NS, "orchestrator")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["status"]["observedGeneration"] == before["metadata"]["generation"]  # not observed yet
    status = kubectl("rollout", "status", "deployment/orchestrator", "--timeout=30s").stdout
    assert "of 3 updated replicas are available" in status or "new replicas have been updated" in status
    assert status.strip().splitlines()[-1] == 'deployment "orchestrator" successfully rolled out'
    done = kube.get("deployments", NS, "orchestrator")
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]
    assert done["status"]["updatedReplicas"] == done["status"]["availableReplicas"] == 3
    res = invoke(
        registry["kubernetes.wait_rollout"], ctx, {**DEP, "poll_interval": 0.05, "timeout_seconds": 5}
    )
    assert (res.desired, res.ready, res.updated) == (3, 3, 3)
    revisions = table(kubectl("get", "rs").stdout)
    assert sorted(r[1] for r in revisions[1:]) == ["0", "3"]  # the old ReplicaSet is scaled to 0
    # the action's restart is seen by kubectl's rollout status the same way
    invoke(registry["kubernetes.rollout_restart"], ctx, DEP)
    status = kubectl("rollout", "status", "deployment/orchestrator", "--timeout=30s").stdout
    assert "successfully rolled out" in status


def test_annotate_sends_merge_patches(
    kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    kubectl("annotate", "node", "node-a", "runbook.io/maintenance=drill")
    (patch,) = kube.find_requests("PATCH", "/nodes/node-a$")
    assert patch.content_type.startswith("application/merge-patch+json")
    res = invoke(
        registry["kubernetes.annotate"],
        ctx,
        {"kind": "node", "name": "node-a", "annotations": {"runbook.io/owner": "sre"}},
    )
    assert res.annotations["runbook.io/maintenance"] == "drill"
    shown = json.loads(kubectl("get", "node", "node-a", "-o", "jsonpath={.metadata.annotations}").stdout)
    assert shown["runbook.io/owner"] == "sre"
    kubectl("annotate", "node", "node-a", "runbook.io/maintenance-")
    assert "runbook.io/maintenance" not in kube.get("nodes", "", "node-a")["metadata"]["annotations"]  # type: ignore[index]


def test_cordon_uncordon(kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:  # type: ignore[no-untyped-def]
    assert "node/node-a cordoned" in kubectl("cordon", "node-a").stdout
    assert table(kubectl("get", "node", "node-a").stdout)[1][1] == "Ready,SchedulingDisabled"
    assert invoke(registry["kubernetes.cordon"], ctx, {"node": "node-a"}).changed is False
    assert "node/node-a uncordoned" in kubectl("uncordon", "node-a").stdout
    assert kube.get("nodes", "", "node-a")["spec"].get("unschedulable") in (None, False)  # type: ignore[index]
    assert invoke(registry["kubernetes.cordon"], ctx, {"node": "node-b"}).changed is True
    assert table(kubectl("get", "node", "node-b").stdout)[1][1] == "Ready,SchedulingDisabled"


@pytest.fixture
def crowded(kube: KubeAPIServer) -> KubeAPIServer:
    """node-c holds two rabbitmq pods of a 3-pod set guarded by a PDB, and a DaemonSet pod."""
    kube.add_node("node-c")
    for name in ("rabbitmq-1", "rabbitmq-2"):
        kube.objects["pods"][(NS, name)]["spec"]["nodeName"] = "node-c"
    kube.add_pod(NS, "node-exporter-node-c", node="node-c", owner=("DaemonSet", "node-exporter"))
    return kube


def test_drain_blocked_by_pdb_reports_it(kubectl, crowded: KubeAPIServer) -> None:  # type: ignore[no-untyped-def]
    crowded.replace_delay = None  # evicted pods are not replaced: the budget stays exhausted
    proc = kubectl("drain", "node-c", "--ignore-daemonsets", "--timeout=4s", check=False, timeout=60)
    assert proc.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in proc.stderr
    statuses = [r.status for r in crowded.find_requests("POST", "/eviction$")]
    assert statuses.count(201) == 1 and 429 in statuses  # one allowed, the other refused and retried
    assert crowded.get("nodes", "", "node-c")["spec"]["unschedulable"] is True  # type: ignore[index]


def test_drain_allowed_by_pdb(
    kubectl, registry: ActionRegistry, ctx: ActionContext, crowded: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    refused = kubectl("drain", "node-c", check=False)  # a DaemonSet pod: refused without the flag
    assert refused.returncode != 0 and "cannot delete DaemonSet-managed Pods" in refused.stderr
    proc = kubectl("drain", "node-c", "--ignore-daemonsets", "--timeout=40s", timeout=60)
    assert "node/node-c drained" in proc.stdout
    assert "pod/rabbitmq-1 evicted" in proc.stdout and "pod/rabbitmq-2 evicted" in proc.stdout
    left = invoke(registry["kubernetes.list_pods"], ctx, {"namespace": NS, "node": "node-c"})
    assert [p.name for p in left.pods] == ["node-exporter-node-c"]
    assert not crowded.find_requests("DELETE")  # evictions only, never deletes


# ------------------------------------------------------------------------------------------ stateful


def test_statefulset_history_and_undo_match_kubectl(
    kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    sts = {"namespace": NS, "name": "rabbitmq", "kind": "statefulset"}
    kubectl("set", "image", "sts/rabbitmq", "rabbitmq=rabbitmq:3.13.1")
    kubectl("rollout", "status", "sts/rabbitmq", "--timeout=30s")
    history = kubectl("rollout", "history", "sts/rabbitmq").stdout.split()
    assert history[history.index("CHANGE-CAUSE") + 1 :] == ["1", "<none>", "2", "<none>"]
    res = invoke(registry["kubernetes.rollout_history"], ctx, sts)
    assert [r.revision for r in res.revisions] == [1, 2] and res.current_revision == 2
    revs = table(kubectl("get", "controllerrevisions").stdout)
    assert revs[0] == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert {(r[0], r[2]) for r in revs[1:]} == {(r.name, str(r.revision)) for r in res.revisions}
    assert (
        kubectl("get", "sts", "rabbitmq", "-o", "jsonpath={.status.updateRevision}").stdout
        == res.update_revision
    )
    # kubectl's undo and the action's land on the same template and numbering
    assert "rolled back" in kubectl("rollout", "undo", "sts/rabbitmq", "--to-revision=1").stdout
    kubectl("rollout", "status", "sts/rabbitmq", "--timeout=30s")
    undone = invoke(registry["kubernetes.rollout_history"], ctx, sts)
    assert (undone.current_revision, undone.images) == (3, ["rabbitmq:3.13-management"])
    done = invoke(registry["kubernetes.rollout_undo"], ctx, {**sts, "to_revision": 0})
    assert (done.from_revision, done.to_revision, done.images_after) == (3, 2, ["rabbitmq:3.13.1"])
    kubectl("rollout", "status", "sts/rabbitmq", "--timeout=30s")
    image = kubectl("get", "sts", "rabbitmq", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "rabbitmq:3.13.1"
    history = kubectl("rollout", "history", "sts/rabbitmq").stdout.split()
    assert history[history.index("CHANGE-CAUSE") + 1 :: 2] == ["3", "4"]


def test_pvc_storageclass_nodes_and_helm_secrets_match_kubectl(
    kubectl, registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:  # type: ignore[no-untyped-def]
    kube.seed_goqueue(NS, replicas=1)
    kube.add_helm_release(NS, "goqueue", 2, status="failed", app_version="1.5.0")
    rows = table(kubectl("get", "pvc").stdout)
    assert rows[0] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"]
    pvc = invoke(registry["kubernetes.get_pvc"], ctx, {"namespace": NS, "name": "goqueue-data-goqueue-0"})
    assert rows[1][:6] == [pvc.name, pvc.phase, pvc.volume, pvc.capacity, "RWO", pvc.storage_class]
    classes = table(kubectl("get", "storageclass").stdout)
    assert classes[0][:5] == [
        "NAME",
        "PROVISIONER",
        "RECLAIMPOLICY",
        "VOLUMEBINDINGMODE",
        "ALLOWVOLUMEEXPANSION",
    ]
    assert [(r[0], r[4]) for r in classes[1:]] == [("local", "false"), ("standard (default)", "true")]
    # kubectl's patch and the action refuse and allow the same expansions
    denied = kubectl(
        "patch",
        "pvc",
        "goqueue-data-goqueue-0",
        "-p",
        '{"spec":{"resources":{"requests":{"storage":"5Gi"}}}}',
        check=False,
    )
    assert denied.returncode == 1 and "is invalid" in denied.stderr
    kube.add_pvc(NS, "fixed", size="1Gi", storage_class="local")
    denied = kubectl(
        "patch", "pvc", "fixed", "-p", '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}', check=False
    )
    assert "must support resize" in denied.stderr
    with pytest.raises(Exception, match="does not allow volume expansion"):
        invoke(
            registry["kubernetes.patch_pvc"],
            ctx,
            {"namespace": NS, "name": "fixed", "size": "2Gi", "max_size": "4Gi"},
        )
    claim = "goqueue-data-goqueue-0"
    kubectl("patch", "pvc", claim, "-p", '{"spec":{"resources":{"requests":{"storage":"15Gi"}}}}')
    time.sleep(0.5)
    assert kubectl("get", "pvc", claim, "-o", "jsonpath={.status.capacity.storage}").stdout == "15Gi"
    assert invoke(registry["kubernetes.get_pvc"], ctx, {"namespace": NS, "name": claim}).capacity == "15Gi"
    # Helm's secrets as kubectl lists them, and the decoded history
    secrets = table(kubectl("get", "secrets", "-l", "owner=helm,name=goqueue").stdout)
    assert [r[:3] for r in secrets[1:]] == [
        ["sh.helm.release.v1.goqueue.v1", "helm.sh/release.v1", "1"],
        ["sh.helm.release.v1.goqueue.v2", "helm.sh/release.v1", "1"],
    ]
    helm = invoke(registry["kubernetes.helm_history"], ctx, {"namespace": NS, "release": "goqueue"})
    assert [(r.revision, r.status) for r in helm.revisions] == [(1, "deployed"), (2, "failed")]
    nodes = invoke(registry["kubernetes.list_nodes"], ctx, {})
    kubectl("cordon", "node-a")
    assert invoke(registry["kubernetes.list_nodes"], ctx, {}).unschedulable == ["node-a"]
    status = table(kubectl("get", "nodes").stdout)
    assert [r[:2] for r in status[1:]] == [["node-a", "Ready,SchedulingDisabled"], ["node-b", "Ready"]]
    assert nodes.ready == 2


def test_exec_readonly_matches_kubectl_exec(kubectl, registry: ActionRegistry, ctx: ActionContext) -> None:  # type: ignore[no-untyped-def]
    out = kubectl("exec", "rabbitmq-0", "--", "df", "-h", "/data").stdout
    res = invoke(
        registry["kubernetes.exec_readonly"],
        ctx,
        {"namespace": NS, "pod": "rabbitmq-0", "command": ["df", "-h", "/data"], "allow": ["df -h /data"]},
    )
    assert res.stdout == out and res.exit_code == 0
