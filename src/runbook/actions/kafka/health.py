"""Cluster health judged from one Metadata response.

Kept apart from the network code so the judgement can be tested against recorded metadata of a real
cluster too: librdkafka's mock never shrinks the ISR when a broker dies, so the under-replicated path
is only reachable with a real cluster's response shape (see tests/actions/test_kafka_health.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LIST_CAP = 100  # rows per list in a result; counts stay exact


@dataclass
class PartitionIssue:
    topic: str
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    reason: str

    def row(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "leader": self.leader,
            "replicas": self.replicas,
            "isr": self.isr,
            "reason": self.reason,
        }


@dataclass
class Health:
    brokers: list[dict[str, Any]]
    controller_id: int | None
    topic_count: int
    partition_count: int
    under_replicated: list[PartitionIssue] = field(default_factory=list)
    offline: list[PartitionIssue] = field(default_factory=list)
    missing_brokers: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def assess(
    md: Any,
    *,
    expected_brokers: int | None = None,
    topics: list[str] | None = None,
    include_internal: bool = True,
) -> Health:
    """Judge a ``ClusterMetadata`` (live or recorded).

    - offline: no leader (-1), or the leader is a broker missing from the metadata's broker list
      (a real controller would move it; until it does, nobody can produce to or fetch from it);
    - under-replicated: ``len(isr) < len(replicas)`` (Kafka's own definition), or an ISR member that is
      not a registered broker (the mock keeps dead brokers in the ISR; a real cluster does so until
      ``replica.lag.time.max.ms`` passes), so the finding does not wait for the controller;
    - missing brokers: ids named as replicas that are not registered, and fewer brokers than expected;
    - controller: the metadata must name a registered broker.
    """
    live = {b.id for b in md.brokers.values()}
    brokers = [
        {"id": b.id, "host": b.host, "port": b.port} for b in sorted(md.brokers.values(), key=lambda b: b.id)
    ]
    controller = md.controller_id if md.controller_id is not None and md.controller_id >= 0 else None
    selected = {
        name: tmd
        for name, tmd in md.topics.items()
        if (topics is None or name in topics) and (include_internal or not name.startswith("__"))
    }
    health = Health(
        brokers=brokers,
        controller_id=controller,
        topic_count=len(selected),
        partition_count=sum(len(t.partitions) for t in selected.values()),
    )
    referenced: set[int] = set()
    for name in sorted(selected):
        tmd = selected[name]
        if tmd.error is not None:
            health.problems.append(
                f"topic {name}: {tmd.error.str() if hasattr(tmd.error, 'str') else tmd.error}"
            )
        for pid in sorted(tmd.partitions):
            p = tmd.partitions[pid]
            referenced.update(p.replicas)
            _judge_partition(health, name, pid, p, live)
    health.missing_brokers = sorted(referenced - live)
    if controller is None or controller not in live:
        health.problems.append(f"no active controller (metadata names {md.controller_id})")
    if health.missing_brokers:
        health.problems.append(
            f"broker(s) {health.missing_brokers} named as replicas but not registered "
            "(down or decommissioned)"
        )
    if expected_brokers is not None and len(live) < expected_brokers:
        health.problems.append(f"{len(live)} of {expected_brokers} expected brokers registered")
    if health.offline:
        health.problems.append(f"{len(health.offline)} offline partition(s): {_first(health.offline)}")
    if health.under_replicated:
        health.problems.append(
            f"{len(health.under_replicated)} under-replicated partition(s): {_first(health.under_replicated)}"
        )
    return health


def _judge_partition(health: Health, topic: str, pid: int, p: Any, live: set[int]) -> None:
    """Add one partition's offline / under-replicated finding (if any) to ``health``."""
    replicas, isr = list(p.replicas), list(p.isrs)
    if p.leader < 0:
        health.offline.append(PartitionIssue(topic, pid, p.leader, replicas, isr, "no leader"))
    elif p.leader not in live:
        health.offline.append(
            PartitionIssue(topic, pid, p.leader, replicas, isr, f"leader {p.leader} is not a live broker")
        )
    dead_in_isr = [b for b in isr if b not in live]
    if len(isr) < len(replicas):
        out = [b for b in replicas if b not in isr]
        health.under_replicated.append(
            PartitionIssue(topic, pid, p.leader, replicas, isr, f"replicas {out} out of sync")
        )
    elif dead_in_isr:
        health.under_replicated.append(
            PartitionIssue(topic, pid, p.leader, replicas, isr, f"ISR members {dead_in_isr} not live")
        )


def _first(issues: list[PartitionIssue], n: int = 5) -> str:
    shown = ", ".join(f"{i.topic}[{i.partition}]" for i in issues[:n])
    return shown + (f" and {len(issues) - n} more" if len(issues) > n else "")
