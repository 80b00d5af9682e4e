"""Which implementation answers for ``system:``. Imported lazily so a team without a vendor SDK's
service (no Kafka, no Redis) never pays for or trips over it."""

from __future__ import annotations

import importlib

from runbook.actions.context import ActionError
from runbook.actions.queue.system import QueueSystem

IMPLEMENTATIONS = {
    "rabbitmq": ("runbook.actions.rabbitmq.system", "RabbitMQ"),
    "bullmq": ("runbook.actions.bullmq.system", "BullMQ"),
    "pg_table": ("runbook.actions.pg_table.system", "TableQueue"),
    "kafka": ("runbook.actions.kafka.system", "KafkaLag"),
    "sqs": ("runbook.actions.sqs.system", "SQS"),
}


def system_of(name: str) -> QueueSystem:
    try:
        module, cls = IMPLEMENTATIONS[name]
    except KeyError:
        raise ActionError(f"unknown queue system {name!r}; one of {', '.join(IMPLEMENTATIONS)}") from None
    impl: QueueSystem = getattr(importlib.import_module(module), cls)()
    return impl
