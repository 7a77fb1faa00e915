"""The python backend: the same IR evaluated in plain Python.

It is the oracle the durable backend is tested against, the fallback where durable-rules cannot be
installed, and the engine behind explanations. Forward chaining runs to a fixpoint; each combination
of facts fires a rule once, as in the durable engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..facts.normalise import Fact
from .base import OnFire
from .match import index_by_type, matches
from .program import Program, Stratum


class PythonBackend:
    name = "python"

    def prepare(self, program: Program) -> None:
        return None

    def run_stratum(self, stratum: Stratum, facts: Sequence[Fact], on_fire: OnFire) -> None:
        by_type = index_by_type(facts)
        fired: set[tuple[str, tuple[int, ...]]] = set()
        while True:
            pending: list[tuple[str, dict[str, Fact]]] = []
            for er in stratum.rules:
                for bound, _truth, _unknown in matches(er.patterns, by_type):
                    signature = (er.name, tuple(id(bound[p.alias]) for p in er.patterns))
                    if signature not in fired:
                        fired.add(signature)
                        pending.append((er.name, bound))
            if not pending:
                return
            for name, bound in pending:
                for fact in on_fire(name, bound):
                    by_type.setdefault(fact.type, []).append(fact)
