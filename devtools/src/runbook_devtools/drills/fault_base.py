"""What every drill fault is (see :mod:`runbook_devtools.drills.faults`): its contract and the local
RabbitMQ helpers the faults share."""

from __future__ import annotations

import json
from typing import Any

import pika

from runbook.core.settings import Settings
from runbook_devtools.drills.kube_standin import KubeWorld
from runbook_devtools.drills.local import Consumers, LocalRabbit
from runbook_devtools.drills.targets import require_loopback

CONSUMERS = {"app": "orchestrator"}


class Fault:
    name = ""
    playbook = ""
    summary = ""
    verdicts: tuple[str, ...] = ()

    def __init__(self, tag: str, settings: Settings) -> None:
        # every fault is on loopback, whoever builds it (the drill command checks the environment too)
        require_loopback({}, settings)
        self.tag, self.settings = tag, settings
        self.rabbit = LocalRabbit(settings.rabbitmq_url, settings.rabbitmq_management_url)
        self.queue = f"drill-{tag}"
        self.notes: list[str] = []
        self._undo: list[Any] = []

    # -- contract ---------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {}

    def env(self) -> dict[str, str]:
        return {}

    def inject(self, kube: KubeWorld) -> None:
        raise NotImplementedError

    def found(self, verdicts: list[str]) -> tuple[bool, str]:
        hit = [v for v in verdicts if v in self.verdicts]
        if hit:
            return True, f"verdict {hit[0]}"
        return False, f"verdicts {verdicts or 'none'}; expected one of {list(self.verdicts)}"

    def fixed(self) -> tuple[bool, str]:
        raise NotImplementedError

    def cleanup(self) -> None:
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - clean up as much as possible
                self.notes.append(f"cleanup step failed: {exc}")

    # -- local RabbitMQ helpers ------------------------------------------------------------------
    def _declare(self, *queues: str, arguments: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"durable": True, **({"arguments": arguments} if arguments else {})}
        for q in queues:
            self.rabbit.mgmt("PUT", self.rabbit.queue_path(q), json=body).raise_for_status()
            self._undo.append(lambda q=q: self.rabbit.mgmt("DELETE", self.rabbit.queue_path(q)))

    def _publish(
        self,
        queue: str,
        n: int,
        *,
        message_id: str | None = None,
        prefix: str = "job",
        headers: dict[str, Any] | None = None,
    ) -> None:
        """``n`` persistent messages, confirmed by the broker; ids ``<prefix>-<i>`` unless ``message_id``."""
        conn = self.rabbit.connect()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            for i in range(n):
                ch.basic_publish(
                    "",
                    queue,
                    json.dumps({"job": i}).encode(),
                    pika.BasicProperties(
                        delivery_mode=2, message_id=message_id or f"{prefix}-{i}", headers=headers
                    ),
                )
        finally:
            conn.close()

    def _settle(self, queue: str, messages: int, consumers: int, timeout: float = 20.0) -> None:
        if not self.rabbit.settle(queue, messages, consumers, timeout):
            self.notes.append(f"management stats of {queue} did not settle within {timeout:.0f}s")

    def _consumers(self, mode: str, **kw: Any) -> Consumers:
        group = Consumers(self.settings.rabbitmq_url, self.queue, mode, **kw)
        self._undo.append(group.stop)
        return group
