"""The patient model: one patient's pain, diagnostics and history, as ipm-cds reads it.

Every model is strict (no silent coercion: ``"50"`` is not 50, ``true`` is not 1), forbids unknown
fields, rejects NaN and infinities, and bounds every number to the range its instrument or unit
allows. Codes (regions, procedure kinds, findings, tests, conditions, red flags, ...) belong to the
vocabularies of the ruleset that evaluates the document (its ``vocabularies`` catalogue): this module checks
their spelling (``lower_snake_case``), and the engine checks each against the loaded ruleset's vocabulary,
naming the field and suggesting the nearest code (:func:`ipm_cds.model.facts.vocabulary.check_codes`). A new
pathway adds its codes to the ruleset, not here. Dates are ISO ``YYYY-MM-DD``; checks that need the
evaluation date (nothing dated after ``as_of``) run in :func:`ipm_cds.model.facts.normalise`.

Why this module is over 600 lines: it is the one definition of the patient document, the input format
every integrator writes against (the JSON Schema, the docs' field tables and the FHIR reader's targets are
made from it); its models are small and flat, and splitting them by section would scatter the shared field
types and validators that keep the sections alike.

Missing is not normal: every clinical field is optional and ``None`` means *not recorded*. The rules
never read a missing value as a normal one; they report it in ``Assessment.missing_data``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .._frozen import hashable
from ..errors import PatientDataError, Problem

__all__ = [
    "Allergy",
    "ConservativeCare",
    "Demographics",
    "ExamFinding",
    "ImagingFinding",
    "Lab",
    "Measurement",
    "Medication",
    "MmeRecord",
    "PainComplaint",
    "PatientCase",
    "PriorProcedure",
    "Prognosis",
    "PsychologicalEvaluation",
    "RedFlagFinding",
    "RequestedProcedure",
    "Screening",
    "SteroidInjection",
    "Vocab",
    "parse_patient",
]

MAX_ITEMS = 100
"""Upper bound on the length of every list in a patient document (keeps facts within engine limits)."""

MAX_AGE_YEARS = 120
"""The oldest plausible age. ``age_years`` is bounded by it; the age a ``birth_date`` gives at ``as_of``
is checked against it when the patient is evaluated (:func:`ipm_cds.model.facts.normalise.normalise`)."""


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> Any:
    """Accept a ``date`` or an ISO ``YYYY-MM-DD`` string; nothing else (no timestamps, no datetimes)."""
    if type(value) is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
        # (most dates: fromisoformat reads ten characters with these dashes only as ASCII YYYY-MM-DD, which the
        # pattern below also accepts; what it refuses goes the long way, to the same error)
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"not a valid calendar date: {value!r}") from exc
    raise ValueError("expected a date as YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]

DatePrecision = Literal["day", "month", "year"]
"""How much of a date the clinician knew: the whole date, the month, or only the year."""

_PARTIAL_DATE = re.compile(r"(\d{4})(?:-(\d{2}))?")


def period_of(day: date, precision: DatePrecision) -> tuple[date, date]:
    """The first and last day of the period a date stands for: the day itself, its month, or its year."""
    if precision == "day":
        return day, day
    if precision == "year":
        return date(day.year, 1, 1), date(day.year, 12, 31)
    following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return date(day.year, day.month, 1), date.fromordinal(following.toordinal() - 1)


def _read_partial_date(data: Any, field: str, precision_field: str) -> Any:
    """Accept a year (``"2023"``) or a year and month (``"2023-05"``) in a date field: the field holds the last day
    of that period and ``precision_field`` says how much was known. The last day is the least safe reading of every
    "how long ago" the rules ask (the most recent a procedure can have been, the shortest a pain can have lasted);
    :func:`ipm_cds.model.facts.normalise.normalise` caps it at ``as_of`` and the facts carry the precision, so an
    approximate date is never read as an exact one."""
    if not isinstance(data, dict):
        return data
    value = data.get(field)
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
        value = str(value)  # a bare year, as YAML reads `date: 2023`
    if not isinstance(value, str) or len(value) > 7:
        return data  # (a full date: the pattern matches four or seven characters)
    found = _PARTIAL_DATE.fullmatch(value)
    if found is None:
        return data  # a full date, or an error the date type reports
    year, month = int(found[1]), found[2]
    given: DatePrecision = "month" if month is not None else "year"
    if data.get(precision_field, given) != given:
        raise ValueError(
            f"{field} {value!r} gives the {given} only, but {precision_field} says "
            f"{data[precision_field]!r} (leave {precision_field} out, it follows from the date)"
        )
    if month is not None and not 1 <= int(month) <= 12:
        raise ValueError(f"not a valid month: {value!r} (write YYYY-MM-DD, YYYY-MM or YYYY)")
    if year < 1900:
        raise ValueError(f"not a plausible year: {value!r}")
    start = date(year, int(month), 1) if month is not None else date(year, 1, 1)
    end = period_of(start, given)[1]
    return {**data, field: end.isoformat(), precision_field: given}


_LEVEL = re.compile(r"^(C[1-7]|T(1[0-2]|[1-9])|L[1-5]|S[1-5])(-(C[1-7]|T(1[0-2]|[1-9])|L[1-5]|S[1-5]))?$")


_REGION_ORDER = {"C": 0, "T": 1, "L": 2, "S": 3}


def _vertebra_rank(vertebra: str) -> tuple[int, int]:
    """Head-to-tail position of a vertebra: C1 < ... < C7 < T1 < ... < T12 < L1 < ... < L5 < S1 < ... < S5."""
    return _REGION_ORDER[vertebra[0]], int(vertebra[1:])


_VERTEBRAE = tuple(f"{r}{n}" for r, top in (("C", 7), ("T", 12), ("L", 5), ("S", 5)) for n in range(1, top + 1))
_VALID_LEVELS = frozenset(
    (*_VERTEBRAE, *(f"{upper}-{lower}" for i, upper in enumerate(_VERTEBRAE) for lower in _VERTEBRAE[i + 1 :]))
)
"""Every level :func:`_spinal_level` accepts as written: a vertebra, or a segment from head to tail (the
common case, found without the pattern and the ranks)."""


def _spinal_level(value: Any) -> Any:
    if type(value) is str and value in _VALID_LEVELS:
        return value
    if isinstance(value, str) and not _LEVEL.match(value):
        raise ValueError(f"not a spinal level: {value!r} (write a segment like 'L4-L5' or a vertebra like 'L4')")
    if isinstance(value, str) and "-" in value:
        upper, lower = value.split("-")
        if upper == lower:
            raise ValueError(f"not a spinal level: {value!r} names one vertebra twice (write {upper!r})")
        if _vertebra_rank(upper) > _vertebra_rank(lower):
            raise ValueError(
                f"spinal level {value!r} runs from tail to head; write the upper vertebra first: "
                f"{lower + '-' + upper!r} (C1-C7, T1-T12, L1-L5, S1-S5, head to tail)"
            )
    return value


SpinalLevel = Annotated[str, BeforeValidator(_spinal_level), Field(max_length=7)]

Text = Annotated[str, Field(min_length=1, max_length=500)]


@dataclass(frozen=True, slots=True)
class Vocab:
    """Marks a field whose value is a code of the named ruleset vocabulary (``vocabularies`` catalogue).

    The JSON Schema of the field names it (``x-vocabulary``), and :func:`ipm_cds.model.facts.vocabulary.check_codes`
    finds every such field of a document by this marker, so a new coded field is checked without more code.
    """

    name: str

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out["x-vocabulary"] = self.name
        return out


CODE_PATTERN = r"^[a-z][a-z0-9_]*$"


_CODE = StringConstraints(pattern=CODE_PATTERN, max_length=64)


BodyRegion = Annotated[str, _CODE, Vocab("body_region")]
"""Where the pain or the finding is (vocabulary ``body_region``)."""

Laterality = Literal["left", "right", "bilateral", "midline"]

PainCharacter = Annotated[str, _CODE, Vocab("pain_character")]
ProcedureKind = Annotated[str, _CODE, Vocab("procedure_kind")]
ImagingModality = Annotated[str, _CODE, Vocab("imaging_modality")]
ImagingFindingCode = Annotated[str, _CODE, Vocab("imaging_finding")]
ExamFindingCode = Annotated[str, _CODE, Vocab("exam_test")]
RedFlagCode = Annotated[str, _CODE, Vocab("red_flag")]
ConditionCode = Annotated[str, _CODE, Vocab("condition")]
AllergySubstance = Annotated[str, _CODE, Vocab("allergy_substance")]
LabTest = Annotated[str, _CODE, Vocab("lab_test")]
Instrument = Annotated[str, _CODE, Vocab("instrument")]
OutcomeMeasure = Annotated[str, _CODE, Vocab("outcome_measure")]
ProcedureApproach = Annotated[str, _CODE, Vocab("procedure_approach")]
SteroidAgent = Annotated[str, _CODE, Vocab("steroid_agent")]
ImageGuidance = Literal["fluoroscopy", "ct", "ultrasound", "landmark"]

PRECISION_FIELDS = {"onset_date": "onset_precision", "date": "date_precision"}
"""Date fields that may be partial, each with the field that says how much of it is known (where a model has it)."""

FUTURE_DATE_FIELDS = frozenset({"planned_date"})
"""Date fields that may lie after ``as_of`` (a procedure planned for later); every other date may not."""

SUBSCORE_FIELDS = ("item9", "distress_subscore", "category")
"""Fields of :class:`Screening` that belong to one instrument each (the vocabulary's ``subscores``)."""

RiskCategory = Literal["low", "medium", "high"]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    def __hash__(self) -> int:  # pydantic's would raise on the lists; equal models hash equal
        return hash(hashable(self))


class Demographics(_Model):
    """Who the patient is. Give ``age_years`` or ``birth_date``; with both, they must agree at ``as_of``."""

    age_years: int | None = Field(None, ge=0, le=MAX_AGE_YEARS, description="Age in whole years (0–120).")
    birth_date: IsoDate | None = Field(
        None, description="Date of birth, YYYY-MM-DD; the age it gives at as_of must be 0–120."
    )
    sex: Literal["female", "male", "other"] | None = Field(None, description="Sex recorded for clinical scores.")
    pregnant: bool | None = Field(None, description="Currently pregnant. None: not recorded.")
    gestational_weeks: int | None = Field(
        None,
        ge=0,
        le=45,
        description="Completed weeks of gestation (0–45), for a current pregnancy. None: not recorded.",
    )
    bmi: float | None = Field(None, ge=10, le=100, description="Body-mass index in kg/m² (10–100).")
    tobacco_use: Literal["current", "former", "never"] | None = Field(None, description="Tobacco use status.")

    @model_validator(mode="after")
    def _weeks_need_a_pregnancy(self) -> Demographics:
        if self.gestational_weeks is not None and self.pregnant is False:
            raise ValueError("gestational_weeks is recorded but pregnant is false (record pregnant: true, or drop it)")
        return self


class PainComplaint(_Model):
    """One pain complaint. Mark the complaint that the procedures target with ``is_index``."""

    region: BodyRegion = Field(description="Body region of the pain.")
    laterality: Laterality | None = Field(None, description="Side of the pain.")
    character: PainCharacter = Field(description="Predominant character of the pain.")
    onset_date: IsoDate | None = Field(
        None,
        description="Date the pain began, YYYY-MM-DD, or only YYYY-MM or YYYY when that is all that is known; "
        "duration is computed at as_of (from a partial date: the shortest it can be, see onset_precision).",
    )
    onset_precision: DatePrecision = Field(
        "day",
        description="How much of onset_date is known (set from a partial date: month or year). The duration is "
        "then counted from the last day of that month or year, the shortest the pain can have lasted; the longest "
        "is kept beside it for the checks that need an upper bound (acute pain).",
    )
    duration_weeks: int | None = Field(
        None, ge=0, le=5200, description="Duration in whole weeks (0–5200), when no onset date is known."
    )
    nrs: int | None = Field(None, ge=0, le=10, description="Numeric rating scale, current average pain 0–10.")
    odi_pct: int | None = Field(None, ge=0, le=100, description="Oswestry Disability Index, percent 0–100.")
    ndi: int | None = Field(None, ge=0, le=50, description="Neck Disability Index, raw score 0–50.")
    rmdq: int | None = Field(
        None, ge=0, le=24, description="Roland-Morris Disability Questionnaire, 0–24 (24 items, one point each)."
    )
    worsening: bool | None = Field(None, description="Pain is getting worse.")
    is_index: bool = Field(False, description="This is the index (primary) pain that relief is measured on.")

    @model_validator(mode="before")
    @classmethod
    def _partial_onset(cls, data: Any) -> Any:
        return _read_partial_date(data, "onset_date", "onset_precision")

    @model_validator(mode="after")
    def _one_duration(self) -> PainComplaint:
        if self.onset_date is not None and self.duration_weeks is not None:
            raise ValueError("give onset_date or duration_weeks, not both")
        if self.onset_date is None and self.onset_precision != "day":
            raise ValueError("onset_precision needs an onset_date")
        return self


class ImagingFinding(_Model):
    """A finding on an imaging study, at a spinal level or in a region."""

    modality: ImagingModality
    finding: ImagingFindingCode
    region: BodyRegion
    level: SpinalLevel | None = Field(None, description="Spinal level or segment, e.g. 'L4-L5'.")
    side: Laterality | None = None
    date: IsoDate | None = None
    concordant: bool | None = Field(None, description="Concordant with the symptoms, as the clinician judged.")
    height_loss_pct: int | None = Field(
        None,
        ge=0,
        le=100,
        description="A vertebral fracture: loss of vertebral body height in percent (0–100), as reported.",
    )

    @model_validator(mode="after")
    def _height_loss_needs_a_fracture(self) -> ImagingFinding:
        if self.height_loss_pct is not None and self.finding != "vertebral_fracture":
            raise ValueError(
                f"height_loss_pct belongs to a vertebral_fracture finding, not {self.finding!r} (record the fracture "
                "with its height loss)"
            )
        return self


class ExamFinding(_Model):
    """A physical-examination finding or provocative test with its result."""

    test: ExamFindingCode
    positive: bool = Field(description="True when the test or sign is positive/present.")
    region: BodyRegion | None = None
    side: Laterality | None = None
    date: IsoDate | None = None


class RedFlagFinding(_Model):
    """A red-flag symptom or sign (criteria §8). Presence is what matters; onset and course refine it."""

    code: RedFlagCode
    onset_date: IsoDate | None = Field(
        None, description="When the symptom began: YYYY-MM-DD, or YYYY-MM / YYYY when only that is known."
    )
    onset_precision: DatePrecision = Field(
        "day",
        description="How much of onset_date is known; a partial onset counts from the last day of its period "
        "(the most recent the symptom can have begun: 'new' when it may be new).",
    )
    deteriorating: bool | None = Field(None, description="The symptom is getting worse.")

    @model_validator(mode="before")
    @classmethod
    def _partial_onset(cls, data: Any) -> Any:
        return _read_partial_date(data, "onset_date", "onset_precision")

    @model_validator(mode="after")
    def _precision_needs_a_date(self) -> RedFlagFinding:
        if self.onset_date is None and self.onset_precision != "day":
            raise ValueError("onset_precision needs an onset_date")
        return self


class PriorProcedure(_Model):
    """A procedure or operation the patient has had, with its outcome on the index pain."""

    kind: ProcedureKind
    purpose: Literal["diagnostic", "therapeutic"] | None = None
    region: BodyRegion
    levels: list[SpinalLevel] = Field(
        default_factory=list, max_length=10, description="Levels treated, e.g. ['L4-L5']."
    )
    side: Laterality | None = None
    date: IsoDate = Field(
        description="Date of the procedure (session), YYYY-MM-DD; YYYY-MM or YYYY when only that is known."
    )
    date_precision: DatePrecision = Field(
        "day",
        description="How much of date is known (set from a partial date). A partial date counts as the last day of "
        "its month or year, the most recent the procedure can have been: the least safe reading for the repeat "
        "intervals, rolling windows and recent-procedure checks. Outcome series leave such a procedure out.",
    )
    relief_pct: int | None = Field(
        None, ge=0, le=100, description="Percent relief of the index pain, same scale before and after (0–100)."
    )
    relief_duration_weeks: float | None = Field(
        None, ge=0, le=520, description="How long the relief lasted, in weeks (0–520); for blocks, may be < 1."
    )
    same_scale: bool | None = Field(None, description="Relief measured on the same scale before and after.")
    duration_consistent_with_agent: bool | None = Field(
        None, description="Duration of relief consistent with the anaesthetic used (diagnostic blocks)."
    )

    @model_validator(mode="before")
    @classmethod
    def _partial_date(cls, data: Any) -> Any:
        return _read_partial_date(data, "date", "date_precision")


class ConservativeCare(_Model):
    """Conservative (non-interventional) care to date."""

    physical_therapy_weeks: int | None = Field(None, ge=0, le=520, description="Weeks of physical therapy (0–520).")
    active_exercise_program: bool | None = Field(
        None, description="A documented, current active exercise / rehabilitation programme."
    )
    failed: bool | None = Field(
        None, description="Documented failure of, or intolerance to, noninvasive conservative care."
    )
    nonoperative_months: int | None = Field(
        None, ge=0, le=600, description="Months of structured non-operative management (0–600)."
    )
    medications_tried: list[Text] = Field(default_factory=list, max_length=MAX_ITEMS)


class Medication(_Model):
    """A current medication. ``agent`` is a code from the ruleset's medication catalogue."""

    agent: str = Field(min_length=1, max_length=64, description="Medication code, e.g. 'apixaban'.")
    daily_dose: float | None = Field(None, ge=0, le=100000, description="Total daily dose in dose_unit.")
    dose_unit: Literal["mg", "mcg", "mcg_per_hour", "units"] | None = None
    indication: Literal["primary_prevention", "secondary_prevention", "treatment", "pain", "other"] | None = Field(
        None, description="Why it is taken; for antiplatelets, primary or secondary prevention."
    )

    @model_validator(mode="after")
    def _dose_has_unit(self) -> Medication:
        if self.daily_dose is not None and self.dose_unit is None:
            raise ValueError("daily_dose needs a dose_unit")
        return self


class Lab(_Model):
    """A laboratory result with its date."""

    test: LabTest
    value: float = Field(
        description="Value in the test's canonical unit (the vocabulary's unit: INR ratio, platelets 10^9/L, "
        "glucose mg/dL, HbA1c %, eGFR mL/min/1.73m², creatinine clearance mL/min, CRP mg/L, ESR mm/h), within "
        "the vocabulary's plausible range."
    )
    date: IsoDate
    flag: Literal["high", "normal", "low"] | None = Field(
        None,
        description="The laboratory's own interpretation of this result against its reference range (high, normal, "
        "low). None: not reported; never read as normal.",
    )
    reference_low: float | None = Field(
        None, description="Lower limit of the laboratory's own reference range, in the value's unit, if reported."
    )
    reference_high: float | None = Field(
        None, description="Upper limit of the laboratory's own reference range, in the value's unit, if reported."
    )

    @model_validator(mode="after")
    def _range_ordered(self) -> Lab:
        low, high = self.reference_low, self.reference_high
        if low is not None and high is not None and low > high:
            raise ValueError("reference_low is above reference_high")
        return self


class Screening(_Model):
    """A screening instrument score. PHQ-9 may carry item 9; STarT Back its distress subscore, or only the risk
    category when the item scores were not kept (an instrument whose vocabulary entry lists ``category``)."""

    instrument: Instrument
    score: int | None = Field(
        None,
        description="Total score, within the instrument's range (its vocabulary entry). May be left out only when "
        "the category is given.",
    )
    item9: int | None = Field(None, ge=0, le=3, description="PHQ-9 item 9 (thoughts of self-harm), 0–3.")
    distress_subscore: int | None = Field(None, ge=0, le=5, description="STarT Back items 5–9, 0–5.")
    category: RiskCategory | None = Field(
        None,
        description="The risk category as the clinician recorded it (STarT Back: low, medium or high), for a "
        "screen whose item scores are not known. With a score, leave it out: the rules grade the score.",
    )
    date: IsoDate | None = None

    @model_validator(mode="after")
    def _score_or_category(self) -> Screening:
        if self.score is None and self.category is None:
            raise ValueError("a screening needs its score (or, for STarT Back, its category: low, medium or high)")
        if self.score is not None and self.category is not None:
            raise ValueError(
                "give the score or the category, not both (the rules grade a score themselves; a category is for a "
                "screen whose item scores are not known)"
            )
        if self.category is not None and self.distress_subscore is not None:
            raise ValueError("a category-only screen carries no distress_subscore (give the total score with it)")
        return self


class Measurement(_Model):
    """One dated score of an outcome instrument: a point of a series (NRS, PEG, ODI, NDI, Roland-Morris, PROMIS,
    PGIC, PHQ-9, GAD-7 ...). The instrument is a code of the ruleset's ``outcome_measure`` vocabulary, which gives
    its score range and whether a higher score is better. ``region`` ties a pain or function score to the
    complaint it measures; leave it out for instruments about the whole patient (PHQ-9, GAD-7)."""

    instrument: OutcomeMeasure
    score: float = Field(
        description="Score, within the instrument's range (its vocabulary entry); PROMIS as a T-score."
    )
    date: IsoDate = Field(description="Date the score was taken, YYYY-MM-DD.")
    region: BodyRegion | None = Field(None, description="Region of the complaint measured (pain and function).")


MmeChange = Literal["start", "increase", "decrease", "taper_start", "stop", "unchanged"]


class MmeRecord(_Model):
    """The total daily opioid dose on one date, in morphine milligram equivalents, with the change made then."""

    date: IsoDate = Field(description="Date from which this daily dose applies, YYYY-MM-DD.")
    mme_per_day: float = Field(ge=0, le=10000, description="Total MME/day from this date (0: opioids stopped).")
    change: MmeChange | None = Field(None, description="The medication change made on this date, if any.")


class Allergy(_Model):
    substance: AllergySubstance
    reaction: Text | None = None


class ConditionEntry(_Model):
    """A diagnosis or device. ``active`` False records a past condition."""

    code: ConditionCode
    active: bool = True
    region: BodyRegion | None = None


class CoronaryStent(_Model):
    """A coronary stent as clinicians record it: its type and the date it was placed. Elective procedures wait
    after a stent (ACC/AHA 2016 DAPT focused update); a missing type or date is reported, never assumed."""

    type: Literal["drug_eluting", "bare_metal"] | None = Field(
        None, description="Drug-eluting (DES) or bare-metal (BMS) stent."
    )
    date: IsoDate | None = Field(None, description="Date the stent was placed, YYYY-MM-DD.")


class PsychologicalEvaluation(_Model):
    completed: bool = Field(description="A pre-procedure psychological evaluation is documented.")
    date: IsoDate | None = None
    cleared: bool | None = Field(None, description="The evaluation found no contraindication.")


class RequestedProcedure(_Model):
    """A procedure the clinician is considering: requested, planned or scheduled (an order, not a history).

    ``intervention`` is a code of the ruleset's intervention catalogue (checked when the patient is evaluated,
    like medication codes). The assessment gives each one a verdict (``Assessment.requested``) with every
    safety judgement that applies to it, whether or not the rules would have proposed it.
    """

    id: str | None = Field(None, max_length=128, description="The order's identifier (e.g. the ServiceRequest id).")
    intervention: str = Field(
        min_length=1, max_length=64, description="Intervention code from the ruleset's catalogue, e.g. 'facet_rfa'."
    )
    status: Literal["requested", "planned", "scheduled"] = Field("requested", description="Where the order stands.")
    region: BodyRegion | None = Field(
        None,
        description="Target body region. Not recorded (an order whose region its code does not fix): the "
        "verdict is 'cannot tell yet', naming the region as missing data.",
    )
    levels: list[SpinalLevel] = Field(
        default_factory=list, max_length=10, description="Target levels, e.g. ['L4-L5', 'L5-S1']."
    )
    side: Laterality | None = Field(None, description="Target side.")
    approach: ProcedureApproach | None = Field(
        None, description="Approach, e.g. interlaminar, transforaminal, caudal, intra_articular, medial_branch."
    )
    planned_date: IsoDate | None = Field(None, description="Planned date, YYYY-MM-DD; may be after as_of.")
    guidance: ImageGuidance | None = Field(None, description="Planned image guidance.")
    steroid_agent: SteroidAgent | None = Field(None, description="Corticosteroid to be injected, if any.")
    steroid_dose_mg: float | None = Field(None, ge=0, le=1000, description="Corticosteroid dose in mg (0–1000).")

    @model_validator(mode="after")
    def _dose_has_agent(self) -> RequestedProcedure:
        if self.steroid_dose_mg is not None and self.steroid_agent is None:
            raise ValueError("steroid_dose_mg needs a steroid_agent")
        return self


InjectionRoute = Literal["epidural", "facet", "sacroiliac", "intra_articular", "soft_tissue", "other"]


class SteroidInjection(_Model):
    """One corticosteroid injection the patient has had, at any site: spinal, sacroiliac or a peripheral joint
    (knee, hip, shoulder ...). The rules total the exposure in methylprednisolone equivalents over the rolling
    window (CI-STEROID-CUM-01), whoever gave it."""

    agent: SteroidAgent = Field(description="Corticosteroid injected (vocabulary steroid_agent).")
    dose_mg: float | None = Field(
        None, ge=0, le=1000, description="Dose of the agent in mg (0–1000); None: not recorded (reported missing)."
    )
    date: IsoDate = Field(description="Date of the injection, YYYY-MM-DD; YYYY-MM or YYYY when only that is known.")
    date_precision: DatePrecision = Field(
        "day",
        description="How much of date is known; a partial date counts as the last day of its period (inside the "
        "rolling window whenever it may be).",
    )
    region: BodyRegion = Field(description="Site: a spinal region, sacroiliac, or a joint such as knee, hip, shoulder.")
    route: InjectionRoute | None = Field(None, description="Where the steroid went: epidural, facet, joint ...")

    @model_validator(mode="before")
    @classmethod
    def _partial_date(cls, data: Any) -> Any:
        return _read_partial_date(data, "date", "date_precision")


class Prognosis(_Model):
    """The clinician's estimate of life expectancy (end-of-life care puts a patient outside the CDC 2022 opioid
    dosage guidance; the ruleset's parameter says what prognosis counts as end of life)."""

    life_expectancy_months: int = Field(
        ge=0, le=600, description="Estimated life expectancy in whole months (0–600), as the clinician judged it."
    )
    date: IsoDate | None = Field(None, description="Date of the estimate, YYYY-MM-DD.")


class PatientCase(_Model):
    """One patient, as the rules see them. Lists are unordered: their order never changes the answer."""

    id: str | None = Field(None, max_length=128, description="Opaque identifier; not used by any rule.")
    demographics: Demographics = Field(
        default_factory=Demographics, description="Age or birth date, sex, pregnancy, BMI, tobacco use."
    )
    pain: list[PainComplaint] = Field(
        default_factory=list, max_length=20, description="Pain complaints: region, character, duration, scores."
    )
    imaging: list[ImagingFinding] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Imaging findings, with their dates."
    )
    exam: list[ExamFinding] = Field(default_factory=list, max_length=MAX_ITEMS, description="Examination findings.")
    red_flags: list[RedFlagFinding] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Red-flag symptoms and signs that are present."
    )
    procedures: list[PriorProcedure] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Prior procedures, with their dates and relief."
    )
    conservative_care: ConservativeCare = Field(
        default_factory=ConservativeCare,
        description="Conservative care to date: physical therapy, exercise, its failure.",
    )
    medications: list[Medication] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Current medications (antithrombotics among them)."
    )
    labs: list[Lab] = Field(default_factory=list, max_length=MAX_ITEMS, description="Laboratory results, dated.")
    screenings: list[Screening] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Screening instruments and their scores, dated."
    )
    conditions: list[ConditionEntry] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Diagnoses and comorbid conditions."
    )
    measurements: list[Measurement] = Field(
        default_factory=list,
        max_length=4 * MAX_ITEMS,
        description="Dated outcome scores over time (pain, function, PGIC, mood), per instrument and complaint.",
    )
    mme_history: list[MmeRecord] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Total daily MME over time, with its changes."
    )
    allergies: list[Allergy] = Field(default_factory=list, max_length=MAX_ITEMS, description="Allergies.")
    coronary_stents: list[CoronaryStent] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Coronary stents, with their type and date placed."
    )
    psychological_evaluation: PsychologicalEvaluation | None = Field(
        None, description="A pre-procedure psychological evaluation (for implants), if any."
    )
    requested: list[RequestedProcedure] = Field(
        default_factory=list, max_length=20, description="Procedures requested, planned or scheduled."
    )
    steroid_injections: list[SteroidInjection] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Corticosteroid injections to date (agent, dose, date, site), peripheral joints included.",
    )
    prognosis: Prognosis | None = Field(
        None, description="Estimated life expectancy (end-of-life care), if the clinician recorded one."
    )
    hospitalised: bool | None = Field(
        None,
        description="The patient is in hospital (an inpatient admission in progress) at as_of. None: not recorded, "
        "never read as not hospitalised.",
    )

    @model_validator(mode="after")
    def _one_index_pain(self) -> PatientCase:
        if sum(1 for p in self.pain if p.is_index) > 1:
            raise ValueError("at most one pain complaint can be the index pain (is_index)")
        return self

    def to_yaml(self) -> str:
        """The patient document as compact YAML: fields empty (None, ``[]``, ``{}``) or at their default left out."""
        import yaml

        return yaml.safe_dump(
            _compact(self.model_dump(mode="json", exclude_defaults=True)),
            sort_keys=False,
            default_flow_style=None,
            width=100,
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis (and IPython) print a patient: compact YAML, not one long line of every field."""
        printer.text('PatientCase.from_yaml("""\n' + self.to_yaml() + '""")')

    @classmethod
    def from_yaml(cls, text: str) -> PatientCase:
        """A patient from YAML text (as :meth:`to_yaml` writes it); invalid data raises :class:`PatientDataError`."""
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PatientDataError([Problem(f"not YAML: {exc}")]) from None
        return parse_patient(document)


def _compact(value: Any) -> Any:
    """``value`` without the empty fields (None, ``[]``, ``{}``) of its mappings, recursively."""
    if isinstance(value, dict):
        kept = {k: _compact(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item.startswith(("function-", "literal[", "tagged-union")):
            continue
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(patient)"


def problems_from_validation(exc: ValidationError) -> list[Problem]:
    """Turn pydantic errors into problems naming the field path (``procedures[1].relief_pct``)."""
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        path = _loc_to_path(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            message = "unknown code " + repr(err.get("input")) + "; " + message.lower()
        problems.append(Problem(message=message, field=path))
    return problems


def parse_patient(document: Any) -> PatientCase:
    """Validate a patient document (a mapping or JSON text); raise :class:`PatientDataError` naming fields."""
    try:
        if isinstance(document, str | bytes):
            return PatientCase.model_validate_json(document)
        if isinstance(document, PatientCase):
            return document
        return PatientCase.model_validate(document)
    except ValidationError as exc:
        raise PatientDataError(problems_from_validation(exc)) from None
