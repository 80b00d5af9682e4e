"""consumer-lag end to end on librdkafka's mock cluster: a group that committed part of its topic and
stopped (a stuck consumer), a poison-looking message at one partition's head (retry-count header).

Asserts the verdict and its evidence, the head sample (read without committing), the old -> new
preview the two approvers were shown, and that the committed offsets moved exactly as previewed.
"""

from __future__ import annotations

import re
import uuid

import pytest
from confluent_kafka import Producer
from runbook_devtools.kafka_mock.clients import consume_and_commit, produce_messages
from runbook_devtools.kafka_mock.cluster import MockKafkaCluster

from runbook.core.settings import Settings
from tests.actions.test_kafka import committed
from tests.e2e.conftest import Approver, run_playbook


def produce_poison_head(bootstraps: str, topic: str) -> None:
    """Partition 1: offsets 0-4 plain, offset 5 carries retry-count 7, then 6-29 plain."""
    producer = Producer({"bootstrap.servers": bootstraps, "acks": "all"})
    for i in range(30):
        headers = [("retry-count", b"7")] if i == 5 else []
        producer.produce(topic, value=f"order-{i}".encode(), key=b"order", partition=1, headers=headers)
    assert producer.flush(15) == 0


def test_stuck_group_is_reset_as_previewed_after_two_approvals(
    e2e_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"lag-{tag}", f"orders-{tag}"
    with MockKafkaCluster(brokers=3) as kafka:
        kafka.topic_create(topic, 2)
        produce_messages(kafka.bootstraps, topic, {0: 30})
        produce_poison_head(kafka.bootstraps, topic)
        consume_and_commit(kafka.bootstraps, group, topic, {0: 10, 1: 5})  # then the group stops
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstraps)
        params = {
            "group": group,
            "topic": topic,
            "window": 1.0,
            "lag_healthy": 10,
            "lag_warning": 20,
            "lag_critical": 40,
        }
        with Approver(e2e_env, f"e2e-{tag}", {"reset_offsets": ["ic-alice", "qo-bob"]}) as approver:
            result = run_playbook("consumer-lag", params, f"e2e-{tag}")
        after = committed(kafka.bootstraps, group, topic, 2)

    assert result.status == "completed", result.text()
    assert result.verdict == "stuck_consumer", result.text()
    evidence = result.output("classify")["evidence"]
    assert f"partition(s) 0, 1 of {topic}" in evidence and "did not move" in evidence
    assert "total lag 45 (critical)" in evidence and "max retry count 7" in evidence
    progress = result.output("progress")
    assert progress["state"] == "stuck" and progress["consumed"] == 0
    head = result.output("head")
    assert head["positions"][:1] == [f"{topic}[0]@10"] and f"{topic}[1]@5" in head["positions"]
    poison = next(m for m in head["messages"] if m["partition"] == 1 and m["offset"] == 5)
    assert poison["retry_count"] == 7 and "order-" not in str(head)  # metadata only, never bodies

    request = approver.request("reset_offsets")
    assert request.min_approvals == 2 and set(request.approvers) == {"incident-commander", "queue-owner"}
    preview = re.findall(rf"{re.escape(topic)}\[(\d+)\]: (\d+|none) -> (\d+)", request.description)
    assert preview == [("0", "10", "30"), ("1", "5", "30")], request.description

    reset = result.output("reset_offsets")
    moved = [(str(m["partition"]), str(m["old"]), str(m["new"])) for m in reset["moves"]]
    assert reset["verified"] and moved == preview
    assert after == {int(p): int(new) for p, _, new in preview}  # exactly as previewed
    assert result.output("lag_after")["total_lag"] == 0
