"""maintenance-window end to end: loopback Kubernetes + RabbitMQ + PostgreSQL, the manual step
clicked Done through the approval path, then everything it changed is put back."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

from runbook_devtools.kube import ExecResult
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.gate import GateRequest
from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, ReplicaWiring, declare, delete_queues, pg_execute, run_playbook

PREPARE = ["apply_pdb", "scale_down", "annotate", "drain_broker", "drain_node", "do_maintenance"]


def test_window_prepares_hands_over_and_restores(
    e2e_env: Settings, kube: KubeAPIServer, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    queue, table = f"e2e-mw-{tag}", f"e2e_plan_states_{tag}"
    kube.add_deployment("orchestrator", "orchestrator", replicas=3, labels={"app": "orchestrator"})
    kube.add_statefulset(
        "orchestrator", "rabbitmq", replicas=3, labels={"app.kubernetes.io/name": "rabbitmq"}
    )
    declare(queue)
    pg_execute(f"CREATE TABLE {table} (id int PRIMARY KEY, state text)")
    pg_execute(f"INSERT INTO {table} VALUES (1, 'done'), (2, 'running'), (3, 'queued')")
    during: dict[str, object] = {}
    broker_commands: list[tuple[str, list[str]]] = []
    on_node: set[str] = set()

    def pods_on_node_a(_req: GateRequest) -> None:
        """When the broker drain is asked: which pods run on node-a (before anything is evicted)."""
        on_node.update(
            p["metadata"]["name"]
            for p in kube.list("pods", "orchestrator")
            if p["spec"].get("nodeName") == "node-a"
        )

    def rabbitmq_upgrade(ns: str, pod: str, container: str, command: list[str]) -> ExecResult:
        broker_commands.append((pod, command))
        return ExecResult(stdout=f"{command[1]} of rabbit@{pod} done\n")

    kube.exec_handler = rabbitmq_upgrade

    def look_during(_req: GateRequest) -> None:
        """When the human is asked to do the maintenance: what the cluster looks like then."""
        dep = kube.get("deployments", "orchestrator", "orchestrator") or {}
        during["replicas"] = dep["spec"]["replicas"]
        during["annotations"] = dict(dep["metadata"].get("annotations") or {})
        during["unschedulable"] = (kube.get("nodes", "", "node-a") or {})["spec"].get("unschedulable")
        during["pdb"] = kube.get("poddisruptionbudgets", "orchestrator", f"e2e-pdb-{tag}") is not None

    try:
        with ReplicaWiring(kube, "orchestrator", "orchestrator", queue):
            script = dict.fromkeys(PREPARE, "approve")
            with Approver(e2e_env, f"e2e-{tag}", script) as approver:
                approver.on_request["do_maintenance"] = look_during
                approver.on_request["drain_broker"] = pods_on_node_a
                result = run_playbook(
                    "maintenance-window",
                    {
                        "node": "node-a",
                        "queue": queue,
                        "rabbit_namespace": "orchestrator",
                        "pdb_name": f"e2e-pdb-{tag}",
                        "backup_table": table,
                        "drain_timeout": 5,
                        "poll_interval": 0.5,
                        "verify_timeout": 20,
                    },
                    f"e2e-{tag}",
                )
        assert result.status == "completed", result.text()
        assert approver.steps() == PREPARE, approver.outputs
        manual = approver.request("do_maintenance")
        assert manual.kind == "manual" and manual.action == "core.manual"
        assert "node-a" in manual.params["instructions"]
        assert approver.request("scale_down").params["replicas"] == 0
        assert approver.request("annotate").params["annotations"] == {"maintenance": "true"}
        # the broker pod was found on the node itself, drained before the node, revived afterwards
        broker = approver.request("drain_broker").params["pod"]
        assert broker.startswith("rabbitmq-") and broker in on_node, (broker, on_node)
        assert broker_commands == [
            (broker, ["rabbitmq-upgrade", "drain"]),
            (broker, ["rabbitmq-upgrade", "revive"]),
        ]
        assert approver.request("drain_node").params["delete_emptydir_data"] is False
        # during the window: consumers down, annotated, node cordoned, PDB in place
        assert during == {
            "replicas": 0,
            "annotations": {**during["annotations"], "maintenance": "true"},  # type: ignore[dict-item]
            "unschedulable": True,
            "pdb": True,
        }
        # backups exist and only the owner can read them
        for step in ("backup_definitions", "backup_table"):
            path = Path(result.output(step)["path"])
            assert path.is_file() and path.stat().st_size > 0
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (step, oct(path.stat().st_mode))
        assert result.output("backup_table")["rows"] == 3
        # the export lives under the data directory (RUNBOOK_HOME), named by the run
        exported = Path(result.output("backup_definitions")["path"])
        assert exported.parent == tmp_path / "home" / "definitions", exported
        assert exported.name.startswith("definitions-"), exported
        # afterwards: annotation gone, replicas restored, node schedulable, flow verified
        dep = kube.get("deployments", "orchestrator", "orchestrator") or {}
        assert "maintenance" not in (dep["metadata"].get("annotations") or {})
        assert dep["spec"]["replicas"] == 3
        assert not (kube.get("nodes", "", "node-a") or {})["spec"].get("unschedulable")
        for step in ("uncordon", "remove_annotation", "scale_back", "verify_attached", "verified"):
            assert result.statuses[step] == "succeeded", (step, result.statuses)
    finally:
        delete_queues(queue)
        pg_execute(f"DROP TABLE IF EXISTS {table}")
