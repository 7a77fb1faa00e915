"""Where a strategy's ruleset comes from: the bundled one, a folder (loaded once), or a function; and its
vocabularies in the hashable form the cached strategies are keyed by."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from ...ruleset.loader import Ruleset

RulesetSource = Ruleset | str | os.PathLike[str] | Callable[[], Ruleset]
"""A ruleset, or where to get it when the strategy is first drawn from (a folder, or a function)."""


@functools.cache
def _bundled() -> Ruleset:
    from ...ruleset.loader import load_ruleset

    return load_ruleset(with_tests=False)


def _codes(ruleset: Ruleset) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ruleset's vocabularies, hashable (strategies are cached by their arguments)."""
    return tuple((name, tuple(c.code for c in v.codes)) for name, v in sorted(ruleset.vocabularies.items()))


def _ruleset(source: RulesetSource | None) -> Ruleset:
    """The ruleset a strategy was given: loaded now (a folder, once per session), or made by a function."""
    if isinstance(source, Ruleset):
        return source
    if source is None or isinstance(source, str | os.PathLike):
        return _load(None if source is None else os.fspath(os.path.abspath(source)))
    made = source()
    if not isinstance(made, Ruleset):
        raise TypeError(f"the ruleset function returned {type(made).__name__}, not a Ruleset")
    return made


@functools.cache
def _load(path: str | None) -> Ruleset:
    from ...ruleset.loader import load_ruleset

    return load_ruleset(path, with_tests=False)
