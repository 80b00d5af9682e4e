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
from collections.abc import Iterable, Iterator, Mapping
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

from runbook.core.sizes import (
    BINOP_CHECKS,
    MAX_INT_BITS,
    MAX_POSTMORTEM_CHARS,
    MAX_RANGE,
    MAX_STEPS,
    MAX_VALUE_CHARS,
    ExpressionError,
    OutputTooLarge,
    arg_of,
    check_size,
    check_string_method,
    filter_precheck,
    int_size,
    measure,
    too_large,
)

__all__ = [
    "MAX_POSTMORTEM_CHARS",
    "MAX_VALUE_CHARS",
    "BoundedSandbox",
    "ExpressionError",
    "OutputTooLarge",
    "check_size",
]

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
            raise too_large(f"format width {digits[:12]}...", limit)
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
            raise too_large(what, self.limit)

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
                    raise too_large("'*' width in %-formatting", limit)
                if group:
                    widths += _spec_width(group, limit)
        if widths > limit:
            raise too_large("%-format widths", limit)
        check_size(values, limit, "values of %-formatting")
        result = fmt % values
        return check_size(result, limit, "%-formatting result")
    return fmt % values


# --- filters -------------------------------------------------------------------------------------


def _bounded_filter(name: str, func: Any, env: BoundedSandbox) -> Any:
    if getattr(func, "_rb_bounded", False):
        return func
    leading = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        head, tail = args[:leading], args[leading:]
        tail, kwargs = filter_precheck(name, tuple(tail), kwargs, env.output_limit)
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
        check = BINOP_CHECKS.get(operator)
        if check is not None:
            check(left, right, limit)
        return super().call_binop(context, operator, left, right)

    # -- calls --

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step(CALL_WEIGHT)
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", None)
        if isinstance(owner, str | bytes | bytearray) and isinstance(name, str):  # str, Markup, bytes
            args, kwargs = check_string_method(owner, name, args, kwargs, __self.output_limit)
        elif isinstance(__obj, types.BuiltinMethodType) and isinstance(owner, int):
            if __obj.__name__ == "to_bytes":
                int_size(arg_of(args, kwargs, 0, "length", 1), __self.output_limit, "to_bytes() length")
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
                raise too_large("'~' concatenation", self.output_limit)
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
                    raise too_large("rendered text", limit)
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
