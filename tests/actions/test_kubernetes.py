"""Kubernetes read-only actions and failure handling, end to end: the official client against the
loopback API server in tests/support/kube_api.py (no kube-apiserver can run here; see NOTES.md).

Each test gets its own server with the seeded demo cluster (starts in milliseconds).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    BackendUnavailable,
    Connections,
    invoke,
)
from runbook.core.settings import Settings

try:
    from tests.support.kube_api import KubeAPIServer
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from support.kube_api import KubeAPIServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    with KubeAPIServer(rollout_delay=0.2, replace_delay=0.2) as server:
        server.seed_demo()
        yield server


@pytest.fixture
def ctx(kube: KubeAPIServer, settings: Settings, tmp_path: Path) -> Iterator[ActionContext]:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    connections = Connections(dataclasses.replace(settings, kubeconfig=str(kubeconfig)))
    yield ActionContext(connections)
    connections.close()


def orchestrator_pods(kube: KubeAPIServer) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in kube.list("pods", "orchestrator")
        if p["metadata"]["labels"].get("app") == "orchestrator"
    ]


def test_get_deployment(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    kube.set_pod_state(
        "orchestrator", orchestrator_pods(kube)[0], ready=False, waiting_reason="CrashLoopBackOff"
    )
    res = invoke(
        registry["kubernetes.get_deployment"],
        ctx,
        {"namespace": "orchestrator", "deployment": "orchestrator"},
    )
    assert (res.desired, res.ready, res.available, res.updated) == (3, 2, 2, 3)
    assert not res.rollout_complete
    assert res.images == ["registry.local/orchestrator:2.4.1"]
    assert {c.type for c in res.conditions} == {"Available", "Progressing"}
    assert "2/3 ready" in res.summary
    sts = invoke(
        registry["kubernetes.get_deployment"],
        ctx,
        {"namespace": "orchestrator", "deployment": "rabbitmq", "kind": "statefulset"},
    )
    assert sts.ready == 3 and sts.rollout_complete


def test_list_pods_counts_crashloop_and_oom(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    sick, oom = orchestrator_pods(kube)[:2]
    kube.set_pod_state(
        "orchestrator",
        sick,
        ready=False,
        restarts=14,
        waiting_reason="CrashLoopBackOff",
        last_termination_reason="Error",
        last_exit_code=1,
    )
    kube.set_pod_state("orchestrator", oom, restarts=3, last_termination_reason="OOMKilled")
    res = invoke(
        registry["kubernetes.list_pods"], ctx, {"namespace": "orchestrator", "selector": "app=orchestrator"}
    )
    assert (res.total, res.ready, res.not_ready, res.crash_looping, res.oom_killed, res.restarts) == (
        3,
        2,
        1,
        1,
        1,
        17,
    )
    first = res.pods[0]  # the sickest first
    assert (first.name, first.waiting_reason, first.last_termination_reason, first.last_exit_code) == (
        sick,
        "CrashLoopBackOff",
        "Error",
        1,
    )
    assert next(p for p in res.pods if p.name == oom).last_termination_reason == "OOMKilled"
    assert "1 CrashLoopBackOff" in res.summary and "1 OOMKilled" in res.summary
    everything = invoke(
        registry["kubernetes.list_pods"], ctx, {"namespace": "orchestrator", "node": "node-a"}
    )
    assert everything.total > 0 and all(p.node == "node-a" for p in everything.pods)
    assert kube.find_requests("GET", "/pods$")[0].query["labelSelector"] == ["app=orchestrator"]


def test_pod_logs_tail_grep_and_redaction(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    pod = orchestrator_pods(kube)[0]
    kube.set_logs(
        "orchestrator",
        pod,
        [
            "INFO boot",
            "ERROR db login failed password=hunter2hunter2 user=app",
            '{"level":"error","msg":"auth","password":"topsecretvalue"}',
            "INFO url amqp://orchestrator:s3cretpass@rabbitmq:5672/",
            "ERROR plan 42 timed out",
        ],
    )
    spec = registry["kubernetes.pod_logs"]
    res = invoke(spec, ctx, {"namespace": "orchestrator", "pod": pod, "tail_lines": 4, "grep": "ERROR|error"})
    text = "\n".join(res.lines)
    assert res.matched == 3 and "INFO boot" not in text
    for secret in ("hunter2hunter2", "topsecretvalue", "s3cretpass"):
        assert secret not in text and secret not in res.model_dump_json()
    assert kube.find_requests("GET", "/log$")[-1].query["tailLines"] == ["4"]
    # the grep runs on redacted text, so it cannot probe for a secret
    probe = invoke(spec, ctx, {"namespace": "orchestrator", "pod": pod, "grep": "hunter2"})
    assert probe.matched == 0
    # previous container
    kube.set_logs("orchestrator", pod, ["FATAL out of memory", "Killed"], previous=True)
    prev = invoke(spec, ctx, {"namespace": "orchestrator", "pod": pod, "previous": True})
    assert prev.lines == ["FATAL out of memory", "Killed"] and "previous" in prev.summary
    other = orchestrator_pods(kube)[1]
    with pytest.raises(ActionError, match="previous terminated container"):
        invoke(spec, ctx, {"namespace": "orchestrator", "pod": other, "previous": True})
    # by selector: lines prefixed with their pod
    many = invoke(spec, ctx, {"namespace": "orchestrator", "selector": "app=orchestrator", "grep": "ERROR"})
    assert len(many.pods) == 3 and all(": " in line for line in many.lines)
    with pytest.raises(ValueError, match="grep"):
        invoke(spec, ctx, {"namespace": "orchestrator", "pod": pod, "grep": "("})


def test_events_filters(registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer) -> None:
    pod = orchestrator_pods(kube)[0]
    kube.add_event(
        "orchestrator",
        ("Pod", pod),
        "BackOff",
        "Back-off restarting failed container",
        type="Warning",
        count=12,
    )
    kube.add_event(
        "orchestrator",
        ("Pod", pod),
        "OOMKilling",
        "Memory cgroup out of memory",
        type="Warning",
        age_seconds=5,
    )
    kube.add_event("orchestrator", ("Pod", pod), "Pulled", "image pulled", age_seconds=3600)
    spec = registry["kubernetes.events"]
    res = invoke(spec, ctx, {"namespace": "orchestrator", "kind": "Pod", "name": pod, "warnings_only": True})
    assert res.total == 2 and res.warnings == 2
    assert [e.reason for e in res.events] == ["BackOff", "OOMKilling"]  # newest first
    assert res.reasons["BackOff"] == 12 and "BackOff x12" in res.summary
    fs = kube.find_requests("GET", "/events$")[-1].query["fieldSelector"][0]
    assert "type=Warning" in fs and f"involvedObject.name={pod}" in fs
    recent = invoke(spec, ctx, {"namespace": "orchestrator", "name": pod, "since_minutes": 10})
    assert {e.reason for e in recent.events} == {"BackOff", "OOMKilling"}
    everything = invoke(spec, ctx, {"namespace": "orchestrator"})
    assert everything.total == 4


def test_wait_rollout_completes_after_restart(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    params = {"namespace": "orchestrator", "deployment": "orchestrator"}
    invoke(registry["kubernetes.rollout_restart"], ctx, params)
    dep = kube.get("deployments", "orchestrator", "orchestrator")
    assert dep is not None and dep["status"]["observedGeneration"] < dep["metadata"]["generation"]
    res = invoke(
        registry["kubernetes.wait_rollout"], ctx, {**params, "poll_interval": 0.05, "timeout_seconds": 5}
    )
    assert res.ready == res.updated == res.desired == 3
    assert 0.1 <= res.waited_seconds < 3


def test_wait_rollout_times_out_with_status(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    kube.rollout_delay = None  # the controller never catches up
    params = {"namespace": "orchestrator", "deployment": "orchestrator"}
    invoke(registry["kubernetes.rollout_restart"], ctx, params)
    start = time.monotonic()
    with pytest.raises(ActionError, match=r"not complete after .*observedGeneration 1 < generation 2") as err:
        invoke(
            registry["kubernetes.wait_rollout"], ctx, {**params, "poll_interval": 0.1, "timeout_seconds": 0.8}
        )
    assert time.monotonic() - start < 2.5
    assert err.value.backend == "kubernetes"


def test_wait_rollout_fails_fast_on_progress_deadline(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    kube.set_workload_status(
        "deployments",
        "orchestrator",
        "orchestrator",
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "orchestrator-abc" has timed out progressing.',
            }
        ],
    )
    kube.rollout_delay = None
    invoke(
        registry["kubernetes.rollout_restart"],
        ctx,
        {"namespace": "orchestrator", "deployment": "orchestrator"},
    )
    start = time.monotonic()
    with pytest.raises(ActionError, match="timed out progressing"):
        invoke(
            registry["kubernetes.wait_rollout"],
            ctx,
            {"namespace": "orchestrator", "deployment": "orchestrator", "timeout_seconds": 30},
        )
    assert time.monotonic() - start < 2


# ------------------------------------------------------------------------------------------ failures


def test_api_500_is_backend_unavailable_naming_kubernetes(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    kube.inject_fault(
        1, status=500, path="/deployments/orchestrator$", message="etcdserver: request timed out"
    )
    with pytest.raises(BackendUnavailable) as err:
        invoke(
            registry["kubernetes.get_deployment"],
            ctx,
            {"namespace": "orchestrator", "deployment": "orchestrator"},
        )
    text = str(err.value)
    assert text.startswith("kubernetes: read deployment orchestrator/orchestrator") and "500" in text
    assert "etcdserver: request timed out" in text
    # the fault was consumed: the next call works
    res = invoke(
        registry["kubernetes.get_deployment"],
        ctx,
        {"namespace": "orchestrator", "deployment": "orchestrator"},
    )
    assert res.ready == 3


def test_hung_api_server_times_out_within_step_deadline(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    kube.inject_fault(5, hang=30, path="/pods$")
    ctx.deadline = time.monotonic() + 1.0
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"kubernetes: list pods in orchestrator: .*timeout"):
        invoke(registry["kubernetes.list_pods"], ctx, {"namespace": "orchestrator"})
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, elapsed
    assert len(kube.find_requests("GET", "/pods$")) == 1  # no hidden urllib3 retries


def test_unreachable_server_and_missing_objects(
    registry: ActionRegistry, ctx: ActionContext, kube: KubeAPIServer
) -> None:
    with pytest.raises(ActionError, match=r'deployment orchestrator/nope: not found .*"nope" not found'):
        invoke(
            registry["kubernetes.get_deployment"], ctx, {"namespace": "orchestrator", "deployment": "nope"}
        )
    # kube-apiserver does not check that a namespace exists when listing in it: an empty list, not a 404
    # (the bench answered 404 here until it was checked against kubectl: "No resources found in ghost").
    assert invoke(registry["kubernetes.list_pods"], ctx, {"namespace": "ghost"}).total == 0
    kube.stop()
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="kubernetes: .*unreachable"):
        invoke(registry["kubernetes.list_pods"], ctx, {"namespace": "orchestrator"})
    assert time.monotonic() - start < 5


def test_bad_token_is_refused_and_never_printed(
    registry: ActionRegistry, kube: KubeAPIServer, settings: Settings, tmp_path: Path
) -> None:
    path = kube.write_kubeconfig(tmp_path / "kc")
    config = json.loads(path.read_text())
    config["users"][0]["user"]["token"] = "wrong-token-0123456789"
    path.write_text(json.dumps(config))
    connections = Connections(dataclasses.replace(settings, kubeconfig=str(path)))
    with pytest.raises(ActionError, match="not authorised") as err:
        invoke(registry["kubernetes.list_pods"], ActionContext(connections), {"namespace": "orchestrator"})
    assert "wrong-token" not in str(err.value)


def test_missing_kubeconfig_is_a_clear_error(
    registry: ActionRegistry, settings: Settings, tmp_path: Path
) -> None:
    connections = Connections(dataclasses.replace(settings, kubeconfig=str(tmp_path / "absent")))
    with pytest.raises(ActionError, match="kubernetes: cannot load KUBECONFIG"):
        invoke(registry["kubernetes.list_pods"], ActionContext(connections), {"namespace": "orchestrator"})


def test_server_runs_as_a_module_with_the_demo_cluster(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.kube_api", "--port", "0", "--kubeconfig", str(kubeconfig)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert Path(info["kubeconfig"]) == kubeconfig.resolve()
        from runbook.actions import default_registry

        connections = Connections(Settings(kubeconfig=str(kubeconfig)))
        reg = default_registry()
        pods = invoke(reg["kubernetes.list_pods"], ActionContext(connections), {"namespace": "orchestrator"})
        names = {p.name for p in pods.pods}
        assert {"rabbitmq-0", "rabbitmq-1", "rabbitmq-2"} <= names and pods.total == 8
        dep = invoke(
            reg["kubernetes.get_deployment"],
            ActionContext(connections),
            {"namespace": "orchestrator", "deployment": "orchestrator"},
        )
        assert dep.ready == 3
        connections.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
