"""Label and field selectors as the API server applies them.

Labels: ``a=b``, ``a==b``, ``a!=b`` (also true when ``a`` is absent), ``a in (x,y)``, ``a notin (x)``
(also true when absent), ``a`` (exists), ``!a`` (does not exist), ``a>1`` / ``a<1``; anything else is a
400 like the real parser's. Fields: only the fields each resource type supports on a real server
(``metadata.name`` and ``metadata.namespace`` everywhere, plus e.g. ``spec.nodeName`` and
``status.phase`` for pods, ``involvedObject.*`` for events); other fields answer 400
``field label not supported`` as kube-apiserver does.
"""

from __future__ import annotations

import re
from typing import Any

from .base import ApiError

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)")
_CMP_RE = re.compile(rf"({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})")
_EXISTS_RE = re.compile(rf"(!?)\s*({_KEY})")

FIELDS_COMMON = ("metadata.name", "metadata.namespace")
FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "nodes": ("spec.unschedulable",),
    "namespaces": ("status.phase",),
    "replicasets": ("status.replicas",),
}


def split_top(expr: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b`` is two requirements)."""
    parts, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _bad_label(req: str, why: str = "invalid label selector requirement") -> ApiError:
    return ApiError(400, "BadRequest", f"unable to parse requirement: {why}: {req!r}")


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy the selector string; raises a 400 :class:`ApiError` if it is invalid."""
    for req in split_top(selector or ""):
        m = _SET_RE.fullmatch(req)
        if m:
            key, op = m.group(1), m.group(2)
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            if not values:
                raise _bad_label(req, "for 'in', 'notin' operators, values set can't be empty")
            present = key in labels and labels[key] in values
            if (op == "in") != present:
                return False
            continue
        m = _CMP_RE.fullmatch(req)
        if m:
            key, op, value = m.groups()
            if op in (">", "<"):
                try:
                    bound, have = int(value), int(labels[key]) if key in labels else None
                except ValueError:
                    raise _bad_label(req, "for 'Gt', 'Lt' operators, the value must be an integer") from None
                if have is None or not (have > bound if op == ">" else have < bound):
                    return False
                continue
            equal = labels.get(key) == value
            if (op == "!=") == equal:
                return False
            continue
        m = _EXISTS_RE.fullmatch(req)
        if not m:
            raise _bad_label(req)
        if (m.group(2) in labels) == bool(m.group(1)):
            return False
    return True


def match_labels_selector(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A ``LabelSelector`` object (matchLabels and matchExpressions) against labels.

    An empty or missing selector matches nothing here: that is what a PodDisruptionBudget in policy/v1
    with a null selector selects (and what workload selectors can never be, since they are required)."""
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_string(selector: dict[str, Any] | None) -> str:
    """A LabelSelector object as the selector string kubectl and the Scale subresource show."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key = expr["operator"], expr["key"]
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(sorted(expr.get('values') or []))})")
        else:
            parts.append(key if op == "Exists" else f"!{key}")
    return ",".join(parts)


def _field_value(obj: dict[str, Any], dotted: str) -> str:
    if dotted == "source":  # events: the source component
        return str((obj.get("source") or {}).get("component") or "")
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return "false" if dotted in ("spec.hostNetwork", "spec.unschedulable") else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_field_selector(plural: str, selector: str) -> list[tuple[str, bool, str]]:
    """Parse a field selector into (field, negated, value) triples; 400 for a field the type lacks."""
    reqs = []
    allowed = FIELDS_COMMON + FIELDS.get(plural, ())
    for req in split_top(selector or ""):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", req)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {req!r}")
        key, op, value = m.groups()
        if key not in allowed:
            raise ApiError(400, "BadRequest", f"field label not supported: {key}")
        reqs.append((key, op == "!=", value.strip()))
    return reqs


def field_selector_matches(selector: str, obj: dict[str, Any], plural: str | None = None) -> bool:
    """Whether ``obj`` satisfies the field selector (fields checked against ``plural`` when given)."""
    if plural is not None:
        reqs = check_field_selector(plural, selector)
    else:
        reqs = []
        for req in split_top(selector or ""):
            m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", req)
            if not m:
                raise ApiError(400, "BadRequest", f"invalid field selector: {req!r}")
            reqs.append((m.group(1), m.group(2) == "!=", m.group(3).strip()))
    return all((_field_value(obj, key) == value) != negated for key, negated, value in reqs)
