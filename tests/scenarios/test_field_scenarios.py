"""Guideline scenarios for the patient-model fields of issue 14 (``fields.yaml``): renal function, hospice and
end-of-life prognosis, medication for OUD in place, the STarT Back category, minor trauma. Same expectation keys
and rules as ``test_guideline_scenarios.py``: written from the cited passage before being run, never adjusted to
the library's output; each runs on both backends under every profile it names."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

import ipm_cds

from .test_guideline_scenarios import ALLOWED_KEYS, BACKENDS, EXPECT_KEYS, _comparable, _engine, failed_checks

SCENARIOS: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "fields.yaml").read_text(encoding="utf-8"))


def test_field_scenario_file_is_well_formed() -> None:
    ids = [s["id"] for s in SCENARIOS]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    for s in SCENARIOS:
        assert set(s) <= ALLOWED_KEYS and set(s["expect"]) <= EXPECT_KEYS, s["id"]
        assert s["source"] and s["passage"] and s["profiles"], s["id"]
        assert "known_gap" not in s, s["id"]
        ipm_cds.parse_patient(s["patient"])


@pytest.mark.parametrize(
    ("scenario", "profile", "backend"),
    [pytest.param(s, p, b, id=f"{s['id']}-{p}-{b}") for s in SCENARIOS for p in s["profiles"] for b in BACKENDS],
)
def test_field_scenario(scenario: dict[str, Any], profile: str, backend: str) -> None:
    as_of = date.fromisoformat(str(scenario.get("as_of", "2025-06-02")))
    assessment = _engine(profile, backend).evaluate(scenario["patient"], as_of=as_of)
    failed = failed_checks(assessment, scenario["expect"])
    assert failed == [], f"{scenario['id']} ({scenario['source']}): {failed}; got {assessment.codes()}"


def test_field_scenarios_agree_on_both_backends() -> None:
    for s in SCENARIOS:
        as_of = date.fromisoformat(str(s.get("as_of", "2025-06-02")))
        for profile in s["profiles"]:
            python, durable = (_engine(profile, b).evaluate(s["patient"], as_of=as_of) for b in BACKENDS)
            assert _comparable(python) == _comparable(durable), (s["id"], profile)
