"""The MME is reported whenever an opioid is recorded (issue 14): the total, each agent with its CDC factor,
buprenorphine named as not counted, and an unknown total said to be unknown."""

from __future__ import annotations

from datetime import date

import pytest

import ipm_cds

AS_OF = date(2025, 6, 2)


def _messages(a: ipm_cds.Assessment, code: str) -> list[str]:
    return [al.message for al in a.alerts if al.code == code]


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_low_dosage_is_reported_with_the_factor_of_each_agent(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    patient = {
        "demographics": {"age_years": 50, "sex": "male"},
        "medications": [
            {"agent": "hydrocodone", "daily_dose": 20, "dose_unit": "mg", "indication": "pain"},
            {"agent": "fentanyl_transdermal", "daily_dose": 12, "dose_unit": "mcg_per_hour", "indication": "pain"},
            {"agent": "buprenorphine", "daily_dose": 8, "dose_unit": "mg", "indication": "pain"},
        ],
    }
    a = ipm_cds.Engine(ruleset, backend=backend).evaluate(patient, as_of=AS_OF)  # type: ignore[arg-type]
    (total,) = _messages(a, "opioid.mme.total")
    assert "48.8 MME/day" in total and "3 opioid(s)" in total and "1 of them not counted" in total
    agents = sorted(_messages(a, "opioid.mme.agent"))
    assert agents == [
        "Fentanyl transdermal: 12 mcg per hour x CDC factor 2.4 = 28.8 MME/day.",
        "Hydrocodone: 20 mg x CDC factor 1 = 20 MME/day.",
    ]
    (bup,) = _messages(a, "opioid.mme.not_counted")
    assert bup.startswith("Buprenorphine: not counted toward MME/day")
    assert not _messages(a, "opioid.mme.caution")  # below 50: reported, no dosage alert


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_an_unknown_total_is_reported_as_unknown(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    patient = {
        "demographics": {"age_years": 50, "sex": "male"},
        "medications": [
            {"agent": "oxycodone", "daily_dose": 10, "dose_unit": "mg", "indication": "pain"},
            {"agent": "morphine", "indication": "pain"},
        ],
    }
    a = ipm_cds.Engine(ruleset, backend=backend).evaluate(patient, as_of=AS_OF)  # type: ignore[arg-type]
    (total,) = _messages(a, "opioid.mme.total")
    assert "cannot be computed" in total and "15 MME/day" in total
    assert any(m.field == "medications.daily_dose" for m in a.missing_data)


def test_no_opioid_no_mme_report(ruleset: ipm_cds.Ruleset) -> None:
    patient = {"medications": [{"agent": "aspirin", "daily_dose": 81, "dose_unit": "mg", "indication": "pain"}]}
    a = ipm_cds.Engine(ruleset, backend="python").evaluate(patient, as_of=AS_OF)
    assert not [al for al in a.alerts if al.code.startswith("opioid.mme")]
    assert not [m for m in a.missing_data if m.field.startswith("medications.")]
