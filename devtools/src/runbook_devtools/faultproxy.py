"""A fault-injecting HTTP proxy on loopback, put in front of the Prefect API by tests and benchmarks.

A real proxy (asyncio sockets, one request per client connection, ``Connection: close`` both ways):
a share ``rate`` of requests gets a fault instead of the upstream's answer, split evenly between

* ``503``   — an immediate ``503 Service Unavailable`` (what a Prefect server under load answers);
* ``delay`` — nothing for ``delay_seconds`` (set it past the client's timeout), then the socket closes;
* ``reset`` — the connection is reset (RST) after the request was read.

WebSocket upgrades (Prefect's events) are faulted at the handshake the same way and otherwise piped
through. ``counts`` says what was done. Use as a context manager; ``url`` is the proxy's base URL.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from types import TracebackType
from urllib.parse import urlsplit

FAULTS = ("503", "delay", "reset")
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 33\r\n"
    b'connection: close\r\n\r\n{"detail":"injected by faultproxy"}'
)


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.1,
        delay_seconds: float = 3.0,
        seed: int | None = None,
        faults: tuple[str, ...] = FAULTS,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.path_prefix = parts.path.rstrip("/")
        self.rate = rate
        self.delay_seconds = delay_seconds
        self.faults = faults
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._server is not None:
            loop.call_soon_threadsafe(self._server.close)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    # -- one connection -------------------------------------------------------------------------
    def _pick(self) -> str | None:
        if self._random.random() >= self.rate:
            return None
        return self._random.choice(self.faults)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        fault = self._pick()
        self.counts["requests"] += 1
        if fault is not None:
            self.counts[fault] += 1
            await self._fault(fault, writer)
            return
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            self.counts["upstream_down"] += 1
            await self._fault("reset", writer)
            return
        up_writer.write(_rewrite(lines, keep_alive=upgrade) + body)
        await up_writer.drain()
        if upgrade:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        else:
            await _pipe(up_reader, writer)
        up_writer.close()

    async def _fault(self, fault: str, writer: asyncio.StreamWriter) -> None:
        if fault == "503":
            writer.write(_UNAVAILABLE)
            await writer.drain()
        elif fault == "delay":
            await asyncio.sleep(self.delay_seconds)
        elif fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()


def _rewrite(lines: list[str], *, keep_alive: bool) -> bytes:
    out = [lines[0]]
    for line in lines[1:]:
        if not line:
            continue
        if not keep_alive and line.lower().startswith(("connection:", "keep-alive:")):
            continue
        out.append(line)
    if not keep_alive:
        out.append("Connection: close")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
