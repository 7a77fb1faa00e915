"""The composable testing kit: patients built from parts, valid under the ruleset given, with its codes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

import ipm_cds
from ipm_cds.testing.compose import background, complication, pathway, patient
from ipm_cds.testing.strategies import boundary_patients

from .conftest import AS_OF


@functools.cache
def _catalogue() -> dict[str, Any]:
    return dict(ipm_cds.load_ruleset(with_tests=False).medications)


@given(patient(pathway("facet"), background(opioids=True, anticoagulants=False)))
@settings(max_examples=40)
def test_parts_compose_a_facet_patient_on_an_opioid_and_no_anticoagulant(case: ipm_cds.PatientCase) -> None:
    assert case.pain and case.pain[0].region in ("cervical", "thoracic", "lumbar")
    catalogue = _catalogue()
    classes = {catalogue[m.agent].drug_class for m in case.medications}
    assert any(c.startswith("opioid") for c in classes)  # a full or partial agonist
    assert not any(catalogue[m.agent].antithrombotic for m in case.medications)


@given(patient(pathway("esi"), complication(), background(red_flags=False)))
@settings(max_examples=40)
def test_a_complication_part_adds_a_safety_finding(case: ipm_cds.PatientCase) -> None:
    assert not case.red_flags or all(f.code in ("fever", "intravenous_drug_use") for f in case.red_flags)
    found = (
        case.demographics.pregnant
        or case.conditions
        or case.allergies
        or case.labs
        or case.medications
        or case.red_flags
    )
    assert found


def test_parts_are_checked_and_named() -> None:
    with pytest.raises(ValueError, match="unknown pathway 'fact'; choose from"):
        pathway("fact")
    with pytest.raises(ValueError, match="at least one part"):
        patient()
    assert repr(background(opioids=True)) == "Part(background(opioids=True))"


def test_codes_come_from_the_ruleset_given(copy: Path) -> None:
    """A ruleset whose body_region vocabulary lacks 'other' and gains 'wrist' draws only its own regions."""
    vocab = copy / "catalogues" / "vocabularies.yaml"
    text = vocab.read_text(encoding="utf-8")
    vocab.write_text(text.replace('      - {code: other, label: "Other"}', '      - {code: wrist, label: "Wrist"}'))
    ruleset = ipm_cds.load_ruleset(copy)
    regions: set[str] = set()

    @given(patient(pathway("general"), ruleset=ruleset))
    @settings(max_examples=150, database=None)
    def draw(case: ipm_cds.PatientCase) -> None:
        regions.update(p.region for p in case.pain)

    draw()
    assert "other" not in regions
    assert regions <= {c.code for c in ruleset.vocabularies["body_region"].codes}


@given(boundary_patients(base=patient(pathway("facet"), background())))
@settings(max_examples=30)
def test_composed_patients_meet_the_rulesets_thresholds_through_boundary_patients(
    python_engine: ipm_cds.Engine, case: ipm_cds.PatientCase
) -> None:
    assert python_engine.evaluate(case, as_of=AS_OF).provenance.ruleset_id == "ipm_core"
