"""Benchmark: kafka.consumer_lag for a group over 1,000 partitions on librdkafka's mock cluster.

Prints ONE JSON line: wall time of the action (first call, which builds the clients, and warm calls),
the round trips it reports, the Kafka protocol requests the mock brokers actually received per call,
and, for contrast, the naive way (one committed() and one get_watermark_offsets() per partition).
``--small`` runs 100 partitions (CI).

    .venv/bin/python benchmarks/kafka_lag.py [--small] [--partitions N] [--brokers B] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100 partitions (CI)")
    parser.add_argument("--partitions", type=int, default=None, help="partition count (default 1000)")
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5, help="warm runs after the first")
    parser.add_argument("--messages", type=int, default=5, help="messages produced per partition")
    parser.add_argument("--no-naive", action="store_true", help="skip the per-partition baseline")
    args = parser.parse_args(argv)
    partitions = args.partitions or (100 if args.small else 1000)

    sys.path.insert(0, str(ROOT))  # tests.support.kafka_mock lives in the repo, not the package
    from confluent_kafka import Consumer, TopicPartition

    from runbook.actions import ActionContext, Connections, default_registry, invoke
    from runbook.core.settings import Settings
    from tests.support.kafka_mock import MockKafkaCluster, produce_messages

    topic, group = "plans", "orchestrator-group"
    out: dict[str, Any] = {"benchmark": "kafka_lag", "partitions": partitions, "brokers": args.brokers}
    with MockKafkaCluster(brokers=args.brokers) as kafka:
        kafka.topic_create(topic, partitions)
        t0 = time.perf_counter()
        produce_messages(kafka.bootstraps, topic, dict.fromkeys(range(partitions), args.messages))
        out["setup_produce_s"] = round(time.perf_counter() - t0, 3)
        # the group committed a different position on each partition (some never committed)
        committer = Consumer({"bootstrap.servers": kafka.bootstraps, "group.id": group})
        offsets = [TopicPartition(topic, p, p % (args.messages + 1)) for p in range(partitions) if p % 10]
        committer.commit(offsets=offsets, asynchronous=False)
        committer.close()
        expected_total = sum(
            args.messages - (p % (args.messages + 1)) if p % 10 else args.messages for p in range(partitions)
        )

        registry = default_registry()
        conns = Connections(Settings(kafka_bootstrap_servers=kafka.bootstraps))
        spec = registry["kafka.consumer_lag"]
        params = {"group": group, "topics": [topic]}
        timings, requests = [], []
        result = None
        for _ in range(1 + args.runs):
            kafka.start_request_tracking()
            kafka.clear_requests()
            ctx = ActionContext(conns, deadline=time.monotonic() + 60)
            t0 = time.perf_counter()
            result = invoke(spec, ctx, params)
            timings.append(time.perf_counter() - t0)
            requests.append(kafka.request_counts())
            kafka.stop_request_tracking()
        conns.close()
        assert result is not None
        if result.total_lag != expected_total:
            raise SystemExit(f"wrong total lag {result.total_lag}, expected {expected_total}")
        warm = timings[1:] or timings
        warm_requests = requests[-1]
        out.update(
            wall_ms_first=round(timings[0] * 1000, 1),
            wall_ms_warm_median=round(statistics.median(warm) * 1000, 1),
            wall_ms_warm_min=round(min(warm) * 1000, 1),
            round_trips=result.round_trips,
            calls=result.calls,
            protocol_requests_warm=sum(v for k, v in warm_requests.items() if k != "ApiVersions"),
            protocol_requests_by_api_warm=warm_requests,
            total_lag=result.total_lag,
            partitions_without_commit=result.partitions_without_commit,
        )

        if not args.no_naive:
            consumer = Consumer({"bootstrap.servers": kafka.bootstraps, "group.id": group})
            consumer.list_topics(topic, timeout=10)
            kafka.start_request_tracking()
            kafka.clear_requests()
            t0 = time.perf_counter()
            naive_total = 0
            for p in range(partitions):
                tp = TopicPartition(topic, p)
                committed = consumer.committed([tp], timeout=10)[0].offset
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                naive_total += high - (committed if committed >= 0 else low)
            naive_s = time.perf_counter() - t0
            naive_requests = kafka.request_counts()
            kafka.stop_request_tracking()
            consumer.close()
            out.update(
                naive_wall_ms=round(naive_s * 1000, 1),
                naive_round_trips=2 * partitions,
                naive_protocol_requests=sum(v for k, v in naive_requests.items() if k != "ApiVersions"),
                naive_total_lag=naive_total,
                speedup_vs_naive=round(naive_s / statistics.median(warm), 1),
            )
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
