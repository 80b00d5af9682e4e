"""``runbook approve RUN_ID STEP_ID --as USER [--deny] [--reason R]``.

The CLI is an authorised channel because it runs with the operator's local credentials: it writes
to the runbook store directly, which only operators can reach. The same policy as Slack applies
(roles, two_person, quorum). Exit 0 when the vote was recorded (or already was), 1 when nothing is
waiting for that step or USER may not decide it.
"""

from __future__ import annotations

import argparse
import sys

from runbook.approvals.policy import Identity


def approve_command(args: argparse.Namespace) -> int:
    from runbook.approvals.wiring import approvals_for
    from runbook.compiler.runtime import build_runtime

    rt = build_runtime()
    approvals = approvals_for(rt)
    row = approvals.find(args.run_id, args.step_id)
    if row is None:
        latest = approvals.store.latest(args.run_id, args.step_id)
        why = f" (its last request is {latest.status})" if latest is not None else ""
        print(
            f"error: no approval is waiting for step {args.step_id!r} of run {args.run_id!r}{why}",
            file=sys.stderr,
        )
        return 1
    user = args.as_user
    who = Identity(user=user, email=user if "@" in user else None, name=user)
    result = approvals.vote(row, who, approve=not args.deny, reason=args.reason, channel="cli")
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    approvals.flush_slack()
    return 0 if result.ok else 1
