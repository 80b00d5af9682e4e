"""Moved to :mod:`runbook_devtools.kafka_mock` (``runbook drill`` needs it at run time); re-exported
here so tests and benchmarks keep importing it from tests.support, and
``python -m tests.support.kafka_mock`` keeps working."""

from __future__ import annotations

import sys

from runbook_devtools.kafka_mock import (  # noqa: F401 - re-exports
    API_KEYS,
    MockClusterError,
    MockKafkaCluster,
    MockRequest,
    consume_and_commit,
    find_librdkafka,
    main,
    produce_messages,
)

if __name__ == "__main__":
    sys.exit(main())
