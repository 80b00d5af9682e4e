"""queue.* with system rabbitmq on the local broker: evidence never of the triage's own making."""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pika
import pytest

from runbook.actions import ActionContext, ActionRegistry, Connections, invoke
from runbook.core.settings import Settings
from tests.support.waiting import wait_until

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def call(registry: ActionRegistry, settings: Settings, name: str, params: dict[str, Any]) -> Any:
    ctx = ActionContext(Connections(settings), deadline=time.monotonic() + 60)
    return invoke(registry[name], ctx, params).model_dump()


class Consumer(threading.Thread):
    """A consumer that requeues the poison forever (prefetch 1) or crashes its channel (prefetch 10)."""

    def __init__(self, queue: str, poison: str, prefetch: int, crash: bool) -> None:
        super().__init__(daemon=True)
        self.queue, self.poison, self.prefetch, self.crash = queue, poison, prefetch, crash
        self.stop = threading.Event()

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(URL))
        while not self.stop.is_set():
            ch = conn.channel()
            ch.basic_qos(prefetch_count=self.prefetch)
            for method, props, _ in ch.consume(self.queue, inactivity_timeout=0.2):
                if self.stop.is_set():
                    break
                if method is None:
                    continue
                if self.crash:
                    if props.message_id == self.poison:
                        break  # "crash" holding the prefetched batch: all of it is requeued
                    continue  # innocents of the batch are still being worked on
                if props.message_id == self.poison:
                    ch.basic_nack(method.delivery_tag, requeue=True)
                else:
                    time.sleep(0.5)  # slow innocents: they pile up in the prefetch window
                    ch.basic_ack(method.delivery_tag)
            ch.close()
            time.sleep(0.3 if self.crash else 0)  # the crashed worker restarts
        conn.close()


@pytest.fixture
def queues(rabbitmq_available: None, unique: str) -> Iterator[tuple[str, str]]:
    q, quarantine = f"rb-{unique}", f"rb-{unique}-quarantine"
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    for name in (q, quarantine):
        ch.queue_declare(name, durable=True)
    for i in range(60):
        ch.basic_publish("", q, b"x", pika.BasicProperties(message_id=f"m-{i}", timestamp=int(time.time())))
    yield q, quarantine
    ch.queue_delete(q)
    ch.queue_delete(quarantine)
    conn.close()


def test_hot_requeue_loop_names_the_poison_and_quarantine_moves_exactly_it(
    queues, registry, settings
) -> None:
    q, quarantine = queues
    consumer = Consumer(q, "m-0", prefetch=1, crash=False)
    consumer.start()
    time.sleep(1.0)
    target = {"system": "rabbitmq", "queue": q, "quarantine_queue": quarantine}
    sample = call(registry, settings, "queue.sample", target)
    # the broker redelivers a nacked message to the same consumer at once, so a management get
    # rarely sees m-0 ready; what matters: no innocent message is ever named (issue 14's bug)
    assert sample["suspects"] in ([], ["m-0"]), sample
    # a second look sees the messages our first look requeued: still no innocent is named
    again = call(registry, settings, "queue.sample", target)
    assert again["suspects"] in ([], ["m-0"]), again
    consumer.stop.set()
    consumer.join(5)
    moved = call(registry, settings, "queue.quarantine", {**target, "ids": ["m-0"]})
    assert moved["ids"] == ["m-0"] and moved["moved"] == 1
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    assert ch.queue_declare(quarantine, passive=True).method.message_count == 1
    _, props, _ = ch.basic_get(quarantine, auto_ack=True)
    assert props.message_id == "m-0"
    assert ch.queue_declare(q, passive=True).method.message_count == 59
    conn.close()


def test_prefetch_burst_is_indistinguishable_not_a_retry_storm(queues, registry, settings) -> None:
    q, quarantine = queues
    consumer = Consumer(q, "m-3", prefetch=10, crash=True)
    consumer.start()
    try:
        # the crashed prefetch batch comes back requeued a moment later (longer on a loaded machine)
        sample = wait_until(
            lambda: (
                (
                    s := call(
                        registry, settings, "queue.sample", {"system": "rabbitmq", "queue": q, "count": 20}
                    )
                )["indistinguishable"]
                and s
            ),
            timeout=20,
            what="the requeued prefetch batch in the sample",
        )
    finally:
        consumer.stop.set()
        consumer.join(5)
    assert sample["indistinguishable"] and sample["suspects"] == [], sample
    assert 1 < len(sample["candidates"]) <= 10


class EmptyGetProxy:
    """The management API on loopback, except that every ``POST .../get`` answers ``[]``: the
    answer a loaded broker gave in CI for a queue with ready messages, six times over 6 s."""

    def __init__(self, upstream: str = "http://127.0.0.1:15672") -> None:
        self.gets = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.endswith("/get"):
                    proxy.gets += 1
                    status, headers, content = 200, {"Content-Type": "application/json"}, b"[]"
                else:
                    keep = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("authorization", "content-type")
                    }
                    got = httpx.request(
                        self.command, upstream + self.path, headers=keep, content=body, timeout=10
                    )
                    status, headers, content = (
                        got.status_code,
                        {"Content-Type": "application/json"},
                        got.content,
                    )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://guest:guest@127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_head_the_management_get_will_not_show_is_read_through_a_consumer(
    queues, registry, settings
) -> None:
    """When the management API keeps answering an empty get while the exact count says messages
    wait, the sample reads the head through a consumer of its own: the poison is still named (it
    was not, in CI: verdict slow processing), and every message is back in its place."""
    q, _ = queues
    conn = pika.BlockingConnection(pika.URLParameters(URL))
    ch = conn.channel()
    deaths = [{"count": 5, "reason": "rejected", "queue": q, "exchange": "", "routing-keys": [q]}]
    props = pika.BasicProperties(
        message_id="poison-1", headers={"x-death": deaths}, timestamp=int(time.time())
    )
    ch.basic_publish("", q, b"x", props)
    proxy = EmptyGetProxy()
    try:
        blind = dataclasses.replace(settings, rabbitmq_management_url=proxy.url)
        sample = call(registry, blind, "queue.sample", {"system": "rabbitmq", "queue": q, "count": 80})
    finally:
        proxy.close()
    assert proxy.gets == 4  # the first get and three more, all empty
    assert sample["suspects"] == ["poison-1"], sample
    assert len(sample["messages"]) == 61
    got = [ch.basic_get(q, auto_ack=True)[1].message_id for _ in range(61)]
    assert got == [f"m-{i}" for i in range(60)] + ["poison-1"]  # all back, in their order
    conn.close()
