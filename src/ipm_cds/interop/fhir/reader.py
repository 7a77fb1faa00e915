"""The whole reader: the resource families put together, the patient document assembled, and the
entry points :func:`read_fhir`, :func:`read_bundle` and :func:`read_prefetch`."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from ...errors import PatientDataError, Problem
from ...model.patient import PatientCase, parse_patient
from ..maps import load_maps
from .common import (
    _DATED_LISTS,
    _T,
    _UNDATED_LISTS,
    KEEP_RECENT,
    FhirInputError,
    FhirMapping,
    _last_day,
    _ref_key,
    _shares,
    _Value,
)
from .conditions import _ConditionReader
from .encounters import _EncounterReader
from .medications import _MedicationReader
from .observations import _ObservationReader
from .observations_series import _SeriesReader
from .procedures import _ProcedureReader

if TYPE_CHECKING:
    from ...ruleset.loader import Ruleset


class _Reader(
    _SeriesReader, _ConditionReader, _ObservationReader, _MedicationReader, _ProcedureReader, _EncounterReader
):
    """Collects resources, validates them, maps them, and assembles the patient document."""

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
            "ServiceRequest": self._service_request,
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
        self._encounters()
        for ref, rtype in self.not_read:
            self._skip(ref, "unsupported_resource", f"ipm-cds does not read {rtype} resources (not validated)")
        self._place_pending()
        self._unused_context()
        document, sources = self._assemble()
        self._series(document, sources)  # measurements and mme_history (issue 16): .observations_series
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

    def _service_request(self, ref: str, model: Any) -> None:
        """A draft or active ServiceRequest for one of the ruleset's interventions: a requested procedure
        (:mod:`ipm_cds.interop.service_requests`); anything else is reported, never guessed."""
        if self.ruleset is None:
            self._skip(ref, "unsupported_resource", "a ServiceRequest is read against a ruleset's interventions")
            return
        from ..service_requests import requested_procedures

        mapped = requested_procedures(model.model_dump(mode="json", exclude_none=True), self.ruleset)
        for _, why in mapped.unmapped:
            self._skip(ref, "unknown_code", why)
        for doc in mapped.requested:
            self.lists["requested"].append((ref, doc, {}))

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

        if self.hospitalised:  # an inpatient admission in progress (.encounters); several: the latest is the source
            doc["hospitalised"] = self._latest(self.hospitalised, "hospitalised", sources)

        pains = []
        for i, pain in enumerate(sorted(self.pains.values(), key=lambda p: p.ref)):
            item: dict[str, Any] = {"region": pain.region, "character": pain.character}
            sources[f"pain[{i}]"] = pain.ref
            if pain.laterality:
                item["laterality"] = pain.laterality
            if pain.onset:
                item["onset_date"] = pain.onset
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
            lambda p: _last_day(p.doc["date"]),
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
            item = {"instrument": screen.instrument}
            if screen.score is not None:
                item["score"] = screen.score
            if screen.category is not None:
                item["category"] = screen.category
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

        lists = ("imaging", "exam", "red_flags", "medications", "labs", "conditions", "allergies", "requested")
        for name in (*lists, "coronary_stents"):
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
