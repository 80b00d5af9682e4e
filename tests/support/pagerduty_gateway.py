"""Helpers for gateway tests: a test playbook folder, a real uvicorn on a loopback port (re-exported
from :mod:`runbook_devtools.net`), a TCP forwarder that can be "down" (Prefect outage without touching
the shared server)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from runbook_devtools.net import UvicornThread, free_port

__all__ = ["PLAYBOOK", "Forwarder", "UvicornThread", "free_port", "write_playbook"]

PLAYBOOK = """
name: {name}
title: Gateway test {name}
owner: test
triggers:
  pagerduty:
    - event_types: [incident.triggered]
      service: {service}
      title: "{title}"
{extra}
params:
  note: {{type: string, default: hello, description: text}}
steps:
  - id: first
    title: First step
    action: timeline.note
    with: {{text: "triage {{{{ incident.id }}}} #{{{{ incident.number }}}}: {{{{ incident.title }}}}"}}
"""


def write_playbook(
    folder: Path, name: str, *, service: str = "API Service", title: str = "(?i)bump|stuck", extra: str = ""
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(PLAYBOOK.format(name=name, service=service, title=title, extra=extra), encoding="utf-8")
    return path


class Forwarder:
    """A loopback TCP port that refuses connections until ``up()``, then forwards to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()

    def up(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
