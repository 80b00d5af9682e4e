"""Kubernetes destructive actions end to end against the loopback API server: describe reads the
target and states current -> new; guardrails refuse before anything is sent; drains respect
PodDisruptionBudgets (429) and never force; exec runs over the websocket channel protocol.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    Connections,
    GuardrailRefused,
    describe,
    invoke,
)
from runbook.actions.postgres.actions import connection_limits
from runbook.core.settings import Settings
from tests.support.waiting import wait_until

try:
    from tests.support.kube_api import KubeAPIServer
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from support.kube_api import KubeAPIServer

NS = "orchestrator"
DEP = {"namespace": NS, "deployment": "orchestrator"}


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(rollout_delay=0.2, replace_delay=0.2) as server:
        server.seed_demo()
        yield server


def make_ctx(kube: KubeAPIServer, settings: Settings, tmp_path: Path) -> ActionContext:
    kubeconfig = kube.write_kubeconfig(tmp_path / f"kubeconfig-{kube.port}")
    return ActionContext(Connections(dataclasses.replace(settings, kubeconfig=str(kubeconfig))))


@pytest.fixture
def ctx(kube: KubeAPIServer, settings: Settings, tmp_path: Path) -> Iterator[ActionContext]:
    c = make_ctx(kube, settings, tmp_path)
    yield c
    c.connections.close()


def writes(kube: KubeAPIServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in kube.requests if r.method != "GET"]


# ------------------------------------------------------------------------------------------ scale


def test_scale_within_bound(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    spec = registry["kubernetes.scale"]
    params = {**DEP, "replicas": 5, "max_replicas": 6}
    assert describe(spec, ctx, params).startswith(
        "scale deployment orchestrator/orchestrator from 3 to 5 replicas (max_replicas 6)"
    )
    assert writes(kube) == []  # describe is read-only
    res = invoke(spec, ctx, params)
    assert (res.previous, res.replicas) == (3, 5)
    (patch,) = kube.find_requests("PATCH")
    assert patch.path.endswith("/deployments/orchestrator/scale") and patch.body == {"spec": {"replicas": 5}}
    assert patch.content_type == "application/strategic-merge-patch+json"
    wait_until(
        lambda: kube.get("deployments", NS, "orchestrator")["status"]["readyReplicas"] == 5,  # type: ignore[index]
        timeout=10,
        what="five ready replicas",
    )
    sts = invoke(
        spec,
        ctx,
        {"namespace": NS, "deployment": "rabbitmq", "kind": "statefulset", "replicas": 2, "max_replicas": 3},
    )
    assert sts.previous == 3 and kube.find_requests("PATCH", "/statefulsets/rabbitmq/scale$")


def test_scale_refused_above_max_replicas(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.scale"]
    params = {**DEP, "replicas": 10, "max_replicas": 6}
    assert "REFUSED: 10 replicas exceeds max_replicas 6" in describe(spec, ctx, params)
    with pytest.raises(GuardrailRefused, match="exceeds max_replicas 6"):
        invoke(spec, ctx, params)
    assert writes(kube) == []
    # scaling down from above a bound only relieves pressure: allowed
    kube.put(
        "deployments",
        {
            **kube.get("deployments", NS, "orchestrator"),
            "spec": {  # type: ignore[dict-item]
                **kube.get("deployments", NS, "orchestrator")["spec"],
                "replicas": 9,
            },
        },
    )  # type: ignore[index]
    assert invoke(spec, ctx, {**DEP, "replicas": 8, "max_replicas": 6}).replicas == 8


def test_scale_refused_above_db_connection_budget(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer, postgres_available: None
) -> None:
    """The seed's rule: max consumers = floor((max_connections - headroom) / pool_size), with
    max_connections read from the real PostgreSQL through
    runbook.actions.postgres.actions.connection_limits."""
    limits = connection_limits(ctx)
    headroom = 10
    pool = max(1, (limits.max_connections - headroom) // 5)
    budget = (limits.max_connections - headroom) // pool
    spec = registry["kubernetes.scale"]
    db = {"use_database": True, "db_pool_size": pool, "db_headroom": headroom, "max_replicas": 100}
    over = {**DEP, "replicas": budget + 1, **db}
    text = describe(spec, ctx, over)
    assert (
        f"= {budget} replicas" in text
        and "REFUSED" in text
        and f"{limits.max_connections} max_connections" in text
    )
    with pytest.raises(GuardrailRefused, match="exceeds the DB-connection budget"):
        invoke(spec, ctx, over)
    assert writes(kube) == []
    res = invoke(spec, ctx, {**DEP, "replicas": budget, **db})
    assert res.replicas == budget and res.db_budget == budget
    with pytest.raises(ValueError, match="db_pool_size"):
        invoke(spec, ctx, {**DEP, "replicas": 2, "max_replicas": 3, "use_database": True})


def test_scale_missing_target_is_clear(registry: ActionRegistry, ctx: ActionContext) -> None:
    with pytest.raises(ActionError, match="read deployment orchestrator/ghost: not found"):
        describe(
            registry["kubernetes.scale"],
            ctx,
            {"namespace": NS, "deployment": "ghost", "replicas": 1, "max_replicas": 2},
        )


# ---------------------------------------------------------------------------- restart / annotate


def test_rollout_restart_patches_template_annotation(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.rollout_restart"]
    before = set(
        p["metadata"]["name"]
        for p in kube.list("pods", NS)
        if p["metadata"]["labels"].get("app") == "orchestrator"
    )
    text = describe(spec, ctx, DEP)
    assert "replaces its 3 pods" in text and "kubectl.kubernetes.io/restartedAt (unset) -> <now>" in text
    res = invoke(spec, ctx, DEP)
    dep = kube.get("deployments", NS, "orchestrator")
    assert dep is not None
    assert (
        dep["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        == res.restarted_at
    )
    assert res.generation == dep["metadata"]["generation"] == 2
    invoke(registry["kubernetes.wait_rollout"], ctx, {**DEP, "poll_interval": 0.05, "timeout_seconds": 5})
    after = set(
        p["metadata"]["name"]
        for p in kube.list("pods", NS)
        if p["metadata"]["labels"].get("app") == "orchestrator"
    )
    assert len(after) == 3 and not (before & after)


def test_rollout_restart_refuses_paused(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    kube.add_deployment(NS, "paused-worker", replicas=1, paused=True)
    params = {"namespace": NS, "deployment": "paused-worker"}
    assert "REFUSED" in describe(registry["kubernetes.rollout_restart"], ctx, params)
    with pytest.raises(GuardrailRefused, match="paused"):
        invoke(registry["kubernetes.rollout_restart"], ctx, params)


def test_annotate_maintenance_mode_set_and_remove(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.annotate"]
    on = {"kind": "deployment", "namespace": NS, "name": "orchestrator", "annotations": {"maintenance": True}}
    assert (
        describe(spec, ctx, on)
        == "annotate deployment orchestrator/orchestrator: maintenance: (unset) -> 'true'"
    )
    res = invoke(spec, ctx, on)
    assert res.annotations["maintenance"] == "true"
    assert kube.get("deployments", NS, "orchestrator")["metadata"]["annotations"]["maintenance"] == "true"  # type: ignore[index]
    with pytest.raises(GuardrailRefused, match="overwrite is false"):
        invoke(spec, ctx, {**on, "annotations": {"maintenance": "false"}, "overwrite": False})
    off = {**on, "annotations": {"maintenance": None}}
    assert "maintenance: 'true' -> (removed)" in describe(spec, ctx, off)
    invoke(spec, ctx, off)
    assert "maintenance" not in kube.get("deployments", NS, "orchestrator")["metadata"]["annotations"]  # type: ignore[index]
    assert "nothing changes" in describe(spec, ctx, off)
    node = invoke(
        spec, ctx, {"kind": "node", "name": "node-a", "annotations": {"runbook/maintenance": "drill"}}
    )
    assert node.changed == {"runbook/maintenance": "drill"}
    with pytest.raises(ActionError, match="read node ghost: not found"):
        invoke(spec, ctx, {"kind": "node", "name": "ghost", "annotations": {"a": "b"}})
    with pytest.raises(ValueError, match="namespace is required"):
        invoke(spec, ctx, {"kind": "pod", "name": "x", "annotations": {"a": "b"}})


# ------------------------------------------------------------------------------------------ pods and nodes


def test_delete_pod_managed_is_replaced_unmanaged_refused(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.delete_pod"]
    text = describe(spec, ctx, {"namespace": NS, "pod": "rabbitmq-1"})
    assert "StatefulSet rabbitmq recreates it" in text
    uid = kube.get("pods", NS, "rabbitmq-1")["metadata"]["uid"]  # type: ignore[index]
    res = invoke(spec, ctx, {"namespace": NS, "pod": "rabbitmq-1", "grace_period_seconds": 5})
    assert res.owner == "StatefulSet/rabbitmq"
    assert kube.find_requests("DELETE")[0].path.endswith("/pods/rabbitmq-1")
    wait_until(
        # deleted at once, then recreated by the StatefulSet: absent for a moment, then a new uid
        lambda: (kube.get("pods", NS, "rabbitmq-1") or {"metadata": {"uid": uid}})["metadata"]["uid"] != uid,
        timeout=10,
        what="the StatefulSet to recreate rabbitmq-1",
    )
    kube.add_pod(NS, "debug-shell", node="node-a")
    assert "REFUSED" in describe(spec, ctx, {"namespace": NS, "pod": "debug-shell"})
    with pytest.raises(GuardrailRefused, match="no controller"):
        invoke(spec, ctx, {"namespace": NS, "pod": "debug-shell"})
    invoke(spec, ctx, {"namespace": NS, "pod": "debug-shell", "allow_unmanaged": True})
    assert kube.get("pods", NS, "debug-shell") is None
    with pytest.raises(ActionError, match="read pod orchestrator/ghost: not found"):
        invoke(spec, ctx, {"namespace": NS, "pod": "ghost"})


def test_cordon_uncordon(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    assert describe(registry["kubernetes.cordon"], ctx, {"node": "node-a"}).startswith(
        "cordon node node-a: schedulable -> unschedulable"
    )
    res = invoke(registry["kubernetes.cordon"], ctx, {"node": "node-a"})
    assert res.changed and kube.get("nodes", "", "node-a")["spec"]["unschedulable"] is True  # type: ignore[index]
    assert not invoke(registry["kubernetes.cordon"], ctx, {"node": "node-a"}).changed
    assert "already unschedulable" in describe(registry["kubernetes.cordon"], ctx, {"node": "node-a"})
    invoke(registry["kubernetes.uncordon"], ctx, {"node": "node-a"})
    assert not kube.get("nodes", "", "node-a")["spec"].get("unschedulable")  # type: ignore[index]
    with pytest.raises(ActionError, match="read node ghost: not found"):
        describe(registry["kubernetes.cordon"], ctx, {"node": "ghost"})


@pytest.fixture
def crowded_node(settings: Settings, tmp_path: Path) -> Iterator[tuple[KubeAPIServer, ActionContext]]:
    """node-a holds all 3 rabbitmq pods (PDB minAvailable 2) and a DaemonSet pod; node-b is empty."""
    with KubeAPIServer(rollout_delay=0.2, replace_delay=0.3) as kube:
        kube.add_node("node-a")
        kube.add_statefulset(NS, "rabbitmq", replicas=3)
        kube.add_pdb(NS, "rabbitmq", {"app": "rabbitmq"}, min_available=2)
        kube.add_pod(NS, "node-exporter-a", node="node-a", owner=("DaemonSet", "node-exporter"))
        kube.add_pod(NS, "kube-proxy-a", node="node-a", annotations={"kubernetes.io/config.mirror": "x"})
        kube.add_node("node-b")
        c = make_ctx(kube, settings, tmp_path)
        yield kube, c
        c.connections.close()


def test_drain_waits_for_pdb_then_completes(
    registry: ActionRegistry, crowded_node: tuple[KubeAPIServer, ActionContext]
) -> None:
    kube, ctx = crowded_node
    spec = registry["kubernetes.drain"]
    text = describe(spec, ctx, {"node": "node-a"})
    assert "evict 3 pods" in text and "node-exporter-a (DaemonSet)" in text and "static mirror pod" in text
    res = invoke(spec, ctx, {"node": "node-a", "retry_interval": 0.1, "timeout_seconds": 10})
    assert res.complete and sorted(res.evicted) == [f"{NS}/rabbitmq-{i}" for i in range(3)]
    assert len(res.skipped) == 2
    statuses = [r.status for r in kube.find_requests("POST", "/eviction$")]
    assert 429 in statuses and statuses.count(201) == 3  # blocked, retried, then allowed
    assert not kube.find_requests("DELETE")  # never forced
    assert kube.get("nodes", "", "node-a")["spec"]["unschedulable"] is True  # type: ignore[index]
    assert {
        p["spec"]["nodeName"] for p in kube.list("pods", NS) if p["metadata"]["name"].startswith("rabbitmq")
    } == {"node-b"}


def test_drain_blocked_by_pdb_is_reported_never_forced(
    registry: ActionRegistry, crowded_node: tuple[KubeAPIServer, ActionContext]
) -> None:
    kube, ctx = crowded_node
    kube.replace_delay = None  # the controller is down: evicted pods are not replaced, budget stays exhausted
    spec = registry["kubernetes.drain"]
    start = time.monotonic()
    with pytest.raises(
        ActionError,
        match=r"incomplete after .* 2 pods blocked by PodDisruptionBudgets .*needs 2 healthy pods",
    ):
        invoke(spec, ctx, {"node": "node-a", "retry_interval": 0.1, "timeout_seconds": 1.0})
    assert time.monotonic() - start < 3
    assert not kube.find_requests("DELETE")
    assert len([p for p in kube.list("pods", NS) if p["metadata"]["name"].startswith("rabbitmq")]) == 2
    res = invoke(
        spec, ctx, {"node": "node-a", "retry_interval": 0.1, "timeout_seconds": 0.5, "fail_on_blocked": False}
    )
    assert not res.complete and len(res.blocked) == 2 and res.evicted == []


def test_drain_refuses_unmanaged_pod_before_cordoning(
    registry: ActionRegistry, crowded_node: tuple[KubeAPIServer, ActionContext]
) -> None:
    kube, ctx = crowded_node
    kube.add_pod(NS, "hand-made", node="node-a")
    with pytest.raises(GuardrailRefused, match="hand-made .unmanaged"):
        invoke(registry["kubernetes.drain"], ctx, {"node": "node-a"})
    assert writes(kube) == []


# ------------------------------------------------------------------------------------------ PDB


def test_apply_pdb_create_then_replace(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.apply_pdb"]
    params = {
        "namespace": NS,
        "name": "orchestrator",
        "match_labels": {"app": "orchestrator"},
        "min_available": 2,
    }
    assert describe(spec, ctx, params) == (
        "create PodDisruptionBudget orchestrator/orchestrator: minAvailable=2 selecting "
        "app=orchestrator (3 pods match)"
    )
    res = invoke(spec, ctx, params)
    assert res.created and res.expected_pods == 3 and res.disruptions_allowed == 1
    new = {**params, "min_available": None, "max_unavailable": "50%"}
    assert "minAvailable=2 selecting app=orchestrator -> maxUnavailable=50%" in describe(spec, ctx, new)
    res = invoke(spec, ctx, new)
    assert not res.created and res.disruptions_allowed == 2
    pdb = kube.get("poddisruptionbudgets", NS, "orchestrator")
    assert (
        pdb is not None and pdb["spec"].get("maxUnavailable") == "50%" and "minAvailable" not in pdb["spec"]
    )
    assert "allows no voluntary disruption" in describe(spec, ctx, {**params, "min_available": 3})
    with pytest.raises(ActionError, match='namespaces "ghost" not found'):
        describe(spec, ctx, {**params, "namespace": "ghost"})
    with pytest.raises(ValueError, match="exactly one"):
        invoke(spec, ctx, {**params, "max_unavailable": 1})


# ------------------------------------------------------------------------------------------ exec


def test_exec_runs_fixed_command_over_websocket(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.exec"]
    params = {
        "namespace": NS,
        "pod": "rabbitmq-0",
        "command": ["rabbitmqctl", "forget_cluster_node", "rabbit@rabbitmq-2"],
        "allow": ["rabbitmqctl forget_cluster_node *"],
    }
    text = describe(spec, ctx, params)
    assert (
        "run ['rabbitmqctl', 'forget_cluster_node', 'rabbit@rabbitmq-2'] (no shell; allowed by"
        " 'rabbitmqctl forget_cluster_node *') in pod orchestrator/rabbitmq-0" in text
    )
    assert kube.execs == []
    res = invoke(spec, ctx, params)
    assert res.exit_code == 0 and res.stdout == "Removing node rabbit@rabbitmq-2 from the cluster\n"
    assert kube.execs == [
        (NS, "rabbitmq-0", "rabbitmq", ["rabbitmqctl", "forget_cluster_node", "rabbit@rabbitmq-2"])
    ]


def test_exec_nonzero_cap_and_redaction(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    spec = registry["kubernetes.exec"]
    base = {"namespace": NS, "pod": "rabbitmq-0"}

    def run(*command: str, **kw: object) -> Any:
        return invoke(spec, ctx, {**base, "command": list(command), "allow": [list(command)], **kw})

    with pytest.raises(ActionError, match="exited 127: .*not found"):
        run("no-such-tool")
    assert run("false", fail_on_nonzero=False).exit_code == 1
    big = run("seq", "200000", max_output_bytes=1000)
    assert big.truncated and len(big.stdout) == 1000 and big.stdout.startswith("1\n2\n")
    env = run("printenv")
    assert "hunter2hunter2" not in env.stdout and "RABBITMQ_PASSWORD=***" in env.stdout
    with pytest.raises(ActionError, match="no container 'nope'"):
        run("true", container="nope")


# The bypasses of the old "no shell" blocklist, each against an allow list a real playbook would have:
# none is refused for being a shell or an interpreter (there is no such list), only for not being allowed.
RABBIT_ALLOW = [
    "rabbitmqctl forget_cluster_node *",
    "rabbitmqctl list_queues ...",
    ["rabbitmq-upgrade", "drain"],
]
BYPASSES = [
    ["python3", "-c", "import os; os.system('rabbitmqctl stop_app')"],
    ["awk", 'BEGIN{system("rabbitmqctl stop_app")}'],
    ["rabbitmqctl", "eval", "init:stop()."],
    ["sh", "-c", "rabbitmqctl stop_app"],
    ["/bin/sh", "-c", "id"],
    ["/usr/sbin/rabbitmqctl", "forget_cluster_node", "rabbit@x"],  # another path is another program
    ["rabbitmqctl", "forget_cluster_node", "rabbit@x", "--offline"],  # one * is one argument
    ["rabbitmqctl", "forget_cluster_node"],
    ["rabbitmq-upgrade", "drain", "--timeout", "1"],
    ["env", "rabbitmqctl", "forget_cluster_node", "rabbit@x"],
]


@pytest.mark.parametrize("command", BYPASSES, ids=lambda c: " ".join(c)[:40])
def test_exec_refuses_what_the_allow_list_does_not_name_and_sends_nothing(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer, command: list[str]
) -> None:
    spec = registry["kubernetes.exec"]
    params = {"namespace": NS, "pod": "rabbitmq-0", "command": command, "allow": RABBIT_ALLOW}
    with pytest.raises(ValueError, match="is not in this step's allow list") as exc:
        invoke(spec, ctx, params)
    assert "nothing was sent to the pod" in str(exc.value)
    with pytest.raises(ValueError, match="is not in this step's allow list"):
        describe(spec, ctx, params)
    assert kube.execs == [] and kube.find_requests(path="/exec") == []


def test_exec_allow_patterns(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    from runbook.actions.kubernetes.models import allowed_by

    assert allowed_by(["rabbitmqctl", "list_queues"], RABBIT_ALLOW) == "rabbitmqctl list_queues ..."
    assert allowed_by(["rabbitmqctl", "list_queues", "name", "messages"], RABBIT_ALLOW)
    assert allowed_by(["rabbitmq-upgrade", "drain"], RABBIT_ALLOW) == "rabbitmq-upgrade drain"
    assert allowed_by(["rabbitmqctl", "list_queues_x"], RABBIT_ALLOW) is None
    spec = registry["kubernetes.exec"]
    base = {"namespace": NS, "pod": "rabbitmq-0", "command": ["true"]}
    for bad, why in [
        ([], "at least 1 item"),
        (["* true"], "must start with the program"),
        (["... true"], "must start with the program"),
        (["true ... x"], "'...' may only be the last word"),
    ]:
        with pytest.raises(ValueError, match=why):
            invoke(spec, ctx, {**base, "allow": bad})
    with pytest.raises(ValueError, match="allow"):
        invoke(spec, ctx, base)  # no allow list: nothing may run
    assert kube.execs == []


def test_exec_times_out(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    start = time.monotonic()
    with pytest.raises(ActionError, match="still running after"):
        invoke(
            registry["kubernetes.exec"],
            ctx,
            {
                "namespace": NS,
                "pod": "rabbitmq-0",
                "command": ["sleep", "5"],
                "allow": ["sleep *"],
                "timeout_seconds": 0.5,
            },
        )
    assert time.monotonic() - start < 2.5


def test_exec_handshake_hang_is_bounded(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    kube.inject_fault(1, hang=30, path="/exec$")
    start = time.monotonic()
    with pytest.raises(ActionError, match="timeout"):
        invoke(
            registry["kubernetes.exec"],
            ctx,
            {
                "namespace": NS,
                "pod": "rabbitmq-0",
                "command": ["true"],
                "allow": ["true"],
                "timeout_seconds": 0.5,
            },
        )
    assert time.monotonic() - start < 4
