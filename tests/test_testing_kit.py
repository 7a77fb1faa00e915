"""The testing kit itself: strategies reach what they promise, invariants catch broken rulesets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.facts.normalise import normalise
from ipm_cds.patient import PatientCase
from ipm_cds.ruleset.loader import bundled_ruleset_path
from ipm_cds.testing import invariants
from ipm_cds.testing.boundaries import thresholds
from ipm_cds.testing.strategies import boundary_patients, patients, raw_patient_documents

from .conftest import AS_OF

Side = tuple[str, str, float, tuple[tuple[str, object], ...]]


def sides_reached(ruleset: ipm_cds.Ruleset, profile: str, draws: int = 1500) -> dict[Side, set[str]]:
    """For each threshold under ``profile``: which sides (below, at or above) boundary patients reached."""
    sides: dict[Side, set[str]] = {
        (t.fact_type, t.field, t.value, t.selectors): set() for t in thresholds(ruleset, profile)
    }
    context = ruleset.normalise_context()

    @settings(
        max_examples=draws, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(boundary_patients(ruleset, profile=profile))
    def collect(patient: PatientCase) -> None:
        for fact in normalise(patient, AS_OF, context):
            for (fact_type, field, value, selectors), seen in sides.items():
                actual = fact.values.get(field)
                if (
                    fact.type == fact_type
                    and isinstance(actual, int | float)
                    and all(fact.values.get(k) == v for k, v in selectors)
                ):
                    seen.add("below" if actual < value else "at or above")

    collect()
    return sides


def test_boundary_patients_reach_both_sides_of_every_threshold(ruleset: ipm_cds.Ruleset) -> None:
    for profile in ruleset.manifest.profiles:
        sides = sides_reached(ruleset, profile)
        missing = {key: seen for key, seen in sides.items() if seen != {"below", "at or above"}}
        assert not missing, f"profile {profile}: thresholds not reached on both sides: {missing}"


@settings(max_examples=300)
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
        except AssertionError:
            return True
        return False

    example = find(
        patients(red_flags=True, prior_procedures=True),
        violates,
        settings=settings(max_examples=5000, database=None, derandomize=True, suppress_health_check=list(HealthCheck)),
    )
    with pytest.raises(AssertionError, match="elective candidates despite a red flag"):
        invariants.assert_red_flag_dominance(engine, engine.evaluate(example, as_of=AS_OF))
    # the same patient is safe under the intact ruleset
    intact = ipm_cds.Engine(ipm_cds.load_ruleset(), backend="python")
    invariants.assert_red_flag_dominance(intact, intact.evaluate(example, as_of=AS_OF))
