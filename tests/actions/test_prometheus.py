"""prometheus.* against the real Prometheus (Debian's 2.42, ``scripts/services.sh monitoring``) scraping
the local RabbitMQ through its own rabbitmq_prometheus plugin; credentials against a loopback server
that records what it was sent."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runbook.actions import ActionContext, Connections
from runbook.actions.context import ActionError, BackendUnavailable
from runbook.actions.registry import invoke
from runbook.core.redact import redact
from runbook.core.settings import Settings
from tests.support import rabbit
from tests.support.monitoring import PROMETHEUS, require_monitoring, wait_scraped
from tests.support.waiting import wait_until

RABBIT_METRICS = "http://127.0.0.1:15692/metrics/detailed?family=queue_coarse_metrics"


@pytest.fixture
def prom_ctx(settings: Settings, rabbitmq_available: None) -> Iterator[ActionContext]:
    require_monitoring()
    connections = Connections(dataclasses.replace(settings, prometheus_url=PROMETHEUS))
    yield ActionContext(connections)
    connections.close()


@pytest.fixture
def filled_queue(unique: str, rabbitmq_available: None) -> Iterator[str]:
    name = f"prom-{unique}"
    conn = rabbit.connect()
    ch = conn.channel()
    rabbit.declare(ch, name)
    rabbit.publish_numbered(ch, name, 37)
    yield name
    ch.queue_delete(name)
    conn.close()


def test_query_reads_the_real_broker_through_prometheus(prom_ctx, registry, filled_queue) -> None:
    q = f'rabbitmq_detailed_queue_messages_ready{{queue="{filled_queue}"}}'
    wait_scraped(f"{q} == 37", timeout=30)
    out: Any = invoke(registry["prometheus.query"], prom_ctx, {"query": q, "above": 30})
    assert out.checked and out.result_type == "vector" and out.count == 1
    assert out.value == 37.0 and out.breached is True
    assert out.series[0].labels["queue"] == filled_queue and out.series[0].labels["vhost"] == "/"
    assert out.summary == f"{q} = 37 (threshold crossed)"
    scalar: Any = invoke(registry["prometheus.query"], prom_ctx, {"query": "scalar(vector(2.5))"})
    assert scalar.result_type == "scalar" and scalar.value == 2.5 and scalar.breached is None
    none: Any = invoke(registry["prometheus.query"], prom_ctx, {"query": 'up{job="no-such-job"}'})
    assert none.count == 0 and none.value is None and none.summary.endswith("no data")


def test_query_range_summarises_the_window(prom_ctx, registry, filled_queue) -> None:
    q = f'rabbitmq_detailed_queue_messages_ready{{queue="{filled_queue}"}}'
    wait_scraped(f"{q} == 37", timeout=30)
    # above 100: neither 37 nor a 0 the exporter may report before its 5 s stats update crosses it
    params = {"query": q, "window": "1m", "step": "2s", "above": 100}
    # the range query sees the sample a moment after the instant query does (evaluation lag under load)
    out: Any = wait_until(
        lambda: (
            (r := invoke(registry["prometheus.query_range"], prom_ctx, params)).count == 1
            and r.last == 37.0
            and r
        ),
        timeout=30,
        what="the range query to see the scraped value",
    )
    assert out.checked and out.count == 1 and out.window_seconds == 60 and out.step_seconds == 2
    assert out.last == 37.0 and out.max == 37.0 and out.series[0].points >= 1
    assert out.breached is False
    assert "over 60s" in out.summary


def test_scrape_parses_rabbitmq_prometheus_with_filters(prom_ctx, registry, filled_queue) -> None:
    params = {"url": RABBIT_METRICS, "match": "_messages_ready$", "labels": {"queue": filled_queue}}

    def scraped() -> Any:  # the plugin's queue stats are sampled every 5 s: poll
        out = invoke(registry["prometheus.scrape"], prom_ctx, params)
        return out if out.total == 37.0 else None

    out = wait_until(scraped, 30, "37 ready messages in rabbitmq_prometheus")
    assert out.samples_total > out.matched == 1
    assert out.samples[0].name == "rabbitmq_detailed_queue_messages_ready" and out.total == 37.0


def test_bad_promql_and_unreachable_prometheus_are_typed_errors(prom_ctx, registry, settings) -> None:
    with pytest.raises(ActionError, match="bad_data") as err:
        invoke(registry["prometheus.query"], prom_ctx, {"query": "sum(("})
    assert not err.value.transient
    down = ActionContext(Connections(dataclasses.replace(settings, prometheus_url="http://127.0.0.1:9")))
    with pytest.raises(BackendUnavailable):
        invoke(registry["prometheus.query"], down, {"query": "up"})


def test_without_prometheus_url_metrics_are_not_checked(settings, registry) -> None:
    ctx = ActionContext(Connections(dataclasses.replace(settings, prometheus_url=None)))
    for name, params in (
        ("prometheus.query", {"query": "up"}),
        ("prometheus.query_range", {"query": "up", "window": "30m"}),
    ):
        out: Any = invoke(registry[name], ctx, params)
        assert out.checked is False and out.summary == "metrics not checked: PROMETHEUS_URL is not set"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []
    body = b'# TYPE goqueue_consumer_lag gauge\ngoqueue_consumer_lag{topic="a"} 12\ngoqueue_up 1\n'

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, "auth": self.headers.get("authorization", "")})
        if self.path.startswith("/api/v1/query"):
            body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        elif self.path == "/broken":
            body = b"goqueue_lag{ 12\n"
        else:
            body = self.body
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    _Recorder.seen = []
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers[0].server_address[1], servers[1].server_address[1], _Recorder.seen  # type: ignore[misc]
    for s in servers:
        s.shutdown()


def test_credentials_go_only_to_prometheus_and_are_redacted(settings, registry, recorder) -> None:
    port, other_port, seen = recorder
    token, password = "prom-bearer-7f3c9a1e", "pw-basic-51d2e8"
    s = dataclasses.replace(
        settings, prometheus_url=f"http://reader:{password}@127.0.0.1:{port}", prometheus_bearer_token=token
    )
    ctx = ActionContext(Connections(s))
    invoke(registry["prometheus.query"], ctx, {"query": "up"})
    scraped: Any = invoke(registry["prometheus.scrape"], ctx, {"url": f"http://127.0.0.1:{port}/metrics"})
    invoke(registry["prometheus.scrape"], ctx, {"url": f"http://127.0.0.1:{other_port}/metrics"})
    assert [x["auth"] for x in seen] == [f"Bearer {token}"] * 2 + [""]  # the token wins over basic auth
    assert scraped.matched == 2 and scraped.total == 13.0
    basic = ActionContext(Connections(dataclasses.replace(s, prometheus_bearer_token=None)))
    invoke(registry["prometheus.query"], basic, {"query": "up"})
    assert seen[-1]["auth"] == "Basic cmVhZGVyOnB3LWJhc2ljLTUxZDJlOA=="  # reader:pw-basic-51d2e8
    assert redact(f"oops {token} {password}") == "oops *** ***"
    with pytest.raises(ActionError, match="scrape url must not carry credentials"):
        invoke(registry["prometheus.scrape"], ctx, {"url": f"http://u:p@127.0.0.1:{port}/metrics"})
    with pytest.raises(ActionError, match="not the Prometheus text format"):
        invoke(registry["prometheus.scrape"], ctx, {"url": f"http://127.0.0.1:{port}/broken"})
