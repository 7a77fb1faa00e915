"""CDS Hooks prefetch: the templates the ruleset needs, and answering them from a Bundle."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..maps import ObservationEntry, load_maps
from .common import KEEP_RECENT

if TYPE_CHECKING:
    from ...ruleset.loader import Ruleset


_PATIENT = "{{context.patientId}}"


def prefetch_templates(ruleset: Ruleset) -> dict[str, str]:
    """CDS Hooks prefetch templates for the data the ruleset's rules read, and only that.

    The rules' patterns name fact types and the fields they test; each fact field comes from a patient
    model field (``ipm_cds.model.facts.schema``), and each patient-model field is read from a FHIR resource
    type or from Observation codes (the maps). Observation queries name their codes (``system|code``).
    Each lab test and screening instrument has a key of its own asking for its most recent results
    (``&_sort=-date&_count=N``, N the reader's minimum per kind under :data:`KEEP_RECENT`): CDS Hooks 2.0
    prefetch tokens cannot compute a date, so a window of dates cannot be asked for.
    """
    from ...model.facts.schema import BASE_FACT_TYPES
    from ...ruleset import ir

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

    for source in sorted(str(f) for f in patient_fields):  # a patient field made from labs (renal_gfr)
        made = re.fullmatch(r"labs\[test=([a-z0-9_|]+)\]\.value", source)
        if made:
            sections.add("labs")
            if values.get("lab", set()) is not None:
                values["lab"] = (values.get("lab") or set()) | set(made.group(1).split("|"))
    if "hospitalised" in patient_fields:  # an inpatient admission in progress (.encounters)
        templates["encounters"] = f"Encounter?patient={_PATIENT}&status=in-progress"
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
    if sections & {"procedures", "coronary_stents"}:  # coronary stents: stent-placement Procedures
        templates["procedures"] = f"Procedure?patient={_PATIENT}"
    if "procedures" in sections:
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
    from .observations_series import series_templates  # measurements and MME history (issue 16)

    templates |= series_templates(sections, templates, ruleset)
    return dict(sorted(templates.items()))


COMBINED_PREFETCH_KEYS = ("labs", "screenings")
"""Earlier discoveries asked for all labs under ``labs`` and all screenings under ``screenings``, unbounded. A
client built from them still sends those keys: their bundles are read like the bounded per-test keys
(the reader keeps the most recent items of each kind), so a request with ``labs`` needs no ``labsInr``."""


OPTIONAL_PREFETCH_KEYS = frozenset({"encounters"})
"""Keys a request may leave out although the discovery names them: without ``encounters`` the patient's
``hospitalised`` is not recorded, which the rules report as missing and never read as "not in hospital" (a client
built from an earlier discovery does not send it)."""


def prefetch_provided(key: str, prefetch: Mapping[str, Any]) -> bool:
    """Whether the request provides what the prefetch ``key`` asks for (itself, or the combined key of old).
    The keys of the series (:data:`.observations_series.SERIES_PREFETCH_KEYS`) are optional: a client built
    from an earlier discovery does not send them, and the record is then read without series; so is
    ``encounters`` (:data:`OPTIONAL_PREFETCH_KEYS`)."""
    from .observations_series import SERIES_PREFETCH_KEYS

    if prefetch.get(key) is not None or key in SERIES_PREFETCH_KEYS or key in OPTIONAL_PREFETCH_KEYS:
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
