"""systemd actions against a real systemd: Debian's, PID 1 of a box booted with systemd-nspawn
(runbook_devtools.systemd_box), reached with ``nsenter ... systemctl`` as RUNBOOK_SYSTEMCTL would say.
These tests FAIL, never skip, when the box cannot be had (root, debootstrap, systemd-container)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from runbook_devtools import systemd_box
from runbook_devtools.systemd_box import SystemdBox

from runbook.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    Connections,
    GuardrailRefused,
    describe,
    invoke,
)
from runbook.core.settings import Settings

# one booted systemd box (and its cached Debian tree) per process: one worker runs them all
pytestmark = pytest.mark.xdist_group("systemd")


@pytest.fixture(scope="module")
def box() -> Iterator[SystemdBox]:
    missing = systemd_box.missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {systemd_box.INSTALL_HINT}")
    with SystemdBox() as b:
        yield b


@pytest.fixture
def ctx(box: SystemdBox, settings: Settings) -> Iterator[ActionContext]:
    c = ActionContext(Connections(dataclasses.replace(settings, systemctl=box.systemctl)))
    yield c
    c.connections.close()


def test_settings_read_the_systemctl_prefix() -> None:
    assert Settings.from_env({"RUNBOOK_SYSTEMCTL": "ssh attune-1 systemctl"}).systemctl == (
        "ssh",
        "attune-1",
        "systemctl",
    )
    assert Settings.from_env({}).systemctl == ("systemctl",)


def test_unit_status_reads_the_real_units(registry: ActionRegistry, ctx: ActionContext) -> None:
    units = [
        "attune-executor.service",
        "attune-worker@1.service",
        "attune-worker@2.service",
        "attune-worker@9.service",
    ]
    res = invoke(registry["systemd.unit_status"], ctx, {"units": [*units, "nope.service"]})
    by = {u.name: u for u in res.units}
    assert (
        by["attune-executor.service"].active_state == "active" and by["attune-executor.service"].main_pid > 1
    )
    assert by["attune-worker@2.service"].sub_state == "running"
    assert by["attune-worker@9.service"].active_state == "inactive"  # a known template, instance not started
    assert res.not_found == ["nope.service"] and res.active == 3
    assert "3/5 active" in res.summary
    # the crashing sensor: systemd counts its automatic restarts
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sensor = invoke(registry["systemd.unit_status"], ctx, {"units": ["attune-sensor.service"]}).units[0]
        if sensor.restarts >= 2:
            break
        time.sleep(0.5)
    assert sensor.restarts >= 2 and sensor.exit_status in (0, 3)
    with pytest.raises(ValidationError):
        invoke(registry["systemd.unit_status"], ctx, {"units": ["--all"]})


def test_restart_unit_gets_a_new_pid(registry: ActionRegistry, ctx: ActionContext) -> None:
    spec = registry["systemd.restart_unit"]
    assert spec.destructive
    before = invoke(registry["systemd.unit_status"], ctx, {"units": ["attune-executor.service"]}).units[0]
    text = describe(spec, ctx, {"unit": "attune-executor.service"})
    assert (
        text.startswith("restart attune-executor.service (now active/running since ")
        and f"pid {before.main_pid}" in text
    )
    res = invoke(spec, ctx, {"unit": "attune-executor.service", "wait_seconds": 20})
    assert res.previous_pid == before.main_pid and res.pid not in (0, before.main_pid)
    assert (res.active_state, res.sub_state) == ("active", "running")
    with pytest.raises(GuardrailRefused, match="not-found"):
        invoke(spec, ctx, {"unit": "attune-typo.service"})


def test_an_unreachable_systemctl_is_a_backend_error(registry: ActionRegistry, settings: Settings) -> None:
    c = ActionContext(Connections(dataclasses.replace(settings, systemctl=("/nonexistent/systemctl",))))
    with pytest.raises(ActionError, match="not found"):
        invoke(registry["systemd.unit_status"], c, {"units": ["attune-executor.service"]})
