"""What a backend is: something that runs one stratum of a program over facts, calling back on each firing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ..model.facts.normalise import Fact
from .program import Program, Stratum

OnFire = Callable[[str, dict[str, Fact]], list[Fact]]
"""Called with the exec-rule name and its bindings; returns new (derived) facts to assert."""


class Backend(Protocol):
    name: str

    def prepare(self, program: Program) -> None:
        """Compile what the backend needs for this program (once per engine)."""

    def run_stratum(
        self,
        stratum: Stratum,
        facts: Sequence[Fact],
        on_fire: OnFire,
        by_type: Mapping[str, Sequence[Fact]] | None = None,
    ) -> None:
        """Fire every rule of the stratum on every match, to a fixpoint, asserting derived facts. ``by_type``:
        the same facts by type, in the same order, when the caller has them (a backend must not change it)."""

    def close(self) -> None:
        """Release what ``prepare`` built (for durable-rules, its rulesets in the C extension). Idempotent."""
