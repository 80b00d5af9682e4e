"""REST semantics of the bench: routing, list (selectors, pagination, Tables), create, replace, patch,
delete, and the subresources the actions and kubectl use (scale, status, log, eviction).

Where the fake once differed from the API reference it now follows it: writes to the main resource
keep the stored status (status belongs to the status subresource), create resets status and fills
defaults, lists carry the store's current resourceVersion and honour ``limit``/``continue``, unknown
field selectors answer 400, and a PUT to ``scale`` with a stale resourceVersion answers 409.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import uuid
from typing import Any
from urllib.parse import unquote

from .base import ApiError, status_body
from .patches import apply_patch
from .pods import default_pod_spec
from .resources import BY_PLURAL, RESOURCES, WORKLOADS, not_found, resource
from .selectors import (
    check_field_selector,
    field_selector_matches,
    label_selector_matches,
)
from .subresources import Subresources, q
from .tables import table, wants_table

NO_STATUS_SUBRESOURCE = ("events", "secrets", "controllerrevisions", "storageclasses")


class Rest(Subresources):
    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        content_type: str,
        accept: str = "",
    ) -> tuple[int, Any]:
        """Route one REST request; returns (status, JSON body or str for text)."""
        with self.lock:
            self._tick()
            plural, ns, name, sub = self.route(path)
            if sub:
                return self._subresource(method, plural, ns, name, sub, query, body, content_type)
            if name is None:
                if method == "GET":
                    result = self._list(plural, ns, query)
                    if wants_table(accept):
                        return 200, table(
                            plural, result["items"], result["metadata"], q(query, "includeObject")
                        )
                    return 200, result
                if method == "POST":
                    return 201, self._create(plural, ns, body)
                raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on a collection")
            if method == "GET":
                obj = self._get(plural, ns, name)
                if wants_table(accept):
                    return 200, table(
                        plural,
                        [obj],
                        {"resourceVersion": obj["metadata"]["resourceVersion"]},
                        q(query, "includeObject"),
                    )
                return 200, obj
            if method == "PUT":
                return 200, self._replace(plural, ns, name, body)
            if method == "PATCH":
                return 200, self._patch(plural, ns, name, body, content_type)
            if method == "DELETE":
                return 200, self._delete(plural, ns, name)
            raise ApiError(405, "MethodNotAllowed", f"{method} not allowed")

    def route(self, path: str) -> tuple[str, str, str | None, str | None]:
        """(plural, namespace, name, subresource) of a resource path; 404 for anything else."""
        m = re.fullmatch(r"/api/v1/(.+)|/apis/([a-z0-9.]+)/v1/(.+)", path.rstrip("/"))
        if not m:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        group = m.group(2) or ""
        # path segments arrive percent-encoded (the client quotes names); decode them as the API server does
        parts = [unquote(p) for p in (m.group(1) or m.group(3)).split("/")]
        if parts[0] == "namespaces" and len(parts) >= 3:
            ns, plural, rest = parts[1], parts[2], parts[3:]
        elif parts[0] == "namespaces":
            ns, plural, rest = "", "namespaces", parts[1:]
        else:
            ns, plural, rest = "", parts[0], parts[1:]
        res = BY_PLURAL.get(plural)
        if res is None or res.group != group or (ns and not res.namespaced):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        if ns and ("", ns) not in self.objects["namespaces"] and rest:
            raise ApiError(
                404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
            )
        name = rest[0] if rest else None
        sub = rest[1] if len(rest) > 1 else None
        return plural, ns, name, sub

    def _obj(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects[plural].get(self.key(plural, ns, name))
        if obj is None:
            raise not_found(plural, name)
        return obj

    def _get(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._obj(plural, ns, name))

    def matcher(self, plural: str, ns: str, query: dict[str, list[str]]) -> Any:
        """A predicate for the request's namespace, labelSelector and fieldSelector (400 if invalid)."""
        labels, fields = q(query, "labelSelector"), q(query, "fieldSelector")
        check_field_selector(plural, fields)
        label_selector_matches(labels, {})  # validate once, even with no objects

        def matches(obj: dict[str, Any]) -> bool:
            if ns and obj["metadata"].get("namespace", "") != ns:
                return False
            if labels and not label_selector_matches(labels, obj["metadata"].get("labels") or {}):
                return False
            return not fields or field_selector_matches(fields, obj, plural)

        return matches

    def _list(self, plural: str, ns: str, query: dict[str, list[str]]) -> dict[str, Any]:
        matches = self.matcher(plural, ns, query)
        rv, start = str(self.last_rv), None
        token = q(query, "continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                rv, start = str(state["rv"]), tuple(state["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise ApiError(
                    400, "BadRequest", "continue key is not valid: invalid continue token"
                ) from None
        candidates = [
            obj for key, obj in sorted(self.objects[plural].items()) if start is None or key > start
        ]
        items = [copy.deepcopy(o) for o in candidates if matches(o)]
        meta: dict[str, Any] = {"resourceVersion": rv}
        limit = int(q(query, "limit", "0") or 0)
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            last = items[-1]["metadata"]
            key = self.key(plural, last.get("namespace"), last["name"])
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": int(rv), "start": list(key)}).encode()
            ).decode()
            if not q(query, "labelSelector") and not q(query, "fieldSelector"):
                meta["remainingItemCount"] = sum(1 for o in candidates if matches(o)) - limit
        api_version, kind, _ = RESOURCES[plural]
        return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": meta, "items": items}

    def _create(self, plural: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        name = meta["name"]
        if ns and ("", ns) not in self.objects["namespaces"]:
            raise ApiError(
                404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
            )
        if self.key(plural, ns, name) in self.objects[plural]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource(plural).qualified} "{name}" already exists',
                {"name": name, "kind": plural},
            )
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        if resource(plural).namespaced:
            meta["namespace"] = ns
        for k in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"):
            meta.pop(k, None)
        meta.setdefault("labels", {})
        meta.setdefault("annotations", {})
        if plural not in NO_STATUS_SUBRESOURCE:
            obj["status"] = {}  # status is the controllers' to write (PrepareForCreate resets it)
        if plural in WORKLOADS or plural in ("replicasets", "daemonsets"):
            self.apply_defaults(plural, obj)
        elif plural == "poddisruptionbudgets":
            meta["generation"] = 1
        elif plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        elif plural == "pods":
            spec = default_pod_spec(obj.setdefault("spec", {}))
            node = spec.get("nodeName") or self._pick_node()  # the scheduler's job, done at once
            if node:
                spec["nodeName"] = node
            self._set_running(obj, ready=bool(node), phase="Running" if node else "Pending")
        self.put(plural, obj)
        if plural in WORKLOADS:
            self._schedule((plural, ns, name), self.rollout_delay)
        self._refresh_status()
        return copy.deepcopy(obj)

    def _store_update(
        self, plural: str, ns: str, name: str, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        """Write ``new`` over ``old``: keeps identity and status, bumps resourceVersion and (on spec
        change) generation, and tells the controller."""
        meta = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "generation"):
            if k in old["metadata"]:
                meta[k] = old["metadata"][k]
        meta["name"] = name
        if resource(plural).namespaced:
            meta["namespace"] = ns
        api_version, kind, _ = RESOURCES[plural]
        new["apiVersion"], new["kind"] = api_version, kind
        if plural not in NO_STATUS_SUBRESOURCE:
            new["status"] = copy.deepcopy(old.get("status", {}))
        self.admit_update(plural, ns, name, old, new)
        spec_changed = new.get("spec") != old.get("spec")
        if "generation" in old["metadata"] and spec_changed:
            meta["generation"] = old["metadata"]["generation"] + 1
        self.put(plural, new)
        if plural in WORKLOADS and spec_changed:
            paused = plural == "deployments" and new["spec"].get("paused")
            template_changed = new["spec"].get("template") != old["spec"].get("template")
            if not (paused and template_changed):
                self._schedule((plural, ns, name), self.rollout_delay)
        self._refresh_status()
        return copy.deepcopy(new)

    def _conflict(self, plural: str, name: str) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource(plural).qualified} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            {"name": name, "kind": plural},
        )

    def _replace(self, plural: str, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self._obj(plural, ns, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be an object")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise self._conflict(plural, name)
        return self._store_update(plural, ns, name, old, copy.deepcopy(body))

    def _patch(self, plural: str, ns: str, name: str, body: Any, content_type: str) -> dict[str, Any]:
        old = self._obj(plural, ns, name)
        new = apply_patch(old, body, content_type)
        if new["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
            raise self._conflict(plural, name)  # the patch carried a resourceVersion precondition
        return self._store_update(plural, ns, name, old, new)

    def _delete(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        obj = self._obj(plural, ns, name)
        if plural == "pods":
            gone = copy.deepcopy(self._delete_pod(ns, name) or obj)
            self._refresh_status()
            return gone
        self.remove(plural, ns, name)
        if plural in WORKLOADS:
            self.collect_garbage(plural, ns, name, obj["metadata"]["uid"])
        self._refresh_status()
        group = resource(plural).group
        details = {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}
        if group:
            details["group"] = group
        return status_body(200, "", "", details)
