"""FHIR R4 in: the example Bundles and their native twins, the code maps, what is reported, invalid FHIR."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.interop.fhir import (
    FhirInputError,
    FhirMapping,
    _shares,
    ordered_interventions,
    prefetch_from_bundle,
    prefetch_templates,
    read_bundle,
    read_fhir,
    read_prefetch,
)
from ipm_cds.interop.maps import load_maps
from ipm_cds.interop.series import OUTCOME_MEASURE_SYSTEM, instrument_codes
from ipm_cds.patientfile import read_patient_document

AS_OF = date(2025, 6, 2)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "fhir"
BUNDLES = sorted(EXAMPLES.glob("*.json"))
# What a coded example cannot map, by design: a parenteral opioid (no CDC factor: agent read, dose not).
EXPECTED_UNMAPPED = {
    "coded_hydromorphone": {"MedicationRequest/coded-hydromorphone-hm-inj": "partial"},
}

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
IPM = "https://ipm-cds.invalid/fhir"


def cs(name: str) -> str:
    return f"{IPM}/CodeSystem/{name}"


def ext(name: str, **value: Any) -> dict[str, Any]:
    return {"url": f"{IPM}/StructureDefinition/{name}", **value}


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def bundle(*resources: dict[str, Any], patient: dict[str, Any] | None = None) -> dict[str, Any]:
    pat = patient if patient is not None else {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in ([pat] if pat else []) + list(resources)],
    }


def obs(rid: str, code: dict[str, Any], **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": value.pop("status", "final"),
        "code": code,
        "subject": {"reference": "Patient/p1"},
        **value,
    }


def pain(rid: str = "c1", code: str = "M54.50", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        "code": cc(ICD, code),
        "subject": {"reference": "Patient/p1"},
        **extra,
    }


def med(rid: str, codings: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": extra.pop("status", "active"),
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": s, "code": c} for s, c in codings]},
        "subject": {"reference": "Patient/p1"},
        **extra,
    }


def proc(rid: str, codings: list[tuple[str, str]], region: str | None = "lumbar", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": rid,
        "status": extra.pop("status", "completed"),
        "code": {"coding": [{"system": s, "code": c} for s, c in codings]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": extra.pop("performedDateTime", "2025-03-03"),
        **extra,
    }
    if region:
        out["bodySite"] = [cc(cs("body-region"), region)]
    return out


def kinds(mapping: FhirMapping) -> dict[str, str]:
    return {u.resource: u.kind for u in mapping.unmapped}


def canonical(case: ipm_cds.PatientCase) -> str:
    """A patient document with every list sorted: lists are unordered in the patient model."""
    data = case.model_dump(mode="json", exclude_defaults=True)
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
    return json.dumps(data, sort_keys=True)


# -- the examples --------------------------------------------------------------------------------------


def test_there_is_a_bundle_per_pathway() -> None:
    names = {p.stem for p in BUNDLES}
    assert {"facet_rfa", "cauda_equina", "esi_radiculopathy", "sij", "scs", "opioids"} <= names
    for path in BUNDLES:
        assert path.with_suffix(".yaml").is_file(), f"{path.name} has no native twin"


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.stem)
def test_each_bundle_maps_to_the_same_assessment_as_its_native_twin(
    path: Path, ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine
) -> None:
    mapping = read_bundle(path.read_text(encoding="utf-8"), ruleset=ruleset)
    twin = ipm_cds.parse_patient(read_patient_document(path.with_suffix(".yaml")))
    assert kinds(mapping) == EXPECTED_UNMAPPED.get(path.stem, {}), mapping.report()
    assert canonical(mapping.patient) == canonical(twin)
    from_fhir = durable.evaluate(mapping.patient, as_of=AS_OF).to_json(timestamp=False)
    from_twin = durable.evaluate(twin, as_of=AS_OF).to_json(timestamp=False)
    assert from_fhir == from_twin


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.stem)
def test_prefetch_answered_from_the_bundle_reads_the_same_patient(path: Path, ruleset: ipm_cds.Ruleset) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    patient_id = next(e["resource"]["id"] for e in data["entry"] if e["resource"]["resourceType"] == "Patient")
    prefetch = prefetch_from_bundle(data, prefetch_templates(ruleset), patient_id)
    from_prefetch = read_prefetch(prefetch, ruleset=ruleset, patient_id=patient_id)
    assert canonical(from_prefetch.patient) == canonical(read_bundle(data, ruleset=ruleset).patient)
    assert kinds(from_prefetch) == EXPECTED_UNMAPPED.get(path.stem, {})


def test_the_examples_exercise_each_pathway(ruleset: ipm_cds.Ruleset, python_engine: ipm_cds.Engine) -> None:
    codes = {}
    for path in BUNDLES:
        case = read_bundle(path.read_text(encoding="utf-8"), ruleset=ruleset).patient
        codes[path.stem] = python_engine.evaluate(case, as_of=AS_OF).codes()
    assert codes["facet_rfa"]["candidates"] == ["facet_rfa"]
    assert codes["cauda_equina"]["alerts"] == ["red_flag.cauda_equina"]
    assert "emergency_department" in codes["cauda_equina"]["referrals"]
    # left L5-S1 radiculopathy at one level: the transforaminal approach (esi.approach.transforaminal)
    assert "esi_transforaminal" in set(codes["esi_radiculopathy"]["candidates"])
    assert codes["sij"]["candidates"] == ["sij_injection"]
    assert codes["scs"]["candidates"] == ["scs_trial"]
    assert "opioid.mme.caution" in codes["opioids"]["alerts"]
    assert "referral.suicide_risk" in codes["opioids"]["alerts"]
    assert codes["vertebral_augmentation"]["candidates"] == ["vertebral_augmentation"]


# -- observations --------------------------------------------------------------------------------------


def test_pain_scores_attach_to_their_condition_by_focus() -> None:
    m = read_bundle(
        bundle(
            pain("c1", extension=[ext("index-pain", valueBoolean=True), ext("laterality", valueCode="left")]),
            pain("c2", code="M54.2"),
            obs("n1", cc(LOINC, "72514-3"), valueInteger=6, focus=[{"reference": "Condition/c1"}]),
            obs("n2", cc(LOINC, "72514-3"), valueInteger=3, focus=[{"reference": "Condition/c2"}]),
            obs(
                "o1",
                cc(cs("observation"), "odi_pct"),
                valueQuantity={"value": 40, "unit": "%"},
                focus=[{"reference": "Condition/c1"}],
            ),
        )
    )
    by_region = {p.region: p for p in m.patient.pain}
    assert by_region["lumbar"].nrs == 6 and by_region["lumbar"].odi_pct == 40
    assert by_region["lumbar"].is_index and by_region["lumbar"].laterality == "left"
    assert by_region["cervical"].nrs == 3 and by_region["cervical"].character == "axial"
    assert m.sources["pain[0].nrs"] == "Observation/n1"  # pains are listed by reference: c1, c2
    assert m.resource_of("pain[0].nrs") == "Observation/n1" and m.resource_of("pain[1]") == "Condition/c2"


def test_an_unlinked_pain_score_goes_to_the_only_pain_and_is_reported_when_ambiguous() -> None:
    one = read_bundle(bundle(pain("c1"), obs("n1", cc(LOINC, "72514-3"), valueInteger=5)))
    assert one.patient.pain[0].nrs == 5
    two = read_bundle(bundle(pain("c1"), pain("c2", "M54.2"), obs("n1", cc(LOINC, "72514-3"), valueInteger=5)))
    assert all(p.nrs is None for p in two.patient.pain)
    assert kinds(two)["Observation/n1"] == "incomplete"


def test_the_latest_value_wins_and_older_ones_are_reported_superseded() -> None:
    m = read_bundle(
        bundle(
            obs(
                "b1", cc(LOINC, "39156-5"), valueQuantity={"value": 30, "unit": "kg/m2"}, effectiveDateTime="2024-01-01"
            ),
            obs(
                "b2",
                cc(LOINC, "39156-5"),
                valueQuantity={"value": 28.5, "unit": "kg/m2"},
                effectiveDateTime="2025-01-01",
            ),
        )
    )
    assert m.patient.demographics.bmi == 28.5
    assert kinds(m) == {"Observation/b1": "superseded"}


def test_coded_answers_tobacco_and_pregnancy() -> None:
    m = read_bundle(
        bundle(
            obs("t", cc(LOINC, "72166-2"), valueCodeableConcept=cc(SNOMED, "8517006")),
            obs("p", cc(LOINC, "82810-3"), valueCodeableConcept=cc(SNOMED, "60001007")),
            obs("u", cc(LOINC, "72166-2"), valueCodeableConcept=cc(SNOMED, "266927001")),
        )
    )
    assert m.patient.demographics.tobacco_use == "former"
    assert m.patient.demographics.pregnant is False
    assert kinds(m) == {"Observation/u": "unknown_code"}  # "smoking status unknown" is not recorded


@pytest.mark.parametrize(
    ("how", "resources"),
    [
        (
            "component",
            [
                obs(
                    "q",
                    cc(LOINC, "44261-6"),
                    valueInteger=12,
                    effectiveDateTime="2025-05-01",
                    component=[{"code": cc(LOINC, "44260-8"), "valueCodeableConcept": cc(LOINC, "LA6570-1")}],
                )
            ],
        ),
        (
            "member",
            [
                obs("q", cc(LOINC, "44261-6"), valueInteger=12, hasMember=[{"reference": "Observation/i9"}]),
                obs("i9", cc(LOINC, "44260-8"), valueInteger=2),
            ],
        ),
        (
            "same day",
            [
                obs("q", cc(LOINC, "44261-6"), valueInteger=12, effectiveDateTime="2025-05-01"),
                obs(
                    "i9", cc(cs("observation"), "phq9_item9"), valueInteger=2, effectiveDateTime="2025-05-01T10:00:00Z"
                ),
            ],
        ),
    ],
)
def test_phq9_item9(how: str, resources: list[dict[str, Any]]) -> None:
    m = read_bundle(bundle(*resources))
    (screen,) = m.patient.screenings
    assert (screen.instrument, screen.score, screen.item9) == ("phq9", 12, 2)
    assert m.unmapped == ()


def test_an_item9_without_its_total_is_reported() -> None:
    m = read_bundle(bundle(obs("i9", cc(LOINC, "44260-8"), valueInteger=1)))
    assert m.patient.screenings == []
    assert kinds(m) == {"Observation/i9": "incomplete"}


def test_labs_are_converted_to_the_canonical_unit() -> None:
    m = read_bundle(
        bundle(
            obs(
                "g",
                cc(LOINC, "2345-7"),
                valueQuantity={"value": 5.5, "system": UCUM, "code": "mmol/L"},
                effectiveDateTime="2025-05-01",
            ),
            obs(
                "h",
                cc(LOINC, "4548-4"),
                valueQuantity={"value": 53, "system": UCUM, "code": "mmol/mol"},
                effectiveDateTime="2025-05-01",
            ),
            obs("i", cc(LOINC, "6301-6"), valueQuantity={"value": 1.1}, effectiveDateTime="2025-05-02"),
            obs(
                "pl",
                cc(LOINC, "777-3"),
                valueQuantity={"value": 210, "unit": "10*3/uL"},
                effectiveDateTime="2025-05-02",
            ),
        )
    )
    labs = {lab.test: lab.value for lab in m.patient.labs}
    assert labs["glucose"] == pytest.approx(99.088)
    assert labs["hba1c"] == pytest.approx(7.0, abs=0.01)
    assert labs["inr"] == 1.1 and labs["platelets"] == 210


def test_a_lab_in_an_unknown_unit_or_without_a_date_is_reported() -> None:
    m = read_bundle(
        bundle(
            obs("g", cc(LOINC, "2345-7"), valueQuantity={"value": 5, "unit": "g/L"}, effectiveDateTime="2025-05-01"),
            obs("i", cc(LOINC, "6301-6"), valueQuantity={"value": 1.1}),
        )
    )
    assert m.patient.labs == []
    assert kinds(m) == {"Observation/g": "unknown_unit", "Observation/i": "incomplete"}


def test_observation_status_and_unknown_codes_are_reported() -> None:
    m = read_bundle(
        bundle(
            obs("x", cc(LOINC, "39156-5"), valueQuantity={"value": 30, "unit": "kg/m2"}, status="entered-in-error"),
            obs("y", cc(LOINC, "8867-4"), valueQuantity={"value": 70, "unit": "/min"}),
        )
    )
    assert m.patient.demographics.bmi is None
    assert kinds(m) == {"Observation/x": "not_current", "Observation/y": "unknown_code"}
    assert next(u for u in m.unmapped if u.resource == "Observation/y").code == f"{LOINC}|8867-4"


def test_exam_imaging_and_red_flag_observations() -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "s1",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
        "started": "2025-01-10T09:00:00Z",
    }
    m = read_bundle(
        bundle(
            study,
            obs(
                "f",
                cc(cs("imaging-finding"), "disc_herniation"),
                bodySite=cc(cs("body-region"), "lumbar"),
                derivedFrom=[{"reference": "ImagingStudy/s1"}],
                extension=[ext("spinal-level", valueString="L5-S1"), ext("concordant", valueBoolean=True)],
            ),
            obs("e", cc(cs("exam-finding"), "straight_leg_raise"), valueBoolean=True, bodySite=cc(SNOMED, "7771000")),
            obs("r", cc(cs("red-flag"), "fever"), valueBoolean=True),
            obs("r2", cc(cs("red-flag"), "night_pain"), valueBoolean=False),
        )
    )
    (finding,) = m.patient.imaging
    assert (finding.modality, finding.finding, finding.level, finding.concordant) == (
        "mri",
        "disc_herniation",
        "L5-S1",
        True,
    )
    assert finding.date == date(2025, 1, 10)
    (exam,) = m.patient.exam
    assert (exam.test, exam.positive, exam.side) == ("straight_leg_raise", True, "left")
    assert [r.code for r in m.patient.red_flags] == ["fever"]
    assert kinds(m) == {"Observation/r2": "not_current"}


def test_a_diagnostic_report_with_only_conclusion_codes_is_reported() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "d",
        "status": "final",
        "code": {"text": "MRI lumbar spine"},
        "subject": {"reference": "Patient/p1"},
        "conclusionCode": [cc(SNOMED, "1234567")],
    }
    m = read_bundle(bundle(report))
    assert kinds(m) == {"DiagnosticReport/d": "unknown_code"}


# -- conditions, medications, procedures, allergies -----------------------------------------------------


def test_conditions_by_icd10_prefix_snomed_and_local_code() -> None:
    m = read_bundle(
        bundle(
            pain("d", code="E11.9"),
            pain("h", code="Z85.3"),
            pain(
                "s",
                code="G47.33",
                clinicalStatus=cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved"),
            ),
            {**pain("x", code="X"), "code": cc(cs("condition"), "recent_coronary_stent")},
            {**pain("sn", code="X"), "code": cc(SNOMED, "44054006")},
            pain(
                "r",
                code="M81.0",
                verificationStatus=cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted"),
            ),
            pain("u", code="I10"),
        )
    )
    found = {(c.code, c.active) for c in m.patient.conditions}
    assert found == {("diabetes", True), ("cancer", False), ("sleep_apnea", False), ("recent_coronary_stent", True)}
    assert kinds(m) == {"Condition/r": "not_current", "Condition/u": "unknown_code"}


def test_red_flag_conditions_with_onset_and_deteriorating() -> None:
    flag = {
        **pain("rf", code="X"),
        "code": cc(cs("red-flag"), "saddle_anesthesia"),
        "onsetDateTime": "2025-05-29",
        "extension": [ext("deteriorating", valueBoolean=True)],
    }
    m = read_bundle(bundle(flag))
    (red,) = m.patient.red_flags
    assert (red.code, red.onset_date, red.deteriorating) == ("saddle_anesthesia", date(2025, 5, 29), True)


def test_a_local_pain_code_needs_a_region() -> None:
    no_region = {**pain("c", code="X"), "code": cc(cs("pain-character"), "joint")}
    m = read_bundle(bundle(no_region))
    assert m.patient.pain == [] and kinds(m) == {"Condition/c": "incomplete"}
    with_region = {**no_region, "bodySite": [cc(cs("body-region"), "sacroiliac")]}
    assert read_bundle(bundle(with_region)).patient.pain[0].region == "sacroiliac"


def test_medications_rxnorm_local_dose_and_status(ruleset: ipm_cds.Ruleset) -> None:
    m = read_bundle(
        bundle(
            med(
                "ox",
                [(RXNORM, "7804")],
                dosageInstruction=[
                    {
                        "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "h"}},
                        "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "system": UCUM, "code": "mg"}}],
                    }
                ],
            ),
            med("patch", [(RXNORM, "245135")]),
            med(
                "g",
                [(cs("medication"), "gabapentin")],
                extension=[ext("daily-dose", valueQuantity={"value": 0.9, "code": "g"})],
            ),
            med("w", [(RXNORM, "11289")], status="stopped"),
            med("f", [(RXNORM, "4337")]),
            med("riv", [(RXNORM, "1114195")]),  # rivaroxaban (US Core allergy-substance value set)
            med("x", [(RXNORM, "000000")]),  # no RxNorm concept
            med("prn", [(RXNORM, "7052")], dosageInstruction=[{"asNeededBoolean": True}]),
        ),
        ruleset=ruleset,
    )
    doses = {x.agent: (x.daily_dose, x.dose_unit) for x in m.patient.medications}
    assert doses["oxycodone"] == (40.0, "mg")
    assert doses["fentanyl_transdermal"] == (50.0, "mcg_per_hour")
    assert doses["gabapentin"] == (900.0, "mg")
    assert doses["morphine"] == (None, None)
    assert "warfarin" not in doses
    assert doses["rivaroxaban"] == (None, None)
    assert kinds(m) == {
        "MedicationRequest/w": "not_current",
        "MedicationRequest/f": "ambiguous_code",
        "MedicationRequest/x": "unknown_code",
        "MedicationRequest/prn": "partial",
    }


def test_a_medication_reference_is_followed() -> None:
    medication = {"resourceType": "Medication", "id": "m1", "code": cc(RXNORM, "1364430")}
    request = med("r", [])
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": "Medication/m1"}
    m = read_bundle(bundle(medication, request))
    assert [x.agent for x in m.patient.medications] == ["apixaban"] and m.unmapped == ()


def test_a_medication_missing_from_the_ruleset_catalogue_is_reported(ruleset: ipm_cds.Ruleset) -> None:
    m = read_bundle(bundle(med("x", [(cs("medication"), "not_a_drug")])), ruleset=ruleset)
    assert m.patient.medications == [] and kinds(m) == {"MedicationRequest/x": "unknown_code"}


def test_procedures_cpt_local_ambiguity_and_relief() -> None:
    m = read_bundle(
        bundle(
            proc("a", [(CPT, "64635")], extension=[ext("spinal-level", valueString="L4-L5")]),
            proc("b", [(CPT, "64493")]),
            proc(
                "c",
                [(CPT, "64493"), (cs("procedure-kind"), "facet_mbb")],
                extension=[ext("procedure-purpose", valueCode="diagnostic")],
            ),
            proc("d", [(CPT, "64493"), (cs("procedure-kind"), "facet_rfa")]),
            proc("e", [(CPT, "64635")], region=None),
            proc("f", [(CPT, "64635")], status="not-done"),
            obs(
                "rel",
                cc(cs("observation"), "relief_pct"),
                valueQuantity={"value": 85, "unit": "%"},
                partOf=[{"reference": "Procedure/c"}],
            ),
            obs("lost", cc(cs("observation"), "relief_pct"), valueQuantity={"value": 50, "unit": "%"}),
        )
    )
    procs = {p.kind: p for p in m.patient.procedures}
    assert set(procs) == {"facet_rfa", "facet_mbb"}
    assert procs["facet_mbb"].relief_pct == 85 and procs["facet_mbb"].purpose == "diagnostic"
    assert procs["facet_rfa"].levels == ["L4-L5"]
    assert kinds(m) == {
        "Procedure/b": "ambiguous_code",
        "Procedure/d": "ambiguous_code",
        "Procedure/e": "incomplete",
        "Procedure/f": "not_current",
        "Observation/lost": "incomplete",
    }


# -- long records: the most recent items of each kind are kept, what is left out is reported ----------

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def inr(rid: str, day: date, value: float = 2.5) -> dict[str, Any]:
    return obs(rid, cc(LOINC, "6301-6"), valueQuantity={"value": value}, effectiveDateTime=day.isoformat())


def days_before(n: int) -> date:
    return date.fromordinal(AS_OF.toordinal() - n)


def test_a_long_lab_record_keeps_the_most_recent_of_each_test_and_reports_the_rest() -> None:
    inrs = [inr(f"inr-{i:03}", days_before(7 * i + 1), 2.0 + (i % 10) / 10) for i in range(120)]
    platelets = obs(
        "plt-old", cc(LOINC, "777-3"), valueQuantity={"value": 40, "unit": "10*3/uL"}, effectiveDateTime="2012-01-05"
    )
    m = read_bundle(bundle(*inrs, platelets))
    kept = sorted(lab.date for lab in m.patient.labs if lab.test == "inr")
    assert len(m.patient.labs) == 100  # the patient model's cap
    assert [lab.value for lab in m.patient.labs if lab.test == "platelets"] == [40]  # one of its kind: kept
    assert len(kept) == 99 and kept[-1] == days_before(1) and kept[0] == days_before(7 * 98 + 1)
    left_out = {u.resource: u for u in m.unmapped}
    assert set(left_out) == {f"Observation/inr-{i:03}" for i in range(99, 120)}
    reason = left_out["Observation/inr-119"].reason
    assert left_out["Observation/inr-119"].kind == "older_left_out"
    assert reason.startswith("21 of 120 inr labs left out as older") and "the 99 most recent" in reason
    # the input order never changes what is kept
    again = read_bundle(bundle(*reversed(inrs), platelets))
    assert canonical(again.patient) == canonical(m.patient) and again.unmapped == m.unmapped


def test_a_long_procedure_record_keeps_old_operations_and_reports_left_out_relief() -> None:
    sij = [
        proc(f"sij-{i:03}", [(cs("procedure-kind"), "sij_injection")], region="sacroiliac", performedDateTime=d)
        for i, d in enumerate(days_before(14 * i + 3).isoformat() for i in range(105))
    ]
    relief = obs(
        "rel-old",
        cc(cs("observation"), "relief_pct"),
        valueQuantity={"value": 60, "unit": "%"},
        partOf=[{"reference": "Procedure/sij-104"}],
    )
    fusion = proc("fusion", [(cs("procedure-kind"), "spinal_fusion")], performedDateTime="2009-02-01")
    m = read_bundle(bundle(*sij, relief, fusion))
    kinds_kept = [p.kind for p in m.patient.procedures]
    assert len(kinds_kept) == 100 and kinds_kept.count("spinal_fusion") == 1
    assert max(p.date for p in m.patient.procedures if p.kind == "sij_injection") == days_before(3)
    left_out = kinds(m)
    assert set(left_out) == {f"Procedure/sij-{i:03}" for i in range(99, 105)} | {"Observation/rel-old"}
    assert set(left_out.values()) == {"older_left_out"}
    (attached,) = [u for u in m.unmapped if u.resource == "Observation/rel-old"]
    assert attached.reason.startswith("belongs to Procedure/sij-104: 6 of 105 sij_injection sacroiliac procedures")


def test_a_long_screening_record_keeps_the_latest_of_each_instrument() -> None:
    gad7 = [
        obs(f"gad-{i:03}", cc(LOINC, "70274-6"), valueInteger=i % 21, effectiveDateTime=days_before(i + 1).isoformat())
        for i in range(101)
    ]
    phq9 = obs("phq", cc(LOINC, "44261-6"), valueInteger=12, effectiveDateTime="2020-01-01")
    undated = obs("gad-undated", cc(LOINC, "70274-6"), valueInteger=20)
    m = read_bundle(bundle(*gad7, phq9, undated))
    assert len(m.patient.screenings) == 100
    assert [s.score for s in m.patient.screenings if s.instrument == "phq9"] == [12]
    assert kinds(m) == {
        "Observation/gad-099": "older_left_out",
        "Observation/gad-100": "older_left_out",
        "Observation/gad-undated": "older_left_out",
    }


@given(
    st.dictionaries(
        st.tuples(st.sampled_from("abcdefghij"), st.text("xyz", max_size=2)), st.integers(1, 300), max_size=40
    )
)
def test_the_cap_is_shared_so_every_kind_keeps_its_fair_share(counts: dict[tuple[str, str], int]) -> None:
    shares = _shares(counts, 100)
    assert set(shares) == set(counts)
    assert sum(shares.values()) == min(100, sum(counts.values()))
    for kind, count in counts.items():
        assert min(count, 100 // len(counts)) <= shares[kind] <= count
        if shares[kind] < count:  # a kind cut short keeps no less than any other kind
            assert all(shares[kind] >= other - 1 for other in shares.values())


def test_a_diagnosis_recorded_at_every_visit_is_read_once_when_the_list_is_full() -> None:
    visits = [pain(f"dm-{i:03}", code="E11.9") for i in range(150)]
    m = read_bundle(
        bundle(*visits, pain("htn-stent", code="X") | {"code": cc(cs("condition"), "recent_coronary_stent")})
    )
    assert sorted(c.code for c in m.patient.conditions) == ["diabetes", "recent_coronary_stent"]
    assert set(kinds(m).values()) == {"duplicate"} and len(m.unmapped) == 149
    assert {u.reason for u in m.unmapped} == {"the same conditions entry as Condition/dm-000, which is read"}
    few = read_bundle(bundle(pain("a", code="E11.9"), pain("b", code="E11.9")))
    assert len(few.patient.conditions) == 2 and not few.unmapped  # under the cap nothing changes


def test_more_distinct_current_medications_than_the_model_holds_is_still_an_error() -> None:
    meds = [med(f"m{i:03}", [(cs("medication"), "oxycodone")]) for i in range(101)]
    with pytest.raises(FhirInputError, match="at most 100"):
        read_bundle(bundle(*meds))


def test_the_inr101_prefetch_reads_the_most_recent_100(python_engine: ipm_cds.Engine) -> None:
    request = json.loads((FIXTURES / "inr101.patient-view.json").read_text(encoding="utf-8"))
    inrs = {e["resource"]["id"]: e["resource"]["effectiveDateTime"][:10] for e in request["prefetch"]["labs"]["entry"]}
    m = read_prefetch(request["prefetch"], patient_id=request["context"]["patientId"])
    assert len(m.patient.labs) == 100
    (left_out,) = [u for u in m.unmapped if u.kind == "older_left_out"]
    assert inrs[left_out.resource.split("/")[1]] == min(inrs.values())
    assert "1 of 101 inr labs left out as older" in left_out.reason
    assert max(lab.date for lab in m.patient.labs).isoformat() == max(inrs.values())
    python_engine.evaluate(m.patient, as_of=AS_OF)


def test_allergies() -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a",
        "code": cc(RXNORM, "6387"),
        "patient": {"reference": "Patient/p1"},
        "reaction": [{"description": "hives", "manifestation": [{"text": "urticaria"}]}],
    }
    refuted = {
        **allergy,
        "id": "b",
        "code": cc(cs("allergy-substance"), "latex"),
        "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "refuted"),
    }
    m = read_bundle(bundle(allergy, refuted))
    assert [(a.substance, a.reaction) for a in m.patient.allergies] == [("local_anesthetic", "hives")]
    assert kinds(m) == {"AllergyIntolerance/b": "not_current"}


def test_unsupported_resources_are_reported_not_dropped() -> None:
    practitioner = {"resourceType": "Practitioner", "id": "d", "name": [{"family": "Doe"}]}
    m = read_bundle(bundle(practitioner))
    assert kinds(m) == {"Practitioner/d": "unsupported_resource"}
    assert "Practitioner/d: unsupported_resource" in m.report()


V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def encounter(rid: str, status: str, code: str | None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Encounter", "id": rid, "status": status, **extra}
    if code is not None:
        out["class"] = {"system": V3_ACT, "code": code}
    return out


@pytest.mark.parametrize("code", ["IMP", "ACUTE", "NONAC"])
def test_an_inpatient_encounter_in_progress_means_hospitalised(code: str) -> None:
    m = read_bundle(bundle(encounter("e", "in-progress", code, subject={"reference": "Patient/p1"})))
    assert m.patient.hospitalised is True
    assert m.unmapped == ()
    assert m.resource_of("hospitalised") == "Encounter/e"


@pytest.mark.parametrize(
    ("resource", "kind"),
    [
        (encounter("e", "finished", "IMP"), "not_current"),  # discharged: not in hospital now
        (encounter("e", "planned", "IMP"), "not_current"),
        (encounter("e", "in-progress", "AMB"), "not_read"),  # an outpatient visit says nothing either way
        (encounter("e", "in-progress", None), "incomplete"),  # no class (R4 requires it): reported, not refused
        ({"resourceType": "Encounter", "id": "e"}, "incomplete"),  # nothing at all
        (encounter("e", "in-progress", "IMP", subject={"reference": "Patient/other"}), "incomplete"),
    ],
)
def test_other_encounters_leave_hospitalised_not_recorded(resource: dict[str, Any], kind: str) -> None:
    m = read_bundle(bundle(resource))
    assert m.patient.hospitalised is None
    assert kinds(m) == {"Encounter/e": kind}


def test_a_fhir_inpatient_admission_applies_the_hospitalised_pva_threshold(ruleset: ipm_cds.Ruleset) -> None:
    """PVA-IND-02 from FHIR: an in-progress inpatient Encounter and NRS 6 - vertebral augmentation is unmet."""
    doc = {
        "demographics": {"age_years": 81, "sex": "female", "pregnant": False},
        "pain": [
            {"region": "lumbar", "character": "axial", "duration_weeks": 3, "nrs": 6, "worsening": True,
             "is_index": True}
        ],
        "imaging": [
            {"modality": "mri", "finding": f, "region": "lumbar", "level": "L1", "date": "2025-05-28"}
            for f in ("vertebral_fracture", "bone_marrow_edema")
        ],
        "conservative_care": {"failed": True},
    }  # fmt: skip
    admitted = read_bundle(bundle(encounter("e", "in-progress", "IMP")))
    assert admitted.patient.hospitalised is True
    engine = ipm_cds.Engine(ruleset)
    inpatient = engine.evaluate({**doc, "hospitalised": admitted.patient.hospitalised}, as_of=AS_OF)
    assert "vertebral_augmentation" not in {c.intervention for c in inpatient.candidates}
    assert any(e.basis.rule.startswith("pva.hospitalised.pain_below@") for e in inpatient.excluded)
    unknown = engine.evaluate(doc, as_of=AS_OF)
    assert "vertebral_augmentation" in {c.intervention for c in unknown.candidates}
    assert "hospitalised" in {m.field for m in unknown.missing_data}


INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def test_a_lab_keeps_the_laboratory_flag_and_reference_range_in_the_canonical_unit() -> None:
    m = read_bundle(
        bundle(
            obs(  # CRP in mg/dL: value and range converted to mg/L
                "crp",
                cc(LOINC, "1988-5"),
                valueQuantity={"value": 4.8, "system": UCUM, "code": "mg/dL"},
                effectiveDateTime="2025-05-26",
                interpretation=[cc(INTERPRETATION, "H")],
                referenceRange=[{"high": {"value": 0.5, "system": UCUM, "code": "mg/dL"}}],
            ),
            obs(
                "esr",
                cc(LOINC, "30341-2"),
                valueQuantity={"value": 12, "system": UCUM, "code": "mm/h"},
                effectiveDateTime="2025-05-26",
                referenceRange=[{"low": {"value": 0, "unit": "mm/h"}, "high": {"value": 20, "unit": "mm/h"}}],
            ),
        )
    )
    labs = {lab.test: lab for lab in m.patient.labs}
    assert (labs["crp"].value, labs["crp"].flag, labs["crp"].reference_high) == (48.0, "high", 5.0)
    assert (labs["esr"].flag, labs["esr"].reference_low, labs["esr"].reference_high) == (None, 0.0, 20.0)
    assert m.unmapped == ()


def test_a_lab_interpretation_without_a_direction_is_reported_not_read() -> None:
    m = read_bundle(
        bundle(
            obs(
                "crp",
                cc(LOINC, "1988-5"),
                valueQuantity={"value": 30, "system": UCUM, "code": "mg/L"},
                effectiveDateTime="2025-05-26",
                interpretation=[cc(INTERPRETATION, "A")],  # abnormal: high or low is not said
            )
        )
    )
    (lab,) = m.patient.labs
    assert lab.flag is None and lab.reference_high is None
    assert kinds(m) == {"Observation/crp": "partial"}


def test_patient_demographics() -> None:
    m = read_bundle(
        bundle(patient={"resourceType": "Patient", "id": "p1", "birthDate": "1961-03-15", "gender": "female"})
    )
    assert m.patient.id == "p1" and m.patient.demographics.birth_date == date(1961, 3, 15)
    partial = read_bundle(bundle(patient={"resourceType": "Patient", "id": "p1", "birthDate": "1961"}))
    assert partial.patient.demographics.birth_date is None and kinds(partial) == {"Patient/p1": "partial"}


def test_a_placeholder_birth_date_is_refused_at_evaluation_naming_the_patient(
    python_engine: ipm_cds.Engine,
) -> None:
    """1900-01-01 (an "unknown" placeholder in some records) is an input error, never an age of 125 and
    never dropped as if unknown: FHIR says "unknown" by leaving birthDate out (or a data-absent-reason)."""
    m = read_bundle(bundle(pain("c1"), patient={"resourceType": "Patient", "id": "p1", "birthDate": "1900-01-01"}))
    assert m.patient.demographics.birth_date == date(1900, 1, 1) and not m.unmapped  # the age needs as_of
    with pytest.raises(ipm_cds.PatientDataError) as info:
        python_engine.evaluate(m.patient, as_of=AS_OF)
    problem = info.value.problems[0]
    assert problem.field == "demographics.birth_date" and "age 125 at 2025-06-02, outside 0–120" in problem.message
    assert m.resource_of(problem.field) == "Patient/p1"
    absent = {
        "resourceType": "Patient",
        "id": "p1",
        "_birthDate": {
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]
        },
    }
    unknown = read_bundle(bundle(pain("c1"), patient=absent))
    assert unknown.patient.demographics.birth_date is None
    assessment = python_engine.evaluate(unknown.patient, as_of=AS_OF)
    assert assessment.missing_data  # what needs the age says so


# -- invalid FHIR --------------------------------------------------------------------------------------

INVALID: list[tuple[str, Callable[[], Any], str]] = [
    ("not JSON", lambda: "{nope", "not JSON"),
    ("no resourceType", lambda: {"entry": []}, ""),
    ("unknown element", lambda: bundle(obs("x", cc(LOINC, "39156-5"), valueBanana=1)), "valueBanana"),
    (
        "bad date",
        lambda: bundle(patient={"resourceType": "Patient", "id": "p1", "birthDate": "1961-13-40"}),
        "birthDate",
    ),
    ("unknown type", lambda: bundle({"resourceType": "Banana", "id": "b"}), "Banana"),
    (
        "entry not an object",
        lambda: {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": 3}]},
        "entry",
    ),
    ("two patients", lambda: bundle({"resourceType": "Patient", "id": "p2"}), "more than one Patient"),
    (
        "another patient's data",
        lambda: bundle({**obs("x", cc(LOINC, "39156-5")), "subject": {"reference": "Patient/p2"}}),
        "Patient/p2",
    ),
    (
        "an NRS of 11",
        lambda: bundle(pain("c1"), obs("n", cc(LOINC, "72514-3"), valueInteger=11)),
        "Observation/n: pain[0].nrs",
    ),
    ("a duplicated id", lambda: bundle(pain("c1"), pain("c1")), "appears twice"),
    (
        "spinal levels from tail to head",
        lambda: bundle(proc("a", [(CPT, "64635")], extension=[ext("spinal-level", valueString="L5-L4")])),
        "Procedure/a: procedures[0].levels[0]: spinal level 'L5-L4' runs from tail to head",
    ),
    (
        "two patients' data without a Patient",
        lambda: bundle(pain("c1"), {**pain("c2"), "subject": {"reference": "Patient/p2"}}, patient={}),
        "more than one patient",
    ),
]


@pytest.mark.parametrize(("name", "data", "text"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_fhir_is_a_clear_error(name: str, data: Callable[[], Any], text: str) -> None:
    with pytest.raises(FhirInputError) as info:
        read_fhir(data())
    assert isinstance(info.value, ipm_cds.IpmCdsError) and isinstance(info.value, ipm_cds.PatientDataError)
    assert str(info.value).startswith("invalid FHIR input: ")
    assert text in info.value.report()


def test_without_a_patient_resource_the_subject_names_the_patient() -> None:
    m = read_bundle(bundle(pain("c1"), patient={}))
    assert m.patient.id == "p1" and m.patient_reference == "Patient/p1"


def test_the_patient_must_be_the_context_patient() -> None:
    with pytest.raises(FhirInputError, match="not Patient/other"):
        read_bundle(bundle(), patient_id="other")
    assert read_bundle(bundle(), patient_id="p1").patient.id == "p1"


def test_prefetch_dictionary_with_searchsets_and_nulls() -> None:
    searchset = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": pain("c1")}]}
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "p1", "gender": "male"},
        "conditions": searchset,
        "labs": None,
    }
    m = read_fhir(prefetch, patient_id="p1")
    assert m.patient.demographics.sex == "male" and m.patient.pain[0].region == "lumbar"
    with pytest.raises(FhirInputError):
        read_prefetch({"labs": "not a resource"})


# -- prefetch templates, orders, maps ------------------------------------------------------------------


def test_prefetch_templates_follow_what_the_rules_read(ruleset: ipm_cds.Ruleset) -> None:
    templates = prefetch_templates(ruleset)
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["medicationRequests"].startswith("MedicationRequest?patient={{context.patientId}}")
    assert f"{LOINC}|72514-3" in templates["painObservations"]
    assert f"{LOINC}|6301-6" in templates["labsInr"] and f"{LOINC}|777-3" not in templates["labsInr"]
    assert f"{LOINC}|39156-5" in templates["patientObservations"]
    maps = load_maps()
    for key, template in templates.items():
        for pair in template.partition("code=")[2].partition("&")[0].split(",") if "code=" in template else []:
            system, _, code = pair.rpartition("|")
            if key == "outcomeObservations":  # the instrument scores of the series (issue 16)
                assert (system, code) in instrument_codes() or system == OUTCOME_MEASURE_SYSTEM, pair
                continue
            assert (system, code) in maps.observation_by_code or system == cs("red-flag"), pair


def test_prefetch_templates_shrink_with_the_ruleset(ruleset: ipm_cds.Ruleset) -> None:
    from dataclasses import replace

    only_red_flags = replace(ruleset, rules=tuple(r for r in ruleset.rules if r.id.startswith("red_flag.cauda")))
    templates = prefetch_templates(only_red_flags)
    assert "medicationRequests" not in templates and not any(k.startswith("labs") for k in templates)
    assert "redFlagObservations" in templates and "patient" in templates


def test_prefetch_of_labs_and_screenings_is_bounded_per_test_and_instrument(ruleset: ipm_cds.Ruleset) -> None:
    """CDS Hooks 2.0 prefetch tokens cannot compute a date, so the bound is the most recent N of each."""
    templates = prefetch_templates(ruleset)
    bounded = {k: t for k, t in templates.items() if "_count=" in t}
    assert set(bounded) == {k for k in templates if k.startswith(("labs", "screenings", "outcome"))}
    assert {"labsInr", "labsPlatelets", "screeningsPhq9", "screeningsStartBack"} <= set(bounded)
    # the reader keeps at least 100 / 8 of each lab test of the vocabulary (INR, platelets, glucose, HbA1c, eGFR,
    # creatinine clearance, CRP, ESR); only the tests some rule reads get a template (eGFR and creatinine clearance
    # through the patient's renal_gfr, CRP and ESR through safety.inflammatory_markers.raised)
    per_lab = 100 // 8
    assert {k for k in bounded if k.startswith("labs")} == {
        "labsInr", "labsPlatelets", "labsGlucose", "labsHba1c", "labsEgfr", "labsCreatinineClearance", "labsCrp",
        "labsEsr",
    }  # fmt: skip
    assert templates["encounters"] == "Encounter?patient={{context.patientId}}&status=in-progress"
    assert bounded["labsInr"].endswith(f"&_sort=-date&_count={per_lab}")
    assert bounded["screeningsPhq9"].endswith("&_sort=-date&_count=14")  # 100 / 7 instruments
    assert cs("observation") + "|phq9_item9" in bounded["screeningsPhq9"]  # item 9 travels with its total
    # procedures, conditions, medications ...: old items matter (a fusion, a current drug), never bounded
    assert "_count" not in templates["procedures"] and "_count" not in templates["conditions"]
    # the test client answers the bound: newest first, one page of at most _count, total counts all
    inrs = [inr(f"i{n:02}", days_before(n)) for n in range(30)] + [
        obs("i-undated", cc(LOINC, "6301-6"), valueQuantity={"value": 2.0})
    ]
    plt = obs(
        "plt", cc(LOINC, "777-3"), valueQuantity={"value": 200, "unit": "10*3/uL"}, effectiveDateTime="2001-01-01"
    )
    prefetch = prefetch_from_bundle(bundle(*reversed(inrs), plt), templates, "p1")
    assert [e["resource"]["id"] for e in prefetch["labsInr"]["entry"]] == [f"i{n:02}" for n in range(per_lab)]
    assert prefetch["labsInr"]["total"] == 31
    assert [e["resource"]["id"] for e in prefetch["labsPlatelets"]["entry"]] == ["plt"]


def test_ordered_interventions(ruleset: ipm_cds.Ruleset) -> None:
    def sr(rid: str, codings: list[tuple[str, str]], region: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": rid,
            "status": "draft",
            "intent": "order",
            "code": {"coding": [{"system": s, "code": c} for s, c in codings]},
            "subject": {"reference": "Patient/p1"},
        }
        if region:
            out["bodySite"] = [cc(cs("body-region"), region)]
        return out

    draft = bundle(
        sr("rfa", [(CPT, "64635")], "lumbar"),
        sr("mbb", [(CPT, "64493")]),
        sr("local", [(cs("intervention"), "sij_rfa")]),
        sr("lab", [(LOINC, "6301-6")]),
        patient={},
    )
    orders, other = ordered_interventions(draft, ruleset)
    found = {o.reference: o for o in orders}
    assert found["ServiceRequest/rfa"].interventions == ("facet_rfa",)
    assert found["ServiceRequest/rfa"].region == "lumbar"
    assert found["ServiceRequest/mbb"].interventions == ("facet_ia", "facet_mbb") and found["ServiceRequest/mbb"].note
    assert found["ServiceRequest/local"].interventions == ("sij_rfa",)
    assert [u.resource for u in other] == ["ServiceRequest/lab"]
    selected, _ = ordered_interventions(draft, ruleset, ["ServiceRequest/rfa"])
    assert [o.reference for o in selected] == ["ServiceRequest/rfa"]


def test_maps_agree_with_the_ruleset_catalogues(ruleset: ipm_cds.Ruleset) -> None:
    maps = load_maps()
    for entry in maps.medications.medications:
        assert entry.agent in ruleset.medications, entry
    for code, intervention in ruleset.interventions.items():
        for cpt in intervention.cpt:
            assert code in maps.cpt[cpt].interventions, (code, cpt)
    for cpt, entry in maps.cpt.items():
        for code in entry.interventions:
            # a HCPCS Level II code (G0260) stands in for the catalogue's CPT code of the same interventions
            assert cpt in ruleset.interventions[code].cpt or cpt[0].isalpha(), (cpt, code)
            assert code in ruleset.interventions, (cpt, code)


def test_every_map_entry_names_a_known_system_and_source() -> None:
    maps = load_maps()
    systems = set(maps.systems.standard) | set(maps.systems.local)
    for entry in maps.observations.observations:
        assert entry.system in systems and entry.source in maps.observations.sources
    for c in [*maps.conditions.conditions, *maps.conditions.pain]:
        assert c.system in systems and c.source in maps.conditions.sources
    for med_entry in maps.medications.medications:
        assert med_entry.source in maps.medications.sources
    assert maps.medications.not_included and maps.conditions.not_included  # what was left out is said


def test_maps_are_package_data_and_fail_loudly_when_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    from ipm_cds.errors import ConfigurationError
    from ipm_cds.interop import maps as maps_module

    original = maps_module._read

    def broken(name: str) -> Any:
        data = original(name)
        if name == "observations":
            data = copy.deepcopy(data)
            data["observations"][0]["target"] = "pain.nrz"
        return data

    monkeypatch.setattr(maps_module, "_read", broken)
    maps_module.load_maps.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match=r"maps/observations.yaml: observations.0.target"):
            maps_module.load_maps()
    finally:
        monkeypatch.undo()
        maps_module.load_maps.cache_clear()
    assert maps_module.load_maps().observation_by_code


def test_import_ipm_cds_does_not_need_the_service_extra() -> None:
    code = (
        "import sys, ipm_cds, ipm_cds.interop, ipm_cds.interop.cds_hooks, ipm_cds.interop.maps;"
        "bad = [m for m in ('fastapi', 'uvicorn', 'jwt', 'fhir.resources', 'httpx') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- fields added for issue 14 ------------------------------------------------------------------------------
def test_gestational_age_crp_esr_and_creatinine_clearance_are_read_with_their_units() -> None:
    m = read_bundle(
        bundle(
            obs("p", cc(LOINC, "82810-3"), valueCodeableConcept=cc(SNOMED, "77386006")),
            obs("ga", cc(LOINC, "49051-6"), valueQuantity={"value": 22, "system": UCUM, "code": "wk"}),
            obs(
                "crp",
                cc(LOINC, "1988-5"),
                valueQuantity={"value": 4.2, "system": UCUM, "code": "mg/dL"},
                effectiveDateTime="2025-05-30",
            ),
            obs(
                "esr",
                cc(LOINC, "4537-7"),
                valueQuantity={"value": 64, "system": UCUM, "code": "mm/h"},
                effectiveDateTime="2025-05-30",
            ),
            obs(
                "cl",
                cc(LOINC, "2164-2"),
                valueQuantity={"value": 24, "system": UCUM, "code": "mL/min"},
                effectiveDateTime="2025-05-29",
            ),
        )
    )
    assert m.patient.demographics.pregnant is True and m.patient.demographics.gestational_weeks == 22
    labs = {lab.test: lab.value for lab in m.patient.labs}
    assert labs == {"crp": pytest.approx(42.0), "esr": 64, "creatinine_clearance": 24}
    assert m.unmapped == ()


def test_crp_in_an_unknown_unit_is_reported_not_guessed() -> None:
    m = read_bundle(
        bundle(
            obs("crp", cc(LOINC, "1988-5"), valueQuantity={"value": 4, "unit": "g/L"}, effectiveDateTime="2025-05-30")
        )
    )
    assert m.patient.labs == []
    assert kinds(m) == {"Observation/crp": "unknown_unit"}


def test_hospice_finding_is_read_as_palliative_care_and_silences_the_cdc_caution(python_engine: ipm_cds.Engine) -> None:
    """Issue 14's clinical note: a hospice patient on 60 MME/day got the CDC 50 MME caution (the finding was
    not read). CDC 2022 excludes palliative and end-of-life care from its dosage guidance."""
    m = read_bundle(json.loads((EXAMPLES / "coded_end_of_life.json").read_text(encoding="utf-8")))
    assert [(c.code, c.active) for c in m.patient.conditions] == [("palliative_care", True)]
    codes = {a.code for a in python_engine.evaluate(m.patient, as_of=AS_OF).alerts}
    assert "opioid.mme.out_of_scope" in codes and "opioid.mme.caution" not in codes


@pytest.mark.parametrize("category", ["low", "medium", "high"])
def test_start_back_category_alone_is_a_screen_without_a_score(category: str) -> None:
    m = read_bundle(
        bundle(
            obs(
                "sb",
                cc(cs("observation"), "start_back_category"),
                valueCodeableConcept=cc(cs("observation"), f"start_back_{category}"),
                effectiveDateTime="2025-05-20",
            )
        )
    )
    (screen,) = m.patient.screenings
    assert (screen.instrument, screen.score, screen.category) == ("start_back", None, category)
    assert screen.date == date(2025, 5, 20) and m.unmapped == ()


def test_roland_morris_on_its_pain_and_height_loss_on_the_fracture_finding() -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "s1",
        "status": "available",
        "subject": {"reference": "Patient/p1"},
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
        "started": "2025-05-08T09:00:00Z",
    }
    m = read_bundle(
        bundle(
            pain("c1", code="M54.50"),
            obs("rm", cc(cs("observation"), "rmdq"), valueInteger=19, focus=[{"reference": "Condition/c1"}]),
            study,
            obs(
                "vcf",
                cc(cs("imaging-finding"), "vertebral_fracture"),
                bodySite=cc(cs("body-region"), "thoracic"),
                derivedFrom=[{"reference": "ImagingStudy/s1"}],
                extension=[ext("spinal-level", valueString="T12"), ext("height-loss-pct", valueInteger=40)],
            ),
        )
    )
    (complaint,) = m.patient.pain
    assert complaint.rmdq == 19
    (fracture,) = m.patient.imaging
    assert (fracture.finding, fracture.level, fracture.height_loss_pct) == ("vertebral_fracture", "T12", 40)
    assert m.unmapped == ()


def test_partial_dates_are_kept_partial_not_guessed() -> None:
    """A FHIR date may be a year or a year and month: the patient model reads it as such (its least safe day,
    marked partial), never as an exact day."""
    flag = {
        **pain("rf", code="X"),
        "code": cc(cs("red-flag"), "bladder_dysfunction"),
        "onsetDateTime": "2025-05",
    }
    m = read_bundle(
        bundle(
            pain("c1", code="M54.50", onsetDateTime="2024"),
            flag,
            proc("p1", [(cs("procedure-kind"), "facet_rfa")], performedDateTime="2024-12"),
        )
    )
    (complaint,) = m.patient.pain
    assert (complaint.onset_date, complaint.onset_precision) == (date(2024, 12, 31), "year")
    (procedure,) = m.patient.procedures
    assert (procedure.date, procedure.date_precision) == (date(2024, 12, 31), "month")
    (red_flag,) = m.patient.red_flags
    assert (red_flag.onset_date, red_flag.onset_precision) == (date(2025, 5, 31), "month")
    assert m.unmapped == ()
