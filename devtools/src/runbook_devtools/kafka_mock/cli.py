"""``python -m runbook_devtools.kafka_mock``: serve a mock cluster to other processes (drills)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from .cluster import MockKafkaCluster


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
