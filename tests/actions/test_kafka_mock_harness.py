"""The mock-cluster harness others build on (failover playbook tests, game-day drills)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient

try:
    from tests.support.kafka_mock import MockKafkaCluster
except ImportError:  # pytest put tests/ (not the repo root) on sys.path
    from support.kafka_mock import MockKafkaCluster

ROOT = Path(__file__).resolve().parents[2]


def test_separate_process_serves_until_terminated() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.kafka_mock",
            "--brokers",
            "3",
            "--topic",
            "plans:6",
            "--topic",
            "dlq:2:1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), first
        info = json.loads(proc.stdout.readline())
        assert info["brokers"] == [1, 2, 3] and info["topics"] == {"plans": 6, "dlq": 2}
        md = AdminClient({"bootstrap.servers": first.split("=", 1)[1]}).list_topics(timeout=10)
        assert len(md.topics["plans"].partitions) == 6
        assert [len(p.replicas) for p in md.topics["dlq"].partitions.values()] == [1, 1]
        assert md.controller_id == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_request_tracking_and_cleanup() -> None:
    cluster = MockKafkaCluster(brokers=2, topics={"t": 4})
    with cluster:
        cluster.start_request_tracking()
        AdminClient({"bootstrap.servers": cluster.bootstraps}).list_topics(timeout=10)
        assert cluster.request_counts().get("Metadata", 0) >= 1
        bootstraps = cluster.bootstraps
    # closed: its listeners are gone
    host, port = bootstraps.split(",")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        refused = False
    except OSError:
        refused = True
    assert refused
