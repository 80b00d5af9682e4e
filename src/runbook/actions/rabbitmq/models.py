"""Parameters and results of the ``rabbitmq.*`` actions (the typed contract playbooks see).

Kept apart from the action functions so that module stays readable; every field has a description
because ``runbook actions`` and the linter show them to playbook authors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runbook.actions.registry import ActionResult

VHOST = Field("/", description="virtual host")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueueParams(_Params):
    queue: str = Field(description="queue name")
    vhost: str = VHOST


class QueueStatsParams(QueueParams):
    head_age: bool = Field(
        False,
        description="also read the head message's timestamp (a peek of 1 message, requeued in place) to "
        "report the oldest message's age; needs publishers that set the timestamp property",
    )
    exact: bool = Field(
        False,
        description="take ready messages and consumers from AMQP (passive declare, real time) instead of "
        "the management API's 5 s samples: for before/after comparisons right after moving messages",
    )


class QueueStatsResult(ActionResult):
    queue: str
    vhost: str
    type: str
    state: str
    node: str
    messages: int
    ready: int
    unacked: int
    consumers: int
    consumer_utilisation: float | None
    publish_rate: float
    deliver_rate: float
    ack_rate: float
    redeliver_rate: float
    published_total: int
    acked_total: int
    idle_since: str | None
    oldest_message_age_seconds: float | None
    dead_letter_exchange: str | None
    dead_letter_routing_key: str | None
    memory_bytes: int


class ListQueuesParams(_Params):
    vhost: str | None = Field("/", description="virtual host; null for every vhost")
    name_regex: str | None = Field(None, description="only queues whose name matches this regex (search)")
    min_depth: int = Field(0, ge=0, description="only queues with at least this many messages")
    dlq_only: bool = Field(False, description="only dead-letter queues (by name or as a dead-letter target)")
    limit: int = Field(50, ge=1, le=10000, description="at most this many queues, deepest first")


class ListQueuesResult(ActionResult):
    queues: list[dict[str, Any]]
    count: int
    matched: int
    total_messages: int


class ProgressParams(QueueParams):
    window: float = Field(
        15.0,
        ge=5.0,
        le=600.0,
        description="seconds between the two samples; at least 5 (the broker's statistics interval)",
    )


class ProgressResult(ActionResult):
    queue: str
    verdict: Literal["progressing", "stalled", "idle", "draining"]
    evidence: list[str]
    seconds: float
    depth_before: int
    depth_after: int
    depth_change: int
    acked: int
    delivered: int
    redelivered: int
    published: int
    consumers: int
    unacked: int
    ack_rate: float
    deliver_rate: float
    redeliver_rate: float


class PeekParams(QueueParams):
    count: int = Field(10, ge=1, le=500, description="how many messages from the head to look at")


class PeekResult(ActionResult):
    queue: str
    count: int
    messages: list[dict[str, Any]]
    total_bytes: int
    death_reasons: dict[str, int]
    warnings: list[str]


class NodeHealthParams(_Params):
    pass


class NodeHealthResult(ActionResult):
    ok: bool
    nodes: list[dict[str, Any]]
    running: int
    total: int
    problems: list[str]


class ExportParams(_Params):
    path: str | None = Field(
        None,
        description="file NAME under <data dir>/definitions/ (relative, no '..', no symlinks; mode 0600: it"
        " holds password hashes); default definitions-<run id>.json",
    )
    overwrite: bool = Field(False, description="replace an existing export of the same name")
    vhost: str | None = Field(None, description="only this vhost's definitions; null for the whole broker")


class ExportResult(ActionResult):
    path: str
    bytes: int
    queues: int
    exchanges: int
    bindings: int
    policies: int
    users: int
    vhosts: int


class MoveParams(_Params):
    source: str = Field(description="queue to take messages from (e.g. the DLQ)")
    destination: str = Field(
        description="queue to put them in (must exist; published via the default exchange)"
    )
    vhost: str = VHOST
    mode: Literal["all", "first", "filter"] = Field(
        "all",
        description="all: every message present at start; first: the first `count` (canary); "
        "filter: those whose headers match `match_headers` (non-matching stay in the source, in order)",
    )
    count: int | None = Field(None, ge=1, description="first: how many; filter: at most this many")
    match_headers: dict[str, str] = Field(
        default_factory=dict, description="filter: header name -> value (compared as text); all must match"
    )
    batch_size: int = Field(
        500, ge=1, le=10000, description="max unconfirmed publishes in flight (client method)"
    )
    method: Literal["auto", "shovel", "client"] = Field(
        "auto", description="auto: the shovel plugin for mode all, the confirming client otherwise"
    )

    @model_validator(mode="after")
    def _coherent(self) -> MoveParams:
        if self.source == self.destination:
            raise ValueError("source and destination are the same queue")
        if self.mode == "first" and self.count is None:
            raise ValueError("mode first needs count")
        if self.mode == "filter" and not self.match_headers:
            raise ValueError("mode filter needs match_headers")
        if self.mode != "filter" and self.match_headers:
            raise ValueError("match_headers is only used with mode filter")
        if self.method == "shovel" and self.mode != "all":
            raise ValueError("the shovel method moves whole queues only (mode all)")
        return self


class MoveResult(ActionResult):
    moved: int
    method: Literal["shovel", "client"]
    remaining: int
    destination_depth: int
    scanned: int
    skipped: int
    seconds: float
    rate: float
    warnings: list[str]


class PurgeParams(QueueParams):
    max_messages: int | None = Field(
        None, ge=0, description="refuse if the queue holds more ready messages than this (guardrail)"
    )


class PurgeResult(ActionResult):
    queue: str
    purged: int


class CloseConnectionsParams(_Params):
    user: str | None = Field(None, description="only connections of this user")
    client_name: str | None = Field(None, description="regex on the client-provided connection name")
    idle_seconds: float | None = Field(None, ge=0, description="only connections idle at least this long")
    peer_host: str | None = Field(None, description="client address, or a CIDR such as 10.0.0.0/8")
    vhost: str | None = Field(None, description="only connections to this vhost")
    reason: str = Field("closed by runbook", description="reason shown to the client")
    max_connections: int = Field(20, ge=1, description="refuse if more connections than this match")


class CloseConnectionsResult(ActionResult):
    closed: list[dict[str, Any]]
    count: int


class CanaryParams(_Params):
    queue: str | None = Field(
        None, description="dedicated canary queue to round-trip through; null: a temporary exclusive queue"
    )
    vhost: str = VHOST
    timeout: float = Field(10.0, gt=0, le=300, description="seconds to wait for the canary to come back")
    max_ahead: int = Field(
        100, ge=0, description="refuse if the named queue already holds more messages than this"
    )


class CanaryResult(ActionResult):
    ok: bool
    queue: str
    message_id: str
    confirm_ms: float
    round_trip_ms: float


_BACKUP = (
    "backup file NAME under <data dir>/definitions/ (relative, no '..', no symlinks), e.g. the"
    " definitions-<run id>.json that rabbitmq.export_definitions wrote"
)


class DefinitionsDiffParams(_Params):
    path: str = Field(description=_BACKUP)
    vhost: str | None = Field(None, description="compare only this vhost; null for the whole broker")


class KindDiff(BaseModel):
    kind: str
    in_file: int
    on_broker: int
    to_add: int
    to_change: int
    only_on_broker: int
    added: list[str]
    changed: list[str]
    conflicts: bool


class DefinitionsDiffResult(ActionResult):
    path: str
    sha256: str
    bytes: int
    to_add: int
    to_change: int
    only_on_broker: int
    conflicts: list[str]
    kinds: list[KindDiff]


class ImportDefinitionsParams(_Params):
    path: str = Field(description=_BACKUP)
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="the file's SHA-256 as reviewed (from rabbitmq.diff_definitions): a file changed since"
        " is not imported",
    )
    vhost: str | None = Field(None, description="import into this vhost only; null for the whole broker")


class ImportDefinitionsResult(ActionResult):
    path: str
    sha256: str
    added: int
    changed: int
