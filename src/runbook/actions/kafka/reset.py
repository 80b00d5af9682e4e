"""Consumer-group offset resets: the plan (current and target offset per partition, and who is in
the group, read-only) and its execution behind ``kafka.reset_offsets``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from runbook.actions.context import ActionContext, ActionError, BackendUnavailable, GuardrailRefused
from runbook.actions.kafka.client import (
    BACKEND,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaClients,
    OffsetSpec,
    RoundTrips,
    TopicPartition,
    TPKey,
    clients_of,
    committed_offsets,
    earliest,
    error_text,
    latest,
    list_offsets,
    metadata,
    partitions_of,
    translate,
    wait_all,
)
from runbook.actions.registry import ActionResult

# Errors with which a group coordinator refuses an admin (generation -1) offset commit because the
# group is not empty: the broker-side proof of active members when DescribeGroups is unavailable.
MEMBER_REFUSALS = {"UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS", "FENCED_INSTANCE_ID"}


class ResetParams(BaseModel):
    model_config = {"extra": "forbid"}

    group: str = Field(min_length=1, description="consumer group whose offsets move")
    topic: str = Field(min_length=1, description="topic whose partitions are reset")
    to: Literal["earliest", "latest", "timestamp", "offset"] = Field(description="where to move the offsets")
    value: int | None = Field(
        None, description="epoch milliseconds for to=timestamp; the offset for to=offset"
    )
    partitions: list[int] | None = Field(None, description="only these partitions (default: all)")
    allow_new_group: bool = Field(False, description="allow a group with no committed offsets on the topic")

    @model_validator(mode="after")
    def _value_matches_target(self) -> ResetParams:
        if self.to in ("timestamp", "offset") and self.value is None:
            raise ValueError(f"to={self.to} needs a value")
        if self.to in ("earliest", "latest") and self.value is not None:
            raise ValueError(f"to={self.to} takes no value")
        return self


class OffsetMove(BaseModel):
    partition: int
    old: int | None
    new: int
    low_watermark: int
    high_watermark: int
    note: str = ""


class Membership(BaseModel):
    status: Literal["empty", "active", "unknown"]
    members: int | None = None
    state: str | None = None
    detail: str = ""


class ResetPlan(BaseModel):
    group: str
    topic: str
    target: str
    moves: list[OffsetMove]
    membership: Membership
    round_trips: int

    def render(self) -> str:
        changing = sum(1 for m in self.moves if m.old != m.new)
        lag_after = sum(m.high_watermark - m.new for m in self.moves)
        head = (
            f"reset offsets of group {self.group!r} on topic {self.topic!r} to {self.target}: "
            f"{changing} of {len(self.moves)} partitions change, lag after reset {lag_after:,}; "
            f"membership: {self.membership.status} ({self.membership.detail})"
        )
        lines = [
            f"  {self.topic}[{m.partition}]: {'none' if m.old is None else m.old} -> {m.new}"
            + (f" ({m.note})" if m.note else "")
            for m in self.moves
        ]
        return "\n".join([head, *lines])


class ResetResult(ActionResult):
    group: str
    topic: str
    target: str
    moves: list[OffsetMove]
    changed: int
    verified: bool
    membership: Membership
    round_trips: int


def target_offset(
    to: str, value: int | None, low: int, high: int, by_timestamp: int | str | None
) -> tuple[int, str]:
    """Where one partition's offset goes, and a note when it is not literally what was asked.

    Same rules as ``kafka-consumer-groups.sh``: an offset outside the retained log is clamped into
    ``[low, high]``; a timestamp with no message at or after it (ListOffsets answers -1) means the log
    end.
    """
    if to == "earliest":
        return low, ""
    if to == "latest":
        return high, ""
    if to == "timestamp":
        found = int(by_timestamp) if by_timestamp is not None else -1
        if found < 0:
            return high, "no message at or after the timestamp: log end"
        return found, ""
    assert value is not None
    new = min(max(value, low), high)
    return new, (f"{value} is outside [{low}, {high}]: clamped" if new != value else "")


def check_membership(clients: KafkaClients, group: str, timeout: float, trips: RoundTrips) -> Membership:
    """Ask the coordinator who is in the group (DescribeGroups).

    Brokers that do not implement DescribeGroups (librdkafka's mock) answer UNSUPPORTED_FEATURE: the
    result is then ``unknown`` and the reset relies on the coordinator's own rule that an offset commit
    from outside the group (generation -1) is refused while the group has members, which
    :func:`reset_offsets` turns into GuardrailRefused. Neither check can see standalone consumers that
    use ``assign()`` and commit under the group id: they are not members of anything.
    """
    trips.add("describe_group")
    try:
        futures = clients.admin.describe_consumer_groups([group], request_timeout=timeout)
        res = wait_all(clients, futures, timeout + 1, "describe consumer group")[group]
    except Exception as exc:  # noqa: BLE001 - classified below
        res = exc
    if isinstance(res, BaseException):
        err = translate(clients, "describe consumer group", res)
        if isinstance(err, BackendUnavailable):
            raise err
        return Membership(
            status="unknown",
            detail=f"DescribeGroups unavailable ({error_text(res)}); "
            "the coordinator refuses the commit if the group has members",
        )
    members = len(res.members or [])
    state = res.state.name if isinstance(res.state, ConsumerGroupState) else str(res.state)
    idle = state in ("EMPTY", "DEAD", "UNKNOWN") and members == 0
    return Membership(
        status="empty" if idle else "active",
        members=members,
        state=state,
        detail=f"{members} member(s), state {state}",
    )


def plan_reset(
    clients: KafkaClients, params: ResetParams, remaining: Callable[[], float], trips: RoundTrips
) -> ResetPlan:
    """Current and target offset per partition (read-only), validating topic, partitions and group."""
    md = metadata(clients, remaining(), trips)
    tps = partitions_of(md, [params.topic])
    if params.partitions is not None:
        unknown = sorted(set(params.partitions) - {tp.partition for tp in tps})
        if unknown:
            raise ActionError(f"topic {params.topic} has no partition(s) {unknown}", backend=BACKEND)
        tps = [tp for tp in tps if tp.partition in set(params.partitions)]
    committed = committed_offsets(clients, params.group, tps, remaining(), trips)
    if not params.allow_new_group and all(v is None for v in committed.values()):
        raise ActionError(
            f"group {params.group!r} has no committed offsets on {params.topic}: nothing to reset "
            "(check the names, or set allow_new_group to seed a new group)",
            backend=BACKEND,
        )
    low = list_offsets(clients, tps, earliest(), remaining(), trips, "earliest")
    high = list_offsets(clients, tps, latest(), remaining(), trips, "latest")
    by_ts: dict[TPKey, int | str] = {}
    if params.to == "timestamp":
        assert params.value is not None
        by_ts = list_offsets(
            clients, tps, OffsetSpec.for_timestamp(params.value), remaining(), trips, "timestamp"
        )
    bad = {f"{k[0]}[{k[1]}]": v for d in (low, high, by_ts) for k, v in d.items() if isinstance(v, str)}
    if bad:
        raise ActionError(f"cannot plan the reset, offsets unreadable for {bad}", backend=BACKEND)
    moves = []
    for tp in tps:
        key = (tp.topic, tp.partition)
        lo, hi = int(low[key]), int(high[key])
        new, note = target_offset(params.to, params.value, lo, hi, by_ts.get(key))
        moves.append(
            OffsetMove(
                partition=tp.partition,
                old=committed.get(key),
                new=new,
                low_watermark=lo,
                high_watermark=hi,
                note=note,
            )
        )
    membership = check_membership(clients, params.group, remaining(), trips)
    target = params.to if params.value is None else f"{params.to} {params.value}"
    return ResetPlan(
        group=params.group,
        topic=params.topic,
        target=target,
        moves=moves,
        membership=membership,
        round_trips=trips.count,
    )


def execute_reset(ctx: ActionContext, params: ResetParams) -> ResetResult:
    """Re-plan, refuse while the group has members, commit in one request, read back to verify."""
    clients, trips = clients_of(ctx), RoundTrips()
    plan = plan_reset(clients, params, ctx.remaining, trips)
    if plan.membership.status == "active":
        raise GuardrailRefused(
            f"group {params.group!r} has active members ({plan.membership.detail}); "
            "stop its consumers before resetting offsets",
            backend=BACKEND,
        )
    trips.add("offset_commit")
    tps = [TopicPartition(params.topic, m.partition, m.new) for m in plan.moves]
    try:
        futures = clients.admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(params.group, tps)], request_timeout=ctx.remaining()
        )
    except Exception as exc:  # noqa: BLE001 - translated
        raise translate(clients, "alter consumer group offsets", exc) from None
    res = wait_all(clients, futures, ctx.remaining() + 1, "alter consumer group offsets")[params.group]
    errors: dict[int, str] = {}
    if isinstance(res, BaseException):
        name = error_text(res)
        if name in MEMBER_REFUSALS:
            errors = {tp.partition: name for tp in tps}
        else:
            raise translate(clients, f"alter offsets of group {params.group!r}", res)
    else:
        errors = {tp.partition: tp.error.name() for tp in res.topic_partitions if tp.error is not None}
    if errors:
        names = sorted(set(errors.values()))
        if set(names) & MEMBER_REFUSALS:
            raise GuardrailRefused(
                f"the coordinator refused the offset commit for group {params.group!r} ({', '.join(names)}): "
                "the group has active members (or had them until their session expires); stop its consumers "
                "first",
                backend=BACKEND,
            )
        raise ActionError(f"offset commit failed for partitions {errors}", backend=BACKEND)
    after = committed_offsets(
        clients,
        params.group,
        [TopicPartition(params.topic, m.partition) for m in plan.moves],
        ctx.remaining(),
        trips,
    )
    verified = all(after.get((params.topic, m.partition)) == m.new for m in plan.moves)
    changed = sum(1 for m in plan.moves if m.old != m.new)
    return ResetResult(
        summary=(
            f"reset group {params.group} on {params.topic} to {plan.target}: {changed} of {len(plan.moves)} "
            f"partitions moved{'' if verified else ' (READ-BACK MISMATCH)'}"
        ),
        group=params.group,
        topic=params.topic,
        target=plan.target,
        moves=plan.moves,
        changed=changed,
        verified=verified,
        membership=plan.membership,
        round_trips=trips.count,
    )
