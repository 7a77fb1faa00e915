"""Safe YAML reading that remembers where every value came from.

PyYAML composes the node graph (it keeps line and column marks); we construct plain Python data from
it ourselves so that we control every hostile case: no object-constructing or custom tags, no
duplicate keys, a bounded document size, bounded nesting, and bounded alias expansion (a "billion
laughs" document is refused before it is expanded). Positions are kept in a :class:`Positions` map
from a path (a tuple of keys and indices) to the 1-based line and column of that value or key.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem, RulesetError, SourceLocation

MAX_DOCUMENT_BYTES = 2_000_000
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000

_SAFE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

Path_ = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each value (and each mapping key) of a document stands in its file."""

    file: str
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    # prefix length -> (sizes when built, paths of values and of keys grouped by their first elements):
    # sub() is called once per rule, and scanning every path each time made loading quadratic in rules per file
    _groups: dict[int, tuple[tuple[int, int], dict[Path_, list[Path_]], dict[Path_, list[Path_]]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def at(self, path: Path_, *, key: bool = False) -> SourceLocation:
        """The location of ``path``; the nearest enclosing value when ``path`` itself is absent."""
        table = self.keys if key else self.values
        probe = tuple(path)
        if key and probe in self.keys:
            line, col = self.keys[probe]
            return SourceLocation(self.file, line, col)
        while probe not in self.values and probe:
            probe = probe[:-1]
        line, col = (table if probe in table else self.values).get(probe, (1, 1))
        return SourceLocation(self.file, line, col)

    def sub(self, prefix: Path_) -> Positions:
        """Positions relative to ``prefix`` (for validating one item of a list on its own)."""
        n = len(prefix)
        sizes = (len(self.values), len(self.keys))
        groups = self._groups.get(n)
        if groups is None or groups[0] != sizes:
            by_values: dict[Path_, list[Path_]] = {}
            by_keys: dict[Path_, list[Path_]] = {}
            for p in self.values:
                by_values.setdefault(p[:n], []).append(p)
            for p in self.keys:
                by_keys.setdefault(p[:n], []).append(p)
            groups = (sizes, by_values, by_keys)
            self._groups[n] = groups
        prefix = tuple(prefix)
        out = Positions(self.file)
        out.values = {p[n:]: self.values[p] for p in groups[1].get(prefix, ())}
        out.keys = {p[n:]: self.keys[p] for p in groups[2].get(prefix, ())}
        return out


class _Reader:
    def __init__(self, file: str) -> None:
        self.positions = Positions(file)
        self.file = file
        self.expanded = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def loc(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def fail(self, node: yaml.Node, message: str, hint: str | None = None) -> RulesetError:
        line, col = self.loc(node)
        return RulesetError([Problem(message, SourceLocation(self.file, line, col), hint=hint)])

    def build(self, node: yaml.Node, path: Path_, depth: int, active: frozenset[int]) -> Any:
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_NODES:
            raise self.fail(
                node,
                f"document expands to more than {MAX_EXPANDED_NODES} values",
                "remove repeated aliases (a YAML alias bomb?)",
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels", "flatten the document")
        if node.tag not in _SAFE_TAGS:
            raise self.fail(
                node, f"tag {node.tag!r} is not allowed in rule files", "rule files hold plain data: remove the tag"
            )
        if id(node) in active:
            raise self.fail(node, "recursive alias", "an anchor cannot contain an alias to itself")
        self.positions.values.setdefault(path, self.loc(node))
        if isinstance(node, yaml.MappingNode):
            inner = active | {id(node)}
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(key_node, "merge keys ('<<') are not allowed", "write the keys out")
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                    raise self.fail(key_node, "mapping keys must be plain strings", "quote the key")
                key = key_node.value
                if key in result:
                    line, col = self.positions.keys[(*path, key)]
                    raise self.fail(
                        key_node, f"duplicate key {key!r} (first at line {line}, column {col})", "remove one of them"
                    )
                self.positions.keys[(*path, key)] = self.loc(key_node)
                result[key] = self.build(value_node, (*path, key), depth + 1, inner)
            return result
        if isinstance(node, yaml.SequenceNode):
            inner = active | {id(node)}
            return [self.build(item, (*path, i), depth + 1, inner) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node)

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            raise self.fail(node, f"bad scalar {node.value!r}: {exc}") from None
        if isinstance(value, _dt.datetime):
            raise self.fail(node, "timestamps are not allowed; write a date as YYYY-MM-DD")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, "NaN and infinities are not allowed")
        return value


def read_text(path: Path) -> str:
    """Read a rule file as UTF-8 text, bounded in size, with a clear error for anything else."""
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RulesetError([Problem(f"cannot read file: {exc.strerror}", SourceLocation(name, 1, 1))]) from None
    if size > MAX_DOCUMENT_BYTES:
        raise RulesetError(
            [
                Problem(
                    f"file is {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
                    SourceLocation(name, 1, 1),
                    hint="split it into several files",
                )
            ]
        )
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RulesetError(
            [Problem("file is not valid UTF-8", SourceLocation(name, line, col), hint="save it as UTF-8")]
        ) from None


def _too_deep(file: str, mark: Any) -> RulesetError:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return RulesetError(
        [
            Problem(
                f"nesting deeper than {MAX_DEPTH} levels", SourceLocation(file, line, col), hint="flatten the document"
            )
        ]
    )


_SYMBOLS = {">=": "gte", "=>": "gte", "<=": "lte", "=<": "lte", ">": "gt", "<": "lt", "==": "eq", "!=": "neq"}


def _line(text: str, mark: Any) -> str:
    lines = text.splitlines()
    return lines[mark.line] if mark is not None and 0 <= mark.line < len(lines) else ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def plain_syntax_error(text: str, exc: yaml.MarkedYAMLError) -> tuple[str, str | None, Any]:
    """What a YAML parser error means to a rule author, in plain words, and what to do about it.

    The parser's own wording is kept only for errors this does not recognise. Returns the message, the
    hint and the mark (line and column) to report.
    """
    problem = (exc.problem or "").strip()
    context = (exc.context or "").strip()
    mark, opened = exc.problem_mark or exc.context_mark, exc.context_mark
    here = _line(text, mark)
    at = here[mark.column :] if mark is not None else ""
    where_opened = f" (opened at line {opened.line + 1}, column {opened.column + 1})" if opened is not None else ""
    if problem.startswith("found character") and ("\\t" in problem or "\t" in problem):
        return (
            "a tab character is used for indentation",
            "YAML indents with spaces only: replace the tab by spaces",
            mark,
        )
    symbol = next((s for s in sorted(_SYMBOLS, key=len, reverse=True) if at.startswith(s)), None)
    if symbol is None and "chomping or indentation indicators" in problem and mark is not None:
        before = here[max(0, mark.column - 1) : mark.column + 1]
        symbol = next((s for s in sorted(_SYMBOLS, key=len, reverse=True) if before.startswith(s)), None)
    if symbol is None and context == "while scanning a block scalar" and opened is not None:
        block = _line(text, opened)[opened.column :]  # '>' or '|' opened a block scalar: was it '> 12'?
        symbol = next((s for s in sorted(_SYMBOLS, key=len, reverse=True) if block.startswith(s)), None)
        if symbol is not None:
            mark = opened
    if symbol is not None and ("cannot start any token" in problem or "block scalar" in context):
        word = _SYMBOLS[symbol]
        return f"{symbol!r} is not an operator", f"operators are words: write {word}, e.g. {{{word}: 12}}", mark
    if problem.startswith("found character") and "cannot start any token" in problem:
        char = problem.split("'")[1] if problem.count("'") >= 2 else "this character"
        return f"a plain value cannot start with '{char}'", "quote the value", mark
    if problem == "mapping values are not allowed here":
        if ":" in here[: mark.column if mark is not None else 0].lstrip(" -"):
            # an earlier key on the same line: the value itself holds ': '
            return (
                "a value contains a colon followed by a space",
                'quote the value, e.g. title: "Physical therapy: exercise"',
                mark,
            )
        return (
            "a mapping key is indented differently from its siblings, or the line above is missing its ':'",
            "align the key with the keys above it; every key is followed by ':'",
            mark,
        )
    if problem.startswith("expected <block end>"):
        found = problem.split("but found", 1)[-1].strip()
        if found == "'-'":
            return (
                "a list item ('- ') where a mapping key is expected",
                "indent the list under its key, or write the key before it",
                mark,
            )
        if found == "'?'":
            return (
                "a mapping key among the items of a list",
                "start it with '- ' to make it an item, or indent it under an item",
                mark,
            )
        if found == "'<scalar>'":
            return (
                "text follows a value on the same line",
                "quote a value that starts with '{' or '[' or '\"', or remove the text after it",
                mark,
            )
        return (
            "a mapping key is indented differently from its siblings",
            "align it with the keys of its mapping, using the same number of spaces",
            mark,
        )
    if problem.startswith("expected ',' or '}'"):
        return (
            f"a {{...}} mapping is not closed, or two of its entries have no ',' between them{where_opened}",
            "close it with '}' and separate entries with ', '",
            mark,
        )
    if problem.startswith("expected ',' or ']'"):
        return (
            f"a [...] list is not closed, or two of its items have no ',' between them{where_opened}",
            "close it with ']' and separate items with ', '",
            mark,
        )
    if "quoted scalar" in context:
        return f"a quoted value is not closed{where_opened}", "close the quote on the same value", mark
    if problem.startswith("found undefined alias"):
        name = problem.split("'")[1] if problem.count("'") >= 2 else ""
        return f"*{name} refers to no anchor &{name}", "quote a value that starts with '*'", mark
    if "could not find expected ':'" in problem:
        return "a key is missing its ':'", "write key: value", mark
    if "<stream end>" in problem:
        return "the file ends before a value is complete", "close every '[', '{' and quote", mark
    return problem or context or "the file is not valid YAML", None, mark


def load_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document into plain data and its positions. Raises :class:`RulesetError`."""
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise RulesetError(
            [
                Problem(
                    f"document is over the {MAX_DOCUMENT_BYTES}-byte limit",
                    SourceLocation(file, 1, 1),
                    hint="split it into several files",
                )
            ]
        )
    try:
        try:
            nodes = list(yaml.compose_all(text, Loader=_FAST_LOADER))
        except yaml.YAMLError as exc:
            if "nesting depth" in str(getattr(exc, "problem", "")):
                raise _too_deep(file, getattr(exc, "problem_mark", None)) from None  # libyaml's own bound (1000)
            # Re-parse with the pure-Python loader: its messages and positions are the ones we report.
            nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except RecursionError:
        # The pure-Python composer recurses once per level: a few thousand levels (a few kB) exhaust the stack.
        raise _too_deep(file, None) from None
    except yaml.MarkedYAMLError as exc:
        message, hint, mark = plain_syntax_error(text, exc)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise RulesetError(
            [Problem(f"YAML syntax error: {message}", SourceLocation(file, line, col), hint=hint)]
        ) from None
    except yaml.YAMLError as exc:
        raise RulesetError([Problem(f"YAML error: {exc}", SourceLocation(file, 1, 1))]) from None
    reader = _Reader(file)
    if not nodes:
        return None, reader.positions
    if len(nodes) > 1:
        line, col = reader.loc(nodes[1])
        raise RulesetError(
            [
                Problem(
                    "more than one YAML document in the file",
                    SourceLocation(file, line, col),
                    hint="keep one document per file",
                )
            ]
        )
    return reader.build(nodes[0], (), 0, frozenset()), reader.positions


def load_yaml_file(path: Path, display: str | None = None) -> tuple[Any, Positions]:
    return load_yaml(read_text(path), display or str(path))
