"""rabbitmq.node_health against a real two-node cluster on this host, with one node stopped."""

from __future__ import annotations

import time

import pytest
from support.rabbit_cluster import SecondNode, api_nodes

from runbook.actions import ActionContext, ActionRegistry, Connections, invoke

# a second node joins the local broker and is stopped: nothing else may use the broker meanwhile
pytestmark = pytest.mark.serial


@pytest.fixture
def registry() -> ActionRegistry:
    """Only the RabbitMQ actions: these tests need not import every other backend."""
    return ActionRegistry.from_modules(["runbook.actions.rabbitmq.actions"])


def test_node_health_reports_a_stopped_cluster_node(rabbitmq_available, settings, registry):
    ctx = ActionContext(Connections(settings))
    spec = registry["rabbitmq.node_health"]
    with SecondNode() as node:
        healthy = invoke(spec, ctx, {})
        assert healthy.total == 2 and healthy.running == 2, healthy.summary
        assert healthy.ok, healthy.problems

        node.stop_app()
        deadline = time.monotonic() + 30
        while True:  # the management API notices within a few seconds: poll
            result = invoke(spec, ctx, {})
            if not result.ok or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not result.ok
        assert result.running == 1 and result.total == 2
        down = [n for n in result.nodes if n["name"] == node.node]
        assert down and down[0]["running"] is False
        assert result.problems == [f"{node.node} is not running"]
        assert node.node in result.summary
        up = [n for n in result.nodes if n["name"] != node.node][0]
        assert up["running"] and up["fd_total"] and up["mem_alarm"] is False and up["partitions"] == []
    # cleanup left the main node single and healthy
    assert [n["name"] for n in api_nodes()] == [node.main]
    after = invoke(spec, ctx, {})
    assert after.ok and after.total == 1, after.summary
