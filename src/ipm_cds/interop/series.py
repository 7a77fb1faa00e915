"""FHIR R4 Observations of outcome scores as the patient model's ``measurements`` (issue 16).

A small self-contained mapping for the lead to wire into the FHIR reader: it takes Observation resources
(JSON mappings, as a Bundle's entries hold them) and returns the measurement dicts that
:class:`ipm_cds.model.patient.Measurement` validates, plus the Observations it could not read, each with why.
Instrument codes come from ``codes`` (LOINC code → instrument code of the ruleset's ``outcome_measure``
vocabulary); the default holds only codes checked against LOINC's names (below), and a deployment
adds the rest of its instruments (ODI, NDI, PROMIS short forms, PGIC) from its terminology service, or
sends them in the local system :data:`OUTCOME_MEASURE_SYSTEM`, whose codes are exactly the vocabulary's.
The complaint's region is read from ``bodySite`` through ``regions`` (code → body_region code); a body
site whose text is itself a region code is accepted as is.

The FHIR reader (:mod:`ipm_cds.interop.fhir`) reads the same codes into ``measurements`` of the patient
document, with the complaint from ``focus`` too (:mod:`ipm_cds.interop.fhir.observations_series`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "LOCAL_OBSERVATION_INSTRUMENTS",
    "LOINC",
    "LOINC_INSTRUMENTS",
    "OUTCOME_MEASURE_SYSTEM",
    "WHOLE_PATIENT_INSTRUMENTS",
    "observations_to_measurements",
]

LOINC = "http://loinc.org"

OUTCOME_MEASURE_SYSTEM = "https://ipm-cds.invalid/fhir/CodeSystem/outcome-measure"
"""The local code system of outcome instruments: its codes are the ruleset's ``outcome_measure`` codes
(``nrs``, ``peg``, ``odi``, ``ndi``, ``rmdq``, ``promis_pf``, ``promis_pi``, ``pgic``, ``phq9``, ``gad7``), the
way every local system of ``maps/systems.yaml`` holds exactly one vocabulary's codes."""

LOCAL_OBSERVATION_INSTRUMENTS: Mapping[str, str] = {"odi_pct": "odi", "ndi": "ndi", "phq9": "phq9", "gad7": "gad7"}
"""Codes of the local ``observation`` system (``maps/observations.yaml``) that are instrument scores too."""

WHOLE_PATIENT_INSTRUMENTS = frozenset({"phq9", "gad7", "pgic"})
"""Instruments about the whole patient, not one complaint: their measurements carry no region."""

LOINC_INSTRUMENTS: Mapping[str, str] = {
    "72514-3": "nrs",  # Pain severity - 0-10 verbal numeric rating [Score] - Reported
    "44261-6": "phq9",  # Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]
    "70274-6": "gad7",  # Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]
    # Mean score [PEG], "the average of the 3 individual item scores" (Krebs 2009, PMID 19418100), as LOINC's
    # entry reads in https://www.healthassure.in/codes/loinc-91147-9-mean-score-peg (a secondary listing).
    "91147-9": "peg",
}
"""LOINC codes of instrument total scores known to ipm-core's ``instrument`` vocabulary."""

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_READABLE = {"final", "amended", "corrected", "preliminary"}


def _date(obs: Mapping[str, Any]) -> str | None:
    for key in ("effectiveDateTime", "issued"):
        value = obs.get(key)
        if isinstance(value, str) and (m := _DATE.match(value)):
            return m.group(1)
    period = obs.get("effectivePeriod")
    if isinstance(period, Mapping) and isinstance(period.get("start"), str) and (m := _DATE.match(period["start"])):
        return m.group(1)
    return None


def _score(obs: Mapping[str, Any]) -> float | None:
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, Mapping) and isinstance(quantity.get("value"), int | float):
        return float(quantity["value"])
    value = obs.get("valueInteger")
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return None


def _region(obs: Mapping[str, Any], regions: Mapping[str, str]) -> str | None:
    site = obs.get("bodySite")
    if not isinstance(site, Mapping):
        return None
    for coding in site.get("coding") or []:
        if isinstance(coding, Mapping) and coding.get("code") in regions:
            return regions[str(coding["code"])]
    text = site.get("text")
    if isinstance(text, str) and text.strip().lower() in set(regions.values()):
        return text.strip().lower()
    return None


def observations_to_measurements(
    observations: Iterable[Mapping[str, Any]],
    *,
    codes: Mapping[str, str] = LOINC_INSTRUMENTS,
    regions: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """``(measurements, unread)``: the measurement dicts, and ``(observation id, reason)`` for each
    Observation that is an instrument score but could not be read (entered in error, no date, no value).
    Observations of other codes are not instruments and are left to the rest of the reader."""
    regions = regions or {}
    out: list[dict[str, Any]] = []
    unread: list[tuple[str, str]] = []
    for obs in observations:
        if obs.get("resourceType") != "Observation":
            continue
        code: Mapping[str, Any] = obs["code"] if isinstance(obs.get("code"), Mapping) else {}
        instrument = next(
            (
                codes[c["code"]] if c.get("system") == LOINC else str(c["code"])
                for c in code.get("coding") or []
                if isinstance(c, Mapping)
                and isinstance(c.get("code"), str)
                and ((c.get("system") == LOINC and c["code"] in codes) or c.get("system") == OUTCOME_MEASURE_SYSTEM)
            ),
            None,
        )
        if instrument is None:
            continue
        ident = str(obs.get("id") or "?")
        if obs.get("status") not in _READABLE:
            unread.append((ident, f"status {obs.get('status')!r} is not a result to read"))
            continue
        day, score = _date(obs), _score(obs)
        if day is None:
            unread.append((ident, "no effective date"))
            continue
        if score is None:
            unread.append((ident, "no numeric value (valueQuantity or valueInteger)"))
            continue
        item: dict[str, Any] = {"instrument": instrument, "score": score, "date": day}
        region = _region(obs, regions)
        if region is not None:
            item["region"] = region
        out.append(item)
    out.sort(key=lambda m: (m["instrument"], m.get("region") or "", m["date"], m["score"]))
    return out, unread
