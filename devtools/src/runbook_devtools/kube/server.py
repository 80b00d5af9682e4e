"""``KubeAPIServer``: the loopback API server's lifecycle, kubeconfig, fault injection and request log,
on top of the store, seeding helpers, controller and REST semantics (one mixin per module)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .base import DEFAULT_TOKEN, Fault, RequestRecord
from .exec_sim import demo_exec
from .http import Handler
from .rest import Rest
from .tls import Certs, make_certs

TICK = 0.05  # seconds between controller passes when nothing else wakes it


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops a TLS handshake or a connection is not news (the stdlib prints a trace)."""


class KubeAPIServer(Rest):
    """The loopback API server. Thread-safe; every seeding helper may be called while it serves.

    ``tls=True`` (the default) serves HTTPS with a fresh CA that :meth:`write_kubeconfig` writes beside
    the kubeconfig, so kubectl sends the bearer token (it refuses to over plain HTTP) and the official
    client verifies the server. ``tls=False`` serves plain HTTP: the Python client still works, kubectl
    then only with ``token=None`` (no authentication on loopback).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = DEFAULT_TOKEN,
        rollout_delay: float | None = 0.3,
        replace_delay: float | None = 0.3,
        tls: bool = True,
    ) -> None:
        self.host, self._want_port, self.token, self.tls = host, port, token, tls
        self._init_store(rollout_delay, replace_delay)
        self.exec_handler = demo_exec
        self.certs: Certs | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self._conns: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None

    # -------------------------------------------------------------------------------- lifecycle

    def start(self) -> KubeAPIServer:
        server = self

        class BoundHandler(Handler):
            kube = server

        if self.tls:
            self.certs = make_certs(self.host)
            self.ssl_context = self.certs.server_context()
        self._httpd = _QuietServer((self.host, self._want_port), BoundHandler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kube-api", daemon=True)
        self._thread.start()
        self._ticker = threading.Thread(target=self._run_controller, name="kube-controller", daemon=True)
        self._ticker.start()
        return self

    def _run_controller(self) -> None:
        """Advance rollouts and replacements while no request arrives (watches depend on it)."""
        while not self._stop.wait(TICK):
            with self.lock:
                self._tick()

    def stop(self) -> None:
        self._stop.set()
        with self.lock:
            self.changed.notify_all()  # watches end
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        # Keep-alive connections outlive shutdown(): cut them so clients see a dead server.
        with self.lock:
            conns, self._conns = set(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass
        if self.certs is not None:
            shutil.rmtree(self.certs.directory, ignore_errors=True)

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """A kubeconfig whose current context points at this server (bearer token auth); with TLS the CA
        is written beside it as ``<name>.ca.crt`` and referenced by absolute path."""
        path = Path(path)
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        cluster: dict[str, Any] = {"server": self.url}
        if self.certs is not None:
            ca = path.with_name(path.name + ".ca.crt")
            ca.write_bytes(self.certs.ca_pem)
            cluster["certificate-authority"] = str(ca.resolve())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "loopback", "cluster": cluster}],
            "users": [{"name": "loopback", "user": user}],
            "contexts": [
                {
                    "name": "loopback",
                    "context": {"cluster": "loopback", "user": "loopback", "namespace": namespace},
                }
            ],
            "current-context": "loopback",
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML: both clients' loaders read it
        return path

    # -------------------------------------------------------------------------------- faults and log

    def inject_fault(
        self,
        count: int = 1,
        *,
        status: int = 500,
        hang: float | None = None,
        method: str | None = None,
        path: str | None = None,
        message: str = "injected fault",
    ) -> Fault:
        """Answer ``status`` (or hang ``hang`` seconds, then drop the connection) for the next ``count``
        requests whose method and path (regex) match."""
        fault = Fault(count=count, status=status, hang=hang, method=method, path=path, message=message)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def find_requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Logged requests by method and path regex."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or re.search(path, r.path))
            ]


def main(argv: list[str] | None = None) -> None:
    """Serve the seeded demo cluster until interrupted (drills, demos, poking with kubectl)."""
    parser = argparse.ArgumentParser(description="A loopback Kubernetes API server for tests and drills")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", default="kubeconfig.loopback", help="where to write the kubeconfig")
    parser.add_argument("--rollout-delay", type=float, default=2.0, help="seconds per rollout step")
    parser.add_argument(
        "--replace-delay", type=float, default=2.0, help="seconds before a deleted pod is replaced"
    )
    parser.add_argument("--empty", action="store_true", help="do not seed the demo cluster")
    parser.add_argument("--plain-http", action="store_true", help="no TLS (kubectl then sends no token)")
    args = parser.parse_args(argv)
    server = KubeAPIServer(
        args.host,
        args.port,
        rollout_delay=args.rollout_delay,
        replace_delay=args.replace_delay,
        tls=not args.plain_http,
    )
    server.start()
    if not args.empty:
        server.seed_demo()
    path = server.write_kubeconfig(args.kubeconfig, namespace="orchestrator")
    print(json.dumps({"url": server.url, "kubeconfig": str(path.resolve())}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()

