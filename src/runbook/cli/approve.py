"""``runbook approve RUN_ID STEP_ID [--as USER] [--deny] [--reason R]``: the CLI approval channel.

The CLI is an authorised channel because it runs with the operator's local credentials: it writes
to the runbook store directly, which only operators can reach. Its identity is therefore the
*operating-system user* running it (from the process's effective uid, not ``$USER``, which anyone
can set), mapped to one person of the approvers file (``unix:`` identities, or the person's name).
``--as`` is kept for scripts and for readability, but may only name that same person: naming
anyone else is refused and recorded, never a way to vote for someone. The same policy as Slack
applies (roles, two_person, quorum). Exit 0 when the vote was recorded (or already was), 1 when
nothing is waiting for that step or the operator may not decide it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runbook.approvals.policy import Identity, operating_system_user
from runbook.core.states import FINAL_RUN_STATUSES, RunStatus


def _ended(runtime: Any, run_id: str) -> str | None:
    """The run's final status when it has ended (then nothing of it can be approved), else None.

    A crashed run has not ended for this purpose: it is retried with the same run id, and a
    decision recorded while no worker waits is honoured then."""
    run = runtime.store.get_run(run_id)
    if run is None or run["status"] not in FINAL_RUN_STATUSES or run["status"] == RunStatus.CRASHED:
        return None
    return str(run["status"])


def approve_command(args: argparse.Namespace) -> int:
    from runbook.compiler.prefect_runs import prefect_process_defaults
    from runbook.core.settings import Settings
    from runbook.runtime import build_runtime
    from runbook.timeline.closing import void_pending

    settings = Settings.from_env()
    # resuming the paused run talks to the configured Prefect server, never a throwaway one
    prefect_process_defaults(settings.prefect_api_url)
    runtime = build_runtime(settings)
    approvals = runtime.approvals()
    ended = _ended(runtime, args.run_id)
    if ended is not None:
        why = f"the run ended ({ended}) before a decision"
        if void_pending(runtime.store, args.run_id, why):
            approvals.flush_slack()  # the request's Slack message loses its buttons
        print(
            f"error: run {args.run_id!r} has ended ({ended}): step {args.step_id!r} will not run,"
            " so there is nothing to approve or deny",
            file=sys.stderr,
        )
        return 1
    row = approvals.find(args.run_id, args.step_id)
    if row is None:
        latest = approvals.store.latest(args.run_id, args.step_id)
        why = f" (its last request is {latest.status})" if latest is not None else ""
        print(
            f"error: no approval is waiting for step {args.step_id!r} of run {args.run_id!r}{why}",
            file=sys.stderr,
        )
        return 1
    who = Identity(unix=operating_system_user())
    policy = approvals.policy.get()
    me = policy.person_for(who)
    if args.as_user and (me is None or policy.member_people(args.as_user) != {me}):
        shown = f"person {me!r}" if me else "not a person of the approvers file"
        why = (
            f"--as {args.as_user!r} does not name you: you are the operating-system user {who.unix!r}"
            f" ({shown}), and --as may only name yourself"
        )
        result = approvals.refuse(row, who.label(), why, "cli", None)
        print(result.message, file=sys.stderr)
        approvals.flush_slack()
        return 1
    result = approvals.vote(row, who, approve=not args.deny, reason=args.reason, channel="cli")
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    approvals.flush_slack()
    return 0 if result.ok else 1
