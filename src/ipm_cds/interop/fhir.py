"""FHIR R4 in: a Bundle, or a CDS Hooks prefetch dictionary, to a :class:`~ipm_cds.PatientCase`.

Every resource is validated with the ``fhir.resources`` R4B models (FHIR 4.3, wire-compatible with R4
for every resource read here) before anything is read from it: a resource that is not valid FHIR is a
:class:`FhirInputError` naming the entry, the resource and the element. The codes are looked up in the
data files of ``maps/`` (:mod:`ipm_cds.interop.maps`); what cannot be mapped is reported in
:attr:`FhirMapping.unmapped` (resource, code and reason), never dropped silently. The patient document
that results is validated like any other (:func:`ipm_cds.parse_patient`); a value the patient model
refuses (an NRS of 11) is a :class:`FhirInputError` naming the resource it came from.

What is read, and how (docs/fhir.md has the full table):

- ``Patient``: ``birthDate`` (a full date), ``gender``.
- ``Condition``: ICD-10-CM / SNOMED CT / local codes to ``conditions``; pain diagnoses (M54.5x ...) or
  the local pain-character code with a body-region ``bodySite`` to ``pain``; local red-flag codes to
  ``red_flags``. ``clinicalStatus`` gives ``active``; refuted or entered-in-error conditions are skipped.
- ``Observation`` by code (LOINC where confirmed, else the local observation system): pain scores
  (linked to their pain Condition by ``focus``), BMI, smoking and pregnancy status, PHQ-9 (item 9 as a
  component, a linked member or a same-day Observation), GAD-7 and the other instruments, labs with
  UCUM unit conversion, conservative care, psychological evaluation, procedure relief (linked to its
  Procedure by ``partOf`` or ``focus``), examination findings, imaging findings (modality from the
  ImagingStudy or DiagnosticReport they belong to) and red flags.
- ``MedicationRequest`` / ``MedicationStatement`` (active or on hold) by RxNorm or the local medication
  code, with the daily dose from the ``daily-dose`` extension or computed from one dosage (dose x
  frequency per day; a transdermal rate in ug/h).
- ``Procedure`` (completed) by CPT or the local procedure-kind code, with date, region, levels, side
  and purpose.
- ``AllergyIntolerance`` (not refuted, not resolved) by RxNorm or the local allergy-substance code.
- ``DiagnosticReport`` and ``ImagingStudy`` as the context of the imaging findings they hold.

A long record is read, not refused: beyond the patient model's cap on a list, the most recent labs,
procedures, screenings, examination and imaging findings of each kind are kept and the older ones
reported (``older_left_out``, see :data:`KEEP_RECENT`); conditions, red flags and allergies collapse to
distinct entries (``duplicate``).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import PatientDataError, Problem
from ..patient import MAX_ITEMS, PatientCase, parse_patient
from .maps import RULESET_VOCABULARIES, VOCABULARIES, Maps, ObservationEntry, load_maps, normalise_icd10

if TYPE_CHECKING:
    from ..ruleset.loader import Ruleset

_T = TypeVar("_T")

__all__ = [
    "FhirInputError",
    "FhirMapping",
    "OrderedIntervention",
    "Unmapped",
    "ordered_interventions",
    "prefetch_from_bundle",
    "prefetch_templates",
    "read_bundle",
    "read_fhir",
    "read_prefetch",
]

UnmappedKind = Literal[
    "unsupported_resource",  # a resource type ipm-cds does not read (Encounter, Practitioner, ...)
    "unknown_code",  # no code of the resource is in the maps
    "ambiguous_code",  # the codes map to more than one patient-model code
    "not_current",  # status says it does not apply now (stopped, refuted, entered in error, resolved ...)
    "incomplete",  # mapped code, but something the patient model needs is missing (date, region, link ...)
    "unknown_unit",  # a quantity in a unit the map does not convert
    "superseded",  # an older value of a single-valued field, replaced by a newer one
    "partial",  # the resource was mapped, but one of its elements was not (e.g. a dose not computable)
    "older_left_out",  # an older lab, procedure, screen, exam or imaging finding beyond the list's cap
    "duplicate",  # the same condition, red flag or allergy as another resource, in a list beyond its cap
]

MAX_RESOURCES = 5000
"""Upper bound on the resources read from one input (keeps one request's work bounded)."""

KEEP_RECENT = MAX_ITEMS
"""Most items of one dated list the reader keeps (the patient model's cap on every list, 100).

A long record holds more: years of monthly INRs, weekly injections. For labs (by test), prior procedures
(by kind and region), screenings (by instrument), examination findings (by test) and imaging findings
(by finding), the reader keeps the most recent items of each kind and shares the cap out between kinds:
each kind keeps at least ``KEEP_RECENT // kinds`` of its most recent (20 per lab test when all five
are recorded), a kind with fewer keeps them all, and what they leave goes to the others. Every item
left out is reported (``older_left_out``, saying how many of that kind were left out and which are
read), never dropped silently; an undated item counts as older than every dated one."""


class FhirInputError(PatientDataError):
    """The FHIR input is not valid FHIR R4, mixes patients, or maps to an invalid patient document."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        super().__init__(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        self.message = f"invalid FHIR input: {first}" + (f" [and {more} more]" if more else "")
        self.args = (self.message,)


@dataclass(frozen=True, slots=True)
class Unmapped:
    """Something in the input that did not become part of the patient document, and why."""

    resource: str  # "Observation/obs-1" (or "entry[3]" when the resource has no id)
    kind: UnmappedKind
    reason: str
    code: str | None = None  # "system|code" of the code that could not be mapped, when there is one

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.resource}{code}: {self.kind}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        out = {"resource": self.resource, "kind": self.kind, "reason": self.reason}
        if self.code:
            out["code"] = self.code
        return out


@dataclass(frozen=True)
class FhirMapping:
    """The result of reading FHIR: the patient document, and what was not mapped."""

    patient: PatientCase
    unmapped: tuple[Unmapped, ...]
    sources: Mapping[str, str] = field(default_factory=dict)  # patient-model path -> resource reference
    patient_reference: str | None = None

    def report(self) -> str:
        """Every unmapped item, one per line."""
        return "\n".join(str(u) for u in self.unmapped)

    def resource_of(self, path: str) -> str | None:
        """The resource a patient-model path (``pain[0].nrs``) was read from: the longest known prefix."""
        best: str | None = None
        best_len = -1
        for prefix, ref in self.sources.items():
            if (path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")) and len(
                prefix
            ) > best_len:
                best, best_len = ref, len(prefix)
        return best


# -- reading the input ------------------------------------------------------------------------------


def read_fhir(
    data: Mapping[str, Any] | str | bytes, *, ruleset: Ruleset | None = None, patient_id: str | None = None
) -> FhirMapping:
    """A Bundle, a single resource, or a CDS Hooks prefetch dictionary (a mapping without resourceType)."""
    parsed = _json(data)
    if "resourceType" in parsed:
        return read_bundle(parsed, ruleset=ruleset, patient_id=patient_id)
    return read_prefetch(parsed, ruleset=ruleset, patient_id=patient_id)


def read_bundle(
    bundle: Mapping[str, Any] | str | bytes, *, ruleset: Ruleset | None = None, patient_id: str | None = None
) -> FhirMapping:
    """Read a FHIR R4 Bundle (any type; nested Bundles are read too) or a single resource.

    ``patient_id`` (a CDS Hooks ``context.patientId``) must then be the id of the Patient in the Bundle.
    ``ruleset`` checks mapped medication codes against its catalogue (unmapped when absent from it).
    """
    parsed = _json(bundle)
    reader = _Reader(load_maps(), ruleset, patient_id)
    reader.collect(parsed, "bundle")
    return reader.finish()


def read_prefetch(
    prefetch: Mapping[str, Any] | str | bytes, *, ruleset: Ruleset | None = None, patient_id: str | None = None
) -> FhirMapping:
    """Read a CDS Hooks prefetch dictionary: ``{key: resource or searchset Bundle or null}``.

    A ``null`` value (the client could not fetch it) contributes nothing; the caller decides whether that
    key was required (the service answers 412).
    """
    parsed = _json(prefetch)
    reader = _Reader(load_maps(), ruleset, patient_id)
    for key in sorted(parsed):
        value = parsed[key]
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise FhirInputError([Problem("expected a FHIR resource or Bundle, or null", field=f"prefetch.{key}")])
        reader.collect(value, f"prefetch.{key}")
    return reader.finish()


def _json(data: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FhirInputError([Problem(f"not JSON: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise FhirInputError([Problem("expected a JSON object")])
    return data


# -- helpers on validated resources (typed Any: fhir.resources models) -------------------------------


def _codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) of every coding of a CodeableConcept (or of a list of Codings)."""
    if concept is None:
        return []
    codings = concept if isinstance(concept, list) else (concept.coding or [])
    return [(str(c.system or ""), str(c.code)) for c in codings if c.code is not None]


def _code_text(codings: Sequence[tuple[str, str]]) -> str | None:
    return ", ".join(f"{s}|{c}" for s, c in codings) or None


def _to_date(value: Any) -> date | None:
    """A FHIR date/dateTime as a calendar date; a partial date (year or year-month) is None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return date.fromisoformat(value)
    return None


def _number(value: Decimal | int | float) -> int | float:
    """An integral value as int, anything else as float (the patient model decides what it accepts)."""
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


def _ref_key(reference: Any) -> str | None:
    return str(reference.reference) if reference is not None and reference.reference else None


def _shares(counts: Mapping[tuple[str, ...], int], cap: int) -> dict[tuple[str, ...], int]:
    """How many items each kind keeps so that together they keep at most ``cap``: every kind keeps
    all of its items or an even share of what the smaller kinds leave, whichever is fewer (max-min fair)."""
    if sum(counts.values()) <= cap:
        return dict(counts)
    shares: dict[tuple[str, ...], int] = {}
    remaining = cap
    pending = sorted(counts, key=lambda k: (counts[k], k))
    while pending:
        even = remaining // len(pending)
        smallest = pending[0]
        if counts[smallest] <= even:
            shares[smallest] = counts[smallest]
            remaining -= counts[smallest]
            pending.pop(0)
            continue
        extra = remaining - even * len(pending)
        for i, kind in enumerate(sorted(pending)):
            shares[kind] = even + (1 if i < extra else 0)
        break
    return shares


@dataclass
class _Value:
    value: Any
    when: date | None
    ref: str


@dataclass
class _Pain:
    ref: str
    region: str
    character: str
    laterality: str | None
    onset: date | None
    is_index: bool
    fields: dict[str, list[_Value]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class _Proc:
    ref: str
    doc: dict[str, Any]
    fields: dict[str, list[_Value]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class _Screen:
    ref: str
    instrument: str
    score: Any
    when: date | None
    links: set[str]
    item9: _Value | None = None
    distress: _Value | None = None


@dataclass
class _Pending:
    """An observation value that belongs to another item (a pain complaint, a procedure, a screen)."""

    ref: str
    target: str
    value: Any
    when: date | None
    links: set[str]
    code: str | None


_PAIN_FIELDS = {
    "pain.nrs": "nrs",
    "pain.odi_pct": "odi_pct",
    "pain.ndi": "ndi",
    "pain.worsening": "worsening",
    "pain.duration_weeks": "duration_weeks",
}
_DATED_LISTS = {"labs": "test", "exam": "test", "imaging": "finding"}  # list -> the field naming its kind
_UNDATED_LISTS = ("conditions", "red_flags", "allergies")  # collapsed to distinct entries beyond the cap
_SUBJECT_FIELDS = ("subject", "patient")
_CONDITION_INACTIVE = {"inactive", "remission", "resolved"}
_OBSERVATION_USABLE = {"final", "amended", "corrected", "preliminary"}
_MEDICATION_CURRENT = {"active", "on-hold"}
_DOSE_UNITS: dict[str, tuple[str, float]] = {
    "mg": ("mg", 1.0),
    "g": ("mg", 1000.0),
    "ug": ("mcg", 1.0),
    "mcg": ("mcg", 1.0),
    "ug/h": ("mcg_per_hour", 1.0),
    "[iU]": ("units", 1.0),
    "[IU]": ("units", 1.0),
    "U": ("units", 1.0),
}
_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0}
_PATCH_UNITS = {None, "", "{patch}", "patch", "{transdermal system}", "1"}


class _Reader:
    """Collects resources, validates them, maps them, and assembles the patient document."""

    def __init__(self, maps: Maps, ruleset: Ruleset | None, patient_id: str | None) -> None:
        from fhir.resources.R4B import get_fhir_model_class

        self._model_class = get_fhir_model_class
        self.maps = maps
        self.ruleset = ruleset
        self.patient_id = patient_id
        self.resources: list[tuple[str, Any]] = []  # (reference, validated model) in input order
        self.by_ref: dict[str, Any] = {}
        self.aliases: dict[str, str] = {}  # fullUrl -> reference
        self.problems: list[Problem] = []
        self.unmapped: list[Unmapped] = []
        self.used_as_context: set[str] = set()
        self.reports_of: dict[str, list[str]] = defaultdict(list)  # Observation -> DiagnosticReports listing it
        self.count = 0
        # outputs
        self.demographics: dict[str, list[_Value]] = defaultdict(list)
        self.care: dict[str, list[_Value]] = defaultdict(list)
        self.psych: dict[str, list[_Value]] = defaultdict(list)
        self.pains: dict[str, _Pain] = {}
        self.procs: dict[str, _Proc] = {}
        self.screens: list[_Screen] = []
        self.pending: list[_Pending] = []
        self.lists: dict[str, list[tuple[str, dict[str, Any], dict[str, str]]]] = defaultdict(list)
        self.patient_ref: str | None = None
        self.patient_doc: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------- collection

    def collect(self, data: Mapping[str, Any], where: str) -> None:
        rtype = data.get("resourceType")
        if not isinstance(rtype, str):
            self.problems.append(Problem("no resourceType: not a FHIR resource", field=where))
            self._raise()
            return
        if rtype == "Bundle":
            entries = data.get("entry", [])
            if not isinstance(entries, list):
                raise FhirInputError([Problem("Bundle.entry must be a list", field=where)])
            shell = {k: v for k, v in data.items() if k != "entry"}
            shell_entries = [
                {k: v for k, v in e.items() if k != "resource"} if isinstance(e, Mapping) else e for e in entries
            ]
            if shell_entries:
                shell["entry"] = shell_entries
            self._validate("Bundle", shell, where)
            self._raise()
            for i, entry in enumerate(entries):
                resource = entry.get("resource") if isinstance(entry, Mapping) else None
                if resource is None:
                    continue
                if not isinstance(resource, Mapping):
                    self.problems.append(Problem("entry.resource must be an object", field=f"{where}.entry[{i}]"))
                    continue
                full_url = entry.get("fullUrl")
                self._add(resource, f"{where}.entry[{i}]", full_url if isinstance(full_url, str) else None)
            self._raise()
            return
        self._add(data, where, None)
        self._raise()

    def _add(self, resource: Mapping[str, Any], where: str, full_url: str | None) -> None:
        rtype = resource.get("resourceType")
        if rtype == "Bundle":
            self.collect(resource, where)
            return
        self.count += 1
        if self.count > MAX_RESOURCES:
            raise FhirInputError([Problem(f"more than {MAX_RESOURCES} resources", field=where)])
        if not isinstance(rtype, str):
            self.problems.append(Problem("no resourceType: not a FHIR resource", field=where))
            return
        rid = resource.get("id")
        label = f"{rtype}/{rid}" if isinstance(rid, str) else where
        model = self._validate(rtype, resource, f"{where} ({label})" if label != where else where)
        if model is None:
            return
        if label in self.by_ref:
            self.problems.append(Problem(f"{label} appears twice", field=where))
            return
        self.resources.append((label, model))
        self.by_ref[label] = model
        if full_url:
            self.aliases[full_url] = label
        for contained in getattr(model, "contained", None) or []:
            cid = getattr(contained, "id", None)
            if cid:
                self.by_ref[f"{label}#{cid}"] = contained

    def _validate(self, rtype: str, data: Mapping[str, Any], where: str) -> Any:
        from pydantic import ValidationError

        try:
            cls = self._model_class(rtype)
        except ValueError:
            self.problems.append(Problem(f"unknown resourceType {rtype!r} (not a FHIR R4 resource)", field=where))
            return None
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            for err in exc.errors(include_url=False)[:20]:
                loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
                message = str(err["msg"]).removeprefix("Value error, ")
                self.problems.append(Problem(f"{loc}: {message}" if loc else message, field=where))
            return None

    def _raise(self) -> None:
        if self.problems:
            raise FhirInputError(self.problems)

    # ---------------------------------------------------------------------------------- references

    def resolve(self, reference: str | None, owner: str | None = None) -> str | None:
        """The key ("Type/id") of a reference, or None when it is not in the input."""
        if not reference:
            return None
        if reference.startswith("#") and owner:
            key = f"{owner}{reference}"
            return key if key in self.by_ref else None
        if reference in self.aliases:
            return self.aliases[reference]
        parts = reference.rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            return f"{parts[-2]}/{parts[-1]}"
        return None

    def _check_subject(self, ref: str, model: Any) -> None:
        for name in _SUBJECT_FIELDS:
            subject = getattr(model, name, None)
            if subject is None or not getattr(subject, "reference", None):
                continue
            key = self.resolve(str(subject.reference))
            if key is None or not key.startswith("Patient/"):
                continue
            if self.patient_ref is not None and key != self.patient_ref:
                self.problems.append(
                    Problem(f"refers to {key}, not to the patient of this input ({self.patient_ref})", field=ref)
                )

    # ---------------------------------------------------------------------------------- mapping

    def finish(self) -> FhirMapping:
        self._find_patient()
        for key, model in self.resources:
            if model.get_resource_type() == "DiagnosticReport":
                for r in model.result or []:
                    target = self.resolve(_ref_key(r))
                    if target:
                        self.reports_of[target].append(key)
        for ref, model in self.resources:
            self._check_subject(ref, model)
        self._raise()
        handlers = {
            "Patient": self._patient,
            "Condition": self._condition,
            "Observation": self._observation,
            "MedicationRequest": self._medication,
            "MedicationStatement": self._medication,
            "Procedure": self._procedure,
            "AllergyIntolerance": self._allergy,
            "DiagnosticReport": self._context,
            "ImagingStudy": self._context,
            "Medication": self._context,
        }
        # Conditions and procedures first: observations link to them.
        order = {"Patient": 0, "Condition": 1, "Procedure": 1}
        for ref, model in sorted(self.resources, key=lambda r: order.get(r[1].get_resource_type(), 2)):
            rtype = model.get_resource_type()
            handler = handlers.get(rtype)
            if handler is None:
                self._skip(ref, "unsupported_resource", f"ipm-cds does not read {rtype} resources")
            else:
                handler(ref, model)
        self._place_pending()
        self._unused_context()
        document, sources = self._assemble()
        try:
            case = parse_patient(document)
        except PatientDataError as exc:
            mapping = FhirMapping(PatientCase(), (), sources)
            problems = []
            for p in exc.problems:
                owner = mapping.resource_of(p.field or "")
                problems.append(Problem(p.message, field=f"{owner}: {p.field}" if owner else p.field, hint=p.hint))
            raise FhirInputError(problems) from None
        unmapped = tuple(sorted(self.unmapped, key=lambda u: (u.resource, u.kind, u.code or "", u.reason)))
        return FhirMapping(case, unmapped, sources, self.patient_ref)

    def _skip(self, ref: str, kind: UnmappedKind, reason: str, code: str | None = None) -> None:
        self.unmapped.append(Unmapped(ref, kind, reason, code))

    def _find_patient(self) -> None:
        patients = [ref for ref, m in self.resources if m.get_resource_type() == "Patient"]
        if self.patient_id is not None:
            wanted = f"Patient/{self.patient_id}"
            if patients and wanted not in patients:
                self.problems.append(
                    Problem(f"the input's Patient is {', '.join(patients)}, not {wanted} (context.patientId)")
                )
            self.patient_ref = wanted
        elif len(patients) > 1:
            self.problems.append(Problem(f"more than one Patient in the input: {', '.join(patients)}"))
        elif patients:
            self.patient_ref = patients[0]
        else:  # no Patient resource: the resources must still all be about one patient
            subjects = sorted(
                {
                    key
                    for _, model in self.resources
                    for name in _SUBJECT_FIELDS
                    if (subject := getattr(model, name, None)) is not None
                    and (key := self.resolve(_ref_key(subject))) is not None
                    and key.startswith("Patient/")
                }
            )
            if len(subjects) > 1:
                self.problems.append(Problem(f"resources about more than one patient: {', '.join(subjects)}"))
            elif subjects:
                self.patient_ref = subjects[0]
        self._raise()

    # ---- shared element readers

    def _laterality(self, model: Any, body_sites: Any = None) -> str | None:
        for ext in getattr(model, "extension", None) or []:
            if ext.url == self.maps.extension("laterality") and ext.valueCode:
                return str(ext.valueCode)
        concepts = body_sites if isinstance(body_sites, list) else [body_sites] if body_sites is not None else []
        for concept in concepts:
            for system, code in _codings(concept):
                value = self.maps.laterality_by_code.get((system, code))
                if value:
                    return value
        return None

    def _region(self, body_sites: Any) -> str | None:
        concepts = body_sites if isinstance(body_sites, list) else [body_sites] if body_sites is not None else []
        uri = self.maps.uri("body-region")
        for concept in concepts:
            for system, code in _codings(concept):
                if system == uri:
                    return code
        return None

    def _ext(self, model: Any, key: str) -> list[Any]:
        url = self.maps.extension(key)
        return [e for e in getattr(model, "extension", None) or [] if e.url == url]

    def _ext_bool(self, model: Any, key: str) -> bool | None:
        for e in self._ext(model, key):
            if e.valueBoolean is not None:
                return bool(e.valueBoolean)
        return None

    def _local(self, codings: Sequence[tuple[str, str]], key: str) -> list[str]:
        """Codes of a local system that are codes of its vocabulary (others are not mapped)."""
        uri = self.maps.uri(key)
        vocabulary = self.maps.systems.local[key].vocabulary
        allowed: Collection[str] | None = VOCABULARIES[vocabulary]
        if vocabulary in RULESET_VOCABULARIES and self.ruleset is not None:  # without one, the engine checks
            held = self.ruleset.vocabularies.get(RULESET_VOCABULARIES[vocabulary])
            allowed = {c.code for c in held.codes} if held is not None else ()
        return sorted({code for system, code in codings if system == uri and (allowed is None or code in allowed)})

    # ---- Patient

    def _patient(self, ref: str, model: Any) -> None:
        if model.birthDate is not None:
            born = _to_date(model.birthDate)
            if born is None:
                self._skip(ref, "partial", f"birthDate {model.birthDate} is not a full date; age not recorded")
            else:
                self.patient_doc["birth_date"] = born.isoformat()
        if model.gender in ("female", "male", "other"):
            self.patient_doc["sex"] = str(model.gender)

    # ---- Condition

    def _condition(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        verification = {c for _, c in _codings(model.verificationStatus)}
        if verification & {"refuted", "entered-in-error"}:
            self._skip(ref, "not_current", f"verificationStatus {'/'.join(sorted(verification))}", code_text)
            return
        clinical = {c for _, c in _codings(model.clinicalStatus)}
        active = not (clinical & _CONDITION_INACTIVE) if clinical else True

        red_flags = self._local(codings, "red-flag")
        pain_chars = self._local(codings, "pain-character")
        conditions = self._conditions_for(codings)
        pains = self._pains_for(codings)
        if pains and pain_chars and {p.character for p in pains} != set(pain_chars):
            pain_chars = [*pain_chars, "(disagrees with the diagnosis code)"]
        targets = len(red_flags) + len(conditions) + (len(pains) or (1 if pain_chars else 0))
        if targets == 0:
            self._skip(ref, "unknown_code", "no mapped code (ICD-10-CM, SNOMED CT or local)", code_text)
            return
        if targets > 1 or len(pain_chars) > 1:
            self._skip(ref, "ambiguous_code", "the codes map to more than one patient-model entry", code_text)
            return
        if red_flags:
            if not active:
                self._skip(ref, "not_current", "red flag no longer active", code_text)
                return
            doc: dict[str, Any] = {"code": red_flags[0]}
            onset = _to_date(model.onsetDateTime) or (
                _to_date(model.onsetPeriod.start) if model.onsetPeriod is not None else None
            )
            if onset:
                doc["onset_date"] = onset.isoformat()
            deteriorating = self._ext_bool(model, "deteriorating")
            if deteriorating is not None:
                doc["deteriorating"] = deteriorating
            self.lists["red_flags"].append((ref, doc, {}))
            return
        if conditions:
            entry = conditions[0]
            doc = {"code": entry.condition, "active": entry.active if entry.active is not None else active}
            region = self._region(model.bodySite)
            if region:
                doc["region"] = region
            self.lists["conditions"].append((ref, doc, {}))
            return
        # a pain complaint
        if not active:
            self._skip(ref, "not_current", "pain complaint no longer active", code_text)
            return
        if pains:
            region, character, laterality = pains[0].region, pains[0].character, pains[0].laterality
        else:
            region, character, laterality = self._region(model.bodySite) or "", pain_chars[0], None
            if not region:
                self._skip(ref, "incomplete", "pain complaint without a body-region bodySite", code_text)
                return
        onset = _to_date(model.onsetDateTime) or (
            _to_date(model.onsetPeriod.start) if model.onsetPeriod is not None else None
        )
        self.pains[ref] = _Pain(
            ref=ref,
            region=region,
            character=character,
            laterality=laterality or self._laterality(model, model.bodySite),
            onset=onset,
            is_index=bool(self._ext_bool(model, "index-pain")),
        )

    def _conditions_for(self, codings: Sequence[tuple[str, str]]) -> list[Any]:
        found: dict[str, Any] = {}
        icd = self.maps.uri("icd10cm")
        local = self.maps.uri("condition")
        local_codes = set(self._local(codings, "condition"))
        for system, code in codings:
            if system == local:
                if code in local_codes:
                    found[code] = _LocalCondition(code)
                continue
            entry = self.maps.condition_by_code.get((system, code))
            if entry is None and system == icd:
                norm = normalise_icd10(code)
                prefixes = self.maps.condition_prefixes
                entry = next((e for s, p, e in prefixes if s == system and norm.startswith(p)), None)
            if entry is not None:
                found[entry.condition] = entry
        return list(found.values())

    def _pains_for(self, codings: Sequence[tuple[str, str]]) -> list[Any]:
        found: dict[tuple[str, str, str | None], Any] = {}
        icd = self.maps.uri("icd10cm")
        for system, code in codings:
            entry = self.maps.pain_by_code.get((system, code))
            if entry is None and system == icd:
                norm = normalise_icd10(code)
                entry = next((e for s, p, e in self.maps.pain_prefixes if s == system and norm.startswith(p)), None)
            if entry is not None:
                found[(entry.region, entry.character, entry.laterality)] = entry
        return list(found.values())

    # ---- Observation

    def _observation(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        status = str(model.status)
        when = self._effective(model)
        entries = {id(e): e for s, c in codings if (e := self.maps.observation_by_code.get((s, c))) is not None}
        exams = self._local(codings, "exam-finding")
        findings = self._local(codings, "imaging-finding")
        red_flags = self._local(codings, "red-flag")
        kinds = len(entries) + len(exams) + len(findings) + len(red_flags)
        if kinds == 0:
            self._skip(ref, "unknown_code", "no mapped code (LOINC or local)", code_text)
            return
        if kinds > 1:
            self._skip(ref, "ambiguous_code", "the codes map to more than one patient-model field", code_text)
            return
        if status not in _OBSERVATION_USABLE:
            self._skip(ref, "not_current", f"status {status}", code_text)
            return
        related = [*(model.focus or []), *(model.partOf or []), *(model.derivedFrom or [])]
        links = {k for r in related if (k := self.resolve(_ref_key(r)))}
        if exams:
            positive = model.valueBoolean
            if positive is None:
                self._skip(ref, "incomplete", "an examination finding needs valueBoolean (positive)", code_text)
                return
            doc: dict[str, Any] = {"test": exams[0], "positive": bool(positive)}
            region, side = self._region(model.bodySite), self._laterality(model, model.bodySite)
            if region:
                doc["region"] = region
            if side:
                doc["side"] = side
            if when:
                doc["date"] = when.isoformat()
            self.lists["exam"].append((ref, doc, {}))
            return
        if findings:
            self._imaging(ref, model, findings[0], when, code_text)
            return
        if red_flags:
            if model.valueBoolean is False:
                self._skip(ref, "not_current", "red flag recorded as absent", code_text)
                return
            doc = {"code": red_flags[0]}
            deteriorating = self._ext_bool(model, "deteriorating")
            if deteriorating is not None:
                doc["deteriorating"] = deteriorating
            self.lists["red_flags"].append((ref, doc, {}))
            return
        entry = next(iter(entries.values()))
        value = self._value(ref, model, entry, code_text)
        if value is None:
            return
        if entry.target == "screening.phq9":
            # item 9 as a component of the total
            for component in model.component or []:
                for s, c in _codings(component.code):
                    item = self.maps.observation_by_code.get((s, c))
                    if item is not None and item.target == "screening.phq9.item9":
                        item_value = self._value(ref, component, item, code_text)
                        if item_value is not None:
                            links.add(f"{ref}#item9")
                            self.pending.append(_Pending(ref, item.target, item_value, when, {ref}, code_text))
        self._route(ref, entry, value, when, links, code_text, model)

    def _effective(self, model: Any) -> date | None:
        for value in (model.effectiveDateTime, model.effectiveInstant):
            if value is not None:
                return _to_date(value)
        if model.effectivePeriod is not None:
            return _to_date(model.effectivePeriod.start)
        return _to_date(model.issued) if model.issued is not None else None

    def _value(self, ref: str, model: Any, entry: ObservationEntry, code_text: str | None) -> Any:
        """The observation's value as the patient model wants it, or None (reported)."""
        quantity = getattr(model, "valueQuantity", None)
        concept = getattr(model, "valueCodeableConcept", None)
        if entry.answers and concept is not None:
            for system, code in _codings(concept):
                answer = self.maps.answer(entry, system, code)
                if answer is not None:
                    return answer.value
            self._skip(ref, "unknown_code", f"answer not in the map for {entry.code}", _code_text(_codings(concept)))
            return None
        if entry.value == "boolean":
            if getattr(model, "valueBoolean", None) is None:
                self._skip(ref, "incomplete", f"{entry.code} needs valueBoolean", code_text)
                return None
            return bool(model.valueBoolean)
        if entry.value in ("integer", "number"):
            if getattr(model, "valueInteger", None) is not None:
                return int(model.valueInteger)
            if quantity is not None and quantity.value is not None:
                converted = self._convert(ref, entry, quantity, code_text)
                if converted is None:
                    return None
                return _number(converted) if entry.value == "integer" else float(converted)
        self._skip(ref, "incomplete", f"no usable value for {entry.code}", code_text)
        return None

    def _convert(self, ref: str, entry: ObservationEntry, quantity: Any, code_text: str | None) -> float | None:
        value = float(quantity.value)
        if entry.units is None:
            return value
        given = [str(u) for u in (quantity.code, quantity.unit) if u is not None]
        for rule in entry.units:
            if rule.unit in given or (not given and rule.unit == ""):
                return round(value * rule.factor + rule.offset, 6)
        units = " / ".join(given) or "(none)"
        self._skip(ref, "unknown_unit", f"unit {units} not accepted for {entry.code}", code_text)
        return None

    def _route(
        self,
        ref: str,
        entry: ObservationEntry,
        value: Any,
        when: date | None,
        links: set[str],
        code_text: str | None,
        model: Any,
    ) -> None:
        target = entry.target
        group, _, name = target.partition(".")
        if group == "demographics":
            self.demographics[name].append(_Value(value, when, ref))
        elif group == "conservative_care":
            self.care[name].append(_Value(value, when, ref))
        elif group == "psychological_evaluation":
            self.psych[name].append(_Value(value, when, ref))
        elif group == "lab":
            if when is None:
                self._skip(ref, "incomplete", "a laboratory result needs a date (effective[x] or issued)", code_text)
                return
            self.lists["labs"].append((ref, {"test": name, "value": value, "date": when.isoformat()}, {}))
        elif target in ("screening.phq9.item9", "screening.start_back.distress"):
            self.pending.append(_Pending(ref, target, value, when, links, code_text))
        elif group == "screening":
            member_links = {k for r in model.hasMember or [] if (k := self.resolve(_ref_key(r)))}
            self.screens.append(_Screen(ref, name, value, when, links | member_links))
        else:  # pain.* and procedure.*: they belong to another resource
            self.pending.append(_Pending(ref, target, value, when, links, code_text))

    def _imaging(self, ref: str, model: Any, finding: str, when: date | None, code_text: str | None) -> None:
        region = self._region(model.bodySite)
        if not region:
            self._skip(ref, "incomplete", "an imaging finding needs a body-region bodySite", code_text)
            return
        modality, context_date = self._modality(ref, model)
        if modality is None:
            why = "imaging modality not found (method, ImagingStudy or DiagnosticReport)"
            self._skip(ref, "incomplete", why, code_text)
            return
        doc: dict[str, Any] = {"modality": modality, "finding": finding, "region": region}
        levels = [str(e.valueString) for e in self._ext(model, "spinal-level") if e.valueString]
        if levels:
            doc["level"] = levels[0]
        side = self._laterality(model, model.bodySite)
        if side:
            doc["side"] = side
        day = when or context_date
        if day:
            doc["date"] = day.isoformat()
        concordant = self._ext_bool(model, "concordant")
        if concordant is not None:
            doc["concordant"] = concordant
        self.lists["imaging"].append((ref, doc, {}))

    def _modality(self, ref: str, model: Any) -> tuple[str | None, date | None]:
        local = self.maps.uri("imaging-modality")

        def from_codings(codings: Sequence[tuple[str, str]]) -> str | None:
            for system, code in codings:
                if system == local:
                    return code
                value = self.maps.modality_by_code.get((system, code))
                if value:
                    return value
            return None

        found = from_codings(_codings(model.method))
        studies: list[str] = []
        context_date: date | None = None
        for r in [*(model.derivedFrom or []), *(model.partOf or [])]:
            key = self.resolve(_ref_key(r))
            if key and key.startswith("ImagingStudy/"):
                studies.append(key)
        for key in self.reports_of.get(ref, []):
            report = self.by_ref[key]
            self.used_as_context.add(key)
            found = found or from_codings(_codings(report.code))
            if report.effectiveDateTime is not None:
                context_date = context_date or _to_date(report.effectiveDateTime)
            elif report.effectivePeriod is not None:
                context_date = context_date or _to_date(report.effectivePeriod.start)
            studies += [k for r in report.imagingStudy or [] if (k := self.resolve(_ref_key(r)))]
        for key in studies:
            study = self.by_ref.get(key)
            if study is None:
                continue
            self.used_as_context.add(key)
            found = found or from_codings(_codings(list(study.modality or [])))
            context_date = context_date or (_to_date(study.started) if study.started is not None else None)
        return found, context_date

    def _place_pending(self) -> None:
        """Attach pain scores, relief and screening items to the pain, procedure or screen they belong to."""
        pains = self.pains
        index = [p for p in pains.values() if p.is_index]
        for item in self.pending:
            if item.target.startswith("pain."):
                owners = [pains[k] for k in item.links if k in pains]
                if not owners and not item.links:
                    owners = list(pains.values()) if len(pains) == 1 else index
                if len(owners) != 1:
                    why = "more than one pain complaint" if owners else "no pain complaint (Condition) it belongs to"
                    self._skip(item.ref, "incomplete", f"{why}; link it with Observation.focus", item.code)
                    continue
                owners[0].fields[_PAIN_FIELDS[item.target]].append(_Value(item.value, item.when, item.ref))
            elif item.target.startswith("procedure."):
                procs = [self.procs[k] for k in item.links if k in self.procs]
                if len(procs) != 1:
                    self._skip(item.ref, "incomplete", "relief must name one Procedure in partOf or focus", item.code)
                    continue
                procs[0].fields[item.target.split(".", 1)[1]].append(_Value(item.value, item.when, item.ref))
            else:
                instrument = "phq9" if item.target == "screening.phq9.item9" else "start_back"
                screens = [s for s in self.screens if s.instrument == instrument]
                linked = [s for s in screens if s.ref in item.links or item.ref in s.links]
                if not linked:
                    linked = [s for s in screens if s.when is not None and s.when == item.when]
                if len(linked) != 1:
                    self._skip(item.ref, "incomplete", f"no single {instrument} total it belongs to", item.code)
                    continue
                slot = "item9" if instrument == "phq9" else "distress"
                if getattr(linked[0], slot) is not None and getattr(linked[0], slot).ref != item.ref:
                    self._skip(item.ref, "superseded", f"{instrument} already has a {slot}", item.code)
                    continue
                setattr(linked[0], slot, _Value(item.value, item.when, item.ref))

    # ---- MedicationRequest / MedicationStatement

    def _medication(self, ref: str, model: Any) -> None:
        rtype = model.get_resource_type()
        concept = model.medicationCodeableConcept
        if concept is None and model.medicationReference is not None:
            key = self.resolve(_ref_key(model.medicationReference), owner=ref)
            medication = self.by_ref.get(key) if key else None
            if medication is None:
                self._skip(ref, "incomplete", "medicationReference not found in the input")
                return
            if key:
                self.used_as_context.add(key)
            concept = medication.code
        codings = _codings(concept)
        code_text = _code_text(codings)
        status = str(model.status)
        if status not in _MEDICATION_CURRENT:
            self._skip(ref, "not_current", f"status {status}", code_text)
            return
        agents: dict[str, Any] = {}
        ambiguous: list[str] = []
        rxnorm, local = self.maps.uri("rxnorm"), self.maps.uri("medication")
        for system, code in codings:
            if system == local:
                agents[code] = None
            elif system == rxnorm and code in self.maps.medication_by_rxcui:
                entry = self.maps.medication_by_rxcui[code]
                agents[entry.agent] = entry
            elif system == rxnorm and code in self.maps.ambiguous_rxcui:
                ambiguous.append(self.maps.ambiguous_rxcui[code].reason)
        if not agents:
            if ambiguous:
                self._skip(ref, "ambiguous_code", ambiguous[0], code_text)
            else:
                self._skip(ref, "unknown_code", "no mapped RxNorm or local medication code", code_text)
            return
        if len(agents) > 1:
            self._skip(ref, "ambiguous_code", f"codes for {', '.join(sorted(agents))}", code_text)
            return
        agent, entry = next(iter(agents.items()))
        if self.ruleset is not None and agent not in self.ruleset.medications:
            self._skip(ref, "unknown_code", f"{agent!r} is not in the ruleset's medication catalogue", code_text)
            return
        doc: dict[str, Any] = {"agent": agent}
        dose = self._daily_dose(ref, model, rtype, entry, code_text)
        if dose is not None:
            doc["daily_dose"], doc["dose_unit"] = dose
        indications = self._local(
            [c for concept in (model.reasonCode or []) for c in _codings(concept)], "medication-indication"
        )
        if len(indications) == 1:
            doc["indication"] = indications[0]
        self.lists["medications"].append((ref, doc, {}))

    def _daily_dose(
        self, ref: str, model: Any, rtype: str, entry: Any, code_text: str | None
    ) -> tuple[float, str] | None:
        for ext in self._ext(model, "daily-dose"):
            q = ext.valueQuantity
            unit = str(q.code or q.unit or "") if q is not None else ""
            if q is None or q.value is None or unit not in _DOSE_UNITS:
                self._skip(ref, "partial", f"daily-dose extension in unit {unit!r} not read", code_text)
                return None
            target, factor = _DOSE_UNITS[unit]
            return round(float(q.value) * factor, 6), target
        dosages = list(model.dosageInstruction or []) if rtype == "MedicationRequest" else list(model.dosage or [])
        strength = getattr(entry, "strength_mcg_per_hour", None)
        if not dosages:
            # a transdermal system's code carries its rate: one patch at a time unless a dose says otherwise
            return (float(strength), "mcg_per_hour") if strength is not None else None
        if len(dosages) > 1:
            self._skip(ref, "partial", "several dosage instructions: daily dose not computed", code_text)
            return None
        dosage = dosages[0]
        if dosage.asNeededBoolean:
            self._skip(ref, "partial", "as-needed dosage: daily dose not computed", code_text)
            return None
        dose_and_rate = (dosage.doseAndRate or [None])[0]
        rate = dose_and_rate.rateQuantity if dose_and_rate is not None else None
        if rate is not None and rate.value is not None:
            unit = str(rate.code or rate.unit or "")
            if _DOSE_UNITS.get(unit, ("", 0))[0] == "mcg_per_hour":
                return round(float(rate.value), 6), "mcg_per_hour"
        quantity = dose_and_rate.doseQuantity if dose_and_rate is not None else None
        if strength is not None:
            patch_unit = quantity.code or quantity.unit if quantity is not None else None
            if quantity is None or (str(patch_unit) if patch_unit else None) in _PATCH_UNITS:
                count = float(quantity.value) if quantity is not None and quantity.value is not None else 1.0
                return round(strength * count, 6), "mcg_per_hour"
        if quantity is None or quantity.value is None:
            return None
        unit = str(quantity.code or quantity.unit or "")
        if unit not in _DOSE_UNITS or _DOSE_UNITS[unit][0] == "mcg_per_hour":
            self._skip(ref, "partial", f"dose in {unit or 'no unit'}: daily dose not computed", code_text)
            return None
        per_day = self._per_day(dosage.timing)
        if per_day is None:
            why = "dosage timing not readable (frequency/period): daily dose not computed"
            self._skip(ref, "partial", why, code_text)
            return None
        target, factor = _DOSE_UNITS[unit]
        return round(float(quantity.value) * factor * per_day, 6), target

    @staticmethod
    def _per_day(timing: Any) -> float | None:
        repeat = timing.repeat if timing is not None else None
        if repeat is None or repeat.period is None or repeat.periodUnit not in _PERIOD_DAYS:
            return None
        frequency = int(repeat.frequency) if repeat.frequency is not None else 1
        return frequency / (float(repeat.period) * _PERIOD_DAYS[str(repeat.periodUnit)])

    # ---- Procedure

    def _procedure(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        kinds, why = self.kinds(codings, "procedure-kind", "procedure_kinds")
        if not kinds:
            kind: UnmappedKind = "unknown_code" if why is None else "ambiguous_code"
            self._skip(ref, kind, why or "no mapped CPT or local code", code_text)
            return
        status = str(model.status)
        if status != "completed":
            self._skip(ref, "not_current", f"status {status}", code_text)
            return
        when = _to_date(model.performedDateTime) or (
            _to_date(model.performedPeriod.start) if model.performedPeriod is not None else None
        )
        region = self._region(model.bodySite)
        if when is None or region is None:
            missing = " and ".join(n for n, v in (("a date", when), ("a body-region bodySite", region)) if v is None)
            self._skip(ref, "incomplete", f"a prior procedure needs {missing}", code_text)
            return
        doc: dict[str, Any] = {"kind": kinds[0], "region": region, "date": when.isoformat()}
        levels = [str(e.valueString) for e in self._ext(model, "spinal-level") if e.valueString]
        if levels:
            doc["levels"] = levels
        side = self._laterality(model, model.bodySite)
        if side:
            doc["side"] = side
        for e in self._ext(model, "procedure-purpose"):
            if e.valueCode:
                doc["purpose"] = str(e.valueCode)
        self.procs[ref] = _Proc(ref, doc)

    def kinds(self, codings: Sequence[tuple[str, str]], local_key: str, cpt_field: str) -> tuple[list[str], str | None]:
        """The patient-model kinds (or catalogue interventions) a set of codings names, and why not when ambiguous."""
        local = self._local(codings, local_key)
        cpt_uri = self.maps.uri("cpt")
        from_cpt: set[str] = set()
        cpts = [code for system, code in codings if system == cpt_uri and code in self.maps.cpt]
        for code in cpts:
            from_cpt |= set(getattr(self.maps.cpt[code], cpt_field))
        if len(local) > 1:
            return [], f"more than one local code: {', '.join(local)}"
        if local:
            if cpts and local[0] not in from_cpt:
                return [], f"local code {local[0]} disagrees with CPT {', '.join(cpts)}"
            return local, None
        if len(from_cpt) == 1:
            return sorted(from_cpt), None
        if from_cpt:
            return [], (
                f"CPT {', '.join(cpts)} is used for {' and '.join(sorted(from_cpt))}; "
                f"add a {self.maps.uri(local_key)} coding to say which"
            )
        return [], None

    # ---- AllergyIntolerance

    def _allergy(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        verification = {c for _, c in _codings(model.verificationStatus)}
        clinical = {c for _, c in _codings(model.clinicalStatus)}
        if verification & {"refuted", "entered-in-error"} or clinical & {"inactive", "resolved"}:
            self._skip(ref, "not_current", "refuted, entered in error, inactive or resolved", code_text)
            return
        substances = set(self._local(codings, "allergy-substance"))
        for system, code in codings:
            entry = self.maps.allergy_by_code.get((system, code))
            if entry is not None:
                substances.add(entry.substance)
        if len(substances) != 1:
            kind: UnmappedKind = "ambiguous_code" if substances else "unknown_code"
            self._skip(ref, kind, "no single mapped substance (RxNorm or local allergy-substance)", code_text)
            return
        doc: dict[str, Any] = {"substance": substances.pop()}
        reaction = (model.reaction or [None])[0]
        if reaction is not None:
            text = reaction.description or next(
                (m.text for m in reaction.manifestation or [] if getattr(m, "text", None)), None
            )
            if text:
                doc["reaction"] = str(text)[:500]
        self.lists["allergies"].append((ref, doc, {}))

    # ---- context resources

    def _context(self, ref: str, model: Any) -> None:
        """DiagnosticReport, ImagingStudy, Medication: read through the resources that point to them."""

    def _unused_context(self) -> None:
        for ref, model in self.resources:
            rtype = model.get_resource_type()
            if rtype not in ("DiagnosticReport", "ImagingStudy", "Medication") or ref in self.used_as_context:
                continue
            if rtype == "DiagnosticReport" and model.conclusionCode:
                codes = _code_text([c for cc in model.conclusionCode for c in _codings(cc)])
                why = "findings only in conclusionCode: record each as an Observation in result"
                self._skip(ref, "unknown_code", why, codes)
            elif rtype == "DiagnosticReport":
                self._skip(ref, "incomplete", "no imaging-finding Observation in result")
            elif rtype == "ImagingStudy":
                self._skip(ref, "incomplete", "an imaging study without a finding Observation that refers to it")
            else:
                self._skip(ref, "unsupported_resource", "a Medication no MedicationRequest/Statement refers to")

    # ---------------------------------------------------------------------------------- assembly

    def _keep_recent(
        self,
        section: str,
        items: Sequence[_T],
        kind_of: Callable[[_T], tuple[str, ...]],
        when_of: Callable[[_T], date | None],
        ref_of: Callable[[_T], str],
        attached: Callable[[_T], Iterable[str]] = lambda _: (),
    ) -> list[_T]:
        """The items of one list that the patient model can hold: the most recent of each kind (see
        :data:`KEEP_RECENT`). What is left out is reported per resource, with the count for its kind."""
        if len(items) <= KEEP_RECENT:
            return list(items)
        by_kind: dict[tuple[str, ...], list[_T]] = defaultdict(list)
        for item in items:
            by_kind[kind_of(item)].append(item)
        if len(by_kind) > KEEP_RECENT:
            raise FhirInputError(
                [
                    Problem(
                        f"{len(by_kind)} different kinds of {section}: more than the {KEEP_RECENT} that can be "
                        "kept, so the most recent of each cannot all be read",
                        field=section,
                    )
                ]
            )
        shares = _shares({k: len(v) for k, v in by_kind.items()}, KEEP_RECENT)
        kept: list[_T] = []
        for kind, group in sorted(by_kind.items()):
            ordered = sorted(group, key=lambda i: (when_of(i) or date.min, ref_of(i)), reverse=True)
            share = shares[kind]
            kept += ordered[:share]
            left_out = ordered[share:]
            if not left_out:
                continue
            dates = [d for i in ordered[:share] if (d := when_of(i)) is not None]
            span = f", {min(dates).isoformat()} to {max(dates).isoformat()}" if dates else ""
            name = " ".join(kind)
            reason = (
                f"{len(left_out)} of {len(group)} {name} {section} left out as older ({section} hold at most "
                f"{KEEP_RECENT} items, shared between kinds); the {share} most recent{span}, are read"
            )
            for item in left_out:
                self._skip(ref_of(item), "older_left_out", reason)
                for ref in attached(item):
                    self._skip(ref, "older_left_out", f"belongs to {ref_of(item)}: {reason}")
        return kept

    def _distinct(
        self, section: str, entries: Sequence[tuple[str, dict[str, Any], dict[str, str]]]
    ) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        """One entry per distinct patient-model entry (the same diagnosis recorded at every visit): what a
        list without dates can lose without changing what the rules see. The others are reported."""
        first: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {}
        for entry in sorted(entries, key=lambda e: e[0]):
            key = json.dumps(entry[1], sort_keys=True)
            if key in first:
                kept = first[key][0]
                self._skip(entry[0], "duplicate", f"the same {section} entry as {kept}, which is read")
            else:
                first[key] = entry
        return list(first.values())

    def _latest(self, values: list[_Value], path: str, sources: dict[str, str]) -> Any:
        ordered = sorted(values, key=lambda v: (v.when or date.min, v.ref))
        chosen = ordered[-1]
        for other in ordered[:-1]:
            self._skip(other.ref, "superseded", f"{path}: a later value is in {chosen.ref}")
        sources[path] = chosen.ref
        return chosen.value

    def _assemble(self) -> tuple[dict[str, Any], dict[str, str]]:
        sources: dict[str, str] = {}
        doc: dict[str, Any] = {}
        if self.patient_ref:
            doc["id"] = self.patient_ref.split("/", 1)[1][:128]
        demographics = dict(self.patient_doc)
        if self.patient_ref and demographics:
            sources["demographics"] = self.patient_ref
        for name, values in sorted(self.demographics.items()):
            demographics[name] = self._latest(values, f"demographics.{name}", sources)
        if demographics:
            doc["demographics"] = demographics
        care = {n: self._latest(v, f"conservative_care.{n}", sources) for n, v in sorted(self.care.items())}
        if care:
            doc["conservative_care"] = care
        if self.psych:
            if "completed" not in self.psych:
                for v in self.psych["cleared"]:
                    self._skip(v.ref, "incomplete", "psychological evaluation cleared, but not recorded as completed")
            else:
                evaluation = {
                    n: self._latest(v, f"psychological_evaluation.{n}", sources) for n, v in sorted(self.psych.items())
                }
                when = max((v.when for v in self.psych["completed"] if v.when), default=None)
                if when:
                    evaluation["date"] = when.isoformat()
                doc["psychological_evaluation"] = evaluation

        pains = []
        for i, pain in enumerate(sorted(self.pains.values(), key=lambda p: p.ref)):
            item: dict[str, Any] = {"region": pain.region, "character": pain.character}
            sources[f"pain[{i}]"] = pain.ref
            if pain.laterality:
                item["laterality"] = pain.laterality
            if pain.onset:
                item["onset_date"] = pain.onset.isoformat()
            if pain.is_index:
                item["is_index"] = True
            for name, values in sorted(pain.fields.items()):
                item[name] = self._latest(values, f"pain[{i}].{name}", sources)
            pains.append(item)
        if pains:
            doc["pain"] = pains

        procs = self._keep_recent(
            "procedures",
            list(self.procs.values()),
            lambda p: (str(p.doc["kind"]), str(p.doc["region"])),
            lambda p: date.fromisoformat(p.doc["date"]),
            lambda p: p.ref,
            lambda p: sorted({v.ref for values in p.fields.values() for v in values}),
        )
        procedures = []
        for i, proc in enumerate(sorted(procs, key=lambda p: p.ref)):
            item = dict(proc.doc)
            sources[f"procedures[{i}]"] = proc.ref
            for name, values in sorted(proc.fields.items()):
                item[name] = self._latest(values, f"procedures[{i}].{name}", sources)
            procedures.append(item)
        if procedures:
            doc["procedures"] = procedures

        screens = self._keep_recent(
            "screenings",
            self.screens,
            lambda s: (s.instrument,),
            lambda s: s.when,
            lambda s: s.ref,
            lambda s: sorted({v.ref for v in (s.item9, s.distress) if v is not None and v.ref != s.ref}),
        )
        screenings = []
        for i, screen in enumerate(sorted(screens, key=lambda s: s.ref)):
            item = {"instrument": screen.instrument, "score": screen.score}
            sources[f"screenings[{i}]"] = screen.ref
            if screen.when:
                item["date"] = screen.when.isoformat()
            if screen.item9 is not None:
                item["item9"] = screen.item9.value
                sources[f"screenings[{i}].item9"] = screen.item9.ref
            if screen.distress is not None:
                item["distress_subscore"] = screen.distress.value
                sources[f"screenings[{i}].distress_subscore"] = screen.distress.ref
            screenings.append(item)
        if screenings:
            doc["screenings"] = screenings

        for name in ("imaging", "exam", "red_flags", "medications", "labs", "conditions", "allergies"):
            entries = self.lists.get(name, [])
            if name in _UNDATED_LISTS and len(entries) > KEEP_RECENT:
                entries = self._distinct(name, entries)
            if name in _DATED_LISTS:
                kind_field = _DATED_LISTS[name]
                entries = self._keep_recent(
                    name,
                    entries,
                    lambda e: (str(e[1][kind_field]),),  # noqa: B023 (called before the loop moves on)
                    lambda e: date.fromisoformat(e[1]["date"]) if "date" in e[1] else None,
                    lambda e: e[0],
                )
            entries = sorted(entries, key=lambda e: e[0])
            if entries:
                doc[name] = [e[1] for e in entries]
                for i, (ref, _, _) in enumerate(entries):
                    sources[f"{name}[{i}]"] = ref
        return doc, sources


@dataclass(frozen=True)
class _LocalCondition:
    condition: str
    active: bool | None = None


# -- orders (CDS Hooks order-select / order-sign) ------------------------------------------------------


@dataclass(frozen=True)
class OrderedIntervention:
    """A draft ServiceRequest for one of the ruleset's interventions."""

    reference: str  # "ServiceRequest/sr-1"
    interventions: tuple[str, ...]  # one, or several when the code is ambiguous (CPT 64493)
    region: str | None
    side: str | None
    codes: str | None
    note: str | None = None  # why more than one intervention


def ordered_interventions(
    draft_orders: Mapping[str, Any], ruleset: Ruleset, selections: Sequence[str] | None = None
) -> tuple[list[OrderedIntervention], list[Unmapped]]:
    """The interventions that draft ServiceRequests order (all of them, or only ``selections``).

    A ServiceRequest names an intervention with the local intervention code or a CPT code of the
    catalogue; a CPT code shared by several interventions yields all of them (with a note). Orders for
    anything else (a lab test, a medication) are not ipm-cds's business and are returned as unmapped.
    """
    reader = _Reader(load_maps(), ruleset, None)
    reader.collect(draft_orders, "draftOrders")
    wanted = {reader.resolve(s) or s for s in selections} if selections is not None else None
    found: list[OrderedIntervention] = []
    other: list[Unmapped] = []
    for ref, model in reader.resources:
        if wanted is not None and ref not in wanted:
            continue
        if model.get_resource_type() != "ServiceRequest":
            other.append(Unmapped(ref, "unsupported_resource", "not a ServiceRequest"))
            continue
        codings = _codings(model.code)
        code_text = _code_text(codings)
        local = [c for c in reader._local(codings, "intervention") if c in ruleset.interventions]
        cpt_uri = reader.maps.uri("cpt")
        from_cpt = sorted(
            {
                i
                for system, code in codings
                if system == cpt_uri and code in reader.maps.cpt
                for i in reader.maps.cpt[code].interventions
                if i in ruleset.interventions
            }
        )
        note = None
        if len(local) == 1:
            interventions = tuple(local)
        elif from_cpt:
            interventions = tuple(from_cpt)
            if len(from_cpt) > 1:
                note = f"the code ({code_text}) is used for {' and '.join(from_cpt)}: each is assessed"
        else:
            other.append(Unmapped(ref, "unknown_code", "not one of the ruleset's interventions", code_text))
            continue
        found.append(
            OrderedIntervention(
                ref,
                interventions,
                reader._region(model.bodySite),
                reader._laterality(model, model.bodySite),
                code_text,
                note,
            )
        )
    return found, other


# -- prefetch templates -----------------------------------------------------------------------------

_PATIENT = "{{context.patientId}}"


def prefetch_templates(ruleset: Ruleset) -> dict[str, str]:
    """CDS Hooks prefetch templates for the data the ruleset's rules read, and only that.

    The rules' patterns name fact types and the fields they test; each fact field comes from a patient
    model field (``ipm_cds.facts.schema``), and each patient-model field is read from a FHIR resource
    type or from Observation codes (the maps). Observation queries name their codes (``system|code``).
    Each lab test and screening instrument has a key of its own asking for its most recent results
    (``&_sort=-date&_count=N``, N the reader's minimum per kind under :data:`KEEP_RECENT`): CDS Hooks 2.0
    prefetch tokens cannot compute a date, so a window of dates cannot be asked for.
    """
    from ..facts.schema import BASE_FACT_TYPES
    from ..ruleset import ir

    maps = load_maps()
    read: dict[str, set[str]] = defaultdict(set)  # fact type -> fields tested
    values: dict[str, set[str] | None] = {}  # lab.test / screening.instrument literals (None: any)

    def visit(pattern: ir.Pattern) -> None:
        if pattern.fact_type not in BASE_FACT_TYPES or pattern.fact_type == "candidate":
            return
        tests: list[ir.Test] = []
        for node in pattern.tests:
            if isinstance(node, ir.AnyOf):
                tests += [t for branch in node.branches for t in branch]
            else:
                tests.append(node)
        read[pattern.fact_type] |= {t.field for t in tests}
        selector = {"lab": "test", "screening": "instrument"}.get(pattern.fact_type)
        if selector:
            literals = {
                str(v)
                for t in tests
                if t.field == selector and t.op in ("eq", "in")
                for v in (t.operand if isinstance(t.operand, tuple | list) else [t.operand])
                if isinstance(v, str)
            }
            if not literals:
                values[pattern.fact_type] = None
            elif values.get(pattern.fact_type, set()) is not None:
                values[pattern.fact_type] = (values.get(pattern.fact_type) or set()) | literals

    for rule in ruleset.rules:
        for pattern in rule.input_patterns():
            visit(pattern)

    sections = {BASE_FACT_TYPES[t].source for t in read}
    patient_fields = {BASE_FACT_TYPES["patient"].fields[f].source for f in read.get("patient", set())}
    pain_fields = {BASE_FACT_TYPES["pain"].fields[f].source for f in read.get("pain", set())}
    templates: dict[str, str] = {"patient": f"Patient/{_PATIENT}"}

    def codes(predicate: Any) -> str:
        selected = sorted(
            {f"{system}|{code}" for (system, code), e in maps.observation_by_code.items() if predicate(e)}
        )
        return ",".join(selected)

    def observations(key: str, predicate: Any) -> None:
        listed = codes(predicate)
        if listed:
            templates[key] = f"Observation?patient={_PATIENT}&code={listed}"

    def recent(key: str, predicate: Callable[[ObservationEntry], bool], kinds: int) -> None:
        listed = codes(predicate)
        if listed:
            count = KEEP_RECENT // kinds
            templates[key] = f"Observation?patient={_PATIENT}&code={listed}&_sort=-date&_count={count}"

    if any(str(f).startswith("psychological_evaluation.") for f in patient_fields):
        patient_fields.add("psychological_evaluation.completed")  # cleared is read only with completed
    observations("patientObservations", lambda e: e.target in patient_fields)
    if sections & {"pain", "red_flags", "conditions"}:
        templates["conditions"] = f"Condition?patient={_PATIENT}"
    if "pain" in sections:
        pain_targets = {f"pain.{f}" for f in pain_fields}
        observations("painObservations", lambda e: e.target in pain_targets)
    if "red_flags" in sections:
        uri = maps.uri("red-flag")
        flags = ",".join(f"{uri}|{c}" for c in sorted(_vocab(ruleset, "red_flag")))
        templates["redFlagObservations"] = f"Observation?patient={_PATIENT}&code={flags}"
    if "imaging" in sections:
        templates["imagingFindings"] = f"Observation?patient={_PATIENT}&category=imaging"
        templates["diagnosticReports"] = f"DiagnosticReport?patient={_PATIENT}"
        templates["imagingStudies"] = f"ImagingStudy?patient={_PATIENT}"
    if "exam" in sections:
        templates["examFindings"] = f"Observation?patient={_PATIENT}&category=exam"
    if "procedures" in sections:
        templates["procedures"] = f"Procedure?patient={_PATIENT}"
        observations("procedureOutcomes", lambda e: e.target.startswith("procedure."))
    if "medications" in sections:
        templates["medicationRequests"] = f"MedicationRequest?patient={_PATIENT}&status=active,on-hold"
        templates["medicationStatements"] = f"MedicationStatement?patient={_PATIENT}&status=active,on-hold"
    # Labs and screenings: the rules read the latest value of each test or instrument, so each gets a key
    # of its own bounded to its most recent results (one key for all would let a busy test crowd out the
    # others). CDS Hooks 2.0 prefetch tokens cannot compute a date (no "today - N"), hence _sort/_count.
    if "labs" in sections:
        tests = values.get("lab")
        lab_tests = _vocab(ruleset, "lab_test")
        for test in lab_tests:
            if tests is None or test in tests:
                recent(f"labs{_camel(test)}", _targets(f"lab.{test}"), len(lab_tests))
    if "screenings" in sections:
        instruments = values.get("screening")
        known_instruments = _vocab(ruleset, "instrument")
        for instrument in known_instruments:
            if instruments is None or instrument in instruments:
                recent(f"screenings{_camel(instrument)}", _targets(f"screening.{instrument}"), len(known_instruments))
    if "allergies" in sections:
        templates["allergies"] = f"AllergyIntolerance?patient={_PATIENT}"
    return dict(sorted(templates.items()))


COMBINED_PREFETCH_KEYS = ("labs", "screenings")
"""Earlier discoveries asked for all labs under ``labs`` and all screenings under ``screenings``, unbounded. A
client built from them still sends those keys: their bundles are read like the bounded per-test keys
(the reader keeps the most recent items of each kind), so a request with ``labs`` needs no ``labsInr``."""


def prefetch_provided(key: str, prefetch: Mapping[str, Any]) -> bool:
    """Whether the request provides what the prefetch ``key`` asks for (itself, or the combined key of old)."""
    if prefetch.get(key) is not None:
        return True
    return any(
        key.startswith(combined) and key != combined and prefetch.get(combined) is not None
        for combined in COMBINED_PREFETCH_KEYS
    )


def _targets(target: str) -> Callable[[ObservationEntry], bool]:
    """Whether an Observation map entry fills ``target`` or a part of it (``screening.phq9.item9``)."""
    return lambda e: e.target == target or e.target.startswith(target + ".")


def _camel(code: str) -> str:
    """``start_back`` -> ``StartBack``: the tail of a prefetch key."""
    return "".join(part.capitalize() for part in code.split("_"))


def _vocab(ruleset: Ruleset, name: str) -> tuple[str, ...]:
    """The codes of one of the ruleset's vocabularies, in the order it lists them."""
    vocabulary = ruleset.vocabularies.get(name)
    return tuple(c.code for c in vocabulary.codes) if vocabulary is not None else ()


def prefetch_from_bundle(bundle: Mapping[str, Any], templates: Mapping[str, str], patient_id: str) -> dict[str, Any]:
    """Answer prefetch templates from a Bundle, as a CDS client would: for tests, examples and benchmarks.

    Understands what :func:`prefetch_templates` writes: ``Patient/{{context.patientId}}`` (the Patient) and
    ``Type?patient=...`` searches with ``code``, ``category`` and ``status`` token parameters (comma: or),
    ``_sort=-date`` (newest first) and ``_count`` (one page of at most that many; ``total`` counts all).
    Each search is answered with a ``searchset`` Bundle, empty when nothing matches.
    """
    resources = [e["resource"] for e in bundle.get("entry", []) if isinstance(e, Mapping) and "resource" in e]
    out: dict[str, Any] = {}
    for key, template in templates.items():
        query = template.replace(_PATIENT, patient_id)
        if "?" not in query:
            rtype, _, rid = query.partition("/")
            out[key] = next((r for r in resources if r.get("resourceType") == rtype and r.get("id") == rid), None)
            continue
        rtype, _, params = query.partition("?")
        wanted: dict[str, set[str]] = {}
        sort, count = None, None
        for part in params.split("&"):
            name, _, value = part.partition("=")
            if name == "_sort":
                sort = value
            elif name == "_count":
                count = int(value)
            elif name != "patient":
                wanted[name] = set(value.split(","))

        def matches(r: Mapping[str, Any], wanted: dict[str, set[str]] = wanted, rtype: str = rtype) -> bool:
            if r.get("resourceType") != rtype:
                return False
            for name, values in wanted.items():
                if name == "status" and r.get("status") not in values:
                    return False
                if name == "code":
                    codes = {f"{c.get('system')}|{c.get('code')}" for c in r.get("code", {}).get("coding", [])}
                    if not codes & values:
                        return False
                if name == "category":
                    cats = {c.get("code") for cat in r.get("category", []) for c in cat.get("coding", [])}
                    if not cats & values:
                        return False
            return True

        found = [r for r in resources if matches(r)]
        if sort == "-date":  # newest first, undated last
            found.sort(key=lambda r: str(r.get("id", "")))
            found.sort(key=lambda r: (_search_date(r) is not None, _search_date(r) or ""), reverse=True)
        elif sort is not None:
            raise ValueError(f"prefetch_from_bundle does not sort by {sort!r}")
        entries = [{"resource": r} for r in (found if count is None else found[:count])]
        out[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": entries}
    return out


def _search_date(resource: Mapping[str, Any]) -> str | None:
    """The value of the ``date`` search parameter of an Observation or Procedure (its start, as text)."""
    for name in ("effectiveDateTime", "effectiveInstant", "performedDateTime", "issued"):
        value = resource.get(name)
        if isinstance(value, str):
            return value
    for name in ("effectivePeriod", "performedPeriod"):
        period = resource.get(name)
        if isinstance(period, Mapping) and isinstance(period.get("start"), str):
            return str(period["start"])
    return None
