"""A second RabbitMQ node on this host, clustered with the main one, for real failure tests.

Reusable by any test that needs a cluster (node health, broker failover)::

    with SecondNode() as node:          # started, joined, running (~15 s)
        node.stop_app()                 # the node is down; the cluster sees it
        ...
    # left: rabbit2 stopped, reset and forgotten; the main node single and healthy

How (see ../shared/NOTES.md): the main node's config pins its listener to 5672, so the second node
gets a config file of its own (AMQP 5673, management 15673) plus its own data and log directories,
``RABBITMQ_NODENAME=rabbit2@<host of the main node>`` and ``RABBITMQ_DIST_PORT=25673``. It runs as
the ``rabbitmq`` user (the Debian wrapper switches to it when started as root), so it shares the
Erlang cookie. Joining is ``stop_app; reset; join_cluster rabbit@HOST; start_app``. Removal is
``stop_app; reset`` (which tells the cluster to forget it) then ``stop``, and if anything is left,
``forget_cluster_node`` from the main node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

MAIN_MGMT = "http://127.0.0.1:15672"
AUTH = ("guest", "guest")
BASE = Path("/tmp/runbook-rabbit2")


def rabbitmqctl(*args: str, node: str | None = None, check: bool = True, timeout: float = 90) -> str:
    cmd = ["rabbitmqctl", *(["-n", node] if node else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/tmp")
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}"
        )
    return proc.stdout


def api_nodes() -> list[dict[str, Any]]:
    return httpx.get(f"{MAIN_MGMT}/api/nodes", auth=AUTH, timeout=10).json()


def main_node_name() -> str:
    """The main node's name as the cluster knows it (e.g. ``rabbit@localhost``)."""
    return httpx.get(f"{MAIN_MGMT}/api/overview", auth=AUTH, timeout=10).json()["node"]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


class SecondNode:
    """``rabbit2@<host>`` on ports 5673 / 25673 / 15673, joined to the main node's cluster."""

    def __init__(
        self, name: str = "rabbit2", amqp_port: int = 5673, dist_port: int = 25673, mgmt_port: int = 15673
    ) -> None:
        self.main = main_node_name()
        self.node = f"{name}@{self.main.split('@', 1)[1]}"
        self.amqp_port, self.dist_port, self.mgmt_port = amqp_port, dist_port, mgmt_port
        self.base = BASE

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> SecondNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def start(self) -> None:
        """Start the node from scratch, join it to the main node and wait until both run."""
        if os.geteuid() not in (0,) and os.environ.get("USER") != "rabbitmq":
            raise RuntimeError("starting a second RabbitMQ node needs root (or the rabbitmq user)")
        self.remove()  # leftovers of an interrupted run
        self.base.mkdir(parents=True)
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\nmanagement.tcp.port = {self.mgmt_port}\n"
        )
        shutil.chown(self.base, "rabbitmq", "rabbitmq")
        shutil.chown(self.base / "rabbitmq.conf", "rabbitmq", "rabbitmq")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }
        subprocess.run(["rabbitmq-server", "-detached"], env=env, cwd="/tmp", check=True, timeout=60)
        _wait(lambda: self._ctl_ok("await_startup", "--timeout", "5"), 90, f"{self.node} to boot")
        rabbitmqctl("stop_app", node=self.node)
        rabbitmqctl("reset", node=self.node)
        rabbitmqctl("join_cluster", self.main, node=self.node)
        rabbitmqctl("start_app", node=self.node)
        _wait(lambda: self.running() is True, 60, f"{self.node} to show running in /api/nodes")

    def stop_app(self) -> None:
        """Stop RabbitMQ on the node (the Erlang VM stays up): the cluster sees it as down."""
        rabbitmqctl("stop_app", node=self.node)

    def start_app(self) -> None:
        rabbitmqctl("start_app", node=self.node)
        _wait(lambda: self.running() is True, 60, f"{self.node} to run again")

    def running(self) -> bool | None:
        """What the main node's management API says (``None``: not a member)."""
        for node in api_nodes():
            if node.get("name") == self.node:
                return bool(node.get("running"))
        return None

    def remove(self) -> None:
        """Leave the main node single and healthy, whatever state this node is in."""
        if self._ctl_ok("ping"):
            self._ctl_ok("stop_app")
            self._ctl_ok("reset")  # leaves the cluster cleanly while the main node is up
            self._ctl_ok("stop")
        if self.running() is not None:
            rabbitmqctl("forget_cluster_node", self.node, node=self.main, check=False)
        _wait(lambda: self.running() is None, 30, f"{self.node} to leave the cluster")
        if self.base.exists():
            shutil.rmtree(self.base, ignore_errors=True)

    def _ctl_ok(self, *args: str) -> bool:
        try:
            proc = subprocess.run(
                ["rabbitmqctl", "-n", self.node, *args], capture_output=True, timeout=60, cwd="/tmp"
            )
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0
