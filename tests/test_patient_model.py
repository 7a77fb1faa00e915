"""Bad patient input gets a clear error naming the field; nothing is coerced or guessed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

import ipm_cds
from ipm_cds import PatientDataError, parse_patient
from ipm_cds.model.facts.normalise import Fact, normalise

from .conftest import AS_OF

BASE = {"pain": [{"region": "lumbar", "character": "axial", "nrs": 6}]}


@pytest.mark.parametrize(
    ("document", "field", "fragment"),
    [
        ({"pain": [{"region": "lumbar", "character": "axial", "nrs": 11}]}, "pain[0].nrs", "less than or equal to 10"),
        (
            {"procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-02", "relief_pct": 140}]},
            "procedures[0].relief_pct",
            "less than or equal to 100",
        ),
        ({"pain": [{"region": "lumbar", "character": "axial", "nrs": "7"}]}, "pain[0].nrs", "valid integer"),
        (
            {"medications": [{"agent": "warfarin", "daily_dose": -1, "dose_unit": "mg"}]},
            "medications[0].daily_dose",
            "greater than or equal to 0",
        ),
        ({"labs": [{"test": "inr", "value": float("nan"), "date": "2025-01-01"}]}, "labs[0].value", "finite number"),
        (
            {"procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-02-30"}]},
            "procedures[0].date",
            "not a valid calendar date",
        ),
        (
            {"procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-02", "levels": ["L9-L5"]}]},
            "procedures[0].levels[0]",
            "not a spinal level",
        ),
        (
            {"procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-02", "levels": ["S5-C1"]}]},
            "procedures[0].levels[0]",
            "'S5-C1' runs from tail to head; write the upper vertebra first: 'C1-S5'",
        ),
        (
            {
                "procedures": [
                    {"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-02", "levels": ["L4-L5", "L5-L4"]}
                ]
            },
            "procedures[0].levels[1]",
            "write the upper vertebra first: 'L4-L5'",
        ),
        (
            {"imaging": [{"modality": "mri", "finding": "disc_herniation", "region": "lumbar", "level": "L4-L4"}]},
            "imaging[0].level",
            "names one vertebra twice (write 'L4')",
        ),
        (
            {"imaging": [{"modality": "mri", "finding": "disc_herniation", "region": "lumbar", "level": "L6-S1"}]},
            "imaging[0].level",
            "not a spinal level",
        ),
        ({"pain": [{"region": "lumbar", "character": "axial", "nrs": True}]}, "pain[0].nrs", "valid integer"),
        ({"demographics": {"age_years": 40}, "smoker": True}, "smoker", "Extra inputs are not permitted"),
        (
            {
                "pain": [
                    {"region": "lumbar", "character": "axial", "is_index": True},
                    {"region": "cervical", "character": "axial", "is_index": True},
                ]
            },
            "(patient)",
            "index pain",
        ),
    ],
)
def test_impossible_values_are_rejected_with_the_field_named(
    document: dict[str, object], field: str, fragment: str
) -> None:
    with pytest.raises(PatientDataError) as info:
        parse_patient(document)
    problem = info.value.problems[0]
    assert problem.field == field
    assert fragment in problem.message
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("document", "field", "fragment", "hint"),
    [
        (
            {"pain": [{"region": "lumbr", "character": "axial"}]},
            "pain[0].region",
            "unknown body_region code 'lumbr'",
            "did you mean 'lumbar'?",
        ),
        (
            {**BASE, "red_flags": [{"code": "saddle_anaesthesia"}]},
            "red_flags[0].code",
            "unknown red_flag code 'saddle_anaesthesia'",
            "did you mean 'saddle_anesthesia'?",
        ),
        (
            {**BASE, "labs": [{"test": "inr", "value": 45.0, "date": "2025-01-01"}]},
            "labs[0].value",
            "outside 0.5–20",
            "",
        ),
        ({**BASE, "screenings": [{"instrument": "phq9", "score": 28}]}, "screenings[0].score", "outside 0–27", ""),
        (
            {**BASE, "screenings": [{"instrument": "gad7", "score": 3, "item9": 1}]},
            "screenings[0].item9",
            "item9 belongs to phq9, not gad7",
            "",
        ),
    ],
)
def test_codes_are_checked_against_the_rulesets_vocabularies(
    ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine, document: dict[str, object], field: str, fragment: str, hint: str
) -> None:
    parse_patient(document)  # well formed: the codes are the ruleset's business
    for check in (lambda: ruleset.parse_patient(document), lambda: durable.evaluate(document, as_of=AS_OF)):
        with pytest.raises(PatientDataError) as info:
            check()
        problem = info.value.problems[0]
        assert (problem.field, fragment in problem.message) == (field, True), problem
        assert hint in (problem.hint or "")


def test_a_code_added_to_a_vocabulary_is_accepted_without_python(copy: Path) -> None:
    doc = {"pain": [{"region": "wrist", "character": "joint", "nrs": 6}]}
    with pytest.raises(PatientDataError, match="unknown body_region code 'wrist'"):
        ipm_cds.load_ruleset(copy).parse_patient(doc)
    vocab = copy / "catalogues" / "vocabularies.yaml"
    text = vocab.read_text(encoding="utf-8")
    vocab.write_text(
        text.replace(
            '      - {code: other, label: "Other"}',
            '      - {code: other, label: "Other"}\n      - {code: wrist, label: "Wrist"}',
            1,
        ),
        encoding="utf-8",
    )
    engine = ipm_cds.Engine(ipm_cds.load_ruleset(copy), backend="python")
    assessment = engine.evaluate(doc, as_of=AS_OF)
    assert assessment.provenance.ruleset_id == "ipm_core"


def test_dates_after_as_of_are_rejected_at_evaluation(durable: ipm_cds.Engine) -> None:
    doc = {**BASE, "procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-06-03"}]}
    with pytest.raises(PatientDataError) as info:
        durable.evaluate(doc, as_of=AS_OF)
    assert info.value.problems[0].field == "procedures[0].date"
    assert "after the evaluation date 2025-06-02" in str(info.value)


def test_unknown_medication_code_gets_did_you_mean(durable: ipm_cds.Engine) -> None:
    with pytest.raises(PatientDataError) as info:
        durable.evaluate({**BASE, "medications": [{"agent": "apixiban"}]}, as_of=AS_OF)
    problem = info.value.problems[0]
    assert problem.field == "medications[0].agent"
    assert problem.hint == "did you mean 'apixaban'?"


def test_age_and_birth_date_must_agree(durable: ipm_cds.Engine) -> None:
    doc = {**BASE, "demographics": {"age_years": 50, "birth_date": "1960-01-01"}}
    with pytest.raises(PatientDataError, match="disagrees with birth_date"):
        durable.evaluate(doc, as_of=date(2025, 6, 2))


def test_json_text_is_parsed_strictly() -> None:
    case = parse_patient('{"pain": [{"region": "lumbar", "character": "axial", "onset_date": "2024-01-05"}]}')
    assert case.pain[0].onset_date == date(2024, 1, 5)
    with pytest.raises(PatientDataError):
        parse_patient('{"pain": [{"region": "lumbar", "character": "axial", "nrs": 6.5}]}')


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_a_birth_date_giving_an_age_over_120_is_refused_naming_the_field(durable: ipm_cds.Engine) -> None:
    # The facet RFA example with the placeholder birth date 1900-01-01: age 125 at as_of would otherwise
    # raise a critical vertebral-fracture red flag.
    document = yaml.safe_load((FIXTURES / "sentinel_birth_date.yaml").read_text(encoding="utf-8"))
    patient = parse_patient(document)  # valid as a document: the age needs as_of
    with pytest.raises(PatientDataError) as info:
        durable.evaluate(patient, as_of=AS_OF)
    problem = info.value.problems[0]
    assert problem.field == "demographics.birth_date"
    assert "age 125 at 2025-06-02, outside 0–120" in problem.message
    assert problem.hint is not None and "leave it out" in problem.hint
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(
    ("born", "refused"),
    [("1904-06-03", False), ("1904-06-02", True), ("2025-06-02", False)],
)
def test_the_age_a_birth_date_gives_is_bounded_like_age_years(
    durable: ipm_cds.Engine, born: str, refused: bool
) -> None:
    doc = {**BASE, "demographics": {"birth_date": born}}
    if refused:  # born 1904-06-02: age 121 at as_of; a day later, 120, the oldest accepted
        with pytest.raises(PatientDataError, match="outside 0–120"):
            durable.evaluate(doc, as_of=AS_OF)
    else:
        durable.evaluate(doc, as_of=AS_OF)


def test_a_birth_date_after_as_of_is_one_problem_not_two(durable: ipm_cds.Engine) -> None:
    doc = {**BASE, "demographics": {"birth_date": "2025-07-01"}}
    with pytest.raises(PatientDataError) as info:
        durable.evaluate(doc, as_of=AS_OF)
    assert [p.field for p in info.value.problems] == ["demographics.birth_date"]
    assert "after the evaluation date" in info.value.problems[0].message


@pytest.mark.parametrize("level", ["C1-C2", "C7-T1", "T12-L1", "L5-S1", "L3-L5", "S1-S2", "C1-S5", "L4", "S5"])
def test_spinal_levels_in_anatomical_order_are_accepted(level: str) -> None:
    case = parse_patient(
        {"procedures": [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-02", "levels": [level]}]}
    )
    assert case.procedures[0].levels == [level]


def _facts(document: dict[str, object], ruleset: ipm_cds.Ruleset) -> list[Fact]:
    return normalise(parse_patient(document), AS_OF, ruleset.normalise_context())


@pytest.mark.parametrize(
    ("lab", "flag"),
    [
        ({"flag": "high"}, "high"),
        ({"flag": "normal", "reference_high": 5}, "normal"),  # the laboratory's own flag wins over its range
        ({"reference_high": 5}, "high"),  # 48 above the upper limit
        ({"reference_low": 60, "reference_high": 100}, "low"),
        ({"reference_low": 0, "reference_high": 50}, "normal"),
        ({"reference_high": 60}, "normal"),  # only an upper limit given: within it
        ({}, None),  # neither: not recorded, never read as normal
    ],
)
def test_the_lab_fact_flag_is_the_laboratorys_own_reading(
    lab: dict[str, object], flag: str | None, ruleset: ipm_cds.Ruleset
) -> None:
    document = {"labs": [{"test": "crp", "value": 48, "date": "2025-05-26", **lab}]}
    (fact,) = [f for f in _facts(document, ruleset) if f.type == "lab"]
    assert fact.values.get("flag") == flag


def test_a_reference_range_upside_down_is_refused() -> None:
    with pytest.raises(PatientDataError, match="reference_low is above reference_high"):
        parse_patient(
            {"labs": [{"test": "esr", "value": 10, "date": "2025-05-26", "reference_low": 30, "reference_high": 20}]}
        )


@pytest.mark.parametrize(
    ("labs", "gfr"),
    [
        ([], None),
        ([("egfr", 25, "2024-05-01"), ("egfr", 60, "2025-05-01")], 60.0),  # the latest of a test, not the lowest
        ([("egfr", 45, "2025-05-01"), ("creatinine_clearance", 25, "2025-04-01")], 25.0),  # the lower of the two
        ([("egfr", 40, "2025-05-01"), ("egfr", 35, "2025-05-01")], 35.0),  # two on one day: the lower
        ([("crp", 5, "2025-05-01")], None),  # not a renal test
    ],
)
def test_the_patient_renal_gfr_is_the_lower_of_the_latest_results(
    labs: list[tuple[str, float, str]], gfr: float | None, ruleset: ipm_cds.Ruleset
) -> None:
    document = {"labs": [{"test": t, "value": v, "date": d} for t, v, d in labs]}
    (patient,) = [f for f in _facts(document, ruleset) if f.type == "patient"]
    assert patient.values.get("renal_gfr") == gfr


@pytest.mark.parametrize("value", [True, False, None])
def test_hospitalised_is_recorded_as_given_and_absent_when_not(value: bool | None, ruleset: ipm_cds.Ruleset) -> None:
    document: dict[str, object] = {} if value is None else {"hospitalised": value}
    (patient,) = [f for f in _facts(document, ruleset) if f.type == "patient"]
    assert patient.values.get("hospitalised") == value


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ("2025-02-30", "not a valid calendar date"),
        ("2025-13-01", "not a valid calendar date"),
        ("2025-01-0\u0661", "not a valid calendar date"),  # an Arabic-Indic digit: a digit to the pattern only
        ("2025-1-011", "expected a date as YYYY-MM-DD"),
        ("2025-W01-1", "expected a date as YYYY-MM-DD"),  # ISO week dates: fromisoformat reads them, we do not
        ("20250101", "expected a date as YYYY-MM-DD"),
        ("2025-01-01T00:00", "expected a date as YYYY-MM-DD"),
    ],
)
def test_a_date_is_ten_ascii_characters_yyyy_mm_dd_of_a_real_day(written: str, fragment: str) -> None:
    """Dates read the short way (ten characters with their dashes in place) refuse what the long way refuses,
    with its messages."""
    document = {**BASE, "labs": [{"test": "inr", "value": 1.1, "date": written}]}
    with pytest.raises(PatientDataError, match=fragment) as caught:
        parse_patient(document)
    assert caught.value.problems[0].field == "labs[0].date"
    assert parse_patient({**BASE, "labs": [{"test": "inr", "value": 1.1, "date": "2024-02-29"}]}).labs[0].date == date(
        2024, 2, 29
    )
