"""queue.* with system kafka on librdkafka's mock cluster: depth is lag, progress is committed offsets."""

from __future__ import annotations

import dataclasses
import time

import pytest
from runbook_devtools.kafka_mock.clients import consume_and_commit, produce_messages
from runbook_devtools.kafka_mock.cluster import MockKafkaCluster

from runbook.actions import ActionContext, ActionError, Connections, invoke


def test_lag_is_depth_and_moves_are_refused(settings, registry, unique) -> None:
    with MockKafkaCluster(brokers=3) as kafka:
        topic, group = f"t-{unique}", f"g-{unique}"
        kafka.topic_create(topic, 2)
        produce_messages(kafka.bootstraps, topic, {0: 30, 1: 30})
        consume_and_commit(kafka.bootstraps, group, topic, {0: 10, 1: 5})
        conns = Connections(dataclasses.replace(settings, kafka_bootstrap_servers=kafka.bootstraps))
        try:
            ctx = ActionContext(conns, deadline=time.monotonic() + 30)
            q = {"system": "kafka", "queue": topic, "group": group}
            stats = invoke(registry["queue.stats"], ctx, q).model_dump()
            assert stats["depth"] == 45 and stats["completed_total"] == 15
            progress = invoke(registry["queue.progress"], ctx, {**q, "window": 0.5}).model_dump()
            assert progress["verdict"] == "stalled" and progress["completed"] == 0
            with pytest.raises(ActionError, match="reset_offsets"):
                invoke(registry["queue.quarantine"], ctx, {**q, "ids": ["0:12"]})
        finally:
            conns.close()
