"""The action registry: what a playbook step may call.

An action is a plain typed function ``fn(ctx: ActionContext, params: ParamsModel) -> ResultModel``
declared with :func:`action`. The decorator only attaches an :class:`ActionSpec` to the function; a
:class:`ActionRegistry` is an ordinary object built from modules (``ActionRegistry.from_modules``), so
tests and embedders pass their own and nothing is shared through class-level globals. The registry
reads the signature, so an action whose params or result are not pydantic models cannot be registered.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from runbook.actions.context import ActionContext

Describe = Callable[[ActionContext, Any], str]

BUILTIN_MODULES = (
    "runbook.actions.core.actions",
    "runbook.actions.timeline.actions",
    "runbook.actions.rabbitmq.actions",
    "runbook.actions.postgres.actions",
    "runbook.actions.kafka.actions",
    "runbook.actions.kubernetes.actions",
    "runbook.actions.systemd.actions",
    "runbook.actions.pagerduty.actions",
    "runbook.actions.prometheus.actions",
    "runbook.actions.queue.actions",
)


class ActionResult(BaseModel):
    """Base for action results: ``summary`` is the one-line finding shown on the timeline.

    Every other field becomes ``steps.<id>.<field>`` for later steps' expressions, so keep fields
    flat, named for what they mean, and free of secrets and message bodies.
    """

    summary: str = ""


class RegistryError(Exception):
    """An action that breaks the action contract."""


@dataclass(frozen=True)
class ActionSpec:
    """Everything the engine, linter, planner and docs need to know about one action."""

    name: str
    fn: Callable[..., BaseModel]
    params_model: type[BaseModel]
    result_model: type[BaseModel]
    summary: str
    destructive: bool
    describe: Describe | None = None
    backend: str = ""
    doc: str = ""
    manual: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)

    def deferred_fields(self) -> set[str]:
        """Params the engine must not render: templates the action evaluates itself (e.g. ``until``)."""
        return {
            f.alias or n
            for n, f in self.params_model.model_fields.items()
            if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("deferred")
        }

    def parameters(self) -> list[dict[str, Any]]:
        """Parameter rows for ``runbook actions`` and docs, generated from the params model."""
        rows = []
        for fname, finfo in self.params_model.model_fields.items():
            rows.append(
                {
                    "name": finfo.alias or fname,
                    "type": _type_name(finfo.annotation),
                    "required": finfo.is_required(),
                    "default": None if finfo.is_required() else finfo.get_default(call_default_factory=True),
                    "description": finfo.description or "",
                }
            )
        return rows


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def action(
    name: str,
    *,
    summary: str,
    destructive: bool = False,
    describe: Describe | None = None,
    manual: bool = False,
) -> Callable[[Callable[..., BaseModel]], Callable[..., BaseModel]]:
    """Declare ``fn`` as the action ``name``. Registration happens when a registry loads the module."""

    def mark(fn: Callable[..., BaseModel]) -> Callable[..., BaseModel]:
        fn.__runbook_action__ = dict(  # type: ignore[attr-defined]
            name=name, summary=summary, destructive=destructive, describe=describe, manual=manual
        )
        return fn

    return mark


def spec_from_function(fn: Callable[..., BaseModel]) -> ActionSpec:
    """Build the :class:`ActionSpec` of a decorated function, checking its contract."""
    meta = getattr(fn, "__runbook_action__", None)
    if meta is None:
        raise RegistryError(f"{fn.__qualname__} is not declared with @action")
    name = meta["name"]
    hints = typing.get_type_hints(fn)
    sig = inspect.signature(fn)
    names = list(sig.parameters)
    if len(names) != 2:
        raise RegistryError(f"action {name}: signature must be (ctx, params), got {names}")
    params_model = hints.get(names[1])
    result_model = hints.get("return")
    for what, model in (("params", params_model), ("result", result_model)):
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise RegistryError(f"action {name}: {what} type must be a pydantic model, got {model!r}")
    if meta["destructive"] and meta["describe"] is None:
        raise RegistryError(f"action {name}: destructive actions must provide describe()")
    if not meta["summary"].strip():
        raise RegistryError(f"action {name}: summary is empty")
    return ActionSpec(
        name=name,
        fn=fn,
        params_model=params_model,  # type: ignore[arg-type]
        result_model=result_model,  # type: ignore[arg-type]
        summary=meta["summary"],
        destructive=meta["destructive"],
        describe=meta["describe"],
        backend=name.split(".", 1)[0],
        doc=inspect.cleandoc(fn.__doc__ or ""),
        manual=meta["manual"],
    )


class ActionRegistry:
    """A name → :class:`ActionSpec` map. Build one per engine; pass it where it is needed.

    A registry made by :meth:`lazy` imports a backend's module the first time one of its actions
    is looked up: ``runbook run`` of a playbook that uses ``core`` and ``rabbitmq`` actions does not
    import the Kafka, Kubernetes or PostgreSQL clients (their SDKs cost tenths of a second before
    the first step). Listing every name (an unknown action's suggestions, ``runbook actions``)
    imports them all."""

    def __init__(self, specs: Iterable[ActionSpec] = ()) -> None:
        self._specs: dict[str, ActionSpec] = {}
        self._unloaded: dict[str, str] = {}  # backend -> module not imported yet
        self._lock = threading.RLock()
        for spec in specs:
            self.add(spec)

    @classmethod
    def from_modules(cls, modules: Iterable[str | types.ModuleType] = BUILTIN_MODULES) -> ActionRegistry:
        registry = cls()
        for module in modules:
            registry._load(module)
        return registry

    @classmethod
    def lazy(cls, modules: Iterable[str] = BUILTIN_MODULES) -> ActionRegistry:
        """Each ``runbook.actions.<backend>.actions`` module imported when ``<backend>.…`` is first
        looked up (a module of another shape is imported at once)."""
        registry = cls()
        for module in modules:
            parts = module.split(".")
            if len(parts) == 4 and parts[:2] == ["runbook", "actions"] and parts[3] == "actions":
                registry._unloaded[parts[2]] = module
            else:
                registry._load(module)
        return registry

    def _load(self, module: str | types.ModuleType) -> None:
        mod = importlib.import_module(module) if isinstance(module, str) else module
        for value in vars(mod).values():
            if callable(value) and hasattr(value, "__runbook_action__") and value.__module__ == mod.__name__:
                self.register(value)

    def _backend(self, name: str) -> None:
        backend = name.split(".", 1)[0]
        if backend in self._unloaded:
            with self._lock:
                module = self._unloaded.get(backend)
                if module is not None:
                    self._load(module)
                    # only now: another thread that found the backend unloaded waits on the lock
                    # instead of looking up a half-registered backend and calling its action unknown
                    del self._unloaded[backend]

    def _everything(self) -> None:
        for backend in list(self._unloaded):
            self._backend(backend)

    def register(self, fn: Callable[..., BaseModel]) -> ActionSpec:
        spec = spec_from_function(fn)
        self.add(spec)
        return spec

    def add(self, spec: ActionSpec) -> None:
        if spec.name in self._specs:
            raise RegistryError(f"action {spec.name} is registered twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ActionSpec | None:
        self._backend(name)
        return self._specs.get(name)

    def __getitem__(self, name: str) -> ActionSpec:
        self._backend(name)
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._backend(name)
        return name in self._specs

    def __iter__(self) -> Iterator[ActionSpec]:
        self._everything()
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        self._everything()
        return len(self._specs)

    def names(self) -> list[str]:
        self._everything()
        return sorted(self._specs)


def invoke(spec: ActionSpec, ctx: ActionContext, params: dict[str, Any] | BaseModel) -> BaseModel:
    """Validate ``params`` against the action's model and call it (no gate, no timeline)."""
    model = params if isinstance(params, spec.params_model) else spec.params_model.model_validate(params)
    return spec.fn(ctx, model)


def describe(spec: ActionSpec, ctx: ActionContext, params: dict[str, Any] | BaseModel) -> str:
    """What the action would do with these params, without doing it (dry-run, approval messages)."""
    model = params if isinstance(params, spec.params_model) else spec.params_model.model_validate(params)
    if spec.describe is not None:
        return spec.describe(ctx, model)
    return f"{spec.name}: {spec.summary} (read-only)"


def default_registry() -> ActionRegistry:
    """A fresh registry with every built-in action (each backend's module imported on first use)."""
    return ActionRegistry.lazy(BUILTIN_MODULES)
