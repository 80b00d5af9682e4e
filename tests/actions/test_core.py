"""Core actions called through the registry: assert, classify, set, wait and manual."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.actions import ActionContext, ActionError, ActionRegistry, Connections, invoke
from runbook.core.settings import Settings


@pytest.fixture
def reg() -> ActionRegistry:
    return ActionRegistry.from_modules(["runbook.actions.core.actions", "tests.support.engine_actions"])


@pytest.fixture
def ctx(settings: Settings, reg: ActionRegistry) -> ActionContext:
    return ActionContext(Connections(settings), registry=reg)


def test_assert_passes_and_fails_with_message(reg, ctx) -> None:
    assert invoke(reg["core.assert"], ctx, {"that": True}).passed
    with pytest.raises(ActionError, match="queue still deep"):
        invoke(reg["core.assert"], ctx, {"that": False, "message": "queue still deep"})


def test_classify_first_matching_rule_wins_and_lists_competitors(reg, ctx) -> None:
    rules = [
        {"verdict": "consumer_outage", "when": False, "evidence": "consumers 3"},
        {"verdict": "poison_messages", "when": True, "evidence": "same message redelivered 40x"},
        {"verdict": "producer_storm", "when": True, "evidence": "publish 5x ack"},
    ]
    out = invoke(reg["core.classify"], ctx, {"rules": rules})
    assert out.verdict == "poison_messages" and out.matched == ["poison_messages", "producer_storm"]
    assert out.summary == "verdict: poison_messages — same message redelivered 40x"
    none = invoke(reg["core.classify"], ctx, {"rules": rules[:1], "default": "unknown"})
    assert none.verdict == "unknown" and none.matched == []


def test_set_keeps_values(reg, ctx) -> None:
    out = invoke(reg["core.set"], ctx, {"values": {"budget": 7}, "summary": "budget 7"})
    assert out.values == {"budget": 7} and out.summary == "budget 7"


def test_wait_polls_until_condition_over_result(reg, ctx, tmp_path: Path) -> None:
    counter = tmp_path / "c"
    params = {
        "action": "test.count",
        "with": {"counter": str(counter)},
        "until": "{{ result.calls >= 3 }}",
        "interval": 0.01,
        "timeout": 5,
    }
    out = invoke(reg["core.wait"], ctx, params)
    assert out.polls == 3 and out.result["calls"] == 3


def test_wait_times_out_with_last_result_and_refuses_destructive(reg, ctx, tmp_path: Path) -> None:
    params = {
        "action": "test.count",
        "with": {"counter": str(tmp_path / "c")},
        "until": "{{ result.calls > 99 }}",
        "interval": 0.05,
        "timeout": 0.2,
    }
    with pytest.raises(ActionError, match="still false after"):
        invoke(reg["core.wait"], ctx, params)
    with pytest.raises(ActionError, match="not read-only"):
        invoke(reg["core.wait"], ctx, {**params, "action": "test.destroy"})


def test_manual_describes_instructions(reg, ctx) -> None:
    from runbook.actions import describe

    text = describe(
        reg["core.manual"], ctx, {"instructions": "patch the node", "checklist": ["drain", "reboot"]}
    )
    assert text == "wait for a human to do: patch the node\n  - drain\n  - reboot"
    assert invoke(reg["core.manual"], ctx, {"instructions": "patch"}).summary == "done by hand"
