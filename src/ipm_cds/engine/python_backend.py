"""The python backend: the same IR evaluated in plain Python.

It is the oracle the durable backend is tested against, the fallback where durable-rules cannot be
installed, and the engine behind explanations. Forward chaining runs to a fixpoint; each combination
of facts fires a rule once, as in the durable engine.

Patterns run as compiled matchers (:mod:`compiled`: closures built from the IR, with the semantics of
:mod:`match`). After the first round, a rule is matched again only when a fact of a type it reads was
derived in the round before: its other matches are the ones it already fired. A rule whose gates
(:mod:`.gates`) no value of the record admits is not matched at all: it has no match; nor is a rule without
gates whose first comparison of a field with a constant (``count >= 1``, :func:`.gates.range_gate_of`) no fact
passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..model.facts.normalise import Fact, Scalar
from .base import OnFire
from .closures import predicate
from .compiled import CompiledProgram, compile_program
from .gates import GateIndex, range_gate_of
from .match import index_by_type
from .program import Program, Stratum

# fact type -> per ranged field: the field, the comparison, the rules it gates
_Ranges = dict[str, tuple[tuple[str, Callable[[Scalar], bool], frozenset[int]], ...]]


class PythonBackend:
    name = "python"

    def __init__(self) -> None:
        self._compiled: CompiledProgram | None = None
        # per stratum: the engine rules' names, the fact types each reads, and the rules by their gates
        self._strata: dict[int, tuple[tuple[str, ...], tuple[frozenset[str], ...], GateIndex]] = {}
        self._readers: dict[int, dict[str, frozenset[int]]] = {}  # per stratum: fact type -> the rules reading it
        # per stratum: the rules without a gate that compare a field with a constant (``count >= 1``), and by the
        # first such comparison
        self._ranged: dict[int, tuple[frozenset[int], _Ranges]] = {}

    def prepare(self, program: Program) -> None:
        self._compiled = compile_program(program)
        for stratum in program.strata:
            names = tuple(er.name for er in stratum.rules)
            reads = tuple(self._compiled.needs[name] for name in names)
            gates = GateIndex.build([self._compiled.gates[n] for n in names])
            self._strata[stratum.index] = (names, reads, gates)
            by_range: dict[tuple[str, str, str, Scalar], set[int]] = {}
            for i in sorted(gates.ungated):
                found = range_gate_of(stratum.rules[i].patterns)
                if found is not None:
                    by_range.setdefault((found.fact_type, found.field, found.op, found.bound), set()).add(i)
            ranges: dict[str, list[tuple[str, Callable[[Scalar], bool], frozenset[int]]]] = {}
            for (fact_type, field, op, bound), rules in by_range.items():
                ranges.setdefault(fact_type, []).append((field, predicate(op, bound), frozenset(rules)))
            ranged = frozenset().union(*by_range.values())
            self._ranged[stratum.index] = (ranged, {t: tuple(r) for t, r in ranges.items()})
            readers: dict[str, set[int]] = {}
            for i, types in enumerate(reads):
                for fact_type in types:
                    readers.setdefault(fact_type, set()).add(i)
            self._readers[stratum.index] = {t: frozenset(r) for t, r in readers.items()}

    def close(self) -> None:
        self._compiled = None
        self._strata.clear()
        self._readers.clear()
        self._ranged.clear()

    def run_stratum(
        self,
        stratum: Stratum,
        facts: Sequence[Fact],
        on_fire: OnFire,
        by_type: Mapping[str, Sequence[Fact]] | None = None,
    ) -> None:
        assert self._compiled is not None, "prepare() first"
        match = self._compiled.match
        names, reads, gates = self._strata[stratum.index]
        readers = self._readers[stratum.index]
        # (its own mapping, the lists shared: what a round derives replaces a list here when the round ends,
        # and the driver replaces, never extends, the lists it gave)
        of_type = dict(by_type) if by_type is not None else index_by_type(facts)
        present = set(of_type)  # a set, kept up to date below: ``frozenset <= set`` is fast, ``<= dict_keys`` is not
        fired: set[tuple[str, tuple[int, ...]]] = set()
        changed: set[str] | None = None  # fact types derived in the last round; None: first round
        admitted = gates.admitted(of_type)  # (facts are only ever added: it only grows)
        ranged, ranges = self._ranged[stratum.index]
        if ranged:  # the rules without a gate that no fact passes the first comparison of
            admitted -= ranged
            for fact_type, by_field in ranges.items():
                found = of_type.get(fact_type)
                if found:
                    _admit_ranged(by_field, found, admitted)
        while True:
            # Skipped: a rule with no fact of a type it reads; after the first round, a rule that reads nothing
            # derived in the round before (its other matches already fired); a rule whose gates no value admits
            # (a rule without gates: whose first comparison with a constant no fact passes).
            # The others run in stratum order.
            if changed is None:
                pool = admitted
            else:  # the rules that read a type derived in the round before
                pool = set()
                for fact_type in changed:
                    pool |= readers.get(fact_type, frozenset())
                pool &= admitted
            selected = [i for i in pool if reads[i] <= present]
            selected.sort()
            # Each match fires as soon as it is found (so the driver's firing cap holds while matching, not after
            # every match has been collected); what it derives joins the facts when the round ends, so a round
            # matches exactly the facts it started with.
            made: list[Fact] = []
            for i in selected:
                name = names[i]
                for bound in match[name](of_type):
                    signature = (name, tuple(map(id, bound.values())))
                    if signature not in fired:
                        fired.add(signature)
                        made.extend(on_fire(name, bound))
            if not made:
                return
            derived: dict[str, list[Fact]] = {}
            for fact in made:
                derived.setdefault(fact.type, []).append(fact)
            for fact_type, new in derived.items():
                of_type[fact_type] = [*of_type.get(fact_type, ()), *new]
                gates.admit(new, admitted)
                if fact_type in ranges:
                    _admit_ranged(ranges[fact_type], new, admitted)
            changed = set(derived)
            present |= changed


def _admit_ranged(
    by_field: tuple[tuple[str, Callable[[Scalar], bool], frozenset[int]], ...], facts: Sequence[Fact], into: set[int]
) -> None:
    """Add to ``into`` the rules a fact passes the comparison of (two-valued: a fact without the field does not)."""
    for field, holds, rules in by_field:
        for fact in facts:
            x = fact.values.get(field)
            if x is not None and holds(x):
                into |= rules
                break
