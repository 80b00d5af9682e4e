"""Small shared pieces of the loopback Kubernetes API: timestamps, ``Status`` errors, fault and request
records. Stdlib only, so the bench can later move out of the product package without untangling imports."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_TOKEN = "loopback-token"


def now_iso(offset_seconds: float = 0.0) -> str:
    """RFC 3339 timestamps as the API server writes them (second precision, Z)."""
    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class ExecResult:
    """What a simulated command prints and returns inside a pod."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


@dataclass
class Fault:
    """Answer ``status`` (or hang ``hang`` seconds) to the next ``count`` requests that match."""

    count: int
    status: int = 500
    hang: float | None = None
    method: str | None = None
    path: str | None = None  # regular expression searched in the request path
    message: str = "injected fault"

    def matches(self, method: str, path: str) -> bool:
        if self.count <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not (self.path and not re.search(self.path, path))


@dataclass
class RequestRecord:
    """One request as the server saw it (for assertions in tests)."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any
    status: int = 0
    at: float = field(default_factory=time.monotonic)


class ApiError(Exception):
    """Raised inside the handler to answer a Kubernetes ``Status`` failure."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``meta/v1 Status`` as the API server answers failures (and a few successes)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body
