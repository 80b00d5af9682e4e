"""The poison-message backlog: the fault ``runbook drill --fault backlog-poison``, ``make demo`` and
the backlog-triage end-to-end test stage."""

from __future__ import annotations

from typing import Any

from runbook.core.settings import Settings
from runbook_devtools.drills.fault_base import CONSUMERS, Fault
from runbook_devtools.drills.kube_standin import KubeWorld, Workload
from runbook_devtools.drills.local import Consumer, Consumers, wait_for


class BacklogPoison(Fault):
    """A backlog behind a poison message: one worker is wedged on a job it took (nothing is acked),
    the head of the queue is a message every worker already crashed on (redelivered), and
    :attr:`backlog` jobs wait behind it.

    ``prefix`` names the queues (``<prefix>-<tag>``, ``-dlq``, ``-quarantine``). ``dead_lettered``
    earlier failures wait in the DLQ with real ``x-death`` headers (the queue dead-letters into it).
    ``recovers``: the wedged worker recovers once the poison message is quarantined, as a real one
    restarted by its supervisor would, and drains the queue (``make demo`` judges that). Used by
    ``runbook drill``, ``make demo`` and the backlog-triage end-to-end test."""

    name, playbook = "backlog-poison", "backlog-triage"
    summary = "a backlog whose head is a poison message that crashes every consumer that takes it"
    verdicts = ("poison_messages",)
    backlog = 300

    def __init__(
        self,
        tag: str,
        settings: Settings,
        *,
        prefix: str = "drill",
        dead_lettered: int = 0,
        recovers: bool = False,
    ) -> None:
        super().__init__(tag, settings)
        self.queue = f"{prefix}-{tag}"
        self.dead_lettered, self.recovers = dead_lettered, recovers
        self.workers: Consumers | None = None

    @property
    def dlq(self) -> str:
        return f"{self.queue}-dlq"

    @property
    def quarantine(self) -> str:
        return f"{self.queue}-quarantine"

    @property
    def poison_id(self) -> str:
        return f"poison-{self.tag}"

    @property
    def consumer(self) -> Consumer | None:
        """The wedged worker (its ``acked`` count shows what it drained once it recovered)."""
        return self.workers.members[0] if self.workers and self.workers.members else None

    def params(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "dlq": self.dlq,
            "quarantine_queue": self.quarantine,
            "depth_threshold": 100,
            "progress_window": 5,
            "poll_interval": 0.5,
            "verify_timeout": 20,
            "kafka_enabled": False,
        }

    def inject(self, kube: KubeWorld | None = None) -> None:
        """Make the fault; with ``kube`` (the drill's stand-in) also the consumer deployment. Without
        it the caller serves the deployment itself (the demo and e2e use the loopback API server)."""
        self._declare(self.dlq, self.quarantine)
        dead_letter = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dlq}
        self._declare(self.queue, arguments=dead_letter if self.dead_lettered else None)
        if kube is not None:
            kube.add_workload(Workload("orchestrator", "orchestrator", 2, CONSUMERS))
        if self.dead_lettered:  # jobs that failed earlier today: rejected by a worker, with x-death
            self._publish(self.queue, self.dead_lettered, prefix="failed", headers={"job-type": "render"})
            self._reject(self.dead_lettered, requeue=False)
            wait_for(
                lambda: self.rabbit.counts(self.dlq)[0] == self.dead_lettered,
                20,
                "dead-lettering into the DLQ",
                0.2,
            )
        # one worker is wedged on a message it took earlier (so nothing is acked) ...
        if self.recovers:
            self.workers = self._consumers("held", release=lambda: self.rabbit.counts(self.quarantine)[0] > 0)
        else:
            self.workers = self._consumers("hung")
        self.workers.scale(1)
        self._publish(self.queue, 1, message_id="in-flight", headers={"job-type": "render"})
        wait_for(lambda: self.rabbit.counts(self.queue)[0] == 0, 20, "the worker to take its job", 0.2)
        # ... and the head is a message every worker has already crashed on (redelivered)
        poison = {"job-type": "render", "tenant": "t-13"}
        self._publish(self.queue, 1, message_id=self.poison_id, headers=poison)
        self._reject(1, requeue=True)
        self._publish(self.queue, self.backlog, headers={"job-type": "render"})
        # the playbook reads the management API: wait until it shows the backlog (+ poison + the
        # wedged worker's unacked job) and the worker, so its snapshot sees what is really there
        self._settle(self.queue, self.backlog + 2, 1, timeout=30)

    def _reject(self, n: int, *, requeue: bool) -> None:
        """A worker takes the first ``n`` messages and fails them (requeued, or dead-lettered)."""
        conn = self.rabbit.connect()
        try:
            ch = conn.channel()
            for _ in range(n):
                method, _, _ = ch.basic_get(self.queue)
                ch.basic_nack(method.delivery_tag, requeue=requeue)
        finally:
            conn.close()

    def quarantined_ids(self) -> list[str]:
        return [str(i) for i in self.rabbit.peek_ids(self.quarantine, 10)]

    def fixed(self) -> tuple[bool, str]:
        ids = self.rabbit.peek_ids(self.quarantine, 5)
        head = self.rabbit.peek_ids(self.queue, 1)
        head_id = head[0] if head else None
        ok = self.poison_id in ids and head_id != self.poison_id
        return ok, f"quarantine holds {ids}; head of {self.queue} is now {head_id}"
