"""``MockKafkaCluster``: librdkafka's mock cluster as a Python object (lifecycle, topics, brokers
down/up, leadership, injected request errors, request tracking)."""

from __future__ import annotations

import ctypes
import threading
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

from .bindings import _RD_KAFKA_PRODUCER, API_KEYS, MockClusterError, _librdkafka


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
