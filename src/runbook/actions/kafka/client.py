"""Kafka connections and the batched offset look-ups the Kafka actions share.

The one module of the actions layer that imports confluent-kafka: the other Kafka modules use the
vendor types they need under the names in ``__all__`` (``TopicPartition``, ``KafkaError``,
``OffsetSpec``...). The helpers
take a deadline-derived ``timeout`` on every call and translate librdkafka failures into the action
error types, so an unreachable cluster becomes ``BackendUnavailable`` naming kafka and the real cause
(captured from librdkafka's error callback: "Connection refused", "Failed to resolve ...") instead of
librdkafka's generic "Broker transport failure", and never hangs past the step's timeout.

Round trips are counted per *admin call*: one ``list_offsets`` for 1,000 partitions is one round trip
even though librdkafka sends one ListOffsets request to each partition leader, in parallel (latency of
one round trip, one request per leader broker). The benchmark measures the protocol requests too.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without marking them exported (mypy refuses the import
# from there); the modules that define them, which the package's own stubs (cimpl.pyi) import from.
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.admin._metadata import ClusterMetadata

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable
from runbook.core.redact import redact
from runbook.core.settings import Settings

BACKEND = "kafka"
CONNECTION_KEY = "kafka"
UNREACHABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
    }
)
TPKey = tuple[str, int]

__all__ = [
    "BACKEND",
    "CONNECTION_KEY",
    "ConsumerGroupState",
    "ConsumerGroupTopicPartitions",
    "KafkaClients",
    "KafkaError",
    "KafkaException",
    "OffsetSpec",
    "RoundTrips",
    "TPKey",
    "TopicPartition",
    "clients_of",
    "committed_offsets",
    "earliest",
    "error_text",
    "kafka_clients",
    "latest",
    "list_offsets",
    "metadata",
    "partitions_of",
    "read_at",
    "translate",
    "unavailable",
    "wait_all",
]


@dataclass
class RoundTrips:
    """Admin calls an action made, in order, for the result's ``round_trips``/``calls`` fields."""

    calls: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.calls.append(name)

    @property
    def count(self) -> int:
        return len(self.calls)


class KafkaClients:
    """The Kafka clients of one run: a lazily built AdminClient and Producer, and fresh Consumers.

    Admin and producer are shared by every Kafka step of a run (``ctx.connections`` caches this
    object); consumers are built per use because each one joins or assigns partitions and must be
    closed by the action that made it (the canary does so in ``finally``).
    """

    def __init__(self, bootstrap_servers: str, extra_config: Mapping[str, Any] | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._extra = dict(extra_config or {})
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._errors: deque[str] = deque(maxlen=8)
        self._lock = threading.Lock()

    def _on_error(self, err: KafkaError) -> None:
        # _ALL_BROKERS_DOWN says only "1/1 brokers are down"; the transport error before it says why.
        if err.code() != KafkaError._ALL_BROKERS_DOWN or not self._errors:
            self._errors.append(err.str())

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Client configuration shared by all three client kinds, plus ``overrides``."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": "runbook",
            "socket.connection.setup.timeout.ms": 10_000,
            "log.connection.close": False,
            "error_cb": self._on_error,
        }
        conf.update(self._extra)
        conf.update(overrides)
        return conf

    @property
    def admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient(self.config())
            return self._admin

    def producer(self) -> Producer:
        """A shared producer with acks=all: a canary acknowledged by the leader only proves little."""
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.config(acks="all", **{"linger.ms": 0}))
            return self._producer

    def consumer(self, **overrides: Any) -> Consumer:
        """A new consumer the caller must close. Never commits unless the caller turns it on."""
        conf = self.config(**{"group.id": f"runbook-{uuid.uuid4().hex[:12]}", "enable.auto.commit": False})
        conf.update(overrides)
        return Consumer(conf)

    def last_error(self) -> str | None:
        """The latest client-level error librdkafka reported (served by ``poll``), redacted."""
        for client in (self._admin, self._producer):
            if client is not None:
                try:
                    client.poll(0)
                except Exception:  # noqa: BLE001 - diagnostics only
                    pass
        return redact(self._errors[-1]) if self._errors else None

    def close(self) -> None:
        """Flush what the producer still holds (bounded) and drop the clients."""
        with self._lock:
            producer, self._producer, self._admin = self._producer, None, None
        if producer is not None:
            producer.flush(5)


def kafka_clients(settings: Settings) -> KafkaClients:
    """Connection factory for ``ctx.connections.get(CONNECTION_KEY, kafka_clients)``.

    ``settings.extra`` entries named ``kafka.<librdkafka property>`` (e.g. ``kafka.security.protocol``)
    are passed through, so SASL/TLS clusters need no code change.
    """
    if not settings.kafka_bootstrap_servers:
        raise ActionError(
            "KAFKA_BOOTSTRAP_SERVERS is not set: point it at the cluster (host:port[,host:port...])",
            backend=BACKEND,
        )
    extra = {k[len("kafka.") :]: v for k, v in settings.extra.items() if k.startswith("kafka.")}
    return KafkaClients(settings.kafka_bootstrap_servers, extra)


def clients_of(ctx: ActionContext) -> KafkaClients:
    """The run's Kafka clients (shared by every Kafka step of the run)."""
    return ctx.connections.get(CONNECTION_KEY, kafka_clients)


def unavailable(clients: KafkaClients, what: str, cause: object) -> BackendUnavailable:
    """A BackendUnavailable naming the bootstrap servers and the most specific cause known."""
    detail = clients.last_error() or str(cause)
    return BackendUnavailable(
        redact(f"cannot reach brokers {clients.bootstrap_servers} ({what}): {detail}"), backend=BACKEND
    )


def translate(clients: KafkaClients, what: str, exc: BaseException) -> ActionError:
    """Map a client exception to the action error an operator should read."""
    if isinstance(exc, ActionError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err: KafkaError = exc.args[0]
        if err.code() in UNREACHABLE_CODES:
            return unavailable(clients, what, err.str())
        return ActionError(redact(f"{what} failed: {err.name()}: {err.str()}"), backend=BACKEND)
    if isinstance(exc, concurrent.futures.TimeoutError):
        return unavailable(clients, what, "no answer before the step's timeout")
    return ActionError(redact(f"{what} failed: {type(exc).__name__}: {exc}"), backend=BACKEND)


def error_text(exc: BaseException) -> str:
    """Short per-partition error text (``LEADER_NOT_AVAILABLE``) for result rows."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].name()
    if isinstance(exc, KafkaError):
        return exc.name()
    return type(exc).__name__


def wait_all(
    clients: KafkaClients, futures: Mapping[Any, concurrent.futures.Future[Any]], timeout: float, what: str
) -> dict[Any, Any]:
    """Results (or the exception, per key) of admin futures; BackendUnavailable if any is still open."""
    done, pending = concurrent.futures.wait(list(futures.values()), timeout=timeout)
    if pending:
        for fut in pending:
            fut.cancel()
        raise unavailable(clients, what, f"no answer within {timeout:.1f}s")
    out: dict[Any, Any] = {}
    for key, fut in futures.items():
        exc = fut.exception()
        out[key] = exc if exc is not None else fut.result()
    return out


def metadata(clients: KafkaClients, timeout: float, trips: RoundTrips) -> ClusterMetadata:
    """Metadata for every topic in one request (asking for one topic could auto-create it)."""
    trips.add("metadata")
    try:
        return clients.admin.list_topics(timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, "metadata request", exc) from None


def partitions_of(md: ClusterMetadata, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, sorted; ActionError naming the topics that do not exist."""
    topics = list(dict.fromkeys(topics))
    missing = [t for t in topics if t not in md.topics or md.topics[t].error is not None]
    if missing:
        raise ActionError(f"topic(s) not found: {', '.join(sorted(missing))}", backend=BACKEND)
    return [TopicPartition(t, p) for t in topics for p in sorted(md.topics[t].partitions)]


def committed_offsets(
    clients: KafkaClients,
    group: str,
    partitions: list[TopicPartition] | None,
    timeout: float,
    trips: RoundTrips,
) -> dict[TPKey, int | None]:
    """A group's committed offsets in ONE OffsetFetch (None: nothing committed for that partition).

    With ``partitions=None`` the broker is asked for every partition the group committed; some
    brokers (librdkafka's mock among them) answer that form with nothing, so callers fall back to
    explicit partitions when this comes back empty.
    """
    trips.add("offset_fetch" if partitions is not None else "offset_fetch(all)")
    request = (
        ConsumerGroupTopicPartitions(group, partitions)
        if partitions is not None
        else (ConsumerGroupTopicPartitions(group))
    )
    try:
        futures = clients.admin.list_consumer_group_offsets([request], request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, "committed offsets", exc) from None
    result = wait_all(clients, futures, timeout + 1, "committed offsets")[group]
    if isinstance(result, BaseException):
        raise translate(clients, f"committed offsets of group {group!r}", result)
    out: dict[TPKey, int | None] = {}
    for tp in result.topic_partitions or []:
        if tp.error is not None:
            raise ActionError(
                f"committed offset of {tp.topic}[{tp.partition}] for group {group!r}: {tp.error.str()}",
                backend=BACKEND,
            )
        out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
    return out


def earliest() -> OffsetSpec:
    """``OffsetSpec.earliest()``: a partition's log-start offset (the low watermark)."""
    spec: Callable[[], OffsetSpec] = OffsetSpec.earliest  # unannotated in confluent-kafka
    return spec()


def latest() -> OffsetSpec:
    """``OffsetSpec.latest()``: a partition's log-end offset (the high watermark)."""
    spec: Callable[[], OffsetSpec] = OffsetSpec.latest  # unannotated in confluent-kafka
    return spec()


def list_offsets(
    clients: KafkaClients,
    partitions: list[TopicPartition],
    spec: OffsetSpec,
    timeout: float,
    trips: RoundTrips,
    name: str,
) -> dict[TPKey, int | str]:
    """Offsets for all ``partitions`` in one admin call: offset per partition, or its error name.

    A partition whose leader is unavailable yields its error (e.g. ``LEADER_NOT_AVAILABLE``) rather than
    failing the whole look-up: one bad partition must not hide the other 999.
    """
    if not partitions:
        return {}
    trips.add(f"list_offsets({name})")
    request = {TopicPartition(tp.topic, tp.partition): spec for tp in partitions}
    try:
        futures = clients.admin.list_offsets(request, request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, f"list offsets ({name})", exc) from None
    results = wait_all(clients, futures, timeout + 1, f"list offsets ({name})")
    out: dict[TPKey, int | str] = {}
    for tp, res in results.items():
        key = (tp.topic, tp.partition)
        if isinstance(res, BaseException):
            if isinstance(res, KafkaException) and res.args[0].code() in UNREACHABLE_CODES:
                # every partition failing on transport means the cluster is gone, not one leader
                if all(isinstance(r, BaseException) for r in results.values()):
                    raise translate(clients, f"list offsets ({name})", res)
            out[key] = error_text(res)
        else:
            out[key] = res.offset
    return out


def _headers(raw: Any) -> list[tuple[str, bytes | None]]:
    """(name, raw value) pairs; values are bytes or None in confluent-kafka."""
    out: list[tuple[str, bytes | None]] = []
    for pair in raw or []:
        name, value = pair[0], pair[1]
        out.append((str(name), value if isinstance(value, bytes) or value is None else str(value).encode()))
    return out


def _share(possible: Mapping[TPKey, int], max_messages: int) -> dict[TPKey, int]:
    """Messages to read per partition, round robin: a cut sample still covers every partition."""
    wanted: dict[TPKey, int] = {}
    left = min(max_messages, sum(possible.values()))
    while left > 0:
        for key, n in possible.items():
            if left > 0 and wanted.get(key, 0) < n:
                wanted[key] = wanted.get(key, 0) + 1
                left -= 1
    return wanted


def _row(msg: Any, key: TPKey) -> dict[str, Any]:
    """A message's metadata; the key and value are measured, never kept."""
    kind, stamp = msg.timestamp()
    k, v = msg.key(), msg.value()
    return {
        "topic": key[0],
        "partition": key[1],
        "offset": msg.offset(),
        "timestamp_ms": stamp if kind != 0 and stamp >= 0 else None,
        "key_size": len(k) if k is not None else None,
        "value_size": len(v) if v is not None else None,
        "headers": _headers(msg.headers()),
    }


def read_at(
    clients: KafkaClients,
    starts: Mapping[TPKey, tuple[int, int]],
    per_partition: int,
    max_messages: int,
    seconds: float,
    trips: RoundTrips,
) -> tuple[list[dict[str, Any]], bool]:
    """Read up to ``per_partition`` messages from each ``(topic, partition) -> (offset, high)``.

    A reader outside the group: ``assign()`` (no join, no rebalance of the real consumers) under a
    throw-away group id, auto-commit and offset store off, so nothing is ever committed; closed
    before returning. Returns metadata only (sizes, timestamp, header names with their raw values
    for the caller to pick retry counts from, never kept further) and whether every wanted message
    was read within ``max_messages`` and ``seconds``.
    """
    possible = {k: min(per_partition, max(0, h - o)) for k, (o, h) in sorted(starts.items())}
    wanted = _share(possible, max_messages)
    if not wanted:
        return [], True
    trips.add("fetch(head)")
    # A committed offset already removed by retention starts at the log start (as the group's own
    # earliest reset would): the rows then show the offsets actually read, never a hang on errors.
    consumer = clients.consumer(**{"enable.auto.offset.store": False, "auto.offset.reset": "earliest"})
    out: list[dict[str, Any]] = []
    seen = dict.fromkeys(wanted, 0)
    try:
        consumer.assign([TopicPartition(t, p, starts[(t, p)][0]) for (t, p) in wanted])
        deadline = time.monotonic() + seconds
        while any(seen[k] < wanted[k] for k in wanted) and time.monotonic() < deadline:
            msg = consumer.poll(min(0.2, max(0.01, deadline - time.monotonic())))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() in UNREACHABLE_CODES:
                    raise unavailable(clients, "read head messages", err.str())
                continue
            key = (str(msg.topic()), int(msg.partition() or 0))
            if key not in seen or seen[key] >= wanted[key]:
                continue
            seen[key] += 1
            if seen[key] == wanted[key]:
                consumer.pause([TopicPartition(key[0], key[1])])
            out.append(_row(msg, key))
    except ActionError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, "read head messages", exc) from None
    finally:
        consumer.close()
    complete = seen == wanted and wanted == {k: n for k, n in possible.items() if n}
    out.sort(key=lambda m: (m["topic"], m["partition"], m["offset"]))
    return out, complete
