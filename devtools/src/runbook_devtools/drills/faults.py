"""Named faults a drill injects into the local services, and how each is judged and cleaned up.

Each fault: ``inject`` (make the real symptom: a backlog with a poison message, a queue without
consumers, a stopped RabbitMQ node, a Kafka broker down, executions stuck in PostgreSQL, a server
out of connections) and wire the Kubernetes stand-in so the right mitigation really acts on it;
``params`` (playbook parameters that point the playbook at the drill's objects and keep it fast;
``-p`` overrides them); ``found`` (did the run name the fault: a step's ``verdict`` output);
``fixed`` (a post-check of the real system, not of the run's own claims); ``cleanup``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import Any

from runbook.core.settings import Settings
from runbook_devtools.drills.fault_base import CONSUMERS, Fault
from runbook_devtools.drills.kube_standin import KubeWorld, Workload
from runbook_devtools.drills.local import ConnectionHolder, ThrowawayPostgres
from runbook_devtools.drills.poison import BacklogPoison
from runbook_devtools.drills.system_faults import BullMQPoison, KafkaLag, TableStuck

__all__ = ["CONSUMERS", "FAULTS", "BacklogPoison", "Fault"]


class NoConsumers(Fault):
    name, playbook = "no-consumers", "stuck-queue"
    summary = "messages wait in a queue whose consumer deployment was scaled to zero"
    verdicts = ("no_consumers",)

    def params(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "window": 5,
            "check_executions": False,
            "poll_interval": 1,
            "verify_timeout": 30,
            "allow_purge": False,
        }

    def inject(self, kube: KubeWorld) -> None:
        self._declare(self.queue)
        self._publish(self.queue, 200)
        self._settle(self.queue, 200, 0)
        group = self._consumers("healthy")
        kube.add_workload(
            Workload("orchestrator", "orchestrator", 0, CONSUMERS, on_scale=lambda old, new: group.scale(new))
        )

    def fixed(self) -> tuple[bool, str]:
        end = time.monotonic() + 15
        ready, consumers = self.rabbit.counts(self.queue)
        while time.monotonic() < end and (ready or not consumers):
            time.sleep(0.5)
            ready, consumers = self.rabbit.counts(self.queue)
        return consumers > 0 and ready == 0, f"{self.queue}: {ready} ready, {consumers} consumers"


class StuckExecutions(Fault):
    name, playbook = "stuck-executions", "stuck-queue"
    summary = "executions stuck 'running' in PostgreSQL hold every worker slot, so the queue stalls"
    verdicts = ("executions_stuck",)

    @property
    def table(self) -> str:
        return f"runbook_drill_{self.tag}.execution"

    def _db(self) -> str:
        return self.settings.database_inspect_url or "postgresql://root@127.0.0.1:5432/test"

    ROLE = "runbook_drill"  # the run connects as a least-privilege role, as production must

    def _run_db(self) -> str:
        """The drill database as :attr:`ROLE` (the playbook's SQL refuses to run as a superuser)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self._db())
        host = parts.hostname or "127.0.0.1"
        netloc = f"{self.ROLE}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self._run_db()}

    def params(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "window": 5,
            "executions_table": self.table,
            "poll_interval": 1,
            "verify_timeout": 30,
            "allow_purge": False,
            "stale_minutes": 10,
        }

    def _stuck(self) -> int:
        import psycopg

        with psycopg.connect(self._db(), autocommit=True, connect_timeout=5) as conn:
            return conn.execute(
                f"SELECT count(*) FROM {self.table} WHERE status IN ('running', 'requested')"
                " AND updated < now() - interval '10 minutes'"
            ).fetchone()[0]

    def inject(self, kube: KubeWorld) -> None:
        import psycopg

        schema = self.table.split(".")[0]
        with psycopg.connect(self._db(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
            self._undo.append(lambda: self._drop_schema(schema))
            conn.execute(
                f"CREATE TABLE {self.table} (id bigint PRIMARY KEY, status text NOT NULL,"
                " created timestamptz NOT NULL, updated timestamptz NOT NULL, result jsonb)"
            )
            conn.execute(
                f"INSERT INTO {self.table} VALUES (101, 'running', now() - interval '2 hours',"
                " now() - interval '2 hours', NULL), (107, 'running', now() - interval '90 minutes',"
                " now() - interval '80 minutes', NULL), (115, 'requested', now() - interval '1 hour',"
                " now() - interval '1 hour', NULL), (120, 'completed', now() - interval '1 hour',"
                " now() - interval '50 minutes', '{}')"
            )
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.ROLE,)).fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(f"CREATE ROLE {self.ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            conn.execute(f"GRANT pg_monitor TO {self.ROLE}")
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {self.ROLE}")
            conn.execute(f"GRANT SELECT, UPDATE ON {self.table} TO {self.ROLE}")
        self._declare(self.queue)
        kube.add_workload(Workload("orchestrator", "orchestrator", 2, CONSUMERS))
        # workers wait for a free execution slot: they hold their messages until the stuck rows clear
        self._consumers("held", release=lambda: self._stuck() == 0).scale(1)
        self._publish(self.queue, 50)
        self._settle(self.queue, 50, 1)

    def _drop_schema(self, schema: str) -> None:
        import psycopg

        with psycopg.connect(self._db(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def fixed(self) -> tuple[bool, str]:
        n = self._stuck()
        return n == 0, f"{n} executions still stuck in {self.table}"


class PgConnectionExhaustion(Fault):
    name, playbook = "pg-connection-exhaustion", "backlog-triage"
    summary = "consumer replicas' connection pools use up a PostgreSQL server's max_connections"
    verdicts = ("database_trouble",)
    per_replica = 4

    def __init__(self, tag: str, settings: Settings) -> None:
        super().__init__(tag, settings)
        self.pg = ThrowawayPostgres(max_connections=19)  # 16 slots for ordinary roles: 4 replicas x 4

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.pg.url()}

    def params(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "dlq": f"{self.queue}-dlq",
            "progress_window": 5,
            "poll_interval": 0.5,
            "verify_timeout": 10,
            "db_max_usage": 0.8,
            "redrive_dlq": False,
        }

    def inject(self, kube: KubeWorld) -> None:
        self.pg.start()
        self._undo.append(self.pg.stop)
        holder = ConnectionHolder(self.pg.url("drill"))
        self._undo.append(holder.release)
        holder.hold(4 * self.per_replica)  # every slot ordinary roles may use: real exhaustion
        self._declare(self.queue, f"{self.queue}-dlq")
        self._consumers("hung").scale(1)
        self._publish(self.queue, 20)
        self._settle(self.queue, 20, 1)
        kube.add_workload(
            Workload(
                "orchestrator",
                "orchestrator",
                4,
                CONSUMERS,
                on_scale=lambda old, new: holder.hold(new * self.per_replica),
            )
        )

    def fixed(self) -> tuple[bool, str]:
        import psycopg

        with psycopg.connect(self.pg.url(), autocommit=True, connect_timeout=5) as conn:
            used = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchone()[0]
        usable = self.pg.max_connections - 3
        try:  # an ordinary role can connect again
            psycopg.connect(self.pg.url("drill"), connect_timeout=5).close()
            can = True
        except psycopg.Error:
            can = False
        return (
            can and used / usable < 0.8,
            f"{used}/{usable} connections in use; new connections {'ok' if can else 'refused'}",
        )


class RabbitNodeDown(Fault):
    name, playbook = "rabbit-node-down", "broker-failover"
    summary = "a second RabbitMQ node joins the local cluster, then stops"
    verdicts = ("rabbit_node_down",)

    def params(self) -> dict[str, Any]:
        return {"poll_interval": 1, "recovery_timeout": 60, "kafka_enabled": False}

    def inject(self, kube: KubeWorld) -> None:
        from runbook_devtools.drills.rabbit_node import RabbitNode

        self.node = RabbitNode("rbdrill", 5675, 25675, 15675, clustered=True)
        self._undo.append(self.node.remove)
        self.node.start()
        self.node.stop_app()
        main = self.node.main
        pods = [
            main.replace("rabbit@", "").split(".")[0],
            self.node.node.replace("rabbit@", "").split(".")[0],
        ]
        kube.add_workload(
            Workload("rabbitmq", "rabbitmq", 2, {"app.kubernetes.io/name": "rabbitmq"}, kind="statefulset"),
            pods,
        )
        kube.pod("rabbitmq", pods[1]).ready = False  # type: ignore[union-attr]
        kube.pod("rabbitmq", pods[1]).on_delete = self.node.start_app  # type: ignore[union-attr]

    def fixed(self) -> tuple[bool, str]:
        from runbook_devtools.drills.rabbit_node import api_nodes

        nodes = {n["name"]: bool(n.get("running")) for n in api_nodes()}
        return all(nodes.values()), f"nodes: {nodes}"


class KafkaBrokerDown(Fault):
    name, playbook = "kafka-broker-down", "broker-failover"
    summary = "a 3-broker Kafka peer (librdkafka mock, child process) with broker 2 down"
    verdicts = ("kafka_broker_down",)

    def params(self) -> dict[str, Any]:
        return {
            "rabbitmq_enabled": False,
            "kafka_enabled": True,
            "poll_interval": 1,
            "recovery_timeout": 30,
            "kafka_canary_topic": "drill-canary",
        }

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstraps}

    def inject(self, kube: KubeWorld) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runbook_devtools.kafka_mock",
                "--brokers",
                "3",
                "--topic",
                "plans:6",
                "--topic",
                "drill-canary:3",
                "--control",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._undo.append(self._stop_peer)
        first = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if not first.startswith("KAFKA_BOOTSTRAP_SERVERS="):
            raise RuntimeError(f"the Kafka mock did not start: {first!r}")
        self.bootstraps = first.split("=", 1)[1]
        self.proc.stdout.readline()  # type: ignore[union-attr]  # the JSON description
        self._command("down 2")
        kube.add_workload(
            Workload("kafka", "kafka", 3, {"app": "kafka"}, kind="statefulset"),
            ["kafka-1", "kafka-2", "kafka-3"],
        )
        kube.pod("kafka", "kafka-2").ready = False  # type: ignore[union-attr]
        kube.pod("kafka", "kafka-2").on_delete = lambda: self._command("up 2")  # type: ignore[union-attr]

    def _command(self, line: str) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer.startswith("ok"):
            raise RuntimeError(f"Kafka mock: {line!r} -> {answer!r}")
        self.up = line.startswith("up")

    def _stop_peer(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def fixed(self) -> tuple[bool, str]:
        from confluent_kafka.admin import AdminClient

        md = AdminClient({"bootstrap.servers": self.bootstraps}).list_topics(timeout=10)
        live = sorted(md.brokers)
        return getattr(self, "up", False) and live == [
            1,
            2,
            3,
        ], f"brokers registered {live}; broker 2 {'up' if getattr(self, 'up', False) else 'down'}"


FAULTS: dict[str, type[Fault]] = {
    f.name: f
    for f in (
        BacklogPoison,
        NoConsumers,
        RabbitNodeDown,
        KafkaBrokerDown,
        StuckExecutions,
        PgConnectionExhaustion,
        BullMQPoison,
        TableStuck,
        KafkaLag,
    )
}
