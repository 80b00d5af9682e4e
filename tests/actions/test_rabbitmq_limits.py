"""rabbitmq.queue_config against the real broker: limits from declaration arguments, user and
operator policies, the one in force and how full the queue is against it."""

from __future__ import annotations

import pytest

from runbook.actions import ActionError, ActionRegistry, invoke
from tests.support.rabbit import mgmt, publish_numbered, queues, wait_stats
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("rabbitmq_available")


@pytest.fixture
def registry() -> ActionRegistry:
    return ActionRegistry.from_modules(["runbook.actions.rabbitmq.actions"])


def test_queue_config_names_the_limit_in_force_and_its_source(ctx, registry, unique) -> None:
    name = f"rb-{unique}-full"
    policy = f"rb-{unique}-limit"
    with queues(name) as conn:
        ch = conn.channel()
        ch.queue_delete(name)
        ch.queue_declare(name, durable=True, arguments={"x-max-length": 50, "x-overflow": "reject-publish"})
        publish_numbered(ch, name, 10)
        body = {"pattern": f"^{name}$", "apply-to": "queues", "priority": 7, "definition": {"max-length": 20}}
        assert mgmt("PUT", f"/api/policies/%2F/{policy}", json=body).status_code in (201, 204)
        try:
            wait_stats(name, 10)
            result = invoke(registry["rabbitmq.queue_config"], ctx, {"queue": name})
            wanted = (result.policy, result.max_length, result.overflow)
            if wanted != (policy, 20, "reject-publish"):  # the policy takes a moment to apply
                result = wait_until(
                    lambda: (
                        (r := invoke(registry["rabbitmq.queue_config"], ctx, {"queue": name})).policy
                        == policy
                        and r
                    ),
                    what="the policy to apply",
                )
        finally:
            mgmt("DELETE", f"/api/policies/%2F/{policy}")
    assert result.arguments == {"x-max-length": 50, "x-overflow": "reject-publish"}
    assert result.max_length == 20 and result.effective["max-length"]["source"] == f"policy {policy}"
    assert result.overflow == "reject-publish" and result.effective["overflow"]["source"] == "argument"
    assert result.messages == 10 and result.fill_ratio == 0.5
    assert [(p.name, p.applied, p.priority) for p in result.matching_policies] == [(policy, True, 7)]
    assert "max-length 20 (policy" in result.summary and "50% full" in result.summary


def test_queue_config_of_a_missing_queue_is_a_clear_error(ctx, registry, unique) -> None:
    with pytest.raises(ActionError, match="not found"):
        invoke(registry["rabbitmq.queue_config"], ctx, {"queue": f"rb-{unique}-nope"})
