"""pytest plugin for suites that test ipm-cds rulesets (registered as the ``ipm_cds`` pytest11 entry point).

Fixtures: ``ipm_ruleset`` (the bundled ruleset, the one given with ``--ipm-ruleset PATH``, or each folder of
an indirect parametrization), ``ipm_engine`` (``backend="auto"``: durable-rules where it can be imported,
the python backend otherwise), ``ipm_python_engine`` and ``ipm_durable_engine``, all under ``--ipm-profile``
(the ruleset's default profile otherwise); and for any number of rulesets, ``ipm_rulesets(path)`` and
``ipm_engines(ruleset_or_path, profile, backend, parameters)``, each ruleset loaded and each engine built
once per session. Hypothesis profiles ``ipm-ci`` (fast, deterministic) and ``ipm-thorough``
(10,000 examples) are registered; choose one with ``--ipm-hypothesis-profile`` or the environment
variable ``IPM_CDS_HYPOTHESIS_PROFILE``. Without hypothesis installed, the fixtures still work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..engine.facade import BackendChoice, Engine
    from ..ruleset.loader import Ruleset

PROFILES = {"ci": "ipm-ci", "thorough": "ipm-thorough"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipm-cds")
    group.addoption("--ipm-ruleset", default=None, help="ruleset folder for the ipm_* fixtures (default: bundled)")
    group.addoption("--ipm-profile", default=None, help="profile for the ipm_engine fixtures")
    group.addoption(
        "--ipm-hypothesis-profile",
        default=None,
        choices=sorted(PROFILES),
        help="hypothesis profile: ci (fast) or thorough (10,000 examples per property)",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        from hypothesis import Phase, settings
    except ImportError:  # pragma: no cover - hypothesis is optional for the fixtures
        return
    # ci: the same examples and the same report on every run and every machine (no example database, which
    # would replay failures found by earlier runs; no explain phase, which lists the absolute paths of the
    # lines that failing examples ran)
    settings.register_profile(
        "ipm-ci",
        max_examples=100,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[p for p in Phase if p != Phase.explain],
    )
    # Health checks stay on in both profiles: a strategy that filters too much, or data too large or too slow
    # to generate, is a defect of the strategy to fix, not to hide.
    settings.register_profile("ipm-thorough", max_examples=10_000, deadline=None)
    chosen = config.getoption("--ipm-hypothesis-profile") or os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE")
    if chosen:
        if chosen not in PROFILES:
            raise pytest.UsageError(f"unknown hypothesis profile {chosen!r}: use ci or thorough")
        settings.load_profile(PROFILES[chosen])


def pytest_report_header(config: pytest.Config) -> str:
    ruleset = config.getoption("--ipm-ruleset") or "bundled"
    chosen = config.getoption("--ipm-hypothesis-profile") or os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE") or "default"
    return f"ipm-cds: ruleset {ruleset}, hypothesis profile {chosen}"


class RulesetCache:
    """Rulesets loaded once per session, by folder (``None``: the bundled ruleset): the ``ipm_rulesets`` fixture."""

    def __init__(self) -> None:
        self._loaded: dict[str | None, Ruleset] = {}

    def __call__(self, path: str | os.PathLike[str] | None = None) -> Ruleset:
        from ..ruleset.loader import load_ruleset

        key = None if path is None else str(Path(path).resolve())
        if key not in self._loaded:
            self._loaded[key] = load_ruleset(None if key is None else Path(key))
        return self._loaded[key]

    def __repr__(self) -> str:
        return f"<ipm_rulesets: {len(self._loaded)} loaded>"


class EngineCache:
    """Engines built once per session, by ruleset, profile, backend and parameters: the ``ipm_engines`` fixture.

    ``ipm_engines(ruleset_or_path=None, profile=None, backend="auto", parameters=None)``; a path (or None, the
    bundled ruleset) is loaded through ``ipm_rulesets``.
    """

    def __init__(self, rulesets: RulesetCache) -> None:
        self._rulesets = rulesets
        self._built: dict[tuple[object, ...], Engine] = {}

    def __call__(
        self,
        ruleset: Ruleset | str | os.PathLike[str] | None = None,
        profile: str | None = None,
        backend: BackendChoice = "auto",
        parameters: Mapping[str, int | float] | None = None,
    ) -> Engine:
        from ..engine.facade import Engine
        from ..ruleset.loader import Ruleset

        loaded = ruleset if isinstance(ruleset, Ruleset) else self._rulesets(ruleset)
        key = (id(loaded), profile, backend, tuple(sorted((parameters or {}).items())))
        if key not in self._built:
            self._built[key] = Engine(loaded, profile=profile, backend=backend, parameters=parameters)
        return self._built[key]

    def __repr__(self) -> str:
        return f"<ipm_engines: {len(self._built)} built>"


@pytest.fixture(scope="session")
def ipm_rulesets() -> RulesetCache:
    """A function ``path -> Ruleset`` (``None``: the bundled one), each ruleset loaded once per session."""
    return RulesetCache()


@pytest.fixture(scope="session")
def ipm_engines(ipm_rulesets: RulesetCache) -> EngineCache:
    """A function ``(ruleset or path, profile, backend, parameters) -> Engine``, each engine built once."""
    return EngineCache(ipm_rulesets)


@pytest.fixture(scope="session")
def ipm_ruleset(request: pytest.FixtureRequest, pytestconfig: pytest.Config, ipm_rulesets: RulesetCache) -> Ruleset:
    """The ruleset under test: ``--ipm-ruleset PATH``, the bundled one by default, or each folder of an indirect
    parametrization (``@pytest.mark.parametrize("ipm_ruleset", [path, ...], indirect=True)``)."""
    path = getattr(request, "param", None) or pytestconfig.getoption("--ipm-ruleset")
    return ipm_rulesets(path)


@pytest.fixture(scope="session")
def ipm_engine(ipm_ruleset: Ruleset, pytestconfig: pytest.Config, ipm_engines: EngineCache) -> Engine:
    """An engine on ``backend="auto"``: durable-rules where it can be imported, the python backend otherwise."""
    return ipm_engines(ipm_ruleset, pytestconfig.getoption("--ipm-profile"), "auto")


@pytest.fixture(scope="session")
def ipm_python_engine(ipm_ruleset: Ruleset, pytestconfig: pytest.Config, ipm_engines: EngineCache) -> Engine:
    """An engine on the plain-Python backend."""
    return ipm_engines(ipm_ruleset, pytestconfig.getoption("--ipm-profile"), "python")


@pytest.fixture(scope="session")
def ipm_durable_engine(ipm_ruleset: Ruleset, pytestconfig: pytest.Config, ipm_engines: EngineCache) -> Engine:
    """An engine on durable-rules; raises :class:`~ipm_cds.errors.BackendUnavailableError` where it cannot run."""
    return ipm_engines(ipm_ruleset, pytestconfig.getoption("--ipm-profile"), "durable")
