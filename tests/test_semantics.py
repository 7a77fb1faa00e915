"""Evaluation semantics: missing data, effective periods, summaries, labels, many medications."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import ipm_cds
from ipm_cds.cli import EXIT_PATIENT, main
from ipm_cds.ruleset.loader import bundled_ruleset_path

from .conftest import AS_OF

LUMBAR_RFA: dict[str, Any] = {
    "pain": [{"region": "lumbar", "character": "axial", "duration_weeks": 40, "nrs": 7, "odi_pct": 40}],
    "conservative_care": {"failed": True, "active_exercise_program": True},
    "procedures": [
        {"kind": "facet_mbb", "region": "lumbar", "levels": ["L4-L5"], "date": "2025-03-03", "relief_pct": 90},
        {"kind": "facet_mbb", "region": "lumbar", "levels": ["L4-L5"], "date": "2025-04-07", "relief_pct": 85},
    ],
}


def test_missing_data_is_reported_even_when_the_rule_fired_on_other_facts(durable: ipm_cds.Engine) -> None:
    """A third lumbar block without relief is undecided for the discordance rule, which fires in the neck."""
    patient = {
        **LUMBAR_RFA,
        "pain": [*LUMBAR_RFA["pain"], {"region": "cervical", "character": "axial", "duration_weeks": 40, "nrs": 6}],
        "procedures": [
            *LUMBAR_RFA["procedures"],
            {"kind": "facet_mbb", "region": "lumbar", "levels": ["L4-L5"], "date": "2025-05-05"},
            {"kind": "facet_mbb", "region": "cervical", "levels": ["C5-C6"], "date": "2025-03-03", "relief_pct": 90},
            {"kind": "facet_mbb", "region": "cervical", "levels": ["C5-C6"], "date": "2025-04-07", "relief_pct": 40},
        ],
    }
    a = durable.evaluate(patient, as_of=AS_OF)
    assert any(t.rule.startswith("facet.rfa.discordant@") for t in a.trace)
    missing = {(m.field, m.item) for m in a.missing_data}
    assert (
        "procedures.relief_pct",
        "procedure[kind=facet_mbb, region=lumbar, levels=L4-L5, date=2025-05-05]",
    ) in missing
    lumbar_rfa = next(c for c in a.candidates if c.intervention == "facet_rfa" and c.target.region == "lumbar")
    assert any("needs procedures.relief_pct" in check for check in lumbar_rfa.unresolved_checks)


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_missing_data_a_derivation_waits_for_on_behalf_of_a_safety_rule_is_safety(
    ruleset: ipm_cds.Ruleset, backend: str
) -> None:
    """Naproxen and no renal result: renal.impairment.lab (a derivation) waits for renal function, and the NSAID
    renal caution reads what it derives, so the entry is a safety rule's missing data; the BMI of a referral is not."""
    patient = {
        "demographics": {"age_years": 70, "sex": "male"},
        "medications": [{"agent": "naproxen", "daily_dose": 1000, "dose_unit": "mg", "indication": "pain"}],
    }
    a = ipm_cds.Engine(ruleset, backend=backend).evaluate(patient, as_of=AS_OF)  # type: ignore[arg-type]
    by_field = {m.field: m for m in a.missing_data}
    renal = by_field["labs[test=egfr|creatinine_clearance].value"]
    assert [r.split("@")[0] for r in renal.needed_by] == ["renal.impairment.lab"] and renal.safety
    assert not by_field["demographics.bmi"].safety
    # recorded, the same patient is asked nothing about renal function and the caution decides
    recorded = {**patient, "labs": [{"test": "egfr", "value": 24, "date": "2025-05-30"}]}
    b = ipm_cds.Engine(ruleset, backend=backend).evaluate(recorded, as_of=AS_OF)  # type: ignore[arg-type]
    assert "labs[test=egfr|creatinine_clearance].value" not in {m.field for m in b.missing_data}
    assert "safety.renal.nsaid" in {x.code for x in b.alerts}


def test_rule_outside_its_effective_period_does_not_fire(tmp_path: Path) -> None:
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    path = root / "rules" / "red_flags.yaml"
    text = path.read_text()
    path.write_text(
        text.replace(
            "    criteria: [RF-CES-01]\n",
            "    effective: {start: 2019-01-01, end: 2020-01-01}\n    criteria: [RF-CES-01]\n",
            1,
        )
    )
    engine = ipm_cds.Engine(ipm_cds.load_ruleset(root), backend="python")
    patient = {"red_flags": [{"code": "saddle_anesthesia", "onset_date": "2019-06-01", "deteriorating": True}]}
    inside = engine.evaluate(patient, as_of=date(2019, 6, 3))
    outside = engine.evaluate(patient, as_of=AS_OF)
    assert [al.code for al in inside.alerts] == ["red_flag.cauda_equina"]
    assert "red_flag.cauda_equina@1.1.0" not in {t.rule for t in outside.trace}
    assert outside.provenance.rules_inactive["red_flag.cauda_equina@1.1.0"] == "not in effect on 2025-06-02"


@pytest.mark.parametrize("backend", ["durable", "python"])
def test_hundred_medications_evaluate_linearly(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    """Regression: a pair rule over medications fired n*(n-1) times and hit the firing cap."""
    agents = sorted(ruleset.medications)
    meds = [{"agent": agents[i % len(agents)]} for i in range(100)]
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    a = engine.evaluate(
        {**LUMBAR_RFA, "medications": meds, "conditions": [{"code": "recent_coronary_stent"}]}, as_of=AS_OF
    )
    assert [c.intervention for c in a.candidates] == ["facet_rfa"]
    assert len(a.trace) < 1000


def test_medication_summary_counts_bleeding_risk_agents(durable: ipm_cds.Engine) -> None:
    one = durable.evaluate({**LUMBAR_RFA, "medications": [{"agent": "aspirin"}]}, as_of=AS_OF)
    two = durable.evaluate({**LUMBAR_RFA, "medications": [{"agent": "aspirin"}, {"agent": "sertraline"}]}, as_of=AS_OF)
    texts = lambda a: [p.text for c in a.candidates for p in c.precautions if p.kind == "antithrombotic"]  # noqa: E731
    assert texts(one) == [
        "Aspirin: usually continued for this low-risk procedure; shared assessment if other bleeding "
        "risk factors. [ASRA 2018 table: V]"
    ]
    assert texts(two)[0].startswith(
        "Aspirin: whether to hold is a shared decision with the prescriber for this "
        "intermediate-risk procedure; restart 24 h after."
    )
    assert texts(two)[0].endswith(
        "Category raised from low to intermediate: patient at high bleeding risk (AC-UPGRADE-01)."
    )


def test_mme_is_computed_from_the_catalogue_table(ruleset: ipm_cds.Ruleset) -> None:
    from ipm_cds.model.facts.normalise import normalise
    from ipm_cds.model.patient import parse_patient

    context = ruleset.normalise_context()
    if not any(m.mme_factor for m in ruleset.medications.values()):
        pytest.fail("the medication catalogue has no MME factors")
    case = parse_patient(
        {
            "medications": [
                {"agent": "oxycodone", "daily_dose": 20, "dose_unit": "mg"},
                {"agent": "buprenorphine", "daily_dose": 8, "dose_unit": "mg"},
            ]
        }
    )
    facts = {f.type: f for f in normalise(case, AS_OF, context)}
    oxy = ruleset.medications["oxycodone"]
    assert oxy.mme_factor is not None
    assert facts["opioid_summary"].values == {
        "total_mme_per_day": round(20 * oxy.mme_factor, 6),
        "known_mme_per_day": round(20 * oxy.mme_factor, 6),
        "opioid_count": 2,
        "uncounted_count": 1,
    }
    case = parse_patient(
        {"medications": [{"agent": "oxycodone", "daily_dose": 20, "dose_unit": "mg"}, {"agent": "morphine"}]}
    )
    summary = {f.type: f for f in normalise(case, AS_OF, context)}["opioid_summary"].values
    assert "total_mme_per_day" not in summary  # unknown: never read as low
    assert summary["known_mme_per_day"] == round(20 * oxy.mme_factor, 6)


def test_fentanyl_patch_dose_must_be_in_mcg_per_hour(durable: ipm_cds.Engine) -> None:
    with pytest.raises(ipm_cds.PatientDataError) as info:
        durable.evaluate(
            {"medications": [{"agent": "fentanyl_transdermal", "daily_dose": 25, "dose_unit": "mg"}]}, as_of=AS_OF
        )
    assert info.value.problems[0].field == "medications[0].dose_unit"
    assert "counted in mcg_per_hour" in info.value.problems[0].message


def test_cli_prints_every_patient_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pain:\n  - {region: lumbar, character: axial, nrs: 11, odi_pct: 101}\n")
    assert main(["evaluate", str(bad)]) == EXIT_PATIENT
    assert capsys.readouterr().err.splitlines() == [
        "ipm-cds: invalid patient data: pain[0].nrs: Input should be less than or equal to 10",
        "ipm-cds: invalid patient data: pain[0].odi_pct: Input should be less than or equal to 100",
    ]
