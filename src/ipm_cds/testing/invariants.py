"""Invariant checks: plain functions that raise an informative AssertionError, usable with any ruleset."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from ..assessment import Assessment
from ..engine.facade import Engine
from ..patient import PatientCase


def _diff(a: str, b: str) -> str:
    import difflib

    return "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "first", "second", lineterm=""))[:60])


def assert_backends_agree(durable: Engine, python: Engine, patient: PatientCase, as_of: date) -> Assessment:
    """The durable and python backends return identical assessments (backend name aside)."""
    a = durable.evaluate(patient, as_of=as_of, timestamp=False)
    b = python.evaluate(patient, as_of=as_of, timestamp=False)
    ja = a.to_json(timestamp=False).replace('"backend": "durable"', '"backend": "-"')
    jb = b.to_json(timestamp=False).replace('"backend": "python"', '"backend": "-"')
    assert ja == jb, f"backends disagree:\n{_diff(ja, jb)}"
    return a


def shuffled(patient: PatientCase, rng: random.Random) -> PatientCase:
    """The same patient with every list in the document shuffled."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            items = [walk(v) for v in value]
            rng.shuffle(items)
            return items
        return value

    return PatientCase.model_validate(walk(patient.model_dump(mode="python")))


def assert_order_invariant(engine: Engine, patient: PatientCase, as_of: date, rng: random.Random) -> None:
    """Shuffling every list in the input, or evaluating twice, gives byte-identical JSON."""
    first = engine.evaluate(patient, as_of=as_of, timestamp=False).to_json(timestamp=False)
    again = engine.evaluate(patient, as_of=as_of, timestamp=False).to_json(timestamp=False)
    assert first == again, f"two evaluations differ:\n{_diff(first, again)}"
    other = engine.evaluate(shuffled(patient, rng), as_of=as_of, timestamp=False).to_json(timestamp=False)
    assert first == other, f"shuffling the input changed the assessment:\n{_diff(first, other)}"


def assert_red_flag_dominance(engine: Engine, assessment: Assessment) -> None:
    """With a red flag, no elective candidate remains and an emergency or urgent referral is made."""
    if not any(a.code.startswith("red_flag.") for a in assessment.alerts):
        return
    catalogue = engine.ruleset.interventions
    elective = [c.intervention for c in assessment.candidates if catalogue[c.intervention].elective]
    assert not elective, f"elective candidates despite a red flag: {elective}"
    assert any(r.urgency in ("emergency", "urgent") for r in assessment.referrals), (
        "red flag without an emergency or urgent referral"
    )


def assert_provenance_complete(engine: Engine, assessment: Assessment) -> None:
    """Every conclusion names an active rule id@version, criteria and sources that resolve in the ruleset."""
    active = {r.ref: r for r in engine.program.rules}
    bases = (
        [c.basis for c in assessment.candidates]
        + [e.basis for e in assessment.excluded]
        + [a.basis for a in assessment.alerts]
        + [r.basis for r in assessment.referrals]
        + [p.basis for c in assessment.candidates for p in c.precautions]
        + [p.basis for p in assessment.precautions]
    )
    for basis in bases:
        assert basis.rule in active, f"unknown rule {basis.rule}"
        assert basis.criteria, f"{basis.rule} names no criteria"
        assert basis.sources, f"{basis.rule} cites no source"
        for crit in basis.criteria:
            assert crit in engine.ruleset.criteria, f"{basis.rule} cites unknown criterion {crit}"
        for src in basis.sources:
            assert src.id in engine.ruleset.sources, f"{basis.rule} cites unknown source {src.id}"


def assert_round_trip(assessment: Assessment) -> None:
    again = Assessment.model_validate_json(assessment.to_json())
    assert again == assessment, "the assessment does not survive a JSON round trip"
