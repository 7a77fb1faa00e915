"""Properties over generated patients: backend agreement, order invariance, safety dominance,
provenance completeness and JSON round trip."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.model.patient import PatientCase
from ipm_cds.testing import invariants
from ipm_cds.testing.strategies import patients

from .conftest import AS_OF


def at_least(n: int) -> settings:
    """``n`` examples, or more when the chosen hypothesis profile asks for more (thorough: 10,000)."""
    return settings(max_examples=max(n, settings.default.max_examples))


@at_least(500)
@given(patients())
def test_backends_agree_on_500_generated_patients(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, patient: PatientCase
) -> None:
    invariants.assert_backends_agree(durable, python_engine, patient, AS_OF)


@at_least(300)
@given(patients(), st.randoms(use_true_random=False))
def test_shuffling_every_list_changes_nothing(
    durable: ipm_cds.Engine, patient: PatientCase, rng: random.Random
) -> None:
    invariants.assert_order_invariant(durable, patient, AS_OF, rng)


@given(patients(red_flags=True, prior_procedures=True))
def test_red_flags_leave_no_elective_candidate(durable: ipm_cds.Engine, patient: PatientCase) -> None:
    invariants.assert_red_flag_dominance(durable, durable.evaluate(patient, as_of=AS_OF))


@given(patients(anticoagulants=True, prior_procedures=True))
def test_provenance_is_complete_and_json_round_trips(durable: ipm_cds.Engine, patient: PatientCase) -> None:
    assessment = durable.evaluate(patient, as_of=AS_OF)
    invariants.assert_provenance_complete(durable, assessment)
    invariants.assert_round_trip(assessment)


@given(patients(prior_procedures=True))
def test_every_anticoagulated_candidate_carries_its_hold_advice(durable: ipm_cds.Engine, patient: PatientCase) -> None:
    assessment = durable.evaluate(patient, as_of=AS_OF)
    agents = {m.agent for m in patient.medications if durable.ruleset.medications[m.agent].antithrombotic}
    for candidate in assessment.candidates:
        advised = {p.medication for p in candidate.precautions if p.kind == "antithrombotic"}
        assert advised == agents, f"{candidate.intervention}: hold advice for {advised}, on {agents}"


@given(patients(prior_procedures=True))
def test_explanations_agree_across_backends(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, patient: PatientCase
) -> None:
    a = durable.explain(patient, as_of=AS_OF).model_dump(mode="json")
    b = python_engine.explain(patient, as_of=AS_OF).model_dump(mode="json")
    for d in (a, b):
        d["assessment"]["provenance"].pop("backend")
    assert a == b
