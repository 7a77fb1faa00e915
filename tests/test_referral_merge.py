"""One referral per target (issue 14): reasons merged, the highest urgency wins, every rule named."""

from __future__ import annotations

from datetime import date

import pytest

import ipm_cds

AS_OF = date(2025, 6, 2)

CAUDA_AND_FEVER = {
    "demographics": {"age_years": 47, "sex": "male", "bmi": 26.0, "tobacco_use": "never"},
    "pain": [
        {
            "region": "lumbar",
            "laterality": "bilateral",
            "character": "radicular",
            "duration_weeks": 3,
            "nrs": 8,
            "is_index": True,
            "worsening": True,
        }
    ],
    "conservative_care": {"active_exercise_program": True},
    "red_flags": [
        {"code": "saddle_anesthesia", "onset_date": "2025-05-30"},
        {"code": "fever", "onset_date": "2025-05-31"},
    ],
}

OUD_AND_ORT = {
    "demographics": {"age_years": 45, "sex": "male", "bmi": 26.0, "tobacco_use": "never"},
    "conditions": [{"code": "opioid_use_disorder"}],
    "medications": [{"agent": "oxycodone", "daily_dose": 20, "dose_unit": "mg", "indication": "pain"}],
    "screenings": [{"instrument": "ort", "score": 9, "date": "2025-05-20"}],
}


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_two_red_flags_give_one_emergency_referral_with_both_reasons(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    a = ipm_cds.Engine(ruleset, backend=backend).evaluate(CAUDA_AND_FEVER, as_of=AS_OF)  # type: ignore[arg-type]
    targets = [r.to for r in a.referrals]
    assert len(targets) == len(set(targets))
    (ed,) = [r for r in a.referrals if r.to == "emergency_department"]
    assert ed.urgency == "emergency"
    assert len(ed.reason.split("\n")) >= 2
    assert {r.split("@")[0] for r in ed.rules} >= {"red_flag.cauda_equina", "red_flag.spinal_infection.fever"}
    assert ed.basis.rule in ed.rules


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_the_highest_urgency_wins_and_leads_the_reasons(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    a = ipm_cds.Engine(ruleset, backend=backend).evaluate(OUD_AND_ORT, as_of=AS_OF)  # type: ignore[arg-type]
    (am,) = [r for r in a.referrals if r.to == "addiction_medicine"]
    assert am.urgency == "soon"
    assert am.basis.rule.startswith("opioid.oud@")
    assert len(am.rules) == 2
    first = am.reason.split("\n")[0]
    assert "ORT" not in first  # the decisive (soon) reason comes first, the routine ORT one after it
