"""The HTTP side of the bench: TLS, authentication, fault injection, the request log, discovery,
watches, and ``exec`` over the websocket channel protocol (v4: stdout, stderr, the status channel).

kubectl 1.32 execs over websockets first, offering only ``v5.channel.k8s.io``; the official Python
client offers ``v4.channel.k8s.io``. The bench answers whichever was offered (server-to-client framing is
the same), so ``kubectl exec`` works without SPDY. SPDY (kubectl's fallback for old servers) is not
served.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .base import ApiError, ExecResult, RequestRecord, status_body
from .resources import discovery
from .rest import q
from .watch import stream

if TYPE_CHECKING:
    from .server import KubeAPIServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")  # system:public-info-viewer on a real server


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, like the real API server (urllib3 and client-go pool connections)."""

    kube: KubeAPIServer
    protocol_version = "HTTP/1.1"
    server_version = "kube-loopback/1"

    def setup(self) -> None:
        context = self.kube.ssl_context
        if context is not None:  # handshake in this connection's thread, never in the accept loop
            self.request.settimeout(10)
            self.request = context.wrap_socket(self.request, server_side=True)
            self.request.settimeout(None)
        super().setup()
        with self.kube.lock:
            self.kube._conns.add(self.connection)

    def finish(self) -> None:
        with self.kube.lock:
            self.kube._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, payload: Any) -> None:
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = RequestRecord(self.command, url.path, query, ctype, body)
        kube = self.kube
        with kube.lock:
            kube.requests.append(record)
            fault = next((f for f in kube.faults if f.matches(self.command, url.path)), None)
            if fault is not None:
                fault.count -= 1
        if fault is not None:
            if fault.hang is not None:
                record.status = -1
                kube._stop.wait(fault.hang)
                self.close_connection = True
                return
            record.status = fault.status
            self._send(fault.status, status_body(fault.status, "InternalError", fault.message))
            return
        public = url.path.rstrip("/") in PUBLIC_PATHS
        if kube.token and not public and self.headers.get("Authorization") != f"Bearer {kube.token}":
            record.status = 401
            self._send(401, status_body(401, "Unauthorized", "Unauthorized"))
            return
        if url.path.rstrip("/") in ("/healthz", "/livez", "/readyz"):
            record.status = 200
            self._send(200, "ok")
            return
        if self.command == "GET" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket_exec(url.path, query, record)
            return
        accept = self.headers.get("Accept", "")
        try:
            doc = discovery(url.path, f"{kube.host}:{kube.port}") if self.command == "GET" else None
            if doc is not None:
                code, payload = 200, doc
            elif self.command == "GET" and q(query, "watch") in ("true", "1"):
                with kube.lock:
                    plural, ns, name, sub = kube.route(url.path)
                if name is not None:
                    raise ApiError(
                        405, "MethodNotAllowed", "watch the collection with a metadata.name field selector"
                    )
                record.status = stream(self, plural, ns, query, accept)
                return
            else:
                code, payload = kube.handle(self.command, url.path, query, body, ctype, accept)
        except ApiError as err:
            code, payload = err.code, status_body(err.code, err.reason, err.message, err.details)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must show as a 500, not a hung client
            code, payload = 500, status_body(500, "InternalError", f"loopback server bug: {exc!r}")
        record.status = code
        self._send(code, payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    # websocket exec: channel protocol v4 (first payload byte = channel: 1 stdout, 2 stderr, 3 status)

    def _websocket_exec(self, path: str, query: dict[str, list[str]], record: RequestRecord) -> None:
        kube = self.kube
        try:
            ns, pod, containers = kube.exec_target(path)
            container = (query.get("container") or [containers[0]])[0]
            if container not in containers:
                raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        except ApiError as err:
            record.status = err.code
            self._send(err.code, status_body(err.code, err.reason, err.message, err.details))
            return
        command = query.get("command") or []
        record.status = 101
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        # v5 (kubectl >= 1.30 offers only it) frames output exactly like v4; it adds a client-side close
        # channel the bench never needs, since it reads no stdin
        protocol = "v5.channel.k8s.io" if "v5.channel.k8s.io" in offered else "v4.channel.k8s.io"
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        with kube.lock:
            kube.execs.append((ns, pod, container, list(command)))
        try:
            result = kube.exec_handler(ns, pod, container, list(command))
        except Exception as exc:  # noqa: BLE001 - reported on the status channel like a runtime error
            result = ExecResult(stderr=f"{exc}\n", exit_code=126)
        try:
            for channel, text in ((1, result.stdout), (2, result.stderr)):
                data = text.encode()
                for i in range(0, len(data), 16384):
                    self._ws_send(0x2, bytes([channel]) + data[i : i + 16384])
            if result.exit_code == 0:
                status = {"metadata": {}, "status": "Success"}
            else:
                status = {
                    "metadata": {},
                    "status": "Failure",
                    "message": f"command terminated with non-zero exit code: exit status {result.exit_code}",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(result.exit_code)}]},
                }
            self._ws_send(0x2, bytes([3]) + json.dumps(status).encode())
            self._ws_send(0x8, (1000).to_bytes(2, "big"))
            self.connection.settimeout(2)
            self.rfile.read(2)  # the client's close frame (or EOF); either way we are done
        except (OSError, ssl.SSLError):
            pass

    def _ws_send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, n])
        elif n < 65536:
            header = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        self.wfile.write(header + payload)
        self.wfile.flush()
