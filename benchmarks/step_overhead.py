"""Per-step engine overhead and time to first step.

* A playbook of N ``core.assert`` steps run as a Prefect flow on the local server, against the same
  checks evaluated directly (same expression, same action function): overhead per step.
* The same N steps timed inside the flow (first ``step.started`` to the last step's end) against a
  bare Prefect flow of N trivial tasks with the same names, tags and options, timed inside its flow
  too, in the same process: the engine's cost a step beyond Prefect's own task run.
* ``runbook run`` as a fresh process: wall time from exec to the first ``step.started`` event
  (``benchmarks/run_start.py`` takes the median of several).

Prints one JSON line. ``--small`` runs 20 steps (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")


def server_cpu_seconds() -> float | None:
    """CPU the local Prefect server has used (from the pid file `make prefect-server` writes)."""
    pidfile = Path(os.environ.get("RUNBOOK_HOME", Path.home() / ".runbook")) / "prefect-server.pid"
    try:
        fields = Path(f"/proc/{int(pidfile.read_text())}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return None


def wait_server_idle(limit: float = 180.0) -> float:
    """Wait until the server has caught up with the events of the last flow (under 5% CPU for a
    second): a round that starts while it still works through the previous one's is slowed by it.
    Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        a = server_cpu_seconds()
        time.sleep(1.0)
        b = server_cpu_seconds()
        if a is None or b is None or b - a < 0.05:
            break
    return time.monotonic() - t0


def playbook_text(n: int) -> str:
    steps = "\n".join(
        f'  - id: s{i}\n    action: core.assert\n    with: {{that: "{{{{ params.x + {i} > 0 }}}}"}}'
        for i in range(n)
    )
    head = "name: bench-overhead\ntitle: overhead\nowner: bench\n"
    return head + f"params:\n  x: {{type: integer, default: 1}}\nsteps:\n{steps}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = 20 if args.small else args.steps
    tmp = Path(tempfile.mkdtemp(prefix="rb-bench-"))
    os.environ["RUNBOOK_DATABASE_URL"] = f"sqlite:///{tmp / 'rb.db'}"
    path = tmp / "bench.yaml"
    path.write_text(playbook_text(n))

    from runbook.actions import ActionContext, Connections, default_registry
    from runbook.actions.core.actions import AssertParams, assert_
    from runbook.compiler.flow import build_flow
    from runbook.core.expressions import render_value
    from runbook.core.settings import Settings
    from runbook.runtime import from_environment
    from runbook.spec.loading import load_playbook

    registry = default_registry()
    pb = load_playbook(path, registry)

    # direct: the same checks, same rendering and action call, no engine, no Prefect
    ctx = ActionContext(Connections(Settings.from_env()))
    def direct_pass() -> float:
        t0 = time.perf_counter()
        for step in pb.steps:
            rendered = render_value(step.with_, {"params": {"x": 1}})
            assert_(ctx, AssertParams.model_validate(rendered))
        return time.perf_counter() - t0

    # least of three: the first pass also compiles each step's template (the engine's runs, timed
    # as the least of their rounds, find them compiled too)
    direct = min(direct_pass() for _ in range(3))

    import contextlib
    import io

    from runbook.runtime import build_runtime

    store = build_runtime().store

    cpus: dict[int, list[float]] = {}  # steps -> this process's CPU seconds for each engine flow
    bare_cpus: dict[int, list[float]] = {}

    def timed_flow(playbook) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        """(the whole flow call, first ``step.started`` → last step's end read from the store)."""
        flow = build_flow(playbook, from_environment)
        wait_server_idle()
        with contextlib.redirect_stdout(io.StringIO()):
            c0, t0 = time.process_time(), time.perf_counter()
            state = flow(return_state=True)
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert state.is_completed(), state.message
        events = store.events(str(state.state_details.flow_run_id))
        first = next(e.time for e in events if e.kind.value == "step.started")
        last = [e.time for e in events if e.kind.value == "step.succeeded"][-1]
        cpus.setdefault(len(playbook.steps), []).append(cpu)
        return took, (last - first).total_seconds()

    # a bare Prefect flow of the same number of trivial named tasks (same tags and options), same run
    from prefect import flow as prefect_flow
    from prefect import task as prefect_task
    from prefect.cache_policies import NO_CACHE

    def trivial() -> dict[str, bool]:
        return {"ok": True}

    @prefect_flow(name="bench-bare-prefect", persist_result=False)
    def bare(count: int) -> float:
        t0 = time.perf_counter()
        for i in range(count):
            prefect_task(
                trivial,
                name=f"s{i}",
                task_run_name=f"s{i}",
                tags=["core.assert", "playbook:bench-overhead"],
                persist_result=False,
                cache_policy=NO_CACHE,
                retries=0,
                log_prints=False,
            )()
        return time.perf_counter() - t0

    def timed_bare(count: int) -> tuple[float, float]:
        wait_server_idle()
        c0, t0 = time.process_time(), time.perf_counter()
        inner = bare(count)
        bare_cpus.setdefault(count, []).append(time.process_time() - c0)
        return time.perf_counter() - t0, inner

    single = tmp / "single.yaml"
    single.write_text(playbook_text(1))
    timed_flow(load_playbook(single, registry))  # warm-up: imports, client, first API calls
    bare(1)
    # Each figure is the least of three, engine and bare runs alternating. Whole-flow times are
    # kept for comparison with older lines, but the per-step figures are timed INSIDE the flow: a
    # run's end waits up to ~1 s on Prefect's heartbeat thread, which hides that much work (a bare
    # flow of 200 tasks took as long as one of 1 task), so "N-step flow minus 1-step flow" is wrong
    load_before = os.getloadavg()
    engine_runs, bare_runs, fixed_runs, bare_fixed_runs = [], [], [], []
    for _ in range(args.rounds):
        fixed_runs.append(timed_flow(load_playbook(single, registry))[0])
        engine_runs.append(timed_flow(pb))
        bare_fixed_runs.append(timed_bare(1)[0])
        bare_runs.append(timed_bare(n))
    fixed = min(fixed_runs)
    engine = min(t for t, _ in engine_runs)
    engine_inside = min(i for _, i in engine_runs) / n
    bare_fixed = min(bare_fixed_runs)
    bare_total = min(t for t, _ in bare_runs)
    bare_inside = min(i for _, i in bare_runs) / n
    bare_per_task = (bare_total - bare_fixed) / (n - 1)
    beyond = engine_inside - bare_inside - direct / n  # the action itself (direct) is not overhead
    # CPU this process spent a step (all its threads: Prefect's event and log threads included),
    # marginal: (N-step flow - 1-step flow) / (N - 1), least of the rounds. Waiting on the server
    # costs no CPU, so this is the steadiest figure of what the engine adds on top of Prefect.
    engine_cpu = (min(cpus[n]) - min(cpus[1])) / (n - 1)
    bare_cpu = (min(bare_cpus[n]) - min(bare_cpus[1])) / (n - 1)
    beyond_cpu = engine_cpu - bare_cpu - direct / n

    # time from `runbook run` (a new process) to the first step starting
    one = tmp / "one.yaml"
    one.write_text(playbook_text(1).replace("bench-overhead", "bench-first-step"))
    wait_server_idle()
    started = time.time()
    res = subprocess.run(
        [sys.executable, "-m", "runbook.cli", "run", str(one)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    run = store.runs(limit=1)[0]
    first = next(e for e in store.events(run["run_id"]) if e.kind.value == "step.started")
    to_first = first.time.timestamp() - started
    total = time.time() - started

    print(
        json.dumps(
            {
                "benchmark": "step_overhead",
                "steps": n,
                "direct_ms_total": round(direct * 1000, 2),
                "flow_ms_total": round(engine * 1000, 1),
                "flow_ms_one_step": round(fixed * 1000, 1),
                "overhead_ms_per_step": round(((engine - fixed) - direct * (n - 1) / n) * 1000 / (n - 1), 2),
                "bare_prefect_ms_total": round(bare_total * 1000, 1),
                "bare_prefect_ms_one_task": round(bare_fixed * 1000, 1),
                "bare_prefect_ms_per_task": round(bare_per_task * 1000, 2),
                "engine_ms_per_step_in_flow": round(engine_inside * 1000, 2),
                "bare_prefect_ms_per_task_in_flow": round(bare_inside * 1000, 2),
                "engine_ms_per_step_beyond_prefect": round(beyond * 1000, 2),
                "engine_cpu_ms_per_step": round(engine_cpu * 1000, 2),
                "bare_prefect_cpu_ms_per_task": round(bare_cpu * 1000, 2),
                "engine_cpu_ms_per_step_beyond_prefect": round(beyond_cpu * 1000, 2),
                "engine_ms_per_step_in_flow_all": [round(i * 1000 / n, 2) for _, i in engine_runs],
                "bare_prefect_ms_per_task_in_flow_all": [round(i * 1000 / n, 2) for _, i in bare_runs],
                "cli_run_to_first_step_s": round(to_first, 2),
                "cli_run_total_s": round(total, 2),
                "loadavg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
    )


if __name__ == "__main__":
    main()
