"""ctypes bindings to the mock-cluster C API of the librdkafka that confluent-kafka links against:
the shared object, the function signatures, the ApiKey names, the one error type."""

from __future__ import annotations

import ctypes
import glob
import threading
from pathlib import Path

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
