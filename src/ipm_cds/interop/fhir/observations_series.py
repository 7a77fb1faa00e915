"""Series over time (issue 16): instrument scores as ``measurements`` and opioid orders as ``mme_history``.

Read once every other resource is read (:meth:`_SeriesReader._series`, called by the reader's assembly),
so that the pain complaints the scores belong to are known.

**Measurements.** Every Observation whose code (or one of whose ``component`` codes) is an outcome
instrument becomes one dated measurement: the instrument codes of the terminology tables
(:func:`ipm_cds.interop.series.instrument_codes`: LOINC NRS, PHQ-9, GAD-7, PEG and the PROMIS-29 physical
function and pain interference T-scores from ``terminology/observations.json``; the ODI 97909-6 and the local
``observation`` scores ``odi_pct``, ``ndi``, ``phq9``, ``gad7`` from ``maps/observations.yaml``), and the local
system :data:`~ipm_cds.interop.series.OUTCOME_MEASURE_SYSTEM` (whose codes are the ruleset's
``outcome_measure`` codes: ``odi``, ``ndi``, ``promis_pf`` ...). A score whose unit its instrument does not
take (an ODI not in %, a PROMIS T-score in a unit other than none, "1" or a UCUM annotation) is reported
``unknown_unit`` and left out, never read. The single-valued fields the same Observations feed
(``pain[].nrs``, ``screenings``) are read as before; an older score that fed no field but is a measurement is
no longer reported as superseded (it is in the document).

The complaint (``region``) of a pain or function score is read where the Observation says it, and only
there: ``bodySite`` in the body-region system, ``focus`` on a pain Condition, or a component whose value is
a body-region code. A score that says none (or two regions that disagree) is read without a region and
reported (``partial``): it is charted and classified overall, not tied to a procedure. PHQ-9, GAD-7 and
PGIC are about the whole patient and carry no region.

**MME history.** The daily MME over time from the opioid orders (MedicationRequest, MedicationStatement)
of the ruleset's medication catalogue that carry an MME factor, with the daily dose read as for
``medications`` (the CDC 2022 factor times the daily dose). What counts as active at a date:

- an order starts on its ``effectivePeriod.start`` or ``effectiveDateTime`` (MedicationStatement), its
  dosage's ``timing.repeat.boundsPeriod.start`` or else ``authoredOn`` (MedicationRequest);
- an ``active`` or ``on-hold`` order is active from its start on (an end it plans is a plan);
- a ``completed`` or ``stopped`` order is active from its start through its end (``effectivePeriod.end``,
  ``boundsPeriod.end``); without an end, through the day before the next order of the same agent starts
  (a replaced prescription); with neither, it is reported and left out;
- ``entered-in-error``, ``cancelled``, ``draft``, ``not-taken``, ``intended`` and ``unknown`` orders never count.

Each day on which an order starts or ends (the day after its end) is a point: the total MME/day of the
orders active that day, recorded when it differs from the one before, with the change (``start``,
``increase``, ``decrease``, ``stop``). A point at which an active opioid's MME is not known (no daily dose,
a dose in a unit its factor does not apply to) is left out and the order reported, never guessed. One
point is no history (the current dose is in ``medications``): the history is written from two points.
Buprenorphine and the other opioids the catalogue never counts toward MME are left out of the total; an
order without any date is a current dose (``medications``), not a point in time. Without a ruleset (no MME
factors) no history is read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ...model.patient import MAX_ITEMS
from ..maps import InstrumentCode
from ..series import OUTCOME_MEASURE_SYSTEM, WHOLE_PATIENT_INSTRUMENTS
from .common import _OBSERVATION_USABLE, Unmapped, _code_text, _codings, _ref_key, _shares, _to_date
from .medications import _MedicationReader
from .observations import _ObservationReader

if TYPE_CHECKING:
    from ...ruleset.loader import Ruleset

MAX_MEASUREMENTS = 4 * MAX_ITEMS
"""The patient model's cap on ``measurements``; beyond it the most recent of each series are kept."""

_ACTIVE = {"active", "on-hold"}
_ENDED = {"completed", "stopped"}


@dataclass(frozen=True)
class _Point:
    ref: str
    instrument: str
    score: float
    when: date
    region: str | None
    snapshot: bool = False  # the Observation also feeds a single-valued field (pain[].nrs, screenings)
    no_region: str | None = None  # why a complaint score has no region (reported when it is read)


@dataclass(frozen=True)
class _Order:
    ref: str
    agent: str
    start: date
    end: date | None  # last day active, inclusive
    mme: float | None  # None: an opioid whose MME is not known


class _SeriesReader(_ObservationReader, _MedicationReader):
    _reported: set[tuple[str, str]]  # (resource, kind) already reported: set by _series
    _infos: dict[str, Any] | None  # the ruleset's instruments: set by _series
    # ---------------------------------------------------------------------------------- entry point

    def _series(self, document: dict[str, Any], sources: dict[str, str]) -> None:
        """Add ``measurements`` and ``mme_history`` to the assembled document (and their sources)."""
        self._reported = {(u.resource, u.kind) for u in self.unmapped}
        self._infos = self.ruleset.code_infos().get("outcome_measure", {}) if self.ruleset is not None else None
        points = self._keep_recent_points(self._series_only(self._points()))
        for p in points:
            if p.no_region is not None:
                self._once(p.ref, "partial", p.no_region)
        if points:
            ordered = sorted(points, key=lambda p: (p.instrument, p.region or "", p.when, p.score, p.ref))
            document["measurements"] = [
                {"instrument": p.instrument, "score": p.score, "date": p.when.isoformat()}
                | ({"region": p.region} if p.region else {})
                for p in ordered
            ]
            for i, p in enumerate(ordered):
                sources[f"measurements[{i}]"] = p.ref
            read = {p.ref for p in ordered}
            # an older score no single-valued field kept is in the document now: not "superseded"
            self.unmapped = [u for u in self.unmapped if not (u.kind == "superseded" and u.resource in read)]
        history, refs = self._mme_history()
        if history:
            document["mme_history"] = history
            for i, ref in enumerate(refs):
                sources[f"mme_history[{i}]"] = ref

    # ---------------------------------------------------------------------------------- measurements

    def _instrument(self, concept: Any) -> tuple[str, InstrumentCode | None] | None:
        """The instrument a code names, with its unit rule (None: the local outcome system, any unit)."""
        allowed = self._outcome_codes()
        for system, code in _codings(concept):
            rule = self.maps.instrument_by_code.get((system, code))
            if rule is not None:
                return rule.instrument, rule
            if system == OUTCOME_MEASURE_SYSTEM and (allowed is None or code in allowed):
                return code, None
        return None

    def _outcome_codes(self) -> dict[str, Any] | None:
        """The ruleset's instruments (``CodeInfo`` by code), or None without a ruleset."""
        return self._infos

    def _points(self) -> list[_Point]:
        infos = self._outcome_codes()
        points: list[_Point] = []
        recognised: set[str] = set()
        unknown: set[str] = set()
        for ref, model in self.resources:
            if model.get_resource_type() != "Observation":
                continue
            codings = _codings(model.code)
            scored: list[tuple[str, InstrumentCode | None, Any]] = []  # (instrument, unit rule, element with the value)
            own = self._instrument(model.code)
            if own is not None:
                scored.append((*own, model))
            for component in model.component or []:
                named = self._instrument(component.code)
                if named is not None:
                    scored.append((*named, component))
            if not scored:
                if any(system == OUTCOME_MEASURE_SYSTEM for system, _ in codings):
                    unknown.add(ref)
                continue
            recognised.add(ref)  # the main reader may have called a local outcome code unknown: it is read here
            code_text = _code_text(codings)
            status = str(model.status)
            if status not in _OBSERVATION_USABLE:
                self._once(ref, "not_current", f"status {status}", code_text)
                continue
            when = self._when(model)
            snapshot = any(key in self.maps.observation_by_code for key in codings)
            if when is None:
                if not snapshot:  # (an undated score the snapshot fields read is not a point of a series)
                    why_date = "an instrument score needs a full date (effective[x] or issued)"
                    self._once(ref, "incomplete", why_date, code_text)
                continue
            region, why = self._complaint(ref, model)
            for instrument, rule, element in scored:
                score = self._score(element)
                if score is None:
                    self._once(ref, "incomplete", f"no numeric {instrument} score (valueQuantity or valueInteger)")
                    continue
                given = self._units(element)
                if rule is not None and given is not None and not rule.accepts(given):
                    why_unit = f"unit {' / '.join(given) or '(none)'} not accepted for {instrument}"
                    self._once(ref, "unknown_unit", why_unit, code_text)
                    continue
                info = infos.get(instrument) if infos is not None else None
                if (
                    info is not None
                    and info.min is not None
                    and info.max is not None
                    and not (info.min <= score <= info.max)
                ):
                    why_range = f"{instrument} score {score:g} is outside {info.min:g}–{info.max:g}"
                    self._once(ref, "incomplete", why_range, code_text)
                    continue
                snap = snapshot and element is model
                if instrument in WHOLE_PATIENT_INSTRUMENTS:
                    points.append(_Point(ref, instrument, score, when, None, snap))
                    continue
                no_region = None
                if region is None:
                    no_region = (
                        f"{instrument} score read without a complaint ({why}): charted and classified overall, "
                        "not tied to a procedure; link it with bodySite (body-region) or focus (the pain Condition)"
                    )
                points.append(_Point(ref, instrument, score, when, region, snap, no_region))
        if recognised or unknown:
            self.unmapped = [
                u
                for u in self.unmapped
                if not (u.kind == "unknown_code" and (u.resource in unknown or u.resource in recognised))
            ]
            self._reported -= {(r, "unknown_code") for r in recognised | unknown}
        for ref, model in self.resources:  # a code of the local outcome system that is no instrument of the ruleset
            if ref in unknown:
                for system, code in _codings(model.code):
                    if system == OUTCOME_MEASURE_SYSTEM:
                        why = f"{code!r} is not an outcome instrument of the ruleset (outcome_measure vocabulary)"
                        self._once(ref, "unknown_code", why, f"{system}|{code}")
                        break
        return points

    @staticmethod
    def _series_only(points: list[_Point]) -> list[_Point]:
        """The points that are measurements: every score of a series (an instrument and complaint scored on
        two days or more), and the single score of an instrument no single-valued field holds (PEG, PROMIS,
        PGIC ...). A lone score that ``pain[].nrs`` or ``screenings`` holds stays there only, so a snapshot
        record reads as before."""
        days: dict[tuple[str, str | None], set[date]] = defaultdict(set)
        for p in points:
            days[(p.instrument, p.region)].add(p.when)
        return [p for p in points if not p.snapshot or len(days[(p.instrument, p.region)]) > 1]

    @staticmethod
    def _when(model: Any) -> date | None:
        for value in (model.effectiveDateTime, model.effectiveInstant):
            if value is not None:
                return _to_date(value)
        if model.effectivePeriod is not None and model.effectivePeriod.start is not None:
            return _to_date(model.effectivePeriod.start)
        return _to_date(model.issued) if model.issued is not None else None

    @staticmethod
    def _score(element: Any) -> float | None:
        value = getattr(element, "valueInteger", None)
        if value is not None:
            return float(value)
        quantity = getattr(element, "valueQuantity", None)
        if quantity is not None and quantity.value is not None:
            return float(quantity.value)
        return None

    @staticmethod
    def _units(element: Any) -> list[str] | None:
        """The units of a ``valueQuantity`` score (code and unit), or None for one without (``valueInteger``)."""
        if getattr(element, "valueInteger", None) is not None:
            return None
        quantity = getattr(element, "valueQuantity", None)
        if quantity is None:
            return None
        return [str(u) for u in (quantity.code, quantity.unit) if u is not None]

    def _complaint(self, ref: str, model: Any) -> tuple[str | None, str]:
        """The region the Observation itself names (bodySite, focus on a pain Condition, a component), or
        (None, why not)."""
        found: set[str] = set()
        site = self._region(model.bodySite)
        if site:
            found.add(site)
        for r in model.focus or []:
            key = self.resolve(_ref_key(r), owner=ref)
            if key in self.pains:
                found.add(self.pains[key].region)
        for component in model.component or []:
            value = self._region(getattr(component, "valueCodeableConcept", None))
            if value:
                found.add(value)
        if len(found) == 1:
            return found.pop(), ""
        if found:
            return None, f"it names {len(found)} regions: {', '.join(sorted(found))}"
        return None, "no bodySite, focus or component names it"

    def _once(self, ref: str, kind: Any, reason: str, code: str | None = None) -> None:
        """Report ``ref`` unless it is already reported with this kind."""
        if (ref, kind) not in self._reported:
            self._reported.add((ref, kind))
            self._skip(ref, kind, reason, code)

    def _keep_recent_points(self, points: list[_Point]) -> list[_Point]:
        if len(points) <= MAX_MEASUREMENTS:
            return points
        by_series: dict[tuple[str, ...], list[_Point]] = defaultdict(list)
        for p in points:
            by_series[(p.instrument, p.region or "")].append(p)
        shares = _shares({k: len(v) for k, v in by_series.items()}, MAX_MEASUREMENTS)
        kept: list[_Point] = []
        for key, group in sorted(by_series.items()):
            ordered = sorted(group, key=lambda p: (p.when, p.ref), reverse=True)
            kept += ordered[: shares[key]]
            left = ordered[shares[key] :]
            reason = (
                f"{len(left)} of {len(group)} {' '.join(k for k in key if k)} scores left out as older (measurements "
                f"hold at most {MAX_MEASUREMENTS}, shared between series)"
            )
            for p in left:
                self._once(p.ref, "older_left_out", reason)
        return kept

    # ---------------------------------------------------------------------------------- MME history

    def _order_doses(self, ref: str, model: Any) -> tuple[list[dict[str, Any]], list[Unmapped]]:
        """What the medication reader makes of an order read as if it were active: (medication entries,
        what it reported), without touching the document."""
        saved_lists, saved_unmapped = self.lists.get("medications"), self.unmapped
        self.lists["medications"], self.unmapped = [], []
        try:
            self._medication(ref, model.model_copy(update={"status": "active"}))
            return [doc for _, doc, _ in self.lists["medications"]], list(self.unmapped)
        finally:
            self.unmapped = saved_unmapped
            if saved_lists is None:
                del self.lists["medications"]
            else:
                self.lists["medications"] = saved_lists

    def _start_end(self, model: Any) -> tuple[date | None, date | None]:
        if model.get_resource_type() == "MedicationStatement":
            if model.effectivePeriod is not None:
                start = _to_date(model.effectivePeriod.start) if model.effectivePeriod.start is not None else None
                end = _to_date(model.effectivePeriod.end) if model.effectivePeriod.end is not None else None
                return start, end
            return (_to_date(model.effectiveDateTime) if model.effectiveDateTime is not None else None), None
        bounds = None
        for dosage in model.dosageInstruction or []:
            repeat = dosage.timing.repeat if dosage.timing is not None else None
            if repeat is not None and repeat.boundsPeriod is not None:
                bounds = repeat.boundsPeriod
                break
        start = _to_date(bounds.start) if bounds is not None and bounds.start is not None else None
        end = _to_date(bounds.end) if bounds is not None and bounds.end is not None else None
        if start is None and model.authoredOn is not None:
            start = _to_date(model.authoredOn)
        return start, end

    def _orders(self) -> list[_Order]:
        if self.ruleset is None:
            return []
        medications = self.ruleset.medications
        raw: list[tuple[str, str, str, date, date | None, float | None]] = []  # ref, status, agent, start, end, mme
        for ref, model in self.resources:
            if model.get_resource_type() not in ("MedicationRequest", "MedicationStatement"):
                continue
            status = str(model.status)
            if status not in _ACTIVE | _ENDED:
                continue
            entries, _ = self._order_doses(ref, model)
            for doc in entries:
                entry = medications.get(doc["agent"])
                if entry is None or entry.mme_factor is None or entry.mme_excluded:
                    continue
                start, end = self._start_end(model)
                if start is None:  # an undated order is a current dose (medications), not a point in time
                    continue
                mme = None
                if doc.get("daily_dose") is not None and doc.get("dose_unit") == entry.mme_dose_unit:
                    mme = round(float(doc["daily_dose"]) * entry.mme_factor, 6)
                raw.append((ref, status, doc["agent"], start, end if status in _ENDED else None, mme))
        orders: list[_Order] = []
        for ref, status, agent, start, planned_end, mme in raw:
            end = planned_end
            if status in _ENDED and end is None:
                later = sorted(s for r, _, a, s, _, _ in raw if a == agent and s > start and r != ref)
                if not later:
                    why = f"a {status} opioid order with no end date and no later order of {agent}: left out of the "
                    self._once(ref, "partial", why + "MME history (its stop cannot be placed)")
                    continue
                end = later[0] - timedelta(days=1)
            if end is not None and end < start:
                self._once(ref, "partial", "an opioid order that ends before it starts: left out of the MME history")
                continue
            orders.append(_Order(ref, agent, start, end, mme))
        return orders

    def _mme_history(self) -> tuple[list[dict[str, Any]], list[str]]:
        orders = self._orders()
        days = sorted({o.start for o in orders} | {o.end + timedelta(days=1) for o in orders if o.end is not None})
        history: list[dict[str, Any]] = []
        refs: list[str] = []
        previous: float | None = None
        for day in days:
            active = [o for o in orders if o.start <= day and (o.end is None or day <= o.end)]
            unknown = [o for o in active if o.mme is None]
            if unknown:
                for o in unknown:
                    why = "opioid daily dose (or its unit) not readable: the MME history leaves out its dates"
                    self._once(o.ref, "partial", why)
                continue
            total = round(sum(o.mme or 0.0 for o in active), 2)
            if previous is not None and total == previous:
                continue
            if previous is None and total == 0:
                continue
            change = (
                "start" if not previous else "stop" if total == 0 else "increase" if total > previous else "decrease"
            )
            history.append({"date": day.isoformat(), "mme_per_day": total, "change": change})
            starting = sorted(o.ref for o in orders if o.start == day)
            ending = sorted(o.ref for o in orders if o.end is not None and o.end + timedelta(days=1) == day)
            refs.append((starting or ending or ["?"])[0])
            previous = total
        if len(history) < 2:
            return [], []
        # a completed or stopped order in the history is in the document: no longer "not current"
        used = {o.ref for o in orders}
        self.unmapped = [u for u in self.unmapped if not (u.kind == "not_current" and u.resource in used)]
        return history[-MAX_ITEMS:], refs[-MAX_ITEMS:]


# -------------------------------------------------------------------------------------- prefetch

SERIES_PREFETCH_KEYS = frozenset({"outcomeObservations", "medicationHistoryRequests", "medicationHistoryStatements"})
"""Prefetch keys of the series: optional (a request without them is read without the series they hold)."""


def series_templates(sections: set[str], templates: Mapping[str, str], ruleset: Ruleset) -> dict[str, str]:
    """The prefetch keys the series need, beyond ``templates`` (the other keys): each asks for what no other
    key does, because a resource sent under two keys is refused (it "appears twice").

    - ``outcomeObservations``: the instrument codes no other key lists (the local outcome-measure codes,
      PEG ...), newest first, at most :data:`MAX_MEASUREMENTS`; NRS and PHQ-9 come with the pain and
      screening keys;
    - ``medicationHistoryRequests`` / ``medicationHistoryStatements``: completed and stopped orders (the
      active and on-hold ones come with ``medicationRequests`` / ``medicationStatements``).
    ``sections`` are the patient-model sections the ruleset's rules read.
    """
    from ..maps import load_maps

    maps = load_maps()
    out: dict[str, str] = {}
    patient = "{{context.patientId}}"
    if "measurements" in sections:
        asked = {
            code
            for template in templates.values()
            if template.startswith("Observation?")
            for part in template.split("?", 1)[1].split("&")
            if part.startswith("code=")
            for code in part[len("code=") :].split(",")
        }
        vocabulary = ruleset.vocabularies.get("outcome_measure")
        local = [f"{OUTCOME_MEASURE_SYSTEM}|{c.code}" for c in (vocabulary.codes if vocabulary is not None else [])]
        codes = [*(f"{system}|{code}" for system, code in sorted(maps.instrument_by_code)), *local]
        wanted = sorted(c for c in dict.fromkeys(codes) if c not in asked)
        if wanted:
            out["outcomeObservations"] = (
                f"Observation?patient={patient}&code={','.join(wanted)}&_sort=-date&_count={MAX_MEASUREMENTS}"
            )
    if "mme_history" in sections:
        out["medicationHistoryRequests"] = f"MedicationRequest?patient={patient}&status=completed,stopped"
        out["medicationHistoryStatements"] = f"MedicationStatement?patient={patient}&status=completed,stopped"
    return out
