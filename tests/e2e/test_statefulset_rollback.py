"""statefulset-rollback end to end: GoQueue's bad upgrade on the loopback Kubernetes API (real
client, ControllerRevisions, Helm release Secrets, exec over the websocket), rolled back through the
real approval path and verified by the brokers' own health command."""

from __future__ import annotations

import uuid

from runbook_devtools.kube import ExecResult
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, run_playbook
from tests.support.waiting import wait_until

NS = "goqueue"


def _image(kube: KubeAPIServer, pod: str) -> str:
    obj = kube.get("pods", NS, pod) or {}
    return str(((obj.get("spec") or {}).get("containers") or [{}])[0].get("image", ""))


def test_bad_upgrade_is_rolled_back_and_verified(e2e_env: Settings, kube: KubeAPIServer) -> None:
    tag = uuid.uuid4().hex[:8]
    kube.seed_goqueue(NS, replicas=3, image="goqueue:1.4.0")
    # the upgrade: Helm revision 2 (1.5.0) and the StatefulSet's template
    kube.add_helm_release(NS, "goqueue", 1, status="superseded", app_version="1.4.0")
    kube.add_helm_release(
        NS, "goqueue", 2, status="deployed", app_version="1.5.0", description="Upgrade complete"
    )
    sts = kube.get("statefulsets", NS, "goqueue") or {}
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = "goqueue:1.5.0"
    kube.handle("PUT", f"/apis/apps/v1/namespaces/{NS}/statefulsets/goqueue", {}, sts, "application/json")
    wait_until(lambda: _image(kube, "goqueue-0") == "goqueue:1.5.0", timeout=10, what="the upgraded pods")
    asked: list[list[str]] = []

    def goqueue(ns: str, pod: str, container: str, command: list[str]) -> ExecResult:
        """1.5.0 cannot read the raft log: its health check fails; 1.4.0 is healthy."""
        asked.append(command)
        if _image(kube, pod) == "goqueue:1.5.0":
            return ExecResult(stdout='{"status": "degraded", "reason": "raft log format v3"}\n', exit_code=1)
        if command == ["goqueue-admin", "health"]:
            return ExecResult(stdout='{"status": "ok"}\n')
        return ExecResult(stdout="members: 3/3\nstatus: healthy\n")

    kube.exec_handler = goqueue
    with Approver(e2e_env, f"e2e-{tag}", {"rollback": "approve", "align_helm": "approve"}) as approver:
        result = run_playbook("statefulset-rollback", {"rollout_timeout": 30}, f"e2e-{tag}")
    assert result.status == "completed", result.text()
    assert approver.steps() == ["rollback", "align_helm"]
    proposed = approver.request("rollback").params
    assert proposed == {"namespace": NS, "name": "goqueue", "kind": "statefulset", "to_revision": 1}
    assert result.output("health_before")["exit_code"] == 1
    assert (
        result.output("helm")["deployed_revision"] == 2 and result.output("helm")["last_good_revision"] == 1
    )
    assert "helm rollback goqueue 1 -n goqueue" in approver.request("align_helm").params["instructions"]
    undo = result.output("rollback")
    assert (undo["from_revision"], undo["to_revision"], undo["images_after"]) == (2, 1, ["goqueue:1.4.0"])
    after = kube.get("statefulsets", NS, "goqueue") or {}
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "goqueue:1.4.0"
    assert {_image(kube, f"goqueue-{i}") for i in range(3)} == {"goqueue:1.4.0"}
    assert result.output("history_after")["current_revision"] == 3
    assert result.output("health_after")["exit_code"] == 0
    assert ["goqueue-admin", "cluster", "status"] in asked
    # the read-only checks needed no approval; only the rollback and the Helm hand-over were asked
    assert all(c[0] == "goqueue-admin" for c in asked)
