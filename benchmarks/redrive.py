"""Redrive benchmark: DLQ -> queue with ``rabbitmq.move_messages`` vs the shovel plugin driven directly.

For each size (10,000 and 100,000 messages; ``--small``: 2,000) it fills a DLQ with persistent
messages and times, side by side on the same broker:

* ``move_messages`` mode all (method auto = the shovel plugin, through the action: passive-declare
  checks, shovel creation, polling until it deleted itself, final counts);
* the shovel plugin driven directly (PUT the parameter, poll until it is gone): the floor;
* ``move_messages`` mode all with the confirming client (method client), for comparison;
* the filtered path (header filter matching one message in three; the rest stay in order);
* the canary path (first 100 messages).

Every run checks that the destination received exactly what was expected. Prints ONE JSON line.
Needs the local RabbitMQ with the management and shovel plugins (see docs/HACKING.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import httpx
import pika

from runbook.actions import ActionContext, ActionRegistry, Connections, invoke
from runbook.core.settings import Settings

BODY = b"x" * 256


def fill(ch: Any, queue: str, n: int) -> None:
    """``n`` persistent messages, one in three with header tenant=acme; waits until all are ready."""
    for i in range(n):
        headers = {"tenant": "acme" if i % 3 == 0 else "globex"}
        ch.basic_publish(
            "", queue, BODY, pika.BasicProperties(message_id=str(i), delivery_mode=2, headers=headers)
        )
    while ch.queue_declare(queue, passive=True).method.message_count < n:
        time.sleep(0.05)


def reset(ch: Any, *queues: str) -> None:
    for q in queues:
        ch.queue_purge(q)


def shovel_direct(mgmt: httpx.Client, source: str, dest: str) -> float:
    """The shovel plugin with no runbook code in the way: PUT, then poll until it deleted itself."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    value = {
        "src-protocol": "amqp091",
        "src-uri": "amqp:///%2F",
        "src-queue": source,
        "src-prefetch-count": 1000,
        "src-delete-after": "queue-length",
        "dest-protocol": "amqp091",
        "dest-uri": "amqp:///%2F",
        "dest-queue": dest,
        "ack-mode": "on-confirm",
    }
    started = time.monotonic()
    mgmt.put(f"/api/parameters/shovel/%2F/{name}", json={"value": value}).raise_for_status()
    while mgmt.get(f"/api/parameters/shovel/%2F/{name}").status_code != 404:
        time.sleep(0.05 if time.monotonic() - started < 1 else 0.2)
    return time.monotonic() - started


def timed(fn: Any) -> tuple[float, Any]:
    started = time.monotonic()
    out = fn()
    return time.monotonic() - started, out


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def run_size(n: int, ch: Any, ctx: ActionContext, reg: ActionRegistry, mgmt: httpx.Client) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    dlq, work = f"bench-{tag}-dlq", f"bench-{tag}-work"
    for q in (dlq, work):
        ch.queue_declare(q, durable=True)
    move = reg["rabbitmq.move_messages"]
    try:
        fill(ch, dlq, n)
        secs, res = timed(lambda: invoke(move, ctx, {"source": dlq, "destination": work}))
        assert res.method == "shovel" and res.moved == n and res.destination_depth == n, res
        action_shovel = {"seconds": round(secs, 3), "msg_per_s": rate(n, secs)}

        reset(ch, work)
        fill(ch, dlq, n)
        secs = shovel_direct(mgmt, dlq, work)
        assert ch.queue_declare(work, passive=True).method.message_count == n
        direct = {"seconds": round(secs, 3), "msg_per_s": rate(n, secs)}

        reset(ch, work)
        fill(ch, dlq, n)
        secs, res = timed(lambda: invoke(move, ctx, {"source": dlq, "destination": work, "method": "client"}))
        assert res.method == "client" and res.moved == n and res.destination_depth == n, res
        client = {"seconds": round(secs, 3), "msg_per_s": rate(n, secs), "batch_size": 500}

        reset(ch, work)
        fill(ch, dlq, n)
        params = {"source": dlq, "destination": work, "mode": "filter", "match_headers": {"tenant": "acme"}}
        secs, res = timed(lambda: invoke(move, ctx, params))
        matching = len(range(0, n, 3))
        assert res.moved == matching and res.remaining == n - matching, res
        filtered = {
            "seconds": round(secs, 3),
            "scanned": res.scanned,
            "moved": res.moved,
            "scanned_per_s": rate(res.scanned, secs),
            "moved_per_s": rate(res.moved, secs),
        }

        reset(ch, dlq, work)
        fill(ch, dlq, n)
        params = {"source": dlq, "destination": work, "mode": "first", "count": 100}
        secs, res = timed(lambda: invoke(move, ctx, params))
        assert res.moved == 100 and res.remaining == n - 100, res
        canary = {"count": 100, "seconds": round(secs, 3)}
    finally:
        for q in (dlq, work):
            ch.queue_delete(q)
    return {
        "messages": n,
        "move_messages_all": action_shovel,
        "shovel_direct": direct,
        "ratio_move_messages_vs_shovel": round(action_shovel["msg_per_s"] / direct["msg_per_s"], 3),
        "move_messages_client_all": client,
        "filtered_one_in_three": filtered,
        "canary_first_100": canary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="reduced size for CI (2,000 messages)")
    args = parser.parse_args(argv)
    sizes = [2_000] if args.small else [10_000, 100_000]
    settings = Settings.from_env()
    reg = ActionRegistry.from_modules(["runbook.actions.rabbitmq.actions"])
    connections = Connections(settings)
    ctx = ActionContext(connections)
    conn = pika.BlockingConnection(pika.URLParameters(settings.rabbitmq_url))
    mgmt_url = httpx.URL(settings.rabbitmq_management_url)
    mgmt = httpx.Client(
        base_url=str(mgmt_url.copy_with(username=None, password=None)),
        auth=(mgmt_url.username or "guest", mgmt_url.password or "guest"),
        timeout=30,
    )
    try:
        results = [run_size(n, conn.channel(), ctx, reg, mgmt) for n in sizes]
    finally:
        conn.close()
        mgmt.close()
        connections.close()
    print(json.dumps({"benchmark": "redrive", "small": args.small, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
