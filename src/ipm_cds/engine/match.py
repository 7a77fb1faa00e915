"""Pattern matching over facts in plain Python, with the engine's exact semantics.

Semantics (identical to the durable backend, as engine-notes.md gives its operators): a comparison on an
absent attribute is false (``neq`` included); distinct aliases bind distinct facts; every combination is a
match.

With ``three_valued=True`` an absent attribute makes a comparison *unknown* instead of false
(Kleene logic), which is how missing input data is found: a rule that is not false but not true
either is waiting for data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ..model.facts.normalise import Fact, Scalar
from ..ruleset import ir

Truth = bool | None  # None: unknown


@dataclass(frozen=True, slots=True)
class Unknown:
    """A field whose absence left a test undecided."""

    fact: Fact
    field: str


def _compare(op: str, left: Scalar, right: ir.Operand) -> bool:
    if op == "eq":
        # Types were checked when the rule compiled: a bool is only ever compared with a bool.
        return left == right
    if op == "neq":
        return not _compare("eq", left, right)
    if op in ("in", "not_in"):
        assert isinstance(right, tuple)
        found = any(_compare("eq", left, v) for v in right)
        return found if op == "in" else not found
    assert isinstance(left, int | float) and isinstance(right, int | float)
    if op == "lt":
        return left < right
    if op == "lte":
        return left <= right
    if op == "gt":
        return left > right
    return left >= right


def eval_test(test: ir.Test, fact: Fact, bound: Mapping[str, Fact], unknowns: list[Unknown] | None) -> Truth:
    value = fact.values.get(test.field)
    if test.op == "present":
        if value is None and unknowns is not None:
            # Three-valued: a rule that needs a value recorded is waiting for it, not refuted.
            unknowns.append(Unknown(fact, test.field))
            return None
        return value is not None
    if test.op == "absent":
        return value is None
    if value is None:
        if unknowns is not None:
            unknowns.append(Unknown(fact, test.field))
            return None
        return False
    operand = test.operand
    if isinstance(operand, ir.Ref):
        other = bound[operand.alias].values.get(operand.field)
        if other is None:
            if unknowns is not None:
                unknowns.append(Unknown(bound[operand.alias], operand.field))
                return None
            return False
        operand = other
    assert not isinstance(operand, ir.Param), "parameters are bound before matching"
    return _compare(test.op, value, operand)


def _and(values: Sequence[Truth]) -> Truth:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def eval_pattern(pattern: ir.Pattern, fact: Fact, bound: Mapping[str, Fact], unknowns: list[Unknown] | None) -> Truth:
    results: list[Truth] = []
    for node in pattern.tests:
        if isinstance(node, ir.AnyOf):
            branch_unknowns: list[Unknown] = []
            branch_values = [
                _and([eval_test(t, fact, bound, branch_unknowns if unknowns is not None else None) for t in branch])
                for branch in node.branches
            ]
            if any(v is True for v in branch_values):
                results.append(True)
            elif all(v is False for v in branch_values):
                results.append(False)
            else:
                results.append(None)
                if unknowns is not None:
                    unknowns.extend(branch_unknowns)
        else:
            results.append(eval_test(node, fact, bound, unknowns))
        if results[-1] is False:
            return False
    return _and(results)


def index_by_type(facts: Sequence[Fact]) -> dict[str, list[Fact]]:
    out: dict[str, list[Fact]] = {}
    for fact in facts:
        out.setdefault(fact.type, []).append(fact)
    return out


def matches(
    patterns: Sequence[ir.Pattern], by_type: Mapping[str, Sequence[Fact]], *, three_valued: bool = False
) -> Iterator[tuple[dict[str, Fact], Truth, list[Unknown]]]:
    """Every assignment of distinct facts to the patterns that is true (or, three-valued, not false)."""

    def walk(
        i: int, bound: dict[str, Fact], used: set[int], truth: Truth, unknowns: list[Unknown]
    ) -> Iterator[tuple[dict[str, Fact], Truth, list[Unknown]]]:
        if i == len(patterns):
            yield dict(bound), truth, list(unknowns)
            return
        pattern = patterns[i]
        for fact in by_type.get(pattern.fact_type, ()):
            if id(fact) in used:
                continue
            local: list[Unknown] | None = [] if three_valued else None
            result = eval_pattern(pattern, fact, bound, local)
            if result is False:
                continue
            bound[pattern.alias] = fact
            used.add(id(fact))
            yield from walk(i + 1, bound, used, truth if result else None, unknowns + (local or []))
            used.discard(id(fact))
            del bound[pattern.alias]

    yield from walk(0, {}, set(), True, [])
