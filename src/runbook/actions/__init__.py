"""Actions: the typed operations playbook steps call, one module per backend."""

from runbook.actions.context import (
    ActionContext,
    ActionError,
    BackendUnavailable,
    Connections,
    GuardrailRefused,
)
from runbook.actions.registry import (
    ActionRegistry,
    ActionResult,
    ActionSpec,
    action,
    default_registry,
    describe,
    invoke,
)

__all__ = [
    "ActionContext",
    "ActionError",
    "ActionRegistry",
    "ActionResult",
    "ActionSpec",
    "BackendUnavailable",
    "Connections",
    "GuardrailRefused",
    "action",
    "default_registry",
    "describe",
    "invoke",
]
