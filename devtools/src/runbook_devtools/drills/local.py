"""Small real workloads a drill runs against the local services: AMQP consumers (healthy, hung, or
held until a condition clears), PostgreSQL connection holders, and a throwaway PostgreSQL cluster;
and ``LocalRabbit``, the direct view of the broker that faults and the demo use to set up and judge.

Why real ones: a drill proves the playbook reads the *real* symptoms (consumer counts, acks, stuck
rows, connection usage) and that its mitigation really changes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pika


def amqp_params(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 10
    params.connection_attempts = 1
    return params


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll ``predicate`` until true; a drill or the demo that cannot set its scene stops with what it
    was waiting for instead of running a playbook against half a fault."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class LocalRabbit:
    """The local broker seen directly, not through runbook's actions: a fault sets the scene and
    judges the outcome with these, so a playbook is never graded by its own code."""

    def __init__(self, amqp_url: str, management_url: str) -> None:
        self.amqp_url = amqp_url
        parts = urlsplit(management_url)
        self._base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
        self._auth = (parts.username or "guest", parts.password or "guest")

    @staticmethod
    def queue_path(queue: str) -> str:
        return f"/api/queues/%2F/{quote(queue, safe='')}"

    def mgmt(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self._base}{path}", auth=self._auth, timeout=10, **kw)

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(amqp_params(self.amqp_url))

    def counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) straight from the broker (passive declare, no stats lag)."""
        conn = self.connect()
        try:
            ok = conn.channel().queue_declare(queue, passive=True)
            return ok.method.message_count, ok.method.consumer_count
        finally:
            conn.close()

    def settle(self, queue: str, messages: int, consumers: int, timeout: float) -> bool:
        """Wait until the management API shows ``messages`` and ``consumers``: its stats are sampled
        every few seconds, and a playbook reading them too early would see an empty, idle queue."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            doc = self.mgmt("GET", self.queue_path(queue)).json()
            if doc.get("messages") == messages and doc.get("consumers") == consumers:
                return True
            time.sleep(0.5)
        return False

    def peek_ids(self, queue: str, count: int) -> list[Any]:
        """Message ids of the first ``count`` messages, requeued in place (nothing consumed)."""
        docs = self.mgmt(
            "POST",
            f"{self.queue_path(queue)}/get",
            json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto"},
        ).json()
        return [d.get("properties", {}).get("message_id") for d in docs]


class Consumer:
    """One consumer in its own thread and connection (pika connections are not thread-safe).

    ``mode``: ``healthy`` acks every message; ``hung`` holds its prefetch forever (no ack);
    ``held`` holds until ``release()`` returns True, then acks like a healthy one."""

    def __init__(
        self,
        url: str,
        queue: str,
        mode: str = "healthy",
        *,
        prefetch: int = 1,
        release: Callable[[], bool] | None = None,
    ) -> None:
        self.url, self.queue, self.mode, self.prefetch, self.release = url, queue, mode, prefetch, release
        self.acked = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"drill-consumer:{queue}", daemon=True)

    def start(self) -> Consumer:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"consumer on {self.queue} did not start")
        if self._error:
            raise RuntimeError(f"consumer on {self.queue}: {self._error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _healthy_now(self) -> bool:
        if self.mode == "healthy":
            return True
        return self.mode == "held" and self.release is not None and self.release()

    def _run(self) -> None:
        try:
            conn = pika.BlockingConnection(amqp_params(self.url))
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        held: list[int] = []
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=self.prefetch)

            def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
                held.append(method.delivery_tag)

            ch.basic_consume(self.queue, on_message)
            self._ready.set()
            last_check, healthy = 0.0, self.mode == "healthy"
            while not self._stop.is_set():
                conn.process_data_events(time_limit=0.1)
                if not healthy and time.monotonic() - last_check > 0.5:
                    last_check, healthy = time.monotonic(), self._healthy_now()
                if healthy and held:
                    for tag in held:
                        ch.basic_ack(tag)
                    self.acked += len(held)
                    held.clear()
        except BaseException as exc:  # noqa: BLE001 - the broker went away: the consumer just dies
            self._error = exc
            self._ready.set()
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass


class Consumers:
    """A consumer group standing in for a deployment's replicas."""

    def __init__(self, url: str, queue: str, mode: str = "healthy", **kw: Any) -> None:
        self.url, self.queue, self.mode, self.kw = url, queue, mode, kw
        self.members: list[Consumer] = []

    def scale(self, n: int) -> None:
        while len(self.members) < n:
            self.members.append(Consumer(self.url, self.queue, self.mode, **self.kw).start())
        while len(self.members) > n:
            self.members.pop().stop()

    def stop(self) -> None:
        self.scale(0)


class ConnectionHolder:
    """Holds ``n`` idle PostgreSQL connections (the pools of consumer replicas)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conns: list[Any] = []

    def hold(self, n: int) -> None:
        import psycopg

        while len(self.conns) < n:
            self.conns.append(psycopg.connect(self.url, autocommit=True, connect_timeout=5))
        while len(self.conns) > n:
            self.conns.pop().close()

    def release(self) -> None:
        self.hold(0)


class ThrowawayPostgres:
    """A private PostgreSQL cluster (own data dir, port and small ``max_connections``) so a drill can
    exhaust connections for real without touching the shared server."""

    def __init__(self, port: int = 5439, max_connections: int = 20, base: Path | None = None) -> None:
        self.port, self.max_connections = port, max_connections
        self.base = base or Path(f"/tmp/runbook-drill-pg-{port}")
        self.bindir = self._bindir()

    @staticmethod
    def _bindir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise RuntimeError(
                "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"
            )
        return found[-1].parent

    def url(self, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60, cwd="/tmp")

    def start(self) -> ThrowawayPostgres:
        self.stop()
        self.base.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        data = self.base / "data"
        self._as_postgres(
            str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base}"
            f" -c max_connections={self.max_connections} -c superuser_reserved_connections=3"
        )
        self._as_postgres(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(self.base / "log"),
            "-w",
            "start",
        )
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("CREATE ROLE drill LOGIN")
        return self

    def stop(self) -> None:
        data = self.base / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._as_postgres(
                    str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"
                )
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)
