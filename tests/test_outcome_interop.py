"""FHIR Observation series and the treatment-response card (issue 16), the two pieces the lead wires in."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import ipm_cds
from ipm_cds.interop.response_card import response_card
from ipm_cds.interop.series import observations_to_measurements
from ipm_cds.patientfile import read_patient_document

ROOT = Path(__file__).resolve().parents[1]


def obs(ident: str, loinc: str, value: Any, when: str | None = "2026-01-12T09:30:00Z", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        **extra,
    }
    if when is not None:
        resource["effectiveDateTime"] = when
    if value is not None:
        resource["valueInteger" if isinstance(value, int) else "valueQuantity"] = (
            value if isinstance(value, int) else {"value": value}
        )
    return resource


def test_observations_become_measurements_that_the_patient_model_accepts(ruleset: ipm_cds.Ruleset) -> None:
    resources = [
        obs("p1", "72514-3", 8, "2025-11-25", bodySite={"text": "Lumbar"}),
        obs("p2", "72514-3", 7.0, "2025-12-15T08:00:00-05:00", bodySite={"coding": [{"code": "122496007"}]}),
        obs("d1", "44261-6", 9),
        obs("x", "8867-4", 70),  # heart rate: not an instrument, left to the rest of the reader
        obs("e", "70274-6", 5, status="entered-in-error"),
        obs("n", "70274-6", 5, when=None),
        obs("v", "44261-6", None),
    ]
    measurements, unread = observations_to_measurements(resources, regions={"122496007": "lumbar"})
    assert measurements == [
        {"instrument": "nrs", "score": 8.0, "date": "2025-11-25", "region": "lumbar"},
        {"instrument": "nrs", "score": 7.0, "date": "2025-12-15", "region": "lumbar"},
        {"instrument": "phq9", "score": 9.0, "date": "2026-01-12"},
    ]
    assert [u[0] for u in unread] == ["e", "n", "v"]
    assert "entered-in-error" in unread[0][1]
    ruleset.parse_patient({"measurements": measurements})  # valid against the model and the vocabularies


def test_response_card_carries_the_classification(durable: ipm_cds.Engine) -> None:
    doc = read_patient_document(ROOT / "examples" / "patients" / "esi_non_responder.yaml")
    assessment = durable.evaluate(doc, as_of=date(2026, 4, 15))
    card = response_card(assessment, report_url="https://cds.example/report/1")
    assert card is not None
    assert card["indicator"] == "warning"  # the non-responder finding leads
    assert card["summary"].startswith("Treatment response: Non-responder") and len(card["summary"]) < 140
    assert "| warning | Non-responder" in card["detail"]
    assert "`outcomes.response.non_responder@1.0.0`" in card["detail"]
    assert card["links"][0]["url"] == "https://cds.example/report/1"
    assert response_card(assessment) == {k: v for k, v in card.items() if k != "links"}


def test_no_card_without_a_response_finding(durable: ipm_cds.Engine) -> None:
    doc = read_patient_document(ROOT / "examples" / "patients" / "facet_rfa_candidate.yaml")
    assert response_card(durable.evaluate(doc, as_of=date(2025, 6, 2))) is None


def test_the_tables_instruments_and_their_units_are_read_by_the_standalone_mapping(ruleset: ipm_cds.Ruleset) -> None:
    """ODI by LOINC in % only, PROMIS T-scores without a unit (or a UCUM annotation): another unit is unread."""
    resources = [
        obs("o1", "97909-6", None, valueQuantity={"value": 38, "code": "%"}),
        obs("o2", "97909-6", None, valueQuantity={"value": 19, "code": "{score}"}),
        obs("f1", "71959-1", None, valueQuantity={"value": 41.2, "code": "{T-score}"}),
        obs("f2", "71961-7", None, valueQuantity={"value": 58.0, "code": "%"}),
    ]
    measurements, unread = observations_to_measurements(resources)
    assert measurements == [
        {"instrument": "odi", "score": 38.0, "date": "2026-01-12"},
        {"instrument": "promis_pf", "score": 41.2, "date": "2026-01-12"},
    ]
    assert unread == [("o2", "unit {score} not accepted for odi"), ("f2", "unit % not accepted for promis_pi")]
    ruleset.parse_patient({"measurements": measurements})
    # a deployment's own codes replace the tables' (and their unit rules)
    assert observations_to_measurements(resources[1:2], codes={"97909-6": "odi"})[0][0]["score"] == 19.0
