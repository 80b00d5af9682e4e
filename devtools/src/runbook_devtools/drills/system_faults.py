"""Drill faults on the other queue systems of backlog-triage (issue 14), registered in
:data:`runbook_devtools.drills.faults.FAULTS`; each sets ``system`` in its params.

* ``bullmq-poison``: a job wedges the only BullMQ worker (made with the real ``bullmq`` package);
  fixed when exactly that job was moved to failed and no other job was lost.
* ``table-stuck``: a StarForge ``queue_jobs`` row retried past its attempts in a throwaway table
  under a drill schema, worked by a SKIP LOCKED worker; the run connects as a least-privilege role;
  fixed when exactly that row sits in ``queue_jobs_dlq`` and is marked failed.
* ``kafka-lag``: librdkafka's mock cluster, a consumer group that stopped with 585 messages of lag
  and a consumer deployment scaled to zero; scaling it (the approved mitigation) starts a real
  consumer that commits; fixed when the group's committed offsets reach the end of the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runbook.core.settings import Settings
from runbook_devtools.drills.fault_base import CONSUMERS, Fault
from runbook_devtools.drills.kube_standin import KubeWorld, Workload
from runbook_devtools.drills.local import wait_for

FAST = {
    "check_kubernetes": False,
    "check_database": False,
    "kafka_enabled": False,
    "depth_threshold": 10,
    "progress_window": 5,
    "poll_interval": 0.5,
    "verify_timeout": 20,
    "redrive_dlq": False,
}


class BullMQPoison(Fault):
    name, playbook = "bullmq-poison", "backlog-triage"
    summary = "a BullMQ job wedges the only worker (bullmq package); 19 jobs wait behind it"
    verdicts = ("poison_messages",)
    jobs = 20

    def __init__(self, tag: str, settings: Settings) -> None:
        super().__init__(tag, settings)
        self.wedge_id = f"wedge-{tag}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="drill-bullmq")
        self.queue_obj: Any = None
        self.workers: list[Any] = []

    def params(self) -> dict[str, Any]:
        return {**FAST, "system": "bullmq", "queue": self.queue, "wedge_seconds": 1}

    def _run(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.settings.redis_url, decode_responses=True)

    def _base(self) -> str:
        return f"bull:{self.queue}:"

    def inject(self, kube: KubeWorld) -> None:
        from bullmq import Queue, Worker

        url = self.settings.redis_url
        self.thread.start()
        self._undo.append(self._stop_loop)
        self.queue_obj = self._run(self._make(lambda: Queue(self.queue, {"connection": url})))
        self._undo.append(self._drop_keys)
        self._undo.append(lambda: self._run(self.queue_obj.close()))
        self._undo.append(lambda: self._run(self.queue_obj.obliterate(force=True)))
        jobs = [{"name": "render", "data": {"n": 0}, "opts": {"jobId": self.wedge_id}}]
        jobs += [
            {"name": "render", "data": {"n": i}, "opts": {"jobId": f"job-{i}"}} for i in range(1, self.jobs)
        ]
        self._run(self.queue_obj.addBulk(jobs))
        wedge = self.wedge_id

        async def process(job: Any, token: str) -> None:
            await asyncio.sleep(3600 if job.id == wedge else 0)  # wedged: never returns

        worker = self._run(
            self._make(lambda: Worker(self.queue, process, {"connection": url, "concurrency": 1}))
        )
        self.workers.append(worker)
        self._undo.append(lambda: self._run(worker.close(force=True), timeout=15))
        r = self._redis()
        try:
            wait_for(lambda: r.lrange(self._base() + "active", 0, -1) == [wedge], 20, "the wedged job", 0.2)
        finally:
            r.close()
        time.sleep(1.5)  # held longer than wedge_seconds, nothing completes

    @staticmethod
    async def _make(factory: Any) -> Any:
        return factory()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _drop_keys(self) -> None:
        r = self._redis()
        try:
            for key in r.scan_iter(self._base() + "*", count=1000):
                r.delete(key)
        finally:
            r.close()

    def fixed(self) -> tuple[bool, str]:
        r = self._redis()
        try:
            base = self._base()
            failed = sorted(r.zrange(base + "failed", 0, -1))
            active = r.lrange(base + "active", 0, -1)
            others = r.llen(base + "wait") + len(active) + r.zcard(base + "completed")
            reason = r.hget(base + self.wedge_id, "failedReason") or ""
        finally:
            r.close()
        ok = failed == [self.wedge_id] and self.wedge_id not in active and others == self.jobs - 1
        return ok, (
            f"failed holds {failed} (reason {reason!r}); {others} other jobs waiting/active/completed"
            f" of {self.jobs - 1}"
        )


class TableStuck(Fault):
    name, playbook = "table-stuck", "backlog-triage"
    summary = "a StarForge queue_jobs row retried past its attempts (drill schema, least-privilege role)"
    verdicts = ("poison_messages",)
    ROLE = "runbook_drill"
    rows = 300

    def __init__(self, tag: str, settings: Settings) -> None:
        super().__init__(tag, settings)
        self.schema = f"runbook_drill_{tag}"
        self.poison_id = ""
        self.stop = threading.Event()
        self.worker: threading.Thread | None = None

    @property
    def table(self) -> str:
        return f"{self.schema}.queue_jobs"

    def _db(self) -> str:
        return self.settings.database_inspect_url or "postgresql://root@127.0.0.1:5432/test"

    def _run_db(self) -> str:
        parts = urlsplit(self._db())
        netloc = f"{self.ROLE}@{parts.hostname or '127.0.0.1'}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self._run_db()}

    def params(self) -> dict[str, Any]:
        mapping = {"preset": "starforge", "table": self.table, "dlq_table": f"{self.table}_dlq"}
        return {**FAST, "system": "pg_table", "queue": "queue_jobs", "table_mapping": mapping}

    def _sql(self, query: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self._db(), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def inject(self, kube: KubeWorld) -> None:
        import psycopg

        with psycopg.connect(self._db(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
            self._undo.append(lambda: self._sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
            conn.execute(
                f"""CREATE TABLE {self.table} (
                  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), type text NOT NULL,
                  payload jsonb NOT NULL DEFAULT '{{}}', status text NOT NULL DEFAULT 'pending',
                  attempts int NOT NULL DEFAULT 0, last_error jsonb,
                  run_after timestamptz NOT NULL DEFAULT now(),
                  created_at timestamptz NOT NULL DEFAULT now(),
                  updated_at timestamptz NOT NULL DEFAULT now());
                CREATE TABLE {self.table}_dlq (
                  id uuid PRIMARY KEY, original_job_id uuid NOT NULL, type text, payload jsonb, reason text,
                  created_at timestamptz NOT NULL)"""
            )
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.ROLE,)).fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(f"CREATE ROLE {self.ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            conn.execute(f"GRANT USAGE ON SCHEMA {self.schema} TO {self.ROLE}")
            conn.execute(f"GRANT SELECT, UPDATE ON {self.table} TO {self.ROLE}")
            conn.execute(f"GRANT SELECT, INSERT ON {self.table}_dlq TO {self.ROLE}")
            self.poison_id = conn.execute(
                f"INSERT INTO {self.table} (type, attempts, run_after)"
                " VALUES ('poison', 6, now() - interval '1 hour') RETURNING id::text"
            ).fetchone()[0]
            conn.execute(
                f"INSERT INTO {self.table} (type)"
                f" SELECT 'process_snapshot' FROM generate_series(1, {self.rows})"
            )
        self.worker = threading.Thread(target=self._work, daemon=True, name="drill-table-worker")
        self.worker.start()
        self._undo.append(self._stop_worker)

    def _work(self) -> None:
        """A StarForge-style worker: claims the due pending row (SKIP LOCKED) and completes it, or,
        for the poison type, records the error, counts the attempt and backs off."""
        import psycopg

        with psycopg.connect(self._db(), autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute(
                    f"UPDATE {self.table} SET attempts = attempts + 1, updated_at = now(),"
                    " status = CASE WHEN type = 'poison' THEN 'pending' ELSE 'done' END,"
                    " last_error = CASE WHEN type = 'poison' THEN '\"KeyError\"'::jsonb END,"
                    " run_after = now() + interval '200 milliseconds'"
                    f" WHERE id = (SELECT id FROM {self.table} WHERE status = 'pending'"
                    " AND run_after <= now() ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED)"
                )
                time.sleep(0.05)

    def _stop_worker(self) -> None:
        self.stop.set()
        if self.worker is not None:
            self.worker.join(10)

    def fixed(self) -> tuple[bool, str]:
        dlq = [r[0] for r in self._sql(f"SELECT original_job_id::text FROM {self.table}_dlq")]
        status = self._sql(f"SELECT status FROM {self.table} WHERE id = '{self.poison_id}'")
        ok = dlq == [self.poison_id] and status == [("failed",)]
        state = status[0][0] if status else "?"
        return ok, f"{self.table}_dlq holds {dlq}; poison row {self.poison_id} is {state}"


class KafkaLag(Fault):
    name, playbook = "kafka-lag", "backlog-triage"
    summary = "a Kafka consumer group stopped with 585 messages of lag (librdkafka mock cluster)"
    verdicts = ("consumer_outage",)
    produced = {0: 300, 1: 300}

    def __init__(self, tag: str, settings: Settings) -> None:
        super().__init__(tag, settings)
        self.topic, self.group = f"orders-{tag}", f"workers-{tag}"
        self.bootstraps = ""

    def params(self) -> dict[str, Any]:
        return {
            **FAST,
            "check_kubernetes": True,
            "system": "kafka",
            "queue": self.topic,
            "kafka_group": self.group,
            "min_replicas": 1,
        }

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstraps}

    def inject(self, kube: KubeWorld) -> None:
        from runbook_devtools.kafka_mock.clients import consume_and_commit, produce_messages
        from runbook_devtools.kafka_mock.cluster import MockKafkaCluster

        cluster = MockKafkaCluster(brokers=3).start()
        self._undo.append(cluster.close)
        self.bootstraps = cluster.bootstraps
        cluster.topic_create(self.topic, 2)
        produce_messages(self.bootstraps, self.topic, self.produced)
        consume_and_commit(self.bootstraps, self.group, self.topic, {0: 10, 1: 5})  # then it stopped

        def started(old: int, new: int) -> None:  # a real consumer catches up and commits
            if new > 0:
                consume_and_commit(self.bootstraps, self.group, self.topic, self.produced)

        kube.add_workload(Workload("orchestrator", "orchestrator", 0, CONSUMERS, on_scale=started))

    def lag(self) -> int:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstraps, "group.id": self.group})
        try:
            parts = [TopicPartition(self.topic, p) for p in self.produced]
            committed = consumer.committed(parts, timeout=10)
            total = 0
            for tp in committed:
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                total += high - max(tp.offset, 0)
            return total
        finally:
            consumer.close()

    def fixed(self) -> tuple[bool, str]:
        n = self.lag()
        return n == 0, f"group {self.group} lag {n} on {self.topic}"
