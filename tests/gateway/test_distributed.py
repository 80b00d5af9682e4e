"""Beyond one machine: one Prefect server on PostgreSQL, a process work pool, two workers, deployments
made by ``prefect deploy`` from flows/playbooks.py, the gateway on the shared PostgreSQL store.
100 webhooks for 100 incidents (30 in the suite) -> as many flow runs, each executed exactly once
(Prefect API: one completed run each, run_count 1; runbook store on PostgreSQL: one run record and
one ``run.started`` each). Bounded: a dedicated server (own PREFECT_HOME and database), torn down at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from runbook.core.settings import Settings
from runbook.gateway.app import create_app
from runbook.store.schema import open_database
from tests.conftest import ROOT
from tests.gateway.conftest import SECRET
from tests.support.pagerduty_gateway import UvicornThread, free_port, write_playbook
from tests.support.pagerduty_payloads import encode, headers, incident_event
from tests.support.waiting import wait_until as _wait

# CI size: 20 runs (every assertion holds at any size; two workers still race for each run). The
# full size, 100 runs (~4-6 min on 2 cores), is benchmarks/distributed_runs.py.
RUNS = int(os.environ.get("RUNBOOK_DISTRIBUTED_RUNS", "20"))
PG = "postgresql://root@127.0.0.1:5432"
PREFECT_YAML = """
name: runbook-test
prefect-version: 3.8.8
build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $RUNBOOK_ROOT }}}}"
deployments:
  - name: {name}
    entrypoint: flows/playbooks.py:{attr}
    tags: [runbook]
    work_pool:
      name: {pool}
"""


@pytest.fixture
def pg_prefect(postgres_available: None, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Prefect server of our own on PostgreSQL (database created here, dropped afterwards)."""
    db = f"prefect_rb_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://root@127.0.0.1:5432/{db}",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait(lambda: _healthy(api), 90, "Prefect server on PostgreSQL")
        yield api
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_workers_run_each_triggered_run_exactly_once(
    pg_prefect: str, pg_store_url: str, tmp_path: Path, unique: str
) -> None:
    name = f"dist-{unique}"
    folder = tmp_path / "playbooks"
    write_playbook(folder, name, title="(?i)stuck")
    pool = f"runbook-process-{unique}"
    store_url = pg_store_url
    env = {
        **os.environ,
        "PREFECT_API_URL": pg_prefect,
        "RUNBOOK_PLAYBOOKS": str(folder),
        "RUNBOOK_ROOT": str(ROOT),
        "RUNBOOK_DATABASE_URL": store_url,
        "RUNBOOK_HOME": str(tmp_path / "home"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    r = httpx.post(f"{pg_prefect}/work_pools/", json={"name": pool, "type": "process"}, timeout=10)
    assert r.status_code == 201, r.text
    (tmp_path / "prefect.yaml").write_text(
        PREFECT_YAML.format(name=name, attr=name.replace("-", "_"), pool=pool)
    )
    deploy = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(tmp_path / "prefect.yaml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = deploy.stdout + deploy.stderr
    # Prefect 3.8.8's CLI, after saving the deployment, asks for online workers with limit=null, which
    # this server build refuses (422 on /workers/filter); only that known failure is tolerated.
    known_cli_bug = "workers/filter" in output and "422" in output
    assert deploy.returncode == 0 or known_cli_bug, output[-3000:]
    dep = httpx.get(f"{pg_prefect}/deployments/name/{name}/{name}", timeout=10).json()
    assert dep["entrypoint"] == f"flows/playbooks.py:{name.replace('-', '_')}"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                pool,
                "--limit",
                "6",
                "--name",
                f"w{i}-{unique}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=open(tmp_path / f"worker{i}.log", "w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    settings = Settings.from_env({**env, "RUNBOOK_PAGERDUTY_WEBHOOK_SECRETS": SECRET})
    app = create_app(settings, prefect_api_url=pg_prefect)
    incidents = [f"PD{unique[:6].upper()}{i:03d}" for i in range(RUNS)]
    try:
        with UvicornThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
            for i, inc in enumerate(incidents):
                body = encode(incident_event(incident_id=inc, number=i, title="queue stuck"))
                assert (
                    http.post("/webhooks/pagerduty", content=body, headers=headers(body, SECRET)).status_code
                    == 202
                )
            intake = app.state.gateway.intake

            def all_created() -> bool:
                return all(c["status"] == "started" for i in incidents for c in intake.claims(i))

            try:
                _wait(all_created, 30 + 1.5 * RUNS, "all runs created")
            except AssertionError:
                import faulthandler

                faulthandler.dump_traceback(all_threads=True)
                with psycopg.connect(f"{PG}/postgres") as conn:
                    for row in conn.execute(
                        "SELECT pid, state, wait_event_type, left(query, 120) FROM"
                        " pg_stat_activity WHERE datname = 'test'"
                    ):
                        print(row)
                raise

        def finished() -> list[dict] | None:
            runs = httpx.post(
                f"{pg_prefect}/flow_runs/filter",
                timeout=20,
                json={"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}, "limit": 200},
            ).json()
            done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
            return runs if len(done) == RUNS else None

        runs = _wait(finished, 60 + 4 * RUNS, f"{RUNS} flow runs finished", 2)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
    assert len(runs) == RUNS
    assert {r["state_type"] for r in runs} == {"COMPLETED"}
    assert all(r["run_count"] == 1 for r in runs)
    assert sorted(r["parameters"]["incident"]["id"] for r in runs) == incidents
    db = open_database(store_url)
    marks = ",".join("?" * len(incidents))
    rows = db.query(
        f"SELECT run_id, incident_id, status FROM runbook_runs WHERE incident_id IN ({marks})", incidents
    )
    assert len(rows) == RUNS and {r["run_id"] for r in rows} == {r["id"] for r in runs}
    assert {r["status"] for r in rows} == {"completed"}
    started = db.query(
        "SELECT run_id, COUNT(*) AS n FROM runbook_events WHERE kind = 'run.started'"
        f" AND incident_id IN ({marks}) GROUP BY run_id",
        incidents,
    )
    assert len(started) == RUNS and {r["n"] for r in started} == {1}
