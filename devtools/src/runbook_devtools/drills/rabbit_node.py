"""An extra RabbitMQ node on this host: clustered with the main node (node-down drills and tests) or
standalone (a broker a test may stop without touching the shared one on 5672).

Moved here from tests/support/rabbit_cluster.py because ``runbook drill --fault rabbit-node-down``
needs it at run time; that test module re-exports it.

How (see ../shared/NOTES.md): the main node's config pins its listener to 5672, so the extra node
gets a config file of its own (AMQP, management ports) plus its own data and log directories,
``RABBITMQ_NODENAME=<name>@<host of the main node>`` and its own ``RABBITMQ_DIST_PORT``. It runs as
the ``rabbitmq`` user (the Debian wrapper switches to it when started as root), so it shares the
Erlang cookie. Joining is ``stop_app; reset; join_cluster rabbit@HOST; start_app``. Removal is
``stop_app; reset`` (which tells the cluster to forget it) then ``stop``, and if anything is left,
``forget_cluster_node`` from the main node.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx

from runbook_devtools.drills.local import wait_for
from runbook_devtools.net import free_port

MAIN_MGMT = "http://127.0.0.1:15672"
AUTH = ("guest", "guest")


def rabbitmqctl(*args: str, node: str | None = None, check: bool = True, timeout: float = 90) -> str:
    cmd = ["rabbitmqctl", *(["-n", node] if node else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/tmp")
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}"
        )
    return proc.stdout


def api_nodes(mgmt: str = MAIN_MGMT) -> list[dict[str, Any]]:
    return httpx.get(f"{mgmt}/api/nodes", auth=AUTH, timeout=10).json()


def main_node_name() -> str:
    """The main node's name as the cluster knows it (e.g. ``rabbit@localhost``)."""
    return httpx.get(f"{MAIN_MGMT}/api/overview", auth=AUTH, timeout=10).json()["node"]


def _host() -> str:
    try:
        return main_node_name().split("@", 1)[1]
    except Exception:  # noqa: BLE001 - main node down: the host's short name, as rabbitmq uses it
        return socket.gethostname().split(".")[0]


def _plugin_enabled(plugin: str) -> bool:
    """Whether the shared enabled-plugins file (every node on the host reads it) lists ``plugin``."""
    path = Path(os.environ.get("RABBITMQ_ENABLED_PLUGINS_FILE", "/etc/rabbitmq/enabled_plugins"))
    try:
        return plugin in path.read_text()
    except OSError:
        return False


class RabbitNode:
    """``<name>@<host>`` on its own ports; ``clustered=True`` joins the main node's cluster."""

    def __init__(
        self,
        name: str = "rabbit2",
        amqp_port: int = 5673,
        dist_port: int = 25673,
        mgmt_port: int = 15673,
        *,
        clustered: bool = True,
        base: Path | None = None,
    ) -> None:
        self.clustered = clustered
        self.main = main_node_name() if clustered else ""
        self.node = f"{name}@{self.main.split('@', 1)[1] if clustered else _host()}"
        self.amqp_port, self.dist_port, self.mgmt_port = amqp_port, dist_port, mgmt_port
        self.base = base or Path(f"/tmp/runbook-{name}")

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.mgmt_port}"

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def start(self) -> None:
        """Start the node from scratch (joined to the main node when clustered) and wait until it runs."""
        if os.geteuid() != 0 and os.environ.get("USER") != "rabbitmq":
            raise RuntimeError("starting another RabbitMQ node needs root (or the rabbitmq user)")
        self.remove()  # leftovers of an interrupted run
        self.base.mkdir(parents=True)
        # standalone nodes accept guest from loopback only; that is all a drill needs
        conf = f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\nmanagement.tcp.port = {self.mgmt_port}\n"
        if _plugin_enabled("rabbitmq_prometheus"):
            # the main node holds 15692: a second node with the plugin on the same port never boots
            conf += f"prometheus.tcp.port = {free_port()}\n"
        (self.base / "rabbitmq.conf").write_text(conf)
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
        wait_for(lambda: self._ctl_ok("await_startup", "--timeout", "5"), 90, f"{self.node} to boot")
        if self.clustered:
            rabbitmqctl("stop_app", node=self.node)
            rabbitmqctl("reset", node=self.node)
            rabbitmqctl("join_cluster", self.main, node=self.node)
            rabbitmqctl("start_app", node=self.node)
            wait_for(lambda: self.running() is True, 60, f"{self.node} to show running in /api/nodes")
        else:
            wait_for(self._mgmt_answers, 60, f"{self.node} management API")

    def _mgmt_answers(self) -> bool:
        try:
            return httpx.get(
                f"http://127.0.0.1:{self.mgmt_port}/api/overview", auth=AUTH, timeout=3
            ).is_success
        except httpx.HTTPError:
            return False

    def stop_app(self) -> None:
        """Stop RabbitMQ on the node (the Erlang VM stays up): the cluster sees it as down."""
        rabbitmqctl("stop_app", node=self.node)

    def start_app(self) -> None:
        rabbitmqctl("start_app", node=self.node)
        if self.clustered:
            wait_for(lambda: self.running() is True, 60, f"{self.node} to run again")

    def running(self) -> bool | None:
        """What the main node's management API says (``None``: not a member)."""
        for node in api_nodes():
            if node.get("name") == self.node:
                return bool(node.get("running"))
        return None

    def remove(self) -> None:
        """Stop the node and delete its files; a clustered node also leaves the main node's cluster."""
        if self._ctl_ok("ping"):
            self._ctl_ok("stop_app")
            self._ctl_ok("reset")  # leaves the cluster cleanly while the main node is up
            self._ctl_ok("stop")
        if self.clustered:
            if self.running() is not None:
                rabbitmqctl("forget_cluster_node", self.node, node=self.main, check=False)
            wait_for(lambda: self.running() is None, 30, f"{self.node} to leave the cluster")
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
