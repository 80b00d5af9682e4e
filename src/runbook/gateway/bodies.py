"""Bounded request bodies: every gateway route reads its body through :func:`read_limited`.

A route must know how much it will read *before* it reads it, and before it checks any signature (the
signature is over the whole body, so an unauthenticated sender otherwise chooses how much memory the
gateway spends). ``read_limited`` refuses a declared ``Content-Length`` over the limit without reading
anything, and otherwise streams the body with a running total, stopping as soon as it passes the limit
(a chunked or lying sender cannot get more than ``limit`` plus one chunk buffered).
"""

from __future__ import annotations

from fastapi import Request


class BodyTooLarge(Exception):
    """The request body is (or declares itself) larger than the route accepts; answer 413."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        self.limit = limit
        self.declared = declared
        if declared is not None:
            what = f"declared body of {declared} bytes is over the {limit} byte limit"
        else:
            what = f"body over the {limit} byte limit"
        super().__init__(what)


def declared_length(request: Request) -> int | None:
    """The Content-Length the client declared, or ``None`` when absent or not a plain integer (the HTTP
    server normally refuses those; if one gets through, the streaming cap still holds)."""
    text = (request.headers.get("content-length") or "").strip()
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; :class:`BodyTooLarge` when over (nothing more is read).

    Checks ``Content-Length`` first (a declared size over the limit is refused before reading a byte),
    then streams with a running cap, since the header may be absent (chunked) or wrong."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit, declared)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)
