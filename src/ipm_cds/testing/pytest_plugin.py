"""pytest plugin for suites that test ipm-cds rulesets (registered as the ``ipm_cds`` pytest11 entry point).

Fixtures: ``ipm_ruleset`` (the bundled ruleset, or the one given with ``--ipm-ruleset PATH``),
``ipm_engine`` (durable backend) and ``ipm_python_engine``, both under ``--ipm-profile`` (the ruleset's
default profile otherwise). Hypothesis profiles ``ipm-ci`` (fast, deterministic) and ``ipm-thorough``
(10,000 examples) are registered; choose one with ``--ipm-hypothesis-profile`` or the environment
variable ``IPM_CDS_HYPOTHESIS_PROFILE``. Without hypothesis installed, the fixtures still work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from ..engine.facade import Engine
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
        from hypothesis import HealthCheck, Phase, settings
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
        suppress_health_check=list(HealthCheck),
        phases=[p for p in Phase if p != Phase.explain],
    )
    settings.register_profile(
        "ipm-thorough", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
    )
    chosen = config.getoption("--ipm-hypothesis-profile") or os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE")
    if chosen:
        if chosen not in PROFILES:
            raise pytest.UsageError(f"unknown hypothesis profile {chosen!r}: use ci or thorough")
        settings.load_profile(PROFILES[chosen])


def pytest_report_header(config: pytest.Config) -> str:
    ruleset = config.getoption("--ipm-ruleset") or "bundled"
    chosen = config.getoption("--ipm-hypothesis-profile") or os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE") or "default"
    return f"ipm-cds: ruleset {ruleset}, hypothesis profile {chosen}"


@pytest.fixture(scope="session")
def ipm_ruleset(pytestconfig: pytest.Config) -> Ruleset:
    from ..ruleset.loader import load_ruleset

    path = pytestconfig.getoption("--ipm-ruleset")
    return load_ruleset(Path(path) if path else None)


def _engine(ruleset: Ruleset, profile: str | None, backend: Literal["durable", "python"]) -> Engine:
    """An engine whose repr names its ruleset, profile and backend (hypothesis prints the fixtures a
    failing test took: the report stays readable and the same on every run)."""
    from ..engine.facade import Engine

    class _Engine(Engine):
        def __repr__(self) -> str:
            manifest = self.ruleset.manifest
            return f"Engine({manifest.id} {manifest.version}, profile={self.profile}, backend={self.backend_name})"

    return _Engine(ruleset, profile=profile, backend=backend)


@pytest.fixture(scope="session")
def ipm_engine(ipm_ruleset: Ruleset, pytestconfig: pytest.Config) -> Engine:
    return _engine(ipm_ruleset, pytestconfig.getoption("--ipm-profile"), "durable")


@pytest.fixture(scope="session")
def ipm_python_engine(ipm_ruleset: Ruleset, pytestconfig: pytest.Config) -> Engine:
    return _engine(ipm_ruleset, pytestconfig.getoption("--ipm-profile"), "python")
