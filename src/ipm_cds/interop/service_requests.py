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
- The region, never guessed: ``bodySite``; else the region of the levels when they all lie in one (L4-L5:
  lumbar) and the code allows it; else the code's, when the code fixes one region (``maps/procedures.yaml``
  ``regions``, from the CPT descriptors: 64493-64495 lumbar facet joints, 27096 the sacroiliac joint, the
  local genicular codes the knee). Otherwise the request carries no region and its verdict is "cannot tell
  yet", naming the region as missing data (64490 is "cervical or thoracic", 64483 "lumbar or sacral").
- ``orderDetail``: the approach, the image guidance and the steroid agent, each a coding of its local
  system (the codes of the ruleset's ``procedure_approach`` and ``steroid_agent`` vocabularies, and
  fluoroscopy / ct / ultrasound / landmark); the steroid dose in mg from the steroid-dose extension
  (``valueQuantity``, UCUM ``mg``).
- ``occurrenceDateTime`` or ``occurrencePeriod.start``: the planned date.

What cannot be mapped is returned as a reason, never guessed: no known intervention code, a status that is not
under consideration.
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
    "NOT_AN_INTERVENTION",
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
NOT_AN_INTERVENTION = "not one of the ruleset's interventions (local or CPT code)"
"""The reason given for a ServiceRequest that orders something else (a lab test): not ipm-cds's business."""


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
    found = resource.get("extension")
    return [e for e in found if isinstance(e, Mapping) and e.get("url") == url] if isinstance(found, list) else []


def _interventions(codings: Sequence[tuple[str, str]], ruleset: Ruleset) -> list[str]:
    local = sorted({c for s, c in codings if s == INTERVENTION_SYSTEM and c in ruleset.interventions})
    if len(local) == 1:
        return local
    cpt = {c for s, c in codings if s == CPT_SYSTEM}
    found = {code for code, item in ruleset.interventions.items() if cpt & set(item.cpt)}
    from .maps import load_maps  # HCPCS Level II codes the maps hold (G0260: a sacroiliac joint injection)

    maps = load_maps()
    hcpcs = maps.uri("hcpcs")
    found |= {i for s, c in codings if s == hcpcs and c in maps.cpt for i in maps.cpt[c].interventions}
    return sorted(i for i in found if i in ruleset.interventions)


def _is_level(value: str) -> bool:
    """A spinal level the patient model accepts (a malformed one is left out, not an error for the whole hook)."""
    from pydantic import TypeAdapter, ValidationError

    from ..model.patient import SpinalLevel

    try:
        TypeAdapter(SpinalLevel).validate_python(value)
    except ValidationError:
        return False
    return True


_LEVEL_REGION = {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}


def _code_regions(codings: Sequence[tuple[str, str]], intervention: str, ruleset: Ruleset) -> set[str] | None:
    """The regions the order's code allows (``maps/procedures.yaml`` ``regions``, from the CPT descriptors):
    those of its CPT code, or for the local intervention code those every CPT code of the intervention names
    (genicular procedures: the knee). None when the code names no region."""
    from .maps import load_maps

    maps = load_maps()
    table, systems = maps.cpt, {CPT_SYSTEM, maps.uri("hcpcs")}
    cpt = [c for s, c in codings if s in systems and c in table and intervention in table[c].interventions]
    if not cpt:
        cpt = [c for c in ruleset.interventions[intervention].cpt if c in table]
    named = [set(table[c].regions) for c in cpt]
    if not named or any(not r for r in named):
        return None
    return set.union(*named)


def _region(body_site: str | None, levels: Sequence[str], code_regions: set[str] | None, known: set[str]) -> str | None:
    """The target region, never guessed: bodySite; else the region of every level, when they share one (and
    the code allows it); else the code's region, when it names exactly one; else None (missing data)."""
    if body_site is not None:
        return body_site
    by_level = {_LEVEL_REGION.get(level[:1]) for level in levels}
    if len(by_level) == 1 and None not in by_level:
        (region,) = by_level
        if region in known and (code_regions is None or region in code_regions):
            return region
        return None
    if code_regions is not None and len(code_regions) == 1 and not levels:
        (region,) = code_regions
        return region if region in known else None
    return None


def requested_procedures(service_request: Mapping[str, Any], ruleset: Ruleset) -> MappedRequests:
    """The requested procedures one ServiceRequest orders (several when its CPT code is shared)."""
    ref = f"ServiceRequest/{service_request.get('id', '')}"
    if service_request.get("resourceType") != "ServiceRequest":
        return MappedRequests([], [(ref, "not a ServiceRequest")])
    fhir_status = service_request.get("status")
    period = service_request.get("occurrencePeriod")
    occurrence = _date(service_request.get("occurrenceDateTime")) or _date(
        period.get("start") if isinstance(period, Mapping) else None
    )
    if fhir_status == "active":
        status = "scheduled" if occurrence else "planned"
    elif fhir_status in _STATUS:
        status = _STATUS[fhir_status]
    else:
        return MappedRequests([], [(ref, f"status {fhir_status!r}: not a procedure under consideration")])
    codes = _interventions(_codings(service_request.get("code")), ruleset)
    if not codes:
        return MappedRequests([], [(ref, NOT_AN_INTERVENTION)])
    sites = _concepts(service_request.get("bodySite"))
    regions = ruleset.vocabularies.get("body_region")
    known_regions = {c.code for c in regions.codes} if regions is not None else set()
    body_site = next(
        (c for s in sites for sys, c in _codings(s) if sys == BODY_REGION_SYSTEM and c in known_regions), None
    )
    side = next((str(e["valueCode"]) for e in _ext(service_request, LATERALITY_EXTENSION) if e.get("valueCode")), None)
    side = side or next(
        (_SNOMED_LATERALITY[c] for s in sites for sys, c in _codings(s) if sys == SNOMED and c in _SNOMED_LATERALITY),
        None,
    )
    levels = [
        str(e["valueString"])
        for e in _ext(service_request, SPINAL_LEVEL_EXTENSION)
        if isinstance(e.get("valueString"), str) and _is_level(str(e["valueString"]))
    ]
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
        "levels": levels,
        "side": side,
        "approach": local(APPROACH_SYSTEM, vocabulary("procedure_approach")),
        "guidance": local(GUIDANCE_SYSTEM, _GUIDANCE),
        "steroid_agent": local(STEROID_SYSTEM, vocabulary("steroid_agent")),
        "planned_date": occurrence,
    }
    for e in _ext(service_request, STEROID_DOSE_EXTENSION):
        quantity = e.get("valueQuantity")
        if not isinstance(quantity, Mapping):
            continue
        value = quantity.get("value")
        if (
            quantity.get("code", quantity.get("unit")) == "mg"
            and isinstance(value, int | float)
            and doc["steroid_agent"]
        ):
            doc["steroid_dose_mg"] = float(value)
    doc = {k: v for k, v in doc.items() if v not in (None, [])}
    codings = _codings(service_request.get("code"))
    out = []
    for code in codes:
        region = _region(body_site, levels, _code_regions(codings, code, ruleset), known_regions)
        out.append({**doc, "intervention": code, **({"region": region} if region is not None else {})})
    return MappedRequests(out, [])


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
