"""Patch semantics the API server applies: JSON merge patch (RFC 7386), strategic merge patch (lists of
named items merged by ``name``; ``$``-directives such as ``$setElementOrder`` that kubectl sends are
ignored, except ``$patch: replace`` (the object replaces the target: ``kubectl rollout undo`` of a
StatefulSet sends a ControllerRevision's ``{"spec": {"template": {..., "$patch": "replace"}}}``) and
``$patch: delete``) and JSON Patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from .base import ApiError


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; with ``strategic``, lists of objects that all carry ``name`` merge by name
    (the strategic-merge key of containers, volumes, env...)."""
    if not isinstance(patch, dict):
        if (
            strategic
            and isinstance(patch, list)
            and isinstance(target, list)
            and _named(patch)
            and _named(target)
        ):
            merged = {item["name"]: item for item in copy.deepcopy(target)}
            for item in patch:
                merged[item["name"]] = merge_patch(merged.get(item["name"], {}), item, strategic=True)
            return list(merged.values())
        return copy.deepcopy(patch)
    directive = patch.get("$patch") if strategic else None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        merged = None if value is None else merge_patch(result.get(key), value, strategic=strategic)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON Patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        try:
            parts = _pointer(op["path"])
            parent = _resolve(doc, parts[:-1])
            last = parts[-1]
            if kind == "test":
                if _resolve(doc, parts) != op.get("value"):
                    raise ApiError(422, "Invalid", f"JSON patch test failed at {op['path']}")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(_resolve(doc, _pointer(op["from"])))
                if kind == "move":
                    src = _pointer(op["from"])
                    src_parent = _resolve(doc, src[:-1])
                    del src_parent[int(src[-1]) if isinstance(src_parent, list) else src[-1]]
                kind, op = "add", {**op, "value": value}
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), op["value"])
                else:
                    parent[last] = op["value"]
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    if last not in parent:
                        raise KeyError(last)
                    parent[last] = op["value"]
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422, "Invalid", f"JSON patch {kind} {op.get('path')}: no such path ({exc})"
            ) from exc
    return doc


def apply_patch(obj: dict[str, Any], body: Any, content_type: str) -> dict[str, Any]:
    """``obj`` patched by ``body`` according to the request's content type (415 for an unknown one)."""
    ctype = content_type.split(";")[0].strip()
    if ctype == "application/json-patch+json":
        if not isinstance(body, list):
            raise ApiError(400, "BadRequest", "JSON patch body must be a list of operations")
        return json_patch(obj, body)
    if ctype in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "merge patch body must be an object")
        return merge_patch(obj, body, strategic=ctype.startswith("application/strategic"))
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}")
