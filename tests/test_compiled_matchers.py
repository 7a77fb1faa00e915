"""The compiled matchers (engine/compiled.py) against the reference matcher (engine/match.py) on arbitrary
patterns, not only the bundled ruleset's.

``tests/test_hardening.py`` compares them on every rule of the bundled ruleset; that ruleset does not
reach every shape the compiler specialises (one, two, three and more patterns; one test or several;
``eq``/``in`` without a presence test; joins at every position; ``any_of`` with and without joins; several
patterns of one fact type). Here hypothesis draws the patterns and the facts: every combination, its order
and its unknown fields must be the reference's, two-valued, three-valued and for unless clauses; and a
rule its gates leave out must have none.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ipm_cds.engine import closures, compiled, driver, gates
from ipm_cds.engine.match import index_by_type, matches
from ipm_cds.model.facts.normalise import Fact
from ipm_cds.ruleset import ir

TYPES = ("a", "b")
NUMBER_FIELDS = ("x", "y")
TEXT_FIELDS = ("s",)
NUMBERS = (0, 1, 2, 3.5)
TEXTS = ("p", "q", "r")
EQUALITY_OPS = ("eq", "neq", "in", "not_in", "present", "absent")
ORDERED_OPS = (*EQUALITY_OPS, "lt", "lte", "gt", "gte")


@st.composite
def facts(draw: Any) -> list[Fact]:
    out = []
    for n in range(draw(st.integers(0, 6))):
        values: dict[str, Any] = {}
        for field in NUMBER_FIELDS:
            if draw(st.booleans()):
                values[field] = draw(st.sampled_from(NUMBERS))
        for field in TEXT_FIELDS:
            if draw(st.booleans()):
                values[field] = draw(st.sampled_from(TEXTS))
        out.append(Fact(draw(st.sampled_from(TYPES)), f"k{n}", values, f"fact {n}"))
    return out


@st.composite
def single_test(draw: Any, earlier: tuple[str, ...]) -> ir.Test:
    fields, constants, ops = draw(
        st.sampled_from([(NUMBER_FIELDS, NUMBERS, ORDERED_OPS), (TEXT_FIELDS, TEXTS, EQUALITY_OPS)])
    )
    field = draw(st.sampled_from(fields))
    op = draw(st.sampled_from(ops))
    if op in ("present", "absent"):
        return ir.Test(field, op, None)
    if op in ("in", "not_in"):
        return ir.Test(field, op, tuple(draw(st.lists(st.sampled_from(constants), min_size=1, max_size=5))))
    if earlier and draw(st.booleans()):
        return ir.Test(field, op, ir.Ref(draw(st.sampled_from(earlier)), draw(st.sampled_from(fields))))
    return ir.Test(field, op, draw(st.sampled_from(constants)))


@st.composite
def patterns(draw: Any) -> list[ir.Pattern]:
    out: list[ir.Pattern] = []
    for i in range(draw(st.integers(1, 5))):
        earlier = tuple(p.alias for p in out)
        nodes: list[ir.Node] = []
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.integers(0, 4)) == 0:
                branches = draw(
                    st.lists(st.lists(single_test(earlier), min_size=1, max_size=2), min_size=1, max_size=3)
                )
                nodes.append(ir.AnyOf(tuple(tuple(b) for b in branches)))
            else:
                nodes.append(draw(single_test(earlier)))
        out.append(ir.Pattern(f"p{i}", draw(st.sampled_from(TYPES)), tuple(nodes)))
    return out


@settings(max_examples=1000, deadline=None)
@given(patterns(), facts())
def test_compiled_matchers_equal_the_reference_on_arbitrary_patterns(
    rule: list[ir.Pattern], recorded: list[Fact]
) -> None:
    by_type = index_by_type(recorded)
    expected = [bound for bound, _, _ in matches(rule, by_type)]
    assert compiled._matcher(rule)(by_type) == expected
    expected_missing = [
        (bound, unknown) for bound, truth, unknown in matches(rule, by_type, three_valued=True) if truth is None
    ]
    assert compiled._missing_matcher(rule)(by_type) == expected_missing
    # the gates (engine/gates.py) leave out only a rule with no combination (three-valued: no undecided one)
    index = gates.GateIndex.build([gates.gates_of(rule)])
    if 0 not in index.admitted(by_type):
        event("left out by its gates")
        assert expected == []
    if 0 not in index.admitted(by_type, three_valued=True):
        event("left out by its gates, three-valued")
        assert expected_missing == []
    # nor does its first comparison with a constant (the python backend's range gate of a rule without gates)
    ranged = gates.range_gate_of(rule)
    if ranged is not None:
        holds = closures.predicate(ranged.op, ranged.bound)
        if not any(
            (x := f.values.get(ranged.field)) is not None and holds(x) for f in by_type.get(ranged.fact_type, ())
        ):
            event("left out by its range gate")
            assert expected == []
    # a rule none of whose fields a fact lacks cannot be undecided
    if 0 not in gates.AbsenceIndex.build([gates.fields_read(rule)]).may_wait(by_type):
        event("left out: no field it reads is missing")
        assert expected_missing == []
    # facts that join later (as the python backend adds what a round derived) admit what they would have at once
    half = len(recorded) // 2
    grown = index.admitted(index_by_type(recorded[:half]))
    for later in index_by_type(recorded[half:]).values():
        index.admit(later, grown)
    assert grown == index.admitted(by_type)
    if len(rule) > 1:
        # the last pattern as an unless clause of a rule made of the others
        *when, unless = rule
        extend = compiled._extender(unless, [p.alias for p in when])
        for bound, _, _ in matches(when, by_type):
            used = {id(f) for f in bound.values()}
            got = [
                r
                for f in by_type.get(unless.fact_type, ())
                if id(f) not in used and (r := extend(f, bound)) is not None
            ]
            assert got == [(t, u) for _, t, u in driver._extend(unless, bound, by_type)]


_SHAPES: list[tuple[ir.Node, ...]] = [
    (ir.Test("x", "present", None), ir.Test("x", "gte", 1)),  # the presence test implied by the comparison
    (ir.Test("x", "present", None), ir.Test("y", "lt", 2)),
    (ir.Test("s", "eq", "p"), ir.Test("x", "eq", 1)),
    (ir.Test("s", "eq", "p"), ir.Test("x", "in", (0, 2))),
    (ir.Test("s", "eq", "q"), ir.Test("x", "gt", 1)),
    (ir.Test("s", "eq", "q"), ir.Test("x", "lte", 2)),
    (ir.Test("s", "eq", "q"), ir.Test("x", "lt", 2)),
    (ir.Test("s", "eq", "q"), ir.Test("x", "gte", 2)),
    (ir.Test("s", "eq", "q"), ir.Test("x", "neq", 2)),
    (ir.Test("s", "in", ("p", "r")), ir.Test("x", "in", (1, 3.5))),
    (ir.Test("s", "in", ("p", "r")), ir.Test("x", "gte", 1)),
    (ir.Test("s", "in", ("p", "r")),),
    (ir.Test("s", "eq", "r"),),
    (ir.Test("x", "gt", 0),),
    (ir.Test("x", "not_in", (0, 1)),),
    (ir.Test("s", "eq", "p"), ir.Test("x", "gte", 1), ir.Test("y", "absent", None)),
    (ir.Test("x", "gte", 1), ir.Test("y", "absent", None), ir.Test("s", "present", None)),
    (ir.AnyOf(((ir.Test("x", "neq", 1),), (ir.Test("x", "absent", None),))),),
    (ir.AnyOf(((ir.Test("y", "absent", None),), (ir.Test("y", "lt", 2),))),),
    (ir.AnyOf(((ir.Test("s", "in", ("p", "q")),), (ir.Test("s", "absent", None),))), ir.Test("x", "gt", 0)),
    (
        ir.AnyOf(((ir.Test("x", "neq", 0),), (ir.Test("x", "absent", None),))),
        ir.AnyOf(((ir.Test("y", "gte", 2),), (ir.Test("y", "absent", None),))),
    ),
    (ir.AnyOf(((ir.Test("x", "neq", 0),), (ir.Test("y", "absent", None),))),),  # two fields: not one test
    (ir.AnyOf(((ir.Test("x", "present", None),), (ir.Test("x", "absent", None),))),),
]


def test_written_out_local_tests_equal_the_reference() -> None:
    """Each one- and two-test shape :func:`closures._local2` writes out, and the loops it falls back on,
    against the reference matcher (values absent, equal, below and above the constants)."""
    recorded = [
        Fact("a", f"k{n}", values, f"fact {n}")
        for n, values in enumerate(
            [{}, {"x": 0}, {"x": 1, "s": "p"}, {"x": 2, "s": "q"}, {"x": 3.5, "s": "r", "y": 1}, {"s": "p", "y": 2}]
        )
    ]
    by_type = index_by_type(recorded)
    for tests in _SHAPES:
        rule = [ir.Pattern("p0", "a", tests)]
        assert compiled._matcher(rule)(by_type) == [bound for bound, _, _ in matches(rule, by_type)], tests
