"""systemd actions: the units Attune's executor and workers run as (seed 002), read and restarted
through ``systemctl`` (``RUNBOOK_SYSTEMCTL`` says how to reach it: locally, over ssh, into a
container). Only this module declares actions; the work is in ``units``, ``client`` runs systemctl."""

from __future__ import annotations

from runbook.actions.context import ActionContext
from runbook.actions.registry import action
from runbook.actions.systemd import units
from runbook.actions.systemd.models import (
    RestartUnitParams,
    RestartUnitResult,
    UnitStatusParams,
    UnitStatusResult,
)


@action("systemd.unit_status", summary="State of systemd units: active/failed, main pid, automatic restarts")
def unit_status(ctx: ActionContext, params: UnitStatusParams) -> UnitStatusResult:
    """``systemctl show UNIT`` for each unit: load, active and sub state, main pid, how often systemd
    restarted it (``NRestarts``: a crash-looping worker), the last result and exit status, and since
    when it is active; lists of failed, inactive and unknown units a ``when:`` can test."""
    return units.unit_status(ctx, params)


@action(
    "systemd.restart_unit",
    summary="Restart one systemd unit and wait until it is active again",
    destructive=True,
    describe=units.describe_restart,
)
def restart_unit(ctx: ActionContext, params: RestartUnitParams) -> RestartUnitResult:
    """``systemctl restart UNIT``, then wait (``wait_seconds``) until it is active again with a new
    main pid; fails if it is not. A unit systemd does not know is refused before anything runs (a
    typo never creates or starts something else). Seed 002: restart the workers, then the executor."""
    return units.restart_unit(ctx, params)
