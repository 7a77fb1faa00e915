from __future__ import annotations

import os
from datetime import date

import pytest
from hypothesis import HealthCheck, settings

import ipm_cds

AS_OF = date(2025, 6, 2)

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
settings.register_profile("thorough", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def ruleset() -> ipm_cds.Ruleset:
    return ipm_cds.load_ruleset()


@pytest.fixture(scope="session")
def durable(ruleset: ipm_cds.Ruleset) -> ipm_cds.Engine:
    return ipm_cds.Engine(ruleset, backend="durable")


@pytest.fixture(scope="session")
def python_engine(ruleset: ipm_cds.Ruleset) -> ipm_cds.Engine:
    return ipm_cds.Engine(ruleset, backend="python")
