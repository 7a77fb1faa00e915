"""The reader's core: collecting and validating resources, references, the patient, and the element
readers every resource family shares. The families (conditions, observations, medications, procedures)
add their handlers in modules of their own; :mod:`.reader` puts them together."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import Problem
from ..maps import RULESET_VOCABULARIES, VOCABULARIES, Maps, normalise_icd10
from .common import (
    _SUBJECT_FIELDS,
    MAX_RESOURCES,
    FhirInputError,
    Unmapped,
    UnmappedKind,
    _code_text,
    _codings,
    _Pain,
    _Pending,
    _Proc,
    _ref_key,
    _Screen,
    _to_date,
    _Value,
)

if TYPE_CHECKING:
    from ...ruleset.loader import Ruleset


READ_TYPES = frozenset(
    {
        "Patient",
        "Condition",
        "Observation",
        "MedicationRequest",
        "MedicationStatement",
        "Medication",
        "Procedure",
        "AllergyIntolerance",
        "DiagnosticReport",
        "ImagingStudy",
        "ServiceRequest",
    }
)
"""Resource types the reader validates and reads (ServiceRequest: draft orders); any other is reported."""


class _ReaderBase:
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
        self.not_read: list[tuple[str, str]] = []  # (label, resourceType) of resources of a type not read
        # Encounters, read from the raw JSON (only class, status, period and subject): one without the `class` R4
        # requires is reported, never refused (.encounters)
        self.encounters: list[tuple[str, Mapping[str, Any]]] = []
        self.hospitalised: list[_Value] = []
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
            if "type" not in shell:
                shell["type"] = "collection"  # a prefetch Bundle without type is still read (its entries are)
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
        if rtype == "Encounter":
            if not self._first(label, where):
                return
            self.by_ref[label] = None
            self.encounters.append((label, resource))
            return
        if rtype not in READ_TYPES:
            # Liberal in what it reads: a type the reader does not use is reported, not validated, so a
            # Practitioner or an Encounter without `class` never refuses the request.
            try:
                self._model_class(rtype)
            except ValueError:
                self.problems.append(Problem(f"unknown resourceType {rtype!r} (not a FHIR R4 resource)", field=where))
                return
            if not self._first(label, where):
                return
            self.by_ref[label] = None
            self.not_read.append((label, rtype))
            return
        model = self._validate(rtype, resource, f"{where} ({label})" if label != where else where)
        if model is None:
            return
        if not self._first(label, where):
            return
        self.resources.append((label, model))
        self.by_ref[label] = model
        if full_url:
            self.aliases[full_url] = label
        for contained in getattr(model, "contained", None) or []:
            cid = getattr(contained, "id", None)
            if cid:
                self.by_ref[f"{label}#{cid}"] = contained

    def _first(self, label: str, where: str) -> bool:
        """Whether no resource with ``label`` was read yet; a second one is reported (the first one stands)."""
        if label in self.by_ref:
            self.problems.append(Problem(f"{label} appears twice", field=where))
            return False
        return True

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

    def _not_read(self, ref: str, codings: Sequence[tuple[str, str]], code_text: str | None) -> bool:
        """Report a code the terminology tables recognise but no rule reads (True when there is one)."""
        icd = self.maps.uri("icd10cm")
        for system, code in codings:
            entry = self.maps.recognised_by_code.get((system, normalise_icd10(code) if system == icd else code))
            if entry is not None:
                why = f"{entry.recognised} ({entry.display}; {entry.source}): recognised, but no rule reads it"
                self._skip(ref, "not_read", why, code_text)
                return True
        return False

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
