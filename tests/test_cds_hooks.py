"""CDS Hooks out: every card validates against a JSON Schema of the card written from the specification."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import ipm_cds
from ipm_cds.interop.cds_hooks import (
    CARD_EXTENSION,
    TOPIC_RULE,
    operation_outcome,
    order_cards,
    patient_view_cards,
    summary,
)
from ipm_cds.interop.fhir import OrderedIntervention, Unmapped, read_bundle
from ipm_cds.interop.maps import load_maps
from ipm_cds.model.assessment import Basis

AS_OF = date(2025, 6, 2)
ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "cds_hooks_card.schema.json").read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
BUNDLES = sorted((ROOT / "examples" / "fhir").glob("*.json"))
HOOK = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"


def assert_valid(cards: list[dict[str, Any]]) -> None:
    for card in cards:
        errors = sorted(VALIDATOR.iter_errors(card), key=lambda e: list(e.path))
        assert not errors, f"{card['summary']!r}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def assessment_of(name: str, ruleset: ipm_cds.Ruleset, engine: ipm_cds.Engine) -> tuple[ipm_cds.Assessment, Any]:
    mapping = read_bundle((ROOT / "examples" / "fhir" / f"{name}.json").read_text(encoding="utf-8"), ruleset=ruleset)
    return engine.evaluate(mapping.patient, as_of=AS_OF), mapping


def kind(card: dict[str, Any]) -> str:
    return str(card["extension"][CARD_EXTENSION]["kind"])


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("source"), "'source' is a required property"),
        (lambda c: c.update(summary="x" * 140), "is too long"),
        (lambda c: c.update(indicator="urgent"), "is not one of"),
        (lambda c: c.update(suggestions=[{"label": "a"}]), "'selectionBehavior' is a dependency"),
        (
            lambda c: c.update(overrideReasons=[{"system": "s", "code": "c"}]),
            "'display' is a required property",
        ),
        (
            lambda c: c.update(
                suggestions=[{"label": "a", "actions": [{"type": "delete", "description": "d"}]}],
                selectionBehavior="any",
            ),
            "'resourceId' is a required property",
        ),
        (
            lambda c: c.update(
                suggestions=[{"label": "a", "isRecommended": True}, {"label": "b", "isRecommended": True}],
                selectionBehavior="at-most-one",
            ),
            "",
        ),
        (lambda c: c.update(links=[{"label": "l", "url": "https://x", "type": "absolute", "appContext": "x"}]), ""),
        (lambda c: c.update(colour="red"), "Additional properties"),
    ],
)
def test_the_schema_refuses_what_the_specification_forbids(change: Any, message: str) -> None:
    card: dict[str, Any] = {"summary": "ok", "indicator": "info", "source": {"label": "ipm-cds"}}
    assert VALIDATOR.is_valid(card)
    change(card)
    errors = list(VALIDATOR.iter_errors(card))
    assert errors and message in " ".join(e.message for e in errors)


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.stem)
def test_every_patient_view_card_of_every_example_is_valid(
    path: Path, ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine
) -> None:
    assessment, mapping = assessment_of(path.stem, ruleset, durable)
    cards = patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK, unmapped=mapping.unmapped)
    assert cards
    assert_valid(cards)
    assert len({c["uuid"] for c in cards}) == len(cards)
    rules = {b.rule for b in _bases(assessment)}
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["detail"].rstrip().endswith(f"*{assessment.disclaimer}*")
        topic = card["source"]["topic"]
        if topic["system"] == TOPIC_RULE:
            assert topic["code"] in rules and re.fullmatch(r"[\w.]+@\d+\.\d+\.\d+", topic["code"])
        for link in card.get("links", []):
            assert link["url"] in {s.url for b in _bases(assessment) for s in b.sources}


def _bases(a: ipm_cds.Assessment) -> list[Basis]:
    out = [c.basis for c in a.candidates] + [e.basis for e in a.excluded] + [x.basis for x in a.alerts]
    out += [r.basis for r in a.referrals] + [p.basis for p in a.precautions]
    out += [d.basis for d in a.deferred_referrals] + [d.referral.basis for d in a.deferred_referrals]
    out += [p.basis for c in a.candidates for p in c.precautions]
    return out


def test_indicators_follow_the_kind_of_finding(ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine) -> None:
    cauda, _ = assessment_of("cauda_equina", ruleset, durable)
    cards = patient_view_cards(cauda, ruleset=ruleset, hook_instance=HOOK)
    red = [c for c in cards if kind(c) == "red_flag"]
    assert len(red) == 2 and all(c["indicator"] == "critical" for c in red)
    assert cards[0]["indicator"] == "critical"  # critical first
    # the emergency referral is a suggestion on the red-flag card: a ServiceRequest proposal, never an order
    action = red[0]["suggestions"][0]["actions"][0]
    assert action["type"] == "create" and action["resource"]["intent"] == "proposal"
    assert action["resource"]["priority"] == "stat"
    assert action["resource"]["subject"] == {"reference": "Patient/fhir-cauda-equina"}
    assert "Facet medial branch radiofrequency ablation" in red[0]["detail"]  # suppressed candidate
    assert not [c for c in cards if kind(c) == "referral" and "Emergency" in c["summary"]]
    # elective referrals wait for the red flag: listed on its card, never suggested, no card of their own
    assert {d.referral.to for d in cauda.deferred_referrals} == {"physical_therapy", "multidisciplinary_rehabilitation"}
    assert not [c for c in cards if kind(c) == "referral"]
    deferred_on = [c for c in red if "Referrals deferred until assessed" in c["detail"]]
    assert len(deferred_on) == 1 and "Physical therapy" in deferred_on[0]["detail"]
    suggested = [a["resource"] for c in red for s in c.get("suggestions", []) for a in s["actions"]]
    assert suggested and not any("therapy" in json.dumps(r).lower() for r in suggested)

    radicular, _ = assessment_of("esi_radiculopathy", ruleset, durable)
    referrals = [c for c in patient_view_cards(radicular, ruleset=ruleset, hook_instance=HOOK) if kind(c) == "referral"]
    assert referrals and all(c["indicator"] == "info" and c["selectionBehavior"] == "at-most-one" for c in referrals)

    facet, _ = assessment_of("facet_rfa", ruleset, durable)
    cards = patient_view_cards(facet, ruleset=ruleset, hook_instance=HOOK)
    (candidate,) = [c for c in cards if kind(c) == "candidate"]
    assert candidate["indicator"] == "info"
    assert candidate["source"]["topic"]["code"] == "facet.rfa.initial@1.2.0"
    assert "90% and 85%" in candidate["detail"] and "FACET-RFA-01" in candidate["detail"]
    assert "CMS LCD Facet Joint Interventions" in candidate["detail"]
    precautions = [c for c in cards if kind(c) == "precaution"]
    assert precautions and all(c["indicator"] == "warning" for c in precautions)
    apixaban = next(c for c in precautions if c["extension"][CARD_EXTENSION].get("medication") == "apixaban")
    assert "prescriber's approval" in apixaban["detail"]
    assert {r["code"] for r in apixaban["overrideReasons"]} >= {"discussed-with-prescriber"}


def test_absolute_exclusions_are_critical_and_unmet_criteria_info(
    ruleset: ipm_cds.Ruleset, python_engine: ipm_cds.Engine
) -> None:
    from ipm_cds.patientfile import read_patient_document

    infected = read_patient_document(ROOT / "examples" / "fhir" / "esi_radiculopathy.yaml")
    infected["conditions"] = [{"code": "active_systemic_infection"}]
    assessment = python_engine.evaluate(infected, as_of=AS_OF)
    cards = patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK)
    assert_valid(cards)
    absolute = [e for e in assessment.excluded if e.kind == "absolute_contraindication"]
    assert absolute
    exclusion_cards = [c for c in cards if kind(c) == "exclusion"]
    critical = [c for c in exclusion_cards if c["extension"][CARD_EXTENSION]["exclusion_kind"] != "unmet_criterion"]
    assert critical and all(c["indicator"] == "critical" for c in critical)
    unmet = [c for c in exclusion_cards if c["extension"][CARD_EXTENSION]["exclusion_kind"] == "unmet_criterion"]
    assert all(c["indicator"] == "info" for c in unmet)


def test_uuids_are_stable_per_hook_instance_and_differ_between_instances(
    ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine
) -> None:
    assessment, _ = assessment_of("opioids", ruleset, durable)
    first = patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK)
    again = patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK)
    other = patient_view_cards(assessment, ruleset=ruleset, hook_instance=str(uuid.uuid4()))
    assert first == again
    assert {c["uuid"] for c in first}.isdisjoint({c["uuid"] for c in other})
    for card in first:
        uuid.UUID(card["uuid"])
        for s in card.get("suggestions", []):
            uuid.UUID(s["uuid"])


def test_override_reasons_are_the_stable_codes_of_the_map(ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine) -> None:
    reasons = load_maps().override_reasons
    for path in BUNDLES:
        assessment, _ = assessment_of(path.stem, ruleset, durable)
        for card in patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK):
            for r in card.get("overrideReasons", []):
                assert r["system"] == reasons.system and reasons.reasons[r["code"]] == r["display"]


def test_referral_suggestions_are_valid_fhir_service_requests(
    ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine
) -> None:
    from fhir.resources.R4B.servicerequest import ServiceRequest

    count = 0
    for path in BUNDLES:
        assessment, _ = assessment_of(path.stem, ruleset, durable)
        for card in patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK):
            for suggestion in card.get("suggestions", []):
                for action in suggestion["actions"]:
                    if action["type"] == "create":
                        ServiceRequest.model_validate(action["resource"])
                        count += 1
    assert count >= 3


def test_missing_and_unmapped_data_get_their_own_cards(ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine) -> None:
    assessment = durable.evaluate({"pain": [{"region": "lumbar", "character": "axial"}]}, as_of=AS_OF)
    unmapped = [
        Unmapped("MedicationRequest/riv", "unknown_code", "no mapped RxNorm or local medication code", "x|1114195"),
        Unmapped("Encounter/e", "unsupported_resource", "ipm-cds does not read Encounter resources"),
    ]
    cards = patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK, unmapped=unmapped)
    assert_valid(cards)
    (missing,) = [c for c in cards if kind(c) == "missing"]
    assert "duration_weeks" in missing["detail"]
    (unread,) = [c for c in cards if kind(c) == "unmapped"]
    assert unread["indicator"] == "warning" and "MedicationRequest/riv" in unread["summary"]
    benign = patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK, unmapped=unmapped[1:])
    assert [c["indicator"] for c in benign if kind(c) == "unmapped"] == ["info"]


def test_a_long_records_left_out_items_are_one_line_per_kind(ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine) -> None:
    assessment = durable.evaluate({"pain": [{"region": "lumbar", "character": "axial"}]}, as_of=AS_OF)
    reason = "30 of 130 inr labs left out as older (...); the 100 most recent, 2017-01-01 to 2025-05-30, are read"
    unmapped = [Unmapped(f"Observation/inr-{i:03}", "older_left_out", reason) for i in range(30)]
    unmapped.append(
        Unmapped("Condition/dm-2", "duplicate", "the same conditions entry as Condition/dm-1, which is read")
    )
    cards = patient_view_cards(assessment, ruleset=ruleset, hook_instance=HOOK, unmapped=unmapped)
    assert_valid(cards)
    (unread,) = [c for c in cards if kind(c) == "unmapped"]
    assert unread["indicator"] == "info"  # the latest of each kind is read
    lines = [line for line in unread["detail"].splitlines() if line.startswith("- ")]
    assert len(lines) == 2
    assert "`Observation/inr-004` and 25 more: older left out: 30 of 130 inr labs" in unread["detail"]
    assert "`Condition/dm-2`: duplicate: the same conditions entry" in unread["detail"]


def order(ref: str, *interventions: str, region: str | None = None, note: str | None = None) -> OrderedIntervention:
    return OrderedIntervention(ref, interventions, region, None, None, note)


def test_order_cards_for_a_candidate_a_red_flag_and_an_unsupported_intervention(
    ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine
) -> None:
    facet, mapping = assessment_of("facet_rfa", ruleset, durable)
    cards = order_cards(
        facet, order("ServiceRequest/a", "facet_rfa", region="lumbar"), ruleset=ruleset, hook_instance=HOOK
    )
    assert_valid(cards)
    assert [kind(c) for c in cards if c["indicator"] == "info"] == ["candidate"]
    assert "criteria met now" in next(c for c in cards if kind(c) == "candidate")["summary"]
    assert any(kind(c) == "precaution" for c in cards)

    why_not = durable.explain(mapping.patient, as_of=AS_OF).why_not
    cards = order_cards(facet, order("ServiceRequest/b", "esi_transforaminal"), why_not=why_not, ruleset=ruleset)
    assert_valid(cards)
    (card,) = cards
    assert card["indicator"] == "warning" and "not shown to be met" in card["summary"]
    assert "character = radicular (recorded: axial)" in card["detail"]
    action = card["suggestions"][0]["actions"][0]
    assert action == {
        "type": "delete",
        "description": action["description"],
        "resourceId": "ServiceRequest/b",
    }

    cauda, _ = assessment_of("cauda_equina", ruleset, durable)
    cards = order_cards(cauda, order("ServiceRequest/c", "facet_rfa"), ruleset=ruleset, hook_instance=HOOK)
    assert_valid(cards)
    exclusion = next(c for c in cards if kind(c) == "exclusion")
    assert exclusion["indicator"] == "critical" and "red flag" in exclusion["summary"]
    assert any(kind(c) == "red_flag" for c in cards)


def test_an_ambiguous_order_is_assessed_for_each_meaning(ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine) -> None:
    facet, _ = assessment_of("facet_rfa", ruleset, durable)
    cards = order_cards(
        facet, order("ServiceRequest/m", "facet_ia", "facet_mbb", note="CPT 64493 is used for both"), ruleset=ruleset
    )
    assert_valid(cards)
    assert {c["extension"][CARD_EXTENSION].get("intervention") for c in cards} >= {"facet_ia", "facet_mbb"}
    assert all("CPT 64493 is used for both" in c["detail"] for c in cards if kind(c) == "exclusion")


def test_summary_is_cut_at_a_word_under_140() -> None:
    text = "word " * 60
    assert len(summary(text)) <= 139 and summary(text).endswith("…")
    assert summary("  short   text ") == "short text"


def test_operation_outcome_is_valid_fhir() -> None:
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    outcome = operation_outcome([("error", "processing", "missing prefetch", "key labs", ["prefetch.labs"])])
    OperationOutcome.model_validate(outcome)
    assert outcome["issue"][0]["expression"] == ["prefetch.labs"]
