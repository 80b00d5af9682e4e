"""Modules imported on first use, so a process pays only for the vendor SDKs it calls.

``runbook run`` loads the whole action registry (every action's name, params and result models) to
check a playbook, but runs only a few backends; importing every SDK up front (the kubernetes
client alone is ~0.1 s) delays the first step of every run. A client module binds the SDK with
:func:`lazy_module` at run time and imports it for real under ``TYPE_CHECKING``, so mypy keeps the
SDK's types and the import happens on the first attribute access (the first call of that backend).
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module ``name``; the first attribute read imports it (later reads too are
    forwarded, a dict look-up in ``sys.modules``)."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r}>"


def lazy_module(name: str) -> Any:
    """``name`` imported when first used (typed ``Any``: bind the real module under ``TYPE_CHECKING``)."""
    return LazyModule(name)
