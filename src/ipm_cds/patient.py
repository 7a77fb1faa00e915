"""The patient model: one patient's pain, diagnostics and history, as ipm-cds reads it.

Every model is strict (no silent coercion: ``"50"`` is not 50, ``true`` is not 1), forbids unknown
fields, rejects NaN and infinities, and bounds every number to the range its instrument or unit
allows. Codes are closed vocabularies (``Literal``): an unknown code is an error that lists the
codes that are accepted. Dates are ISO ``YYYY-MM-DD``; checks that need the evaluation date
(nothing dated after ``as_of``) run in :func:`ipm_cds.facts.normalise`.

Missing is not normal: every clinical field is optional and ``None`` means *not recorded*. The rules
never read a missing value as a normal one; they report it in ``Assessment.missing_data``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import PatientDataError, Problem

__all__ = [
    "Allergy",
    "ConservativeCare",
    "Demographics",
    "ExamFinding",
    "ImagingFinding",
    "Lab",
    "Medication",
    "PainComplaint",
    "PatientCase",
    "PriorProcedure",
    "PsychologicalEvaluation",
    "RedFlagFinding",
    "Screening",
    "parse_patient",
]

MAX_ITEMS = 100
"""Upper bound on the length of every list in a patient document (keeps facts within engine limits)."""

MAX_AGE_YEARS = 120
"""The oldest plausible age. ``age_years`` is bounded by it; the age a ``birth_date`` gives at ``as_of``
is checked against it when the patient is evaluated (:func:`ipm_cds.facts.normalise.normalise`)."""


def _iso_date(value: Any) -> Any:
    """Accept a ``date`` or an ISO ``YYYY-MM-DD`` string; nothing else (no timestamps, no datetimes)."""
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"not a valid calendar date: {value!r}") from exc
    raise ValueError("expected a date as YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]

_LEVEL = re.compile(r"^(C[1-7]|T(1[0-2]|[1-9])|L[1-5]|S[1-5])(-(C[1-7]|T(1[0-2]|[1-9])|L[1-5]|S[1-5]))?$")


_REGION_ORDER = {"C": 0, "T": 1, "L": 2, "S": 3}


def _vertebra_rank(vertebra: str) -> tuple[int, int]:
    """Head-to-tail position of a vertebra: C1 < ... < C7 < T1 < ... < T12 < L1 < ... < L5 < S1 < ... < S5."""
    return _REGION_ORDER[vertebra[0]], int(vertebra[1:])


def _spinal_level(value: Any) -> Any:
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

BodyRegion = Literal[
    "cervical",
    "thoracic",
    "lumbar",
    "sacral",
    "sacroiliac",
    "knee",
    "hip",
    "shoulder",
    "upper_limb",
    "lower_limb",
    "head",
    "chest_wall",
    "abdomen",
    "pelvis",
    "other",
]
"""Where the pain or the finding is. Spinal regions follow the CMS LCD meaning (criteria §0.2)."""

Laterality = Literal["left", "right", "bilateral", "midline"]

PainCharacter = Literal[
    "axial",
    "radicular",
    "neurogenic_claudication",
    "neuropathic",
    "myofascial",
    "joint",
    "visceral",
    "cancer",
    "headache",
]

ProcedureKind = Literal[
    "facet_mbb",
    "facet_ia",
    "facet_rfa",
    "esi_interlaminar",
    "esi_transforaminal",
    "esi_caudal",
    "sij_injection",
    "sij_rfa",
    "scs_trial",
    "scs_implant",
    "drg_trial",
    "drg_implant",
    "genicular_block",
    "genicular_rfa",
    "vertebral_augmentation",
    "bvn_ablation",
    "occipital_block",
    "sympathetic_block",
    "celiac_neurolysis",
    "hypogastric_neurolysis",
    "trigger_point_injection",
    "idd_trial",
    "idd_implant",
    "regenerative_injection",
    "spinal_fusion",
    "laminectomy",
    "discectomy",
    "other_spine_surgery",
    "knee_arthroplasty",
]

ImagingModality = Literal["xray", "mri", "ct", "bone_scan", "spect_ct", "ultrasound"]

ImagingFindingCode = Literal[
    "disc_herniation",
    "disc_bulge",
    "nerve_root_compression",
    "foraminal_stenosis",
    "central_canal_stenosis",
    "facet_arthropathy",
    "synovial_cyst",
    "spondylolisthesis",
    "vertebral_fracture",
    "bone_marrow_edema",
    "modic_type_1",
    "modic_type_2",
    "tumor",
    "infection",
    "fusion",
    "significant_deformity",
    "osteoarthritis",
    "normal",
]

ExamFindingCode = Literal[
    "motor_weakness",
    "sensory_deficit",
    "reflex_change",
    "straight_leg_raise",
    "spurling",
    "facet_loading",
    "paraspinal_tenderness",
    "taut_band",
    "sij_distraction",
    "sij_compression",
    "sij_thigh_thrust",
    "sij_sacral_thrust",
    "sij_gaenslen",
    "sij_faber",
    "allodynia",
    "myelopathic_signs",
]

RedFlagCode = Literal[
    "bladder_dysfunction",
    "bowel_dysfunction",
    "saddle_anesthesia",
    "bilateral_leg_neurological_deficit",
    "sexual_dysfunction",
    "bilateral_sciatica",
    "progressive_neurological_deficit",
    "unexplained_weight_loss",
    "night_pain",
    "fever",
    "intravenous_drug_use",
    "significant_trauma",
    "prolonged_corticosteroid_use",
]

ConditionCode = Literal[
    "active_systemic_infection",
    "local_infection_at_site",
    "cancer",
    "immunosuppression",
    "bleeding_disorder",
    "diabetes",
    "opioid_use_disorder",
    "substance_use_disorder",
    "pacemaker",
    "implanted_defibrillator",
    "spinal_cord_stimulator",
    "intrathecal_pump",
    "liver_cirrhosis",
    "advanced_renal_disease",
    "sleep_apnea",
    "crps",
    "painful_diabetic_neuropathy",
    "osteoporosis",
    "spondyloarthritis",
    "prior_overdose",
    "palliative_care",
    "sickle_cell_disease",
    "untreated_major_psychiatric_disorder",
    "mechanical_heart_valve",
    "recent_coronary_stent",
    "recent_vte_or_stroke",
    "spinal_pseudarthrosis",
]

AllergySubstance = Literal["iodinated_contrast", "local_anesthetic", "corticosteroid", "latex", "bone_cement"]

LabTest = Literal["inr", "platelets", "glucose", "hba1c", "egfr"]

Instrument = Literal["phq9", "gad7", "pcs", "start_back", "ort", "stop_bang", "isi"]

_LAB_RANGES: dict[str, tuple[float, float, str]] = {
    "inr": (0.5, 20.0, "ratio"),
    "platelets": (0.0, 2000.0, "10^9/L"),
    "glucose": (10.0, 2000.0, "mg/dL"),
    "hba1c": (3.0, 25.0, "%"),
    "egfr": (0.0, 200.0, "mL/min/1.73m2"),
}

_INSTRUMENT_RANGES: dict[str, tuple[int, int]] = {
    "phq9": (0, 27),
    "gad7": (0, 21),
    "pcs": (0, 52),
    "start_back": (0, 9),
    "ort": (0, 26),
    "stop_bang": (0, 8),
    "isi": (0, 28),
}


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


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
    onset_date: IsoDate | None = Field(None, description="Date the pain began; duration is computed at as_of.")
    duration_weeks: int | None = Field(
        None, ge=0, le=5200, description="Duration in whole weeks (0–5200), when no onset date is known."
    )
    nrs: int | None = Field(None, ge=0, le=10, description="Numeric rating scale, current average pain 0–10.")
    odi_pct: int | None = Field(None, ge=0, le=100, description="Oswestry Disability Index, percent 0–100.")
    ndi: int | None = Field(None, ge=0, le=50, description="Neck Disability Index, raw score 0–50.")
    worsening: bool | None = Field(None, description="Pain is getting worse.")
    is_index: bool = Field(False, description="This is the index (primary) pain that relief is measured on.")

    @model_validator(mode="after")
    def _one_duration(self) -> PainComplaint:
        if self.onset_date is not None and self.duration_weeks is not None:
            raise ValueError("give onset_date or duration_weeks, not both")
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
    onset_date: IsoDate | None = Field(None, description="When the symptom began.")
    deteriorating: bool | None = Field(None, description="The symptom is getting worse.")


class PriorProcedure(_Model):
    """A procedure or operation the patient has had, with its outcome on the index pain."""

    kind: ProcedureKind
    purpose: Literal["diagnostic", "therapeutic"] | None = None
    region: BodyRegion
    levels: list[SpinalLevel] = Field(
        default_factory=list, max_length=10, description="Levels treated, e.g. ['L4-L5']."
    )
    side: Laterality | None = None
    date: IsoDate = Field(description="Date of the procedure (session), YYYY-MM-DD.")
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
        description="Value in the test's canonical unit: INR ratio, platelets 10^9/L, "
        "glucose mg/dL, HbA1c %, eGFR mL/min/1.73m²."
    )
    date: IsoDate

    @model_validator(mode="after")
    def _in_range(self) -> Lab:
        low, high, unit = _LAB_RANGES[self.test]
        if not low <= self.value <= high:
            raise ValueError(f"{self.test} {self.value} is outside {low}–{high} {unit}")
        return self


class Screening(_Model):
    """A screening instrument score. PHQ-9 may carry item 9; STarT Back its distress subscore."""

    instrument: Instrument
    score: int = Field(description="Total score in the instrument's range.")
    item9: int | None = Field(None, ge=0, le=3, description="PHQ-9 item 9 (thoughts of self-harm), 0–3.")
    distress_subscore: int | None = Field(None, ge=0, le=5, description="STarT Back items 5–9, 0–5.")
    date: IsoDate | None = None

    @model_validator(mode="after")
    def _in_range(self) -> Screening:
        low, high = _INSTRUMENT_RANGES[self.instrument]
        if not low <= self.score <= high:
            raise ValueError(f"{self.instrument} score {self.score} is outside {low}–{high}")
        if self.item9 is not None and self.instrument != "phq9":
            raise ValueError("item9 belongs to phq9 only")
        if self.distress_subscore is not None and self.instrument != "start_back":
            raise ValueError("distress_subscore belongs to start_back only")
        return self


class Allergy(_Model):
    substance: AllergySubstance
    reaction: Text | None = None


class ConditionEntry(_Model):
    """A diagnosis or device. ``active`` False records a past condition."""

    code: ConditionCode
    active: bool = True
    region: BodyRegion | None = None


class PsychologicalEvaluation(_Model):
    completed: bool = Field(description="A pre-procedure psychological evaluation is documented.")
    date: IsoDate | None = None
    cleared: bool | None = Field(None, description="The evaluation found no contraindication.")


class PatientCase(_Model):
    """One patient, as the rules see them. Lists are unordered: their order never changes the answer."""

    id: str | None = Field(None, max_length=128, description="Opaque identifier; not used by any rule.")
    demographics: Demographics = Field(default_factory=Demographics)
    pain: list[PainComplaint] = Field(default_factory=list, max_length=20)
    imaging: list[ImagingFinding] = Field(default_factory=list, max_length=MAX_ITEMS)
    exam: list[ExamFinding] = Field(default_factory=list, max_length=MAX_ITEMS)
    red_flags: list[RedFlagFinding] = Field(default_factory=list, max_length=MAX_ITEMS)
    procedures: list[PriorProcedure] = Field(default_factory=list, max_length=MAX_ITEMS)
    conservative_care: ConservativeCare = Field(default_factory=ConservativeCare)
    medications: list[Medication] = Field(default_factory=list, max_length=MAX_ITEMS)
    labs: list[Lab] = Field(default_factory=list, max_length=MAX_ITEMS)
    screenings: list[Screening] = Field(default_factory=list, max_length=MAX_ITEMS)
    conditions: list[ConditionEntry] = Field(default_factory=list, max_length=MAX_ITEMS)
    allergies: list[Allergy] = Field(default_factory=list, max_length=MAX_ITEMS)
    psychological_evaluation: PsychologicalEvaluation | None = None

    @model_validator(mode="after")
    def _one_index_pain(self) -> PatientCase:
        if sum(1 for p in self.pain if p.is_index) > 1:
            raise ValueError("at most one pain complaint can be the index pain (is_index)")
        return self


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
