"""queue.* with system bullmq against the local Redis, jobs and workers made by the real bullmq package."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runbook.actions import ActionContext, ActionError, ActionRegistry, Connections, describe, invoke
from runbook.core.settings import Settings
from tests.support.bullmq_jobs import BullBench


@pytest.fixture(scope="session")
def redis_available() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"Redis is not reachable on 127.0.0.1:6379 ({exc}); start it with `scripts/services.sh`"
            " (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '')",
            pytrace=False,
        )


@pytest.fixture
def bench(redis_available: None, unique: str) -> Iterator[BullBench]:
    b = BullBench(f"rb-{unique}")
    yield b
    b.close()


def call(registry: ActionRegistry, settings: Settings, name: str, params: dict[str, Any]) -> Any:
    ctx = ActionContext(Connections(settings), deadline=time.monotonic() + 30)
    return invoke(registry[name], ctx, params).model_dump()


def wait_for(pred: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_wedged_job_is_the_only_suspect_and_quarantine_moves_exactly_it(bench, registry, settings) -> None:
    ids = bench.add(20)

    async def handler(job: Any) -> None:
        await asyncio.sleep(3600 if job.id == "job-0" else 0)

    bench.worker(handler)
    wait_for(lambda: bench.counts()["active"] == 1)
    time.sleep(1.2)
    q = {"system": "bullmq", "queue": bench.name}
    stats = call(registry, settings, "queue.stats", q)
    assert (stats["depth"], stats["ready"], stats["in_flight"]) == (20, 19, 1)
    assert stats["consumers"] and stats["oldest_age_seconds"] is not None
    progress = call(registry, settings, "queue.progress", {**q, "window": 1})
    assert progress["verdict"] == "stalled" and progress["completed"] == 0
    sample = call(registry, settings, "queue.sample", {**q, "count": 10, "wedge_seconds": 1})
    assert sample["suspects"] == ["job-0"], sample
    assert "held by a worker" in sample["suspect_evidence"][0]
    assert all("data" not in m for m in sample["messages"])
    before = bench.redis.hget(f"bull:{bench.name}:job-0", "data")
    text = describe(
        registry["queue.quarantine"],
        ActionContext(Connections(settings), deadline=time.monotonic() + 30),
        {**q, "ids": ["job-0"]},
    )
    assert "exactly 1" in text and "job-0" in text
    moved = call(registry, settings, "queue.quarantine", {**q, "ids": ["job-0", "job-missing"]})
    assert moved["ids"] == ["job-0"] and moved["missing"] == ["job-missing"]
    assert bench.failed_ids() == ["job-0"]
    job = bench.redis.hgetall(f"bull:{bench.name}:job-0")
    assert job["data"] == before and job["failedReason"] == "quarantined by runbook"
    # the wedged handler still sleeps (only a restart frees it); a fresh worker completes every
    # other job and never sees job-0 again
    bench.worker(handler)
    wait_for(lambda: bench.counts()["completed"] == 19, 20)
    assert sorted(bench.processed) == sorted(i for i in ids if i != "job-0")


def test_redrive_canary_then_rest_skips_quarantined_and_loses_nothing(bench, registry, settings) -> None:
    bench.add(30)

    async def fail(job: Any) -> None:
        raise RuntimeError("downstream 503")

    w = bench.worker(fail)
    wait_for(lambda: bench.counts()["failed"] == 30)
    bench.run(w.close())
    q = {"system": "bullmq", "queue": bench.name}
    canary = call(registry, settings, "queue.redrive", {**q, "count": 5})
    assert canary["moved"] == 5 and canary["remaining"] == 25
    assert bench.counts()["wait"] == 5
    quarantined = call(registry, settings, "queue.quarantine", {**q, "ids": ["job-0"]})
    assert quarantined["moved"] == 1
    rest = call(registry, settings, "queue.redrive", q)
    assert rest["moved"] == 25 and rest["remaining"] == 1 and bench.failed_ids() == ["job-0"]
    assert bench.counts()["wait"] == 29
    state = bench.redis.hgetall(f"bull:{bench.name}:job-7")
    assert "failedReason" not in state and state["data"]


@pytest.mark.parametrize(
    "params",
    [
        {"queue": "a:b"},
        {"queue": "*"},
        {"queue": "x\r\nFLUSHALL"},
        {"queue": "ok", "prefix": "bull x"},
        {"queue": "ok", "ids": ["wait"]},
        {"queue": "ok", "ids": ["../x"]},
        {"queue": "ok", "ids": ["a:b"]},
    ],
)
def test_hostile_names_and_ids_are_refused(redis_available, registry, settings, params) -> None:
    with pytest.raises(ActionError):
        call(registry, settings, "queue.quarantine", {"system": "bullmq", "ids": ["job-1"], **params})


def test_missing_queue_is_a_clear_error(redis_available, registry, settings, unique) -> None:
    with pytest.raises(ActionError, match="not found"):
        call(registry, settings, "queue.stats", {"system": "bullmq", "queue": f"absent-{unique}"})


def test_retries_with_a_backoff_count_as_retries_and_delayed_adds_do_not(bench, registry, settings) -> None:
    # a failed attempt retried with a backoff goes to ``delayed`` (moveToDelayed: a ``delayed`` event
    # without ``prev``); a job *added* with a delay writes the same event next to its ``added`` one
    q = {"system": "bullmq", "queue": bench.name}
    delayed = [{"name": "job", "data": {}, "opts": {"jobId": f"later-{i}", "delay": 60000}} for i in range(5)]
    bench.run(bench.queue.add("job", {}, {"jobId": "early", "delay": 60000}))  # the queue exists
    later = threading.Timer(0.5, lambda: bench.run(bench.queue.addBulk(delayed)))
    later.start()
    progress = call(registry, settings, "queue.progress", {**q, "window": 2})
    later.join()
    assert (progress["published"], progress["redelivered"], progress["delivered"]) == (5, 0, 0), progress

    opts = {"attempts": 2, "backoff": {"type": "fixed", "delay": 300}}
    jobs = [{"name": "job", "data": {}, "opts": {"jobId": f"b-{i}", **opts}} for i in range(400)]
    bench.run(bench.queue.addBulk(jobs))

    async def flaky(job: Any) -> None:
        await asyncio.sleep(0.02)
        if job.attemptsMade == 0:
            raise RuntimeError("upstream 503")

    bench.worker(flaky)
    wait_for(lambda: bench.counts()["delayed"] > 5)
    progress = call(registry, settings, "queue.progress", {**q, "window": 2})
    # every delivery in the window is a first attempt (the retries are behind the other 390 jobs):
    # each one fails and is retried after its backoff
    assert progress["delivered"] > 0 and progress["completed"] == 0, progress
    assert abs(progress["redelivered"] - progress["delivered"]) <= 1, progress
