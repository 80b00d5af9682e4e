"""The ``runbook`` command. Sub-commands and exit codes are a contract (DESIGN.md, CLI).

Heavy imports (Prefect ~1.2 s) happen only in the sub-commands that need them, so ``lint`` and
``plan`` stay fast in CI. A bad playbook or parameter is a message and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from runbook.actions.registry import ActionRegistry
from runbook.core.settings import Settings
from runbook.core.states import RunStatus
from runbook.spec.models import Playbook


def _error(text: str) -> None:
    """``error: TEXT`` on stderr, the prefix in red on a terminal (never with ``NO_COLOR``)."""
    from runbook.timeline.console import RED, paint, wants_colour

    print(f"{paint('error:', RED, wants_colour(sys.stderr))} {text}", file=sys.stderr)


def _quiet_prefect() -> None:
    """Prefect's own settings (telemetry off, quiet logs, the local server) before it is imported."""
    from runbook.compiler.prefect_runs import prefect_process_defaults

    prefect_process_defaults(Settings.from_env().prefect_api_url)


def require_prefect_server() -> str | None:
    """None when the Prefect API answers, else a message saying how to start it."""
    from runbook.compiler.prefect_runs import server_problem

    return server_problem(Settings.from_env().prefect_api_url)


def _registry() -> ActionRegistry:
    from runbook.runtime import cached_registry

    return cached_registry()


def _load(args: argparse.Namespace) -> Playbook:
    from runbook.spec.loading import find_playbook

    return find_playbook(args.playbook, Settings.from_env().playbooks, _registry())


def _approver_roles() -> list[str] | None:
    """The roles of the approvers file when ``RUNBOOK_APPROVERS`` is set (None when it is not)."""
    from runbook.approvals.policy import PolicyFile

    path = Settings.from_env().approvers_file
    if path is None:
        return None
    policy = PolicyFile(path).get()
    if policy.error:
        print(f"warning: approver roles not checked: {policy.error}", file=sys.stderr)
        return None
    return list(policy.roles)


def cmd_lint(args: argparse.Namespace) -> int:
    from runbook.spec.lint import lint_paths

    problems = lint_paths(args.paths, _registry(), roles=_approver_roles())
    errors = [p for p in problems if not p.message.startswith("warning:")]
    for p in problems:
        print(p)
    if not errors:
        print(f"ok: {', '.join(args.paths)}", file=sys.stderr)
    return 1 if errors else 0


def cmd_plan(args: argparse.Namespace) -> int:
    from runbook.compiler.params import coerce_params, parse_assignments
    from runbook.compiler.plan import format_plan, plan

    playbook = _load(args)
    params = coerce_params(playbook, parse_assignments(args.param))
    print(format_plan(playbook, params, plan(playbook, params, _registry())))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from runbook.compiler.params import coerce_params, parse_assignments

    playbook = _load(args)
    params = coerce_params(playbook, parse_assignments(args.param))
    _quiet_prefect()
    problem = require_prefect_server()
    if problem:
        _error(problem)
        return 1
    from runbook.approvals.policy import operating_system_user
    from runbook.compiler.flow import build_flow
    from runbook.runtime import build_runtime, from_environment
    from runbook.store.launches import Launch, launched_here

    user = operating_system_user()
    if args.as_user and args.as_user != user:
        _error(
            f"--as {args.as_user!r}: a run is requested by the operating-system user running it"
            f" ({user!r}); --as may only name yourself"
        )
        return 1
    flow = build_flow(playbook, from_environment)
    with launched_here(Launch("cli", f"unix:{user}")):
        state: Any = flow(**params, dry_run=args.dry_run, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    run = build_runtime().store.get_run(run_id)
    status = run["status"] if run else "failed"
    from runbook.timeline.console import BOLD, STATUS_COLOUR, paint, wants_colour

    reason = f" — {run['reason']}" if run and run.get("reason") else ""
    colour = BOLD + STATUS_COLOUR.get(status, "")
    print(f"\nrun {run_id}: {paint(status, colour, wants_colour(sys.stdout))}{reason}")
    print(f"timeline: runbook timeline {run_id}")

    return RunStatus(status).exit_code if status in set(RunStatus) else 1


def _returns(spec: Any) -> list[str]:
    """The fields later steps may read as ``steps.<id>.<field>``."""
    return [f.alias or n for n, f in spec.result_model.model_fields.items()]


def cmd_actions(args: argparse.Namespace) -> int:
    registry = _registry()
    if args.json:
        rows = [
            {
                "name": s.name,
                "summary": s.summary,
                "destructive": s.destructive,
                "manual": s.manual,
                "parameters": s.parameters(),
                "result_fields": _returns(s),
            }
            for s in registry
        ]
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for s in registry:
        flag = "DESTRUCTIVE" if s.destructive else ("manual" if s.manual else "read-only")
        print(f"{s.name}  ({flag})\n    {s.summary}")
        for p in s.parameters():
            req = "required" if p["required"] else f"default {json.dumps(p['default'], default=str)}"
            print(f"    - {p['name']}: {p['type']} ({req}) {p['description']}")
        extra = ", and any other field" if s.result_model.model_config.get("extra") == "allow" else ""
        print(f"    returns (steps.<id>.<field>): {', '.join(_returns(s))}{extra}")
        print()
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    from runbook.runtime import build_runtime

    store = build_runtime().store
    run = store.get_run(args.run_id)
    if run is None:
        _error(f"no run {args.run_id!r} in {store.db.url.split('://')[0]} store")
        return 1
    events = store.events(run["run_id"])
    if args.json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return 0
    print(f"run {run['run_id']}  {run['playbook']}  {run['status']}  (started {run['started_at']})")
    for e in events:
        print(e.line())
    return 0


def cmd_postmortem(args: argparse.Namespace) -> int:
    import stat

    from runbook.core.sandbox import ExpressionError
    from runbook.runtime import build_runtime
    from runbook.timeline.postmortem import TemplateRefused, render_postmortem

    try:
        text = render_postmortem(build_runtime().store, args.run_id)
    except (LookupError, TemplateRefused, ExpressionError) as exc:
        _error(f"{exc}")
        return 1
    if args.output:
        # the operator's own explicit output: wherever they say, but never through a symlink, and 0600
        try:
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            _error(f"cannot write {args.output}: {exc.strerror} (no symlinks)")
            return 1
        with os.fdopen(fd, "wb") as out:
            if stat.S_ISREG(os.fstat(fd).st_mode):  # not /dev/stdout
                os.fchmod(fd, 0o600)
            out.write(text.encode("utf-8"))
        print(f"postmortem draft written to {args.output}")
    else:
        print(text)
    return 0


def _delegate(module: str, func: str, args: argparse.Namespace) -> int:
    import importlib

    try:
        target = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        _error(f"this command is not available in this build ({exc})")
        return 1
    return int(target(args) or 0)


EPILOG = """\
exit codes:
  0  done: lint clean, run completed, vote recorded
  1  a problem: lint problems, bad playbook or parameter, run failed or crashed, nothing waiting
     to approve (or the run has ended), you may not approve, a service unreachable
  2  the run was aborted or a step denied (runbook run)
  130 interrupted (Ctrl-C)

environment (contract variables first; every one is read once, when the command starts):
  RUNBOOK_PLAYBOOKS                  folder of playbooks (default: playbooks)
  RUNBOOK_DATABASE_URL               timeline and dedup store (default: sqlite under ~/.runbook/)
  RUNBOOK_APPROVERS                  approvers file: people and roles (none: nobody may approve)
  SLACK_BOT_TOKEN                    Slack posting (none: the timeline goes to the console)
  RUNBOOK_SLACK_CHANNEL              channel of run threads
  RUNBOOK_SLACK_API_URL              Slack Web API base URL (default: Slack's)
  RUNBOOK_SLACK_SIGNING_SECRET       Slack signing secret (none: clicks refused)
  RUNBOOK_SLACK_TEAM_ID              the only Slack workspace whose clicks count
  RUNBOOK_PAGERDUTY_WEBHOOK_SECRETS  comma-separated PagerDuty signing secrets (none: refused)
  PAGERDUTY_API_TOKEN                PagerDuty REST API (notes, on-call approvers)
  RUNBOOK_ALERTMANAGER_TOKEN         bearer token Alertmanager sends (none: alerts refused)
  RABBITMQ_URL, RABBITMQ_MANAGEMENT_URL   AMQP and management API (default: guest@127.0.0.1)
  KAFKA_BOOTSTRAP_SERVERS            Kafka
  KUBECONFIG                         Kubernetes (in-cluster config in a pod)
  DATABASE_URL                       the PostgreSQL playbooks inspect (not the store)
  REDIS_URL                          Redis of BullMQ queues (default: redis://127.0.0.1:6379/0)
  AWS_ENDPOINT_URL, AWS_REGION       SQS endpoint (none: AWS's) and region (or AWS_DEFAULT_REGION)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   SQS credentials (none: boto3's chain)
  PROMETHEUS_URL                     Prometheus HTTP API (none: metric steps say "not checked")
  PAGERDUTY_FROM_EMAIL               From: address of PagerDuty notes
  PROMETHEUS_BEARER_TOKEN            bearer token for PROMETHEUS_URL
  RUNBOOK_HOME                       runbook's data folder (default: ~/.runbook)
  RUNBOOK_PUBLIC_URL                 the gateway's public URL, used in links
  RUNBOOK_TEMPLATES                  folder overriding the postmortem/report templates
  RUNBOOK_HEARTBEAT_SECONDS          run heartbeat interval (the reaper's clock)
  RUNBOOK_FAST_LANE                  0: `runbook serve` starts due runs only through the Prefect runner
  RUNBOOK_SYSTEMCTL                  how systemd actions call systemctl (e.g. "ssh HOST systemctl")
  PREFECT_API_URL                    the Prefect server (default: http://127.0.0.1:4200/api)
  NO_COLOR                           set: no colour even on a terminal
  RUNBOOK_DEBUG                      set: print the full traceback of an unexpected error
See README.md ("Environment") for the full table.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runbook",
        description="Executable runbooks for queue incidents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lint", help="validate playbooks (files or folders)")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_lint)

    for name, func, text in (
        ("plan", cmd_plan, "print the steps that would run"),
        ("run", cmd_run, "run a playbook as a Prefect flow"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("playbook", help="playbook file or name")
        p.add_argument("-p", "--param", action="append", default=[], metavar="K=V")
        if name == "run":
            p.add_argument(
                "--dry-run", action="store_true", help="run read-only steps; describe destructive ones"
            )
            p.add_argument(
                "--as", dest="as_user", help="must be your own OS user: the requester is who runs the command"
            )
        p.set_defaults(func=func)

    p = sub.add_parser("actions", help="list every action")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_actions)

    p = sub.add_parser("serve", help="serve every playbook as a Prefect deployment")
    p.add_argument("--limit", type=int, default=10, help="concurrent runs")
    p.set_defaults(func=lambda a: _delegate("runbook.deploy", "serve_command", a))

    p = sub.add_parser("gateway", help="start the HTTP gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=lambda a: _delegate("runbook.gateway.server", "gateway_command", a))

    p = sub.add_parser("rehearse", help="replay rehearsal files through the real engine (no services)")
    p.add_argument("paths", nargs="*", default=["rehearsals"], help="rehearsal files or folders")
    p.set_defaults(func=lambda a: _delegate("runbook.cli.rehearse", "rehearse_command", a))

    p = sub.add_parser("approve", help="decide a waiting approval")
    p.add_argument("run_id")
    p.add_argument("step_id")
    p.add_argument(
        "--as",
        dest="as_user",
        help="yourself (a person of RUNBOOK_APPROVERS); the OS user decides who you are",
    )
    p.add_argument("--deny", action="store_true")
    p.add_argument("--reason")
    p.set_defaults(func=lambda a: _delegate("runbook.cli.approve", "approve_command", a))

    for name, func in (("timeline", cmd_timeline), ("postmortem", cmd_postmortem)):
        p = sub.add_parser(name, help=f"print the {name} of a run")
        p.add_argument("run_id")
        if name == "timeline":
            p.add_argument("--json", action="store_true")
        else:
            p.add_argument("-o", "--output")
        p.set_defaults(func=func)

    _plugin_commands(sub)
    return parser


def _plugin_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Sub-commands other installed packages add through the ``runbook.commands`` entry point group
    (the dev harness adds ``runbook drill``); a plugin that fails to load is skipped with a warning."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="runbook.commands"):
        try:
            ep.load()(sub)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the product's CLI
            print(f"warning: runbook plugin {ep.name!r} not loaded: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from runbook.compiler.params import ParamError
    from runbook.spec.lint import PlaybookError
    from runbook.store.database import StoreError

    try:
        return int(args.func(args) or 0)
    except PlaybookError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 1
    except (ParamError, StoreError) as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `runbook plan X | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # one line, not a traceback (RUNBOOK_DEBUG=1 shows it)
        if os.environ.get("RUNBOOK_DEBUG"):
            raise
        from runbook.core.redact import redact

        first = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else ""
        _error(f"{type(exc).__name__}: {first}".rstrip(": "))
        print("  (set RUNBOOK_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
