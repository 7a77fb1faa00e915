"""A patient Bundle with a draft ServiceRequest: the reader makes it a requested procedure, which gets a verdict."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import ipm_cds
from ipm_cds.interop.fhir import read_bundle
from ipm_cds.interop.service_requests import BODY_REGION_SYSTEM

from .conftest import AS_OF

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "fhir"


def _with_order(bundle: dict[str, Any], code: str, region: str | None) -> dict[str, Any]:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": "order-1",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]},
        "subject": {"reference": f"Patient/{patient['id']}"},
    }
    if region is not None:
        order["bodySite"] = [{"coding": [{"system": BODY_REGION_SYSTEM, "code": region}]}]
    return {**bundle, "entry": [*bundle["entry"], {"resource": order}]}


def test_a_draft_service_request_becomes_a_requested_procedure_with_a_verdict(ruleset: ipm_cds.Ruleset) -> None:
    bundle = json.loads((EXAMPLES / "cauda_equina.json").read_text(encoding="utf-8"))
    mapping = read_bundle(_with_order(bundle, "64635", "lumbar"), ruleset=ruleset)
    (requested,) = mapping.patient.requested
    assert (requested.intervention, requested.region, requested.status) == ("facet_rfa", "lumbar", "requested")
    assessment = ipm_cds.Engine(ruleset, backend="python").evaluate(mapping.patient, as_of=AS_OF)
    (verdict,) = assessment.requested
    assert verdict.intervention == "facet_rfa" and verdict.verdict == "not_appropriate"  # a red flag blocks it
    assert any(j.blocking for j in verdict.safety)


def test_a_lumbar_facet_code_fixes_the_region_a_cervical_or_thoracic_one_does_not(ruleset: ipm_cds.Ruleset) -> None:
    """64635 is a lumbar or sacral facet RFA code (every such facet joint is lumbar): the code fixes the region.
    64633 is "cervical or thoracic": no region is guessed; the request stays, without one, and its verdict is
    "cannot tell yet" naming the region as missing (a red flag still blocks it: not appropriate)."""
    bundle = json.loads((EXAMPLES / "cauda_equina.json").read_text(encoding="utf-8"))
    (requested,) = read_bundle(_with_order(bundle, "64635", None), ruleset=ruleset).patient.requested
    assert (requested.intervention, requested.region) == ("facet_rfa", "lumbar")

    mapping = read_bundle(_with_order(bundle, "64633", None), ruleset=ruleset)
    (requested,) = mapping.patient.requested
    assert (requested.intervention, requested.region) == ("facet_rfa", None)
    assert not any(u.resource == "ServiceRequest/order-1" for u in mapping.unmapped)
    (verdict,) = ipm_cds.Engine(ruleset, backend="python").evaluate(mapping.patient, as_of=AS_OF).requested
    assert verdict.verdict == "not_appropriate" and any(j.kind == "red_flag" for j in verdict.safety)
    assert "requested.region" in {m.field for m in verdict.missing}


def _with_stent(
    bundle: dict[str, Any], *codings: tuple[str, str], performed: str | None = "2025-04-01"
) -> dict[str, Any]:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    procedure: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": "pci-1",
        "status": "completed",
        "code": {"coding": [{"system": system, "code": code} for system, code in codings]},
        "subject": {"reference": f"Patient/{patient['id']}"},
    }
    if performed is not None:
        procedure["performedDateTime"] = performed
    return {**bundle, "entry": [*bundle["entry"], {"resource": procedure}]}


CPT = "http://www.ama-assn.org/go/cpt"
STENT_TYPE = "https://ipm-cds.invalid/fhir/CodeSystem/coronary-stent-type"


def test_a_coronary_stent_procedure_becomes_a_dated_stent_that_defers_an_elective_order(
    ruleset: ipm_cds.Ruleset,
) -> None:
    """CPT 92928 (intracoronary stent placement) with the local stent-type code: a drug-eluting stent placed two
    months before as_of; a requested lumbar facet RFA is then not appropriate (ACC/AHA 2016: 3 months)."""
    bundle = json.loads((EXAMPLES / "facet_rfa.json").read_text(encoding="utf-8"))
    mapping = read_bundle(
        _with_order(_with_stent(bundle, (CPT, "92928"), (STENT_TYPE, "drug_eluting")), "64635", "lumbar"),
        ruleset=ruleset,
    )
    assert [(s.type, s.date) for s in mapping.patient.coronary_stents] == [("drug_eluting", date(2025, 4, 1))]
    assert not any(u.resource == "Procedure/pci-1" for u in mapping.unmapped)  # read, as a stent
    (verdict,) = ipm_cds.Engine(ruleset, backend="python").evaluate(mapping.patient, as_of=AS_OF).requested
    assert verdict.verdict == "not_appropriate"
    assert any(j.basis.rule.startswith("safety.coronary_stent.des_recent@") for j in verdict.safety)


def test_a_stent_code_without_the_type_leaves_the_type_missing(ruleset: ipm_cds.Ruleset) -> None:
    bundle = json.loads((EXAMPLES / "facet_rfa.json").read_text(encoding="utf-8"))
    mapping = read_bundle(_with_order(_with_stent(bundle, (CPT, "92928")), "64635", "lumbar"), ruleset=ruleset)
    assert [(s.type, s.date) for s in mapping.patient.coronary_stents] == [(None, date(2025, 4, 1))]
    (verdict,) = ipm_cds.Engine(ruleset, backend="python").evaluate(mapping.patient, as_of=AS_OF).requested
    assert verdict.verdict == "cannot_tell" and "coronary_stents.type" in {m.field for m in verdict.missing}
