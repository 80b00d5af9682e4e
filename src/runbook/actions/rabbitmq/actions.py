"""RabbitMQ actions: look at queues, nodes and connections; move, purge and close with guardrails.

Read actions use the management HTTP API (whole-broker view; statistics sampled every 5 s, so
``rabbitmq.progress`` compares message *counters* between two samples rather than trusting rates).
Destructive actions read exact counts over AMQP (passive declare) for their ``describe`` text and to
check the target exists, then act. Message bodies are never returned or logged: peeks ask the broker
to truncate payloads to one byte and keep only sizes, ids and headers (sensitive-looking headers
masked). Helpers live in ``rabbitmq_management`` (clients), ``rabbitmq_moves`` (the confirm-before-ack
movers) and ``rabbitmq_inspect`` (pure rules); only this module declares actions.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import PurePosixPath
from typing import Any, Literal

from runbook.actions.context import ActionContext, ActionError, GuardrailRefused
from runbook.actions.rabbitmq.inspect import (
    Sample,
    dead_letter_targets,
    dlq_reason,
    node_problems,
    peeked_message,
    progress_verdict,
    rate,
    total,
)
from runbook.actions.rabbitmq.management import (
    BACKEND,
    AmqpConnector,
    ManagementClient,
    amqp_connector,
    management_client,
    passive_counts,
    q,
    settled_ready,
)
from runbook.actions.rabbitmq.models import (
    CanaryParams,
    CanaryResult,
    CloseConnectionsParams,
    CloseConnectionsResult,
    ExportParams,
    ExportResult,
    ListQueuesParams,
    ListQueuesResult,
    MoveParams,
    MoveResult,
    NodeHealthParams,
    NodeHealthResult,
    PeekParams,
    PeekResult,
    ProgressParams,
    ProgressResult,
    PurgeParams,
    PurgeResult,
    QueueStatsParams,
    QueueStatsResult,
)
from runbook.actions.rabbitmq.moves import ClientMover, header_matcher, shovel_enabled, shovel_move
from runbook.actions.rabbitmq.ops import canary_round_trip, matching_connections, purge
from runbook.actions.registry import action
from runbook.core import files

QUEUE_COLUMNS = (
    "name,vhost,type,state,node,messages,messages_ready,messages_unacknowledged,consumers,"
    "consumer_utilisation,idle_since,message_stats,arguments,policy,effective_policy_definition,memory"
)


def _mgmt(ctx: ActionContext) -> ManagementClient:
    return ctx.connections.get("rabbitmq.management", management_client)


def _amqp(ctx: ActionContext) -> AmqpConnector:
    return ctx.connections.get("rabbitmq.amqp", amqp_connector)


# --- queue_stats ------------------------------------------------------------------------------


@action("rabbitmq.queue_stats", summary="Depth, consumers and rates of one queue")
def queue_stats(ctx: ActionContext, params: QueueStatsParams) -> QueueStatsResult:
    """Snapshot of one queue from the management API: messages (ready / unacknowledged), consumers,
    publish/deliver/ack/redeliver rates (5 s samples, smoothed), idle_since and dead-letter settings.
    With ``head_age`` it peeks the head message to report how old the oldest message is. Fails with
    a clear error when the queue does not exist."""
    mgmt = _mgmt(ctx)
    doc = mgmt.queue(params.vhost, params.queue, timeout=ctx.remaining())
    if "messages" not in doc:
        # Declared less than one statistics interval ago: take exact counts over AMQP instead.
        ready, consumers = passive_counts(_amqp(ctx), params.vhost, params.queue, ctx.remaining())
        doc = {**doc, "messages": ready, "messages_ready": ready, "consumers": consumers}
    elif params.exact:
        # Management counts lag up to one sample; a check right after a move needs the real ones.
        ready, consumers = passive_counts(_amqp(ctx), params.vhost, params.queue, ctx.remaining())
        unacked = int(doc.get("messages_unacknowledged") or 0)
        doc = {**doc, "messages": ready + unacked, "messages_ready": ready, "consumers": consumers}
    stats = doc.get("message_stats") or {}
    args = {**(doc.get("effective_policy_definition") or {}), **(doc.get("arguments") or {})}
    age: float | None = None
    if params.head_age and int(doc.get("messages_ready") or 0) > 0:
        head = _management_get(mgmt, params.vhost, params.queue, 1, ctx.remaining())
        stamp = ((head[0].get("properties") or {}).get("timestamp")) if head else None
        if isinstance(stamp, int):
            age = round(time.time() - stamp, 1)
    result = QueueStatsResult(
        queue=params.queue,
        vhost=params.vhost,
        type=str(doc.get("type") or "classic"),
        state=str(doc.get("state") or "unknown"),
        node=str(doc.get("node") or ""),
        messages=int(doc.get("messages") or 0),
        ready=int(doc.get("messages_ready") or 0),
        unacked=int(doc.get("messages_unacknowledged") or 0),
        consumers=int(doc.get("consumers") or 0),
        consumer_utilisation=doc.get("consumer_utilisation"),
        publish_rate=rate(stats, "publish"),
        deliver_rate=rate(stats, "deliver_get"),
        ack_rate=rate(stats, "ack"),
        redeliver_rate=rate(stats, "redeliver"),
        published_total=total(stats, "publish"),
        acked_total=total(stats, "ack"),
        idle_since=doc.get("idle_since"),
        oldest_message_age_seconds=age,
        dead_letter_exchange=args.get("x-dead-letter-exchange") or args.get("dead-letter-exchange"),
        dead_letter_routing_key=args.get("x-dead-letter-routing-key") or args.get("dead-letter-routing-key"),
        memory_bytes=int(doc.get("memory") or 0),
    )
    result.summary = (
        f"{params.queue}: {result.messages} messages ({result.ready} ready, {result.unacked} unacked), "
        f"{result.consumers} consumers, ack {result.ack_rate}/s, publish {result.publish_rate}/s"
        + (f", oldest {age:.0f}s" if age is not None else "")
    )
    return result


# --- list_queues ------------------------------------------------------------------------------


@action("rabbitmq.list_queues", summary="Queues sorted by depth, filtered by name, depth or DLQ")
def list_queues(ctx: ActionContext, params: ListQueuesParams) -> ListQueuesResult:
    """Lists queues deepest first with messages, ready, unacked, consumers, rates and whether each
    is a dead-letter queue (named like one, or the dead-letter routing target of another queue or
    policy). Use it to find where a backlog or a DLQ pile-up is."""
    try:
        pattern = re.compile(params.name_regex) if params.name_regex else None
    except re.error as exc:
        raise ActionError(
            f"name_regex {params.name_regex!r} is not a valid regex: {exc}", backend=BACKEND
        ) from None
    mgmt = _mgmt(ctx)
    path = "/api/queues" if params.vhost is None else f"/api/queues/{q(params.vhost)}"
    not_found = None if params.vhost is None else f"vhost {params.vhost!r} not found"
    queues = (
        mgmt.get(path, timeout=ctx.remaining(), params={"columns": QUEUE_COLUMNS}, not_found=not_found) or []
    )
    policies: list[dict[str, Any]] = []
    if params.dlq_only:
        ppath = "/api/policies" if params.vhost is None else f"/api/policies/{q(params.vhost)}"
        policies = mgmt.get(ppath, timeout=ctx.remaining(), not_found=not_found) or []
    targets = dead_letter_targets(queues, policies)
    rows = []
    for doc in queues:
        name = doc.get("name", "")
        depth = int(doc.get("messages") or 0)
        why = dlq_reason(doc, targets)
        if pattern and not pattern.search(name):
            continue
        if depth < params.min_depth or (params.dlq_only and why is None):
            continue
        stats = doc.get("message_stats") or {}
        rows.append(
            {
                "name": name,
                "vhost": doc.get("vhost"),
                "type": doc.get("type"),
                "state": doc.get("state"),
                "messages": depth,
                "ready": int(doc.get("messages_ready") or 0),
                "unacked": int(doc.get("messages_unacknowledged") or 0),
                "consumers": int(doc.get("consumers") or 0),
                "publish_rate": rate(stats, "publish"),
                "deliver_rate": rate(stats, "deliver_get"),
                "ack_rate": rate(stats, "ack"),
                "redeliver_rate": rate(stats, "redeliver"),
                "idle_since": doc.get("idle_since"),
                "dlq": why is not None,
                "dlq_reason": why,
            }
        )
    rows.sort(key=lambda r: (-r["messages"], r["name"]))
    shown = rows[: params.limit]
    total_messages = sum(r["messages"] for r in rows)
    top = ", ".join(f"{r['name']}={r['messages']}" for r in shown[:3])
    return ListQueuesResult(
        queues=shown,
        count=len(shown),
        matched=len(rows),
        total_messages=total_messages,
        summary=f"{len(rows)} queues matched, {total_messages} messages"
        + (f"; deepest: {top}" if top else ""),
    )


# --- progress ---------------------------------------------------------------------------------


@action(
    "rabbitmq.progress", summary="Is a queue being worked? Two samples: progressing/stalled/idle/draining"
)
def progress(ctx: ActionContext, params: ProgressParams) -> ProgressResult:
    """Samples the queue twice ``window`` seconds apart and compares the message counters (acks,
    deliveries, redeliveries, publishes) and depth: ``draining`` (completions and a shrinking
    backlog), ``progressing`` (completions, backlog not shrinking), ``stalled`` (messages wait, nothing
    completes: no consumers, stuck handlers or a redelivery loop) or ``idle`` (empty and quiet).
    The window is cut to the step's remaining time budget."""
    mgmt = _mgmt(ctx)
    window = min(params.window, max(1.0, ctx.remaining(params.window + 30.0) - 2.0))
    first = Sample.from_queue(
        mgmt.queue(params.vhost, params.queue, timeout=ctx.remaining()), time.monotonic()
    )
    time.sleep(window)
    second = Sample.from_queue(
        mgmt.queue(params.vhost, params.queue, timeout=ctx.remaining()), time.monotonic()
    )
    verdict, evidence = progress_verdict(first, second)
    return ProgressResult(
        queue=params.queue,
        verdict=verdict,  # type: ignore[arg-type]
        evidence=evidence,
        seconds=round(second.at - first.at, 2),
        depth_before=first.messages,
        depth_after=second.messages,
        depth_change=second.messages - first.messages,
        acked=second.acked - first.acked,
        delivered=second.delivered - first.delivered,
        redelivered=second.redelivered - first.redelivered,
        published=second.published - first.published,
        consumers=second.consumers,
        unacked=second.unacked,
        ack_rate=second.ack_rate,
        deliver_rate=second.deliver_rate,
        redeliver_rate=second.redeliver_rate,
        summary=f"{params.queue} {verdict}: " + "; ".join(evidence[:2]),
    )


# --- peek -------------------------------------------------------------------------------------


def _management_get(mgmt: ManagementClient, vhost: str, queue: str, count: int, timeout: float) -> list[Any]:
    # ack_requeue_true: the broker gets the messages on its own channel and requeues them at their
    # original positions (tested: order and count are preserved); truncate=1 keeps bodies server-side.
    return (
        mgmt.request(
            "POST",
            f"/api/queues/{q(vhost)}/{q(queue)}/get",
            timeout=timeout,
            json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 1},
            not_found=f"queue {queue!r} not found on vhost {vhost!r}",
        )
        or []
    )


@action("rabbitmq.peek", summary="Headers, ids, sizes and x-death of the first N messages (bodies never)")
def peek(ctx: ActionContext, params: PeekParams) -> PeekResult:
    """Looks at the first ``count`` messages without consuming them: message id, correlation id,
    type, timestamp, size, headers (sensitive-looking ones masked), and x-death counts and reasons.
    The broker fetches and requeues them in place (management ``get`` with ``ack_requeue_true``), so
    nothing is lost or reordered; the messages are marked redelivered, and on quorum queues each peek
    counts towards a ``delivery-limit``. Bodies are truncated by the broker and never returned."""
    mgmt = _mgmt(ctx)
    doc = mgmt.queue(params.vhost, params.queue, timeout=ctx.remaining())
    warnings = []
    if doc.get("type") == "quorum":
        warnings.append("quorum queue: peeking counts as a delivery attempt towards any delivery-limit")
    if doc.get("type") == "stream":
        raise ActionError(
            f"queue {params.queue!r} is a stream; peek works on classic and quorum queues", backend=BACKEND
        )
    got = _management_get(mgmt, params.vhost, params.queue, params.count, ctx.remaining())
    messages = [peeked_message(i, m) for i, m in enumerate(got)]
    reasons: Counter[str] = Counter()
    for m in messages:
        for death in m["deaths"]:
            reasons[str(death["reason"])] += death["count"]
    size = sum(m["size"] for m in messages)
    why = ", ".join(f"{r}={n}" for r, n in reasons.most_common()) or "none"
    return PeekResult(
        queue=params.queue,
        count=len(messages),
        messages=messages,
        total_bytes=size,
        death_reasons=dict(reasons),
        warnings=warnings,
        summary=f"peeked {len(messages)} messages of {params.queue} ({size} bytes); x-death reasons: {why}",
    )


# --- node_health ------------------------------------------------------------------------------


@action(
    "rabbitmq.node_health", summary="Every node: running, memory/disk alarms, partitions, file descriptors"
)
def node_health(ctx: ActionContext, params: NodeHealthParams) -> NodeHealthResult:
    """Checks each cluster node as the management API sees it: running, memory and disk alarms,
    network partitions, file descriptors (warns at 90 %). ``ok`` is true only when no node has a
    problem; ``problems`` has one sentence per finding (the seeds' check_running / check_local_alarms
    / cluster_status, for the whole cluster at once)."""
    nodes = _mgmt(ctx).get("/api/nodes", timeout=ctx.remaining()) or []
    rows, problems = [], []
    for node in sorted(nodes, key=lambda n: n.get("name", "")):
        found = node_problems(node)
        problems.extend(found)
        rows.append(
            {
                "name": node.get("name"),
                "running": bool(node.get("running")),
                "mem_alarm": node.get("mem_alarm"),
                "disk_free_alarm": node.get("disk_free_alarm"),
                "partitions": node.get("partitions") or [],
                "fd_used": node.get("fd_used"),
                "fd_total": node.get("fd_total"),
                "mem_used": node.get("mem_used"),
                "mem_limit": node.get("mem_limit"),
                "disk_free": node.get("disk_free"),
                "uptime_seconds": (node.get("uptime") or 0) // 1000 if node.get("running") else None,
                "problems": found,
            }
        )
    running = sum(1 for r in rows if r["running"])
    ok = not problems and bool(rows)
    summary = f"{running}/{len(rows)} nodes running; " + (
        "healthy" if ok else "; ".join(problems) or "no nodes"
    )
    return NodeHealthResult(
        ok=ok, nodes=rows, running=running, total=len(rows), problems=problems, summary=summary
    )


# --- export_definitions -----------------------------------------------------------------------

#: the folder of the data directory definitions exports are written to
DEFINITIONS = "definitions"


@action("rabbitmq.export_definitions", summary="Back up the broker's definitions to a file (mode 0600)")
def export_definitions(ctx: ActionContext, params: ExportParams) -> ExportResult:
    """Writes ``GET /api/definitions`` (queues, exchanges, bindings, policies, users with password
    hashes, vhosts, permissions) to ``<data dir>/definitions/<path>`` atomically and readable by its
    owner only, the backup the seeds take before maintenance (``rabbitmqctl export_definitions``).
    ``path`` is a name inside that folder: absolute paths, ``..`` and symlinks are refused before
    the broker is asked anything, and nothing is written."""
    name = params.path if params.path is not None else f"definitions-{ctx.run_id or 'export'}.json"
    try:
        parts = files.relative_parts(name)
    except files.UnsafePath as exc:
        raise ActionError(
            f"export_definitions: path refused, nothing written: {exc}", backend=BACKEND
        ) from None
    api = "/api/definitions" if params.vhost is None else f"/api/definitions/{q(params.vhost)}"
    doc = _mgmt(ctx).get(api, timeout=ctx.remaining(), not_found=f"vhost {params.vhost!r} not found") or {}
    data = json.dumps(doc, indent=2, sort_keys=True).encode()
    try:
        path = files.write_private(
            files.data_dir(), PurePosixPath(DEFINITIONS, *parts), data, overwrite=params.overwrite
        )
    except (files.UnsafePath, FileExistsError) as exc:
        raise ActionError(
            f"export_definitions: path {name!r} refused, nothing written: {exc}", backend=BACKEND
        ) from None
    counts = {
        k: len(doc.get(k) or []) for k in ("queues", "exchanges", "bindings", "policies", "users", "vhosts")
    }
    return ExportResult(
        path=str(path),
        bytes=len(data),
        **counts,
        summary=f"definitions written to {path} ({len(data)} bytes; "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ")",
    )


# --- move_messages (destructive) --------------------------------------------------------------


def _pick_method(params: MoveParams) -> Literal["shovel", "client"]:
    if params.method != "auto":
        return params.method
    return "shovel" if params.mode == "all" else "client"


def describe_move(ctx: ActionContext, params: MoveParams) -> str:
    amqp = _amqp(ctx)
    ready, consumers = passive_counts(amqp, params.vhost, params.source, ctx.remaining())
    dest_ready, _ = passive_counts(amqp, params.vhost, params.destination, ctx.remaining())
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
        if _pick_method(params) == "shovel"
        else f"with publisher confirms, at most {params.batch_size} unconfirmed at a time;"
        " the rest stay in order"
    )
    busy = f"; note: {consumers} consumers are attached to the source" if consumers else ""
    return f"{what} {where} on vhost {params.vhost!r} {how}{busy}"


@action(
    "rabbitmq.move_messages",
    summary="Move (redrive) messages between queues: all, first N, or header-filtered; never loses one",
    destructive=True,
    describe=describe_move,
)
def move_messages(ctx: ActionContext, params: MoveParams) -> MoveResult:
    """DLQ redrive or quarantine. Confirm-before-ack: a source message is acknowledged only after
    the broker confirmed its copy in the destination, so a crash at any moment loses nothing (at
    worst one in-flight batch is in both queues). ``all`` uses the shovel plugin (the broker moves the
    messages itself, fastest); ``first`` (canary) and ``filter`` use a client with batched publisher
    confirms; non-matching messages return to their original positions. Only messages present when
    the move starts are considered. Both queues must exist."""
    amqp = _amqp(ctx)
    ready, _ = passive_counts(amqp, params.vhost, params.source, ctx.remaining())
    passive_counts(amqp, params.vhost, params.destination, ctx.remaining())
    method = _pick_method(params)
    warnings: list[str] = []
    if method == "shovel" and not shovel_enabled(_mgmt(ctx), ctx.remaining()):
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
            _mgmt(ctx),
            params.vhost,
            params.source,
            params.destination,
            expected=ready,
            deadline=time.monotonic() + ctx.remaining(3600.0),
        )
        moved = scanned = outcome.moved
    else:
        mover = ClientMover(
            amqp.parameters(params.vhost, ctx.remaining()),
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
    remaining = settled_ready(amqp, params.vhost, params.source, ready - moved, min(3.0, ctx.remaining()))
    dest_depth, _ = passive_counts(amqp, params.vhost, params.destination, ctx.remaining())
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


# --- purge_queue (destructive) ----------------------------------------------------------------


def describe_purge(ctx: ActionContext, params: PurgeParams) -> str:
    ready, consumers = passive_counts(_amqp(ctx), params.vhost, params.queue, ctx.remaining())
    bound = f" (refused if more than {params.max_messages})" if params.max_messages is not None else ""
    return (
        f"purge {ready} ready messages from queue {params.queue!r} on vhost {params.vhost!r}{bound}; "
        f"unacknowledged messages held by its {consumers} consumers are not touched"
    )


@action(
    "rabbitmq.purge_queue",
    summary="Delete every ready message of a queue",
    destructive=True,
    describe=describe_purge,
)
def purge_queue(ctx: ActionContext, params: PurgeParams) -> PurgeResult:
    """Deletes the queue's ready messages (``rabbitmqctl purge_queue``): emergency only, e.g. a
    poison-message flood after it was sampled with ``rabbitmq.peek`` and backed up with
    ``rabbitmq.move_messages``. ``max_messages`` refuses when there are more than expected."""
    purged = purge(_amqp(ctx), params.vhost, params.queue, params.max_messages, ctx.remaining())
    return PurgeResult(
        queue=params.queue, purged=purged, summary=f"purged {purged} messages from {params.queue}"
    )


# --- close_connections (destructive) ----------------------------------------------------------


def _matching_connections(ctx: ActionContext, params: CloseConnectionsParams) -> list[dict[str, Any]]:
    return matching_connections(
        _mgmt(ctx),
        user=params.user,
        client_name=params.client_name,
        idle_seconds=params.idle_seconds,
        peer_host=params.peer_host,
        vhost=params.vhost,
        timeout=ctx.remaining(),
    )


def describe_close(ctx: ActionContext, params: CloseConnectionsParams) -> str:
    found = _matching_connections(ctx, params)
    listed = ", ".join(f"{c['name']} ({c['user']}, {c['client_name'] or 'unnamed'})" for c in found[:10])
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    guard = (
        f"; REFUSED: more than max_connections={params.max_connections}"
        if len(found) > params.max_connections
        else ""
    )
    return f"close {len(found)} connections with reason {params.reason!r}: {listed or 'none'}{more}{guard}"


@action(
    "rabbitmq.close_connections",
    summary="Close stale client connections matching a filter",
    destructive=True,
    describe=describe_close,
)
def close_connections(ctx: ActionContext, params: CloseConnectionsParams) -> CloseConnectionsResult:
    """Closes the connections matching every given filter (user, client name regex, idle time, peer
    host or CIDR, vhost), e.g. stale consumers holding unacked messages. Refuses without any filter
    and when more than ``max_connections`` match; their unacknowledged messages are requeued by the
    broker. Returns the closed connections (name, user, peer, client name, idle seconds)."""
    found = _matching_connections(ctx, params)
    if len(found) > params.max_connections:
        raise GuardrailRefused(
            f"{len(found)} connections match, more than max_connections={params.max_connections}",
            backend=BACKEND,
        )
    mgmt = _mgmt(ctx)
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


# --- publish_canary ---------------------------------------------------------------------------


@action("rabbitmq.publish_canary", summary="End-to-end check: publish a marked message and consume it back")
def publish_canary(ctx: ActionContext, params: CanaryParams) -> CanaryResult:
    """Publishes a marked message (with publisher confirm) and reads it back, measuring confirm and
    round-trip latency: "can the application connect, publish and consume" from the seeds' deployment
    validation. Without ``queue`` it uses a temporary exclusive queue (nothing left behind). With a
    named queue, messages ahead of the canary are left untouched and in order."""
    timeout = min(params.timeout, ctx.remaining())
    queue, marker, confirm_ms, trip_ms = canary_round_trip(
        _amqp(ctx), params.vhost, params.queue, timeout=timeout, max_ahead=params.max_ahead
    )
    return CanaryResult(
        ok=True,
        queue=queue,
        message_id=marker,
        confirm_ms=confirm_ms,
        round_trip_ms=trip_ms,
        summary=f"canary round trip through {queue} in {trip_ms:.1f} ms (confirm {confirm_ms:.1f} ms)",
    )


__all__ = [
    "queue_stats",
    "list_queues",
    "progress",
    "peek",
    "node_health",
    "export_definitions",
    "move_messages",
    "purge_queue",
    "close_connections",
    "publish_canary",
]
