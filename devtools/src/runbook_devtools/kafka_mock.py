"""A real Kafka protocol peer for tests and drills: librdkafka's mock cluster, driven through ctypes.

Moved here from tests/support so ``runbook drill`` can start one at run time;
tests/support/kafka_mock.py re-exports it.

No real Kafka broker can be installed on these machines (see ../shared/NOTES.md), but the librdkafka
bundled inside the confluent-kafka wheel ships a mock cluster that speaks the Kafka wire protocol
(metadata, produce, fetch, group coordination, offset commit/fetch, list offsets) and exports a C API
to script failures: brokers down/up, leadership moves, injected request errors, request tracking.
``MockKafkaCluster`` wraps that API so tests, playbook tests and game-day drills all drive the same
peer instead of each re-deriving the ctypes signatures.

In-process use::

    with MockKafkaCluster(brokers=3, topics={"plans": 6}) as kafka:
        settings = Settings(kafka_bootstrap_servers=kafka.bootstraps)
        kafka.broker_set_down(2)
        kafka.partition_set_leader("plans", 0, 1)

From another process (a drill starts one and points runbook at it)::

    python -m runbook_devtools.kafka_mock --brokers 3 --topic plans:6 --topic audit:3:2

prints ``KAFKA_BOOTSTRAP_SERVERS=<list>`` on its first line (flushed), then a JSON line describing the
cluster, and serves until SIGTERM/SIGINT. Faults at start come from ``--broker-down``; while it
runs, with ``--control``, lines on stdin ``down N`` / ``up N`` take broker N down or up (each
answered ``ok down N``).

Known limits of the mock (measured, see NOTES.md): no CreateTopics/DeleteTopics/DescribeConfigs/
DescribeGroups/DeleteGroups admin APIs, ListGroups returns nothing, the ISR never shrinks when a broker
goes down, and it reports controller id 0 unless ``set_controller_id`` is called (this class sets 1).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import signal
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import confluent_kafka

# Kafka protocol ApiKeys, for request tracking and error injection.
API_KEYS: dict[int, str] = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    18: "ApiVersions",
    19: "CreateTopics",
    22: "InitProducerId",
    71: "GetTelemetrySubscriptions",
    32: "DescribeConfigs",
    42: "DeleteGroups",
    60: "DescribeCluster",
}

_RD_KAFKA_PRODUCER = 0


class MockClusterError(RuntimeError):
    """A mock-cluster C call failed (the message carries librdkafka's error name)."""


def find_librdkafka() -> Path:
    """The librdkafka shared object confluent-kafka itself links against.

    Loading the same file the ``cimpl`` extension uses means ctypes gets the already-loaded copy, so the
    mock cluster and the Python clients run on one librdkafka build (the wheel bundles it under
    ``confluent_kafka.libs``; a system-wide build is the fallback for source installs).
    """
    pkg_dir = Path(confluent_kafka.__file__).resolve().parent
    patterns = [
        str(pkg_dir.parent / "confluent_kafka.libs" / "librdkafka*.so*"),
        str(pkg_dir / ".libs" / "librdkafka*.so*"),
        str(pkg_dir / "librdkafka*.so*"),
        str(pkg_dir.parent / "confluent_kafka.libs" / "librdkafka*.dylib"),
    ]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    import ctypes.util

    system = ctypes.util.find_library("rdkafka")
    if system:
        return Path(system)
    raise MockClusterError(f"no librdkafka shared object found next to {pkg_dir}")


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(find_librdkafka()))
    vp, c_int, i32, i16, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int32, ctypes.c_int16, ctypes.c_int64
    sigs: dict[str, tuple[object, list[object]]] = {
        "rd_kafka_conf_new": (vp, []),
        "rd_kafka_conf_set": (
            c_int,
            [vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t],
        ),
        "rd_kafka_new": (vp, [c_int, vp, ctypes.c_char_p, ctypes.c_size_t]),
        "rd_kafka_destroy": (None, [vp]),
        "rd_kafka_err2name": (ctypes.c_char_p, [c_int]),
        "rd_kafka_mock_cluster_new": (vp, [vp, c_int]),
        "rd_kafka_mock_cluster_destroy": (None, [vp]),
        "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [vp]),
        "rd_kafka_mock_topic_create": (c_int, [vp, ctypes.c_char_p, c_int, c_int]),
        "rd_kafka_mock_partition_set_leader": (c_int, [vp, ctypes.c_char_p, i32, i32]),
        "rd_kafka_mock_partition_set_follower": (c_int, [vp, ctypes.c_char_p, i32, i32]),
        "rd_kafka_mock_broker_set_down": (c_int, [vp, i32]),
        "rd_kafka_mock_broker_set_up": (c_int, [vp, i32]),
        "rd_kafka_mock_broker_set_rtt": (c_int, [vp, i32, c_int]),
        "rd_kafka_mock_set_controller_id": (None, [vp, i32]),
        "rd_kafka_mock_coordinator_set": (c_int, [vp, ctypes.c_char_p, ctypes.c_char_p, i32]),
        "rd_kafka_mock_push_request_errors_array": (None, [vp, i16, ctypes.c_size_t, ctypes.POINTER(c_int)]),
        "rd_kafka_mock_clear_request_errors": (None, [vp, i16]),
        "rd_kafka_mock_start_request_tracking": (None, [vp]),
        "rd_kafka_mock_stop_request_tracking": (None, [vp]),
        "rd_kafka_mock_clear_requests": (None, [vp]),
        "rd_kafka_mock_get_requests": (ctypes.POINTER(vp), [vp, ctypes.POINTER(ctypes.c_size_t)]),
        "rd_kafka_mock_request_api_key": (i16, [vp]),
        "rd_kafka_mock_request_id": (i32, [vp]),
        "rd_kafka_mock_request_timestamp": (i64, [vp]),
        "rd_kafka_mock_request_destroy_array": (None, [ctypes.POINTER(vp), ctypes.c_size_t]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _librdkafka() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _load()
        return _lib


@dataclass(frozen=True)
class MockRequest:
    """One protocol request a mock broker received (request tracking)."""

    broker_id: int
    api_key: int
    timestamp_us: int

    @property
    def api(self) -> str:
        return API_KEYS.get(self.api_key, f"ApiKey{self.api_key}")


class MockKafkaCluster:
    """librdkafka's mock Kafka cluster with ``brokers`` brokers (ids 1..N) on loopback ports.

    ``topics`` maps name -> partition count (replication factor = min(3, brokers) unless
    ``replication_factor`` says otherwise). The controller is set to broker 1 because the mock's
    default of 0 names no broker and makes controller-bound admin calls time out.
    """

    def __init__(
        self,
        brokers: int = 3,
        topics: dict[str, int] | None = None,
        *,
        replication_factor: int | None = None,
        controller_id: int = 1,
    ) -> None:
        if brokers < 1:
            raise ValueError("a mock cluster needs at least one broker")
        self.broker_count = brokers
        self.default_replication = replication_factor or min(3, brokers)
        self._initial_topics = dict(topics or {})
        self._controller_id = controller_id
        self._rk: int | None = None
        self._mc: int | None = None
        self._bootstraps = ""
        self._lock = threading.Lock()

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> MockKafkaCluster:
        """Create the handle and the cluster; idempotent."""
        if self._mc is not None:
            return self
        lib = _librdkafka()
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # The handle exists only for the mock's bookkeeping: keep its own logging quiet.
        lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, len(errstr))
        lib.rd_kafka_conf_set(conf, b"client.id", b"runbook-mock-cluster", errstr, len(errstr))
        rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, len(errstr))
        if not rk:
            raise MockClusterError(f"rd_kafka_new failed: {errstr.value.decode(errors='replace')}")
        mc = lib.rd_kafka_mock_cluster_new(rk, self.broker_count)
        if not mc:
            lib.rd_kafka_destroy(rk)
            raise MockClusterError("rd_kafka_mock_cluster_new failed")
        self._rk, self._mc = rk, mc
        self._bootstraps = lib.rd_kafka_mock_cluster_bootstraps(mc).decode()
        if self._controller_id:
            self.set_controller_id(self._controller_id)
        for name, partitions in self._initial_topics.items():
            self.topic_create(name, partitions)
        return self

    def close(self) -> None:
        """Destroy the cluster (closing its listeners) and then the handle that owns it."""
        with self._lock:
            mc, rk, self._mc, self._rk = self._mc, self._rk, None, None
        lib = _librdkafka()
        if mc:
            lib.rd_kafka_mock_cluster_destroy(mc)
        if rk:
            lib.rd_kafka_destroy(rk)

    def __enter__(self) -> MockKafkaCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:  # last resort: never leak listening sockets past the object's life
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # inspection --------------------------------------------------------------------------------
    @property
    def bootstraps(self) -> str:
        """``bootstrap.servers`` (``127.0.0.1:PORT,...``) for clients and KAFKA_BOOTSTRAP_SERVERS."""
        self._handle()
        return self._bootstraps

    def broker_ids(self) -> list[int]:
        return list(range(1, self.broker_count + 1))

    # scripting ---------------------------------------------------------------------------------
    def topic_create(self, topic: str, partitions: int, replication_factor: int | None = None) -> None:
        """Create a topic (the mock does not implement the CreateTopics admin API)."""
        rf = replication_factor or self.default_replication
        self._check(
            _librdkafka().rd_kafka_mock_topic_create(self._handle(), topic.encode(), partitions, rf),
            f"topic_create({topic!r}, {partitions}, {rf})",
        )

    def broker_set_down(self, broker_id: int) -> None:
        """Disconnect the broker and refuse new connections. Does NOT move leadership (do it yourself)."""
        self._check(_librdkafka().rd_kafka_mock_broker_set_down(self._handle(), broker_id), "broker_set_down")

    def broker_set_up(self, broker_id: int) -> None:
        self._check(_librdkafka().rd_kafka_mock_broker_set_up(self._handle(), broker_id), "broker_set_up")

    def broker_set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of the broker (-1: all brokers) by ``rtt_ms``."""
        self._check(
            _librdkafka().rd_kafka_mock_broker_set_rtt(self._handle(), broker_id, rtt_ms), "broker_set_rtt"
        )

    def partition_set_leader(self, topic: str, partition: int, broker_id: int) -> None:
        """Move leadership; ``broker_id=-1`` makes the partition leaderless (offline)."""
        self._check(
            _librdkafka().rd_kafka_mock_partition_set_leader(
                self._handle(), topic.encode(), partition, broker_id
            ),
            f"partition_set_leader({topic!r}, {partition}, {broker_id})",
        )

    def partition_set_follower(self, topic: str, partition: int, broker_id: int) -> None:
        """Set the preferred read replica (follower fetching)."""
        self._check(
            _librdkafka().rd_kafka_mock_partition_set_follower(
                self._handle(), topic.encode(), partition, broker_id
            ),
            "partition_set_follower",
        )

    def move_leadership_off(self, broker_id: int, topics: list[str] | None = None) -> int:
        """Failover helper: give every partition led by ``broker_id`` to the next broker up the ring.

        The mock does not elect leaders by itself when a broker goes down; this mimics the controller.
        Returns how many partitions moved. Reads leadership through an AdminClient metadata call.
        """
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstraps, "socket.timeout.ms": 5000})
        md = admin.list_topics(timeout=10)
        moved = 0
        others = [b for b in self.broker_ids() if b != broker_id]
        if not others:
            return 0
        for name, tmd in md.topics.items():
            if topics is not None and name not in topics:
                continue
            for pid, pmd in tmd.partitions.items():
                if pmd.leader == broker_id:
                    candidates = [r for r in pmd.replicas if r != broker_id] or others
                    self.partition_set_leader(name, pid, candidates[pid % len(candidates)])
                    moved += 1
        return moved

    def set_controller_id(self, broker_id: int) -> None:
        """Which broker Metadata names as controller (the mock's default 0 breaks admin calls)."""
        _librdkafka().rd_kafka_mock_set_controller_id(self._handle(), broker_id)

    def coordinator_set(self, key_type: str, key: str, broker_id: int) -> None:
        """Pin the group ("group") or transaction ("transaction") coordinator of ``key``."""
        self._check(
            _librdkafka().rd_kafka_mock_coordinator_set(
                self._handle(), key_type.encode(), key.encode(), broker_id
            ),
            "coordinator_set",
        )

    def push_request_errors(self, api_key: int, *errors: int) -> None:
        """The next ``len(errors)`` requests of ``api_key`` fail with these error codes, in order."""
        arr = (ctypes.c_int * len(errors))(*errors)
        _librdkafka().rd_kafka_mock_push_request_errors_array(self._handle(), api_key, len(errors), arr)

    def clear_request_errors(self, api_key: int) -> None:
        _librdkafka().rd_kafka_mock_clear_request_errors(self._handle(), api_key)

    # request tracking: how many protocol round trips a client really made -------------------------
    def start_request_tracking(self) -> None:
        _librdkafka().rd_kafka_mock_start_request_tracking(self._handle())

    def stop_request_tracking(self) -> None:
        _librdkafka().rd_kafka_mock_stop_request_tracking(self._handle())

    def clear_requests(self) -> None:
        _librdkafka().rd_kafka_mock_clear_requests(self._handle())

    def requests(self) -> list[MockRequest]:
        """Every request received since tracking started (or the last ``clear_requests``)."""
        lib = _librdkafka()
        count = ctypes.c_size_t(0)
        arr = lib.rd_kafka_mock_get_requests(self._handle(), ctypes.byref(count))
        if not arr:
            return []
        try:
            return [
                MockRequest(
                    broker_id=lib.rd_kafka_mock_request_id(arr[i]),
                    api_key=lib.rd_kafka_mock_request_api_key(arr[i]),
                    timestamp_us=lib.rd_kafka_mock_request_timestamp(arr[i]),
                )
                for i in range(count.value)
            ]
        finally:
            lib.rd_kafka_mock_request_destroy_array(arr, count.value)

    def request_counts(self) -> dict[str, int]:
        """Requests received per API name (e.g. ``{"ListOffsets": 3, "OffsetFetch": 1}``)."""
        return dict(Counter(r.api for r in self.requests()))

    # internals ---------------------------------------------------------------------------------
    def _handle(self) -> int:
        if self._mc is None:
            raise MockClusterError(
                "mock cluster is not started (use it as a context manager or call start())"
            )
        return self._mc

    @staticmethod
    def _check(err: int, what: str) -> None:
        if err:
            name = _librdkafka().rd_kafka_err2name(err)
            raise MockClusterError(f"{what} failed: {name.decode() if name else err}")


def produce_messages(
    bootstraps: str, topic: str, per_partition: dict[int, int], *, timestamp_ms: int | None = None
) -> None:
    """Produce ``per_partition[p]`` small messages to each partition (acks=all) and wait for them.

    ``timestamp_ms`` stamps message i of a partition with ``timestamp_ms + i`` (for time-based resets).
    """
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstraps, "acks": "all", "linger.ms": 5})
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for partition, count in per_partition.items():
        for i in range(count):
            kwargs: dict[str, object] = {"partition": partition, "on_delivery": delivered}
            if timestamp_ms is not None:
                kwargs["timestamp"] = timestamp_ms + i
            producer.produce(topic, value=f"m{partition}-{i}".encode(), **kwargs)
            producer.poll(0)
    left = producer.flush(30)
    if left or failures:
        raise MockClusterError(f"produce to {topic}: {left} undelivered, errors {failures[:3]}")


def consume_and_commit(bootstraps: str, group: str, topic: str, per_partition: dict[int, int]) -> None:
    """Read exactly ``per_partition[p]`` messages from the start of each partition as ``group`` using
    ``assign()`` (no group membership, like a standalone consumer), commit what was read, close.
    """
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstraps, "group.id": group, "enable.auto.commit": False})
    try:
        wanted = {p: n for p, n in per_partition.items() if n > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        seen = dict.fromkeys(wanted, 0)
        deadline = time.monotonic() + 30
        while any(seen[p] < wanted[p] for p in wanted) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            p = msg.partition()
            if seen[p] < wanted[p]:
                seen[p] += 1
                if seen[p] == wanted[p]:
                    consumer.pause([TopicPartition(topic, p)])
        if seen != wanted:
            raise MockClusterError(f"consumed {seen}, wanted {wanted}")
        consumer.commit(offsets=[TopicPartition(topic, p, n) for p, n in wanted.items()], asynchronous=False)
    finally:
        consumer.close()


def _parse_topic(spec: str) -> tuple[str, int, int | None]:
    parts = spec.split(":")
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"--topic wants NAME[:PARTITIONS[:REPLICATION]], got {spec!r}")
    try:
        partitions = int(parts[1]) if len(parts) > 1 else 1
        rf = int(parts[2]) if len(parts) > 2 else None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--topic {spec!r}: {exc}") from None
    return parts[0], partitions, rf


def main(argv: list[str] | None = None) -> int:
    """Serve a mock cluster until SIGTERM/SIGINT; first stdout line is ``KAFKA_BOOTSTRAP_SERVERS=...``."""
    parser = argparse.ArgumentParser(
        prog="python -m runbook_devtools.kafka_mock", description="Run librdkafka's mock Kafka cluster."
    )
    parser.add_argument("--brokers", type=int, default=3, help="number of brokers (ids 1..N)")
    parser.add_argument(
        "--topic", action="append", type=_parse_topic, default=[], metavar="NAME[:PARTITIONS[:RF]]"
    )
    parser.add_argument("--broker-down", type=int, action="append", default=[], help="start with broker down")
    parser.add_argument("--controller", type=int, default=1, help="controller broker id")
    parser.add_argument(
        "--control", action="store_true", help="read 'down N' / 'up N' lines on stdin; exit when it closes"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with MockKafkaCluster(args.brokers, controller_id=args.controller) as cluster:
        for name, partitions, rf in args.topic:
            cluster.topic_create(name, partitions, rf)
        for broker in args.broker_down:
            cluster.broker_set_down(broker)
        print(f"KAFKA_BOOTSTRAP_SERVERS={cluster.bootstraps}", flush=True)
        info = {
            "bootstraps": cluster.bootstraps,
            "brokers": cluster.broker_ids(),
            "controller": args.controller,
            "topics": {name: partitions for name, partitions, _ in args.topic},
            "down": args.broker_down,
            "pid": os.getpid(),
        }
        print(json.dumps(info), flush=True)
        if args.control:
            threading.Thread(target=_control, args=(cluster, stop), daemon=True).start()
        while not stop.wait(0.5):
            pass
    return 0


def _control(cluster: MockKafkaCluster, stop: threading.Event) -> None:
    """``down N`` / ``up N`` lines on stdin change a broker while the cluster serves (drills)."""
    for line in sys.stdin:
        verb, _, arg = line.strip().partition(" ")
        try:
            broker = int(arg)
            if verb == "down":
                cluster.broker_set_down(broker)
            elif verb == "up":
                cluster.broker_set_up(broker)
            else:
                raise ValueError(f"unknown command {verb!r}")
            print(f"ok {verb} {broker}", flush=True)
        except Exception as exc:  # noqa: BLE001 - report and keep serving
            print(f"error {exc}", flush=True)
    stop.set()  # stdin closed: the parent is gone


if __name__ == "__main__":
    sys.exit(main())
