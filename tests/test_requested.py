"""Requested procedures (issue 13): the patient model, verdicts, the safety judgements by construction,
the FHIR ServiceRequest mapping and the CDS Hooks order hooks in one evaluation."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from jsonschema import Draft202012Validator

import ipm_cds
from ipm_cds.errors import PatientDataError
from ipm_cds.interop.cds_hooks import CARD_EXTENSION, evaluate_orders
from ipm_cds.interop.service_requests import requested_from_bundle, requested_procedures
from ipm_cds.model.patient import PatientCase
from ipm_cds.model.render import render_text
from ipm_cds.testing import invariants
from ipm_cds.testing.strategies import patients, with_requested

from .conftest import AS_OF

ROOT = Path(__file__).resolve().parent.parent
FACET = yaml.safe_load((ROOT / "examples/patients/facet_rfa_candidate.yaml").read_text())
RFA = {"id": "sr-1", "intervention": "facet_rfa", "region": "lumbar", "levels": ["L4-L5", "L5-S1"], "side": "bilateral"}
CPT = "http://www.ama-assn.org/go/cpt"
REGION = "https://ipm-cds.invalid/fhir/CodeSystem/body-region"
APIXABAN = {"agent": "apixaban", "daily_dose": 10, "dose_unit": "mg", "indication": "treatment"}


def _with(requested: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(FACET)
    doc.update(changes)
    doc["requested"] = requested
    return doc


# -- the patient model ----------------------------------------------------------------------------------------


def test_a_planned_date_may_lie_after_as_of_and_no_other_date_may(durable: ipm_cds.Engine) -> None:
    a = durable.evaluate(_with([{**RFA, "planned_date": "2025-09-01"}]), as_of=AS_OF)
    assert a.requested[0].planned_date == date(2025, 9, 1)
    late = _with([RFA])
    late["pain"][0]["onset_date"] = "2025-09-01"
    with pytest.raises(PatientDataError) as err:
        durable.evaluate(late, as_of=AS_OF)
    assert [p.field for p in err.value.problems] == ["pain[0].onset_date"]


def test_unknown_intervention_code_is_refused_with_a_suggestion(durable: ipm_cds.Engine) -> None:
    with pytest.raises(PatientDataError) as err:
        durable.evaluate(_with([{**RFA, "intervention": "facet_rf"}]), as_of=AS_OF)
    (problem,) = err.value.problems
    assert problem.field == "requested[0].intervention"
    assert "facet_rfa" in (problem.hint or "")


def test_unknown_approach_and_a_dose_without_agent_are_refused(durable: ipm_cds.Engine) -> None:
    with pytest.raises(PatientDataError) as err:
        durable.ruleset.parse_patient(_with([{**RFA, "approach": "interlaminr"}]))
    assert [p.field for p in err.value.problems] == ["requested[0].approach"]
    with pytest.raises(PatientDataError):
        ipm_cds.parse_patient(_with([{**RFA, "steroid_dose_mg": 40.0}]))


# -- verdicts and the safety judgements -----------------------------------------------------------------------


def test_requested_and_proposed_rfa_carries_the_candidates_precautions(durable: ipm_cds.Engine) -> None:
    a = durable.evaluate(_with([RFA]), as_of=AS_OF)
    (v,) = a.requested
    assert (v.verdict, v.proposed, v.indication and v.indication.rule.split("@")[0]) == (
        "appropriate",
        True,
        "facet.rfa.initial",
    )
    (cand,) = [c for c in a.candidates if c.intervention == "facet_rfa"]
    on_candidate = sorted((p.kind, p.text, p.basis.rule) for p in cand.precautions)
    on_request = sorted((j.kind, j.text, j.basis.rule) for j in v.safety if j.kind in ("caution", "antithrombotic"))
    assert on_request == on_candidate


def test_safety_is_the_same_when_no_rule_proposes_it(durable: ipm_cds.Engine) -> None:
    a = invariants.assert_requested_safety_independent(durable, ipm_cds.parse_patient(_with([RFA])), AS_OF)
    assert a.requested[0].proposed and any(j.kind == "antithrombotic" for j in a.requested[0].safety)


def test_an_order_only_check_never_removes_the_proposal(durable: ipm_cds.Engine) -> None:
    a = durable.evaluate(_with([{**RFA, "guidance": "landmark"}]), as_of=AS_OF)
    assert a.requested[0].verdict == "not_appropriate"
    assert [j.basis.rule.split("@")[0] for j in a.requested[0].safety if j.kind == "unmet_criterion"] == [
        "requested.guidance.not_allowed"
    ]
    assert a.candidate("facet_rfa") is not None
    assert all(e.intervention != "facet_rfa" for e in a.excluded)


def test_unproposed_requested_procedure_gets_pregnancy_exclusion_and_referral(durable: ipm_cds.Engine) -> None:
    doc = _with([{"intervention": "esi_interlaminar", "region": "lumbar", "levels": ["L4-L5"]}])
    doc["demographics"] = {"age_years": 34, "sex": "female", "pregnant": True}
    (v,) = durable.evaluate(doc, as_of=AS_OF).requested
    assert not v.proposed and v.verdict == "not_appropriate"
    kinds = {j.kind: j.basis.rule.split("@")[0] for j in v.safety}
    assert kinds["absolute_contraindication"] == "safety.pregnancy.defer"
    assert kinds["referral"] == "safety.pregnancy.obstetrics"
    assert kinds["antithrombotic"] == "asra.hold"  # apixaban, intermediate risk: the hold the candidate would get


def test_verdicts_in_json_text_and_explain(durable: ipm_cds.Engine) -> None:
    doc = _with([RFA, {"intervention": "facet_mbb", "region": "cervical"}])
    a = durable.evaluate(doc, as_of=AS_OF)
    data = json.loads(a.to_json())
    assert [(v["intervention"], v["verdict"]) for v in data["requested"]] == [
        ("facet_mbb", "not_appropriate"),
        ("facet_rfa", "appropriate"),
    ]
    assert ipm_cds.Assessment.model_validate_json(a.to_json()) == a
    text = render_text(a)
    assert "REQUESTED PROCEDURES (2)" in text and "IN SCOPE" in text
    explanation = durable.explain(doc, as_of=AS_OF)
    assert explanation.assessment.requested == a.requested
    from ipm_cds.engine.explain import render_explanation

    assert "REQUESTED PROCEDURES (2)" in render_explanation(explanation)


# -- hypothesis invariants ------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(with_requested(without_region_pct=10, stent_pct=15))
def test_every_requested_procedure_gets_a_verdict_and_backends_agree(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, patient: PatientCase
) -> None:
    a = invariants.assert_backends_agree(durable, python_engine, patient, AS_OF)
    invariants.assert_every_request_has_a_verdict(durable, patient, a)
    invariants.assert_red_flag_blocks_requested(durable, a)


@settings(max_examples=100)
@given(with_requested(patients(red_flags=True)))
def test_a_red_flag_blocks_every_requested_elective_procedure(durable: ipm_cds.Engine, patient: PatientCase) -> None:
    a = durable.evaluate(patient, as_of=AS_OF)
    invariants.assert_every_request_has_a_verdict(durable, patient, a)
    invariants.assert_red_flag_blocks_requested(durable, a)


@settings(max_examples=100)
@given(with_requested(without_region_pct=10, stent_pct=15))
def test_safety_judgements_do_not_depend_on_the_proposal(python_engine: ipm_cds.Engine, patient: PatientCase) -> None:
    invariants.assert_requested_safety_independent(python_engine, patient, AS_OF)


# -- FHIR ServiceRequest -> requested procedures ----------------------------------------------------------------


def _sr(ident: str, code: str, system: str = CPT, status: str = "draft", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": ident,
        "status": status,
        "intent": "proposal",
        "code": {"coding": [{"system": system, "code": code}]},
        "bodySite": [{"coding": [{"system": REGION, "code": "lumbar"}]}],
        **extra,
    }


def test_service_request_mapping(durable: ipm_cds.Engine) -> None:
    rs = durable.ruleset
    draft = requested_procedures(_sr("a", "64635", occurrenceDateTime="2025-06-20T09:00:00Z"), rs)
    assert draft.requested == [
        {
            "id": "a",
            "status": "requested",
            "region": "lumbar",
            "planned_date": "2025-06-20",
            "intervention": "facet_rfa",
        }
    ]
    active = requested_procedures(_sr("b", "62323", status="active", occurrencePeriod={"start": "2025-07-01"}), rs)
    assert sorted((r["intervention"], r["status"]) for r in active.requested) == [
        ("esi_caudal", "scheduled"),
        ("esi_interlaminar", "scheduled"),
    ]  # 62323 is shared: each is assessed
    assert requested_procedures(_sr("c", "64635", status="completed"), rs).unmapped[0][0] == "ServiceRequest/c"
    local = _sr("d", "sij_injection", system="https://ipm-cds.invalid/fhir/CodeSystem/intervention")
    local["bodySite"] = [
        {"coding": [{"system": REGION, "code": "sacroiliac"}, {"system": "http://snomed.info/sct", "code": "24028007"}]}
    ]
    local["orderDetail"] = [
        {
            "coding": [
                {"system": "https://ipm-cds.invalid/fhir/CodeSystem/steroid-agent", "code": "triamcinolone_acetonide"}
            ]
        },
        {"coding": [{"system": "https://ipm-cds.invalid/fhir/CodeSystem/image-guidance", "code": "ultrasound"}]},
    ]
    local["extension"] = [
        {
            "url": "https://ipm-cds.invalid/fhir/StructureDefinition/steroid-dose",
            "valueQuantity": {"value": 40, "code": "mg"},
        }
    ]
    (doc,) = requested_procedures(local, rs).requested
    assert (doc["side"], doc["guidance"], doc["steroid_agent"], doc["steroid_dose_mg"]) == (
        "right",
        "ultrasound",
        "triamcinolone_acetonide",
        40.0,
    )
    # the region, never guessed: bodySite; else the levels' region; else the code's, when it fixes one
    lumbar_facet = _sr("e", "64635")
    del lumbar_facet["bodySite"]
    assert [r.get("region") for r in requested_procedures(lumbar_facet, rs).requested] == ["lumbar"]
    neck_or_back = _sr("f", "64633")  # "cervical or thoracic": the code does not fix the region
    del neck_or_back["bodySite"]
    mapped = requested_procedures(neck_or_back, rs)
    assert mapped.unmapped == [] and [("region" in r) for r in mapped.requested] == [False]
    level = "https://ipm-cds.invalid/fhir/StructureDefinition/spinal-level"
    for levels, region in ((["L5-S1"], "lumbar"), (["S1"], "sacral"), (["C5-C6"], None), (["L4-L5", "S1"], None)):
        tf = _sr("g", "64483", extension=[{"url": level, "valueString": v} for v in levels])
        del tf["bodySite"]
        (doc,) = requested_procedures(tf, rs).requested
        assert doc.get("region") == region, levels  # C5-C6 contradicts a lumbar or sacral code: not guessed
    genicular = _sr("h", "genicular_rfa", system="https://ipm-cds.invalid/fhir/CodeSystem/intervention")
    del genicular["bodySite"]
    assert [r.get("region") for r in requested_procedures(genicular, rs).requested] == ["knee"]
    bundle = {
        "resourceType": "Bundle",
        "entry": [{"resource": _sr("a", "64635")}, {"resource": _sr("x", "1234-5", "http://loinc.org")}],
    }
    picked = requested_from_bundle(bundle, rs, ["ServiceRequest/a"])
    assert [r["id"] for r in picked.requested] == ["a"] and picked.unmapped == []


# -- CDS Hooks order-select / order-sign: one evaluation, one card per requested order ---------------------------


def test_order_hooks_answer_with_one_evaluation(durable: ipm_cds.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipm_cds.engine import facade

    runs = []
    real = facade.run_program

    def counting(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(facade, "run_program", counting)
    patient = durable.ruleset.parse_patient(_with([]))
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": _sr("rfa", "64635")},
            {
                "resource": _sr(
                    "tf",
                    "64483",
                    orderDetail=[
                        {
                            "coding": [
                                {"system": "https://ipm-cds.invalid/fhir/CodeSystem/image-guidance", "code": "landmark"}
                            ]
                        }
                    ],
                )
            },
            {"resource": _sr("lab", "1234-5", "http://loinc.org")},
        ],
    }
    _, cards = evaluate_orders(durable, patient, bundle, as_of=AS_OF, hook_instance="hook-1")
    assert len(runs) == 1
    by_order = {
        c["extension"][CARD_EXTENSION]["order"]: c
        for c in cards
        if c["extension"][CARD_EXTENSION]["kind"] == "requested"
    }
    assert set(by_order) == {"ServiceRequest/rfa", "ServiceRequest/tf"}
    assert by_order["ServiceRequest/rfa"]["extension"][CARD_EXTENSION]["verdict"] == "appropriate"
    assert by_order["ServiceRequest/tf"]["extension"][CARD_EXTENSION]["verdict"] == "not_appropriate"
    assert by_order["ServiceRequest/tf"]["suggestions"][0]["actions"][0]["resourceId"] == "ServiceRequest/tf"
    validator = Draft202012Validator(
        json.loads((Path(__file__).parent / "fixtures" / "cds_hooks_card.schema.json").read_text(encoding="utf-8"))
    )
    for card in cards:
        assert not list(validator.iter_errors(card)), card["summary"]
    assert not any("ServiceRequest/lab" in json.dumps(c) for c in cards)  # a lab order is not ipm-cds's business
    again = evaluate_orders(durable, patient, bundle, as_of=AS_OF, hook_instance="hook-1")[1]
    assert [c["uuid"] for c in again] == [c["uuid"] for c in cards]


def test_every_scope_rule_names_interventions_of_the_catalogue(durable: ipm_cds.Engine) -> None:
    from ipm_cds.ruleset import ir

    named = {
        str(dict(c.values)["intervention"])
        for r in durable.ruleset.rules
        for c in r.conclusions
        if isinstance(c, ir.Derive) and c.fact == "in_scope"
    }
    assert named and named <= set(durable.ruleset.interventions), sorted(named - set(durable.ruleset.interventions))


def test_an_order_without_a_region_gets_a_verdict_naming_the_region_missing(durable: ipm_cds.Engine) -> None:
    """The facet RFA is indicated at the lumbar region; an order that does not say where cannot be appropriate:
    "cannot tell yet", the region named as missing; judged at the intervention's highest bleeding risk (a
    cervical facet RFA is intermediate risk, a lumbar one low), never at the lower one."""
    no_region = {k: v for k, v in RFA.items() if k != "region"}
    (verdict,) = durable.evaluate(_with([no_region], medications=[APIXABAN]), as_of=AS_OF).requested
    assert verdict.verdict == "cannot_tell" and verdict.target.region is None
    assert "requested.region" in {m.field for m in verdict.missing} and "requested.region" in verdict.summary
    assert verdict.bleeding_risk == "intermediate"
    (lumbar,) = durable.evaluate(_with([RFA], medications=[APIXABAN]), as_of=AS_OF).requested
    assert lumbar.bleeding_risk == "low" and lumbar.verdict != "cannot_tell"


def test_the_hooks_orders_replace_the_records_request_with_the_same_id(durable: ipm_cds.Engine) -> None:
    patient = durable.ruleset.parse_patient(_with([{**RFA, "id": "rfa", "region": "cervical"}]))
    bundle = {"resourceType": "Bundle", "entry": [{"resource": _sr("rfa", "64635")}]}
    assessment, cards = evaluate_orders(durable, patient, bundle, as_of=AS_OF, hook_instance="hook-2")
    assert [(v.order, v.target.region) for v in assessment.requested] == [("rfa", "lumbar")]
    assert [c["extension"][CARD_EXTENSION]["order"] for c in cards if "order" in c["extension"][CARD_EXTENSION]] == [
        "ServiceRequest/rfa"
    ]


def test_a_threshold_without_a_value_under_the_profile_leaves_the_verdict_open(copy: Path) -> None:
    """The facet blocks' relief threshold unset under cms_lcd (a deployment's ruleset): the rules that find the
    positive blocks cannot run, so the RFA's indication is not shown either way: "cannot tell yet", naming the
    parameter and the profile, never "not appropriate". Under society_consensus (which sets it) the verdict stands."""
    from ipm_cds.ruleset.loader import load_ruleset

    params = copy / "catalogues" / "parameters.yaml"
    text = params.read_text(encoding="utf-8")
    old = "    default: 80\n    profiles:\n      cms_lcd: 80\n      society_consensus: 50\n"
    assert text.count(old) == 1
    params.write_text(
        text.replace(old, "    default: null\n    profiles:\n      society_consensus: 50\n"), encoding="utf-8"
    )
    (copy / "ruleset.lock.json").unlink()
    ruleset = load_ruleset(copy)
    for backend in ("python", "durable"):
        engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
        (verdict,) = engine.evaluate(_with([RFA]), as_of=AS_OF).requested
        assert verdict.verdict == "cannot_tell", backend
        assert "facet_block_relief_pct" in verdict.summary and "cms_lcd" in verdict.summary
        assert any("parameter without a value: facet_block_relief_pct" in r.text for r in verdict.reasons)
        assert verdict.missing == []  # nothing for the clinician to record: the threshold is the deployment's
        consensus = ipm_cds.Engine(ruleset, profile="society_consensus", backend=backend)  # type: ignore[arg-type]
        assert consensus.evaluate(_with([RFA]), as_of=AS_OF).requested[0].verdict == "appropriate"


def test_a_safety_threshold_without_a_value_leaves_the_verdict_open_only_where_it_could_apply(copy: Path) -> None:
    """The bare-metal stent wait unset: a patient with a bare-metal stent 10 days ago cannot be told "appropriate"
    (the rule that would defer the RFA cannot run); a patient with no stent recorded is not held up by it."""
    from ipm_cds.ruleset.loader import load_ruleset

    params = copy / "catalogues" / "parameters-requested.yaml"
    text = params.read_text(encoding="utf-8")
    assert text.count("    default: 30\n") == 1
    params.write_text(text.replace("    default: 30\n", "    default: null\n"), encoding="utf-8")
    (copy / "ruleset.lock.json").unlink()
    engine = ipm_cds.Engine(load_ruleset(copy), backend="python")
    stented = _with([RFA], coronary_stents=[{"type": "bare_metal", "date": "2025-05-23"}])
    (verdict,) = engine.evaluate(stented, as_of=AS_OF).requested
    assert verdict.verdict == "cannot_tell" and "coronary_stent_bms_min_days" in verdict.summary
    assert [r.basis.rule.split("@")[0] for r in verdict.reasons] == ["safety.coronary_stent.bms_recent"]
    assert engine.evaluate(_with([RFA]), as_of=AS_OF).requested[0].verdict == "appropriate"


def test_an_order_for_the_other_side_says_so(durable: ipm_cds.Engine) -> None:
    """Left radicular pain; a right caudal epidural is requested: not appropriate, and the reason says the rule
    proposes it for the left side (a verdict without a reason was the falsifying example of the invariant)."""
    doc = {
        "demographics": {"age_years": 18},
        "pain": [
            {
                "region": "lumbar",
                "laterality": "left",
                "character": "radicular",
                "duration_weeks": 10,
                "nrs": 0,
                "odi_pct": 0,
            }
        ],
        "imaging": [{"modality": "mri", "finding": "disc_herniation", "region": "lumbar", "concordant": True}],
        "procedures": [{"kind": "laminectomy", "region": "lumbar", "levels": ["L4-L5"], "date": "2025-04-03"}],
        "conservative_care": {"failed": True},
        "requested": [{"id": "sr-0", "intervention": "esi_caudal", "region": "lumbar", "side": "right"}],
    }
    (verdict,) = durable.evaluate(doc, as_of=AS_OF).requested
    assert verdict.verdict == "not_appropriate"
    assert any("left side" in r.text for r in verdict.reasons), [r.text for r in verdict.reasons]
