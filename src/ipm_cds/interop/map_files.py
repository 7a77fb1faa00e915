"""The schemas of the code-map files (``maps/*.yaml``) and the terminology tables (``terminology/*.json``).

One pydantic model a file (unknown keys are errors), and the vocabularies a map target may name.
:mod:`ipm_cds.interop.maps` loads the files into these models, checks them against each other and
the patient model, and indexes them for lookup.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAP_FILES = (
    "systems",
    "observations",
    "conditions",
    "medications",
    "procedures",
    "allergies",
    "qualifiers",
    "override_reasons",
)

# Vocabularies a local code system may hold (systems.yaml `local.*.vocabulary`). The ruleset's own
# vocabularies (RULESET_VOCABULARIES) and its two catalogues depend on the ruleset: the reader checks
# codes against the ruleset it is given, and Maps.codes_outside lists map targets a ruleset lacks.
MEDICATION_INDICATIONS = ("primary_prevention", "secondary_prevention", "treatment", "pain", "other")
RULESET_VOCABULARIES: dict[str, str] = {
    "BodyRegion": "body_region",
    "PainCharacter": "pain_character",
    "RedFlagCode": "red_flag",
    "ConditionCode": "condition",
    "ExamFindingCode": "exam_test",
    "ImagingFindingCode": "imaging_finding",
    "ImagingModality": "imaging_modality",
    "AllergySubstance": "allergy_substance",
    "ProcedureKind": "procedure_kind",
    "OutcomeMeasure": "outcome_measure",
}
"""Map vocabulary names -> the ruleset vocabulary (``vocabularies`` catalogue) that holds their codes."""
VOCABULARIES: dict[str, tuple[str, ...] | None] = {
    **dict.fromkeys(RULESET_VOCABULARIES),
    "MedicationIndication": MEDICATION_INDICATIONS,
    "CoronaryStentType": ("drug_eluting", "bare_metal"),
    "InterventionCatalogue": None,
    "MedicationCatalogue": None,
    "LocalObservation": None,  # the `observation` entries of observations.yaml
}

ObservationTarget = Literal[
    "pain.nrs",
    "pain.odi_pct",
    "pain.ndi",
    "pain.rmdq",
    "pain.worsening",
    "pain.duration_weeks",
    "demographics.bmi",
    "demographics.tobacco_use",
    "demographics.pregnant",
    "demographics.gestational_weeks",
    "screening.phq9",
    "screening.phq9.item9",
    "screening.gad7",
    "screening.pcs",
    "screening.start_back",
    "screening.start_back.distress",
    "screening.start_back.category",
    "screening.ort",
    "screening.stop_bang",
    "screening.isi",
    "lab.inr",
    "lab.platelets",
    "lab.glucose",
    "lab.hba1c",
    "lab.egfr",
    "lab.creatinine_clearance",
    "lab.crp",
    "lab.esr",
    "procedure.relief_pct",
    "procedure.relief_duration_weeks",
    "procedure.same_scale",
    "procedure.duration_consistent_with_agent",
    "conservative_care.physical_therapy_weeks",
    "conservative_care.active_exercise_program",
    "conservative_care.failed",
    "conservative_care.nonoperative_months",
    "psychological_evaluation.completed",
    "psychological_evaluation.cleared",
]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StandardSystem(_M):
    uri: str
    source: str


class LocalSystem(_M):
    uri: str
    vocabulary: str


class SystemsFile(_M):
    standard: dict[str, StandardSystem]
    local: dict[str, LocalSystem]
    extensions: dict[str, str]


class Answer(_M):
    system: str
    code: str
    display: str
    value: str | bool | int


class UnitRule(_M):
    unit: str
    factor: float = 1.0
    offset: float = 0.0
    source: str | None = None


class ObservationEntry(_M):
    system: str
    code: str
    display: str
    target: ObservationTarget
    value: Literal["integer", "number", "boolean", "coded"]
    units: tuple[UnitRule, ...] | None = None
    answers: tuple[Answer, ...] | None = None
    instrument: str | None = Field(
        None,
        description="The outcome instrument (outcome_measure code) this score also is: read into measurements too, "
        "with the same unit rules.",
    )
    source: str


class ObservationsFile(_M):
    sources: dict[str, str]
    observations: tuple[ObservationEntry, ...]
    not_included: tuple[dict[str, str], ...] = ()


class _Coded(_M):
    system: str
    code: str | None = None
    prefix: str | None = None
    display: str
    source: str

    @model_validator(mode="after")
    def _one_of(self) -> _Coded:
        if (self.code is None) == (self.prefix is None):
            raise ValueError("give code or prefix, not both")
        return self


class ConditionMapEntry(_Coded):
    condition: str
    active: bool | None = Field(None, description="Force the condition's active flag (e.g. personal history: false).")


class PainMapEntry(_Coded):
    region: str | None = None  # None: the region comes from the Condition's body-region bodySite
    character: str
    laterality: str | None = None


class ConditionsFile(_M):
    sources: dict[str, str]
    conditions: tuple[ConditionMapEntry, ...]
    pain: tuple[PainMapEntry, ...]
    not_included: tuple[dict[str, str], ...] = ()


class MedicationMapEntry(_M):
    code: str
    display: str
    tty: Literal["IN", "SCD", "SBD"]
    agent: str
    strength_mcg_per_hour: float | None = None
    source: str


DoseRoute = Literal["oral", "oromucosal", "transdermal", "parenteral", "other"]
StrengthUnit = Literal["mg", "mg/mL", "mcg/h", "mg/actuation"]


class ProductIngredient(_M):
    rxcui: str | None = None  # None: read from the product's name (value-set products)
    name: str
    strength: float = Field(gt=0)
    unit: StrengthUnit


class ProductEntry(_M):
    """An RxNorm clinical or branded drug of the generated table (``terminology/rxnorm.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    rxcui: str
    name: str
    tty: Literal["SCD", "SBD", "GPCK", "BPCK"]
    drug_class: str = Field(alias="class")
    agent: str | None
    dose_form: str | None = None
    dose_form_rxcui: str | None = None
    route: DoseRoute | None = None
    ingredients: tuple[ProductIngredient, ...] = ()
    source: str
    note: str | None = None
    also: tuple[str, ...] = Field((), description="Other catalogue agents of a combination (aspirin in Percodan).")
    agent_by_route: dict[str, str] | None = Field(
        None, description="When the route of administration decides the agent (heparin: IV or SC)."
    )
    local_choices: tuple[str, ...] = Field(
        (), description="Agents a local medication code beside this one may choose instead (enoxaparin's dose class)."
    )

    def strength(self) -> tuple[float, StrengthUnit] | None:
        """The strength of the agent's ingredient (two salts of one opioid add), or None when not one unit."""
        units = {i.unit for i in self.ingredients}
        if len(units) != 1:
            return None
        return round(sum(i.strength for i in self.ingredients), 6), self.ingredients[0].unit


class RouteEntry(_M):
    system: Literal["snomed"]
    code: str
    display: str
    route: str
    source: str


class RxNormTable(_M):
    provenance: dict[str, Any]
    mapping: str
    routes: tuple[RouteEntry, ...] = ()
    products: tuple[ProductEntry, ...]


class TablePain(_M):
    region: str | None = None
    character: str


class TableCondition(_M):
    system: Literal["snomed", "icd10cm", "loinc"]
    code: str
    display: str
    condition: str | None = None
    pain: TablePain | None = None
    recognised: str | None = None
    source: str

    @model_validator(mode="after")
    def _one_of(self) -> TableCondition:
        if [self.condition, self.pain, self.recognised].count(None) != 2:
            raise ValueError("give one of condition, pain, recognised")
        return self


class TableObservation(_M):
    system: Literal["loinc"]
    code: str
    display: str
    target: ObservationTarget
    like: str = Field(description="The observations.yaml code whose value type and unit rules this code takes.")
    source: str


class TableInstrument(_M):
    system: Literal["loinc"]
    code: str
    display: str
    instrument: str = Field(description="The ruleset's outcome_measure code.")
    units: Literal["dimensionless"] | None = Field(
        None, description="dimensionless: no unit, '1' or a UCUM annotation ({T-score}); absent: any unit."
    )
    source: str


class InstrumentCode(_M):
    """An outcome instrument's code as the series reader uses it: the instrument, and the units a score may carry."""

    instrument: str
    units: tuple[str, ...] | None = Field(None, description="Accepted units (exact); None: any, unless dimensionless.")
    dimensionless: bool = False
    source: str

    def accepts(self, given: list[str]) -> bool:
        """Whether a score with these units (``Quantity.code`` and ``.unit``; empty: none) is read."""
        if self.dimensionless:
            return all(u in ("", "1") or (u.startswith("{") and u.endswith("}")) for u in given)
        return self.units is None or any(u in self.units for u in given) or (not given and "" in self.units)


class ObservationsTable(_M):
    provenance: dict[str, Any]
    mapping: str
    observations: tuple[TableObservation, ...]
    instruments: tuple[TableInstrument, ...] = ()


class ConditionsTable(_M):
    provenance: dict[str, Any]
    mapping: str
    conditions: tuple[TableCondition, ...]
    excluded: tuple[dict[str, str], ...] = ()


class AmbiguousCode(_M):
    code: str
    display: str
    reason: str


class MedicationsFile(_M):
    sources: dict[str, str]
    medications: tuple[MedicationMapEntry, ...]
    ambiguous: tuple[AmbiguousCode, ...] = ()
    not_included: tuple[dict[str, Any], ...] = ()


class CptEntry(_M):
    code: str
    procedure_kinds: tuple[str, ...]
    interventions: tuple[str, ...]
    regions: tuple[str, ...] = ()  # body regions the code's descriptor names; one region: the code fixes it
    source: str


class CoronaryStentEntry(_M):
    """A CPT code of coronary stent placement: a Procedure with it records a coronary stent on its date."""

    code: str
    display: str
    source: str


class ProceduresFile(_M):
    sources: dict[str, str]
    cpt: tuple[CptEntry, ...]
    coronary_stent_cpt: tuple[CoronaryStentEntry, ...] = ()
    not_included: tuple[dict[str, Any], ...] = ()


class AllergyMapEntry(_M):
    system: str
    code: str
    display: str
    substance: str
    source: str


class AllergiesFile(_M):
    sources: dict[str, str]
    allergies: tuple[AllergyMapEntry, ...]
    not_included: tuple[dict[str, str], ...] = ()


class QualifierEntry(_M):
    system: str
    code: str
    display: str
    value: str
    source: str


class QualifiersFile(_M):
    sources: dict[str, str]
    laterality: tuple[QualifierEntry, ...]
    modality: tuple[QualifierEntry, ...]
    lab_flag: tuple[QualifierEntry, ...] = ()
    encounter_class: tuple[QualifierEntry, ...] = ()
    not_included: tuple[dict[str, str], ...] = ()


class OverrideReasonsFile(_M):
    system: str
    reasons: dict[str, str]
    cards: dict[str, tuple[str, ...]]
