"""YAML loading that remembers where every value came from.

Lint errors must name ``FILE:LINE:COL``; pydantic only knows paths like ``steps.2.with.queue``. So
the loader composes the YAML node tree and records, for every path, the position of its value and of
its key. Duplicate mapping keys are errors (PyYAML silently keeps the last one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class Problem:
    """One thing wrong with a playbook, at a place in its file."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


@dataclass
class Source:
    """A loaded YAML document: the plain data plus positions for every path."""

    file: str
    data: Any
    values: dict[Path_, Mark] = field(default_factory=dict)
    keys: dict[Path_, Mark] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def mark(self, path: Path_, *, key: bool = False) -> Mark:
        """Best position for ``path``: exact if known, else the nearest known ancestor."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if not key and p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Mark(1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        m = self.mark(path, key=key)
        return Problem(self.file, m.line, m.col, message)


class _Loader(yaml.SafeLoader):
    pass


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def load_source(text: str, file: str) -> Source:
    """Parse ``text``; syntax errors become problems (never exceptions)."""
    src = Source(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        src.problems.append(Problem(file, line, col, f"YAML syntax error: {exc.problem or exc}"))
        return src
    except yaml.YAMLError as exc:
        src.problems.append(Problem(file, 1, 1, f"YAML error: {exc}"))
        return src
    if node is None:
        src.problems.append(Problem(file, 1, 1, "empty playbook"))
        return src
    src.data = _convert(node, (), src)
    return src


def _convert(node: yaml.Node, path: Path_, src: Source) -> Any:
    src.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                src.problems.append(
                    Problem(src.file, *_pos(key_node), "YAML merge keys (<<) are not supported")
                )
                continue
            key = _scalar(key_node, src)
            if isinstance(key, list | dict):
                src.problems.append(Problem(src.file, *_pos(key_node), "mapping keys must be plain scalars"))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if key in out:
                src.problems.append(Problem(src.file, *_pos(key_node), f"duplicate key '{key}'"))
            src.keys[child] = _mark(key_node)
            out[key] = _convert(value_node, child, src)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), src) for i, item in enumerate(node.value)]
    return _scalar(node, src)


def _pos(node: yaml.Node) -> tuple[int, int]:
    m = _mark(node)
    return m.line, m.col


def _scalar(node: yaml.Node, src: Source) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return [] if isinstance(node, yaml.SequenceNode) else {}
    try:
        return _Loader(" ").construct_object(node, deep=True)  # type: ignore[no-untyped-call]
    except yaml.YAMLError as exc:
        src.problems.append(Problem(src.file, *_pos(node), f"bad value: {exc}"))
        return node.value
