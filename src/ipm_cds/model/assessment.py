"""The Assessment: what ipm-cds returns for one patient. Decision support for a clinician, never an order.

Every candidate, exclusion, precaution, alert and referral names the rule (``id@version``) and the
criterion ids behind it, and carries the citations of its sources. Lists are sorted, so the same input,
ruleset and ``as_of`` give byte-identical JSON (``provenance.evaluated_at`` aside).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, TypeAdapter, WithJsonSchema

from .._frozen import hashable

Urgency = Literal["emergency", "urgent", "soon", "routine"]


def _schema(mapping: Any) -> dict[str, Any]:
    return TypeAdapter(mapping).json_schema(mode="serialization")


# Mappings of scalars, written in JSON from each value's own type (pydantic's "any" serializer, in Rust).
# Validation is the type's own: only the scalars it names get in. Writing them, pydantic would try each member
# of the union on each value in turn; for a value that can only be one of them (a str, a bool, an int, a float)
# the text is the same, and an assessment holds a few hundred such values (about 40 % quicker per mapping). The
# JSON Schema stays the type's own, for validation and serialization alike (tests/test_public_models.py).
_ScalarMap: TypeAlias = dict[str, str | int | float | bool]
_NumberMap: TypeAlias = dict[str, int | float]
Scalars = Annotated[_ScalarMap, SerializeAsAny(), WithJsonSchema(_schema(_ScalarMap), mode="serialization")]
Numbers = Annotated[_NumberMap, SerializeAsAny(), WithJsonSchema(_schema(_NumberMap), mode="serialization")]


class _Out(BaseModel):
    """The base of every output model: immutable, no extra fields, and hashable.

    pydantic hashes a frozen model by its field values, which fails on the lists an assessment holds; the
    hash here is computed from the same values made hashable, so equal models hash equal.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __hash__(self) -> int:
        return hash(hashable(self))


class Citation(_Out):
    """A source a conclusion rests on, from the ruleset's sources catalogue."""

    id: str = Field(description="The source's id in the sources catalogue, e.g. 'cms_lcd_facet'.")
    citation: str = Field(description="The bibliographic citation, as the catalogue gives it.")
    url: str | None = Field(None, description="Where to read the source; None when the catalogue gives no URL.")
    year: int = Field(description="Year of publication or of the version cited.")


class Basis(_Out):
    """Why a conclusion stands: the rule that drew it, its criteria and sources."""

    rule: str = Field(description="The rule that drew the conclusion, as id@version (e.g. 'facet.rfa.initial@1.2.0').")
    criteria: list[str] = Field(description="The criterion ids the rule implements (clinical/criteria.md), sorted.")
    sources: list[Citation] = Field(description="The rule's sources, in the order the rule cites them.")


class Target(_Out):
    """Where an intervention is aimed, from the patient's complaint the rule matched; None where not known."""

    region: str | None = Field(None, description="Body region, e.g. 'lumbar', 'cervical', 'knee'.")
    side: str | None = Field(None, description="'left', 'right' or 'bilateral'.")
    levels: str | None = Field(None, description="Spinal levels or the structure treated, e.g. 'L4-L5'.")


class Precaution(_Out):
    """Something to heed before an intervention (or any): a relative contraindication, a caution, or
    advice on an antithrombotic drug. Advice for the clinician, never an order to stop a drug."""

    intervention: str | None = Field(None, description="The intervention it applies to; None: all candidates.")
    kind: Literal["relative_contraindication", "caution", "antithrombotic"] = Field(
        description="relative_contraindication (proceed only after weighing it), caution, or antithrombotic "
        "(hold and restart advice for a medication, from the ASRA tables)."
    )
    text: str = Field(description="The advice, composed from the ruleset's message catalogue.")
    medication: str | None = Field(None, description="For antithrombotic advice: the medication's code.")
    bleeding_risk: Literal["low", "intermediate", "high"] | None = Field(
        None, description="For antithrombotic advice: the procedure's ASRA bleeding-risk category."
    )
    requires_prescriber_approval: bool = Field(
        False, description="Any change to the drug needs its prescriber's approval (e.g. secondary prevention)."
    )
    basis: Basis = Field(description="The rule behind the precaution.")


class Candidate(_Out):
    """An intervention whose criteria the patient meets now, with the precautions that apply to it."""

    intervention: str = Field(description="The intervention's code in the ruleset's catalogue, e.g. 'facet_rfa'.")
    name: str = Field(description="The intervention's display name.")
    kind: Literal["diagnostic", "therapeutic", "implant"] = Field(description="What the intervention is for.")
    cpt: list[str] = Field(description="CPT codes for the intervention, where they exist (may be empty).")
    evidence_status: Literal["standard", "payer_dependent", "investigational"] = Field(
        description="Whether the intervention is standard care, covered by some payers only, or investigational."
    )
    target: Target = Field(description="Region, side and levels, from the complaint the rule matched.")
    image_guidance: list[str] = Field(
        description="The image guidance the catalogue allows, e.g. ['fluoroscopy', 'ct']."
    )
    bleeding_risk: Literal["low", "intermediate", "high"] = Field(
        description="The procedure's ASRA bleeding-risk category (drives antithrombotic advice)."
    )
    rationale: str = Field(description="Why, in the rule's words, quoting the patient's own values.")
    evidence: str = Field(description="Strength and quality of the evidence, as the rule grades it.")
    basis: Basis = Field(description="The rule that proposed the candidate, its criteria and sources.")
    precautions: list[Precaution] = Field(
        default_factory=list,
        description="Precautions for this candidate (relative contraindications, cautions, drugs).",
    )
    unresolved_checks: list[str] = Field(
        default_factory=list, description="Safety checks that missing data left undecided for this candidate."
    )


class Exclusion(_Out):
    """An intervention ruled out, and why: an absolute contraindication, a red flag, or an unmet criterion."""

    intervention: str = Field(description="The intervention's code in the ruleset's catalogue.")
    name: str = Field(description="The intervention's display name.")
    reason: str = Field(description="Why it is excluded, quoting the patient's values.")
    kind: Literal["absolute_contraindication", "red_flag", "unmet_criterion"] = Field(
        description="What excludes it: an absolute contraindication, a red flag (every elective intervention), "
        "or a criterion the patient does not meet."
    )
    was_candidate: bool = Field(description="A rule proposed it before a safety rule excluded it.")
    basis: Basis = Field(description="The rule that excluded it.")


class Alert(_Out):
    """Something the clinician must see: a red flag, a safety finding, a data-quality warning."""

    code: str = Field(description="A stable code, e.g. 'red_flag.cauda_equina'.")
    severity: Literal["critical", "warning", "info"] = Field(
        description="critical: act now (red flags); warning: needs attention; info: for the record."
    )
    message: str = Field(description="The alert's text, composed from the ruleset's message catalogue.")
    basis: Basis = Field(description="The rule that raised it.")


class Referral(_Out):
    """One referral per target: the reasons of every rule that refers there, merged (one per line, the most
    urgent first), at the highest urgency any of them asks for (to a service in the referral catalogue)."""

    to: str = Field(description="The referral target's code, e.g. 'emergency_department', 'physical_therapy'.")
    name: str = Field(description="The referral target's display name.")
    urgency: Urgency = Field(description="emergency, urgent, soon or routine: the highest any rule asks for.")
    reason: str = Field(description="Why, quoting the patient's values: one line per reason, the most urgent first.")
    basis: Basis = Field(description="The rule behind the most urgent reason.")
    rules: list[str] = Field(default_factory=list, description="Every rule (id@version) that refers to this target.")


class DeferredReferral(_Out):
    """An elective referral held back while a red flag stands (criteria §11.5: red flags short-circuit the
    ruleset). It is listed, never dropped: act on it once the red flag has been assessed and cleared."""

    referral: Referral = Field(description="The referral as it would stand without the red flag.")
    reason: str = Field(description="Why it is deferred, naming the red flag.")
    basis: Basis = Field(description="The red-flag rule that deferred it.")


class MissingData(_Out):
    """A piece of the patient record a rule needed and did not find. Never read as normal: the rules that
    waited for it drew no conclusion, and a safety rule among them is flagged."""

    field: str = Field(description="The patient field, e.g. 'pain.duration_weeks'.")
    item: str = Field(description="Which item of the patient record, e.g. 'pain[region=lumbar, character=axial]'.")
    needed_by: list[str] = Field(description="Rules (id@version) that could not decide without it.")
    criteria: list[str] = Field(description="The criterion ids of those rules.")
    safety: bool = Field(description="A safety rule (exclusion, alert, red flag) is among those waiting for it.")


class BoundFact(_Out):
    """A fact a rule matched, under the rule's alias for it, with the values the rule could read."""

    alias: str = Field(description="The rule's name for the fact in its `when` clause, e.g. 'pain'.")
    fact: str = Field(description="The fact's label.")
    values: Scalars = Field(
        description="The fact's attributes (dates also as days_since and months_since before as_of)."
    )


class TraceEntry(_Out):
    """One rule that matched: it fired, or an ``unless`` clause blocked it."""

    rule: str = Field(description="The rule, as id@version.")
    stratum: int = Field(description="The evaluation stratum it ran in (derivations run before what reads them).")
    status: Literal["fired", "blocked"] = Field(description="fired, or blocked by an unless clause.")
    blocked_by: list[str] = Field(default_factory=list, description="unless clauses (by index) that matched.")
    bindings: list[BoundFact] = Field(description="The facts the rule matched.")


class DefaultApplied(_Out):
    """A parameter default that no source states as one number (tagged ``default_basis`` in the catalogue),
    read by the conditions of a rule that fired: the default decided that rule's conclusions."""

    parameter: str = Field(description="The parameter, as named in the parameter catalogue.")
    value: int | float = Field(description="Its default, the value in force.")
    basis: Literal["conservative_default", "common_practice"] = Field(
        description="conservative_default (safety rule: the cautious end of published practice) or common_practice "
        "(pathway rule: the value payers or societies commonly use)."
    )
    source: str = Field(description="Sources-catalogue id of the value's basis.")
    verification: str = Field(description="Verification tag of the value in that source.")
    rule: str = Field(description="Rule id@version whose conditions read it.")
    decided: list[str] = Field(
        description="What the rule concluded, as 'kind:code' (e.g. 'exclude:genicular_rfa', 'alert:red_flag.x')."
    )


class Provenance(_Out):
    """What produced the assessment: ruleset, library, profile, parameters, backend and dates. Enough to
    reproduce it byte for byte (``evaluated_at`` aside)."""

    ruleset_id: str = Field(description="The ruleset's id, from its manifest.")
    ruleset_version: str = Field(description="The ruleset's semantic version.")
    ruleset_sha256: str = Field(description="The ruleset's content hash (rules, catalogues, parameters, messages).")
    library_version: str = Field(description="The ipm-cds version that evaluated.")
    profile: str = Field(description="The profile in force, e.g. 'cms_lcd' or 'society_consensus'.")
    parameter_overrides: dict[str, int | float] = Field(description="Parameters given a value by the caller.")
    parameters: Numbers = Field(description="Every parameter value in force.")
    backend: Literal["durable", "python"] = Field(description="The rule engine backend that evaluated.")
    backend_auto: bool = Field(
        False,
        description="True when backend='auto' (the default) chose it: durable-rules where it is installed and "
        "importable, the python backend otherwise. Both give identical assessments.",
    )
    as_of: date = Field(description="The date the evaluation was made for (durations and ages count to it).")
    evaluated_at: datetime | None = Field(None, description="Wall-clock time; the only non-deterministic field.")
    rules_active: int = Field(description="How many rules ran.")
    rules_inactive: dict[str, str] = Field(description="Rules that did not run, and why.")
    defaults_applied: list[DefaultApplied] = Field(
        default_factory=list,
        description="Tagged parameter defaults (conservative or common-practice values, no single published "
        "number) that decided an outcome: the rules whose conditions read them fired.",
    )


class SafetyJudgement(_Out):
    """One safety judgement on a requested procedure: what a proposed candidate of the same intervention and
    target would carry (an exclusion, a precaution, a hold), and the red flags, alerts and referrals about it."""

    kind: Literal[
        "red_flag",
        "absolute_contraindication",
        "unmet_criterion",
        "relative_contraindication",
        "caution",
        "antithrombotic",
        "alert",
        "referral",
    ] = Field(description="What kind of judgement: an exclusion's kind, a precaution's, an alert or a referral.")
    blocking: bool = Field(description="It stands against doing the procedure now (a red flag, an absolute one).")
    text: str = Field(description="The judgement in words, as the rule (or the message catalogue) writes it.")
    medication: str | None = Field(None, description="The agent of an antithrombotic judgement.")
    bleeding_risk: Literal["low", "intermediate", "high"] | None = Field(
        None, description="The ASRA 2018 bleeding-risk category an antithrombotic judgement is for."
    )
    requires_prescriber_approval: bool = Field(
        False, description="Any change to the medication needs the prescriber's approval."
    )
    basis: Basis = Field(description="The rule, criteria and sources behind it.")


class VerdictReason(_Out):
    """Why a verdict is what it is: the criterion and the rule, in words."""

    text: str = Field(description="The reason in words (a failing condition quotes the patient's value).")
    basis: Basis = Field(description="The rule, criteria and sources behind it.")


class RequestedVerdict(_Out):
    """The verdict on one requested, planned or scheduled procedure (``PatientCase.requested``)."""

    order: str | None = Field(description="The order's identifier, when the request has one.")
    intervention: str = Field(description="Intervention code of the catalogue.")
    name: str = Field(description="The intervention's display name.")
    status: Literal["requested", "planned", "scheduled"] = Field(description="Where the order stands.")
    target: Target = Field(description="Region, side and levels of the request.")
    approach: str | None = Field(None, description="The requested approach, when given.")
    guidance: str | None = Field(None, description="The planned image guidance, when given.")
    planned_date: date | None = Field(None, description="The planned date, when given.")
    steroid_agent: str | None = Field(None, description="The corticosteroid to be injected, when given.")
    steroid_dose_mg: float | None = Field(None, description="Its dose in mg, when given.")
    bleeding_risk: Literal["low", "intermediate", "high"] = Field(
        description="ASRA 2018 bleeding-risk category of the intervention at this region."
    )
    verdict: Literal["appropriate", "not_appropriate", "cannot_tell"] = Field(
        description="appropriate now; not appropriate (the criterion and rule in reasons); cannot tell yet (missing)."
    )
    summary: str = Field(description="The verdict in one sentence, from the message catalogue.")
    proposed: bool = Field(description="A rule of the ruleset proposes this intervention for this target.")
    indication: Basis | None = Field(None, description="The rule that proposes it for this target, when one does.")
    reasons: list[VerdictReason] = Field(
        default_factory=list, description="Why not appropriate: the judgements against it or the unmet indication."
    )
    safety: list[SafetyJudgement] = Field(
        default_factory=list, description="Every safety judgement that applies to it, proposed or not."
    )
    missing: list[MissingData] = Field(default_factory=list, description="What must be recorded to decide.")


class ScopeEntry(_Out):
    """An intervention the presentation brings into scope, and where it stands: why-not in the assessment."""

    family: str = Field(description="The family of interventions, as the scope rule names it (facet, esi, ...).")
    intervention: str = Field(description="Intervention code of the catalogue.")
    name: str = Field(description="The intervention's display name.")
    region: str | None = Field(description="The region the presentation brings it into scope for.")
    status: Literal["candidate", "excluded", "not_indicated", "not_decidable"] = Field(
        description="A candidate, excluded (why in reasons), not indicated (the rules and criteria not met) or not "
        "decidable yet (the missing data)."
    )
    in_scope_by: Basis = Field(description="The scope rule that brought it into scope.")
    reasons: list[VerdictReason] = Field(default_factory=list, description="Why it is not a candidate.")
    missing: list[str] = Field(default_factory=list, description="Patient fields that would decide it.")


class Assessment(_Out):
    """What ipm-cds concludes for one patient on one date: decision support for a clinician, never an order.

    Safety comes first by construction: a red flag excludes every elective candidate and defers elective
    referrals; an absolute contraindication moves a candidate to ``excluded``; missing data is listed in
    ``missing_data``, never read as normal. Every conclusion names its rule (id@version) and criteria.
    Lists are sorted, so the same input, ruleset and ``as_of`` give byte-identical JSON (:meth:`to_json`).
    Immutable and hashable; equal assessments hash equal.
    """

    patient_id: str | None = Field(description="The patient document's id, if it had one (no rule reads it).")
    as_of: date = Field(description="The evaluation date.")
    candidates: list[Candidate] = Field(description="Interventions whose criteria the patient meets now.")
    excluded: list[Exclusion] = Field(description="Interventions ruled out, with the reason and the rule.")
    precautions: list[Precaution] = Field(description="Precautions that apply to the patient as a whole.")
    alerts: list[Alert] = Field(description="Red flags and other findings the clinician must see.")
    referrals: list[Referral] = Field(description="Referrals the criteria call for now.")
    deferred_referrals: list[DeferredReferral] = Field(
        default_factory=list,
        description="Elective referrals (e.g. physical therapy) deferred by a red flag, with the red flag's rule.",
    )
    missing_data: list[MissingData] = Field(description="Data rules needed and did not find; never read as normal.")
    requested: list[RequestedVerdict] = Field(
        default_factory=list, description="A verdict per requested procedure, with its safety judgements."
    )
    scope: list[ScopeEntry] = Field(
        default_factory=list,
        description="Each intervention the presentation brings into scope: candidate, excluded (why), not indicated "
        "(the criterion not met) or not decidable yet (the missing data).",
    )
    trace: list[TraceEntry] = Field(description="Every rule that matched, fired or blocked, with the facts it bound.")
    provenance: Provenance = Field(description="What produced the assessment, to reproduce it.")
    disclaimer: str = Field(description="The decision-support disclaimer to show with the assessment.")

    def to_json(self, *, indent: int | None = 2, timestamp: bool = True, sort_keys: bool = True) -> str:
        """Stable JSON. ``timestamp=False`` drops ``evaluated_at`` for byte-for-byte comparison.

        Keys are sorted by default. ``sort_keys=False`` writes each object's fields in the model's order (and
        a mapping's keys in the order the assessment holds them), with pydantic's own serializer: the same
        content, about six times faster, which is what ``ipm-cds batch`` writes. Both are deterministic: one
        assessment always gives the same text."""
        if not sort_keys:
            exclude = None if timestamp else {"provenance": {"evaluated_at"}}
            return self.model_dump_json(indent=indent, exclude=exclude)
        import json

        data = self.model_dump(mode="json")
        if not timestamp:
            data["provenance"].pop("evaluated_at", None)
        # (model_dump's output has no cycles: the encoder need not look for them, about 12 % faster)
        return json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False, check_circular=False)

    def candidate(self, intervention: str) -> Candidate | None:
        """The candidate for ``intervention`` (its catalogue code), or None when it is not a candidate."""
        return next((c for c in self.candidates if c.intervention == intervention), None)

    def codes(self) -> dict[str, list[str]]:
        """A compact summary: codes of candidates, exclusions, referrals (active and deferred) and alerts."""
        return {
            "candidates": sorted({c.intervention for c in self.candidates}),
            "excluded": sorted({e.intervention for e in self.excluded}),
            "referrals": sorted({r.to for r in self.referrals}),
            "deferred_referrals": sorted({d.referral.to for d in self.deferred_referrals}),
            "alerts": sorted({a.code for a in self.alerts}),
        }


_M = TypeVar("_M", bound=_Out)
_Defaults = tuple[tuple[str, ...], frozenset[str], tuple[tuple[str, Callable[[], Any]], ...]]
_DEFAULTS: dict[type[_Out], _Defaults] = {}
_new = object.__new__
# pydantic's own slots of a model instance, set through their descriptors (object.__setattr__ looks each one up
# on every call: about 30 % of building a small model)
_SLOTS = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
if tuple(BaseModel.__slots__) != _SLOTS:  # pragma: no cover - a pydantic that keeps more: every one must be set
    raise TypeError(f"pydantic's models have the slots {BaseModel.__slots__}; _filled sets {_SLOTS}")
_SET_DICT, _SET_FIELDS_SET, _SET_EXTRA, _SET_PRIVATE = (vars(BaseModel)[name].__set__ for name in _SLOTS)


def _same(value: Any) -> Any:
    return value


def _defaults(cls: type[_Out]) -> _Defaults:
    fields = cls.model_fields
    made: list[tuple[str, Callable[[], Any]]] = []
    for name, info in fields.items():
        if info.is_required():
            continue
        if info.default_factory is not None:
            made.append((name, info.default_factory))  # type: ignore[arg-type]  # no factory takes data here
        else:
            made.append((name, functools.partial(_same, info.default)))
    entry = (tuple(fields), frozenset(fields), tuple(made))
    _DEFAULTS[cls] = entry
    return entry


def trusted(cls: type[_M], /, **values: Any) -> _M:
    """An output model built from values that already have its field types, without validating them.

    For the resolver, which builds an assessment of dozens of models from data that was validated on the
    way in (the patient, the compiled ruleset): pydantic's validation of those models cost about half of
    resolving, and ``model_construct`` is no faster in pydantic 2. The result is what the validating
    constructor would build from the same values (defaults filled, the fields given marked as set); a
    wrong value is *not* caught here, so only code whose values are correct by construction may use it.
    The identity check (``benchmarks/identity.py``) and the round-trip tests compare the JSON.
    """
    names, every, defaults = _DEFAULTS.get(cls) or _defaults(cls)
    if tuple(values) == names:  # every field, in the model's order: the values serve as they are
        given = set(every)
    else:
        given = set(values)
        if len(values) != len(names):
            for name, make in defaults:
                if name not in values:
                    values[name] = make()
            if len(values) != len(names):
                unknown = sorted(given - set(names))
                raise TypeError(f"{cls.__name__}: unknown or missing fields {unknown or sorted(set(names) - given)}")
        if tuple(values) != names:  # (the defaults of trailing fields leave them in order)
            values = {name: values[name] for name in names}
    return _filled(cls, values, given)


def _filled(cls: type[_M], values: dict[str, Any], given: set[str]) -> _M:
    """A model of ``cls`` holding ``values`` (every field, in order), the fields in ``given`` marked as set:
    what pydantic's constructor leaves on the instance, without its validation."""
    obj = _new(cls)
    _SET_DICT(obj, values)
    _SET_FIELDS_SET(obj, given)
    _SET_EXTRA(obj, None)
    _SET_PRIVATE(obj, None)
    return obj


# The resolver's most frequent models (per assessment: a trace entry per firing, a bound fact per fact a rule
# matched, a basis per rule), built as trusted() builds them from every field, without its per-call checks
# (about a tenth of the trace's cost). The field names are checked here, once: a field added to one of these
# models fails at import until its builder has it.
# The next most frequent (several per assessment each) have builders too; those given fewer than every field
# fill the rest with the defaults checked here (what trusted() would fill, the same fields marked as set).
for _cls, _names, _filled_in in (
    (TraceEntry, ("rule", "stratum", "status", "blocked_by", "bindings"), {}),
    (BoundFact, ("alias", "fact", "values"), {}),
    (Basis, ("rule", "criteria", "sources"), {}),
    (Alert, ("code", "severity", "message", "basis"), {}),
    (Referral, ("to", "name", "urgency", "reason", "basis", "rules"), {}),
    (Exclusion, ("intervention", "name", "reason", "kind", "was_candidate", "basis"), {}),
    (MissingData, ("field", "item", "needed_by", "criteria", "safety"), {}),
    (VerdictReason, ("text", "basis"), {}),
    (
        Precaution,
        ("intervention", "kind", "text", "medication", "bleeding_risk", "requires_prescriber_approval", "basis"),
        {"medication": None, "bleeding_risk": None, "requires_prescriber_approval": False},
    ),
    (
        ScopeEntry,
        ("family", "intervention", "name", "region", "status", "in_scope_by", "reasons", "missing"),
        {"reasons": [], "missing": []},
    ),
):
    if tuple(_cls.model_fields) != _names:
        raise TypeError(f"{_cls.__name__} has the fields {tuple(_cls.model_fields)}, its builder {_names}")
    for _name, _default in _filled_in.items():
        _info = _cls.model_fields[_name]
        _made = _info.default_factory() if _info.default_factory is not None else _info.default  # type: ignore[call-arg]
        if _info.is_required() or _made != _default:
            raise TypeError(f"{_cls.__name__}.{_name}: its builder fills in {_default!r}, the model {_made!r}")


def trusted_trace_entry(
    rule: str, stratum: int, status: Literal["fired", "blocked"], blocked_by: list[str], bindings: list[BoundFact]
) -> TraceEntry:
    """``trusted(TraceEntry, ...)`` given every field, in order."""
    return _filled(
        TraceEntry,
        {"rule": rule, "stratum": stratum, "status": status, "blocked_by": blocked_by, "bindings": bindings},
        {"rule", "stratum", "status", "blocked_by", "bindings"},
    )


def trusted_bound_fact(alias: str, fact: str, values: dict[str, str | int | float | bool]) -> BoundFact:
    """``trusted(BoundFact, ...)`` given every field, in order."""
    return _filled(BoundFact, {"alias": alias, "fact": fact, "values": values}, {"alias", "fact", "values"})


def trusted_basis(rule: str, criteria: list[str], sources: list[Citation]) -> Basis:
    """``trusted(Basis, ...)`` given every field, in order."""
    return _filled(Basis, {"rule": rule, "criteria": criteria, "sources": sources}, {"rule", "criteria", "sources"})


def trusted_alert(code: str, severity: Literal["critical", "warning", "info"], message: str, basis: Basis) -> Alert:
    """``trusted(Alert, ...)`` given every field, in order."""
    return _filled(
        Alert,
        {"code": code, "severity": severity, "message": message, "basis": basis},
        {"code", "severity", "message", "basis"},
    )


def trusted_referral(to: str, name: str, urgency: Urgency, reason: str, basis: Basis, rules: list[str]) -> Referral:
    """``trusted(Referral, ...)`` given every field, in order."""
    return _filled(
        Referral,
        {"to": to, "name": name, "urgency": urgency, "reason": reason, "basis": basis, "rules": rules},
        {"to", "name", "urgency", "reason", "basis", "rules"},
    )


def trusted_exclusion(
    intervention: str,
    name: str,
    reason: str,
    kind: Literal["absolute_contraindication", "red_flag", "unmet_criterion"],
    was_candidate: bool,
    basis: Basis,
) -> Exclusion:
    """``trusted(Exclusion, ...)`` given every field, in order."""
    return _filled(
        Exclusion,
        {
            "intervention": intervention,
            "name": name,
            "reason": reason,
            "kind": kind,
            "was_candidate": was_candidate,
            "basis": basis,
        },
        {"intervention", "name", "reason", "kind", "was_candidate", "basis"},
    )


def trusted_missing_data(field: str, item: str, needed_by: list[str], criteria: list[str], safety: bool) -> MissingData:
    """``trusted(MissingData, ...)`` given every field, in order."""
    return _filled(
        MissingData,
        {"field": field, "item": item, "needed_by": needed_by, "criteria": criteria, "safety": safety},
        {"field", "item", "needed_by", "criteria", "safety"},
    )


def trusted_verdict_reason(text: str, basis: Basis) -> VerdictReason:
    """``trusted(VerdictReason, ...)`` given every field, in order."""
    return _filled(VerdictReason, {"text": text, "basis": basis}, {"text", "basis"})


def trusted_precaution(
    intervention: str | None, kind: Literal["relative_contraindication", "caution"], text: str, basis: Basis
) -> Precaution:
    """``trusted(Precaution, intervention=..., kind=..., text=..., basis=...)``: no medication (the defaults)."""
    return _filled(
        Precaution,
        {
            "intervention": intervention,
            "kind": kind,
            "text": text,
            "medication": None,
            "bleeding_risk": None,
            "requires_prescriber_approval": False,
            "basis": basis,
        },
        {"intervention", "kind", "text", "basis"},
    )


def trusted_scope_entry(
    family: str,
    intervention: str,
    name: str,
    region: str | None,
    status: Literal["candidate", "excluded", "not_indicated", "not_decidable"],
    in_scope_by: Basis,
    reasons: list[VerdictReason] | None = None,
    missing: list[str] | None = None,
) -> ScopeEntry:
    """``trusted(ScopeEntry, ...)`` given the first six fields, and ``reasons`` or ``missing`` when not None
    (None: not given, the default, an empty list of the entry's own)."""
    given = {"family", "intervention", "name", "region", "status", "in_scope_by"}
    if reasons is None:
        reasons = []
    else:
        given.add("reasons")
    if missing is None:
        missing = []
    else:
        given.add("missing")
    return _filled(
        ScopeEntry,
        {
            "family": family,
            "intervention": intervention,
            "name": name,
            "region": region,
            "status": status,
            "in_scope_by": in_scope_by,
            "reasons": reasons,
            "missing": missing,
        },
        given,
    )


def trusted_copy(model: _M, update: dict[str, Any]) -> _M:
    """``model.model_copy(update=update)`` for an output model given values of its field types: the same new
    instance (its values with those of ``update`` in their place, the fields updated marked as set; an output
    model holds no extra or private values), without pydantic's copy of each slot through ``copy.copy``."""
    values = model.__dict__.copy()
    values.update(update)
    given = set(model.__pydantic_fields_set__)
    given.update(update)
    return _filled(type(model), values, given)
