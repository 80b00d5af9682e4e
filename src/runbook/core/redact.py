"""Keep secrets out of everything runbook writes.

Logs, timeline events, Slack messages, PagerDuty notes, Prefect results and exception text all pass
through :func:`redact` before they leave the process. Secrets come from two places: the values the
settings carry (tokens, signing secrets, passwords inside URLs) and patterns that look like
credentials wherever they appear (``user:password@`` in URLs, ``Bearer`` tokens, Slack tokens).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]{6,}"),
    re.compile(r"(?i)(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(password|passwd|secret|api[_-]?key|token)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"),
]

_lock = threading.Lock()
_known: set[str] = set()
#: the known secrets, longest first, rebuilt when one is registered (not sorted on every redact:
#: a step redacts every string of its params, output and events)
_ordered: tuple[str, ...] = ()


def secrets_in_url(url: str) -> list[str]:
    """Passwords inside one URL (or a comma-separated list of them)."""
    found: list[str] = []
    for part in url.split(","):
        try:
            parsed = urlsplit(part.strip())
        except ValueError:
            continue
        if parsed.password:
            found.extend({parsed.password, unquote(parsed.password)})
    return found


def register(secrets: Iterable[str | None]) -> None:
    """Remember secret values so every later :func:`redact` masks them (min length 4)."""
    global _ordered
    with _lock:
        for s in secrets:
            if s and len(s) >= 4:
                _known.add(s)
        _ordered = tuple(sorted(_known, key=len, reverse=True))


def redact(text: str) -> str:
    """Mask every known secret and anything that looks like a credential."""
    if not text:
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _PATTERNS[0].sub(MASK, text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return text


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string inside nested dicts, lists and tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value
