"""read_limited: a declared or streamed body over the limit is refused before it is all read."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from runbook.gateway.bodies import BodyTooLarge, read_limited


def _request(chunks: list[bytes], content_length: int | None) -> tuple[Request, list[int]]:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    sent = [0]
    pending = list(chunks)

    async def receive() -> dict:
        if not pending:
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = pending.pop(0)
        sent[0] += 1
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive), sent


def test_small_body_is_returned_whole() -> None:
    request, _ = _request([b"ab", b"cd"], 4)
    assert asyncio.run(read_limited(request, 4)) == b"abcd"


def test_declared_length_over_the_limit_reads_nothing() -> None:
    request, sent = _request([b"x" * 10], 10)
    with pytest.raises(BodyTooLarge) as exc:
        asyncio.run(read_limited(request, 5))
    assert sent[0] == 0
    assert exc.value.declared == 10 and "5 byte limit" in str(exc.value)


def test_chunked_body_stops_at_the_first_chunk_over_the_limit() -> None:
    request, sent = _request([b"x" * 4] * 100, None)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_limited(request, 10))
    assert sent[0] == 3  # 12 bytes > 10: the remaining 97 chunks are never read


def test_lying_content_length_is_still_capped() -> None:
    request, sent = _request([b"x" * 4] * 100, 3)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_limited(request, 10))
    assert sent[0] == 3
