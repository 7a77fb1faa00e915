"""Tests and patterns compiled to closures on one fact: the building blocks of :mod:`.compiled`.

Each test becomes a small function with its operator, field and operand already chosen, each pattern a
loop over its tests; two-valued (an absent attribute makes a comparison false: the python backend's
matcher) and three-valued (unknown, and recorded: the missing-data search). :mod:`.compiled` chains
them into rules; its docstring states what both keep of :mod:`.match`'s semantics.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from ..model.facts.normalise import Fact, Scalar
from ..ruleset import ir
from .match import Truth, Unknown

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


predicate = _predicate  # (the python backend's range gates compare as the matchers do)


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


def _is_absent(node: ir.Node) -> bool:
    return isinstance(node, ir.Test) and node.op == "absent"


def _local2(nodes: Sequence[ir.Node]) -> Local2 | None:
    """The conjunction of tests that read only the fact's own values; None when there are none.

    ``eq`` and ``in`` need no test for absence: an absent value (None) equals no constant and is in no set
    of them (the values are scalars, never NaN: rule files and patients refuse it). A ``present`` test of a
    field another of these tests compares is implied by it (``count present, count >= 1``): it is left out."""
    if not nodes:
        return None
    tests = [n for n in nodes if isinstance(n, ir.Test) and _is_constant(n)]
    compared = {t.field for t in tests if t.op != "present"}
    tests = [t for t in tests if t.op != "present" or t.field not in compared]
    equal = [(t.field, _scalar(t.operand)) for t in tests if t.op == "eq"]
    member = [(t.field, frozenset(t.operand)) for t in tests if t.op == "in" and isinstance(t.operand, tuple)]
    ordered = [t for t in tests if t.op not in ("eq", "in")]
    constants = _constant_tests(ordered)
    absent = tuple(n.field for n in nodes if isinstance(n, ir.Test) and _is_absent(n))
    # ``any_of`` of a comparison and the absence of one field (``x != c or x absent``), as one test of x
    unless: list[Local2] = []
    others_nodes: list[ir.Node] = []
    for n in nodes:
        if _is_constant(n) or _is_absent(n):
            continue
        test = _or_absent(n)
        if test is not None:
            unless.append(test)
        else:
            others_nodes.append(n)
    if len(unless) == 1 and not others_nodes and not absent and not tests:
        return unless[0]
    others = tuple(lambda v, env, test=test: test(v) for test in unless) + tuple(_node2(n, {}) for n in others_nodes)
    if not others and not absent and len(tests) <= 2:
        # the common shapes (one or two tests; equalities first, then membership, then the rest), as one
        # expression each: no loop over the tests and no call per test
        shape = _shape2(equal, member, ordered)
        if shape is not None:
            return shape

    head: tuple[str, Scalar] | None = None
    if equal:  # the first equality ahead of the loop: most facts a rule's pattern rejects fail it
        head, equal = equal[0], equal[1:]

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
        for field in absent:
            if v.get(field) is not None:
                return False
        for step in others:  # noqa: SIM110 (as in _all2)
            if not step(v, ()):
                return False
        return True

    if head is None:
        return local
    head_field, head_value = head
    return lambda v: v.get(head_field) == head_value and local(v)


def _or_absent(node: ir.Node) -> Local2 | None:
    """An ``any_of`` of two branches of one test each, a comparison of a field with a constant and the absence
    of the same field (either order), as one function; None for any other node. An absent value is None,
    which no constant is (``neq``: ``None != c`` holds, as the absence does)."""
    if not isinstance(node, ir.AnyOf) or len(node.branches) != 2 or any(len(b) != 1 for b in node.branches):
        return None
    (first,), (second,) = node.branches
    compare, gone = (first, second) if _is_absent(second) else (second, first)
    if not _is_absent(gone) or compare.field != gone.field or not _is_constant(compare) or compare.op == "present":
        return None
    field = compare.field
    if compare.op == "neq":
        c: Any = _scalar(compare.operand)
        return lambda v: v.get(field) != c
    predicate = _predicate(compare.op, compare.operand)
    return lambda v: (x := v.get(field)) is None or predicate(x)


def _one2(test: ir.Test) -> Local2:
    """One comparison with a constant (not ``eq``, ``in`` or ``absent``), written out for the common operators."""
    field, op = test.field, test.op
    if op == "present":
        return lambda v: v.get(field) is not None
    if op not in ("gte", "gt", "lte", "lt"):
        predicate = _predicate(op, test.operand)
        return lambda v: (x := v.get(field)) is not None and predicate(x)
    c: Any = _scalar(test.operand)
    if op == "gte":
        return lambda v: (x := v.get(field)) is not None and x >= c
    if op == "gt":
        return lambda v: (x := v.get(field)) is not None and x > c
    if op == "lte":
        return lambda v: (x := v.get(field)) is not None and x <= c
    assert op == "lt"
    return lambda v: (x := v.get(field)) is not None and x < c


def _shape2(
    equal: Sequence[tuple[str, Scalar]], member: Sequence[tuple[str, frozenset[Scalar]]], ordered: Sequence[ir.Test]
) -> Local2 | None:
    """One or two local tests as one function; None for a shape written out nowhere (the loop then serves)."""
    if len(equal) == 2:
        ((f1, c1), (f2, c2)) = equal
        return lambda v: v.get(f1) == c1 and v.get(f2) == c2
    if len(equal) == 1:
        ((f1, c1),) = equal
        if member:
            ((f2, s2),) = member
            return lambda v: v.get(f1) == c1 and v.get(f2) in s2
        if ordered:
            (t2,) = ordered
            if t2.op in ("gte", "gt", "lte", "lt"):
                bound: Any = _scalar(t2.operand)
                f3 = t2.field
                if t2.op == "gte":
                    return lambda v: v.get(f1) == c1 and (x := v.get(f3)) is not None and x >= bound
                if t2.op == "gt":
                    return lambda v: v.get(f1) == c1 and (x := v.get(f3)) is not None and x > bound
                if t2.op == "lte":
                    return lambda v: v.get(f1) == c1 and (x := v.get(f3)) is not None and x <= bound
                return lambda v: v.get(f1) == c1 and (x := v.get(f3)) is not None and x < bound
            return None
        return lambda v: v.get(f1) == c1
    if len(member) == 2:
        ((f1, s1), (f2, s2)) = member
        return lambda v: v.get(f1) in s1 and v.get(f2) in s2
    if len(member) == 1:
        ((f1, s1),) = member
        if ordered:
            return None
        return lambda v: v.get(f1) in s1
    if len(ordered) == 1:
        return _one2(ordered[0])
    return None


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


_TRUE: tuple[Truth, list[Unknown]] = (True, [])
"""A pattern true with nothing unknown, one object for every such fact (no tuple and list made per fact): its list
is never changed (the matchers, the unless clauses and the aggregates' selections only read the unknown fields
of an undecided result, and a rule's combination joins them into a new list)."""


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
                return _TRUE

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
            return _TRUE if sink is None else (None, sink)

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
