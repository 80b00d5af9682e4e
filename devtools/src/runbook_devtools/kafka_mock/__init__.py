"""A real Kafka protocol peer for tests and drills: librdkafka's mock cluster, driven through ctypes.

Moved here from tests/support so ``runbook drill`` can start one at run time;
tests/support/kafka_mock.py re-exports it. Modules: :mod:`.bindings` (ctypes), :mod:`.cluster`
(``MockKafkaCluster``), :mod:`.clients` (produce / consume helpers), :mod:`.cli` (``python -m``).

No real Kafka broker can be installed on these machines (see ../shared/NOTES.md), but the librdkafka
bundled inside the confluent-kafka wheel ships a mock cluster that speaks the Kafka wire protocol
(metadata, produce, fetch, group coordination, offset commit/fetch, list offsets) and exports a C API
to script failures: brokers down/up, leadership moves, injected request errors, request tracking.
``MockKafkaCluster`` wraps that API so tests, playbook tests and game-day drills all drive the same
peer instead of each re-deriving the ctypes signatures.

In-process use::

    with MockKafkaCluster(brokers=3, topics={"plans": 6}) as kafka:
        settings = Settings(kafka_bootstrap_servers=kafka.bootstraps)
        kafka.broker_set_down(2)
        kafka.partition_set_leader("plans", 0, 1)

From another process (a drill starts one and points runbook at it)::

    python -m runbook_devtools.kafka_mock --brokers 3 --topic plans:6 --topic audit:3:2

prints ``KAFKA_BOOTSTRAP_SERVERS=<list>`` on its first line (flushed), then a JSON line describing the
cluster, and serves until SIGTERM/SIGINT. Faults at start come from ``--broker-down``; while it
runs, with ``--control``, lines on stdin ``down N`` / ``up N`` take broker N down or up (each
answered ``ok down N``).

Known limits of the mock (measured, see NOTES.md): no CreateTopics/DeleteTopics/DescribeConfigs/
DescribeGroups/DeleteGroups admin APIs, ListGroups returns nothing, the ISR never shrinks when a broker
goes down, and it reports controller id 0 unless ``set_controller_id`` is called (this class sets 1).
"""

from __future__ import annotations

from .bindings import API_KEYS, MockClusterError, find_librdkafka
from .cli import main
from .clients import consume_and_commit, produce_messages
from .cluster import MockKafkaCluster, MockRequest

__all__ = [
    "API_KEYS",
    "MockClusterError",
    "MockKafkaCluster",
    "MockRequest",
    "consume_and_commit",
    "find_librdkafka",
    "main",
    "produce_messages",
]
