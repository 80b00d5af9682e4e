"""One contract over the whole registry: every action is documented, typed, honest about being
destructive, able to describe itself when it is, and exercised by at least one test."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.actions import ActionRegistry, ActionResult, default_registry

TESTS = Path(__file__).resolve().parents[1]
REGISTRY = default_registry()
TEST_TEXT = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py")) + "\n".join(
    p.read_text(encoding="utf-8") for p in TESTS.rglob("*.yaml")
)


BACKENDS = {
    "core",
    "timeline",
    "rabbitmq",
    "kafka",
    "kubernetes",
    "systemd",
    "postgres",
    "pagerduty",
    "queue",
    "prometheus",
}


def test_registry_is_a_fresh_object_each_time() -> None:
    assert default_registry() is not REGISTRY
    assert isinstance(REGISTRY, ActionRegistry) and len(REGISTRY) >= 40


@pytest.mark.parametrize("name", REGISTRY.names())
def test_action_contract(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.summary.strip(), "one-line summary"
    assert spec.doc.strip(), "docstring (user docs)"
    assert isinstance(spec.destructive, bool)
    assert issubclass(spec.result_model, ActionResult), "result has a timeline summary"
    assert spec.params_model.model_config.get("extra") == "forbid", "unknown params are refused"
    for field_name, field in spec.params_model.model_fields.items():
        assert (field.description or "").strip(), f"param {field_name} is documented"
    if spec.destructive:
        assert spec.describe is not None, "destructive actions describe what they would do"
    backend = name.split(".", 1)[0]
    assert backend in BACKENDS
    assert f'"{name}"' in TEST_TEXT or f"'{name}'" in TEST_TEXT or f"action: {name}" in TEST_TEXT, (
        f"{name} has at least one test"
    )
