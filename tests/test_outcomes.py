"""Treatment response over time (issue 16): the series facts, order invariance, backend agreement.

The rules themselves are tested by their YAML cases (rules/ipm-core/tests/outcomes.yaml, both backends in
test_rule_cases); here: what the facts layer computes from a series, that the classification never
changes when the measurements (or the MME records, or the procedures) are reordered in the document, and
that both backends give the same assessment for every longitudinal example.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.model.facts.series import series_facts
from ipm_cds.patientfile import read_patient_document

ROOT = Path(__file__).resolve().parents[1]
LONGITUDINAL = {
    "rfa_responder": date(2026, 4, 15),
    "esi_non_responder": date(2026, 4, 15),
    "opioid_taper": date(2026, 4, 15),
}
AS_OF = date(2026, 4, 15)


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = read_patient_document(ROOT / "examples" / "patients" / f"{name}.yaml")
    return document


def facts_of(
    ruleset: ipm_cds.Ruleset, document: dict[str, Any], as_of: date = AS_OF
) -> list[tuple[str, dict[str, Any]]]:
    patient = ruleset.parse_patient(document)
    return list(series_facts(patient, as_of, ruleset.code_infos()["outcome_measure"]))


def of_type(facts: list[tuple[str, dict[str, Any]]], name: str, **where: Any) -> list[dict[str, Any]]:
    return [v for t, v in facts if t == name and all(v.get(k) == x for k, x in where.items())]


def test_response_baseline_window_and_sustained_relief(ruleset: ipm_cds.Ruleset) -> None:
    facts = facts_of(ruleset, example("rfa_responder"))
    (rfa,) = of_type(facts, "response", scope="procedure", kind="facet_rfa", instrument="nrs")
    # baseline: the last score on or before the RFA (2025-06-02: 7), not the first of the series
    assert (rfa["baseline"], rfa["baseline_date"], rfa["latest"], rfa["latest_date"]) == (
        7.0,
        "2025-06-02",
        5.0,
        "2026-03-10",
    )
    assert rfa["improvement"] == 2.0 and rfa["improvement_pct"] == 28.6 and rfa["worsening"] == -2.0
    follow = sorted(of_type(facts, "followup", kind="facet_rfa", instrument="nrs"), key=lambda v: v["weeks_after"])
    assert [f["improvement_pct"] for f in follow] == [71.4, 71.4, 57.1, 28.6]
    assert [f["sustained_pct"] for f in follow] == [71.4, 71.4, 57.1, 28.6]
    assert [f["weeks_after"] for f in follow] == [4.0, 13.0, 26.0, 39.0]
    # diagnostic blocks anchor no response
    assert not of_type(facts, "response", kind="facet_mbb")


def test_sustained_relief_is_the_running_minimum(ruleset: ipm_cds.Ruleset) -> None:
    doc = example("rfa_responder")
    doc["measurements"] = [
        {"instrument": "nrs", "region": "lumbar", "date": "2025-06-01", "score": 8},
        {"instrument": "nrs", "region": "lumbar", "date": "2025-07-01", "score": 6},  # 25%
        {"instrument": "nrs", "region": "lumbar", "date": "2025-08-01", "score": 2},  # 75%, but 25% came first
    ]
    follow = sorted(of_type(facts_of(ruleset, doc), "followup"), key=lambda v: v["weeks_after"])
    assert [f["improvement_pct"] for f in follow] == [25.0, 75.0]
    assert [f["sustained_pct"] for f in follow] == [25.0, 25.0]


def test_higher_is_better_and_window_ends_at_next_procedure(ruleset: ipm_cds.Ruleset) -> None:
    doc = example("rfa_responder")
    doc["procedures"].append(
        {"kind": "facet_rfa", "purpose": "therapeutic", "region": "lumbar", "levels": ["L4-L5"], "date": "2026-01-10"}
    )
    doc["measurements"] = [
        {"instrument": "promis_pf", "region": "lumbar", "date": "2025-06-01", "score": 40.0},
        {"instrument": "promis_pf", "region": "lumbar", "date": "2025-09-01", "score": 46.0},
        {"instrument": "promis_pf", "region": "lumbar", "date": "2026-02-01", "score": 38.0},
    ]
    facts = facts_of(ruleset, doc)
    first = of_type(facts, "response", scope="procedure", procedure_date="2025-06-10")[0]
    second = of_type(facts, "response", scope="procedure", procedure_date="2026-01-10")[0]
    assert (first["latest"], first["improvement"], first["followups"]) == (46.0, 6.0, 1)  # higher is better
    assert (second["baseline"], second["latest"], second["improvement"]) == (46.0, 38.0, -8.0)


def test_mme_steps_and_course(ruleset: ipm_cds.Ruleset) -> None:
    facts = facts_of(ruleset, example("opioid_taper"))
    (course,) = of_type(facts, "opioid_course")
    assert (course["peak_mme"], course["peak_date"], course["latest_mme"], course["reduction_from_peak_pct"]) == (
        90.0, "2025-10-01", 45.0, 50.0,
    )  # fmt: skip
    last = of_type(facts, "mme_step", date="2026-02-16")[0]
    assert (last["reduction_pct"], last["days_between"], last["reduction_pct_per_30_days"]) == (25.0, 14, 53.6)


def test_out_of_range_score_is_refused(ruleset: ipm_cds.Ruleset) -> None:
    doc = example("rfa_responder")
    doc["measurements"].append({"instrument": "nrs", "region": "lumbar", "date": "2025-06-01", "score": 11})
    with pytest.raises(ipm_cds.PatientDataError, match=r"nrs score 11 is outside 0–10"):
        ruleset.parse_patient(doc)


def _canonical(assessment: ipm_cds.Assessment) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(assessment.to_json(timestamp=False))
    data["provenance"].pop("backend")
    return data


@pytest.mark.parametrize("name", sorted(LONGITUDINAL))
def test_backends_agree_on_longitudinal_examples(
    name: str, durable: ipm_cds.Engine, python_engine: ipm_cds.Engine
) -> None:
    doc = example(name)
    a = durable.evaluate(doc, as_of=LONGITUDINAL[name])
    b = python_engine.evaluate(doc, as_of=LONGITUDINAL[name])
    assert _canonical(a) == _canonical(b)
    assert any(alert.code.startswith("outcomes.") for alert in a.alerts)


@given(data=st.data())
def test_classification_never_changes_when_measurements_are_reordered(
    data: st.DataObject, python_engine: ipm_cds.Engine, durable: ipm_cds.Engine
) -> None:
    name = data.draw(st.sampled_from(sorted(LONGITUDINAL)))
    doc = example(name)
    reference = _canonical(python_engine.evaluate(doc, as_of=LONGITUDINAL[name]))
    shuffled = dict(doc)
    for key in ("measurements", "mme_history", "procedures"):
        if doc.get(key):
            shuffled[key] = data.draw(st.permutations(doc[key]), label=key)
    engine = data.draw(st.sampled_from([python_engine, durable]), label="backend")
    assert _canonical(engine.evaluate(shuffled, as_of=LONGITUDINAL[name])) == reference


@given(
    scores=st.lists(st.integers(min_value=0, max_value=10), min_size=2, max_size=8),
    data=st.data(),
)
def test_generated_series_classify_the_same_in_any_order(
    scores: list[int], data: st.DataObject, python_engine: ipm_cds.Engine
) -> None:
    """A generated NRS series around an RFA: the response alerts and exclusions do not depend on order."""
    doc = example("rfa_responder")
    days = [
        "2025-06-01",
        "2025-07-01",
        "2025-08-01",
        "2025-09-01",
        "2025-10-01",
        "2025-11-01",
        "2025-12-01",
        "2026-01-01",
    ]
    doc["measurements"] = [
        {"instrument": "nrs", "region": "lumbar", "date": d, "score": s} for d, s in zip(days, scores, strict=False)
    ]
    first = python_engine.evaluate(doc, as_of=AS_OF)
    doc["measurements"] = data.draw(st.permutations(doc["measurements"]))
    second = python_engine.evaluate(doc, as_of=AS_OF)
    assert _canonical(first) == _canonical(second)
    classes = {a.code for a in first.alerts} & {
        "outcomes.response.responder", "outcomes.response.partial", "outcomes.response.non_responder",
    }  # fmt: skip
    baseline, after = scores[0], scores[1:]
    if baseline == 0:
        assert not classes  # no percent change from a zero baseline
    else:
        best = max(100.0 * (baseline - s) / baseline for s in after)
        expected = "responder" if best >= 50 else "partial" if best >= 30 else "non_responder"
        assert classes == {f"outcomes.response.{expected}"}
