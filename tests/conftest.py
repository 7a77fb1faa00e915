"""The project's own suite uses the ipm_cds pytest plugin (ipm_cds.testing.pytest_plugin) like any user.

The plugin's ``ipm-ci`` hypothesis profile is the default here; ``IPM_CDS_HYPOTHESIS_PROFILE=thorough``
(or ``--ipm-hypothesis-profile thorough``) runs 10,000 examples per property.
"""

from __future__ import annotations

import os
from datetime import date

import pytest
from hypothesis import settings

import ipm_cds

AS_OF = date(2025, 6, 2)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Default to the plugin's fast, deterministic profile unless one was chosen."""
    if not (os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE") or config.getoption("--ipm-hypothesis-profile")):
        settings.load_profile("ipm-ci")


@pytest.fixture(scope="session")
def ruleset(ipm_ruleset: ipm_cds.Ruleset) -> ipm_cds.Ruleset:
    return ipm_ruleset


@pytest.fixture(scope="session")
def durable(ipm_engine: ipm_cds.Engine) -> ipm_cds.Engine:
    return ipm_engine


@pytest.fixture(scope="session")
def python_engine(ipm_python_engine: ipm_cds.Engine) -> ipm_cds.Engine:
    return ipm_python_engine
