"""Pydantic models of the rule files: manifest, catalogues, rules and test cases.

These models check the *shape* of each file (and give JSON Schemas for editors). The meaning of a
rule's conditions (field paths, types, references) is checked by :mod:`ipm_cds.ruleset.compile`
against the fact schema and the catalogues, with the same file:line:col positions.

Why this module is over 600 lines: it is the one definition of every ruleset file format (the loader, the
lock, the JSON Schemas and the docs all read it), declarations only.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
RULE_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
CRITERION_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")

Code = Annotated[str, Field(pattern=CODE.pattern, max_length=64)]
Version = Annotated[str, Field(pattern=SEMVER.pattern, description="Semantic version MAJOR.MINOR.PATCH.")]
CriterionId = Annotated[str, Field(pattern=CRITERION_ID.pattern, max_length=40)]
Text = Annotated[str, Field(min_length=1, max_length=4000)]
Scalar = str | int | float | bool
Verification = Literal["V", "V2", "K", "UNVERIFIED"]
BleedingRisk = Literal["low", "intermediate", "high"]
Guidance = Literal["fluoroscopy", "ct", "ultrasound", "landmark"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def version_key(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


# -- manifest ------------------------------------------------------------------------------------------


class ProfileSpec(_M):
    title: Text
    description: Text | None = None


class Settings(_M):
    rolling_window_days: int = Field(
        ge=1, le=3660, description="Length of the rolling window that session counts use (criteria §0.2)."
    )
    rolling_window_source: Code = Field(description="Source id that defines the window.")
    procedure_groups: dict[Code, list[Code]] = Field(
        default_factory=dict,
        description="Procedure kinds counted together per region (e.g. every ESI approach); each group becomes "
        "a procedure_group_history fact.",
    )
    exam_groups: dict[Code, list[Code]] = Field(
        default_factory=dict,
        description="Examination tests counted together (e.g. SIJ provocative manoeuvres); each group becomes an "
        "exam_summary fact with the number of positive and negative tests.",
    )
    medication_groups: dict[Code, list[Code]] = Field(
        default_factory=dict,
        description="Drug classes counted together (e.g. every agent that raises bleeding risk); each group "
        "becomes a medication_summary fact with the number of current medications in it.",
    )


Files = str | list[str]
"""One file, or several (each may be a glob such as ``catalogues/interventions-*.yaml``)."""


class CatalogueFiles(_M):
    interventions: Files
    referrals: Files
    sources: Files
    parameters: Files
    medications: Files
    criteria: Files
    vocabularies: Files = Field(
        description="The codes patient documents and rules use (regions, procedure kinds, findings, tests, "
        "conditions, red flags, laboratory tests, instruments): a document is checked against them."
    )
    messages: Files = Field(
        description="The message catalogue: every clinician-facing sentence the code composes (hold advice, "
        "red-flag and deferral reasons), as templates."
    )


class ChangeEntry(_M):
    version: Version
    date: date
    changes: list[Text] = Field(min_length=1)


class Manifest(_M):
    """``ruleset.yaml``: what the ruleset is, its profiles, and the files it includes."""

    id: Code
    version: Version
    title: Text
    publisher: Text
    status: Literal["draft", "active", "retired"]
    effective: date
    default_profile: Code
    profiles: dict[Code, ProfileSpec] = Field(min_length=1)
    settings: Settings
    catalogues: CatalogueFiles
    rules: list[str] = Field(min_length=1)
    tests: list[str] = Field(default_factory=list)
    changelog: list[ChangeEntry] = Field(default_factory=list)
    disclaimer: Text

    @model_validator(mode="after")
    def _default_profile_exists(self) -> Manifest:
        if self.default_profile not in self.profiles:
            raise ValueError(f"default_profile {self.default_profile!r} is not one of the profiles")
        return self


# -- catalogues ----------------------------------------------------------------------------------------


class Source(_M):
    id: Code
    citation: Text
    url: str | None = None
    year: int = Field(ge=1900, le=2100)
    kind: Literal["payer_policy", "guideline", "consensus", "study", "regulatory", "reference"]


class SourceCatalogue(_M):
    sources: list[Source]


class Criterion(_M):
    id: CriterionId
    title: Text
    section: str = Field(description="Section of the clinical criteria document, e.g. '§1.1'.")
    verification: Verification | None = None


class CriterionCatalogue(_M):
    criteria: list[Criterion]


class BleedingRiskSpec(_M):
    default: BleedingRisk
    by_region: dict[Code, BleedingRisk] = Field(default_factory=dict)
    source: Code
    verification: Verification


class Intervention(_M):
    code: Code
    name: Text
    cpt: list[Annotated[str, Field(pattern=r"^\d{4}[0-9A-Z]$")]] = Field(default_factory=list)
    kind: Literal["diagnostic", "therapeutic", "implant"]
    elective: bool
    evidence_status: Literal["standard", "payer_dependent", "investigational"]
    bleeding_risk: BleedingRiskSpec
    image_guidance: list[Guidance] = Field(min_length=1)
    guidance_criteria: list[CriterionId] = Field(default_factory=list)
    sources: list[Code] = Field(min_length=1)
    uses_steroid: bool = Field(False, description="Usually given with a corticosteroid.")
    uses_contrast: bool = Field(False, description="Usually done with iodinated contrast.")
    uses_radiofrequency: bool = Field(False, description="Delivers radiofrequency energy.")
    neuraxial: bool = Field(False, description="Enters the epidural or intrathecal space.")
    needle: bool = Field(True, description="A needle or implant procedure (false: e.g. a referral-only option).")


class InterventionCatalogue(_M):
    interventions: list[Intervention]


class ReferralTarget(_M):
    code: Code
    name: Text
    description: Text | None = None
    elective: bool = Field(
        False,
        description="Part of elective pain care (e.g. physical therapy, implant work-up): while a red flag stands, "
        "the referral is deferred (listed under deferred_referrals, not referrals) until the red flag has been "
        "assessed. Urgent and safety referrals are never elective.",
    )


class ReferralCatalogue(_M):
    referrals: list[ReferralTarget]


class DefaultBasis(_M):
    """The basis of a parameter default that no source states as one number."""

    kind: Literal["conservative_default", "common_practice"] = Field(
        description="conservative_default: the cautious end of published practice, for a safety rule (red flag, "
        "contraindication, hold, laboratory limit); common_practice: the value payers or societies commonly use, "
        "for a pathway rule."
    )
    source: Code = Field(description="The source (sources catalogue) the value comes from.")
    verification: Verification = Field(description="Verification tag of the value in that source (criteria §0.1).")
    note: Text = Field(description="How the value follows from the source, e.g. 'the lower end of 9-10%'.")


class Parameter(_M):
    """A named clinical threshold. Rules read it; the profile (or a deployment override) sets it."""

    name: Code
    type: Literal["int", "float"]
    unit: str
    description: Text
    default: int | float | None = Field(
        description="Value when the profile sets none. null: no default (an [UNVERIFIED] item): the rules "
        "that read it stay inactive until a deployment sets it."
    )
    profiles: dict[Code, int | float] = Field(default_factory=dict)
    min: int | float
    max: int | float
    source: Code
    verification: Verification
    criteria: list[CriterionId] = Field(min_length=1)
    local_policy_default: bool = Field(
        False,
        description="The default is local policy, not a published figure. Required for an [UNVERIFIED] parameter "
        "that ships a default (criteria §0.1).",
    )
    default_basis: DefaultBasis | None = Field(
        None,
        description="Why the default is this value when no source gives one number: the conservative end of "
        "published practice (a safety rule) or the value payers or societies commonly use (a pathway rule). "
        "An assessment names every such default that decided an outcome (provenance.defaults_applied).",
    )

    @model_validator(mode="after")
    def _unverified_default_is_labelled(self) -> Parameter:
        labelled = self.local_policy_default or self.default_basis is not None
        if self.verification == "UNVERIFIED" and self.default is not None and not labelled:
            raise ValueError(
                f"parameter {self.name} is UNVERIFIED and ships a default: set local_policy_default: true "
                "or a default_basis, or give no default"
            )
        if self.default_basis is not None and self.default is None:
            raise ValueError(f"parameter {self.name} has a default_basis but no default")
        return self

    @model_validator(mode="after")
    def _values_fit(self) -> Parameter:
        values = ([self.default] if self.default is not None else []) + list(self.profiles.values())
        for value in values:
            if self.type == "int" and not isinstance(value, int):
                raise ValueError(f"parameter {self.name} is an int but has the value {value!r}")
            if not self.min <= value <= self.max:
                raise ValueError(f"parameter {self.name} value {value} is outside {self.min}..{self.max}")
        return self

    def value(self, profile: str) -> int | float | None:
        """The value under a profile: the profile's own, else the default; None when neither is given.
        The one place that says which value a profile uses (the engine, content, diff all ask here)."""
        return self.profiles.get(profile, self.default)


class VocabularyCode(_M):
    """One code of a vocabulary. ``unit``/``min``/``max`` give a value recorded with it (a laboratory test's
    canonical unit and plausible range, an instrument's score range); ``subscores`` the subscore fields an
    instrument carries."""

    code: Code
    label: Text
    description: Text | None = None
    unit: str | None = Field(None, max_length=32)
    min: float | None = None
    max: float | None = None
    subscores: list[Code] = Field(default_factory=list)
    better: Literal["higher", "lower"] | None = Field(
        None, description="An outcome instrument: whether a higher or a lower score is the better outcome."
    )
    equivalent: float | None = Field(
        None,
        gt=0,
        le=100,
        description="A corticosteroid: mg of methylprednisolone equivalent to 1 mg of this agent (the glucocorticoid "
        "potency table the vocabulary cites), for cumulative steroid exposure.",
    )

    @model_serializer(mode="wrap")
    def _drop_unset_better(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # `better` and `equivalent` are left out when not set, so codes without them keep the content hash they
        # had before them.
        out: dict[str, Any] = handler(self)
        for name in ("better", "equivalent"):
            if out.get(name) is None:
                out.pop(name, None)
        return out

    @model_validator(mode="after")
    def _range(self) -> VocabularyCode:
        if (self.min is None) != (self.max is None):
            raise ValueError("give both min and max, or neither")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Vocabulary(_M):
    name: Code
    description: Text
    codes: list[VocabularyCode] = Field(min_length=1)


class VocabularyCatalogue(_M):
    vocabularies: list[Vocabulary]


class ParameterCatalogue(_M):
    parameters: list[Parameter]


class HoldAdvice(_M):
    action: Literal["hold", "shared", "continue"]
    duration: str | None = Field(None, description="How long before the procedure, as published: '5 days'.")
    condition: str | None = Field(None, description="A condition attached to the hold, e.g. 'normal INR'.")
    verification: Verification | None = None

    @model_validator(mode="after")
    def _hold_has_duration(self) -> HoldAdvice:
        if self.action == "hold" and not self.duration:
            raise ValueError("a hold needs a duration")
        return self


class HoldTable(_M):
    high: HoldAdvice
    intermediate: HoldAdvice
    low: HoldAdvice


class MedicationEntry(_M):
    code: Code
    name: Text
    drug_class: Code
    antithrombotic: bool
    hold: HoldTable | None = None
    secondary_prevention_hold: HoldTable | None = Field(
        None, description="The row that applies when the indication is secondary prevention (ASRA 2018)."
    )
    restart: str | None = Field(None, description="When to restart after the procedure, as published.")
    prescriber_approval_always: bool = Field(
        False, description="Every change needs prescriber approval (anticoagulants; AC-NOSTOP-01)."
    )
    source: Code | None = None
    verification: Verification | None = None
    mme_factor: float | None = Field(
        None, gt=0, le=100, description="Morphine milligram equivalents per unit of daily dose (CDC 2022 table)."
    )
    mme_dose_unit: Literal["mg", "mcg_per_hour"] | None = Field(None, description="The unit the factor applies to.")
    mme_excluded: bool = Field(False, description="An opioid that is never counted toward MME (buprenorphine).")
    mme_source: Code | None = None
    mme_verification: Verification | None = None

    @model_validator(mode="after")
    def _mme_complete(self) -> MedicationEntry:
        given = [self.mme_factor is not None, self.mme_dose_unit is not None, self.mme_source is not None]
        if any(given) and not all(given):
            raise ValueError(f"{self.code}: mme_factor, mme_dose_unit and mme_source go together")
        return self

    @model_validator(mode="after")
    def _antithrombotic_has_table(self) -> MedicationEntry:
        if self.antithrombotic and (self.hold is None or self.source is None or self.verification is None):
            raise ValueError(f"antithrombotic {self.code} needs hold, source and verification")
        return self


class MedicationCatalogue(_M):
    medications: list[MedicationEntry]


class Message(_M):
    """One clinician-facing sentence the code composes, as a template.

    ``{name}`` is a value the code fills in (each message has its own set); ``[[ ... ]]`` is an optional
    segment, dropped when a placeholder inside it has no value.
    """

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$", max_length=80)]
    text: Text
    criteria: list[CriterionId] = Field(
        default_factory=list,
        description="Criteria the sentence applies; the placeholder {criterion} names them (comma-separated).",
    )
    description: Text | None = None


class MessageCatalogue(_M):
    messages: list[Message]


# -- rules ---------------------------------------------------------------------------------------------


class Evidence(_M):
    strength: Literal["strong", "moderate", "weak", "consensus", "coverage"]
    quality: Literal["high", "moderate", "low", "very_low", "not_graded"]
    sources: list[Code] = Field(min_length=1)


class Period(_M):
    start: date | None = None
    end: date | None = None


PatternSpec = dict[str, Any]
"""A fact pattern: ``type`` plus field conditions (checked by the compiler)."""

ConclusionSpec = dict[str, Any]
"""A conclusion as written: one key, its kind, over its body. The compiler validates the body with the
kind's model (:data:`CONCLUSIONS`, with file:line:col errors) and then checks what needs the ruleset
(catalogue codes, aliases, templates); the editor's JSON Schema comes from the same models (:data:`Conclusion`)."""

Operand = Annotated[
    str | int | float | bool | dict[str, Any],
    Field(
        description="A literal, an alias field (pain.region), or {param: NAME}: checked against the fact schema.",
        json_schema_extra={
            "oneOf": [
                {"type": ["string", "number", "boolean"]},
                {
                    "type": "object",
                    "properties": {"param": {"type": "string"}},
                    "required": ["param"],
                    "additionalProperties": False,
                },
            ]
        },
    ),
]
Template = Annotated[str, Field(min_length=1, max_length=4000, description="Text with {alias.field} placeholders.")]
InterventionCode = Annotated[str, Field(min_length=1, max_length=64, description="An intervention catalogue code.")]


class TargetSpec(_M):
    """Where a recommended intervention goes: each a literal or an alias field."""

    region: Operand | None = None
    side: Operand | None = None
    levels: Operand | None = None


class RecommendBody(_M):
    """Propose an intervention as a candidate, with a rationale filled from the patient's data."""

    intervention: InterventionCode
    target: TargetSpec = Field(default_factory=TargetSpec)
    rationale: Template


class _Targets(_M):
    intervention: InterventionCode | None = Field(None, description="One intervention.")
    interventions: list[InterventionCode] | None = Field(None, min_length=1, description="Several interventions.")
    scope: Literal["elective"] | None = Field(None, description="Every elective intervention.")
    region: Operand | None = Field(None, description="Only at this region (a literal or an alias field).")


class ExcludeBody(_Targets):
    """Exclude interventions: a contraindication (absolute, relative) or an unmet criterion."""

    severity: Literal["absolute", "relative", "unmet"] = Field(
        description="absolute/relative: a contraindication; unmet: a criterion the patient does not meet."
    )
    reason: Template


class PrecautionBody(_Targets):
    """A precaution attached to candidates."""

    text: Template


class AlertBody(_M):
    """An alert for the clinician."""

    code: AlertCode
    severity: Literal["critical", "warning", "info"]
    message: Template


class ReferBody(_M):
    """A referral to a catalogue target; one referral per target, the highest urgency wins."""

    to: Code = Field(description="A referral catalogue code.")
    urgency: Literal["emergency", "urgent", "soon", "routine"]
    reason: Template


class DeriveBody(_M):
    """Derive a fact that later strata match."""

    fact: Code = Field(description="The derived fact type.")
    set: dict[Code, Operand] = Field(default_factory=dict, description="Its fields: literals or alias fields.")


class RedFlagBody(_M):
    """A red flag: a critical alert that also excludes every elective intervention."""

    code: Code
    message: Template


class AntithromboticHoldBody(_M):
    """ASRA 2018 hold and restart advice for one antithrombotic before one candidate (catalogue hold table)."""

    medication: Code = Field(description="The alias bound to a medication fact.")
    candidate: Code = Field(description="The alias bound to a candidate fact.")
    upgrade: bool = Field(False, description="One bleeding-risk category up (a patient at high bleeding risk).")


CONCLUSIONS: dict[str, type[_M]] = {
    "recommend": RecommendBody,
    "exclude": ExcludeBody,
    "precaution": PrecautionBody,
    "alert": AlertBody,
    "refer": ReferBody,
    "derive": DeriveBody,
    "red_flag": RedFlagBody,
    "antithrombotic_hold": AntithromboticHoldBody,
}
"""Each conclusion kind and the model of its body: the one definition of what a conclusion may say."""


def _conclusion_model(kind: str, body: type[_M]) -> type[_M]:
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{''.join(p.capitalize() for p in kind.split('_'))}Conclusion",
        __base__=_M,
        __doc__=body.__doc__,
        **{kind: (body, ...)},
    )


def _conclusion_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


Conclusion: Any = Annotated[
    Union[tuple(Annotated[_conclusion_model(k, m), Tag(k)] for k, m in CONCLUSIONS.items())],  # noqa: UP007
    Discriminator(_conclusion_kind),
]
"""A conclusion, typed: a tagged union over :data:`CONCLUSIONS` (one key, the kind). The JSON Schema source."""


class RuleSpec(_M):
    """One rule. ``when`` binds aliases to fact patterns; ``unless`` clauses block it; ``then`` concludes."""

    id: str = Field(pattern=RULE_ID.pattern, max_length=120, description="Stable dotted id, e.g. facet.rfa.initial")
    version: Version
    status: Literal["draft", "active", "retired"]
    title: Text
    description: Text | None = None
    criteria: list[CriterionId] = Field(min_length=1)
    evidence: Evidence
    profiles: list[Code] | None = Field(None, description="Profiles the rule runs under; all when absent.")
    effective: Period | None = None
    when: dict[str, PatternSpec] = Field(min_length=1)
    unless: list[dict[str, PatternSpec]] = Field(default_factory=list)
    then: list[ConclusionSpec] = Field(min_length=1)

    @field_validator("when")
    @classmethod
    def _aliases(cls, value: dict[str, PatternSpec]) -> dict[str, PatternSpec]:
        for alias in value:
            if not CODE.match(alias) or alias == "param":
                raise ValueError(f"alias {alias!r} must be a lower-case name other than 'param'")
        return value


class RuleFile(_M):
    rules: list[RuleSpec] = Field(min_length=1)


# -- test cases ----------------------------------------------------------------------------------------


AlertCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")]
ExclusionKind = Literal["absolute", "red_flag", "unmet", "absolute_contraindication", "unmet_criterion"]
PrecautionKind = Literal["relative", "relative_contraindication", "caution", "antithrombotic"]


JudgementKind = Literal[
    "red_flag",
    "absolute_contraindication",
    "unmet_criterion",
    "relative_contraindication",
    "caution",
    "antithrombotic",
    "alert",
    "referral",
]


class PrecautionExpectation(_M):
    """One precaution a test case expects: every field given must match one and the same precaution."""

    intervention: Code | None = Field(
        None, description="The candidate that carries it; absent: a precaution on the patient as a whole."
    )
    kind: PrecautionKind | None = Field(
        None, description="relative (a relative contraindication), caution, antithrombotic."
    )
    medication: Code | None = Field(None, description="The agent of an antithrombotic precaution, e.g. apixaban.")
    bleeding_risk: BleedingRisk | None = Field(None, description="The bleeding-risk category the advice is for.")
    hold: str | None = Field(None, description="The hold duration the text gives, e.g. '3-5 days'.")
    restart: str | None = Field(None, description="The restart advice the text gives, e.g. '24 h'.")
    prescriber_approval: bool | None = Field(None, description="Whether any change needs the prescriber's approval.")
    text_contains: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Parts of the text (case-insensitive), each of which must appear in it."
    )


class Expectation(_M):
    """What a test case expects. Lists of codes are exact sets; ``fired``/``not_fired`` are subsets.

    The content checks (``precaution_details``, ``exclusion_kinds``, ``referral_urgency``, ``alert_severity``)
    name only what they pin: other precautions, exclusions, referrals and alerts may stand beside them.
    """

    candidates: list[Code] | None = None
    excluded: list[Code] | None = None
    referrals: list[Code] | None = None
    deferred_referrals: list[Code] | None = Field(None, description="Referrals a red flag deferred.")
    alerts: list[AlertCode] | None = None
    precautions: list[Code] | None = Field(None, description="Interventions that carry at least one precaution.")
    precaution_details: list[PrecautionExpectation] = Field(
        default_factory=list, description="Precautions that must stand, with their content (agent, hold, text)."
    )
    exclusion_kinds: dict[Code, ExclusionKind] = Field(
        default_factory=dict,
        description="Excluded intervention -> the kind of its exclusion (absolute, red_flag, unmet).",
    )
    referral_urgency: dict[Code, Literal["emergency", "urgent", "soon", "routine"]] = Field(
        default_factory=dict, description="Referral target -> its urgency (a deferred referral counts too)."
    )
    alert_severity: dict[AlertCode, Literal["critical", "warning", "info"]] = Field(
        default_factory=dict, description="Alert code -> its severity."
    )
    missing: list[str] | None = Field(None, description="Missing-data fields, e.g. 'pain.duration_weeks'.")
    requested: dict[Code, Literal["appropriate", "not_appropriate", "cannot_tell"]] = Field(
        default_factory=dict, description="Requested intervention -> the verdict of every request of it."
    )
    requested_safety: dict[Code, list[JudgementKind]] = Field(
        default_factory=dict,
        description="Requested intervention -> kinds of safety judgement that must be among its judgements.",
    )
    requested_rules: dict[Code, list[str]] = Field(
        default_factory=dict,
        description="Requested intervention -> rule ids that must be behind one of its judgements or reasons.",
    )
    requested_missing: dict[Code, list[str]] = Field(
        default_factory=dict, description="Requested intervention -> missing-data fields its verdict must list."
    )
    scope: dict[Code, Literal["candidate", "excluded", "not_indicated", "not_decidable"]] | None = Field(
        None, description="Intervention in scope -> where it stands (exact: every intervention in scope)."
    )
    fired: list[str] = Field(default_factory=list)
    not_fired: list[str] = Field(default_factory=list)


class TestCase(_M):
    name: Text
    description: Text | None = None
    as_of: date
    profile: Code | None = None
    parameters: dict[Code, int | float] = Field(default_factory=dict)
    extends: Code | None = Field(
        None,
        description="A fixture of this file the patient starts from: the case's sections replace the fixture's "
        "(demographics, conservative_care and psychological_evaluation are merged field by field); a section "
        "set to null is left out.",
    )
    patient: dict[str, Any] = Field(default_factory=dict)
    expect: Expectation


class TestFile(_M):
    fixtures: dict[Code, dict[str, Any]] = Field(
        default_factory=dict, description="Base patients that this file's cases extend (extends: NAME)."
    )
    cases: list[TestCase] = Field(min_length=1)
