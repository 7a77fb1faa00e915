"""FHIR R4 Observations of outcome scores as the patient model's ``measurements`` (issue 16).

A small self-contained mapping: it takes Observation resources (JSON mappings, as a Bundle's entries hold them)
and returns the measurement dicts that :class:`ipm_cds.model.patient.Measurement` validates, plus the
Observations it could not read, each with why. Instrument codes come from the terminology tables
(:func:`loinc_instruments`: the LOINC codes of ``terminology/observations.json``, generated from published
sources by ``scripts/terminology/generate.py``, and those of ``maps/observations.yaml`` that name an
``instrument``), each with the units a score may carry (the ODI in % only, PROMIS T-scores without a unit): a
score in another unit is reported, never read. A deployment may pass its own ``codes`` (LOINC code ->
instrument) instead, or send the local system :data:`OUTCOME_MEASURE_SYSTEM`, whose codes are exactly the
vocabulary's. The complaint's region is read from ``bodySite`` through ``regions`` (code -> body_region code); a
body site whose text is itself a region code is accepted as is.

The FHIR reader (:mod:`ipm_cds.interop.fhir`) reads the same codes into ``measurements`` of the patient
document, with the complaint from ``focus`` too (:mod:`ipm_cds.interop.fhir.observations_series`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .maps import InstrumentCode, load_maps

__all__ = [
    "LOINC",
    "OUTCOME_MEASURE_SYSTEM",
    "WHOLE_PATIENT_INSTRUMENTS",
    "instrument_codes",
    "local_observation_instruments",
    "loinc_instruments",
    "observations_to_measurements",
]

LOINC = "http://loinc.org"

OUTCOME_MEASURE_SYSTEM = "https://ipm-cds.invalid/fhir/CodeSystem/outcome-measure"
"""The local code system of outcome instruments: its codes are the ruleset's ``outcome_measure`` codes
(``nrs``, ``peg``, ``odi``, ``ndi``, ``rmdq``, ``promis_pf``, ``promis_pi``, ``pgic``, ``phq9``, ``gad7``), the
way every local system of ``maps/systems.yaml`` holds exactly one vocabulary's codes."""

WHOLE_PATIENT_INSTRUMENTS = frozenset({"phq9", "gad7", "pgic"})
"""Instruments about the whole patient, not one complaint: their measurements carry no region."""


def instrument_codes() -> Mapping[tuple[str, str], InstrumentCode]:
    """(system URI, code) -> the instrument and its unit rule, from the terminology tables and maps."""
    return load_maps().instrument_by_code


def loinc_instruments() -> dict[str, str]:
    """LOINC code -> outcome instrument, as the terminology tables hold them."""
    return {code: rule.instrument for (system, code), rule in instrument_codes().items() if system == LOINC}


def local_observation_instruments() -> dict[str, str]:
    """Codes of the local ``observation`` system (``maps/observations.yaml``) that are instrument scores too."""
    local = load_maps().uri("observation")
    return {code: rule.instrument for (system, code), rule in instrument_codes().items() if system == local}


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


def _units(obs: Mapping[str, Any]) -> list[str] | None:
    """The units of a ``valueQuantity`` (code and unit), or None for a value without one (``valueInteger``)."""
    quantity = obs.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    return [str(quantity[k]) for k in ("code", "unit") if quantity.get(k) is not None]


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
    codes: Mapping[str, str] | None = None,
    regions: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """``(measurements, unread)``: the measurement dicts, and ``(observation id, reason)`` for each
    Observation that is an instrument score but could not be read (entered in error, no date, no value, a unit
    its instrument does not take). Observations of other codes are not instruments and are left to the rest of
    the reader. ``codes`` (LOINC code -> instrument) replaces the tables' codes and their unit rules."""
    regions = regions or {}
    rules = {c: r for (s, c), r in instrument_codes().items() if s == LOINC} if codes is None else {}
    if codes is None:
        codes = {c: r.instrument for c, r in rules.items()}
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
        rule = next(
            (rules[c["code"]] for c in code.get("coding") or [] if c.get("system") == LOINC and c.get("code") in rules),
            None,
        )
        given = _units(obs)
        if rule is not None and given is not None and not rule.accepts(given):
            unread.append((ident, f"unit {' / '.join(given) or '(none)'} not accepted for {instrument}"))
            continue
        item: dict[str, Any] = {"instrument": instrument, "score": score, "date": day}
        region = _region(obs, regions)
        if region is not None:
            item["region"] = region
        out.append(item)
    out.sort(key=lambda m: (m["instrument"], m.get("region") or "", m["date"], m["score"]))
    return out, unread
