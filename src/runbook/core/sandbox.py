"""One Jinja2 sandbox for every template the product renders: read-only and bounded.

Playbook expressions (``with:``, ``when:``) and postmortem drafts are rendered over data that
outsiders write (incident titles, broker and database contents) and, for expressions, by whoever
wrote or parametrised the playbook. Both go through :class:`BoundedSandbox`:

- **immutable**: it is an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`, so
  ``params.update(...)``, ``list.append``, ``dict.pop`` and friends on context data are refused
  (a clear :class:`ExpressionError`) and change nothing; keys of a dict still win over dict
  methods where the data wrapper (``Obj``) says so (``steps.x.values`` is the key ``values``);
- **bounded output**: every operator, literal, call, filter and ``str.format``/``%`` formatting
  that could build a large value checks its size *before* building it, and the rendered text is
  counted while it streams: nothing grows past ``output_limit`` characters (1 MB for a value,
  2 MB for a postmortem); ``range`` is capped at :data:`MAX_RANGE` items, integers at
  :data:`MAX_INT_BITS` bits (``**`` and ``*`` included);
- **bounded work**: loop iterations and calls share a per-render step budget
  (:data:`MAX_STEPS`), so nested loops or recursive macros end with an error, not a busy worker.

Whatever exceeds a bound raises :class:`OutputTooLarge` ("output too large: ..."), an
:class:`ExpressionError`.
"""

from __future__ import annotations

import contextvars
import functools
import re
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedFormatter,
    modifies_known_mutable,
)
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import EscapeFormatter, Markup

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


def _too_large(what: str, limit: int) -> OutputTooLarge:
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
        raise _too_large(what, limit)
    return value


# --- the per-render step budget ----------------------------------------------------------------


class _Budget:
    __slots__ = ("left", "total")

    def __init__(self, steps: int) -> None:
        self.left = self.total = steps

    def step(self, weight: int = 1) -> None:
        self.left -= weight
        if self.left < 0:
            raise OutputTooLarge(
                f"output too large: more than {self.total:,} loop iterations (a call counts"
                f" {CALL_WEIGHT}) in one template"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "runbook_template_budget", default=None
)


#: a call (a macro above all) costs about as much as this many loop iterations
CALL_WEIGHT = 5


def _step(weight: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.step(weight)


# --- code generation: loops, concatenation and literals go through the environment --------------


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's generator, with three hooks the stock sandbox lacks: every ``for`` iterates
    through ``environment.rb_iter`` (counted), ``~`` through ``environment.rb_concat`` (sized),
    and list/tuple/dict literals through ``environment.rb_container`` (sized, shared
    references included)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        counted = nodes.Call(
            nodes.EnvironmentAttribute("rb_iter", lineno=node.lineno),
            [node.iter],
            [],
            None,
            None,
            lineno=node.lineno,
        )
        clone = nodes.For(
            node.target, counted, node.body, node.else_, node.test, node.recursive, lineno=node.lineno
        )
        super().visit_For(clone, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.rb_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _sized(self, visit: Any, node: nodes.Node, frame: Frame) -> None:
        self.write("environment.rb_container(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._sized(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._sized(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx == "load":
            self._sized(super().visit_Tuple, node, frame)
        else:  # an assignment target: `{% for a, b in ... %}`
            super().visit_Tuple(node, frame)


# --- formatting: str.format / format_map / % -----------------------------------------------------

_DIGITS = re.compile(r"\d+")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")


def _spec_width(spec: str, limit: int) -> int:
    """The sum of the numbers in a format spec (width, precision): what padding could add."""
    total = 0
    for digits in _DIGITS.findall(spec):
        if len(digits) > 9:
            raise _too_large(f"format width {digits[:12]}...", limit)
        total += int(digits)
    return total


class _BoundedFormatter(SandboxedFormatter):
    """``str.format``/``format_map`` that refuses widths, precisions and values past the limit."""

    def __init__(self, env: Any, limit: int, **kwargs: Any) -> None:
        self.limit = limit
        self.spent = 0
        super().__init__(env, **kwargs)

    def _spend(self, n: int, what: str) -> None:
        self.spent += n
        if self.spent > self.limit:
            raise _too_large(what, self.limit)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        check_size(value, self.limit, "value formatted with str.format")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._spend(_spec_width(format_spec, self.limit), f"format spec {format_spec[:20]!r}")
        check_size(value, self.limit, "value formatted with str.format")
        out = super().format_field(value, format_spec)
        self._spend(len(out), "str.format result")
        return out


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


def safe_percent(fmt: Any, values: Any, limit: int) -> Any:
    """``fmt % values`` with printf widths and precisions bounded (``*`` refused)."""
    if isinstance(fmt, str):
        widths = len(fmt)
        for m in _PERCENT_SPEC.finditer(fmt):
            for group in m.groups():
                if group == "*":
                    raise _too_large("'*' width in %-formatting", limit)
                if group:
                    widths += _spec_width(group, limit)
        if widths > limit:
            raise _too_large("%-format widths", limit)
        check_size(values, limit, "values of %-formatting")
        result = fmt % values
        return check_size(result, limit, "%-formatting result")
    return fmt % values


# --- calls to methods of builtin types -----------------------------------------------------------

#: str/bytes methods whose result is never longer than the string itself (or is not a string)
_SHRINKING = frozenset(
    """capitalize casefold count decode encode endswith find format format_map index isalnum isalpha
    isascii isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper
    lower lstrip partition removeprefix removesuffix rfind rindex rpartition rsplit rstrip split
    splitlines startswith strip swapcase title upper hex""".split()
)
_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _int_size(value: Any, limit: int, what: str) -> int:
    if isinstance(value, int) and value > limit:
        raise _too_large(f"{what} {value:,}", limit)
    return value if isinstance(value, int) else 0


def _text_len(value: Any, limit: int) -> int:
    return len(value) if isinstance(value, str | bytes | bytearray) else measure(value, limit)


def _check_string_method(
    owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Refuse a call to ``owner.name(...)`` (a str or bytes) whose result could pass ``limit``;
    returns the arguments to call with (an iterable given to ``join`` is materialised once)."""
    size = len(owner)
    if name in _SHRINKING:
        return args, kwargs
    if name in _PADDING:
        _int_size(_arg(args, kwargs, 0, "width", 0), limit, f"{name}() width")
        return args, kwargs
    if name == "expandtabs":
        tab = _int_size(_arg(args, kwargs, 0, "tabsize", 8), limit, "expandtabs() tab size")
        estimate = size + owner.count("\t" if isinstance(owner, str) else b"\t") * tab
    elif name == "replace":
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        count = _arg(args, kwargs, 2, "count", -1)
        hits = size + 1 if not old else owner.count(old)
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        estimate = size + hits * max(0, _text_len(new, limit) - _text_len(old, limit))
    elif name == "join":
        items = list(_arg(args, kwargs, 0, "iterable", ()))
        estimate = measure(items, limit) + len(items) * size
        args, kwargs = (items,), {}
    else:  # translate, anything else: assume every character may become the largest argument
        widest = max((_text_len(a, limit) for a in (*args, *kwargs.values())), default=1)
        estimate = size * max(1, widest)
    if estimate > limit:
        raise _too_large(f"str.{name}() result of about {estimate:,} characters", limit)
    return args, kwargs


# --- filters -------------------------------------------------------------------------------------


def _check_center(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    _int_size(_arg(rest, kwargs, 0, "width", 80), limit, "center width")


def _check_batch(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    _int_size(_arg(rest, kwargs, 0, "linecount", 1), limit, "batch")


def _check_slice(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    _int_size(_arg(rest, kwargs, 0, "slices", 1), limit, "slice")


def _check_indent(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    width = _arg(rest, kwargs, 0, "width", 4)
    per_line = _int_size(width, limit, "indent width") if isinstance(width, int) else len(str(width))
    estimate = len(str(value)) + (str(value).count("\n") + 1) * per_line
    if estimate > limit:
        raise _too_large(f"indent result of about {estimate:,} characters", limit)


def _check_wordwrap(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    width = max(1, _int_size(_arg(rest, kwargs, 0, "width", 79), limit, "wordwrap width"))
    wrap = _arg(rest, kwargs, 2, "wrapstring", None) or "\n"
    text = len(str(value))
    estimate = text + (text // width + 1) * len(str(wrap))
    if estimate > limit:
        raise _too_large(f"wordwrap result of about {estimate:,} characters", limit)


def _check_tojson(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    indent = _arg(rest, kwargs, 0, "indent", None)
    step = len(str(indent or ""))
    if isinstance(indent, int):
        step = _int_size(indent, limit, "tojson indent")
    estimate = measure(value, limit) * (1 + step)
    if estimate > limit:
        raise _too_large(f"tojson result of about {estimate:,} characters", limit)


def _check_replace(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    if isinstance(value, str):
        _check_string_method(value, "replace", tuple(rest), dict(kwargs), limit)


def _check_join(value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    sep = _arg(rest, kwargs, 0, "d", "")
    items = len(value) if hasattr(value, "__len__") else 0
    estimate = measure(value, limit) + items * _text_len(sep, limit)
    if estimate > limit:
        raise _too_large(f"join result of about {estimate:,} characters", limit)


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


def _filter_precheck(
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


def _bounded_filter(name: str, func: Any, env: BoundedSandbox) -> Any:
    if getattr(func, "_rb_bounded", False):
        return func
    leading = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        head, tail = args[:leading], args[leading:]
        tail, kwargs = _filter_precheck(name, tuple(tail), kwargs, env.output_limit)
        result = func(*head, *tail, **kwargs)
        if not isinstance(result, Iterator):
            check_size(result, env.output_limit, f"result of the {name!r} filter")
        return result

    bounded._rb_bounded = True  # type: ignore[attr-defined]
    return bounded


class _BoundedFilters(dict):  # type: ignore[type-arg]
    """The environment's filter table: every filter put in it is wrapped with size checks."""

    def __init__(self, env: BoundedSandbox, filters: Mapping[str, Any]) -> None:
        super().__init__()
        self._env = env
        self.update(filters)

    def __setitem__(self, name: str, func: Any) -> None:
        super().__setitem__(name, _bounded_filter(name, func, self._env))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for name, func in dict(*args, **kwargs).items():
            self[name] = func

    def setdefault(self, name: str, func: Any = None) -> Any:
        if name not in self:
            self[name] = func
        return self[name]


# --- the environment -----------------------------------------------------------------------------


def bounded_range(*args: int) -> range:
    """``range`` capped at :data:`MAX_RANGE` items."""
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise OutputTooLarge(f"output too large: range of {len(rng):,} items (limit {MAX_RANGE:,})")
    return rng


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's ``lipsum`` with at most 20 paragraphs of at most 200 words."""
    if n > 20 or max > 200 or min > max:
        raise OutputTooLarge("output too large: lipsum is limited to 20 paragraphs of 200 words")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


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
            raise _too_large(f"repeating a {type(seq).__name__} {times:,} times", limit)


def _check_sum(left: Any, right: Any, limit: int) -> None:
    if not isinstance(left, int | float) or not isinstance(right, int | float):
        if measure(left, limit) + measure(right, limit) > limit:
            raise _too_large(f"adding two {type(left).__name__} values", limit)


#: operators whose result can outgrow their operands: checked before Python computes them
_BINOP_CHECKS: dict[str, Callable[[Any, Any, int], None]] = {
    "**": _check_power,
    "*": _check_product,
    "+": _check_sum,
}


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size and work bounds (see the module docstring)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(
        self, *, output_limit: int = MAX_VALUE_CHARS, max_steps: int = MAX_STEPS, **kwargs: Any
    ) -> None:
        kwargs.setdefault("finalize", self._finalize)
        self.output_limit = output_limit
        self.max_steps = max_steps
        super().__init__(**kwargs)
        self.filters = _BoundedFilters(self, self.filters)
        self.filters["format"] = lambda value, *args, **kw: safe_percent(value, kw or args, self.output_limit)
        self.globals["range"] = bounded_range
        self.globals["lipsum"] = bounded_lipsum

    # -- attributes: read-only data, keys of the data wrapper win over dict methods --

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, dict) and not attr.startswith("_") and dict.__contains__(obj, attr):
            if dict.__getitem__(obj, attr) is value:  # the key itself (Obj): data, not a method
                return True
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        if modifies_known_mutable(obj, attribute):
            from jinja2.exceptions import SecurityError

            return self.undefined(
                f"expressions are read-only: {type(obj).__name__}.{attribute}() would change the data",
                name=attribute,
                obj=obj,
                exc=SecurityError,
            )
        return super().unsafe_undefined(obj, attribute)

    # -- operators --

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self.output_limit
        if operator == "%":
            return safe_percent(left, right, limit)
        check = _BINOP_CHECKS.get(operator)
        if check is not None:
            check(left, right, limit)
        return super().call_binop(context, operator, left, right)

    # -- calls --

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step(CALL_WEIGHT)
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", None)
        if isinstance(owner, str | bytes | bytearray) and isinstance(name, str):  # str, Markup, bytes
            args, kwargs = _check_string_method(owner, name, args, kwargs, __self.output_limit)
        elif isinstance(__obj, types.BuiltinMethodType) and isinstance(owner, int):
            if __obj.__name__ == "to_bytes":
                _int_size(_arg(args, kwargs, 0, "length", 1), __self.output_limit, "to_bytes() length")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str | bytes | list | tuple | dict | set | Namespace):
            check_size(result, __self.output_limit, f"result of {getattr(__obj, '__name__', 'a call')}()")
        return result

    def wrap_str_format(self, value: Any) -> Any:
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"
        limit = self.output_limit

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            formatter: _BoundedFormatter
            if isinstance(f_self, Markup):
                formatter = _BoundedEscapeFormatter(self, limit, escape=f_self.escape)
            else:
                formatter = _BoundedFormatter(self, limit)
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    # -- hooks called by the generated code --

    def rb_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _BUDGET.get()
        for item in iterable:
            if budget is not None:
                budget.step()
            yield item

    def rb_concat(self, parts: tuple[Any, ...]) -> str:
        size = 0
        for part in parts:
            size += measure(part, self.output_limit)
            if size > self.output_limit:
                raise _too_large("'~' concatenation", self.output_limit)
        return "".join(str(p) for p in parts)

    def rb_container(self, value: Any) -> Any:
        return check_size(value, self.output_limit, f"a {type(value).__name__} literal")

    def _finalize(self, value: Any) -> Any:
        return check_size(value, self.output_limit, "rendered value")

    # -- rendering --

    def budget(self) -> Any:
        """A context manager giving the code inside one render's step budget."""
        return _budget_scope(self.max_steps)

    def render_bounded(self, template: Any, context: Mapping[str, Any], limit: int | None = None) -> str:
        """``template`` rendered with ``context``, stopping as soon as the text passes ``limit``."""
        limit = self.output_limit if limit is None else limit
        out: list[str] = []
        size = 0
        with self.budget():
            for chunk in template.generate(**context):
                size += len(chunk)
                if size > limit:
                    raise _too_large("rendered text", limit)
                out.append(chunk)
        return "".join(out)


class _budget_scope:
    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.token: contextvars.Token[_Budget | None] | None = None

    def __enter__(self) -> None:
        self.token = _BUDGET.set(_Budget(self.steps))

    def __exit__(self, *exc: object) -> None:
        assert self.token is not None
        _BUDGET.reset(self.token)


__all__ = [
    "MAX_INT_BITS",
    "MAX_POSTMORTEM_CHARS",
    "MAX_RANGE",
    "MAX_STEPS",
    "MAX_VALUE_CHARS",
    "BoundedSandbox",
    "ExpressionError",
    "OutputTooLarge",
    "measure",
    "safe_percent",
]
