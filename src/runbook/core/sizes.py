"""How large a template value may grow, checked *before* it is built.

The limits of :mod:`runbook.core.sandbox` and the estimators behind them: the rendered size of a
value (shared references counted each time, as rendering does), string methods that pad or
replace, filters whose output outgrows their input, and the operators ``*``, ``+`` and ``**``.
Every estimate errs on the large side and stops walking as soon as it passes the limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2.utils import Namespace

#: characters one rendered value (a ``with:`` value, a condition) may reach
MAX_VALUE_CHARS = 1_000_000
#: characters a postmortem draft may reach
MAX_POSTMORTEM_CHARS = 2_000_000
#: items ``range()`` may produce (Jinja's own sandbox allows 100 000)
MAX_RANGE = 10_000
#: bits an integer result may have (about 3 000 decimal digits)
MAX_INT_BITS = 10_000
#: loop iterations plus calls one render may make
MAX_STEPS = 100_000


class ExpressionError(Exception):
    """An expression failed to parse or evaluate (message is for the operator)."""


class OutputTooLarge(ExpressionError):
    """A template tried to build a value or text larger than its bound."""


def too_large(what: str, limit: int) -> OutputTooLarge:
    return OutputTooLarge(f"output too large: {what} (limit {limit:,} characters)")


# --- measuring ---------------------------------------------------------------------------------


def _scalar_size(v: Any) -> int | None:
    """Characters a leaf value renders to (about); None for a container."""
    if isinstance(v, str | bytes | bytearray):
        return len(v)
    if v is None or isinstance(v, bool):
        return 5
    if isinstance(v, int):
        return v.bit_length() // 3 + 2  # decimal digits <= bits * 0.302
    if isinstance(v, float):
        return 24
    if isinstance(v, range):
        return 2 + 8 * len(v)
    return None


def _container(v: Any) -> tuple[int, list[Any]] | None:
    """(its own punctuation, its items) for a container; None for anything else."""
    if isinstance(v, Mapping):
        keys = dict.keys(v) if isinstance(v, dict) else v.keys()
        values = dict.values(v) if isinstance(v, dict) else v.values()
        return 2 + 4 * len(v), [*keys, *values]
    if isinstance(v, list | tuple | set | frozenset | deque):
        return 2 + 2 * len(v), list(v)
    if isinstance(v, Namespace):
        return 0, [object.__getattribute__(v, "_Namespace__attrs")]
    return None


def measure(value: Any, limit: int) -> int:
    """About how many characters ``value`` renders to, walking at most ``limit`` of them.

    Shared references count each time they appear (that is what rendering does), so a list that
    contains itself twice, forty times over, measures as the 2**40 items it would print. Returns
    a number greater than ``limit`` as soon as the walk passes it. Objects that are not plain
    data (timeline events, datetimes) count as a few characters."""
    total = 0
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        size = _scalar_size(v)
        if size is None:
            found = _container(v)
            if found is None:
                size = 8
            else:
                size, items = found
                if total + size <= limit:  # never copy the items of a container already too big
                    stack.extend(items)
        total += size
        if total > limit:
            return total
    return total


def check_size(value: Any, limit: int, what: str) -> Any:
    if measure(value, limit) > limit:
        raise too_large(what, limit)
    return value


# --- calls to methods of builtin types -----------------------------------------------------------

#: str/bytes methods whose result is never longer than the string itself (or is not a string)
_SHRINKING = frozenset(
    """capitalize casefold count decode encode endswith find format format_map index isalnum isalpha
    isascii isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper
    lower lstrip partition removeprefix removesuffix rfind rindex rpartition rsplit rstrip split
    splitlines startswith strip swapcase title upper hex""".split()
)
_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})


def arg_of(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def int_size(value: Any, limit: int, what: str) -> int:
    if isinstance(value, int) and value > limit:
        raise too_large(f"{what} {value:,}", limit)
    return value if isinstance(value, int) else 0


def text_len(value: Any, limit: int) -> int:
    return len(value) if isinstance(value, str | bytes | bytearray) else measure(value, limit)


def check_string_method(
    owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Refuse a call to ``owner.name(...)`` (a str or bytes) whose result could pass ``limit``;
    returns the arguments to call with (an iterable given to ``join`` is materialised once)."""
    size = len(owner)
    if name in _SHRINKING:
        return args, kwargs
    if name in _PADDING:
        int_size(arg_of(args, kwargs, 0, "width", 0), limit, f"{name}() width")
        return args, kwargs
    if name == "expandtabs":
        tab = int_size(arg_of(args, kwargs, 0, "tabsize", 8), limit, "expandtabs() tab size")
        estimate = size + owner.count("\t" if isinstance(owner, str) else b"\t") * tab
    elif name == "replace":
        old, new = arg_of(args, kwargs, 0, "old", ""), arg_of(args, kwargs, 1, "new", "")
        count = arg_of(args, kwargs, 2, "count", -1)
        hits = size + 1 if not old else owner.count(old)
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        estimate = size + hits * max(0, text_len(new, limit) - text_len(old, limit))
    elif name == "join":
        items = list(arg_of(args, kwargs, 0, "iterable", ()))
        estimate = measure(items, limit) + len(items) * size
        args, kwargs = (items,), {}
    else:  # translate, anything else: assume every character may become the largest argument
        widest = max((text_len(a, limit) for a in (*args, *kwargs.values())), default=1)
        estimate = size * max(1, widest)
    if estimate > limit:
        raise too_large(f"str.{name}() result of about {estimate:,} characters", limit)
    return args, kwargs


def _check_center(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    int_size(arg_of(rest, kwargs, 0, "width", 80), limit, "center width")


def _check_batch(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    int_size(arg_of(rest, kwargs, 0, "linecount", 1), limit, "batch")


def _check_slice(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    int_size(arg_of(rest, kwargs, 0, "slices", 1), limit, "slice")


def _check_indent(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    width = arg_of(rest, kwargs, 0, "width", 4)
    per_line = int_size(width, limit, "indent width") if isinstance(width, int) else len(str(width))
    estimate = len(str(value)) + (str(value).count("\n") + 1) * per_line
    if estimate > limit:
        raise too_large(f"indent result of about {estimate:,} characters", limit)


def _check_wordwrap(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    width = max(1, int_size(arg_of(rest, kwargs, 0, "width", 79), limit, "wordwrap width"))
    wrap = arg_of(rest, kwargs, 2, "wrapstring", None) or "\n"
    text = len(str(value))
    estimate = text + (text // width + 1) * len(str(wrap))
    if estimate > limit:
        raise too_large(f"wordwrap result of about {estimate:,} characters", limit)


def _check_tojson(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    indent = arg_of(rest, kwargs, 0, "indent", None)
    step = len(str(indent or ""))
    if isinstance(indent, int):
        step = int_size(indent, limit, "tojson indent")
    estimate = measure(value, limit) * (1 + step)
    if estimate > limit:
        raise too_large(f"tojson result of about {estimate:,} characters", limit)


def _check_replace(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    if isinstance(value, str):
        check_string_method(value, "replace", tuple(rest), dict(kwargs), limit)


def _check_join(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    sep = arg_of(rest, kwargs, 0, "d", "")
    items = len(value) if hasattr(value, "__len__") else 0
    estimate = measure(value, limit) + items * text_len(sep, limit)
    if estimate > limit:
        raise too_large(f"join result of about {estimate:,} characters", limit)


#: filters whose result can be much larger than their input: estimated before they run
_FILTER_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any], int], None]] = {
    "center": _check_center,
    "batch": _check_batch,
    "slice": _check_slice,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "tojson": _check_tojson,
    "replace": _check_replace,
    "join": _check_join,
}


def filter_precheck(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Refuse a filter call that could build more than ``limit``; returns the arguments to use."""
    if not args:
        return args, kwargs
    value, rest = args[0], args[1:]
    if isinstance(value, Iterator) and name in ("join", "list", "tojson", "string", "pprint", "sum"):
        value = list(value)  # a generator from map/select: materialise it once, then measure it
        args = (value, *rest)
    check_size(value, limit, f"input of the {name!r} filter")
    for extra in (*rest, *kwargs.values()):
        if not isinstance(extra, int):
            check_size(extra, limit, f"argument of the {name!r} filter")
    estimate = _FILTER_CHECKS.get(name)
    if estimate is not None:
        estimate(value, tuple(rest), kwargs, limit)
    return args, kwargs


def _check_power(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise OutputTooLarge(f"output too large: {left} ** {right} (limit {MAX_INT_BITS} bits)")


def _check_product(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise OutputTooLarge(f"output too large: integer product (limit {MAX_INT_BITS} bits)")
        return
    seq, times = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(times, int) and times > 0 and not isinstance(seq, int | float):
        if times > limit or measure(seq, limit) * times > limit:
            raise too_large(f"repeating a {type(seq).__name__} {times:,} times", limit)


def _check_sum(left: Any, right: Any, limit: int) -> None:
    if not isinstance(left, int | float) or not isinstance(right, int | float):
        if measure(left, limit) + measure(right, limit) > limit:
            raise too_large(f"adding two {type(left).__name__} values", limit)


#: operators whose result can outgrow their operands: checked before Python computes them
BINOP_CHECKS: dict[str, Callable[[Any, Any, int], None]] = {
    "**": _check_power,
    "*": _check_product,
    "+": _check_sum,
}
