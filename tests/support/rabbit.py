"""Helpers for tests against the local RabbitMQ: publishing numbered messages, reading them back,
polling the management API (its statistics are sampled every 5 s, so never read once)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pika

from tests.support.waiting import wait_until as wait_for

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
MGMT_URL = "http://127.0.0.1:15672"
AUTH = ("guest", "guest")


def connect(url: str = AMQP_URL, name: str | None = None) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    if name:
        params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


def mgmt(method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, MGMT_URL + path, auth=AUTH, timeout=10, **kwargs)


def declare(ch: Any, *names: str, arguments: dict[str, Any] | None = None) -> None:
    for name in names:
        ch.queue_declare(name, durable=True, arguments=arguments)


def publish_numbered(
    ch: Any,
    queue: str,
    n: int,
    *,
    start: int = 0,
    headers: Callable[[int], dict[str, Any]] | None = None,
    body_size: int = 32,
    timestamp: int | None = None,
) -> None:
    """Publish messages whose message_id is their number (persistent, no confirms: fast).

    Returns once the queue holds them: without confirms, another connection (the action under test)
    could otherwise see a count that is still growing. A passive declare on the same channel is a
    synchronous call to the queue that the broker handles after the publishes sent before it."""
    for i in range(start, start + n):
        props = pika.BasicProperties(
            message_id=str(i),
            delivery_mode=2,
            headers=headers(i) if headers else None,
            timestamp=timestamp,
        )
        ch.basic_publish("", queue, f"body-{i}".encode().ljust(body_size, b"."), props)
    ch.queue_declare(queue, passive=True)


def ready(ch: Any, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def _ids(conn: pika.BlockingConnection, queue: str, *, consume: bool) -> list[int]:
    ch = conn.channel()
    ids = []
    while True:
        method, props, _ = ch.basic_get(queue, auto_ack=consume)
        if method is None:
            break
        ids.append(int(props.message_id))
    ch.close()
    return ids


def drain_ids(conn: pika.BlockingConnection, queue: str) -> list[int]:
    """Consume and acknowledge everything in ``queue``; the message ids in delivery order."""
    return _ids(conn, queue, consume=True)


def peek_ids(conn: pika.BlockingConnection, queue: str) -> list[int]:
    """Every message id in ``queue`` in order, leaving the queue as it was (get, then requeue on close)."""
    return _ids(conn, queue, consume=False)


def queue_doc(queue: str, vhost: str = "%2F") -> dict[str, Any]:
    response = mgmt("GET", f"/api/queues/{vhost}/{queue}")
    return response.json() if response.status_code == 200 else {}


def wait_stats(queue: str, messages: int, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the management statistics show ``messages`` messages in ``queue``."""
    return wait_for(
        lambda: (d := queue_doc(queue)) and d.get("messages") == messages and d,
        timeout=timeout,
        what=f"management stats of {queue} to show {messages} messages",
    )


@contextmanager
def queues(
    *names: str, arguments: dict[str, dict[str, Any]] | None = None
) -> Iterator[pika.BlockingConnection]:
    """Declare durable queues for a test and delete them afterwards (whatever happens)."""
    conn = connect()
    ch = conn.channel()
    for name in names:
        ch.queue_delete(name)
        ch.queue_declare(name, durable=True, arguments=(arguments or {}).get(name))
    try:
        yield conn
    finally:
        try:
            if conn.is_closed:
                conn = connect()
            ch = conn.channel()
            for name in names:
                ch.queue_delete(name)
        finally:
            conn.close()
