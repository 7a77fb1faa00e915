"""normalise: the shortcuts it takes for speed give the facts and errors its plain definition gives."""

from __future__ import annotations

import random
from dataclasses import fields
from datetime import date
from pathlib import Path

import pytest

import ipm_cds
from ipm_cds import PatientDataError, parse_patient
from ipm_cds.model.facts.normalise import Fact, make_fact, normalise

from .conftest import AS_OF

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "patients"
LATER = date(2026, 12, 1)


def _labs(values: list[float]) -> list[dict[str, object]]:
    return [{"test": "inr", "value": v, "date": "2025-05-20"} for v in values]


def test_repeated_items_are_one_fact_also_past_the_few_compared_one_by_one(ruleset: ipm_cds.Ruleset) -> None:
    distinct = [1.0 + i / 10 for i in range(12)]  # more results of one test than normalise compares as dicts
    listed = distinct * 3
    random.Random(7).shuffle(listed)
    facts = normalise(parse_patient({"labs": _labs(listed)}), AS_OF, ruleset.normalise_context())
    labs = [f for f in facts if f.type == "lab"]
    assert [f.values["value"] for f in labs] == distinct  # one fact each, in canonical order
    # a fact's key is its item's place in canonical order: the first of each three copies (past 16 too)
    assert [f.key for f in labs] == [f"lab#{3 * i}" for i in range(12)]
    once = normalise(parse_patient({"labs": _labs(distinct)}), AS_OF, ruleset.normalise_context())
    assert [(f.values, f.label) for f in facts] == [(f.values, f.label) for f in once]


def test_equal_numbers_of_two_types_are_one_fact(ruleset: ipm_cds.Ruleset) -> None:
    """2 and 2.0 mg are one dose: the facts compare values as numbers, as the content comparison always did."""
    meds = [
        {"agent": "apixaban", "daily_dose": 10.0, "dose_unit": "mg"},
        {"agent": "apixaban", "daily_dose": 10, "dose_unit": "mg"},
    ]
    facts = normalise(parse_patient({"medications": meds}), AS_OF, ruleset.normalise_context())
    assert [f.values.get("daily_dose") for f in facts if f.type == "medication"] == [10.0]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_facts_are_the_objects_their_dataclass_makes(path: Path, ruleset: ipm_cds.Ruleset) -> None:
    case = ipm_cds.PatientCase.from_yaml(path.read_text(encoding="utf-8"))
    facts = normalise(case, LATER, ruleset.normalise_context())  # after every date of the examples
    assert facts
    for fact in facts:
        made = Fact(fact.type, fact.key, dict(fact.values), fact.label, fact.derived)
        assert fact == made and repr(fact) == repr(made)
        assert all(hasattr(fact, f.name) for f in fields(Fact))
        assert fact.derived is False


def test_a_partial_date_whose_month_has_begun_is_not_after_as_of(ruleset: ipm_cds.Ruleset) -> None:
    """The one-walk check reads a partial date as its last day and leaves the verdict to the exact check."""
    month = AS_OF.isoformat()[:7]
    document = {"procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": month}]}
    facts = normalise(parse_patient(document), AS_OF, ruleset.normalise_context())
    procedure = next(f for f in facts if f.type == "procedure")
    assert procedure.values["date"] == month and procedure.values["date_precision"] == "month"
    later = {"procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": f"{AS_OF.year + 1}"}]}
    with pytest.raises(PatientDataError) as caught:
        normalise(parse_patient(later), AS_OF, ruleset.normalise_context())
    assert [p.field for p in caught.value.problems] == ["procedures[0].date"]


def test_an_unknown_code_and_a_future_date_are_both_named(ruleset: ipm_cds.Ruleset) -> None:
    document = {
        "conditions": [{"code": "diabetes"}, {"code": "diabetis"}],
        "labs": [{"test": "inr", "value": 1.1, "date": f"{AS_OF.year + 1}-01-01"}],
    }
    with pytest.raises(PatientDataError) as caught:
        normalise(parse_patient(document), AS_OF, ruleset.normalise_context())
    problems = {p.field: p for p in caught.value.problems}
    assert set(problems) == {"labs[0].date", "conditions[1].code"}
    assert problems["conditions[1].code"].hint == "did you mean 'diabetes'?"


def test_make_fact_is_the_dataclass_constructor() -> None:
    """The engine makes facts per record through the slots (make_fact): the very object Fact(...) makes."""
    for derived in (False, True):
        made = make_fact("pain", "pain#0", {"region": "lumbar", "nrs": 7}, "pain lumbar", derived)
        expected = Fact("pain", "pain#0", {"region": "lumbar", "nrs": 7}, "pain lumbar", derived)
        assert made == expected and repr(made) == repr(expected)
        assert made.content() == expected.content()


def test_items_are_ordered_as_their_json_also_when_their_first_fields_decide() -> None:
    """The canonical order of a list is that of each item's JSON; when the first fields are distinct codes it is
    found from them alone (a code that begins another, as 'ab' and 'ab_c', sorts first both ways), else from the
    JSON: equal codes, and values that are no codes (a space, '!' and a quote sort before the closing quote)."""
    from ipm_cds.model.facts.normalise import _canonical, _json_of
    from ipm_cds.model.patient import Allergy

    heads = ["ab", "ab_c", "a1", "b", "ab c", "ab!", 'ab"', "a\\b", "", None, "ç", "ab_c"]
    rng = random.Random(3)
    for size in (2, 3, 5, 8):
        for _ in range(200):
            chosen = rng.sample(heads, size)
            items = [Allergy.model_construct(substance=h, reaction=rng.choice([None, "rash", "hives"])) for h in chosen]
            assert list(map(id, _canonical(items))) == list(map(id, sorted(items, key=_json_of))), chosen
    valid = [Allergy(substance=s) for s in ("latex", "iodinated_contrast", "latex_x", "chlorhexidine")]
    assert [a.substance for a in _canonical(valid)] == ["chlorhexidine", "iodinated_contrast", "latex", "latex_x"]
