"""RabbitMQ actions: look at queues, nodes and connections; move, purge and close with guardrails.

Read actions use the management HTTP API (whole-broker view; statistics sampled every 5 s, so
``rabbitmq.progress`` compares message *counters* between two samples rather than trusting rates).
Destructive actions read exact counts over AMQP (passive declare) for their ``describe`` text and to
check the target exists, then act. Message bodies are never returned or logged: peeks ask the broker
to truncate payloads to one byte and keep only sizes, ids and headers (sensitive-looking headers
masked).

Only this module declares actions (the registry loads it); each one is its contract: name, summary,
params and result models, the user docs in its docstring. The work is done in ``queues`` (read side),
``broker`` (nodes, definitions), ``ops`` (destructive operations and the canary, with their
describe texts), ``moves`` (the confirm-before-ack movers), ``inspect`` (pure rules) and ``client``
(the only module importing pika and httpx).
"""

from __future__ import annotations

from runbook.actions.context import ActionContext
from runbook.actions.rabbitmq import broker, definitions, limits, ops, queues
from runbook.actions.rabbitmq.limits import QueueConfigParams, QueueConfigResult
from runbook.actions.rabbitmq.models import (
    CanaryParams,
    CanaryResult,
    CloseConnectionsParams,
    CloseConnectionsResult,
    DefinitionsDiffParams,
    DefinitionsDiffResult,
    ExportParams,
    ExportResult,
    ImportDefinitionsParams,
    ImportDefinitionsResult,
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
from runbook.actions.registry import action


@action("rabbitmq.queue_stats", summary="Depth, consumers and rates of one queue")
def queue_stats(ctx: ActionContext, params: QueueStatsParams) -> QueueStatsResult:
    """Snapshot of one queue from the management API: messages (ready / unacknowledged), consumers,
    publish/deliver/ack/redeliver rates (5 s samples, smoothed), idle_since and dead-letter settings.
    With ``head_age`` it peeks the head message to report how old the oldest message is. Fails with
    a clear error when the queue does not exist."""
    return queues.queue_stats(ctx, params)


@action(
    "rabbitmq.queue_config",
    summary="A queue's limits (max length, overflow, TTL) and the policies that set them",
)
def queue_config(ctx: ActionContext, params: QueueConfigParams) -> QueueConfigResult:
    """The configuration side of "queue full": declaration arguments, the user and operator
    policies whose pattern matches the queue (the one in effect marked), and each limit in force
    with its source - max-length and max-length-bytes (the smaller of argument and policy, as the
    broker applies them), overflow (drop-head, reject-publish, reject-publish-dlx), message TTL,
    expiry, delivery limit, dead-lettering - and how full the queue is against its limit. Reads the
    management API only."""
    return limits.queue_config(ctx, params)


@action("rabbitmq.list_queues", summary="Queues sorted by depth, filtered by name, depth or DLQ")
def list_queues(ctx: ActionContext, params: ListQueuesParams) -> ListQueuesResult:
    """Lists queues deepest first with messages, ready, unacked, consumers, rates and whether each
    is a dead-letter queue (named like one, or the dead-letter routing target of another queue or
    policy). Use it to find where a backlog or a DLQ pile-up is."""
    return queues.list_queues(ctx, params)


@action(
    "rabbitmq.progress", summary="Is a queue being worked? Two samples: progressing/stalled/idle/draining"
)
def progress(ctx: ActionContext, params: ProgressParams) -> ProgressResult:
    """Samples the queue twice ``window`` seconds apart and compares the message counters (acks,
    deliveries, redeliveries, publishes) and depth: ``draining`` (completions and a shrinking
    backlog), ``progressing`` (completions, backlog not shrinking), ``stalled`` (messages wait, nothing
    completes: no consumers, stuck handlers or a redelivery loop) or ``idle`` (empty and quiet).
    The window is cut to the step's remaining time budget."""
    return queues.progress(ctx, params)


@action("rabbitmq.peek", summary="Headers, ids, sizes and x-death of the first N messages (bodies never)")
def peek(ctx: ActionContext, params: PeekParams) -> PeekResult:
    """Looks at the first ``count`` messages without consuming them: message id, correlation id,
    type, timestamp, size, headers (sensitive-looking ones masked), and x-death counts and reasons.
    The broker fetches and requeues them in place (management ``get`` with ``ack_requeue_true``), so
    nothing is lost or reordered; the messages are marked redelivered, and on quorum queues each peek
    counts towards a ``delivery-limit``. Bodies are truncated by the broker and never returned."""
    return queues.peek(ctx, params)


@action(
    "rabbitmq.node_health", summary="Every node: running, memory/disk alarms, partitions, file descriptors"
)
def node_health(ctx: ActionContext, params: NodeHealthParams) -> NodeHealthResult:
    """Checks each cluster node as the management API sees it: running, memory and disk alarms,
    network partitions, file descriptors (warns at 90 %). ``ok`` is true only when no node has a
    problem; ``problems`` has one sentence per finding (the seeds' check_running / check_local_alarms
    / cluster_status, for the whole cluster at once)."""
    return broker.node_health(ctx, params)


@action("rabbitmq.export_definitions", summary="Back up the broker's definitions to a file (mode 0600)")
def export_definitions(ctx: ActionContext, params: ExportParams) -> ExportResult:
    """Writes ``GET /api/definitions`` (queues, exchanges, bindings, policies, users with password
    hashes, vhosts, permissions) to ``<data dir>/definitions/<path>`` atomically and readable by its
    owner only, the backup the seeds take before maintenance (``rabbitmqctl export_definitions``).
    ``path`` is a name inside that folder: absolute paths, ``..`` and symlinks are refused before
    the broker is asked anything, and nothing is written."""
    return broker.export_definitions(ctx, params)


@action(
    "rabbitmq.move_messages",
    summary="Move (redrive) messages between queues: all, first N, or header-filtered; never loses one",
    destructive=True,
    describe=ops.describe_move,
)
def move_messages(ctx: ActionContext, params: MoveParams) -> MoveResult:
    """DLQ redrive or quarantine. Confirm-before-ack: a source message is acknowledged only after
    the broker confirmed its copy in the destination, so a crash at any moment loses nothing (at
    worst one in-flight batch is in both queues). ``all`` uses the shovel plugin (the broker moves the
    messages itself, fastest); ``first`` (canary) and ``filter`` use a client with batched publisher
    confirms; non-matching messages return to their original positions. Only messages present when
    the move starts are considered. Both queues must exist."""
    return ops.move(ctx, params)


@action(
    "rabbitmq.purge_queue",
    summary="Delete every ready message of a queue",
    destructive=True,
    describe=ops.describe_purge,
)
def purge_queue(ctx: ActionContext, params: PurgeParams) -> PurgeResult:
    """Deletes the queue's ready messages (``rabbitmqctl purge_queue``): emergency only, e.g. a
    poison-message flood after it was sampled with ``rabbitmq.peek`` and backed up with
    ``rabbitmq.move_messages``. ``max_messages`` refuses when there are more than expected."""
    return ops.purge_queue(ctx, params)


@action(
    "rabbitmq.close_connections",
    summary="Close stale client connections matching a filter",
    destructive=True,
    describe=ops.describe_close,
)
def close_connections(ctx: ActionContext, params: CloseConnectionsParams) -> CloseConnectionsResult:
    """Closes the connections matching every given filter (user, client name regex, idle time, peer
    host or CIDR, vhost), e.g. stale consumers holding unacked messages. Refuses without any filter
    and when more than ``max_connections`` match; their unacknowledged messages are requeued by the
    broker. Returns the closed connections (name, user, peer, client name, idle seconds)."""
    return ops.close_connections(ctx, params)


@action("rabbitmq.publish_canary", summary="End-to-end check: publish a marked message and consume it back")
def publish_canary(ctx: ActionContext, params: CanaryParams) -> CanaryResult:
    """Publishes a marked message (with publisher confirm) and reads it back, measuring confirm and
    round-trip latency: "can the application connect, publish and consume" from the seeds' deployment
    validation. Without ``queue`` it uses a temporary exclusive queue (nothing left behind). With a
    named queue, messages ahead of the canary are left untouched and in order."""
    return ops.publish_canary(ctx, params)


@action(
    "rabbitmq.diff_definitions",
    summary="What importing a definitions backup would add or change (names only)",
)
def diff_definitions(ctx: ActionContext, params: DefinitionsDiffParams) -> DefinitionsDiffResult:
    """Compares a backup under ``<data dir>/definitions/`` (named relatively; never an arbitrary path)
    with the broker's current definitions, kind by kind (vhosts, users, permissions, policies, queues,
    exchanges, bindings, parameters): what the import would add, what it would change (which
    properties, never their values: password hashes and parameter values stay out of the result),
    and what exists only on the broker (an import never deletes). Queues or exchanges redefined with
    other properties are conflicts: RabbitMQ would refuse the import. Returns the file's SHA-256 for
    the import step to pin."""
    return definitions.diff_definitions(ctx, params)


@action(
    "rabbitmq.import_definitions",
    summary="Import a definitions backup (additive; the reviewed file only, conflicts refused)",
    destructive=True,
    describe=definitions.describe_import,
)
def import_definitions(ctx: ActionContext, params: ImportDefinitionsParams) -> ImportDefinitionsResult:
    """``rabbitmqctl import_definitions FILE`` through the management API (``POST /api/definitions``,
    or ``/api/definitions/VHOST``): the seed's disaster-recovery restore. The file is the one named
    under ``<data dir>/definitions/`` whose SHA-256 the approver saw (``sha256``): a file changed since
    is refused, and so is a file that redefines an existing queue or exchange with other properties
    (the broker would fail half-way). The approval request shows the diff. After the import every
    object of the file must be on the broker, or the step fails saying which are missing."""
    return definitions.import_definitions(ctx, params)


__all__ = [
    "queue_stats",
    "list_queues",
    "progress",
    "peek",
    "node_health",
    "export_definitions",
    "diff_definitions",
    "import_definitions",
    "move_messages",
    "purge_queue",
    "close_connections",
    "publish_canary",
]
