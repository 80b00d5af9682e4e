"""The bench's object store: objects by type and key, resourceVersions, and the change journal that
watches read.

Every write goes through :meth:`Store.put` / :meth:`Store.remove` (or :meth:`Store.touch` after an
in-place status change), which assign a new ``metadata.resourceVersion`` and append an ADDED, MODIFIED
or DELETED event to a bounded journal, so a watch started from a list's resourceVersion sees every
later change, and a watch from a resourceVersion older than the journal gets 410 Expired like
kube-apiserver after compaction.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import ExecResult, Fault, RequestRecord, now_iso
from .resources import BY_PLURAL, RESOURCES

JOURNAL_SIZE = 5000


@dataclass(frozen=True)
class Change:
    """One journal entry: ``obj`` as it is after the change, ``old`` as it was before (None when added)."""

    rv: int
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


class Store:
    """State shared by the seeding helpers, the controller and the REST handlers (all under ``lock``)."""

    def _init_store(self, rollout_delay: float | None, replace_delay: float | None) -> None:
        self.rollout_delay = rollout_delay
        self.replace_delay = replace_delay
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {p: {} for p in RESOURCES}
        self.logs: dict[tuple[str, str, str, bool], list[str]] = {}
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.exec_handler: Callable[[str, str, str, list[str]], ExecResult]
        self.execs: list[tuple[str, str, str, list[str]]] = []
        self.extra_status: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._owner: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, pod) -> (workload plural, name)
        self._observed: dict[tuple[str, str, str], int] = {}
        self._due: dict[tuple[str, str, str], float | None] = {}
        self._rv = itertools.count(1000)
        self.last_rv = 999
        self.journal: deque[Change] = deque(maxlen=JOURNAL_SIZE)
        self._stop = threading.Event()

    def _tick(self) -> None:
        """Let the controller catch up (the controller mixin overrides this)."""

    # -------------------------------------------------------------------------------- versions, journal

    def next_rv(self) -> str:
        with self.lock:
            self.last_rv = next(self._rv)
            return str(self.last_rv)

    def _emit(self, plural: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        self.journal.append(
            Change(int(obj["metadata"]["resourceVersion"]), plural, kind, copy.deepcopy(obj), old)
        )
        self.changed.notify_all()

    def oldest_rv(self) -> int:
        """The resourceVersion before the oldest change still in the journal (watches from before: 410)."""
        with self.lock:
            if len(self.journal) < (self.journal.maxlen or 0):
                return 0
            return self.journal[0].rv - 1

    @staticmethod
    def key(plural: str, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "") if BY_PLURAL[plural].namespaced else "", name)

    # -------------------------------------------------------------------------------- writes

    def _meta(self, name: str, namespace: str | None, labels: dict[str, str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "",
            "creationTimestamp": now_iso(),
            "labels": dict(labels or {}),
            "annotations": {},
        }
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as-is (filling apiVersion/kind, uid, creationTimestamp); returns it."""
        api_version, kind, namespaced = RESOURCES[plural]
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_iso())
        with self.lock:
            meta["resourceVersion"] = self.next_rv()
            key = (meta.get("namespace", "") if namespaced else "", meta["name"])
            old = self.objects[plural].get(key)
            self.objects[plural][key] = obj
            self._emit(plural, "MODIFIED" if old is not None else "ADDED", obj, copy.deepcopy(old))
        return obj

    def touch(self, plural: str, obj: dict[str, Any], old: dict[str, Any]) -> None:
        """Record an in-place change of a stored object (a status update): new resourceVersion, MODIFIED."""
        with self.lock:
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self._emit(plural, "MODIFIED", obj, old)

    def remove(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Delete an object from the store; the DELETED event carries it with a new resourceVersion."""
        with self.lock:
            obj = self.objects[plural].pop(self.key(plural, namespace, name), None)
            if obj is not None:
                old = copy.deepcopy(obj)
                obj["metadata"]["resourceVersion"] = self.next_rv()
                self._emit(plural, "DELETED", obj, old)
            return obj

    # -------------------------------------------------------------------------------- reads

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A deep copy of a stored object (status refreshed), or None."""
        with self.lock:
            self._tick()
            obj = self.objects[plural].get(self.key(plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            self._tick()
            return [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self.objects[plural].items())
                if namespace in (None, ns)
            ]
