"""The project's own suite uses the ipm_cds pytest plugin (ipm_cds.testing.pytest_plugin) like any user.

The plugin's ``ipm-ci`` hypothesis profile is the default here; ``IPM_CDS_HYPOTHESIS_PROFILE=thorough``
(or ``--ipm-hypothesis-profile thorough``) runs 10,000 examples per property.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import ipm_cds
from ipm_cds.ruleset.loader import bundled_ruleset_path

AS_OF = date(2025, 6, 2)

# Lumbar axial pain after two positive blocks (an RFA candidate), on warfarin (a hold precaution).
RFA_PATIENT: dict[str, Any] = {
    "pain": [{"region": "lumbar", "character": "axial", "duration_weeks": 30, "nrs": 7, "odi_pct": 40}],
    "procedures": [
        {"kind": "facet_mbb", "region": "lumbar", "date": "2025-03-03", "relief_pct": 90},
        {"kind": "facet_mbb", "region": "lumbar", "date": "2025-04-07", "relief_pct": 85},
    ],
    "conservative_care": {"failed": True, "active_exercise_program": True},
    "medications": [{"agent": "warfarin"}],
}


def run_in_threads(work: Callable[[int], None], threads: int = 8) -> None:
    """Run ``work(0)`` .. ``work(threads - 1)`` at once with an aggressive switch interval (1e-5 s), so
    that threads interleave as often as they can; fails with every exception a thread raised."""
    errors: list[BaseException] = []

    def guarded(worker: int) -> None:
        try:
            work(worker)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        started = [threading.Thread(target=guarded, args=(w,)) for w in range(threads)]
        for t in started:
            t.start()
        for t in started:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Default to the plugin's fast, deterministic profile unless one was chosen."""
    if not (os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE") or config.getoption("--ipm-hypothesis-profile")):
        settings.load_profile("ipm-ci")


DURABLE_FIXTURES = frozenset({"durable", "ipm_durable_engine"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``durable`` every test that needs durable-rules (its fixture, or a ``"durable"`` parameter), so that
    an interpreter without it runs the rest with ``-m "not durable"`` (CI's Python 3.13 stage)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if DURABLE_FIXTURES & set(getattr(item, "fixturenames", ())) or "durable" in params:
            item.add_marker(pytest.mark.durable)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the bundled ruleset to edit (see test_ruleset_errors.edit)."""
    target = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), target)
    return target


@pytest.fixture(scope="session")
def ruleset(ipm_ruleset: ipm_cds.Ruleset) -> ipm_cds.Ruleset:
    return ipm_ruleset


@pytest.fixture(scope="session")
def durable(ipm_durable_engine: ipm_cds.Engine) -> ipm_cds.Engine:
    return ipm_durable_engine


@pytest.fixture(scope="session")
def python_engine(ipm_python_engine: ipm_cds.Engine) -> ipm_cds.Engine:
    return ipm_python_engine
