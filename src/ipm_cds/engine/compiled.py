"""Patterns compiled to straight-line Python: the matcher of the python backend and of the missing-data search.

:mod:`match` interprets the IR test by test (one function call per comparison, a generator per pattern);
that is the reference semantics, kept for explanations and as the oracle these functions are tested
against (``tests/test_hardening.py``). Here the same semantics are generated as Python source, one
function per rule, with the loops over facts nested and every comparison inlined, and compiled once per
program. Nothing here decides anything :mod:`match` does not:

* a comparison on an absent attribute is false (two-valued) or unknown (three-valued), ``neq`` included;
* distinct aliases bind distinct facts (only facts of the same type can be the same object);
* combinations come out in the order :func:`match.matches` yields them, with the unknown fields in the
  order it collects them (pattern by pattern; inside ``any_of``, every test of every branch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..facts.normalise import Fact
from ..ruleset import ir
from .match import Truth, Unknown

Bindings = dict[str, Fact]
ByType = Mapping[str, Sequence[Fact]]
MatchFn = Callable[[ByType], list[Bindings]]
MissingFn = Callable[[ByType], list[tuple[Bindings, list[Unknown]]]]
ExtendFn = Callable[[Fact, Mapping[str, Fact]], "tuple[Truth, list[Unknown]] | None"]

_SYMBOL = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_SMALL_IN = 4  # up to this many values, ``in`` is a chain of ==; above, a frozenset lookup (same result)


class _Source:
    """Generated source text and the constants it refers to by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, object] = {}
        self._by_id: dict[tuple[type, object], str] = {}

    def const(self, value: object) -> str:
        key = (type(value), value)
        name = self._by_id.get(key)
        if name is None:
            name = f"K{len(self.constants)}"
            self.constants[name] = value
            self._by_id[key] = name
        return name

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


def _compare(src: _Source, op: str, left: str, operand: ir.Operand, right: str | None) -> str:
    """A Python expression for ``left <op> operand`` (``right`` names the joined value, if any)."""
    if right is not None:
        return f"{left} {_SYMBOL[op]} {right}"
    if op in ("in", "not_in"):
        assert isinstance(operand, tuple)
        if len(operand) <= _SMALL_IN:
            if op == "in":
                return "(" + " or ".join(f"{left} == {src.const(v)}" for v in operand) + ")"
            return "(" + " and ".join(f"{left} != {src.const(v)}" for v in operand) + ")"
        return f"{left} {'in' if op == 'in' else 'not in'} {src.const(frozenset(operand))}"
    assert not isinstance(operand, ir.Param | ir.Ref), "parameters are bound before matching"
    return f"{left} {_SYMBOL[op]} {src.const(operand)}"


def _test2(src: _Source, test: ir.Test, values: str, aliases: Mapping[str, str]) -> str:
    """Two-valued test as one expression (absent attribute: false)."""
    get = f"{values}.get({test.field!r})"
    if test.op == "present":
        return f"{get} is not None"
    if test.op == "absent":
        return f"{get} is None"
    operand = test.operand
    if isinstance(operand, ir.Ref):
        other = f"{aliases[operand.alias]}.get({operand.field!r})"
        return f"((x := {get}) is not None and (y := {other}) is not None and {_compare(src, test.op, 'x', None, 'y')})"
    return f"((x := {get}) is not None and {_compare(src, test.op, 'x', operand, None)})"


def _node2(src: _Source, node: ir.Node, values: str, aliases: Mapping[str, str]) -> str:
    if isinstance(node, ir.AnyOf):
        branches = ["(" + " and ".join(_test2(src, t, values, aliases) for t in b) + ")" for b in node.branches]
        return "(" + " or ".join(branches) + ")"
    return _test2(src, node, values, aliases)


def _test3(
    src: _Source,
    depth: int,
    test: ir.Test,
    fact: str,
    values: str,
    facts: Mapping[str, str],
    sink: str,
    on_unknown: str,
    on_false: str,
) -> None:
    """Three-valued test as statements: an absent attribute appends an Unknown to ``sink`` and runs
    ``on_unknown``; a false comparison runs ``on_false``."""
    src.emit(depth, f"x = {values}.get({test.field!r})")
    if test.op == "absent":
        src.emit(depth, "if x is not None:")
        src.emit(depth + 1, on_false)
        return
    src.emit(depth, "if x is None:")
    src.emit(depth + 1, f"{sink}.append(Unknown({fact}, {test.field!r}))")
    src.emit(depth + 1, on_unknown)
    if test.op == "present":
        return
    operand = test.operand
    if isinstance(operand, ir.Ref):
        other = facts[operand.alias]
        src.emit(depth, "else:")
        src.emit(depth + 1, f"y = {other}.values.get({operand.field!r})")
        src.emit(depth + 1, "if y is None:")
        src.emit(depth + 2, f"{sink}.append(Unknown({other}, {operand.field!r}))")
        src.emit(depth + 2, on_unknown)
        src.emit(depth + 1, f"elif not ({_compare(src, test.op, 'x', None, 'y')}):")
        src.emit(depth + 2, on_false)
        return
    src.emit(depth, f"elif not ({_compare(src, test.op, 'x', operand, None)}):")
    src.emit(depth + 1, on_false)


def _pattern3(
    src: _Source, depth: int, pattern: ir.Pattern, fact: str, facts: Mapping[str, str], truth: str, sink: str, fail: str
) -> None:
    """Three-valued pattern as statements: ``fail`` when false; else ``truth`` is True or None and ``sink``
    holds the unknown fields (as :func:`match.eval_pattern` collects them)."""
    values = f"{fact}.values"
    src.emit(depth, f"{sink} = []")
    src.emit(depth, f"{truth} = True")
    for node in pattern.tests:
        if isinstance(node, ir.Test):
            _test3(src, depth, node, fact, values, facts, sink, f"{truth} = None", fail)
            continue
        # any_of: every test of every branch is evaluated (their unknowns are collected); the node is true
        # when a branch is true, false when every branch is false, unknown otherwise.
        src.emit(depth, "bu = []")
        src.emit(depth, "any_true = False")
        src.emit(depth, "all_false = True")
        for branch in node.branches:
            src.emit(depth, "bf = bn = False")
            for test in branch:
                _test3(src, depth, test, fact, values, facts, "bu", "bn = True", "bf = True")
            src.emit(depth, "if not bf:")
            src.emit(depth + 1, "all_false = False")
            src.emit(depth + 1, "if not bn:")
            src.emit(depth + 2, "any_true = True")
        src.emit(depth, "if not any_true:")
        src.emit(depth + 1, "if all_false:")
        src.emit(depth + 2, fail)
        src.emit(depth + 1, f"{truth} = None")
        src.emit(depth + 1, f"{sink}.extend(bu)")


def _loops(
    src: _Source, patterns: Sequence[ir.Pattern], name: str, *, three_valued: bool
) -> tuple[int, dict[str, str]]:
    """Function header and nested loops over the patterns' facts; returns the innermost depth."""
    src.emit(0, f"def {name}(T):")
    src.emit(1, "out = []")
    for i, pattern in enumerate(patterns):
        src.emit(1, f"L{i} = T.get({pattern.fact_type!r})")
        src.emit(1, f"if not L{i}:")
        src.emit(2, "return out")
    facts: dict[str, str] = {}
    depth = 1
    for i, pattern in enumerate(patterns):
        src.emit(depth, f"for f{i} in L{i}:")
        depth += 1
        for j, earlier in enumerate(patterns[:i]):
            if earlier.fact_type == pattern.fact_type:
                src.emit(depth, f"if f{i} is f{j}:")
                src.emit(depth + 1, "continue")
        if three_valued:
            _pattern3(src, depth, pattern, f"f{i}", facts, f"t{i}", f"U{i}", "continue")
        else:
            src.emit(depth, f"v{i} = f{i}.values")
            aliases = {p.alias: f"v{j}" for j, p in enumerate(patterns[:i])}
            for node in pattern.tests:
                src.emit(depth, f"if not {_node2(src, node, f'v{i}', aliases)}:")
                src.emit(depth + 1, "continue")
        facts[pattern.alias] = f"f{i}"
    return depth, facts


def _bindings(patterns: Sequence[ir.Pattern]) -> str:
    return "{" + ", ".join(f"{p.alias!r}: f{i}" for i, p in enumerate(patterns)) + "}"


def _match_source(src: _Source, name: str, patterns: Sequence[ir.Pattern]) -> None:
    depth, _ = _loops(src, patterns, name, three_valued=False)
    src.emit(depth, f"out.append({_bindings(patterns)})")
    src.emit(1, "return out")


def _missing_source(src: _Source, name: str, patterns: Sequence[ir.Pattern]) -> None:
    depth, _ = _loops(src, patterns, name, three_valued=True)
    undecided = " or ".join(f"t{i} is None" for i in range(len(patterns)))
    src.emit(depth, f"if {undecided}:")
    src.emit(depth + 1, f"out.append(({_bindings(patterns)}, {' + '.join(f'U{i}' for i in range(len(patterns)))}))")
    src.emit(1, "return out")


def _extend_source(src: _Source, name: str, pattern: ir.Pattern, bound_aliases: Sequence[str]) -> None:
    """One fact against one pattern, three-valued, joins resolved against ``B`` (the rule's bindings)."""
    src.emit(0, f"def {name}(f, B):")
    facts = {}
    for i, alias in enumerate(bound_aliases):
        if alias in pattern.refs():
            src.emit(1, f"b{i} = B[{alias!r}]")
            facts[alias] = f"b{i}"
    _pattern3(src, 1, pattern, "f", facts, "t", "U", "return None")
    src.emit(1, "return t, U")


def _build(source: _Source, name: str) -> Any:
    namespace: dict[str, Any] = {"Unknown": Unknown, **source.constants}
    exec(compile("\n".join(source.lines) + "\n", f"<ipm_cds rule {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


_K = TypeVar("_K")
_F = TypeVar("_F")


class _Lazy(dict[_K, _F]):
    """Functions generated on first use: a ruleset has hundreds of rules, and a patient reaches only some.
    (Compiling every rule up front took 100 ms for the bundled ruleset; one rule takes well under 1 ms.)"""

    def __init__(self, generate: Callable[[_K, str], _Source], prefix: str, keys: Iterable[_K]) -> None:
        super().__init__()
        self._generate = generate
        self._names = {key: f"{prefix}_{n}" for n, key in enumerate(keys)}

    def __missing__(self, key: _K) -> _F:
        name = self._names[key]  # KeyError for a key the program does not have
        function: _F = _build(self._generate(key, name), name)
        self[key] = function  # another thread may store an equal function first: either will do
        return function


class CompiledProgram:
    """The compiled matchers of one program, shared by every evaluation of it.

    ``match[exec rule name]``: every true combination of facts (two-valued); ``missing[rule ref]``: every
    undecided combination with its unknown fields (three-valued); ``extend[(rule id, unless index)]``: one
    fact against an unless clause, given the rule's bindings (three-valued). ``needs`` holds the fact types
    each rule and engine rule reads: when one has no fact, the rule has no combination at all.
    """

    def __init__(
        self,
        exec_rules: Mapping[str, Sequence[ir.Pattern]],
        rules: Mapping[str, Sequence[ir.Pattern]],
        blockers: Mapping[tuple[str, int], tuple[ir.Pattern, Sequence[str]]],
    ) -> None:
        self.needs: dict[str, frozenset[str]] = {
            **{k: frozenset(p.fact_type for p in ps) for k, ps in exec_rules.items()},
            **{k: frozenset(p.fact_type for p in ps) for k, ps in rules.items()},
        }
        self.rule_refs: tuple[str, ...] = tuple(rules)
        self.rule_order: dict[str, int] = {ref: n for n, ref in enumerate(self.rule_refs)}
        # the rules grouped by the fact types they read, in program order within a group
        groups: dict[frozenset[str], list[str]] = {}
        for ref in self.rule_refs:
            groups.setdefault(self.needs[ref], []).append(ref)
        self.rules_by_needs: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = tuple(
            (needs, tuple(group)) for needs, group in groups.items()
        )
        self.match: dict[str, MatchFn] = _Lazy(
            lambda key, name: _generated(_match_source, name, exec_rules[key]), "match", exec_rules
        )
        self.missing: dict[str, MissingFn] = _Lazy(
            lambda key, name: _generated(_missing_source, name, rules[key]), "missing", rules
        )
        self.extend: dict[tuple[str, int], ExtendFn] = _Lazy(
            lambda key, name: _generated(_extend_source, name, *blockers[key]), "extend", blockers
        )


def _generated(generate: Callable[..., None], name: str, *args: Any) -> _Source:
    src = _Source()
    generate(src, name, *args)
    return src


_BUILD_LOCK = threading.Lock()


def compile_program(program: Any) -> CompiledProgram:
    """The compiled matchers of ``program`` (a :class:`~ipm_cds.engine.program.Program`), built once."""
    cache: dict[str, Any] = program.cache
    compiled = cache.get("compiled")
    if compiled is None:
        with _BUILD_LOCK:
            compiled = cache.get("compiled")
            if compiled is None:
                compiled = CompiledProgram(
                    {er.name: er.patterns for s in program.strata for er in s.rules},
                    {r.ref: r.patterns for r in program.rules},
                    {
                        (r.id, b.index): (b.pattern, [p.alias for p in r.patterns])
                        for r in program.rules
                        for b in r.blockers
                    },
                )
                cache["compiled"] = compiled
    assert isinstance(compiled, CompiledProgram)
    return compiled
