"""``watch=true`` streams: chunked JSON lines of ``{"type", "object"}`` as kube-apiserver sends them.

Semantics followed: without ``resourceVersion`` (or with ``0``) the stream starts with a synthetic
ADDED event per existing object, then follows changes; with a resourceVersion (kubectl and informers
pass the one their list returned) it sends only later changes, or one ERROR event with a 410 ``Expired``
Status when that version has left the journal. Selectors apply to each change as the cacher applies
them: an object that starts matching arrives as ADDED, one that stops matching as DELETED.
``allowWatchBookmarks`` is honoured with a BOOKMARK event when the stream has been idle for a while;
``timeoutSeconds`` ends the stream. Tables are sent when the request asked for them (``kubectl get -w``).
"""

from __future__ import annotations

import copy
import json
import time
from typing import TYPE_CHECKING, Any

from .base import ApiError, status_body
from .resources import RESOURCES
from .rest import q
from .tables import table, wants_table

if TYPE_CHECKING:
    from .http import Handler

BOOKMARK_IDLE = 5.0
DEFAULT_TIMEOUT = 1800.0


def _render(plural: str, obj: dict[str, Any], as_table: bool, include: str, first: bool) -> dict[str, Any]:
    if not as_table:
        return obj
    tab = table(plural, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, include or "Object")
    if not first:
        tab.pop("columnDefinitions")  # the server sends column definitions once, with the first row
    return tab


def stream(handler: Handler, plural: str, ns: str, query: dict[str, list[str]], accept: str) -> int:
    """Serve one watch on ``handler``'s connection; returns the HTTP status for the request log."""
    kube = handler.kube
    matches = kube.matcher(plural, ns, query)  # a bad selector is a plain 400, before the stream starts
    as_table, include = wants_table(accept), q(query, "includeObject")
    bookmarks = q(query, "allowWatchBookmarks") == "true"
    try:
        timeout = float(q(query, "timeoutSeconds", "0") or 0) or DEFAULT_TIMEOUT
    except ValueError:
        raise ApiError(400, "BadRequest", "timeoutSeconds must be a number") from None
    deadline = time.monotonic() + timeout
    since = q(query, "resourceVersion")
    expired = False
    with kube.lock:
        kube._tick()
        if since in ("", "0"):
            initial = [copy.deepcopy(o) for _, o in sorted(kube.objects[plural].items()) if matches(o)]
            cursor = kube.last_rv
        else:
            try:
                cursor = int(since)
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid resource version: {since}") from None
            initial = []
            expired = cursor < kube.oldest_rv()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.close_connection = True
    first = True

    def send(kind: str, obj: dict[str, Any]) -> None:
        nonlocal first
        data = json.dumps({"type": kind, "object": _render(plural, obj, as_table, include, first)}) + "\n"
        first = first and kind in ("ERROR", "BOOKMARK")
        raw = data.encode()
        handler.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        handler.wfile.flush()

    try:
        if expired:
            send(
                "ERROR",
                status_body(410, "Expired", f"too old resource version: {since} ({kube.oldest_rv() + 1})"),
            )
            return 200
        for obj in initial:
            send("ADDED", obj)
        idle_since = time.monotonic()
        while not kube._stop.is_set() and time.monotonic() < deadline:
            with kube.lock:
                changes = [c for c in kube.journal if c.rv > cursor and c.plural == plural]
                if not changes:
                    kube.changed.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                    changes = [c for c in kube.journal if c.rv > cursor and c.plural == plural]
                cursor = kube.last_rv
            for c in changes:
                now_m, was_m = matches(c.obj), c.old is not None and matches(c.old)
                if c.type == "DELETED":
                    kind = "DELETED" if (now_m or was_m) else ""
                elif now_m:
                    kind = "MODIFIED" if was_m else "ADDED"
                else:
                    kind = "DELETED" if was_m else ""
                if kind:
                    send(kind, c.obj)
                    idle_since = time.monotonic()
            if bookmarks and not as_table and time.monotonic() - idle_since > BOOKMARK_IDLE:
                api_version, kind_name, _ = RESOURCES[plural]
                meta = {"resourceVersion": str(cursor)}
                send("BOOKMARK", {"kind": kind_name, "apiVersion": api_version, "metadata": meta})
                idle_since = time.monotonic()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except OSError:
        pass  # the client went away: that ends a watch
    return 200
