"""The testing kit itself: strategies reach what they promise, invariants catch broken rulesets."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable

import ipm_cds
from ipm_cds.model.facts.normalise import normalise
from ipm_cds.model.patient import PatientCase
from ipm_cds.ruleset.loader import bundled_ruleset_path
from ipm_cds.testing import invariants
from ipm_cds.testing.boundaries import Threshold, thresholds
from ipm_cds.testing.coverage import format_report, rule_coverage
from ipm_cds.testing.strategies import (
    SPINE,
    boundary_patients,
    patients,
    raw_patient_documents,
    with_requested,
    with_series,
)

from .conftest import AS_OF
from .test_properties import at_least


def sides_reached(ruleset: ipm_cds.Ruleset, threshold: Threshold, draws: int = 40) -> set[str]:
    """Which sides of ``threshold`` boundary patients aimed at it reach: a search for a patient with a
    fact on each side, stopped as soon as one is found (deterministic, at most ``draws`` patients each)."""
    context = ruleset.normalise_context()
    strategy = boundary_patients(ruleset, profile=threshold.profile, targets=[threshold])

    def sides(patient: PatientCase) -> set[str]:
        out = set()
        for fact in normalise(patient, AS_OF, context):
            actual = fact.values.get(threshold.field)
            if (
                fact.type == threshold.fact_type
                and isinstance(actual, int | float)
                and not isinstance(actual, bool)
                and all(fact.values.get(k) == v for k, v in threshold.selectors)
            ):
                out.add(threshold.side(actual))
        return out

    reached: set[str] = set()
    for side in ("below", "above"):
        try:
            find(
                strategy,
                lambda patient, side=side: side in sides(patient),
                settings=settings(
                    max_examples=draws,
                    derandomize=True,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                ),
            )
            reached.add(side)
        except (NoSuchExample, Unsatisfiable):
            pass
    return reached


def test_boundary_patients_reach_both_sides_of_every_threshold(ruleset: ipm_cds.Ruleset) -> None:
    for profile in ruleset.manifest.profiles:
        found = thresholds(ruleset, profile)
        assert found, f"profile {profile}: no threshold"
        missing = {
            (t.fact_type, t.field, t.op, t.value, t.selectors): seen
            for t in found
            if (seen := sides_reached(ruleset, t)) != {"below", "above"}
        }
        assert not missing, f"profile {profile}: thresholds not reached on both sides: {missing}"


# Draws of patients() that must fire every active rule of the bundled ruleset under every profile. The full
# measurement (10,000 draws, the number the docs record) is `python benchmarks/rule_coverage.py`.
COVERAGE_DRAWS = 2000


def test_patients_fire_every_active_rule_of_the_bundled_ruleset() -> None:
    ruleset = ipm_cds.load_ruleset()
    reports = rule_coverage(ruleset, draws=COVERAGE_DRAWS)
    assert set(reports) == {"cms_lcd", "society_consensus", "nice"}
    # the rules that judge requested procedures fire for patients with_requested (the same patients, with orders)
    ordered = rule_coverage(ruleset, draws=COVERAGE_DRAWS, strategy=with_requested(ruleset=ruleset))
    # the response rules fire for patients with_series (the same patients, with dated scores and MME)
    serial = rule_coverage(ruleset, draws=COVERAGE_DRAWS, strategy=with_series(ruleset=ruleset))
    # the coronary-stent timing rules fire for patients with a stent and orders (fewer draws: only they need it)
    stented = rule_coverage(ruleset, draws=COVERAGE_DRAWS // 4, strategy=with_requested(ruleset=ruleset, stent_pct=100))
    # a repeat judged from a series needs a patient who meets the pathway's indication and a series after its
    # latest procedure: series over each repeatable pathway's own patients (fewer draws: only they need it)
    pathways = [
        rule_coverage(
            ruleset,
            draws=COVERAGE_DRAWS // 4,
            strategy=with_series(patients(pathway=pathway, ruleset=ruleset), ruleset=ruleset),
        )
        for pathway in ("facet", "esi", "sij", "genicular", "neuromodulation")
    ]
    for profile, report in reports.items():
        report.fired.update(ordered[profile].fired)
        report.fired.update(stented[profile].fired)
        report.fired.update(serial[profile].fired)
        for extra in pathways:
            report.fired.update(extra[profile].fired)
    never = {profile: report.never_fired for profile, report in reports.items() if report.never_fired}
    assert not never, f"active rules that {COVERAGE_DRAWS} patients never fired:\n{format_report(reports)}"
    for report in reports.values():
        assert report.draws == COVERAGE_DRAWS and len(report.active) > 200


@at_least(300)
@given(patients())
def test_patients_are_coherent(ruleset: ipm_cds.Ruleset, patient: PatientCase) -> None:
    """Dates on or before as_of, relief no longer than the time since, doses in the unit of the MME table,
    pregnancy only in a woman, one index pain."""
    doc = patient.model_dump(mode="python")
    for section in ("procedures", "imaging", "labs", "screenings", "red_flags", "pain"):
        for item in doc[section]:
            for key in ("date", "onset_date"):
                assert item.get(key) is None or item[key] <= AS_OF, (section, item)
    for proc in patient.procedures:
        if proc.relief_duration_weeks is not None:
            assert proc.relief_duration_weeks * 7 <= (AS_OF - proc.date).days, proc
    for med in patient.medications:
        info = ruleset.medications[med.agent]
        if med.daily_dose is not None and info.mme_dose_unit:
            assert med.dose_unit == info.mme_dose_unit, med
    if patient.demographics.pregnant:
        assert patient.demographics.sex == "female"
    assert sum(p.is_index for p in patient.pain) <= 1 and patient.pain


def _classes(ruleset: ipm_cds.Ruleset, patient: PatientCase) -> set[str]:
    out = set()
    for med in patient.medications:
        info = ruleset.medications[med.agent]
        out.add(
            "antithrombotic" if info.antithrombotic else info.drug_class.replace("opioid_partial_agonist", "opioid")
        )
    return out


KNOBS: list[tuple[dict[str, object], Callable[[ipm_cds.Ruleset, PatientCase], object]]] = [
    ({"pathway": "sij"}, lambda rs, p: p.pain[0].region == "sacroiliac"),
    ({"pathway": "esi", "max_pain": 1}, lambda rs, p: len(p.pain) == 1 and p.pain[0].region in SPINE),
    ({"region": "knee"}, lambda rs, p: all(x.region == "knee" for x in p.pain)),
    ({"character": "cancer"}, lambda rs, p: all(x.character == "cancer" for x in p.pain)),
    ({"red_flags": True}, lambda rs, p: p.red_flags),
    ({"red_flags": False}, lambda rs, p: not p.red_flags),
    ({"anticoagulants": True}, lambda rs, p: "antithrombotic" in _classes(rs, p)),
    ({"anticoagulants": False, "opioids": False}, lambda rs, p: not {"antithrombotic", "opioid"} & _classes(rs, p)),
    ({"opioids": True}, lambda rs, p: "opioid" in _classes(rs, p)),
    ({"prior_procedures": True}, lambda rs, p: p.procedures),
    ({"prior_procedures": False}, lambda rs, p: not p.procedures),
]


@pytest.mark.parametrize(("knobs", "holds"), KNOBS, ids=[str(k) for k, _ in KNOBS])
def test_knobs_steer_the_draw(
    ruleset: ipm_cds.Ruleset, knobs: dict[str, Any], holds: Callable[[ipm_cds.Ruleset, PatientCase], object]
) -> None:
    @settings(max_examples=40, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(patients(**knobs))
    def check(patient: PatientCase) -> None:
        assert holds(ruleset, patient), patient.model_dump_json(exclude_defaults=True)

    check()


def test_unknown_knob_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown pathway 'spine'"):
        patients(pathway="spine")
    with pytest.raises(ValueError, match="unknown region"):
        patients(region="elbow")


@at_least(300)
@given(raw_patient_documents())
def test_hostile_documents_are_rejected_or_evaluated(durable: ipm_cds.Engine, document: object) -> None:
    invariants.assert_rejects_or_evaluates(durable, document, AS_OF)


@given(
    patients(prior_procedures=True),
    st.sampled_from(
        [
            {"red_flags": [{"code": "saddle_anesthesia", "deteriorating": True}]},
            {"red_flags": [{"code": "bladder_dysfunction"}]},
            {"conditions": [{"code": "active_systemic_infection"}]},
            {"conditions": [{"code": "local_infection_at_site"}]},
        ]
    ),
)
def test_adding_a_red_flag_or_contraindication_never_adds_a_candidate(
    durable: ipm_cds.Engine, patient: PatientCase, addition: dict[str, list[dict[str, object]]]
) -> None:
    invariants.assert_adding_never_adds_candidates(durable, patient, AS_OF, addition)


@given(patients(prior_procedures=True))
def test_more_relief_never_removes_a_candidate(durable: ipm_cds.Engine, patient: PatientCase) -> None:
    invariants.assert_more_relief_never_removes(durable, patient, AS_OF)


def test_there_are_unread_fields_to_vary(durable: ipm_cds.Engine) -> None:
    assert invariants.unread_patient_fields(durable), "every field is read: the relation tests nothing"


@given(patients(), st.data())
def test_changing_an_unread_field_changes_nothing(
    durable: ipm_cds.Engine, patient: PatientCase, data: st.DataObject
) -> None:
    field = data.draw(st.sampled_from(invariants.unread_patient_fields(durable)))
    value = data.draw(st.one_of(st.booleans(), st.integers(0, 50)))
    invariants.assert_unread_field_changes_nothing(durable, patient, AS_OF, field, value)


def test_invariants_catch_a_red_flag_written_as_a_plain_alert(tmp_path: Path) -> None:
    """A deliberately broken ruleset: the CES rule raises an alert instead of a red flag, so nothing
    suppresses elective candidates. The red-flag invariant finds a patient that shows it."""
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    path = root / "rules" / "red_flags.yaml"
    text = path.read_text()
    broken = text.replace(
        "      - red_flag:\n          code: cauda_equina\n",
        "      - alert:\n          code: red_flag.cauda_equina\n          severity: critical\n",
        1,
    )
    assert broken != text
    path.write_text(broken)
    engine = ipm_cds.Engine(ipm_cds.load_ruleset(root), backend="python")

    def violates(patient: PatientCase) -> bool:
        try:
            invariants.assert_red_flag_dominance(engine, engine.evaluate(patient, as_of=AS_OF))
        except AssertionError as exc:  # an elective referral left beside the flag is caught too; look for a candidate
            return "elective candidates" in str(exc)
        return False

    example = find(
        patients(pathway="facet", red_flags=True, prior_procedures=True),
        violates,
        settings=settings(max_examples=5000, database=None, derandomize=True, suppress_health_check=list(HealthCheck)),
    )
    with pytest.raises(AssertionError, match="elective candidates despite a red flag"):
        invariants.assert_red_flag_dominance(engine, engine.evaluate(example, as_of=AS_OF))
    # the same patient is safe under the intact ruleset
    intact = ipm_cds.Engine(ipm_cds.load_ruleset(), backend="python")
    invariants.assert_red_flag_dominance(intact, intact.evaluate(example, as_of=AS_OF))


def test_red_flag_invariant_checks_the_deferred_referrals(durable: ipm_cds.Engine) -> None:
    """Elective referrals (physical therapy) wait for a red flag: the invariant refuses an assessment that
    offers one beside a red flag, and one that defers a referral with no red flag."""
    patient = {
        "pain": [{"region": "lumbar", "character": "axial", "duration_weeks": 20, "nrs": 7, "is_index": True}],
        "conservative_care": {"active_exercise_program": False},
        "red_flags": [{"code": "saddle_anesthesia", "onset_date": "2025-05-30", "deteriorating": True}],
    }
    assessment = durable.evaluate(patient, as_of=AS_OF)
    invariants.assert_red_flag_dominance(durable, assessment)
    assert [d.referral.to for d in assessment.deferred_referrals] == ["physical_therapy"]
    offered = assessment.model_copy(
        update={
            "referrals": [*assessment.referrals, *(d.referral for d in assessment.deferred_referrals)],
            "deferred_referrals": [],
        }
    )
    with pytest.raises(AssertionError, match="elective referrals despite a red flag"):
        invariants.assert_red_flag_dominance(durable, offered)
    no_flag = assessment.model_copy(update={"alerts": [a for a in assessment.alerts if a.severity != "critical"]})
    with pytest.raises(AssertionError, match="referrals deferred with no red flag"):
        invariants.assert_red_flag_dominance(durable, no_flag)
