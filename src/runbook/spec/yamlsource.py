"""YAML loading that remembers where every value came from.

Lint errors must name ``FILE:LINE:COL``; pydantic only knows paths like ``steps.2.with.queue``. So
the loader composes the YAML node tree and records, for every path, the position of its value and of
its key. Duplicate mapping keys are errors (PyYAML silently keeps the last one).

Playbooks are input before any authentication (a file someone dropped in ``RUNBOOK_PLAYBOOKS``, a pull
request in CI), so loading is bounded before any work grows with it: the file is read only if it is a
regular file of at most :data:`MAX_BYTES` (never a FIFO or a device, which would block or never end),
and the YAML event stream is scanned *before* a node tree is composed. Anchors and aliases are refused
outright (a few hundred bytes of nested aliases expand to billions of nodes, and a cyclic alias has no
plain-data form); so are more than :data:`MAX_NODES` nodes or nesting deeper than :data:`MAX_DEPTH`. Each
refusal is a :class:`Problem` at ``FILE:LINE:COL``, never a hang or a traceback.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024  #: a playbook file larger than this is refused unread
MAX_NODES = 50_000  #: scalars, mappings and sequences in one playbook (the shipped ones have < 1,000)
MAX_DEPTH = 64  #: nesting of mappings and sequences (the composer and the checks recurse)


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


class UnreadableSource(Exception):
    """A playbook file that is not read at all (not a regular file, too large, not UTF-8, I/O error)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def read_source_text(path: str | Path, *, limit: int = MAX_BYTES) -> str:
    """The text of the playbook file at ``path``; :class:`UnreadableSource` (with a problem) otherwise.

    Opened non-blocking (a FIFO must not wait for a writer) and checked with ``fstat`` on the opened
    descriptor (no race with a swapped path): only a regular file of at most ``limit`` bytes is read,
    and never more than ``limit + 1`` bytes even if it grows meanwhile."""
    name = str(path)

    def refuse(message: str) -> UnreadableSource:
        return UnreadableSource(Problem(name, 1, 1, message))

    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        why = "no such file" if exc.errno == errno.ENOENT else (exc.strerror or type(exc).__name__)
        raise refuse(f"cannot read: {why}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refuse("cannot read: not a regular file (a FIFO, device or socket is never read)")
        if info.st_size > limit:
            raise refuse(f"file is {info.st_size} bytes, over the {limit} byte limit for a playbook")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise refuse(f"file is over the {limit} byte limit for a playbook")
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UnreadableSource(
            Problem(name, line, col, f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded")
        ) from None


def _event_problem(event: yaml.Event, file: str, message: str) -> Problem:
    mark = event.start_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(file, line, col, message)


def _structure_problems(events: Iterator[yaml.Event], file: str) -> list[Problem]:
    """Anchors, aliases, too many nodes or too deep, read from the event stream (linear in the text,
    nothing expanded). Stops at the first size problem; reports every anchor and the first use of each."""
    problems: list[Problem] = []
    nodes = depth = 0
    aliased: set[str] = set()
    for event in events:
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in aliased:  # one problem per anchor name is enough to find them
                continue
            aliased.add(str(event.anchor))
            problems.append(
                _event_problem(
                    event,
                    file,
                    f"YAML aliases (*{event.anchor}) are not allowed in playbooks; write the value out",
                )
            )
            continue
        if not isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            continue
        if event.anchor is not None:
            problems.append(
                _event_problem(
                    event,
                    file,
                    f"YAML anchors (&{event.anchor}) are not allowed in playbooks; write the value out",
                )
            )
        nodes += 1
        if nodes > MAX_NODES:
            problems.append(_event_problem(event, file, f"more than {MAX_NODES} YAML nodes in one playbook"))
            break
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                problems.append(_event_problem(event, file, f"YAML nested more than {MAX_DEPTH} levels deep"))
                break
        if len(problems) >= 20:
            break
    return problems


def load_source(text: str, file: str) -> Source:
    """Parse ``text``; syntax errors, anchors, aliases and oversize documents become problems (never
    exceptions, never a hang)."""
    src = Source(file=file, data=None)
    if len(text) > MAX_BYTES:
        src.problems.append(Problem(file, 1, 1, f"playbook is over the {MAX_BYTES} byte limit"))
        return src
    try:
        refused = _structure_problems(yaml.parse(text, Loader=_Loader), file)
        if refused:
            src.problems.extend(refused)
            return src
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        src.problems.append(Problem(file, line, col, f"YAML syntax error: {exc.problem or exc}"))
        return src
    except yaml.YAMLError as exc:
        src.problems.append(Problem(file, 1, 1, f"YAML error: {exc}"))
        return src
    except RecursionError:  # not reachable with the depth cap; kept so nothing escapes as a traceback
        src.problems.append(Problem(file, 1, 1, "YAML nested too deeply"))
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
        return _Loader(" ").construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        src.problems.append(Problem(src.file, *_pos(node), f"bad value: {exc}"))
        return node.value


def strings_in(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    """Every string inside plain YAML data, with its path (for checks on templates and literals)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings_in(v, (*path, i))
