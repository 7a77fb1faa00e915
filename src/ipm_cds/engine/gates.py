"""Gates: a rule's tests of a field against constants, checked against the values a record has of that field,
before the rule's matcher runs.

A ruleset has hundreds of rules and a record matches few of them. Most rules that cannot match fail on a
test like ``region: lumbar`` or ``intervention in [...]``: a fact of the type is there (so the rule is not
skipped for want of one), but no fact of it has one of the values. Checking a gate costs a set lookup per
gate; running the matcher costs a call and a loop over the facts with every test of the pattern. Both
:mod:`.python_backend` and the missing-data search of :mod:`.driver` skip the rules whose gates no value
admits, through a :class:`GateIndex`: the cost is then per fact, not per rule.

A gate only ever skips a rule that has no combination (or, three-valued, no undecided one), so skipping
it changes nothing the rule would say, by these semantics (:mod:`.match`):

* a gate is a test of the pattern itself (not inside ``any_of``), so it must hold for the pattern to;
* ``eq`` and ``in`` hold only for a value equal to one of the constants (the values are scalars, whose
  hashes agree with ``==``);
* two-valued, an absent value makes the test false; three-valued, unknown: a gate of the missing-data search
  admits a fact without the field (the rule could be waiting for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..model.facts.normalise import Fact, Scalar
from ..ruleset import ir


@dataclass(frozen=True, slots=True)
class Gate:
    """A test of one of a rule's patterns that only facts with one of ``allowed`` values of ``field`` pass."""

    fact_type: str
    field: str
    allowed: frozenset[Scalar]


def gates_of(patterns: Sequence[ir.Pattern]) -> tuple[Gate, ...]:
    """The gates of a rule with these patterns: each top-level ``eq`` or ``in`` test of a constant (a ``present``
    test admits most records: it is not one)."""
    found: dict[Gate, None] = {}  # (in order, once each)
    for pattern in patterns:
        for node in pattern.tests:
            if not isinstance(node, ir.Test) or isinstance(node.operand, ir.Ref | ir.Param):
                continue
            if node.op in ("eq", "in"):
                operand = node.operand
                assert operand is not None, "a rule compares with a value, never with None"
                values = frozenset(operand) if isinstance(operand, tuple) else frozenset((operand,))
                found[Gate(pattern.fact_type, node.field, values)] = None
    return tuple(found)


def primary(gates: Sequence[Gate]) -> Gate | None:
    """The gate a rule is indexed by: the one with the fewest values (the first such), a gate of a flag (only
    ``true`` or ``false`` allowed) only when it has no other, as most facts have either value (``code in [...],
    active: true`` is indexed by its code); None when it has none (such a rule is matched unindexed)."""
    best: Gate | None = None
    for gate in gates:
        if best is None or _rank(gate) < _rank(best):
            best = gate
    return best


def _rank(gate: Gate) -> tuple[bool, int]:
    return all(isinstance(value, bool) for value in gate.allowed), len(gate.allowed)


_Key = tuple[str, Mapping[Scalar, tuple[int, ...]], frozenset[int]]  # field, value -> rules, every rule of the field


@dataclass(frozen=True, slots=True)
class GateIndex:
    """Rules, by position, indexed by their primary gate: per fact type and field, the rules each value admits.
    Checking a record costs a lookup per fact and indexed field, however many rules there are."""

    keys: Mapping[str, tuple[_Key, ...]]  # fact type -> its indexed fields
    ungated: frozenset[int]  # rules without an ``eq`` or ``in`` gate: always admitted

    @classmethod
    def build(cls, gates: Sequence[Sequence[Gate]]) -> GateIndex:
        keys: dict[tuple[str, str], dict[Scalar, list[int]]] = {}
        ungated: list[int] = []
        for position, rule_gates in enumerate(gates):
            gate = primary(rule_gates)
            if gate is None:
                ungated.append(position)
                continue
            by_value = keys.setdefault((gate.fact_type, gate.field), {})
            for value in gate.allowed:
                by_value.setdefault(value, []).append(position)
        by_type: dict[str, list[_Key]] = {}
        for (fact_type, field), by_value in keys.items():
            # (no value None: a fact without the field admits nothing two-valued, and ``get(None)`` finds nothing)
            rules = {v: tuple(p) for v, p in by_value.items() if v is not None}
            by_type.setdefault(fact_type, []).append((field, rules, frozenset().union(*by_value.values())))
        return cls({t: tuple(k) for t, k in by_type.items()}, frozenset(ungated))

    def admitted(self, by_type: Mapping[str, Sequence[Fact]], three_valued: bool = False) -> set[int]:
        """The rules whose primary gate a fact admits (three-valued: also a fact without the field), and the
        rules without one. A rule left out has no combination (three-valued: no undecided one either)."""
        out = set(self.ungated)
        if three_valued:
            for fact_type, keys in self.keys.items():
                facts = by_type.get(fact_type)
                if facts:
                    self._admit(keys, facts, out, True)
            return out
        for fact_type, keys in self.keys.items():  # (two-valued, the python backend's: written out, no call per type)
            facts = by_type.get(fact_type)
            if facts:
                for field, by_value, _ in keys:
                    for fact in facts:
                        hit = by_value.get(fact.values.get(field))  # type: ignore[arg-type]
                        if hit is not None:
                            out.update(hit)
        return out

    def admit(self, facts: Sequence[Fact], into: set[int]) -> None:
        """Add to ``into`` the rules these facts (of one type) admit, two-valued: what :meth:`admitted` adds
        for facts that join the record (it only ever grows)."""
        keys = self.keys.get(facts[0].type) if facts else None
        if keys:
            self._admit(keys, facts, into, False)

    @staticmethod
    def _admit(keys: Sequence[_Key], facts: Sequence[Fact], out: set[int], three_valued: bool) -> None:
        for field, by_value, everyone in keys:
            for fact in facts:
                value = fact.values.get(field)
                if value is None:
                    if three_valued:
                        out.update(everyone)
                        break
                    continue
                hit = by_value.get(value)
                if hit is not None:
                    out.update(hit)


@dataclass(frozen=True, slots=True)
class RangeGate:
    """A test of one of a rule's patterns that compares ``field`` with a constant (``lt``, ``lte``, ``gt``, ``gte``):
    two-valued, only a fact with the field and a value the comparison holds for passes it."""

    fact_type: str
    field: str
    op: str
    bound: Scalar


_ORDERED = ("lt", "lte", "gt", "gte")


def range_gate_of(patterns: Sequence[ir.Pattern]) -> RangeGate | None:
    """The first top-level comparison of a field with a constant (``count >= 1``) of a rule's patterns; None when
    it has none. The python backend checks it for the rules with no gate (as those of :func:`gates_of`, it must
    hold for the pattern to: two-valued, a rule none of whose facts passes it has no combination). (Checked for
    every rule, as a second gate, it cost more than the matcher calls it saved.)"""
    for pattern in patterns:
        for node in pattern.tests:
            if isinstance(node, ir.Test) and node.op in _ORDERED and not isinstance(node.operand, ir.Ref | ir.Param):
                operand = node.operand
                assert operand is not None and not isinstance(operand, tuple)
                return RangeGate(pattern.fact_type, node.field, node.op, operand)
    return None


def fields_read(patterns: Sequence[ir.Pattern]) -> frozenset[tuple[str, str]]:
    """The (fact type, field) pairs a rule's tests read, a join's other side included, except ``absent`` tests
    (which are true or false, never unknown): only a fact without one of these can leave the rule undecided."""
    types = {p.alias: p.fact_type for p in patterns}
    found: set[tuple[str, str]] = set()
    for pattern in patterns:
        for test in pattern.all_tests():
            if test.op != "absent":
                found.add((pattern.fact_type, test.field))
            if isinstance(test.operand, ir.Ref):
                found.add((types[test.operand.alias], test.operand.field))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class AbsenceIndex:
    """Rules, by position, indexed by the fields they read (:func:`fields_read`). Three-valued, a test is unknown
    only on a field a fact does not have, so a rule none of whose fields any fact lacks has no undecided
    combination: the missing-data search leaves it out."""

    fields: Mapping[str, frozenset[str]]  # fact type -> the fields some rule reads of it
    rules: Mapping[tuple[str, str], frozenset[int]]  # (fact type, field) -> the rules that read it

    @classmethod
    def build(cls, reads: Sequence[frozenset[tuple[str, str]]]) -> AbsenceIndex:
        fields: dict[str, dict[str, None]] = {}
        rules: dict[tuple[str, str], set[int]] = {}
        for position, pairs in enumerate(reads):
            for fact_type, field in sorted(pairs):
                fields.setdefault(fact_type, {})[field] = None
                rules.setdefault((fact_type, field), set()).add(position)
        return cls({t: frozenset(f) for t, f in fields.items()}, {k: frozenset(v) for k, v in rules.items()})

    def may_wait(self, by_type: Mapping[str, Sequence[Fact]]) -> set[int]:
        """The rules that read a field some fact of the record does not have (the missing-data search finds them
        with :class:`WaitIndex`; this is the plain statement it is tested against)."""
        out: set[int] = set()
        for fact_type, facts in by_type.items():
            fields = self.fields.get(fact_type)
            if not fields:
                continue
            lacking: set[str] = set()
            for fact in facts:
                lacking |= fields.difference(fact.values)
            for field in lacking:
                out |= self.rules[(fact_type, field)]
        return out


_MaskKey = tuple[str, Mapping[Scalar, int], int]  # field, value -> rules, every rule of the field (bits of an int)


def _bits(positions: frozenset[int] | Sequence[int]) -> int:
    mask = 0
    for position in positions:
        mask |= 1 << position
    return mask


@dataclass(frozen=True, slots=True)
class WaitIndex:
    """The rules the missing-data search runs: those :meth:`AbsenceIndex.may_wait` and three-valued
    :meth:`GateIndex.admitted` both keep, found in one walk over the record's fact types, the rules as bits of
    an int (an or per field or value instead of a set union, one and instead of a set intersection, and the
    positions come out in order, with no sort)."""

    types: Mapping[str, tuple[tuple[tuple[str, int], ...], tuple[_MaskKey, ...]]]  # fact type -> fields read, gates
    ungated: int

    @classmethod
    def build(cls, absence: AbsenceIndex, gates: GateIndex) -> WaitIndex:
        read: dict[str, tuple[tuple[str, int], ...]] = {
            fact_type: tuple((field, _bits(absence.rules[(fact_type, field)])) for field in sorted(fields))
            for fact_type, fields in absence.fields.items()
        }
        gated: dict[str, tuple[_MaskKey, ...]] = {
            fact_type: tuple(
                (field, {value: _bits(rules) for value, rules in by_value.items()}, _bits(everyone))
                for field, by_value, everyone in keys
            )
            for fact_type, keys in gates.keys.items()
        }
        return cls(
            {fact_type: (read.get(fact_type, ()), gated.get(fact_type, ())) for fact_type in {*read, *gated}},
            _bits(gates.ungated),
        )

    def waiting(self, by_type: Mapping[str, Sequence[Fact]]) -> list[int]:
        """The positions, in order, of the rules that read a field some fact lacks and whose primary gate a fact
        admits, three-valued (or that have none): ``sorted(may_wait(by_type) & admitted(by_type, True))``."""
        lacking = 0
        admitted = self.ungated
        types = self.types
        for fact_type, facts in by_type.items():
            entry = types.get(fact_type)
            if entry is None:
                continue
            read, keys = entry
            for fact in facts:
                values = fact.values
                for field, rules in read:  # (a loop: most types have few fields, cheaper than a set difference)
                    if field not in values:
                        lacking |= rules
            for field, by_value, everyone in keys:
                for fact in facts:
                    value = fact.values.get(field)
                    if value is None:
                        admitted |= everyone
                        break
                    hit = by_value.get(value)
                    if hit is not None:
                        admitted |= hit
        both = lacking & admitted
        out: list[int] = []
        while both:
            lowest = both & -both
            out.append(lowest.bit_length() - 1)
            both ^= lowest
        return out
