"""Series over time read from FHIR (issue 16): Observation series as ``measurements``, opioid orders over time
as ``mme_history``, and the treatment-response card of the patient-view hook."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.interop.cds_hooks import CARD_EXTENSION, patient_view_cards
from ipm_cds.interop.fhir import FhirMapping, prefetch_from_bundle, prefetch_templates, read_bundle, read_prefetch

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "examples" / "fhir" / "series.json"
AS_OF = date(2025, 6, 2)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
L = "https://ipm-cds.invalid/fhir/"
OM = L + "CodeSystem/outcome-measure"
BR = L + "CodeSystem/body-region"
SUBJECT = {"reference": "Patient/p"}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "1960-01-01", "gender": "female"}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in (patient, *resources)]}


def pain(ident: str, region: str, icd: str = "M54.50") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": ident,
        "subject": SUBJECT,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd}]},
        "bodySite": [{"coding": [{"system": BR, "code": region}]}],
    }


def score(ident: str, code: str, value: Any, day: str | None, system: str = LOINC, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "subject": SUBJECT,
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }
    if day is not None:
        resource["effectiveDateTime"] = day
    if value is not None:
        resource["valueInteger"] = value
    return resource


def site(region: str) -> dict[str, Any]:
    return {"bodySite": {"coding": [{"system": BR, "code": region}]}}


def focus(ref: str) -> dict[str, Any]:
    return {"focus": [{"reference": ref}]}


def oxycodone(ident: str, mg: float | None, start: str | None, status: str, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": status,
        "intent": "order",
        "subject": SUBJECT,
        "medicationCodeableConcept": {"coding": [{"system": L + "CodeSystem/medication", "code": "oxycodone"}]},
        **extra,
    }
    if start is not None:
        resource["authoredOn"] = start
    if mg is not None:
        resource["extension"] = [
            {"url": L + "StructureDefinition/daily-dose", "valueQuantity": {"value": mg, "unit": "mg", "code": "mg"}}
        ]
    return resource


def morphine_statement(ident: str, mg: float, start: str, end: str | None, status: str) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "MedicationStatement",
        "id": ident,
        "status": status,
        "subject": SUBJECT,
        "medicationCodeableConcept": {"coding": [{"system": L + "CodeSystem/medication", "code": "morphine"}]},
        "effectivePeriod": period,
        "extension": [
            {"url": L + "StructureDefinition/daily-dose", "valueQuantity": {"value": mg, "unit": "mg", "code": "mg"}}
        ],
    }


def kinds(mapping: FhirMapping) -> dict[str, str]:
    return {u.resource: u.kind for u in mapping.unmapped}


def reasons(mapping: FhirMapping, resource: str) -> str:
    return " ".join(u.reason for u in mapping.unmapped if u.resource == resource)


def points(mapping: FhirMapping) -> list[tuple[str, str | None, str, float]]:
    return sorted((m.instrument, m.region, m.date.isoformat(), m.score) for m in mapping.patient.measurements)


# -- measurements -----------------------------------------------------------------------------------------


def test_observation_series_become_measurements_of_the_complaint_they_name(ruleset: ipm_cds.Ruleset) -> None:
    m = read_bundle(
        bundle(
            pain("c1", "lumbar"),
            pain("c2", "cervical", "M54.2"),
            score("n1", "72514-3", 8, "2025-01-06", **focus("Condition/c1")),
            score("n2", "72514-3", 3, "2025-02-03", **focus("Condition/c1")),
            score("k1", "72514-3", 6, "2025-01-06", **site("cervical")),
            score("k2", "72514-3", 5, "2025-02-03", **site("cervical")),
            score("o1", "odi", 40, "2025-01-06", OM, **site("lumbar")),
            score("o2", "odi", 28, "2025-02-03", OM, **focus("Condition/c1")),
            score("g1", "pgic", 2, "2025-02-03", OM, **focus("Condition/c1")),  # whole patient: no region
            score("e1", "91147-9", 7, "2025-01-06", **site("lumbar")),  # PEG mean score (LOINC)
            {  # a panel: PROMIS physical function and pain interference as components, the region as a third
                **score("pr", "promis-panel", None, "2025-02-03", "https://example.org/panels"),
                "component": [
                    {"code": {"coding": [{"system": OM, "code": "promis_pf"}]}, "valueQuantity": {"value": 41.5}},
                    {"code": {"coding": [{"system": OM, "code": "promis_pi"}]}, "valueQuantity": {"value": 60.2}},
                    {
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "363698007"}]},
                        "valueCodeableConcept": {"coding": [{"system": BR, "code": "lumbar"}]},
                    },
                ],
            },
        ),
        ruleset=ruleset,
    )
    assert points(m) == [
        ("nrs", "cervical", "2025-01-06", 6.0),
        ("nrs", "cervical", "2025-02-03", 5.0),
        ("nrs", "lumbar", "2025-01-06", 8.0),
        ("nrs", "lumbar", "2025-02-03", 3.0),
        ("odi", "lumbar", "2025-01-06", 40.0),
        ("odi", "lumbar", "2025-02-03", 28.0),
        ("peg", "lumbar", "2025-01-06", 7.0),
        ("pgic", None, "2025-02-03", 2.0),
        ("promis_pf", "lumbar", "2025-02-03", 41.5),
        ("promis_pi", "lumbar", "2025-02-03", 60.2),
    ]
    # the latest NRS linked by focus is pain[].nrs as before; the older one is in the series, not "superseded"
    assert sorted((p.region, p.nrs) for p in m.patient.pain) == [("cervical", None), ("lumbar", 3)]
    # pain[].nrs takes focus only (as before): the cervical scores are in the series, but not the complaint's nrs;
    # the local codes and the panel are read, not "unknown code"
    assert kinds(m) == {"Observation/k1": "incomplete", "Observation/k2": "incomplete"}
    assert m.resource_of("measurements[0]") == "Observation/k1"


def test_a_score_that_names_no_complaint_is_read_without_one_and_reported(ruleset: ipm_cds.Ruleset) -> None:
    m = read_bundle(
        bundle(
            pain("c1", "lumbar"),
            pain("c2", "cervical", "M54.2"),
            score("u1", "72514-3", 7, "2025-01-06"),
            score("u2", "72514-3", 4, "2025-02-03"),
            score("x1", "odi", 30, "2025-01-06", OM, **site("cervical"), **focus("Condition/c1")),
            score("x2", "odi", 20, "2025-02-03", OM, **site("cervical"), **focus("Condition/c1")),
        ),
        ruleset=ruleset,
    )
    assert points(m) == [
        ("nrs", None, "2025-01-06", 7.0),
        ("nrs", None, "2025-02-03", 4.0),
        ("odi", None, "2025-01-06", 30.0),
        ("odi", None, "2025-02-03", 20.0),
    ]
    assert kinds(m)["Observation/u1"] == "partial" and "no bodySite, focus or component" in reasons(m, "Observation/u1")
    assert kinds(m)["Observation/x1"] == "partial" and "2 regions: cervical, lumbar" in reasons(m, "Observation/x1")


def test_a_lone_score_of_a_snapshot_field_stays_a_snapshot(ruleset: ipm_cds.Ruleset) -> None:
    """One NRS is the complaint's pain[].nrs, not a series; one PGIC (no snapshot field holds it) is a point."""
    m = read_bundle(
        bundle(
            pain("c1", "lumbar"),
            score("n1", "72514-3", 6, "2025-01-06", **focus("Condition/c1")),
            score("d1", "44261-6", 9, "2025-01-06"),
            score("g1", "pgic", 3, "2025-01-06", OM),
        ),
        ruleset=ruleset,
    )
    assert points(m) == [("pgic", None, "2025-01-06", 3.0)]
    assert m.patient.pain[0].nrs == 6 and m.patient.screenings[0].score == 9
    assert kinds(m) == {}


def test_unreadable_instrument_scores_are_reported_never_guessed(ruleset: ipm_cds.Ruleset) -> None:
    m = read_bundle(
        bundle(
            score("b1", "bogus", 2, "2025-01-06", OM),
            score("r1", "nrs", 11, "2025-01-06", OM, **site("lumbar")),
            score("r2", "nrs", 5, "2025-02-06", OM, **site("lumbar")),
            score("e1", "peg", 5, "2025-01-06", OM, status="entered-in-error"),
            score("v1", "peg", None, "2025-01-06", OM),
            score("t1", "peg", 5, None, OM),
        ),
        ruleset=ruleset,
    )
    assert points(m) == [("nrs", "lumbar", "2025-02-06", 5.0)]
    assert kinds(m) == {
        "Observation/b1": "unknown_code",
        "Observation/r1": "incomplete",
        "Observation/e1": "not_current",
        "Observation/v1": "incomplete",
        "Observation/t1": "incomplete",
    }
    assert "not an outcome instrument" in reasons(m, "Observation/b1")
    assert "nrs score 11 is outside 0–10" in reasons(m, "Observation/r1")


def quantity(value: float, unit: str | None) -> dict[str, Any]:
    return {"valueQuantity": {"value": value, **({"system": UCUM, "code": unit} if unit is not None else {})}}


def test_odi_and_promis_series_by_loinc_with_the_units_their_instruments_take(ruleset: ipm_cds.Ruleset) -> None:
    """ODI 97909-6 in %, PROMIS-29 T-scores 71959-1 (physical function) and 71961-7 (pain interference) without a
    unit or with a UCUM annotation: read as measurements. Another unit is reported, never read."""
    m = read_bundle(
        bundle(
            pain("c1", "lumbar"),
            score("o1", "97909-6", None, "2025-01-06", **quantity(42, "%"), **focus("Condition/c1")),
            score("o2", "97909-6", None, "2025-03-03", **quantity(24, "%"), **focus("Condition/c1")),
            score("o3", "97909-6", None, "2025-04-07", **quantity(21, "{score}"), **focus("Condition/c1")),
            score("f1", "71959-1", None, "2025-01-06", **quantity(38.5, None), **focus("Condition/c1")),
            score("f2", "71959-1", None, "2025-03-03", **quantity(44.1, "{T-score}"), **focus("Condition/c1")),
            score("f3", "71959-1", None, "2025-04-07", **quantity(45.0, "%"), **focus("Condition/c1")),
            score("i1", "71961-7", 62, "2025-01-06", **focus("Condition/c1")),
            score("i2", "71961-7", None, "2025-03-03", **quantity(55.4, "1"), **focus("Condition/c1")),
        ),
        ruleset=ruleset,
    )
    assert points(m) == [
        ("odi", "lumbar", "2025-01-06", 42.0),
        ("odi", "lumbar", "2025-03-03", 24.0),
        ("promis_pf", "lumbar", "2025-01-06", 38.5),
        ("promis_pf", "lumbar", "2025-03-03", 44.1),
        ("promis_pi", "lumbar", "2025-01-06", 62.0),
        ("promis_pi", "lumbar", "2025-03-03", 55.4),
    ]
    assert m.patient.pain[0].odi_pct == 24  # the latest ODI in % is the complaint's odi_pct, as before
    assert kinds(m) == {"Observation/o3": "unknown_unit", "Observation/f3": "unknown_unit"}
    assert "unit {score}" in reasons(m, "Observation/o3") and "unit %" in reasons(m, "Observation/f3")


def test_the_instrument_codes_are_the_terminology_tables_not_the_code() -> None:
    """Every LOINC instrument code comes from a table with its source; the generated table names the published
    source of each (the VSAC value sets, the AHRQ Pain Management Summary and CMS90 CQL)."""
    from ipm_cds.interop.maps import load_maps
    from ipm_cds.interop.series import instrument_codes, local_observation_instruments, loinc_instruments

    table = json.loads((ROOT / "src/ipm_cds/interop/terminology/observations.json").read_text(encoding="utf-8"))
    generated = {i["code"]: i["instrument"] for i in table["instruments"]}
    assert generated == {
        "72514-3": "nrs",
        "44261-6": "phq9",
        "70274-6": "gad7",
        "91147-9": "peg",
        "71959-1": "promis_pf",
        "71961-7": "promis_pi",
    }
    assert loinc_instruments() == generated | {"97909-6": "odi"}  # the ODI from maps/observations.yaml, in %
    assert local_observation_instruments() == {"odi_pct": "odi", "ndi": "ndi", "phq9": "phq9", "gad7": "gad7"}
    sources = set(table["provenance"]["sources"])
    assert {"ahrq_pms", "ecqm_2024_cql", "ecqm_2024"} <= sources
    odi = instrument_codes()[(LOINC, "97909-6")]
    assert odi.accepts(["%"]) and not odi.accepts(["{score}"]) and not odi.accepts([])
    promis = instrument_codes()[(LOINC, "71959-1")]
    assert promis.accepts([]) and promis.accepts(["{T-score}"]) and not promis.accepts(["%"])
    assert load_maps().instrument_by_code is instrument_codes()


# -- MME history ------------------------------------------------------------------------------------------


def test_opioid_orders_over_time_give_the_mme_history(ruleset: ipm_cds.Ruleset) -> None:
    m = read_bundle(
        bundle(
            oxycodone("o1", 60, "2025-01-01", "completed"),  # ended when o2 replaced it
            oxycodone("o2", 40, "2025-03-01", "completed"),
            oxycodone("o3", 30, "2025-05-01", "active"),
            morphine_statement("s1", 30, "2025-02-01", "2025-02-28", "stopped"),  # 30 MME added for February
        ),
        ruleset=ruleset,
    )
    history = [(r.date.isoformat(), r.mme_per_day, r.change) for r in m.patient.mme_history]
    assert history == [
        ("2025-01-01", 90.0, "start"),
        ("2025-02-01", 120.0, "increase"),
        ("2025-03-01", 60.0, "decrease"),  # morphine stopped after 02-28, oxycodone 60 -> 40 mg
        ("2025-05-01", 45.0, "decrease"),
    ]
    assert [(x.agent, x.daily_dose) for x in m.patient.medications] == [("oxycodone", 30.0)]  # the current dose
    assert kinds(m) == {}  # the completed and stopped orders are in the history, not "not current"
    assert m.resource_of("mme_history[1]") == "MedicationStatement/s1"


def test_an_active_order_is_active_whatever_end_it_plans_and_a_stop_is_a_point(ruleset: ipm_cds.Ruleset) -> None:
    planned = {
        "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": "2025-04-01", "end": "2025-04-30"}}}}]
    }
    m = read_bundle(
        bundle(
            morphine_statement("s1", 60, "2025-01-01", "2025-02-28", "completed"),
            oxycodone("o1", 20, None, "active", **planned),
        ),
        ruleset=ruleset,
    )
    assert [(r.date.isoformat(), r.mme_per_day, r.change) for r in m.patient.mme_history] == [
        ("2025-01-01", 60.0, "start"),
        ("2025-03-01", 0.0, "stop"),
        ("2025-04-01", 30.0, "start"),  # boundsPeriod.start; its planned end is not a stop
    ]


def test_what_the_mme_history_cannot_place_is_reported(ruleset: ipm_cds.Ruleset) -> None:
    m = read_bundle(
        bundle(
            oxycodone("o1", 60, "2025-01-01", "completed"),
            oxycodone("o2", 40, "2025-03-01", "stopped"),  # no end, no later oxycodone order: its stop is unknown
            morphine_statement("s1", 30, "2025-02-01", "2025-02-28", "stopped"),
            {**oxycodone("o3", None, "2025-02-10", "active")},  # no dose: February 10 on cannot be totalled
        ),
        ruleset=ruleset,
    )
    assert [(r.date.isoformat(), r.mme_per_day) for r in m.patient.mme_history] == [
        ("2025-01-01", 90.0),
        ("2025-02-01", 120.0),
    ]
    assert kinds(m)["MedicationRequest/o2"] == "partial" and "stop cannot be placed" in reasons(
        m, "MedicationRequest/o2"
    )
    assert kinds(m)["MedicationRequest/o3"] == "partial" and "leaves out its dates" in reasons(
        m, "MedicationRequest/o3"
    )


def test_one_order_or_no_ruleset_gives_no_history(ruleset: ipm_cds.Ruleset) -> None:
    one = bundle(oxycodone("o1", 60, "2025-01-01", "active"))
    assert read_bundle(one, ruleset=ruleset).patient.mme_history == []
    taper = bundle(oxycodone("o1", 60, "2025-01-01", "completed"), oxycodone("o2", 40, "2025-03-01", "active"))
    assert len(read_bundle(taper, ruleset=ruleset).patient.mme_history) == 2
    assert read_bundle(taper).patient.mme_history == []  # no MME factors without a ruleset


# -- the example, the prefetch path and the patient-view card ---------------------------------------------


def test_the_series_example_reads_the_same_through_the_prefetch(ruleset: ipm_cds.Ruleset) -> None:
    data = json.loads(SERIES.read_text(encoding="utf-8"))
    templates = prefetch_templates(ruleset)
    assert {"outcomeObservations", "medicationHistoryRequests", "medicationHistoryStatements"} <= set(templates)
    prefetch = prefetch_from_bundle(data, templates, "fhir-series")
    from_prefetch = read_prefetch(prefetch, ruleset=ruleset, patient_id="fhir-series").patient
    assert len(from_prefetch.measurements) == 12 and len(from_prefetch.mme_history) == 5
    assert from_prefetch == read_bundle(data, ruleset=ruleset).patient
    # a client built from an earlier discovery sends no series keys: read without the history, not refused
    old = {k: v for k, v in prefetch.items() if not k.startswith(("outcome", "medicationHistory"))}
    assert read_prefetch(old, ruleset=ruleset, patient_id="fhir-series").patient.mme_history == []


def test_patient_view_adds_the_response_card_when_the_record_holds_series(
    ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine
) -> None:
    mapping = read_bundle(SERIES.read_text(encoding="utf-8"), ruleset=ruleset)
    assessment = durable.evaluate(mapping.patient, as_of=AS_OF)
    cards = patient_view_cards(assessment, ruleset=ruleset, unmapped=mapping.unmapped)
    (card,) = [c for c in cards if c["extension"][CARD_EXTENSION]["kind"] == "treatment_response"]
    findings = card["extension"][CARD_EXTENSION]["findings"]
    assert {"outcomes.response.responder", "outcomes.taper.progress", "outcomes.taper.too_fast"} <= set(findings)
    assert card["summary"].startswith("Treatment response: ")
    # each finding is still a card of its own; a record without series has no response card
    assert sum(1 for c in cards if c["extension"][CARD_EXTENSION].get("rule", "").startswith("outcomes.")) >= 3
    plain = read_bundle((ROOT / "examples" / "fhir" / "facet_rfa.json").read_text(encoding="utf-8"), ruleset=ruleset)
    other = patient_view_cards(durable.evaluate(plain.patient, as_of=AS_OF), ruleset=ruleset)
    assert not [c for c in other if c["extension"][CARD_EXTENSION]["kind"] == "treatment_response"]


def _classification(assessment: ipm_cds.Assessment) -> tuple[Any, ...]:
    return (
        sorted((a.code, a.message) for a in assessment.alerts if a.code.startswith("outcomes.")),
        sorted((c.intervention, c.basis.rule) for c in assessment.candidates),
        sorted((e.intervention, e.basis.rule) for e in assessment.excluded if e.basis.rule.startswith("outcomes.")),
    )


_EXAMPLE = json.loads(SERIES.read_text(encoding="utf-8"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(_EXAMPLE["entry"]))))
def test_the_response_never_changes_when_the_bundle_is_reordered(
    order: list[int], ruleset: ipm_cds.Ruleset, python_engine: ipm_cds.Engine
) -> None:
    """The scores and the opioid orders in any order: the same series, so the same classification."""
    shuffled = {**_EXAMPLE, "entry": [_EXAMPLE["entry"][i] for i in order]}
    mapping = read_bundle(shuffled, ruleset=ruleset)
    reference = read_bundle(_EXAMPLE, ruleset=ruleset)
    assert mapping.patient == reference.patient
    assert _classification(python_engine.evaluate(mapping.patient, as_of=AS_OF)) == _classification(
        python_engine.evaluate(reference.patient, as_of=AS_OF)
    )
