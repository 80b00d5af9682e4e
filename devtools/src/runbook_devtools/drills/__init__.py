"""``runbook drill PLAYBOOK --fault NAME``: game day on the local services.

Why: a playbook is only trusted once it has found and fixed the fault it is written for, and the
middle of an incident is the wrong time to learn it cannot. A drill injects a named fault into the
local RabbitMQ / PostgreSQL / Kafka peer (:mod:`runbook_devtools.drills.faults`), runs the playbook against
it in-process through its real Prefect flow, answers its approvals through the real approval path
(the CLI channel, as a built-in drill approver) when ``--approve`` is given — otherwise every
approval is denied, so the drill shows what the playbook *finds* without letting it act — then
prints whether the playbook found the fault (its verdict) and fixed it (a post-check of the real
system), and cleans the fault up. Exit 0 when found and fixed, 1 otherwise.

Without ``KUBECONFIG`` the Kubernetes steps talk to a stand-in whose workloads drive real local
consumers and brokers (:mod:`runbook_devtools.drills.kube_standin`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.core.settings import Settings
from runbook.store.launches import Launch, launched_here
from runbook_devtools.approver import Ballot, ScriptedApprover
from runbook_devtools.drills.targets import NotLoopback, require_loopback

DRILL_PEOPLE = ("drill-approver-1", "drill-approver-2", "drill-approver-3")


@dataclass
class DrillReport:
    playbook: str
    fault: str
    run_id: str | None = None
    status: str | None = None
    found: bool = False
    found_detail: str = ""
    fixed: bool = False
    fixed_detail: str = ""
    verdicts: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 0 if self.found and self.fixed else 1

    def text(self) -> str:
        yes = {True: "yes", False: "NO"}
        return "\n".join(
            [
                f"drill {self.fault} against {self.playbook}: run {self.run_id} {self.status}"
                f" in {self.seconds:.1f}s",
                f"  found: {yes[self.found]} — {self.found_detail}",
                f"  fixed: {yes[self.fixed]} — {self.fixed_detail}",
                *(f"  approval: {d}" for d in self.decisions),
                *(f"  note: {n}" for n in self.notes),
                f"  timeline: runbook timeline {self.run_id}" if self.run_id else "",
            ]
        ).rstrip()


class DrillApprover(ScriptedApprover):
    """Answers the drill run's approvals through the real decision service on the CLI channel: every
    drill person needed approves (``--approve``), or one denies (observe only)."""

    def __init__(self, settings: Settings, requested_by: str, *, approve: bool) -> None:
        super().__init__(settings, requested_by, self._ballot, interval=0.2, name="drill-approver")
        self.approve = approve

    def _ballot(self, row: Any) -> Ballot:
        if self.approve:
            return Ballot(DRILL_PEOPLE[: row.request.min_approvals], True, "drill approver (--approve)", True)
        return Ballot(DRILL_PEOPLE[:1], False, "drill without --approve: observe only", True)


def _approvers_file(playbook: Any, folder: Path) -> Path:
    roles = sorted(
        {r for s in [*playbook.steps, *playbook.finally_] if s.approval for r in s.approval.approvers}
    )
    path = folder / "drill-approvers.yaml"
    people = ", ".join(DRILL_PEOPLE)
    path.write_text(
        "people:\n"
        + "".join(f"  {p}: ['unix:{p}']\n" for p in DRILL_PEOPLE)
        + "roles:\n"
        + "".join(f"  {r}: [{people}]\n" for r in roles or ["incident-commander"])
    )
    return path


def verdicts_of(store: Any, run_id: str) -> list[str]:
    """Every ``verdict`` a step of the run produced (classify steps), in order."""
    found = []
    for e in store.events(run_id):
        out = e.details.get("output") if e.kind == "step.succeeded" else None
        if isinstance(out, dict) and isinstance(out.get("verdict"), str):
            found.append(out["verdict"])
    return found


def run_drill(
    playbook_ref: str, fault_name: str, user_params: dict[str, Any] | None = None, *, approve: bool = False
) -> DrillReport:
    """Inject, run, judge, clean up. Raises KeyError for an unknown fault, and
    :class:`~runbook_devtools.drills.targets.NotLoopback` (before touching anything) when a target the
    environment names is not on this machine."""
    from runbook.cli import _quiet_prefect
    from runbook.compiler.flow import build_flow
    from runbook.compiler.params import coerce_params
    from runbook.runtime import build_runtime, cached_registry
    from runbook.spec.loading import find_playbook
    from runbook_devtools.drills.faults import FAULTS
    from runbook_devtools.drills.kube_standin import KubeWorld

    _quiet_prefect()
    settings = Settings.from_env()
    require_loopback(os.environ, settings)  # before any fault, approval or connection
    real = cached_registry()
    pb = find_playbook(playbook_ref, settings.playbooks, real)
    tag = uuid.uuid4().hex[:8]
    fault = FAULTS[fault_name](tag, settings)
    report = DrillReport(playbook=pb.name, fault=fault_name)
    kube = KubeWorld()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runbook-drill-") as tmp:
        try:
            fault.inject(kube)
            env = {**fault.env(), "RUNBOOK_APPROVERS": str(_approvers_file(pb, Path(tmp)))}
            # the run's settings point at the drill's services: handed to the runtime, the process
            # environment is left alone
            drill_settings = Settings.from_env({**os.environ, **env})
            defaults = {k: v for k, v in fault.params().items() if k in pb.params}
            params = coerce_params(pb, {**defaults, **(user_params or {})})
            registry = None if settings.kubeconfig else kube.registry(real)
            if registry is not None:
                report.notes.append(
                    "Kubernetes: drill stand-in wired to the local services (no KUBECONFIG)"
                )
            requester = f"drill-{tag}"
            approver = DrillApprover(drill_settings, requester, approve=approve).start()
            try:
                with launched_here(Launch("drill", f"unix:{requester}")):
                    flow = build_flow(pb, lambda: build_runtime(drill_settings, registry=registry))
                    state = flow(**params, return_state=True)
            finally:
                approver.stop()
            report.decisions = approver.decisions
            report.run_id = str(state.state_details.flow_run_id)
            store = build_runtime(drill_settings).store
            run = store.get_run(report.run_id) or {}
            report.status = run.get("status", "unknown")
            report.verdicts = verdicts_of(store, report.run_id)
            report.found, report.found_detail = fault.found(report.verdicts)
            report.fixed, report.fixed_detail = fault.fixed()
        finally:
            fault.cleanup()
            report.notes += fault.notes
            report.seconds = time.monotonic() - started
    return report


def add_drill_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``runbook drill`` sub-command (entry point ``runbook.commands``: drill)."""
    p = sub.add_parser("drill", help="inject a fault into local services and run a playbook against it")
    p.add_argument("playbook")
    p.add_argument("--fault", required=True)
    p.add_argument("-p", "--param", action="append", default=[], metavar="K=V")
    p.add_argument("--approve", action="store_true", help="a drill approver approves every gated step")
    p.set_defaults(func=drill_command)


def drill_command(args: argparse.Namespace) -> int:
    from runbook.cli import require_prefect_server
    from runbook.compiler.params import parse_assignments
    from runbook_devtools.drills.faults import FAULTS

    if args.fault not in FAULTS:
        print(f"error: unknown fault {args.fault!r}; known: {', '.join(sorted(FAULTS))}", file=sys.stderr)
        return 1
    from runbook.cli import _quiet_prefect

    _quiet_prefect()
    try:
        require_loopback(os.environ, Settings.from_env())
    except NotLoopback as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problem = require_prefect_server()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    fault = FAULTS[args.fault]
    print(f"drill: injecting {fault.name} ({fault.summary}); playbook {args.playbook}", flush=True)
    report = run_drill(args.playbook, args.fault, parse_assignments(args.param), approve=bool(args.approve))
    print(report.text(), flush=True)
    return report.exit_code
