"""FHIR R4 ServiceRequest -> requested procedures (``PatientCase.requested``): what the clinician is ordering.

One small, self-contained mapping over the ServiceRequest JSON (a plain mapping, no FHIR library), for the
FHIR reader and the CDS Hooks ``order-select`` / ``order-sign`` hooks alike:

- ``status``: ``draft`` -> ``requested``; ``active`` -> ``scheduled`` with an occurrence date, else
  ``planned``; ``on-hold`` -> ``planned``. Any other status (completed, revoked, entered-in-error, unknown)
  is not a procedure under consideration and maps to nothing.
- ``code``: the local intervention code system (``https://ipm-cds.invalid/fhir/CodeSystem/intervention``)
  names one intervention of the ruleset; otherwise each CPT code is looked up in the intervention
  catalogue's ``cpt`` lists. A CPT code that several interventions share (64493: a medial branch block or
  an intra-articular injection) yields one requested procedure for each, each assessed.
- ``bodySite``: the region (local body-region system), the side (SNOMED laterality qualifiers, or the
  laterality extension on the resource); levels from the spinal-level extension (repeating).
- ``orderDetail``: the approach, the image guidance and the steroid agent, each a coding of its local
  system (the codes of the ruleset's ``procedure_approach`` and ``steroid_agent`` vocabularies, and
  fluoroscopy / ct / ultrasound / landmark); the steroid dose in mg from the steroid-dose extension
  (``valueQuantity``, UCUM ``mg``).
- ``occurrenceDateTime`` or ``occurrencePeriod.start``: the planned date.

What cannot be mapped is returned as a reason, never guessed: no known intervention code, no target region.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ruleset.loader import Ruleset

__all__ = [
    "APPROACH_SYSTEM",
    "GUIDANCE_SYSTEM",
    "STEROID_DOSE_EXTENSION",
    "STEROID_SYSTEM",
    "MappedRequests",
    "requested_from_bundle",
    "requested_procedures",
]

_BASE = "https://ipm-cds.invalid/fhir"
INTERVENTION_SYSTEM = f"{_BASE}/CodeSystem/intervention"
BODY_REGION_SYSTEM = f"{_BASE}/CodeSystem/body-region"
APPROACH_SYSTEM = f"{_BASE}/CodeSystem/procedure-approach"
GUIDANCE_SYSTEM = f"{_BASE}/CodeSystem/image-guidance"
STEROID_SYSTEM = f"{_BASE}/CodeSystem/steroid-agent"
STEROID_DOSE_EXTENSION = f"{_BASE}/StructureDefinition/steroid-dose"
LATERALITY_EXTENSION = f"{_BASE}/StructureDefinition/laterality"
SPINAL_LEVEL_EXTENSION = f"{_BASE}/StructureDefinition/spinal-level"
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"
# SNOMED CT laterality qualifier values (the FHIR R5 BodyStructure laterality value set), as maps/qualifiers.yaml.
_SNOMED_LATERALITY = {"7771000": "left", "24028007": "right", "51440002": "bilateral"}
_GUIDANCE = ("fluoroscopy", "ct", "ultrasound", "landmark")
_STATUS = {"draft": "requested", "on-hold": "planned"}


@dataclass(frozen=True)
class MappedRequests:
    """Requested-procedure documents, and the ServiceRequests that could not be read as one (reference, why)."""

    requested: list[dict[str, Any]]
    unmapped: list[tuple[str, str]]


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, Mapping):
        return []
    out = []
    for coding in concept.get("coding") or []:
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            out.append((str(coding.get("system") or ""), str(coding["code"])))
    return out


def _concepts(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value] if value is not None else []


def _date(value: Any) -> str | None:
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-":
        return value[:10]
    return None


def _ext(resource: Mapping[str, Any], url: str) -> list[Mapping[str, Any]]:
    return [e for e in resource.get("extension") or [] if isinstance(e, Mapping) and e.get("url") == url]


def _interventions(codings: Sequence[tuple[str, str]], ruleset: Ruleset) -> list[str]:
    local = sorted({c for s, c in codings if s == INTERVENTION_SYSTEM and c in ruleset.interventions})
    if len(local) == 1:
        return local
    cpt = {c for s, c in codings if s == CPT_SYSTEM}
    return sorted(code for code, item in ruleset.interventions.items() if cpt & set(item.cpt))


def requested_procedures(service_request: Mapping[str, Any], ruleset: Ruleset) -> MappedRequests:
    """The requested procedures one ServiceRequest orders (several when its CPT code is shared)."""
    ref = f"ServiceRequest/{service_request.get('id', '')}"
    if service_request.get("resourceType") != "ServiceRequest":
        return MappedRequests([], [(ref, "not a ServiceRequest")])
    fhir_status = service_request.get("status")
    occurrence = _date(service_request.get("occurrenceDateTime")) or _date(
        (service_request.get("occurrencePeriod") or {}).get("start")
    )
    if fhir_status == "active":
        status = "scheduled" if occurrence else "planned"
    elif fhir_status in _STATUS:
        status = _STATUS[fhir_status]
    else:
        return MappedRequests([], [(ref, f"status {fhir_status!r}: not a procedure under consideration")])
    codes = _interventions(_codings(service_request.get("code")), ruleset)
    if not codes:
        return MappedRequests([], [(ref, "not one of the ruleset's interventions (local or CPT code)")])
    sites = _concepts(service_request.get("bodySite"))
    regions = ruleset.vocabularies.get("body_region")
    known_regions = {c.code for c in regions.codes} if regions is not None else set()
    region = next(
        (c for s in sites for sys, c in _codings(s) if sys == BODY_REGION_SYSTEM and c in known_regions), None
    )
    if region is None:
        return MappedRequests([], [(ref, "no target region (bodySite with a body-region code)")])
    side = next((str(e["valueCode"]) for e in _ext(service_request, LATERALITY_EXTENSION) if e.get("valueCode")), None)
    side = side or next(
        (_SNOMED_LATERALITY[c] for s in sites for sys, c in _codings(s) if sys == SNOMED and c in _SNOMED_LATERALITY),
        None,
    )
    levels = [str(e["valueString"]) for e in _ext(service_request, SPINAL_LEVEL_EXTENSION) if e.get("valueString")]
    details = [c for d in _concepts(service_request.get("orderDetail")) for c in _codings(d)]

    def local(system: str, allowed: Iterable[str]) -> str | None:
        wanted = set(allowed)
        return next((c for s, c in details if s == system and c in wanted), None)

    def vocabulary(name: str) -> list[str]:
        held = ruleset.vocabularies.get(name)
        return [c.code for c in held.codes] if held is not None else []

    doc: dict[str, Any] = {
        "id": str(service_request["id"]) if service_request.get("id") else None,
        "status": status,
        "region": region,
        "levels": levels,
        "side": side,
        "approach": local(APPROACH_SYSTEM, vocabulary("procedure_approach")),
        "guidance": local(GUIDANCE_SYSTEM, _GUIDANCE),
        "steroid_agent": local(STEROID_SYSTEM, vocabulary("steroid_agent")),
        "planned_date": occurrence,
    }
    for e in _ext(service_request, STEROID_DOSE_EXTENSION):
        quantity = e.get("valueQuantity") or {}
        value = quantity.get("value")
        if (
            quantity.get("code", quantity.get("unit")) == "mg"
            and isinstance(value, int | float)
            and doc["steroid_agent"]
        ):
            doc["steroid_dose_mg"] = float(value)
    doc = {k: v for k, v in doc.items() if v not in (None, [])}
    return MappedRequests([{**doc, "intervention": code} for code in codes], [])


def requested_from_bundle(
    bundle: Mapping[str, Any], ruleset: Ruleset, selections: Sequence[str] | None = None
) -> MappedRequests:
    """The requested procedures of every ServiceRequest in a Bundle (CDS Hooks ``draftOrders``), or only of
    the ``selections`` (``ServiceRequest/ID`` references, order-select)."""
    wanted = set(selections) if selections is not None else None
    requested: list[dict[str, Any]] = []
    unmapped: list[tuple[str, str]] = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            continue
        ref = f"{resource.get('resourceType')}/{resource.get('id', '')}"
        if wanted is not None and ref not in wanted:
            continue
        if resource.get("resourceType") != "ServiceRequest":
            unmapped.append((ref, "not a ServiceRequest"))
            continue
        mapped = requested_procedures(resource, ruleset)
        requested += mapped.requested
        unmapped += mapped.unmapped
    return MappedRequests(requested, unmapped)
