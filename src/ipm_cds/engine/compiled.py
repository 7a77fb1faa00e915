"""Patterns compiled to Python closures: the matcher of the python backend and of the missing-data search.

:mod:`match` interprets the IR test by test (it dispatches on the operator at every comparison and runs
a generator per pattern); that is the reference semantics, kept for explanations and as the oracle these
functions are tested against (``tests/test_hardening.py``). Here each test is turned once per program
into a small function with its operator, field and operand already chosen, each pattern into a loop over
its tests (those two in :mod:`.closures`), and each rule into nested loops over its patterns' facts (here).
No source text is generated and nothing is ``exec``-uted: a rule file's values only ever reach these
functions as data. Nothing here decides anything :mod:`match` does not:

* a comparison on an absent attribute is false (two-valued) or unknown (three-valued), ``neq`` included;
* distinct aliases bind distinct facts (only facts of the same type can be the same object);
* combinations come out in the order :func:`match.matches` yields them, with the unknown fields in the
  order it collects them (pattern by pattern; inside ``any_of``, every test of every branch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..model.facts.normalise import Fact
from ..ruleset import ir
from .closures import Check3, _pattern2, _pattern3, _positions
from .gates import AbsenceIndex, Gate, GateIndex, WaitIndex, fields_read, gates_of
from .match import Truth, Unknown

Bindings = dict[str, Fact]
ByType = Mapping[str, Sequence[Fact]]
MatchFn = Callable[[ByType], list[Bindings]]
MissingFn = Callable[[ByType], list[tuple[Bindings, list[Unknown]]]]
ExtendFn = Callable[[Fact, Mapping[str, Fact]], "tuple[Truth, list[Unknown]] | None"]


# -- rules: nested loops over the patterns' facts -----------------------------------------------------------------


def _same_type_earlier(patterns: Sequence[ir.Pattern]) -> tuple[tuple[int, ...], ...]:
    """For each pattern, the earlier patterns of its fact type: their facts are not its candidates."""
    return tuple(
        tuple(j for j in range(i) if patterns[j].fact_type == pattern.fact_type) for i, pattern in enumerate(patterns)
    )


Level = Callable[[Sequence[Sequence[Fact]], list[Fact], list[Bindings]], None]
Missing = tuple[Bindings, list[Unknown]]
Level3 = Callable[[Sequence[Sequence[Fact]], list[Fact], list["tuple[Truth, list[Unknown]]"], list[Missing]], None]
_L = TypeVar("_L")


def _chain(length: int, level: Callable[[int, _L | None], _L]) -> _L:
    """Levels ``0 .. length-1`` of a rule of many patterns, each calling the next; returns the first."""
    chain: _L | None = None
    for i in reversed(range(length)):
        chain = level(i, chain)
    assert chain is not None
    return chain


def _pools(by_type: ByType, types: Sequence[str]) -> list[Sequence[Fact]] | None:
    """The facts of each pattern's type; None when one has none (the rule then has no combination)."""
    pools = [by_type.get(t) or () for t in types]
    return pools if all(pools) else None


def _matcher(patterns: Sequence[ir.Pattern]) -> MatchFn:
    """Every true combination of distinct facts, in nested-loop order (two-valued). One, two and three
    patterns (most rules) have loops of their own; more are a chain of levels, one per pattern."""
    aliases = tuple(p.alias for p in patterns)
    types = tuple(p.fact_type for p in patterns)
    split = [_pattern2(p, _positions(aliases[:i])) for i, p in enumerate(patterns)]
    exclude = _same_type_earlier(patterns)
    if len(patterns) == 1:
        (alias,), (fact_type,), ((local, _),) = aliases, types, split

        def match_one(by_type: ByType) -> list[Bindings]:
            out: list[Bindings] = []
            facts = by_type.get(fact_type)
            if facts:
                for f in facts:
                    if local is None or local(f.values):
                        out.append({alias: f})
            return out

        return match_one
    if len(patterns) == 2:
        (a0, a1), (t0, t1), ((local0, _), (local1, join1)) = aliases, types, split
        distinct = bool(exclude[1])

        def match_two(by_type: ByType) -> list[Bindings]:
            out: list[Bindings] = []
            facts0 = by_type.get(t0)
            facts1 = by_type.get(t1)
            if not facts0 or not facts1:
                return out
            for f0 in facts0:
                if local0 is not None and not local0(f0.values):
                    continue
                env = (f0,)
                for f1 in facts1:
                    if distinct and f1 is f0:
                        continue
                    v1 = f1.values
                    if (local1 is None or local1(v1)) and (join1 is None or join1(v1, env)):
                        out.append({a0: f0, a1: f1})
            return out

        return match_two
    if len(patterns) == 3:
        (a0, a1, a2), (t0, t1, t2), ((local0, _), (local1, join1), (local2, join2)) = aliases, types, split
        distinct1, distinct2 = exclude[1], exclude[2]

        def match_three(by_type: ByType) -> list[Bindings]:
            out: list[Bindings] = []
            facts0 = by_type.get(t0)
            facts1 = by_type.get(t1)
            facts2 = by_type.get(t2)
            if not facts0 or not facts1 or not facts2:
                return out
            for f0 in facts0:
                if local0 is not None and not local0(f0.values):
                    continue
                env1 = (f0,)
                for f1 in facts1:
                    if distinct1 and f1 is f0:
                        continue
                    v1 = f1.values
                    if (local1 is not None and not local1(v1)) or (join1 is not None and not join1(v1, env1)):
                        continue
                    env2 = (f0, f1)
                    for f2 in facts2:
                        if distinct2 and any(f2 is env2[j] for j in distinct2):
                            continue
                        v2 = f2.values
                        if (local2 is None or local2(v2)) and (join2 is None or join2(v2, env2)):
                            out.append({a0: f0, a1: f1, a2: f2})
            return out

        return match_three

    def level(i: int, then: Level | None) -> Level:
        (local, join), earlier = split[i], exclude[i]

        def run(pools: Sequence[Sequence[Fact]], env: list[Fact], out: list[Bindings]) -> None:
            for f in pools[i]:
                if earlier and any(f is env[j] for j in earlier):
                    continue
                v = f.values
                if (local is not None and not local(v)) or (join is not None and not join(v, env)):
                    continue
                env.append(f)
                if then is None:
                    out.append(dict(zip(aliases, env, strict=True)))
                else:
                    then(pools, env, out)
                env.pop()

        return run

    first = _chain(len(patterns), level)

    def match_many(by_type: ByType) -> list[Bindings]:
        out: list[Bindings] = []
        pools = _pools(by_type, types)
        if pools is not None:
            first(pools, [], out)
        return out

    return match_many


def _missing_matcher(patterns: Sequence[ir.Pattern]) -> MissingFn:
    """Every combination that is neither true nor false, with its unknown fields (three-valued); the same
    shapes as :func:`_matcher`."""
    aliases = tuple(p.alias for p in patterns)
    types = tuple(p.fact_type for p in patterns)
    checks = tuple(_pattern3(p, _positions(aliases[:i])) for i, p in enumerate(patterns))
    exclude = _same_type_earlier(patterns)
    if len(patterns) == 1:
        (alias,), (fact_type,), (check,) = aliases, types, checks

        def missing_one(by_type: ByType) -> list[Missing]:
            out: list[Missing] = []
            facts = by_type.get(fact_type)
            if facts:
                for f in facts:
                    result = check(f, ())
                    if result is not None and result[0] is None:
                        out.append(({alias: f}, result[1]))
            return out

        return missing_one
    if len(patterns) == 2:
        (a0, a1), (t0, t1), (check0, check1) = aliases, types, checks
        distinct = bool(exclude[1])

        def missing_two(by_type: ByType) -> list[Missing]:
            out: list[Missing] = []
            facts0 = by_type.get(t0)
            facts1 = by_type.get(t1)
            if not facts0 or not facts1:
                return out
            for f0 in facts0:
                result0 = check0(f0, ())
                if result0 is None:
                    continue
                env = (f0,)
                for f1 in facts1:
                    if distinct and f1 is f0:
                        continue
                    result1 = check1(f1, env)
                    if result1 is not None and (result0[0] is None or result1[0] is None):
                        out.append(({a0: f0, a1: f1}, result0[1] + result1[1]))
            return out

        return missing_two
    if len(patterns) == 3:
        (a0, a1, a2), (t0, t1, t2), (check0, check1, check2) = aliases, types, checks
        distinct1, distinct2 = exclude[1], exclude[2]

        def missing_three(by_type: ByType) -> list[Missing]:
            out: list[Missing] = []
            facts0 = by_type.get(t0)
            facts1 = by_type.get(t1)
            facts2 = by_type.get(t2)
            if not facts0 or not facts1 or not facts2:
                return out
            for f0 in facts0:
                result0 = check0(f0, ())
                if result0 is None:
                    continue
                env1 = (f0,)
                for f1 in facts1:
                    if distinct1 and f1 is f0:
                        continue
                    result1 = check1(f1, env1)
                    if result1 is None:
                        continue
                    env2 = (f0, f1)
                    undecided = result0[0] is None or result1[0] is None
                    for f2 in facts2:
                        if distinct2 and any(f2 is env2[j] for j in distinct2):
                            continue
                        result2 = check2(f2, env2)
                        if result2 is not None and (undecided or result2[0] is None):
                            out.append(({a0: f0, a1: f1, a2: f2}, result0[1] + result1[1] + result2[1]))
            return out

        return missing_three

    def level(i: int, then: Level3 | None) -> Level3:
        check, earlier = checks[i], exclude[i]

        def run(
            pools: Sequence[Sequence[Fact]],
            env: list[Fact],
            results: list[tuple[Truth, list[Unknown]]],
            out: list[Missing],
        ) -> None:
            for f in pools[i]:
                if earlier and any(f is env[j] for j in earlier):
                    continue
                result = check(f, env)
                if result is None:
                    continue
                env.append(f)
                results.append(result)
                if then is not None:
                    then(pools, env, results, out)
                elif any(truth is None for truth, _ in results):
                    out.append((dict(zip(aliases, env, strict=True)), [u for _, found in results for u in found]))
                env.pop()
                results.pop()

        return run

    first = _chain(len(patterns), level)

    def missing_many(by_type: ByType) -> list[Missing]:
        out: list[Missing] = []
        pools = _pools(by_type, types)
        if pools is not None:
            first(pools, [], [], out)
        return out

    return missing_many


def selection_check(pattern: ir.Pattern) -> Check3:
    """One fact against a pattern that joins nothing (an aggregate's selection), three-valued: None when false,
    else (True or None, the unknown fields in order). ``env`` is unused: pass ``()``."""
    return _pattern3(pattern, {})


def _extender(pattern: ir.Pattern, bound_aliases: Sequence[str]) -> ExtendFn:
    """One fact against one unless clause, three-valued, its joins read from the rule's bindings."""
    refs = pattern.refs()
    joined = [alias for alias in bound_aliases if alias in refs]
    check = _pattern3(pattern, _positions(joined))

    def extend(fact: Fact, bindings: Mapping[str, Fact]) -> tuple[Truth, list[Unknown]] | None:
        return check(fact, [bindings[alias] for alias in joined])

    return extend


_K = TypeVar("_K")
_F = TypeVar("_F")


class _Lazy(dict[_K, _F]):
    """Functions built on first use: a ruleset has hundreds of rules, and a patient reaches only some."""

    def __init__(self, build: Callable[[_K], _F], keys: Iterable[_K]) -> None:
        super().__init__()
        self._build = build
        self._keys = frozenset(keys)

    def __missing__(self, key: _K) -> _F:
        if key not in self._keys:
            raise KeyError(key)  # a key the program does not have
        function = self._build(key)
        self[key] = function  # another thread may store an equal function first: either will do
        return function


class CompiledProgram:
    """The compiled matchers of one program, shared by every evaluation of it.

    ``match[exec rule name]``: every true combination of facts (two-valued); ``missing[rule ref]``: every
    undecided combination with its unknown fields (three-valued); ``extend[(rule id, unless index)]``: one
    fact against an unless clause, given the rule's bindings (three-valued). ``needs`` holds the fact types
    each rule and engine rule reads: when one has no fact, the rule has no combination at all; ``gates`` its
    tests of a field against constants (:mod:`.gates`): when no fact has an allowed value, it has none either.
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
        self.gates: dict[str, tuple[Gate, ...]] = {
            **{k: gates_of(ps) for k, ps in exec_rules.items()},
            **{k: gates_of(ps) for k, ps in rules.items()},
        }
        self.rule_refs: tuple[str, ...] = tuple(rules)
        self.rule_order: dict[str, int] = {ref: n for n, ref in enumerate(self.rule_refs)}
        self.rule_needs: tuple[frozenset[str], ...] = tuple(self.needs[ref] for ref in self.rule_refs)
        self.rule_gates = GateIndex.build([self.gates[ref] for ref in self.rule_refs])  # rules by position
        self.rule_fields = AbsenceIndex.build([fields_read(rules[ref]) for ref in self.rule_refs])  # (the same)
        self.rule_waits = WaitIndex.build(self.rule_fields, self.rule_gates)  # (both at once: the missing-data search)
        # the aliases of each rule's candidate patterns (the missing-data search records the candidates it leaves
        # undecided), by position
        self.rule_candidates: tuple[tuple[str, ...], ...] = tuple(
            tuple(p.alias for p in rules[ref] if p.fact_type == "candidate") for ref in self.rule_refs
        )
        self.match: dict[str, MatchFn] = _Lazy(lambda key: _matcher(exec_rules[key]), exec_rules)
        self.missing: dict[str, MissingFn] = _Lazy(lambda key: _missing_matcher(rules[key]), rules)
        self.extend: dict[tuple[str, int], ExtendFn] = _Lazy(lambda key: _extender(*blockers[key]), blockers)


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
