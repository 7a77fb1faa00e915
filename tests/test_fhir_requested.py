"""A patient Bundle with a draft ServiceRequest: the reader makes it a requested procedure, which gets a verdict."""

from __future__ import annotations

import json
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
