"""Webhook intake benchmark: sustained signed webhooks/s with p50/p99 latency, and the time from a
webhook to the first step's ``step.started`` event on the timeline (p50/p95 over 30 incidents).

Part 1 runs the gateway alone (``create_app(run_starter=False)`` under uvicorn, its own process,
SQLite store) and drives it with 32 concurrent clients sending documented-shape V3 payloads, each for
a new incident (so every request writes a delivery and a run claim: the worst case). Part 2 runs
``runbook serve`` (fast lane on, then off) and a gateway with its starter against the Prefect server
at PREFECT_API_URL (default http://127.0.0.1:4200/api) and sends one incident at a time.

Prints ONE JSON line. ``--small`` for CI (3 s of load, 5 incidents, no runner-only comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runbook_devtools.net import free_port  # noqa: E402

from runbook.store.schema import open_database  # noqa: E402
from tests.support.pagerduty_gateway import write_playbook  # noqa: E402
from tests.support.pagerduty_payloads import encode, headers, incident_event  # noqa: E402

SECRET = "bench-webhook-secret"
SERVER = """
import sys, uvicorn
from runbook.gateway.app import create_app
uvicorn.run(create_app(run_starter=sys.argv[2] == "1"), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", access_log=False)
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000, 1)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def load(
    url: str, seconds: float, concurrency: int, tag: str
) -> tuple[int, list[float], dict[int, int]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    counter = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal counter
        while time.monotonic() < deadline:
            counter += 1
            body = encode(
                incident_event(incident_id=f"PB{tag}{counter:07d}", number=counter, title="queue stuck")
            )
            h = headers(body, SECRET)
            t0 = time.perf_counter()
            r = await client.post(url, content=body, headers=h)
            latencies.append(time.perf_counter() - t0)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return len(latencies), latencies, codes


def throughput(env: dict[str, str], tmp: Path, seconds: float) -> dict:
    port = free_port()
    env = {**env, "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp / 'intake.db'}"}  # its claims are never started
    server = start([sys.executable, "-c", SERVER, str(port), "0"], env, tmp / "intake.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/webhooks/pagerduty"
        asyncio.run(load(url, 1.0, 8, "W" + uuid.uuid4().hex[:4].upper()))  # warm-up
        t0 = time.monotonic()
        n, lat, codes = asyncio.run(load(url, seconds, 32, uuid.uuid4().hex[:6].upper()))
        elapsed = time.monotonic() - t0
    finally:
        stop(server)
    return {
        "webhooks_per_s": round(n / elapsed, 1),
        "requests": n,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "max_ms": round(max(lat) * 1000, 1),
        "status_codes": codes,
    }


def first_step_latency(env: dict[str, str], tmp: Path, incidents: int, fast_lane: bool, api: str) -> dict:
    from runbook.store.timeline import TimelineStore

    env = {**env, "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp / f'latency-{fast_lane}.db'}"}
    serve_env = {**env, "RUNBOOK_FAST_LANE": "1" if fast_lane else "0"}
    serve = start(
        [sys.executable, "-m", "runbook.cli", "serve", "--limit", "4"],
        serve_env,
        tmp / f"serve-{fast_lane}.log",
    )
    port = free_port()
    gateway = start([sys.executable, "-c", SERVER, str(port), "1"], env, tmp / f"gateway-{fast_lane}.log")
    db = open_database(env["RUNBOOK_DATABASE_URL"])
    store = TimelineStore(db)
    name = env["BENCH_PLAYBOOK"]
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        deadline = time.monotonic() + 90
        while httpx.get(f"{api}/deployments/name/{name}/{name}", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("runbook serve did not register the deployment")
            time.sleep(0.3)
        time.sleep(2.5)  # first runner and fast-lane polls done: "warm"
        results = []
        tag = uuid.uuid4().hex[:6].upper()
        for i in range(incidents):
            inc = f"PL{tag}{i:03d}"
            body = encode(incident_event(incident_id=inc, number=i, title="queue stuck"))
            sent = time.time()
            r = httpx.post(
                f"http://127.0.0.1:{port}/webhooks/pagerduty",
                content=body,
                headers=headers(body, SECRET),
                timeout=10,
            )
            assert r.status_code == 202, r.text
            while time.time() - sent < 60:
                rows = db.query("SELECT flow_run_id FROM runbook_run_claims WHERE incident_id = ?", (inc,))
                run_id = rows[0]["flow_run_id"] if rows else None
                started = (
                    [e for e in store.events(run_id) if e.kind.value == "step.started"] if run_id else []
                )
                if started:
                    results.append(started[0].time.timestamp() - sent)
                    break
                time.sleep(0.01)
            else:
                log = (tmp / f"serve-{fast_lane}.log").read_text()[-3000:]
                raise RuntimeError(f"no first step for {inc} within 60 s; runbook serve said:\n{log}")
            time.sleep(0.5)
    finally:
        stop(gateway)
        stop(serve)
        httpx.delete(f"{api}/deployments/name/{name}/{name}", timeout=5)  # best effort
    return {
        "incidents": len(results),
        "p50_s": round(statistics.median(results), 3),
        "p95_s": round(sorted(results)[min(len(results) - 1, int(0.95 * len(results)))], 3),
        "max_s": round(max(results), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="reduced size for CI")
    args = parser.parse_args()
    api = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    with tempfile.TemporaryDirectory(prefix="rb-bench-") as d:
        tmp = Path(d)
        name = f"bench-intake-{uuid.uuid4().hex[:6]}"
        write_playbook(tmp / "playbooks", name, title="(?i)stuck")
        env = {
            **os.environ,
            "RUNBOOK_PLAYBOOKS": str(tmp / "playbooks"),
            "RUNBOOK_DATABASE_URL": f"sqlite:///{tmp / 'runbook.db'}",
            "RUNBOOK_HOME": str(tmp / "home"),
            "RUNBOOK_PAGERDUTY_WEBHOOK_SECRETS": SECRET,
            "PREFECT_API_URL": api,
            "BENCH_PLAYBOOK": name,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        out: dict = {"benchmark": "webhook_intake", "small": args.small, "cpus": os.cpu_count()}
        out["intake"] = throughput(env, tmp, 3.0 if args.small else 20.0)
        out["first_step_fast_lane"] = first_step_latency(env, tmp, 5 if args.small else 30, True, api)
        if not args.small:
            out["first_step_runner_only"] = first_step_latency(env, tmp, 10, False, api)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
