"""The cheap draws every strategy is made of: :class:`_Draw` (plain choices from strategies built once, each
with its own label) and :class:`_Ctx` (the knobs of one ``patients()`` call and the document being built)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar, cast

from hypothesis import strategies as st

from .vocabularies import _LATERALITY

T = TypeVar("T")


DEFAULT_AS_OF = date(2025, 6, 2)
"""The reference evaluation date of generated, example and test-case patients (the one place it is written)."""


@functools.cache
def _choice(options: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(options)


@functools.cache
def _int(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _around(marks: tuple[int, ...], low: int, high: int) -> tuple[int, ...]:
    """Each mark and one step either side of it, inside [low, high]."""
    values = sorted({v for m in marks for v in (m - 1, m, m + 1) if low <= v <= high})
    return tuple(values)


class _Draw:
    """Plain choices from strategies built once, so that a draw costs little and shrinks well."""

    __slots__ = ("as_of", "codes", "count", "fn")

    def __init__(self, draw: st.DrawFn, as_of: date, codes: Mapping[str, tuple[str, ...]]) -> None:
        self.fn = draw
        self.as_of = as_of
        self.codes = codes  # the ruleset's vocabularies: what the background and general draws pick from
        self.count = 0

    def draw(self, strategy: st.SearchStrategy[T]) -> T:
        # Each choice of a patient has its own label (its position), so that hypothesis's mutator, which
        # copies a choice over another one with the same label, does not spend most draws on patients
        # that differ from an earlier one in a choice that changes nothing.
        self.count += 1
        return self.fn(strategy, label=self.count)

    def pick(self, options: Sequence[T]) -> T:
        return cast(T, self.draw(_choice(tuple(options))))

    def num(self, low: int, high: int) -> int:
        return self.draw(_int(low, high))

    def chance(self, pct: int) -> bool:
        """True with about ``pct`` % probability; shrinks to False."""
        return self.draw(_int(0, 99)) >= 100 - pct

    def near(self, marks: tuple[int, ...], low: int, high: int, pct: int = 75) -> int:
        """On or one step either side of a threshold mark (``pct`` %), else anywhere in [low, high]."""
        close = _around(marks, low, high)
        if close and self.chance(pct):
            return self.pick(close)
        return self.num(low, high)

    def some(self, options: Sequence[T], low: int, high: int) -> list[T]:
        """Between ``low`` and ``high`` distinct options."""
        pool = list(options)
        out: list[T] = []
        for _ in range(self.num(low, min(high, len(pool)))):
            item = self.pick(pool)
            pool.remove(item)
            out.append(item)
        return out

    def ago(self, days: int) -> str:
        return (self.as_of - timedelta(days=max(0, days))).isoformat()

    def side(self, pct: int = 60) -> str | None:
        return self.pick(_LATERALITY) if self.chance(pct) else None

    def dates(self, n: int, low: int, high: int) -> list[int]:
        """``n`` distinct day offsets from [low, high] (a later one moves up a day), oldest first."""
        seen: set[int] = set()
        for _ in range(n):
            offset = self.num(low, high)
            while offset in seen:
                offset += 1
            seen.add(offset)
        return sorted(seen, reverse=True)


@dataclass
class _Ctx:
    """The knobs of one ``patients()`` call, and the document being built."""

    as_of: date
    region: str | None
    character: str | None
    prior_procedures: bool | None
    doc: dict[str, Any]
    opioid: bool = False  # the pathway wants an opioid in the background

    def region_of(self, d: _Draw, options: Sequence[str]) -> str:
        return self.region if self.region is not None else d.pick(options)

    def character_of(self, d: _Draw, options: Sequence[str]) -> str:
        return self.character if self.character is not None else d.pick(options)

    def stage(self, d: _Draw, stages: Sequence[str]) -> str:
        """A pathway stage; stage ``"none"`` (no prior procedure) is skipped with ``prior_procedures=True``
        and the only one with ``prior_procedures=False``."""
        if self.prior_procedures is False:
            return "none"
        if self.prior_procedures:
            stages = [s for s in stages if s != "none"] or list(stages)
        return d.pick(stages)

    def add(self, section: str, item: dict[str, Any]) -> dict[str, Any]:
        self.doc.setdefault(section, []).append(item)
        return item

    @property
    def care(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.doc.setdefault("conservative_care", {}))

    @property
    def demographics(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.doc.setdefault("demographics", {}))
