"""The destructive RabbitMQ operations and the canary: ``move_messages``, ``purge_queue``,
``close_connections`` and ``publish_canary``, with their ``describe`` texts.

Kept out of the action module so each action reads as its contract (params, guardrails, result) and
the protocol details live here; the confirm-before-ack movers themselves are in ``moves``.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.rabbitmq.client import (
    BACKEND,
    AmqpConnector,
    AMQPError,
    BasicProperties,
    ChannelClosedByBroker,
    ManagementClient,
    UnroutableError,
    amqp,
    close_quietly,
    management,
    passive_counts,
    q,
    settled_ready,
)
from runbook.actions.rabbitmq.inspect import connection_matches
from runbook.actions.rabbitmq.models import (
    CanaryParams,
    CanaryResult,
    CloseConnectionsParams,
    CloseConnectionsResult,
    MoveParams,
    MoveResult,
    PurgeParams,
    PurgeResult,
)
from runbook.actions.rabbitmq.moves import ClientMover, header_matcher, shovel_enabled, shovel_move
from runbook.core.redact import redact


def _not_found(queue: str, vhost: str, exc: ChannelClosedByBroker) -> ActionError:
    return ActionError(f"queue {queue!r} not found on vhost {vhost!r} ({exc.reply_text})", backend=BACKEND)


def purge(connector: AmqpConnector, vhost: str, queue: str, max_messages: int | None, timeout: float) -> int:
    """Purge ``queue`` on one channel: exact count check, guardrail, purge; returns messages purged."""
    conn = connector.blocking(vhost, timeout)
    try:
        ch = conn.channel()
        try:
            ready = ch.queue_declare(queue, passive=True).method.message_count
        except ChannelClosedByBroker as exc:
            raise _not_found(queue, vhost, exc) from None
        if max_messages is not None and ready > max_messages:
            raise GuardrailRefused(
                f"queue {queue!r} holds {ready} ready messages, more than max_messages={max_messages}",
                backend=BACKEND,
            )
        purged: int = ch.queue_purge(queue).method.message_count
        return purged
    finally:
        close_quietly(conn)


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
            except ChannelClosedByBroker as exc:
                raise _not_found(queue, vhost, exc) from None
            if ahead > max_ahead:
                raise GuardrailRefused(
                    f"queue {queue!r} holds {ahead} messages (> max_ahead={max_ahead});"
                    " use a dedicated canary queue",
                    backend=BACKEND,
                )
        props = BasicProperties(
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
    except UnroutableError:
        raise ActionError(f"canary to queue {queue!r} was unroutable", backend=BACKEND) from None
    except AMQPError as exc:
        raise ActionError(redact(f"canary failed: {exc!r}"), backend=BACKEND) from None
    finally:
        close_quietly(conn)
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


# --- move_messages ------------------------------------------------------------------------------


def pick_method(params: MoveParams) -> Literal["shovel", "client"]:
    """``auto`` is the shovel for whole-queue moves and the confirming client otherwise."""
    if params.method != "auto":
        return params.method
    return "shovel" if params.mode == "all" else "client"


def describe_move(ctx: ActionContext, params: MoveParams) -> str:
    connector = amqp(ctx)
    ready, consumers = passive_counts(connector, params.vhost, params.source, ctx.remaining())
    dest_ready, _ = passive_counts(connector, params.vhost, params.destination, ctx.remaining())
    where = f"from queue {params.source!r} ({ready} ready) to {params.destination!r} ({dest_ready} ready)"
    if params.mode == "all":
        what = f"move all {ready} messages"
    elif params.mode == "first":
        what = f"move the first {min(ready, params.count or 0)} messages (canary of {params.count})"
    else:
        cap = f", at most {params.count}" if params.count else ""
        what = f"move the messages matching headers {params.match_headers}{cap} among {ready}"
    how = (
        "via the shovel plugin (ack after confirm)"
        if pick_method(params) == "shovel"
        else f"with publisher confirms, at most {params.batch_size} unconfirmed at a time;"
        " the rest stay in order"
    )
    busy = f"; note: {consumers} consumers are attached to the source" if consumers else ""
    return f"{what} {where} on vhost {params.vhost!r} {how}{busy}"


def move(ctx: ActionContext, params: MoveParams) -> MoveResult:
    """Check both queues, pick the method (falling back from a missing shovel plugin), move, recount."""
    connector = amqp(ctx)
    ready, _ = passive_counts(connector, params.vhost, params.source, ctx.remaining())
    passive_counts(connector, params.vhost, params.destination, ctx.remaining())
    method = pick_method(params)
    warnings: list[str] = []
    if method == "shovel" and not shovel_enabled(management(ctx), ctx.remaining()):
        if params.method == "shovel":
            raise ActionError(
                "the shovel plugin is not enabled (rabbitmq-plugins enable rabbitmq_shovel"
                " rabbitmq_shovel_management); use method client",
                backend=BACKEND,
            )
        method = "client"
        warnings.append("shovel plugin not enabled: moved with the confirming client instead")
    started = time.monotonic()
    scanned = skipped = 0
    if method == "shovel":
        outcome = shovel_move(
            management(ctx),
            params.vhost,
            params.source,
            params.destination,
            expected=ready,
            deadline=time.monotonic() + ctx.remaining(3600.0),
        )
        moved = scanned = outcome.moved
    else:
        mover = ClientMover(
            connector.parameters(params.vhost, ctx.remaining()),
            params.source,
            params.destination,
            limit=params.count,
            matcher=header_matcher(params.match_headers) if params.mode == "filter" else None,
            batch_size=params.batch_size,
            deadline=time.monotonic() + max(1.0, ctx.remaining(3600.0) - 5.0),
        )
        result = mover.run()
        moved, scanned, skipped = result.moved, result.scanned, result.skipped
        warnings.extend(result.warnings)
    seconds = time.monotonic() - started
    remaining = settled_ready(
        connector, params.vhost, params.source, ready - moved, min(3.0, ctx.remaining())
    )
    dest_depth, _ = passive_counts(connector, params.vhost, params.destination, ctx.remaining())
    return MoveResult(
        moved=moved,
        method=method,
        remaining=remaining,
        destination_depth=dest_depth,
        scanned=scanned,
        skipped=skipped,
        seconds=round(seconds, 3),
        rate=round(moved / seconds, 1) if seconds > 0 else 0.0,
        warnings=warnings,
        summary=f"moved {moved} messages {params.source} -> {params.destination} via {method}"
        f" in {seconds:.1f}s"
        f"; {remaining} left in {params.source}" + (f" ({skipped} did not match)" if skipped else ""),
    )


# --- purge_queue --------------------------------------------------------------------------------


def describe_purge(ctx: ActionContext, params: PurgeParams) -> str:
    ready, consumers = passive_counts(amqp(ctx), params.vhost, params.queue, ctx.remaining())
    bound = f" (refused if more than {params.max_messages})" if params.max_messages is not None else ""
    return (
        f"purge {ready} ready messages from queue {params.queue!r} on vhost {params.vhost!r}{bound}; "
        f"unacknowledged messages held by its {consumers} consumers are not touched"
    )


def purge_queue(ctx: ActionContext, params: PurgeParams) -> PurgeResult:
    purged = purge(amqp(ctx), params.vhost, params.queue, params.max_messages, ctx.remaining())
    return PurgeResult(
        queue=params.queue, purged=purged, summary=f"purged {purged} messages from {params.queue}"
    )


# --- close_connections --------------------------------------------------------------------------


def _matching(ctx: ActionContext, params: CloseConnectionsParams) -> list[dict[str, Any]]:
    return matching_connections(
        management(ctx),
        user=params.user,
        client_name=params.client_name,
        idle_seconds=params.idle_seconds,
        peer_host=params.peer_host,
        vhost=params.vhost,
        timeout=ctx.remaining(),
    )


def describe_close(ctx: ActionContext, params: CloseConnectionsParams) -> str:
    found = _matching(ctx, params)
    listed = ", ".join(f"{c['name']} ({c['user']}, {c['client_name'] or 'unnamed'})" for c in found[:10])
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    guard = (
        f"; REFUSED: more than max_connections={params.max_connections}"
        if len(found) > params.max_connections
        else ""
    )
    return f"close {len(found)} connections with reason {params.reason!r}: {listed or 'none'}{more}{guard}"


def close_connections(ctx: ActionContext, params: CloseConnectionsParams) -> CloseConnectionsResult:
    """Close every matching connection (refused above ``max_connections``); skip ones gone meanwhile."""
    found = _matching(ctx, params)
    if len(found) > params.max_connections:
        raise GuardrailRefused(
            f"{len(found)} connections match, more than max_connections={params.max_connections}",
            backend=BACKEND,
        )
    mgmt = management(ctx)
    closed = []
    for conn in found:
        try:
            mgmt.request(
                "DELETE",
                f"/api/connections/{q(conn['name'])}",
                timeout=ctx.remaining(),
                headers={"X-Reason": params.reason},
                not_found="gone",
            )
        except ActionError as exc:
            if not str(exc).endswith("gone"):
                raise
            continue  # closed by itself meanwhile
        closed.append(conn)
    return CloseConnectionsResult(
        closed=closed,
        count=len(closed),
        summary=f"closed {len(closed)} connections"
        + (f": {', '.join(c['name'] for c in closed[:5])}" if closed else ""),
    )


# --- publish_canary -----------------------------------------------------------------------------


def publish_canary(ctx: ActionContext, params: CanaryParams) -> CanaryResult:
    timeout = min(params.timeout, ctx.remaining())
    queue, marker, confirm_ms, trip_ms = canary_round_trip(
        amqp(ctx), params.vhost, params.queue, timeout=timeout, max_ahead=params.max_ahead
    )
    return CanaryResult(
        ok=True,
        queue=queue,
        message_id=marker,
        confirm_ms=confirm_ms,
        round_trip_ms=trip_ms,
        summary=f"canary round trip through {queue} in {trip_ms:.1f} ms (confirm {confirm_ms:.1f} ms)",
    )
