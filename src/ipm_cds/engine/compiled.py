"""Patterns compiled to Python closures: the matcher of the python backend and of the missing-data search.

:mod:`match` interprets the IR test by test (it dispatches on the operator at every comparison and runs
a generator per pattern); that is the reference semantics, kept for explanations and as the oracle these
functions are tested against (``tests/test_hardening.py``). Here each test is turned once per program
into a small function with its operator, field and operand already chosen, each pattern into a loop over
its tests, and each rule into nested loops over its patterns' facts. No source text is generated and
nothing is ``exec``-uted: a rule file's values only ever reach these functions as data. Nothing here
decides anything :mod:`match` does not:

* a comparison on an absent attribute is false (two-valued) or unknown (three-valued), ``neq`` included;
* distinct aliases bind distinct facts (only facts of the same type can be the same object);
* combinations come out in the order :func:`match.matches` yields them, with the unknown fields in the
  order it collects them (pattern by pattern; inside ``any_of``, every test of every branch).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from ..model.facts.normalise import Fact, Scalar
from ..ruleset import ir
from .match import Truth, Unknown

Bindings = dict[str, Fact]
ByType = Mapping[str, Sequence[Fact]]
MatchFn = Callable[[ByType], list[Bindings]]
MissingFn = Callable[[ByType], list[tuple[Bindings, list[Unknown]]]]
ExtendFn = Callable[[Fact, Mapping[str, Fact]], "tuple[Truth, list[Unknown]] | None"]

Values = Mapping[str, Scalar]
Env = Sequence[Fact]  # the facts bound to the rule's earlier patterns, by position: what joins read
Check2 = Callable[[Values, Env], bool]  # a test or pattern, two-valued, on one fact's values
Step3 = Callable[[Fact, Values, Env, list[Unknown]], Truth]  # a test or any_of, three-valued
Check3 = Callable[[Fact, Env], "tuple[Truth, list[Unknown]] | None"]  # a pattern, three-valued (None: false)

# ``x <op> y`` for a joined value y
_BINARY: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}
# ``x <op> c`` for a constant c, written ``c <flipped op> x`` so that ``partial(flipped, c)`` takes x alone
_FLIPPED: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.gt,
    "lte": operator.ge,
    "gt": operator.lt,
    "gte": operator.le,
}


def _predicate(op: str, operand: ir.Operand) -> Callable[[Scalar], bool]:
    """``x <op> operand`` as a function of x (x is never None here)."""
    if op in ("in", "not_in"):
        # Equality, as match._compare's chain of ==: the values are scalars, whose hashes agree with ==.
        assert isinstance(operand, tuple)
        values = frozenset(operand)
        if op == "in":
            return values.__contains__
        return lambda x: x not in values
    return partial(_FLIPPED[op], _scalar(operand))


def _scalar(operand: ir.Operand) -> Scalar:
    """A comparison's constant (parameters are bound before matching; joins and sets are handled apart)."""
    assert not isinstance(operand, ir.Param | ir.Ref | tuple) and operand is not None
    return operand


def _positions(aliases: Iterable[str]) -> dict[str, int]:
    return {alias: n for n, alias in enumerate(aliases)}


# -- two-valued: an absent attribute makes a comparison false ----------------------------------------------------
#
# Two-valued tests have no side effect, so their order within a pattern does not change its result: the
# tests that read only the pattern's own fact ("local"; equalities first, then set membership, then the
# rest) run before those that join facts bound before it.

Local2 = Callable[[Values], bool]


def _constant_tests(tests: Sequence[ir.Test]) -> tuple[tuple[str, Callable[[Scalar], bool] | None], ...]:
    """(field, predicate) per test; a None predicate: the value only has to be present."""
    return tuple((t.field, None if t.op == "present" else _predicate(t.op, t.operand)) for t in tests)


def _is_constant(node: ir.Node) -> bool:
    return isinstance(node, ir.Test) and node.op != "absent" and not isinstance(node.operand, ir.Ref)


def _local2(nodes: Sequence[ir.Node]) -> Local2 | None:
    """The conjunction of tests that read only the fact's own values; None when there are none.

    ``eq`` and ``in`` need no test for absence: an absent value (None) equals no constant and is in no set
    of them (the values are scalars, never NaN: rule files and patients refuse it)."""
    if not nodes:
        return None
    tests = [n for n in nodes if isinstance(n, ir.Test) and _is_constant(n)]
    equal = [(t.field, _scalar(t.operand)) for t in tests if t.op == "eq"]
    member = [(t.field, frozenset(t.operand)) for t in tests if t.op == "in" and isinstance(t.operand, tuple)]
    constants = _constant_tests([t for t in tests if t.op not in ("eq", "in")])
    others = tuple(_node2(n, {}) for n in nodes if not _is_constant(n))
    if len(tests) == 1 and not others:
        if equal:
            ((field, value),) = equal
            return lambda v: v.get(field) == value
        if member:
            ((field, values),) = member
            return lambda v: v.get(field) in values
        ((field, predicate),) = constants
        if predicate is None:
            return lambda v: v.get(field) is not None
        return lambda v: (x := v.get(field)) is not None and predicate(x)

    def local(v: Values) -> bool:
        for field, value in equal:
            if v.get(field) != value:
                return False
        for field, values in member:
            if v.get(field) not in values:
                return False
        for field, predicate in constants:
            x = v.get(field)
            if x is None or (predicate is not None and not predicate(x)):
                return False
        for step in others:  # noqa: SIM110 (as in _all2)
            if not step(v, ()):
                return False
        return True

    return local


def _test2(test: ir.Test, positions: Mapping[str, int]) -> Check2:
    field = test.field
    if test.op == "present":
        return lambda v, env: v.get(field) is not None
    if test.op == "absent":
        return lambda v, env: v.get(field) is None
    operand = test.operand
    if isinstance(operand, ir.Ref):
        at, other_field, compare = positions[operand.alias], operand.field, _BINARY[test.op]

        def joined(v: Values, env: Env) -> bool:
            x = v.get(field)
            if x is None:
                return False
            y = env[at].values.get(other_field)
            return y is not None and compare(x, y)

        return joined
    predicate = _predicate(test.op, operand)
    return lambda v, env: (x := v.get(field)) is not None and predicate(x)


def _all2(checks: Sequence[Check2]) -> Check2:
    if len(checks) == 1:
        return checks[0]
    steps = tuple(checks)

    def conjunction(v: Values, env: Env) -> bool:
        for step in steps:  # noqa: SIM110 (a loop: all() over a generator costs more on this hot path)
            if not step(v, env):
                return False
        return True

    return conjunction


def _node2(node: ir.Node, positions: Mapping[str, int]) -> Check2:
    if isinstance(node, ir.Test):
        return _test2(node, positions)
    branches = tuple(_all2([_test2(t, positions) for t in branch]) for branch in node.branches)

    def any_of(v: Values, env: Env) -> bool:
        for branch in branches:  # noqa: SIM110 (as above)
            if branch(v, env):
                return True
        return False

    return any_of


def _reads_env(node: ir.Node) -> bool:
    tests = [t for b in node.branches for t in b] if isinstance(node, ir.AnyOf) else [node]
    return any(isinstance(t.operand, ir.Ref) for t in tests)


def _pattern2(pattern: ir.Pattern, positions: Mapping[str, int]) -> tuple[Local2 | None, Check2 | None]:
    """The pattern's tests that read only its fact, and those that read the facts bound before it."""
    local = _local2([n for n in pattern.tests if not _reads_env(n)])
    joins = [_node2(n, positions) for n in pattern.tests if _reads_env(n)]
    return local, (_all2(joins) if joins else None)


# -- three-valued: an absent attribute makes a comparison unknown, and is recorded -------------------------------
#
# Here the order of the unknown fields is part of the result, and a false test ends the pattern: every
# pattern runs its tests in their written order.


def _test3(test: ir.Test, positions: Mapping[str, int]) -> Step3:
    field = test.field
    if test.op == "absent":
        return lambda fact, v, env, sink: v.get(field) is None
    if test.op == "present":

        def present(fact: Fact, v: Values, env: Env, sink: list[Unknown]) -> Truth:
            if v.get(field) is None:
                sink.append(Unknown(fact, field))
                return None
            return True

        return present
    operand = test.operand
    if isinstance(operand, ir.Ref):
        at, other_field, compare = positions[operand.alias], operand.field, _BINARY[test.op]

        def joined(fact: Fact, v: Values, env: Env, sink: list[Unknown]) -> Truth:
            x = v.get(field)
            if x is None:
                sink.append(Unknown(fact, field))
                return None
            other = env[at]
            y = other.values.get(other_field)
            if y is None:
                sink.append(Unknown(other, other_field))
                return None
            return compare(x, y)

        return joined
    predicate = _predicate(test.op, operand)

    def constant(fact: Fact, v: Values, env: Env, sink: list[Unknown]) -> Truth:
        x = v.get(field)
        if x is None:
            sink.append(Unknown(fact, field))
            return None
        return predicate(x)

    return constant


def _any_of3(node: ir.AnyOf, positions: Mapping[str, int]) -> Step3:
    """True when a branch is true, false when every branch is false, unknown otherwise; every test of every
    branch is evaluated, and their unknown fields are recorded only when the node is unknown."""
    branches = tuple(tuple(_test3(t, positions) for t in branch) for branch in node.branches)

    def any_of(fact: Fact, v: Values, env: Env, sink: list[Unknown]) -> Truth:
        pending: list[Unknown] = []
        any_true = False
        all_false = True
        for branch in branches:
            false = unknown = False
            for test in branch:
                result = test(fact, v, env, pending)
                if result is None:
                    unknown = True
                elif not result:
                    false = True
            if not false:
                all_false = False
                if not unknown:
                    any_true = True
        if any_true:
            return True
        if all_false:
            return False
        sink.extend(pending)
        return None

    return any_of


def _pattern3(pattern: ir.Pattern, positions: Mapping[str, int]) -> Check3:
    """One fact against one pattern: None when false, else (True or None, the unknown fields in order)."""
    if all(_is_constant(node) for node in pattern.tests):
        # the common case, one loop: comparisons with constants and presence
        constants = _constant_tests([node for node in pattern.tests if isinstance(node, ir.Test)])
        if len(constants) == 1:
            ((field, predicate),) = constants

            def check_one(fact: Fact, env: Env) -> tuple[Truth, list[Unknown]] | None:
                x = fact.values.get(field)
                if x is None:
                    return None, [Unknown(fact, field)]
                if predicate is not None and not predicate(x):
                    return None
                return True, []

            return check_one

        def check_constants(fact: Fact, env: Env) -> tuple[Truth, list[Unknown]] | None:
            v = fact.values
            sink: list[Unknown] | None = None
            for field, predicate in constants:
                x = v.get(field)
                if x is None:
                    if sink is None:
                        sink = []
                    sink.append(Unknown(fact, field))
                elif predicate is not None and not predicate(x):
                    return None
            return (True, []) if sink is None else (None, sink)

        return check_constants
    steps = tuple(
        _test3(node, positions) if isinstance(node, ir.Test) else _any_of3(node, positions) for node in pattern.tests
    )

    def check(fact: Fact, env: Env) -> tuple[Truth, list[Unknown]] | None:
        v = fact.values
        sink: list[Unknown] = []
        truth: Truth = True
        for step in steps:
            result = step(fact, v, env, sink)
            if result is None:
                truth = None
            elif not result:
                return None
        return truth, sink

    return check


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
