"""Read-only and maintenance rabbitmq.* actions against the local RabbitMQ (no mocks).

Management statistics are sampled every 5 s, so every assertion on them polls.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import pika
import pytest
from support.rabbit import (
    connect,
    drain_ids,
    mgmt,
    peek_ids,
    publish_numbered,
    queues,
    ready,
    wait_for,
    wait_stats,
)

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    BackendUnavailable,
    Connections,
    GuardrailRefused,
    describe,
    invoke,
)

pytestmark = pytest.mark.usefixtures("rabbitmq_available")


@pytest.fixture
def registry() -> ActionRegistry:
    """Only the RabbitMQ actions: these tests need not import every other backend."""
    return ActionRegistry.from_modules(["runbook.actions.rabbitmq.actions"])


def test_queue_stats(ctx, registry, unique):
    name = f"rb-{unique}-plans"
    with queues(name) as conn:
        publish_numbered(conn.channel(), name, 7, timestamp=int(time.time()) - 120)
        consumer = connect()
        cch = consumer.channel()
        cch.basic_qos(prefetch_count=1)  # holds one unacked; the head of the ready ones is peeked
        cch.basic_consume(name, lambda *a: None, auto_ack=False)
        wait_stats(name, 7)
        wait_for(lambda: invoke(registry["rabbitmq.queue_stats"], ctx, {"queue": name}).consumers == 1)
        result = invoke(registry["rabbitmq.queue_stats"], ctx, {"queue": name, "head_age": True})
        consumer.close()
        assert result.messages == 7 and result.ready + result.unacked == 7
        assert result.type == "classic" and result.node
        assert 115 <= result.oldest_message_age_seconds < 300
        assert name in result.summary and "7 messages" in result.summary
        assert result.unacked in (0, 1)
        assert peek_ids(conn, name) == list(range(7))  # the head-age peek put it back


def test_queue_stats_missing_queue_and_unreachable(ctx, registry, settings, unique):
    with pytest.raises(ActionError, match=f"queue 'rb-{unique}-none' not found on vhost '/'"):
        invoke(registry["rabbitmq.queue_stats"], ctx, {"queue": f"rb-{unique}-none"})
    broken = replace(settings, rabbitmq_management_url="http://guest:s3cretpw@127.0.0.1:1")
    with pytest.raises(BackendUnavailable) as err:
        invoke(registry["rabbitmq.queue_stats"], ActionContext(Connections(broken)), {"queue": "x"})
    assert str(err.value).startswith("rabbitmq: management API at http://127.0.0.1:1 unreachable")
    assert "s3cretpw" not in str(err.value)


def test_list_queues_filters_and_sorts(ctx, registry, unique):
    work, dlq, parked, other = (f"rb-{unique}-{s}" for s in ("work", "work-dlq", "held", "other"))
    args = {other: {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": parked}}
    with queues(work, dlq, parked, other, arguments=args) as conn:
        ch = conn.channel()
        for name, n in ((work, 30), (dlq, 5), (parked, 2), (other, 12)):
            publish_numbered(ch, name, n)
        for name, n in ((work, 30), (dlq, 5), (parked, 2), (other, 12)):
            wait_stats(name, n)
        spec = registry["rabbitmq.list_queues"]
        everything = invoke(spec, ctx, {"name_regex": f"^rb-{unique}-"})
        assert [q["name"] for q in everything.queues] == [work, other, dlq, parked]
        assert everything.total_messages == 49 and everything.count == 4
        assert {"consumers", "ready", "unacked", "ack_rate", "publish_rate"} <= set(everything.queues[0])
        deep = invoke(spec, ctx, {"name_regex": f"^rb-{unique}-", "min_depth": 10})
        assert [q["name"] for q in deep.queues] == [work, other]
        dlqs = invoke(spec, ctx, {"name_regex": f"^rb-{unique}-", "dlq_only": True})
        assert {q["name"]: q["dlq_reason"] for q in dlqs.queues} == {
            dlq: "name",
            parked: "target of x-dead-letter-routing-key",
        }
        assert invoke(spec, ctx, {"name_regex": f"^rb-{unique}-", "limit": 1}).matched == 4
        with pytest.raises(ActionError, match="not a valid regex"):
            invoke(spec, ctx, {"name_regex": "("})


class Worker(threading.Thread):
    """A consumer (or publisher) running until stopped: the traffic progress() must classify."""

    def __init__(self, queue: str, mode: str, delay: float) -> None:
        super().__init__(daemon=True)
        self.queue, self.mode, self.delay = queue, mode, delay
        self.stop = threading.Event()

    def run(self) -> None:
        conn = connect()
        ch = conn.channel()
        ch.basic_qos(prefetch_count=5)
        i = 0
        while not self.stop.is_set():
            if self.mode == "publish":
                ch.basic_publish("", self.queue, b"x", pika.BasicProperties(message_id=str(i)))
                i += 1
                conn.sleep(self.delay)
                continue
            method, _, _ = ch.basic_get(self.queue, auto_ack=False)
            if method is None:
                conn.sleep(0.01)
                continue
            if self.mode == "ack":
                ch.basic_ack(method.delivery_tag)
            else:  # poison: the handler fails every time and requeues
                ch.basic_nack(method.delivery_tag, requeue=True)
            conn.sleep(self.delay)
        conn.close()


def test_progress_verdicts(ctx, registry, unique):
    """Five queues sampled at once (one window): draining, progressing, stalled x2, idle."""
    names = {k: f"rb-{unique}-{k}" for k in ("draining", "growing", "nobody", "poison", "idle")}
    with queues(*names.values()) as conn:
        ch = conn.channel()
        for key in ("draining", "nobody", "poison"):
            publish_numbered(ch, names[key], 400)
        for key in ("draining", "nobody", "poison"):
            wait_stats(names[key], 400)
        wait_stats(names["idle"], 0)
        workers = [
            Worker(names["draining"], "ack", 0.005),
            Worker(names["growing"], "publish", 0.005),
            Worker(names["growing"], "ack", 0.02),
            Worker(names["poison"], "nack", 0.005),
        ]
        for w in workers:
            w.start()
        results: dict[str, object] = {}

        def sample(key: str) -> None:
            results[key] = invoke(registry["rabbitmq.progress"], ctx, {"queue": names[key], "window": 11})

        threads = [threading.Thread(target=sample, args=(k,)) for k in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in workers:
            w.stop.set()
        for w in workers:
            w.join()
    verdicts = {k: r.verdict for k, r in results.items()}
    assert verdicts == {
        "draining": "draining",
        "growing": "progressing",
        "nobody": "stalled",
        "poison": "stalled",
        "idle": "idle",
    }, {k: r.evidence for k, r in results.items()}
    assert results["draining"].acked > 0 and results["draining"].depth_change < 0
    assert results["growing"].depth_change > 0
    assert any("no consumers" in e for e in results["nobody"].evidence)
    assert results["poison"].redelivered > 0 and results["poison"].acked == 0
    assert any("redeliveries" in e for e in results["poison"].evidence)


def test_peek_keeps_order_and_count_and_never_returns_bodies(ctx, registry, unique):
    work, dlq = f"rb-{unique}-work", f"rb-{unique}-dlq"
    args = {work: {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}}
    with queues(work, dlq, arguments=args) as conn:
        ch = conn.channel()
        publish_numbered(
            ch, work, 6, headers=lambda i: {"tenant": "acme", "Authorization": "Bearer abcdefgh1234"}
        )
        for _ in range(6):  # a consumer rejects each one: dead-lettered with reason "rejected"
            method, _, _ = ch.basic_get(work)
            ch.basic_reject(method.delivery_tag, requeue=False)
        ch.basic_publish(
            "", work, b"secret-body-expired", pika.BasicProperties(message_id="6", expiration="1")
        )
        wait_for(lambda: ready(ch, dlq) == 7, what="dead-lettering (asynchronous)")
        publish_numbered(ch, dlq, 40, start=7)
        result = invoke(registry["rabbitmq.peek"], ctx, {"queue": dlq, "count": 10})
        assert [int(m["message_id"]) for m in result.messages] == list(range(10))
        first = result.messages[0]
        assert first["death_count"] == 1 and first["deaths"][0]["reason"] == "rejected"
        assert first["deaths"][0]["queue"] == work and first["first_death_reason"] == "rejected"
        assert first["headers"]["tenant"] == "acme" and first["headers"]["Authorization"] == "***"
        assert first["size"] == 32
        assert result.messages[6]["deaths"][0]["reason"] == "expired"
        assert result.death_reasons == {"rejected": 6, "expired": 1}
        dumped = result.model_dump_json()
        assert "body-" not in dumped and "secret-body" not in dumped and "abcdefgh1234" not in dumped
        again = invoke(registry["rabbitmq.peek"], ctx, {"queue": dlq, "count": 500})
        assert [int(m["message_id"]) for m in again.messages] == list(range(47))
        assert peek_ids(conn, dlq) == list(range(47))  # nothing lost, nothing reordered
        assert drain_ids(conn, dlq) == list(range(47))


def test_node_health_single_node(ctx, registry):
    result = invoke(registry["rabbitmq.node_health"], ctx, {})
    assert result.ok and result.problems == [] and result.running == result.total >= 1
    node = result.nodes[0]
    assert node["running"] and node["fd_used"] <= node["fd_total"] and node["mem_alarm"] is False


def test_export_definitions_is_private(ctx, registry, unique, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    name = f"rb-{unique}-defs"
    spec = registry["rabbitmq.export_definitions"]
    with queues(name):
        result = invoke(spec, ctx, {"path": "defs.json"})
        target = home / "definitions" / "defs.json"
        assert result.path == str(target) and result.queues >= 1 and result.users >= 1
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        doc = json.loads(target.read_text())
        assert name in [q["name"] for q in doc["queues"]]
        # an existing export is kept unless the step says overwrite
        with pytest.raises(ActionError, match="refused, nothing written.*overwrite"):
            invoke(spec, ctx, {"path": "defs.json"})
        target.chmod(0o644)
        invoke(spec, ctx, {"path": "defs.json", "overwrite": True})
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert list(target.parent.iterdir()) == [target]  # no temporary file left behind
        vhost_only = invoke(spec, ctx, {"path": "by-vhost/root.json", "vhost": "/"})
        assert vhost_only.queues >= 1 and vhost_only.users == 0
        assert vhost_only.path == str(home / "definitions" / "by-vhost" / "root.json")
        default = invoke(spec, replace(ctx, run_id="run-7"), {})
        assert default.path == str(home / "definitions" / "definitions-run-7.json")


BAD_EXPORT_PATHS = ["../../etc/x", "../defs.json", "/tmp/x-runbook-defs.json", "~/defs.json", "a\x00b", ""]


@pytest.mark.parametrize("path", BAD_EXPORT_PATHS)
def test_export_definitions_refuses_paths_outside_its_folder(ctx, registry, tmp_path, monkeypatch, path):
    home = tmp_path / "home"
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    with pytest.raises(ActionError, match="refused, nothing written"):
        invoke(registry["rabbitmq.export_definitions"], ctx, {"path": path})
    assert not (home / "definitions").exists()
    assert not Path("/tmp/x-runbook-defs.json").exists() and not (tmp_path / "defs.json").exists()


def test_export_definitions_never_follows_a_symlink(ctx, registry, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    folder = home / "definitions"
    folder.mkdir(parents=True)
    (folder / "defs.json").symlink_to(victim)
    (folder / "sub").symlink_to(victim_dir)
    spec = registry["rabbitmq.export_definitions"]
    for params in ({"path": "defs.json"}, {"path": "defs.json", "overwrite": True}, {"path": "sub/d.json"}):
        with pytest.raises(ActionError, match="refused, nothing written"):
            invoke(spec, ctx, params)
    # the definitions folder itself planted as a symlink
    (folder / "defs.json").unlink()
    (folder / "sub").unlink()
    folder.rmdir()
    folder.symlink_to(victim_dir)
    with pytest.raises(ActionError, match="symlink"):
        invoke(spec, ctx, {"path": "d.json"})
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert list(victim_dir.iterdir()) == []


def test_purge_queue(ctx, registry, unique):
    name = f"rb-{unique}-poison"
    spec = registry["rabbitmq.purge_queue"]
    with queues(name) as conn:
        publish_numbered(conn.channel(), name, 10)
        assert describe(spec, ctx, {"queue": name}).startswith(f"purge 10 ready messages from queue '{name}'")
        with pytest.raises(GuardrailRefused, match="holds 10 ready messages"):
            invoke(spec, ctx, {"queue": name, "max_messages": 5})
        assert ready(conn.channel(), name) == 10
        result = invoke(spec, ctx, {"queue": name, "max_messages": 10})
        assert result.purged == 10 and ready(conn.channel(), name) == 0
    with pytest.raises(ActionError, match="not found"):
        describe(spec, ctx, {"queue": name})
    with pytest.raises(ActionError, match="not found"):
        invoke(spec, ctx, {"queue": name})


def test_close_connections_by_filter(ctx, registry, unique):
    spec = registry["rabbitmq.close_connections"]
    stale = [connect(name=f"rb-{unique}-stale-{i}") for i in range(2)]
    keep = connect(name=f"rb-{unique}-keep")
    try:

        def listed() -> int:
            rows = mgmt("GET", "/api/connections").json()
            return sum(
                1 for r in rows if unique in str(r.get("client_properties", {}).get("connection_name"))
            )

        wait_for(lambda: listed() == 3, what="connections in the management API")
        with pytest.raises(GuardrailRefused, match="at least one filter"):
            invoke(spec, ctx, {})
        params = {"client_name": f"^rb-{unique}-stale-", "user": "guest", "peer_host": "127.0.0.0/8"}
        with pytest.raises(GuardrailRefused, match="more than max_connections=1"):
            invoke(spec, ctx, {**params, "max_connections": 1})
        assert "close 2 connections" in describe(spec, ctx, params)
        assert invoke(spec, ctx, {**params, "idle_seconds": 3600}).count == 0
        result = invoke(spec, ctx, params)
        assert result.count == 2
        assert sorted(c["client_name"] for c in result.closed) == [
            f"rb-{unique}-stale-0",
            f"rb-{unique}-stale-1",
        ]
        for conn in stale:
            with pytest.raises(pika.exceptions.AMQPError):
                for _ in range(50):
                    conn.process_data_events(time_limit=0.1)
        keep.process_data_events(time_limit=0.1)
        assert keep.is_open
    finally:
        for conn in [*stale, keep]:
            if conn.is_open:
                conn.close()


def test_publish_canary(ctx, registry, unique):
    spec = registry["rabbitmq.publish_canary"]
    temp = invoke(spec, ctx, {})
    assert temp.ok and temp.queue.startswith("amq.gen-") and temp.round_trip_ms >= temp.confirm_ms
    name = f"rb-{unique}-canary"
    with queues(name) as conn:
        publish_numbered(conn.channel(), name, 3)
        named = invoke(spec, ctx, {"queue": name})
        assert named.ok and named.queue == name
        assert peek_ids(conn, name) == [0, 1, 2]  # messages ahead untouched, canary gone
        with pytest.raises(GuardrailRefused):
            invoke(spec, ctx, {"queue": name, "max_ahead": 1})
    with pytest.raises(ActionError, match="not found"):
        invoke(spec, ctx, {"queue": name})
