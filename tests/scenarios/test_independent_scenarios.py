"""Independent guideline scenarios (``independent.yaml``): written from the passages of
``/work/shared/clinical/criteria.md`` and its primary sources without reading the rule files or the rules' own
tests, and committed before they were first run. Same expectation keys and known-gap rules as
``test_guideline_scenarios.py``, plus three checks of this file:

- ``alert_count``: ``{code: n}``, exactly n alerts carry that code (one alert per decision, per syndrome);
- ``alert_mentions``: ``{code: [texts]}``, one alert with that code mentions every text (case-insensitive);
- ``missing_safety``: ``[texts]``, a missing-data field containing the text is flagged as a safety entry.

Each scenario runs on both backends under every profile it names. A scenario the library disagrees with carries
``known_gap`` and ``gap_checks``; the test then asserts that exactly those checks still fail (see GAPS.md).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

import ipm_cds
from ipm_cds import Assessment

from .test_guideline_scenarios import (
    ALLOWED_KEYS,
    BACKENDS,
    EXPECT_KEYS,
    _comparable,
    _engine,
    assert_outcome,
    failed_checks,
)

SCENARIOS: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "independent.yaml").read_text(encoding="utf-8")
)
EXTRA_KEYS = {"alert_count", "alert_mentions", "missing_safety"}


def independent_failed_checks(assessment: Assessment, expect: dict[str, Any]) -> list[str]:
    """The shared checks, then this file's three extra ones, each failure by a stable id."""
    failed = failed_checks(assessment, {k: v for k, v in expect.items() if k not in EXTRA_KEYS})
    for code, count in (expect.get("alert_count") or {}).items():
        if sum(1 for a in assessment.alerts if a.code == code) != count:
            failed.append(f"alert_count:{code}={count}")
    for code, texts in (expect.get("alert_mentions") or {}).items():
        messages = [a.message.lower() for a in assessment.alerts if a.code == code]
        if not any(all(t.lower() in m for t in texts) for m in messages):
            failed.append(f"alert_mentions:{code}")
    for text in expect.get("missing_safety", []):
        if not any(text in m.field and m.safety for m in assessment.missing_data):
            failed.append(f"missing_safety:{text}")
    return failed


def _as_of(scenario: dict[str, Any]) -> date:
    return date.fromisoformat(str(scenario.get("as_of", "2025-06-02")))


def test_independent_scenario_file_is_well_formed() -> None:
    ids = [s["id"] for s in SCENARIOS]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    for s in SCENARIOS:
        assert set(s) <= ALLOWED_KEYS, (s["id"], set(s) - ALLOWED_KEYS)
        assert set(s["expect"]) <= EXPECT_KEYS | EXTRA_KEYS, (s["id"], set(s["expect"]) - EXPECT_KEYS - EXTRA_KEYS)
        assert s["source"] and s["passage"] and s["profiles"], s["id"]
        assert ("known_gap" in s) == ("gap_checks" in s), s["id"]
        ipm_cds.parse_patient(s["patient"])


@pytest.mark.parametrize(
    ("scenario", "profile", "backend"),
    [pytest.param(s, p, b, id=f"{s['id']}-{p}-{b}") for s in SCENARIOS for p in s["profiles"] for b in BACKENDS],
)
def test_independent_scenario(scenario: dict[str, Any], profile: str, backend: str) -> None:
    assessment = _engine(profile, backend).evaluate(scenario["patient"], as_of=_as_of(scenario))
    assert_outcome(scenario, profile, independent_failed_checks(assessment, scenario["expect"]), assessment)


def test_independent_scenarios_agree_on_both_backends() -> None:
    for s in SCENARIOS:
        for profile in s["profiles"]:
            python, durable = (_engine(profile, b).evaluate(s["patient"], as_of=_as_of(s)) for b in BACKENDS)
            assert _comparable(python) == _comparable(durable), (s["id"], profile)
