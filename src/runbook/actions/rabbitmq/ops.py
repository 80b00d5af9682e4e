"""AMQP and management-API operations behind ``rabbitmq.purge_queue``, ``rabbitmq.publish_canary``
and ``rabbitmq.close_connections``, kept out of the action module so each action reads as its
contract (params, guardrails, result) and the protocol details live here."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions

from runbook.actions.context import ActionError, GuardrailRefused
from runbook.actions.rabbitmq.inspect import connection_matches
from runbook.actions.rabbitmq.management import BACKEND, AmqpConnector, ManagementClient
from runbook.core.redact import redact


def _not_found(queue: str, vhost: str, exc: pika.exceptions.ChannelClosedByBroker) -> ActionError:
    return ActionError(f"queue {queue!r} not found on vhost {vhost!r} ({exc.reply_text})", backend=BACKEND)


def _close(conn: pika.BlockingConnection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - already closed by the broker
        pass


def purge(connector: AmqpConnector, vhost: str, queue: str, max_messages: int | None, timeout: float) -> int:
    """Purge ``queue`` on one channel: exact count check, guardrail, purge; returns messages purged."""
    conn = connector.blocking(vhost, timeout)
    try:
        ch = conn.channel()
        try:
            ready = ch.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise _not_found(queue, vhost, exc) from None
        if max_messages is not None and ready > max_messages:
            raise GuardrailRefused(
                f"queue {queue!r} holds {ready} ready messages, more than max_messages={max_messages}",
                backend=BACKEND,
            )
        return ch.queue_purge(queue).method.message_count
    finally:
        _close(conn)


def canary_round_trip(
    connector: AmqpConnector, vhost: str, queue: str | None, *, timeout: float, max_ahead: int
) -> tuple[str, str, float, float]:
    """Publish a marked message with a confirm and get it back: ``(queue, id, confirm_ms, trip_ms)``.

    Messages found ahead of the canary in a named queue are held unacknowledged and requeued in
    place when the channel closes; only the canary itself is acknowledged.
    """
    conn = connector.blocking(vhost, timeout)
    marker = f"runbook-canary-{uuid.uuid4().hex}"
    found = False
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        if queue is None:
            queue = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        else:
            try:
                ahead = ch.queue_declare(queue, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker as exc:
                raise _not_found(queue, vhost, exc) from None
            if ahead > max_ahead:
                raise GuardrailRefused(
                    f"queue {queue!r} holds {ahead} messages (> max_ahead={max_ahead});"
                    " use a dedicated canary queue",
                    backend=BACKEND,
                )
        props = pika.BasicProperties(
            message_id=marker, timestamp=int(time.time()), headers={"x-runbook-canary": "1"}
        )
        started = time.monotonic()
        ch.basic_publish("", queue, b"canary", props, mandatory=True)
        confirmed = time.monotonic()
        while time.monotonic() < started + timeout and not found:
            method, got, _ = ch.basic_get(queue, auto_ack=False)
            if method is None:
                time.sleep(0.01)
            elif got.message_id == marker:
                ch.basic_ack(method.delivery_tag)
                found = True
        back = time.monotonic()
        ch.close()
    except pika.exceptions.UnroutableError:
        raise ActionError(f"canary to queue {queue!r} was unroutable", backend=BACKEND) from None
    except pika.exceptions.AMQPError as exc:
        raise ActionError(redact(f"canary failed: {exc!r}"), backend=BACKEND) from None
    finally:
        _close(conn)
    if not found:
        raise ActionError(
            f"canary {marker} did not come back from {queue!r} within {timeout:.0f}s", backend=BACKEND
        )
    return queue, marker, round((confirmed - started) * 1000, 2), round((back - started) * 1000, 2)


def matching_connections(
    mgmt: ManagementClient,
    *,
    user: str | None,
    client_name: str | None,
    idle_seconds: float | None,
    peer_host: str | None,
    vhost: str | None,
    timeout: float,
) -> list[dict[str, Any]]:
    """Connections passing every given filter; refuses (:class:`GuardrailRefused`) with none given."""
    if all(v is None for v in (user, client_name, idle_seconds, peer_host)):
        raise GuardrailRefused(
            "close_connections needs at least one filter (user, client_name, idle_seconds, peer_host)",
            backend=BACKEND,
        )
    try:
        pattern = re.compile(client_name) if client_name else None
    except re.error as exc:
        raise ActionError(
            f"client_name {client_name!r} is not a valid regex: {exc}", backend=BACKEND
        ) from None
    conns = mgmt.get("/api/connections", timeout=timeout) or []
    channels = (mgmt.get("/api/channels", timeout=timeout) or []) if idle_seconds is not None else []
    by_conn: dict[str, list[dict[str, Any]]] = {}
    for ch in channels:
        by_conn.setdefault((ch.get("connection_details") or {}).get("name", ""), []).append(ch)
    now = datetime.now(UTC)
    found = []
    for conn in conns:
        if vhost is not None and conn.get("vhost") != vhost:
            continue
        ok, idle = connection_matches(
            conn,
            user=user,
            client_name=pattern,
            peer_host=peer_host,
            idle_seconds=idle_seconds,
            now=now,
            channels=by_conn.get(conn.get("name", ""), []),
        )
        if ok:
            found.append(
                {
                    "name": conn.get("name"),
                    "user": conn.get("user"),
                    "vhost": conn.get("vhost"),
                    "peer_host": conn.get("peer_host"),
                    "peer_port": conn.get("peer_port"),
                    "client_name": (conn.get("client_properties") or {}).get("connection_name"),
                    "channels": conn.get("channels"),
                    "idle_seconds": None if idle is None else round(idle, 1),
                }
            )
    return found
