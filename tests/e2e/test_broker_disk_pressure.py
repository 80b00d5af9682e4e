"""broker-disk-pressure end to end: GoQueue's full data volume on the loopback Kubernetes API (df
through the exec websocket, the claim and its StorageClass), RabbitMQ's alarms and queues read from the
real broker, the review handed over and the claim expanded through the real approval path."""

from __future__ import annotations

import uuid

from runbook_devtools.kube import ExecResult
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, run_playbook

NS = "goqueue"
CLAIM = "goqueue-data-goqueue-0"


def test_full_volume_is_reviewed_then_expanded(e2e_env: Settings, kube: KubeAPIServer) -> None:
    tag = uuid.uuid4().hex[:8]
    kube.seed_goqueue(NS, replicas=1)
    commands: list[list[str]] = []

    def goqueue(ns: str, pod: str, container: str, command: list[str]) -> ExecResult:
        commands.append(command)
        claim = kube.get("persistentvolumeclaims", NS, CLAIM) or {}
        size = claim["status"]["capacity"]["storage"].replace("Gi", "G")
        use = "93%" if size == "10G" else "47%"
        if command[0] == "df":
            return ExecResult(
                stdout=f"Filesystem Size Used Avail Use% Mounted on\n/dev/sdb {size} 9.3G 0.7G {use} /data\n"
            )
        return ExecResult(stdout="topic orders 6.1G retention 7d\ntopic audit 2.8G retention 30d\n")

    kube.exec_handler = goqueue
    params = {"expand_to": "20Gi", "max_size": "50Gi", "poll_interval": 0.2, "resize_timeout": 20}
    with Approver(e2e_env, f"e2e-{tag}", {"review": "approve", "expand": "approve"}) as approver:
        result = run_playbook("broker-disk-pressure", params, f"e2e-{tag}")
    assert result.status == "completed", result.text()
    assert result.verdict == "volume_critical"
    assert approver.steps() == ["review", "expand"]
    assert "93% full" in approver.request("review").params["instructions"]
    assert approver.request("expand").params == {
        "namespace": NS,
        "name": CLAIM,
        "size": "20Gi",
        "max_size": "50Gi",
    }
    claim = kube.get("persistentvolumeclaims", NS, CLAIM) or {}
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["status"]["capacity"]["storage"] == "20Gi"
    assert result.output("resized")["result"]["capacity"] == "20Gi"
    assert "47%" in result.output("disk_after")["stdout"]
    assert result.output("rabbit_health")["running"] >= 1  # the real broker was read
    assert commands[:2] == [["df", "-h", "/data"], ["goqueue-admin", "storage", "stats"]]
