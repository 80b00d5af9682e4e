"""Load: N concurrent incident runs (mixed shipped playbooks, some left waiting for approval) in one
worker process through their real Prefect flows, against the local RabbitMQ and the drill's
Kubernetes stand-in. Checks that every run completes or waits correctly (running, approval pending,
heartbeat fresh, Prefect flow run Paused) and none is lost (every run has a final status after the
waiting ones are denied; the reaper finds nothing to reap), and reports time and memory.

Prints ONE JSON line on stdout (the runs' console timelines go to stderr). ``--small`` runs 10 (CI);
the default is 50. ``LOAD_DEBUG=1`` prints progress to stderr.
``--store sqlite`` (default: a fresh SQLite file) or ``--store postgres`` (a fresh database created on
the local PostgreSQL for this run and dropped after it; ``--store-url`` names another one, kept): the
runbook store every run writes its timeline, ledger, heartbeats and approvals to. The line says
which store, which database the Prefect server runs on, and the machine's load average.
Mix (by run index i): i%4==0 daily-hygiene, 1 stuck-queue on an idle queue, 2 backlog-triage whose
mitigation is approved by the drill approver (CLI channel), 3 backlog-triage left waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"


def fresh_pg_store(tag: str) -> str:
    """A new, empty PostgreSQL database for this run's store: the reaper and the pending-approval
    look-ups of the benchmark must not see other processes' runs in a shared one."""
    import psycopg

    name = f"runbook_load_{tag}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_pg_store(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def prefect_database(flow_run_id: str | None) -> str:
    """Which database the Prefect server keeps its flow runs in: ``postgres`` when the local
    PostgreSQL's ``prefect`` database holds this benchmark's flow run, else ``sqlite``."""
    if flow_run_id is None:
        return "unknown"
    try:
        import psycopg

        url = os.environ.get("PREFECT_PG_URL", "postgresql://root@127.0.0.1:5432/prefect")
        url = url.replace("postgresql+asyncpg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SELECT 1 FROM flow_run WHERE id = %s", (flow_run_id,)).fetchone()
        return "postgres" if row else "sqlite"
    except Exception:  # noqa: BLE001 - no such database or table: the server is not on PostgreSQL
        return "sqlite"


def run_load(n: int, heartbeat: float = 2.0, store_url: str | None = None) -> dict[str, Any]:
    os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="runbook-load-"))
    os.environ["RUNBOOK_DATABASE_URL"] = (
        store_url or os.environ.get("LOAD_STORE_URL") or f"sqlite:///{tmp / 'runbook.db'}"
    )
    load_before = os.getloadavg()
    os.environ["RUNBOOK_HOME"] = str(tmp / "home")
    os.environ["RUNBOOK_HEARTBEAT_SECONDS"] = str(heartbeat)
    for k in ("SLACK_BOT_TOKEN", "KUBECONFIG"):
        os.environ.pop(k, None)

    import httpx
    from runbook_devtools.drills import DrillApprover, _approvers_file
    from runbook_devtools.drills.kube_standin import KubeWorld, Workload

    from runbook.approvals.policy import Identity
    from runbook.cli import _quiet_prefect
    from runbook.compiler.flow import build_flow
    from runbook.core.settings import Settings
    from runbook.runtime import build_runtime, cached_registry
    from runbook.spec.loading import find_playbook
    from runbook.store.launches import Launch, launched_here
    from runbook.timeline.reaper import reap_lost_runs

    _quiet_prefect()
    rss_start = rss_mb()
    real = cached_registry()
    kube = KubeWorld()
    kube.add_workload(Workload("orchestrator", "orchestrator", 2, {"app": "orchestrator"}))
    registry = kube.registry(real)
    books = {
        name: find_playbook(name, ROOT / "playbooks", real)
        for name in ("daily-hygiene", "stuck-queue", "backlog-triage")
    }
    os.environ["RUNBOOK_APPROVERS"] = str(_approvers_file(books["backlog-triage"], tmp))
    flows = {name: build_flow(pb, lambda: build_runtime(registry=registry)) for name, pb in books.items()}
    settings = Settings.from_env()
    store = build_runtime().store
    tag = uuid.uuid4().hex[:6]
    mgmt = "http://127.0.0.1:15672/api/queues/%2F/"
    queues = [f"load-{tag}-{i}" for i in range(n)]
    for q in [*queues, *(f"{q}-dlq" for q in queues)]:
        httpx.put(mgmt + q, json={"durable": False}, auth=("guest", "guest"), timeout=10).raise_for_status()

    try:
        plans: list[tuple[str, dict[str, Any], str]] = []
        for i, q in enumerate(queues):
            kind = i % 4
            if kind == 0:
                plans.append(("daily-hygiene", {}, f"load-{tag}-hyg"))
            elif kind == 1:
                plans.append(
                    ("stuck-queue", {"queue": q, "window": 5, "check_executions": False}, f"load-{tag}-stuck")
                )
            else:
                who = f"load-{tag}-ok" if kind == 2 else f"load-{tag}-wait"
                plans.append(
                    (
                        "backlog-triage",
                        {
                            "queue": q,
                            "dlq": f"{q}-dlq",
                            "progress_window": 5,
                            "check_database": False,
                            "redrive_dlq": False,
                        },
                        who,
                    )
                )
        approver = DrillApprover(settings, f"load-{tag}-ok", approve=True).start()
        states: dict[int, Any] = {}
        errors: dict[int, str] = {}

        create_retries = [0]

        def refused_create(exc: BaseException) -> bool:
            """The Prefect server (SQLite, 2 cores) refused to *create* the flow run (503 after its
            client's own retries): the run never existed. Production starts retry this (the gateway's
            starter backs off for about an hour); so does this harness, and counts it."""
            request = getattr(exc, "request", None)
            return (
                getattr(getattr(exc, "response", None), "status_code", None) == 503
                and request is not None
                and request.method == "POST"
                and request.url.path.rstrip("/").endswith("/flow_runs")
            )

        def go(i: int) -> None:
            name, params, who = plans[i]
            for attempt in range(5):
                try:
                    with launched_here(Launch("load", f"unix:{who}")):
                        states[i] = flows[name](**params, return_state=True)
                    return
                except BaseException as exc:  # noqa: BLE001 - counted as lost unless a refused create
                    if refused_create(exc) and attempt < 4:
                        create_retries[0] += 1
                        time.sleep(2.0 * (attempt + 1))
                        continue
                    errors[i] = f"{type(exc).__name__}: {exc}"
                    return

        started = time.monotonic()
        threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(n)]
        peak = [rss_mb()]
        for t in threads:
            t.start()
        waiting_expected = sum(1 for p in plans if p[2].endswith("-wait"))
        approvals = build_runtime(settings).approvals()

        def waiting_rows() -> list[Any]:
            return [r for r in approvals.store.pending() if r.request.requested_by == f"unix:load-{tag}-wait"]

        # at least 3 minutes: at CI size the runs share the machine with the rest of the suite, and a
        # triage reaching its gate took longer than 108 s there once (counted as lost, though running)
        deadline = time.monotonic() + max(180, 60 + 12 * n)
        while time.monotonic() < deadline:
            peak.append(rss_mb())
            finished = sum(1 for t in threads if not t.is_alive())
            waiting_now = len(waiting_rows())
            if os.environ.get("LOAD_DEBUG"):
                print(
                    f"[load] {time.monotonic() - started:.0f}s finished {finished}, waiting {waiting_now}",
                    file=sys.stderr,
                )
            if finished + waiting_now == n:  # every run has finished or is waiting for its approval
                break
            time.sleep(0.5)
        settle_seconds = time.monotonic() - started
        # the waiting runs: still running, approval pending, heartbeat fresh, not reapable, Prefect Paused
        wait_ok = 0
        reaped = reap_lost_runs(store, max(10.0, heartbeat * 5))
        for row in waiting_rows():
            run = store.get_run(row.run_id) or {}
            fr = httpx.get(f"{os.environ['PREFECT_API_URL']}/flow_runs/{row.run_id}", timeout=10).json()
            if run.get("status") == "running" and (fr.get("state") or {}).get("type") == "PAUSED":
                wait_ok += 1
        for row in waiting_rows():  # now decide them: deny (the step is skipped, the run completes)
            approvals.vote(
                row, Identity(unix="drill-approver-1"), approve=False, reason="load test", channel="cli"
            )
        finish_by = time.monotonic() + 120 + 2 * n  # the denied runs' remaining steps and finally
        for t in threads:
            t.join(max(1.0, finish_by - time.monotonic()))
            peak.append(rss_mb())
        approver.stop()
        wall = time.monotonic() - started
        statuses: dict[str, int] = {}
        by_playbook: dict[str, dict[str, int]] = {}
        lost = 0
        for i, (name, _, _) in enumerate(plans):
            state = states.get(i)
            run = store.get_run(str(state.state_details.flow_run_id)) if state is not None else None
            # a run whose flow call has not returned by the harness's end is unfinished, not lost
            status = run["status"] if run else ("unfinished" if threads[i].is_alive() else "lost")
            lost += status in ("lost", "running", "crashed", "unfinished")
            statuses[status] = statuses.get(status, 0) + 1
            by_playbook.setdefault(name, {}).setdefault(status, 0)
            by_playbook[name][status] += 1
        some_run = next((str(st.state_details.flow_run_id) for st in states.values() if st is not None), None)
        return {
            "benchmark": "load_runs",
            "runs": n,
            "store": "postgres" if store.db.is_postgres else "sqlite",
            "prefect_db": prefect_database(some_run),
            "loadavg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "cpus": os.cpu_count(),
            "statuses": statuses,
            "by_playbook": by_playbook,
            "waiting_expected": waiting_expected,
            "waiting_ok": wait_ok,
            "lost": lost + len(errors),
            "errors": list(errors.values())[:5],
            "create_retries": create_retries[0],
            "reaped_while_alive": len(reaped),
            "seconds_to_settle": round(settle_seconds, 1),
            "wall_seconds": round(wall, 1),
            "rss_mb_start": round(rss_start, 1),
            "rss_mb_peak": round(max(peak), 1),
            "rss_mb_per_run": round((max(peak) - rss_start) / n, 2),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:  # never leave the load queues behind, even when interrupted
        for q in [*queues, *(f"{q}-dlq" for q in queues)]:
            httpx.delete(mgmt + q, auth=("guest", "guest"), timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10 runs instead of 50")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite", help="the runbook store")
    parser.add_argument("--store-url", default=None, help="an existing PostgreSQL store to use (kept)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import contextlib
    import uuid

    created = None
    url = args.store_url
    if args.store == "postgres" and url is None:
        url = created = fresh_pg_store(uuid.uuid4().hex[:8])
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the runs' console timelines; stdout is the JSON
            result = run_load(args.runs or (10 if args.small else 50), store_url=url)
    finally:
        if created:
            drop_pg_store(created)
    print(json.dumps(result), flush=True)
    ok = (
        result["lost"] == 0
        and result["waiting_ok"] == result["waiting_expected"]
        and not result["reaped_while_alive"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
