"""rabbitmq.move_messages against the local RabbitMQ: every mode, order, guardrails, and kill -9.

The crash test is the point of the design: the mover runs in a subprocess that is SIGKILLed at a
random moment mid-move, several times; afterwards every message id must be in the source or the
destination, and the extra copies (published and confirmed, not yet acknowledged at the source)
must fit in one in-flight batch.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support.rabbit import drain_ids, peek_ids, publish_numbered, queues, ready, wait_for

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    BackendUnavailable,
    Connections,
    describe,
    invoke,
)

pytestmark = pytest.mark.usefixtures("rabbitmq_available")


@pytest.fixture
def registry() -> ActionRegistry:
    """Only the RabbitMQ actions: these tests need not import every other backend."""
    return ActionRegistry.from_modules(["runbook.actions.rabbitmq.actions"])


CHILD = Path(__file__).resolve().parents[1] / "support" / "rabbit_move_child.py"


def tenant(i: int) -> dict[str, str]:
    return {"tenant": "acme" if i % 3 == 0 else "globex"}


def test_filter_moves_matching_and_keeps_the_rest_in_order(ctx, registry, unique):
    src, dst = f"rb-{unique}-dlq", f"rb-{unique}-work"
    with queues(src, dst) as conn:
        ch = conn.channel()
        publish_numbered(ch, src, 6000, headers=tenant)  # > 1 segment of 1,000 held messages
        publish_numbered(ch, src, 5, start=6000)  # no headers at all: never match
        params = {
            "source": src,
            "destination": dst,
            "mode": "filter",
            "match_headers": {"tenant": "acme"},
            "batch_size": 200,
        }
        text = describe(registry["rabbitmq.move_messages"], ctx, params)
        assert "6005 ready" in text and "{'tenant': 'acme'}" in text and src in text
        result = invoke(registry["rabbitmq.move_messages"], ctx, params)
        assert result.method == "client"
        assert result.moved == 2000 and result.skipped == 4005 and result.scanned == 6005
        assert result.remaining == 4005
        assert drain_ids(conn, dst) == [i for i in range(6000) if i % 3 == 0]
        assert drain_ids(conn, src) == [i for i in range(6005) if i >= 6000 or i % 3 != 0]


def test_filter_with_cap_moves_only_the_first_matches(ctx, registry, unique):
    src, dst = f"rb-{unique}-dlq", f"rb-{unique}-work"
    with queues(src, dst) as conn:
        publish_numbered(conn.channel(), src, 300, headers=tenant)
        result = invoke(
            registry["rabbitmq.move_messages"],
            ctx,
            {
                "source": src,
                "destination": dst,
                "mode": "filter",
                "match_headers": {"tenant": "globex"},
                "count": 7,
            },
        )
        assert result.moved == 7
        assert drain_ids(conn, dst) == [1, 2, 4, 5, 7, 8, 10]
        assert drain_ids(conn, src) == [i for i in range(300) if i not in {1, 2, 4, 5, 7, 8, 10}]


def test_first_n_canary_moves_the_head_in_order(ctx, registry, unique):
    src, dst = f"rb-{unique}-dlq", f"rb-{unique}-work"
    with queues(src, dst) as conn:
        publish_numbered(conn.channel(), src, 500)
        params = {"source": src, "destination": dst, "mode": "first", "count": 25}
        assert "first 25 messages" in describe(registry["rabbitmq.move_messages"], ctx, params)
        result = invoke(registry["rabbitmq.move_messages"], ctx, params)
        assert (result.moved, result.method, result.remaining) == (25, "client", 475)
        assert drain_ids(conn, dst) == list(range(25))
        assert drain_ids(conn, src) == list(range(25, 500))


@pytest.mark.parametrize("method", ["auto", "client"])
def test_move_all(ctx, registry, unique, method):
    src, dst = f"rb-{unique}-dlq", f"rb-{unique}-work"
    with queues(src, dst) as conn:
        publish_numbered(conn.channel(), dst, 3)  # the destination already has work
        publish_numbered(conn.channel(), src, 2000, start=3)
        params = {"source": src, "destination": dst, "method": method}
        text = describe(registry["rabbitmq.move_messages"], ctx, params)
        assert "move all 2000 messages" in text and "(3 ready)" in text
        result = invoke(registry["rabbitmq.move_messages"], ctx, params)
        assert result.method == ("shovel" if method == "auto" else "client")
        assert result.moved == 2000 and result.remaining == 0
        assert drain_ids(conn, dst) == list(range(2003))
        assert mgmt_no_shovels_left(unique)


def mgmt_no_shovels_left(unique: str) -> bool:
    from support.rabbit import mgmt

    return not [s for s in mgmt("GET", "/api/parameters/shovel").json() if unique in json.dumps(s)]


def test_move_validates_targets_and_params(ctx, registry, unique):
    src, dst = f"rb-{unique}-dlq", f"rb-{unique}-work"
    spec = registry["rabbitmq.move_messages"]
    with queues(src) as conn:
        publish_numbered(conn.channel(), src, 10)
        with pytest.raises(ActionError, match=f"queue '{dst}' not found"):
            describe(spec, ctx, {"source": src, "destination": dst})
        with pytest.raises(ActionError, match=f"queue '{dst}' not found"):
            invoke(spec, ctx, {"source": src, "destination": dst})
        with pytest.raises(ActionError, match="not found"):
            invoke(spec, ctx, {"source": f"{src}-nope", "destination": src})
        assert ready(conn.channel(), src) == 10  # nothing moved, nothing declared
        for bad in (
            {"source": src, "destination": src},
            {"source": src, "destination": dst, "mode": "first"},
            {"source": src, "destination": dst, "mode": "filter"},
            {"source": src, "destination": dst, "mode": "first", "count": 1, "method": "shovel"},
        ):
            with pytest.raises(ValueError):
                invoke(spec, ctx, bad)


def test_move_reports_unreachable_broker(settings, registry):
    from dataclasses import replace

    broken = replace(settings, rabbitmq_url="amqp://guest:s3cretpw@127.0.0.1:1/")
    ctx = ActionContext(Connections(broken))
    with pytest.raises(BackendUnavailable) as err:
        invoke(registry["rabbitmq.move_messages"], ctx, {"source": "a", "destination": "b"})
    assert "rabbitmq" in str(err.value) and "unreachable" in str(err.value)
    assert "s3cretpw" not in str(err.value)


N = 10_000
BATCH = 500


@pytest.mark.parametrize("trial", range(6))
def test_kill_9_mid_move_loses_nothing(rabbitmq_available, unique, trial):
    """SIGKILL the mover at a random point; every message survives, extra copies <= one batch."""
    rng = random.Random(f"{unique}-{trial}")
    src, dst = f"rb-{unique}-dlq", f"rb-{unique}-work"
    filtered = trial % 2 == 1
    params = {"source": src, "destination": dst, "batch_size": BATCH, "mode": "first", "count": N}
    if filtered:
        params = {**params, "mode": "filter", "match_headers": {"tenant": "acme"}, "count": None}
    with queues(src, dst) as conn:
        ch = conn.channel()
        publish_numbered(ch, src, N, headers=tenant)
        wait_for(lambda: ready(ch, src) == N, what="all messages published")
        expected_moves = len([i for i in range(N) if i % 3 == 0]) if filtered else N
        kill_at = rng.randint(50, expected_moves // 2)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(params)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(
                lambda: child.poll() is not None or ready(ch, dst) >= kill_at,
                timeout=60,
                interval=0.002,
                what=f"{kill_at} messages in the destination",
            )
            assert child.poll() is None, f"mover finished before the kill: {child.communicate()}"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        # The broker requeues the dead connection's unacknowledged messages asynchronously.
        wait_for(lambda: ready(ch, src) + ready(ch, dst) >= N, timeout=30, what="requeue after the kill")
        time.sleep(0.2)
        in_src, in_dst = drain_ids(conn, src), drain_ids(conn, dst)
    counts = Counter(in_src + in_dst)
    assert set(counts) == set(range(N)), f"lost: {sorted(set(range(N)) - set(counts))[:20]}"
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= BATCH, f"{duplicates} duplicates exceed one in-flight batch of {BATCH}"
    assert max(counts.values()) <= 2
    assert in_src == sorted(in_src), "the source lost its order"
    assert in_dst == sorted(in_dst), "the destination is out of order"
    if filtered:
        assert all(i % 3 == 0 for i in in_dst)
        assert [i for i in in_src if i % 3 != 0] == [i for i in range(N) if i % 3 != 0]


def test_rerun_after_kill_completes_the_move(ctx, registry, unique):
    """The runbook answer to a crash is to run the step again: the rest moves, nothing is lost."""
    src, dst = f"rb-{unique}-dlq", f"rb-{unique}-work"
    with queues(src, dst) as conn:
        ch = conn.channel()
        publish_numbered(ch, src, 4000)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        params = {"source": src, "destination": dst, "mode": "first", "count": 4000, "batch_size": 100}
        child = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(params)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: child.poll() is not None or ready(ch, dst) >= 500, interval=0.002, what="move under way"
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        wait_for(lambda: ready(ch, src) + ready(ch, dst) >= 4000, timeout=30, what="requeue")
        result = invoke(registry["rabbitmq.move_messages"], ctx, {"source": src, "destination": dst})
        assert result.remaining == 0
        ids = peek_ids(conn, dst)
        assert set(ids) == set(range(4000)) and len(ids) - 4000 <= 100
