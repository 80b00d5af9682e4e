"""A loopback Slack Web API for tests, driven by the real ``slack_sdk`` through ``RUNBOOK_SLACK_API_URL``.

It answers the methods runbook calls (chat.postMessage, chat.update, chat.postEphemeral,
conversations.create, conversations.list, users.info) the way Slack does (``{"ok": true, ...}``,
form or JSON bodies, Bearer token), records every call, and can misbehave on purpose: answer 429
with ``Retry-After``, answer 500, or be down (the listening socket closed, then reopened on the
same port).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class SlackAPI:
    def __init__(self, token: str = "xoxb-test-token-0000") -> None:
        self.token = token
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.failures: list[tuple[int, dict[str, str]]] = []  # queued (status, headers) answers
        self.channels: dict[str, str] = {}  # name -> id
        self.users: dict[str, dict[str, Any]] = {}
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> SlackAPI:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def down(self) -> None:
        """Slack unreachable: connections are refused until :meth:`up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up(self) -> None:
        if self._server is None:
            self.start()

    stop = down

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # -- behaviour -------------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 500, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self.lock:
            self.failures.extend([(status, headers)] * n)

    def named(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["method"] == method and c["status"] == 200 and c["ok"]]

    def wait_for(
        self, method: str, n: int = 1, timeout: float = 10.0, where: Any = None
    ) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [c for c in self.named(method) if where is None or where(c)]
            if len(found) >= n:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {n} {method} calls, got {len(self.named(method))}: {self.calls[-5:]}")

    def texts(self) -> list[str]:
        return [c["args"].get("text", "") for c in self.named("chat.postMessage")]

    # -- the API ---------------------------------------------------------------------------------
    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method in ("chat.postMessage", "chat.postEphemeral"):
            if not args.get("channel"):
                return {"ok": False, "error": "channel_not_found"}
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            if method == "chat.postEphemeral":
                return {"ok": True, "message_ts": ts}
            return {
                "ok": True,
                "channel": args["channel"],
                "ts": ts,
                "message": {"text": args.get("text"), "ts": ts, "thread_ts": args.get("thread_ts")},
            }
        if method == "chat.update":
            return {
                "ok": True,
                "channel": args.get("channel"),
                "ts": args.get("ts"),
                "text": args.get("text"),
            }
        if method == "conversations.create":
            name = args.get("name", "")
            if name in self.channels:
                return {"ok": False, "error": "name_taken"}
            self.channels[name] = f"C{len(self.channels) + 100:08d}"
            return {"ok": True, "channel": {"id": self.channels[name], "name": name}}
        if method == "conversations.list":
            return {
                "ok": True,
                "channels": [{"id": i, "name": n} for n, i in self.channels.items()],
                "response_metadata": {"next_cursor": ""},
            }
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        return {"ok": False, "error": "unknown_method"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                method = self.path.rsplit("/", 1)[-1]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "json" in (self.headers.get("Content-Type") or ""):
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                auth = self.headers.get("Authorization", "")
                with api.lock:
                    failure = api.failures.pop(0) if api.failures else None
                status, headers = failure if failure else (200, {})
                body: dict[str, Any]
                if status != 200:
                    body = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
                elif auth != f"Bearer {api.token}":
                    body = {"ok": False, "error": "invalid_auth"}
                else:
                    body = api.answer(method, args)
                with api.lock:
                    api.calls.append(
                        {
                            "method": method,
                            "args": args,
                            "status": status,
                            "time": time.time(),
                            "ok": body.get("ok"),
                        }
                    )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
