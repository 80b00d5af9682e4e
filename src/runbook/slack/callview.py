"""How an approval request shows the call it asks about: a compact view first, the exact call after.

An approver at 3 a.m. reads the parameters first: scalars before collections, one per line, long
lists and very long strings summarised (``params.ids: 1,000 values, 100000 … 101198``). The
compact view alone is exact when nothing was summarised (strings that look like another JSON type
are quoted, so ``"5"`` and ``5`` differ on screen). When anything was summarised, the **whole call**
follows as a JSON document cut into sections at line ends (lists wrapped a few values per line, so
no value is split), every fence closed. An Approve button is offered only when all of this fits one
Slack message (:func:`call_sections` returns None otherwise): an approval never covers anything
the approver could not read.

Every data value goes through :mod:`runbook.slack.text` (redacted first, then escaped).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from runbook.core.gate import GateRequest
from runbook.core.redact import redact
from runbook.slack.text import code, code_block, escape

MAX_TEXT = 2900  # Slack section text limit is 3000 characters
MAX_CALL_SECTIONS = 30  # a message holds 50 blocks; the rest of a request takes fewer than 10
LIST_SHOWN = 12  # lists longer than this are summarised in the compact view
INLINE_CHARS = 200  # a list or string longer than this (as JSON) does not go on one compact line
STRING_SHOWN = 1500  # strings up to this length are shown whole in the compact view
COMPACT_LINES = 40  # parameters beyond this many lines are left to the full call
WRAP = 96  # width of the full call's wrapped lists


def _e(value: Any) -> str:
    return escape(redact(str(value)))


def _c(value: Any) -> str:
    return code(redact(str(value)))


def _fence(value: Any) -> str:
    return code_block(redact(str(value)))


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list | tuple)


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def ordered(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    """Scalars first, then collections; otherwise in the order written."""
    items = list(mapping.items())
    return [kv for kv in items if _scalar(kv[1])] + [kv for kv in items if not _scalar(kv[1])]


def _flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as dotted paths (only when no key is empty or holds a dot: no ambiguity)."""
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(k and "." not in str(k) for k in value):
            out += _flatten(value, path + ".")
        else:
            out.append((path, value))
    return [kv for kv in out if _scalar(kv[1])] + [kv for kv in out if not _scalar(kv[1])]


def _shown_scalar(value: Any) -> str:
    """A scalar as shown: a string as itself unless it would read as another JSON value."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
        return _json(value)
    return _json(value)


def summarise(values: list[Any] | tuple[Any, ...]) -> str:
    """``1,000 values, 100000 … 101198`` (first and last as written)."""
    n = len(values)
    if not all(_scalar(v) for v in values):
        return f"{n:,} items"
    return f"{n:,} values, {_shown_scalar(values[0])} … {_shown_scalar(values[-1])}"


def _label(key: str) -> tuple[str, bool]:
    if len(key) > INLINE_CHARS:
        return f"• *{_e(key[:80])}…*: ", True
    return f"• *{_e(key)}*: ", False


def _string_pieces(label: str, value: str) -> tuple[list[str], bool]:
    if len(value) > STRING_SHOWN:
        return [label + f"{_c(value[:80])}… ({len(value):,} characters; whole in the full call)"], True
    return [label, *(_fence(c) for c in chunks(value, _fence, MAX_TEXT - 1))], False


def _collection_piece(label: str, value: Any) -> tuple[str, bool]:
    if len(value) <= LIST_SHOWN and len(_json(value)) <= INLINE_CHARS:
        return label + _c(_json(value)), False
    if isinstance(value, dict):
        return label + _e(f"{len(value):,} keys"), True
    return label + _e(summarise(list(value))), True


def compact_items(params: dict[str, Any]) -> tuple[list[str], bool]:
    """The compact view as mrkdwn pieces (each fits a section) and whether anything was summarised."""
    pieces: list[str] = []
    summarised = False
    flat = _flatten(params)
    for key, value in flat[:COMPACT_LINES]:
        label, cut = _label(str(key))
        summarised |= cut
        if isinstance(value, str) and ("\n" in value or len(value) > INLINE_CHARS):
            more, cut = _string_pieces(label, value)
            pieces += more
        elif _scalar(value):
            pieces.append(label + _c(_shown_scalar(value)))
            cut = False
        else:
            piece, cut = _collection_piece(label, value)
            pieces.append(piece)
        summarised |= cut
    if len(flat) > COMPACT_LINES:
        pieces.append(f"_… and {len(flat) - COMPACT_LINES} more parameters, in the full call below_")
        summarised = True
    if not flat:
        pieces.append("_no parameters_")
    return pieces, summarised


def _wrapped(values: list[Any], pad: str) -> str:
    lines: list[str] = []
    current = ""
    for token in (_json(v) for v in values):
        if current and len(current) + len(token) + 2 > WRAP:
            lines.append(current + ",")
            current = ""
        current = f"{current}, {token}" if current else token
    lines.append(current)
    return "[\n" + "\n".join(pad + "  " + line for line in lines) + "\n" + pad + "]"


def pretty(value: Any, indent: int = 0) -> str:
    """The exact call as JSON: scalars before collections, lists of scalars a few values per line."""
    pad = "  " * indent
    if isinstance(value, dict) and value:
        inner = ",\n".join(f"{pad}  {_json(str(k))}: {pretty(v, indent + 1)}" for k, v in ordered(value))
        return "{\n" + inner + "\n" + pad + "}"
    if isinstance(value, list | tuple) and value:
        if all(_scalar(v) for v in value):
            one_line = _json(list(value))
            return one_line if len(one_line) + len(pad) <= WRAP else _wrapped(list(value), pad)
        return "[\n" + ",\n".join(pad + "  " + pretty(v, indent + 1) for v in value) + "\n" + pad + "]"
    return _json(value)


def chunks(text: str, shown: Callable[[str], str], limit: int) -> list[str]:
    """``text`` cut at line ends (a longer line is cut inside) so that ``shown(chunk)`` fits ``limit``."""
    out: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(shown(line)) > limit:  # one line alone is too long: cut it where it still fits
            cut = max(1, limit // 6)
            while cut < len(line) and len(shown(line[: cut * 2])) <= limit:
                cut *= 2
            while cut > 1 and len(shown(line[:cut])) > limit:
                cut -= max(1, cut // 8)
            if current:
                out.append(current)
                current = ""
            out.append(line[:cut])
            line = line[cut:]
        if current and len(shown(current + line)) > limit:
            out.append(current)
            current = ""
        current += line
    if current or not out:
        out.append(current)
    return out


def _pack(lead: str, pieces: list[str]) -> list[str]:
    """``lead`` and the pieces (each shorter than MAX_TEXT) joined by newlines into sections."""
    texts: list[str] = []
    current = lead
    for piece in pieces:
        candidate = f"{current}\n{piece}"
        if len(candidate) > MAX_TEXT:
            texts.append(current)
            current = piece
        else:
            current = candidate
    texts.append(current)
    return texts


def what_sections(req: GateRequest, *, first_only: bool = False) -> list[str]:
    """The action's own description (what it will do, with counts and targets), never clipped.

    ``first_only``: just the first section, cut from the description's head - for a call too long
    to show, where cutting all of a 300 KB description redacted and escaped the rest of its one
    line again for every piece (seconds, twice per request: the message and its update)."""
    what = "*What it does:* "
    text = req.description or "(no description)"
    pieces = chunks(text[: 4 * MAX_TEXT] if first_only else text, _e, MAX_TEXT - len(what))
    return [
        (what if i == 0 else "") + _e(chunk) for i, chunk in enumerate(pieces[:1] if first_only else pieces)
    ]


def full_call_sections(req: GateRequest) -> list[str]:
    lead = f"*Full call* — exactly what Approve covers (plan {_c(req.plan_hash[:12])}):\n"
    return [
        (lead if i == 0 else "") + _fence(chunk)
        for i, chunk in enumerate(chunks(pretty(req.params), _fence, MAX_TEXT - len(lead)))
    ]


def call_sections(req: GateRequest) -> list[str] | None:
    """What the call does, its parameters (compact) and, when anything was summarised there, the
    whole call: section texts that each fit Slack's limit, never clipped, fences closed. None when
    it all does not fit one message (then Slack offers no Approve: see :func:`shown_whole`)."""
    size = len(_json(req.params)) + len(req.description)
    if size > MAX_CALL_SECTIONS * MAX_TEXT:
        return None  # escaping only lengthens text: it cannot fit, so do not cut it up to find out
    items, summarised = compact_items(req.params)
    texts = what_sections(req) + _pack(f"*Will run* {_c(req.action)} with:", items)
    if summarised:
        texts += full_call_sections(req)
    return texts if len(texts) <= MAX_CALL_SECTIONS else None


def too_long_sections(req: GateRequest) -> list[str]:
    """For a call too long for one message: what it does and its shape, and where to read it whole."""
    size = len(_json(req.params)) + len(req.description)
    items, _ = compact_items(req.params)
    what = what_sections(req, first_only=True)
    shape = _pack(f"*Will run* {_c(req.action)} with (summarised):", items)[:2]
    notice = (
        f"*The call is too long to show here in full* ({size:,} characters)."
        f" Read it with {_c('runbook timeline --json ' + req.run_id)}; deny here, or approve with"
        f" {_c(f'runbook approve {req.run_id} {req.step_id}')} once you have read it."
        " *Approve is not offered in Slack for a call nobody could read whole.*"
    )
    return [*what, *shape, notice]


def shown_whole(req: GateRequest) -> bool:
    """Whether Slack showed this request's whole call (only then may a Slack click approve it)."""
    return call_sections(req) is not None
