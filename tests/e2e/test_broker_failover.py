"""broker-failover end to end: a stopped second RabbitMQ node and a Kafka broker down, at once.

The broker "pods" live in the loopback Kubernetes API; deleting one (the gated step) is wired to
what its StatefulSet would do for real: the RabbitMQ node's app starts again, the Kafka broker comes
back up. The canaries then prove messages flow through both clusters."""

from __future__ import annotations

import threading
import uuid
from urllib.parse import unquote

import pytest
from runbook_devtools.drills.rabbit_node import RabbitNode, api_nodes
from runbook_devtools.kafka_mock import MockKafkaCluster
from runbook_devtools.kube_api import KubeAPIServer

from runbook.core.settings import Settings
from tests.e2e.conftest import Approver, run_playbook

# a node joins the local broker and is stopped: nothing else may use the broker meanwhile
pytestmark = pytest.mark.serial

SELECTOR = {"app.kubernetes.io/name": "rabbitmq"}


def _on_delete(kube: KubeAPIServer, namespace: str, pod: str, action: object, stop: threading.Event) -> None:
    """What the StatefulSet controller does after a pod delete: the broker process comes back."""
    while not stop.wait(0.2):
        if kube.get("pods", namespace, pod) is None:
            action()  # type: ignore[operator]
            return


def test_rabbit_node_and_kafka_broker_recovered(
    e2e_env: Settings, kube: KubeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:6]
    node = RabbitNode(f"rbe2e{tag[:4]}", 5677, 25677, 15677, clustered=True)
    kafka = MockKafkaCluster(3, {"plans": 6, f"e2e-canary-{tag}": 3}).start()
    stop = threading.Event()
    try:
        node.start()
        node.stop_app()
        kafka.broker_set_down(2)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstraps)
        main_pod = node.main.replace("rabbit@", "").split(".")[0]
        down_pod = node.node.replace("rabbit@", "").split(".")[0]
        for pod in (main_pod, down_pod):
            kube.add_pod(
                "rabbitmq",
                pod,
                labels=SELECTOR,
                node="node-a",
                containers=["rabbitmq"],
                owner=("StatefulSet", "rabbitmq"),
            )
        kube.set_pod_state("rabbitmq", down_pod, ready=False, waiting_reason="CrashLoopBackOff", restarts=4)
        for i in (1, 2, 3):
            kube.add_pod(
                "kafka",
                f"kafka-{i}",
                labels={"app": "kafka"},
                node="node-b",
                containers=["kafka"],
                owner=("StatefulSet", "kafka"),
            )
        for ns, pod, action in (
            ("rabbitmq", down_pod, node.start_app),
            ("kafka", "kafka-2", lambda: kafka.broker_set_up(2)),
        ):
            threading.Thread(target=_on_delete, args=(kube, ns, pod, action, stop), daemon=True).start()

        script = {"delete_rabbit_pod": "approve", "delete_kafka_pod": "approve"}
        with Approver(e2e_env, f"e2e-{tag}", script) as approver:
            result = run_playbook(
                "broker-failover",
                {
                    "kafka_enabled": True,
                    "kafka_canary_topic": f"e2e-canary-{tag}",
                    "poll_interval": 1,
                    "recovery_timeout": 60,
                },
                f"e2e-{tag}",
            )
        assert result.status == "completed", result.text()
        assert result.verdict == "rabbit_node_down"
        facts = result.output("facts")["values"]
        assert facts["down_nodes"] == [node.node]
        assert facts["missing_brokers"] == [2]
        assert node.node in result.output("classify")["evidence"]
        # both gated pod deletes proposed against the loopback API, and nothing else
        assert approver.steps() == ["delete_rabbit_pod", "delete_kafka_pod"]
        rabbit_call = approver.request("delete_rabbit_pod")
        assert rabbit_call.action == "kubernetes.delete_pod"
        assert rabbit_call.params == {**rabbit_call.params, "namespace": "rabbitmq", "pod": down_pod}
        assert approver.request("delete_kafka_pod").params["pod"] == "kafka-2"
        deletes = kube.find_requests("DELETE")
        assert {unquote(r.path.rsplit("/", 1)[-1]) for r in deletes} >= {down_pod, "kafka-2"}
        # recovered, and both canaries made the round trip
        assert result.statuses["rabbit_recovered"] == "succeeded"
        assert result.statuses["isr_recovered"] == "succeeded"
        assert result.output("rabbit_canary")["ok"] is True
        assert result.output("kafka_canary")["ok"] is True
        assert all(n.get("running") for n in api_nodes())
    finally:
        stop.set()
        node.remove()
        kafka.close()
