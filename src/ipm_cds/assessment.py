"""The Assessment: what ipm-cds returns for one patient. Decision support for a clinician, never an order.

Every candidate, exclusion, precaution, alert and referral names the rule (``id@version``) and the
criterion ids behind it, and carries the citations of its sources. Lists are sorted, so the same input,
ruleset and ``as_of`` give byte-identical JSON (``provenance.evaluated_at`` aside).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Urgency = Literal["emergency", "urgent", "soon", "routine"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Citation(_Out):
    id: str
    citation: str
    url: str | None = None
    year: int


class Basis(_Out):
    """Why a conclusion stands: the rule that drew it, its criteria and sources."""

    rule: str = Field(description="Rule id@version.")
    criteria: list[str]
    sources: list[Citation]


class Target(_Out):
    region: str | None = None
    side: str | None = None
    levels: str | None = None


class Precaution(_Out):
    intervention: str | None = Field(None, description="The intervention it applies to; None: all candidates.")
    kind: Literal["relative_contraindication", "caution", "antithrombotic"]
    text: str
    medication: str | None = None
    bleeding_risk: Literal["low", "intermediate", "high"] | None = None
    requires_prescriber_approval: bool = False
    basis: Basis


class Candidate(_Out):
    intervention: str
    name: str
    kind: Literal["diagnostic", "therapeutic", "implant"]
    cpt: list[str]
    evidence_status: Literal["standard", "payer_dependent", "investigational"]
    target: Target
    image_guidance: list[str]
    bleeding_risk: Literal["low", "intermediate", "high"]
    rationale: str
    evidence: str = Field(description="Strength and quality of the evidence, as the rule grades it.")
    basis: Basis
    precautions: list[Precaution] = Field(default_factory=list)
    unresolved_checks: list[str] = Field(
        default_factory=list, description="Safety checks that missing data left undecided for this candidate."
    )


class Exclusion(_Out):
    intervention: str
    name: str
    reason: str
    kind: Literal["absolute_contraindication", "red_flag", "unmet_criterion"]
    was_candidate: bool = Field(description="A rule proposed it before a safety rule excluded it.")
    basis: Basis


class Alert(_Out):
    code: str
    severity: Literal["critical", "warning", "info"]
    message: str
    basis: Basis


class Referral(_Out):
    """One referral per target: the reasons of every rule that refers there, merged (one per line, the most
    urgent first), at the highest urgency any of them asks for."""

    to: str
    name: str
    urgency: Urgency
    reason: str
    basis: Basis = Field(description="The rule behind the most urgent reason.")
    rules: list[str] = Field(default_factory=list, description="Every rule (id@version) that refers to this target.")


class DeferredReferral(_Out):
    """An elective referral held back while a red flag stands (criteria §11.5: red flags short-circuit the
    ruleset). It is listed, never dropped: act on it once the red flag has been assessed and cleared."""

    referral: Referral
    reason: str
    basis: Basis = Field(description="The red-flag rule that deferred it.")


class MissingData(_Out):
    field: str = Field(description="The patient field, e.g. 'pain.duration_weeks'.")
    item: str = Field(description="Which item of the patient record, e.g. 'pain[region=lumbar, character=axial]'.")
    needed_by: list[str] = Field(description="Rules (id@version) that could not decide without it.")
    criteria: list[str]
    safety: bool = Field(description="A safety rule (exclusion, alert, red flag) is among those waiting for it.")


class BoundFact(_Out):
    alias: str
    fact: str = Field(description="The fact's label.")
    values: dict[str, str | int | float | bool]


class TraceEntry(_Out):
    rule: str
    stratum: int
    status: Literal["fired", "blocked"]
    blocked_by: list[str] = Field(default_factory=list, description="unless clauses (by index) that matched.")
    bindings: list[BoundFact]


class DefaultApplied(_Out):
    """A parameter default that no source states as one number (tagged ``default_basis`` in the catalogue),
    read by the conditions of a rule that fired: the default decided that rule's conclusions."""

    parameter: str
    value: int | float
    basis: Literal["conservative_default", "common_practice"]
    source: str = Field(description="Sources-catalogue id of the value's basis.")
    verification: str = Field(description="Verification tag of the value in that source.")
    rule: str = Field(description="Rule id@version whose conditions read it.")
    decided: list[str] = Field(
        description="What the rule concluded, as 'kind:code' (e.g. 'exclude:genicular_rfa', 'alert:red_flag.x')."
    )


class Provenance(_Out):
    ruleset_id: str
    ruleset_version: str
    ruleset_sha256: str
    library_version: str
    profile: str
    parameter_overrides: dict[str, int | float]
    parameters: dict[str, int | float] = Field(description="Every parameter value in force.")
    backend: Literal["durable", "python"]
    as_of: date
    evaluated_at: datetime | None = Field(None, description="Wall-clock time; the only non-deterministic field.")
    rules_active: int
    rules_inactive: dict[str, str] = Field(description="Rules that did not run, and why.")
    defaults_applied: list[DefaultApplied] = Field(
        default_factory=list,
        description="Tagged parameter defaults (conservative or common-practice values, no single published "
        "number) that decided an outcome: the rules whose conditions read them fired.",
    )


class Assessment(_Out):
    patient_id: str | None
    as_of: date
    candidates: list[Candidate]
    excluded: list[Exclusion]
    precautions: list[Precaution] = Field(description="Precautions that apply to the patient as a whole.")
    alerts: list[Alert]
    referrals: list[Referral]
    deferred_referrals: list[DeferredReferral] = Field(
        default_factory=list,
        description="Elective referrals (e.g. physical therapy) deferred by a red flag, with the red flag's rule.",
    )
    missing_data: list[MissingData]
    trace: list[TraceEntry]
    provenance: Provenance
    disclaimer: str

    def to_json(self, *, indent: int | None = 2, timestamp: bool = True) -> str:
        """Stable, sorted JSON. ``timestamp=False`` drops ``evaluated_at`` for byte-for-byte comparison."""
        import json

        data = self.model_dump(mode="json")
        if not timestamp:
            data["provenance"].pop("evaluated_at", None)
        return json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False)

    def candidate(self, intervention: str) -> Candidate | None:
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
_Defaults = tuple[tuple[str, ...], tuple[tuple[str, Callable[[], Any]], ...]]
_DEFAULTS: dict[type[_Out], _Defaults] = {}
_new = object.__new__
_set = object.__setattr__


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
    entry = (tuple(fields), tuple(made))
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
    names, defaults = _DEFAULTS.get(cls) or _defaults(cls)
    given = set(values)
    if len(values) != len(names):
        for name, make in defaults:
            if name not in values:
                values[name] = make()
        if len(values) != len(names):
            unknown = sorted(given - set(names))
            raise TypeError(f"{cls.__name__}: unknown or missing fields {unknown or sorted(set(names) - given)}")
    obj = _new(cls)
    _set(obj, "__dict__", {name: values[name] for name in names})
    _set(obj, "__pydantic_fields_set__", given)
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj
