"""The python backend: the same IR evaluated in plain Python.

It is the oracle the durable backend is tested against, the fallback where durable-rules cannot be
installed, and the engine behind explanations. Forward chaining runs to a fixpoint; each combination
of facts fires a rule once, as in the durable engine.

Patterns run as compiled matchers (:mod:`compiled`: closures built from the IR, with the semantics of
:mod:`match`). After the first round, a rule is matched again only when a fact of a type it reads was
derived in the round before: its other matches are the ones it already fired. A rule whose gates
(:mod:`.gates`) no value of the record admits is not matched at all: it has no match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..model.facts.normalise import Fact
from .base import OnFire
from .compiled import CompiledProgram, compile_program
from .gates import GateIndex
from .match import index_by_type
from .program import Program, Stratum


class PythonBackend:
    name = "python"

    def __init__(self) -> None:
        self._compiled: CompiledProgram | None = None
        # per stratum: the engine rules' names, the fact types each reads, and the rules by their gates
        self._strata: dict[int, tuple[tuple[str, ...], tuple[frozenset[str], ...], GateIndex]] = {}
        self._readers: dict[int, dict[str, frozenset[int]]] = {}  # per stratum: fact type -> the rules reading it

    def prepare(self, program: Program) -> None:
        self._compiled = compile_program(program)
        for stratum in program.strata:
            names = tuple(er.name for er in stratum.rules)
            reads = tuple(self._compiled.needs[name] for name in names)
            self._strata[stratum.index] = (names, reads, GateIndex.build([self._compiled.gates[n] for n in names]))
            readers: dict[str, set[int]] = {}
            for i, types in enumerate(reads):
                for fact_type in types:
                    readers.setdefault(fact_type, set()).add(i)
            self._readers[stratum.index] = {t: frozenset(r) for t, r in readers.items()}

    def close(self) -> None:
        self._compiled = None
        self._strata.clear()
        self._readers.clear()

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
        while True:
            # Skipped: a rule with no fact of a type it reads; after the first round, a rule that reads nothing
            # derived in the round before (its other matches already fired); a rule whose gates no value admits.
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
            changed = set(derived)
            present |= changed
