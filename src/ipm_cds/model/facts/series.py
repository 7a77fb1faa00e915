"""Series of outcome scores and of the daily MME, made into flat facts for the response rules.

A patient document holds dated scores (``measurements``: NRS, PEG, ODI, PROMIS, PGIC ...) and dated daily
MME (``mme_history``). The rule language compares fields and ranks facts, but it has no arithmetic, so the
derived numbers are computed here, threshold-free; every threshold stays in the ruleset's parameters:

- ``measure``: one point of a series (the mean of several scores of one instrument, region and day);
- ``response``: per therapeutic procedure and instrument of the procedure's region, the baseline (the last
  score on or before the procedure), the latest score of the follow-up window (after the procedure, before
  the next therapeutic procedure in that region), and the improvement, absolute and in percent of the
  baseline (positive is better, whatever the instrument's direction, from the vocabulary's ``better``);
  plus one ``overall`` response per instrument and region from the first score to the latest;
- ``followup``: each score of a follow-up window with its weeks after the procedure, its improvement and
  ``sustained_pct``, the lowest improvement from the procedure up to it. "At least X% relief sustained for
  at least W weeks" is then one pattern: a follow-up with ``sustained_pct >= X`` and ``weeks_after >= W``;
- ``mme_record``, ``mme_step`` (each change between two consecutive records, with its reduction and the
  reduction per 30 days) and ``opioid_course`` (peak, latest, reduction from the peak).

Everything is computed from the sorted series, so the order of items in the document never matters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from itertools import pairwise
from typing import Any

from ..patient import PatientCase
from .vocabulary import CodeInfo

__all__ = ["RELIEF_INSTRUMENT", "relief_in_series", "series_facts"]

FactValues = dict[str, Any]

DIAGNOSTIC = "diagnostic"

RELIEF_INSTRUMENT = "nrs"
"""The instrument whose series gives a procedure's relief: the one the repeat rules of
rules/ipm-core/rules/outcomes.yaml read (``followup`` facts of ``instrument: nrs``)."""


def _mean_by_day(patient: PatientCase) -> dict[tuple[str, str | None], list[tuple[date, float]]]:
    """Each (instrument, region) series, sorted by date, one value per day (the mean of that day's scores)."""
    by_day: dict[tuple[str, str | None, date], list[float]] = {}
    for m in patient.measurements:
        by_day.setdefault((m.instrument, m.region, m.date), []).append(float(m.score))
    series: dict[tuple[str, str | None], list[tuple[date, float]]] = {}
    for (instrument, region, day), scores in sorted(
        by_day.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2])
    ):
        series.setdefault((instrument, region), []).append((day, sum(sorted(scores)) / len(scores)))
    return series


def _improvement(baseline: float, score: float, better: str | None) -> tuple[float, float | None]:
    """Improvement from baseline (positive is better) and its percent of the baseline (None when it is 0)."""
    change = score - baseline if better == "higher" else baseline - score
    pct = round(100.0 * change / baseline, 1) if baseline else None
    return round(change, 2), pct


def _weeks(days: int) -> float:
    return round(days / 7, 1)


def series_facts(
    patient: PatientCase, as_of: date, instruments: Mapping[str, CodeInfo]
) -> Iterator[tuple[str, FactValues]]:
    """``(fact type, values)`` for every series fact of one patient (see the module docstring)."""
    series = _mean_by_day(patient)
    for (instrument, region), points in series.items():
        for day, score in points:
            yield "measure", {
                "instrument": instrument, "region": region, "score": score,
                "days_since": (as_of - day).days, "date": day.isoformat(),
            }  # fmt: skip
    therapeutic = sorted(
        {(p.date, p.kind, p.region) for p in patient.procedures if p.purpose != DIAGNOSTIC},
    )
    for instrument, region in sorted(series, key=lambda k: (k[0], k[1] or "")):
        points = series[(instrument, region)]
        better = instruments[instrument].better if instrument in instruments else None
        if region is not None:
            later = sorted({d for d, _, r in therapeutic if r == region})
            for proc_date, kind, proc_region in therapeutic:
                if proc_region != region:
                    continue
                end = next((d for d in later if d > proc_date), None)
                yield from _procedure_response(instrument, region, kind, proc_date, end, points, better, as_of)
        first_day, first = points[0]
        last_day, last = points[-1]
        overall: FactValues = {
            "scope": "overall", "instrument": instrument, "region": region, "latest": last,
            "latest_days_since": (as_of - last_day).days, "latest_date": last_day.isoformat(),
            "days_since": (as_of - first_day).days, "followups": len(points) - 1,
        }  # fmt: skip
        if len(points) > 1 and better is not None:
            change, pct = _improvement(first, last, better)
            overall |= {
                "worsening": -change, "baseline": first, "baseline_days_since": (as_of - first_day).days,
                "baseline_date": first_day.isoformat(), "improvement": change, "improvement_pct": pct,
                "weeks_after": _weeks((last_day - first_day).days),
            }  # fmt: skip
        yield "response", overall
    yield from _mme_facts(patient, as_of)


def _procedure_response(
    instrument: str,
    region: str,
    kind: str,
    proc_date: date,
    end: date | None,
    points: list[tuple[date, float]],
    better: str | None,
    as_of: date,
) -> Iterator[tuple[str, FactValues]]:
    before = [(d, s) for d, s in points if d <= proc_date]
    after = [(d, s) for d, s in points if d > proc_date and (end is None or d < end)]
    if not after:
        return
    anchor: FactValues = {
        "kind": kind, "region": region, "instrument": instrument, "procedure_date": proc_date.isoformat(),
        "procedure_days_since": (as_of - proc_date).days,
    }  # fmt: skip
    last_day, last = after[-1]
    response: FactValues = {
        **anchor, "scope": "procedure", "latest": last, "latest_days_since": (as_of - last_day).days,
        "latest_date": last_day.isoformat(), "weeks_after": _weeks((last_day - proc_date).days),
        "followups": len(after), "days_since": (as_of - proc_date).days,
    }  # fmt: skip
    if before and better is not None:
        base_day, base = before[-1]
        change, pct = _improvement(base, last, better)
        response |= {
            "worsening": -change, "baseline": base, "baseline_days_since": (as_of - base_day).days,
            "baseline_date": base_day.isoformat(),
            "improvement": change, "improvement_pct": pct,
        }  # fmt: skip
        sustained: float | None = None
        for day, score in after:
            step, step_pct = _improvement(base, score, better)
            if step_pct is not None:
                sustained = step_pct if sustained is None else min(sustained, step_pct)
            yield "followup", {
                **anchor, "score": score, "improvement": step, "improvement_pct": step_pct,
                "sustained_pct": sustained, "weeks_after": _weeks((day - proc_date).days),
                "days_since": (as_of - day).days, "date": day.isoformat(),
            }  # fmt: skip
    yield "response", response


def relief_in_series(
    patient: PatientCase, as_of: date, instruments: Mapping[str, CodeInfo]
) -> set[tuple[date, str, str]]:
    """``(date, kind, region)`` of each therapeutic procedure whose relief the pain series gives: a
    :data:`RELIEF_INSTRUMENT` response with a baseline (on or before it) and a follow-up (after it, before the
    next therapeutic procedure in its region), i.e. an ``improvement_pct``. The procedure fact carries it as
    ``relief_series``, so that the family repeat rules, which read the hand-entered ``relief_pct`` and
    ``relief_duration_weeks``, leave such a procedure to the series rules instead of asking for those figures."""
    if not any(m.instrument == RELIEF_INSTRUMENT and m.region is not None for m in patient.measurements):
        return set()
    found: set[tuple[date, str, str]] = set()
    for type_name, values in series_facts(patient, as_of, instruments):
        if (
            type_name == "response"
            and values["scope"] == "procedure"
            and values["instrument"] == RELIEF_INSTRUMENT
            and values.get("improvement_pct") is not None
        ):
            found.add((date.fromisoformat(values["procedure_date"]), values["kind"], values["region"]))
    return found


def _mme_facts(patient: PatientCase, as_of: date) -> Iterator[tuple[str, FactValues]]:
    by_day: dict[date, tuple[float, str | None]] = {}
    for rec in sorted(patient.mme_history, key=lambda r: (r.date, r.mme_per_day, r.change or "")):
        by_day[rec.date] = (rec.mme_per_day, rec.change)  # one record a day: the highest dose given that day
    records = sorted(by_day.items())
    for day, (mme, change) in records:
        yield "mme_record", {
            "mme_per_day": mme, "change": change, "days_since": (as_of - day).days, "date": day.isoformat(),
        }  # fmt: skip
    for (d0, (m0, _)), (d1, (m1, change)) in pairwise(records):
        days = (d1 - d0).days
        reduction = round(100.0 * (m0 - m1) / m0, 1) if m0 else None
        yield "mme_step", {
            "from_mme": m0, "to_mme": m1, "days_between": days, "reduction_pct": reduction,
            "reduction_pct_per_30_days": round(reduction * 30 / days, 1) if reduction is not None else None,
            "change": change, "days_since": (as_of - d1).days, "date": d1.isoformat(), "from_date": d0.isoformat(),
        }  # fmt: skip
    if records:
        peak_day, (peak, _) = max(records, key=lambda r: (r[1][0], r[0]))
        last_day, (last, _) = records[-1]
        yield "opioid_course", {
            "first_mme": records[0][1][0], "peak_mme": peak, "peak_date": peak_day.isoformat(),
            "latest_mme": last, "latest_date": last_day.isoformat(), "latest_days_since": (as_of - last_day).days,
            "reduction_from_peak_pct": round(100.0 * (peak - last) / peak, 1) if peak else None,
            "weeks_from_peak": _weeks((last_day - peak_day).days), "records": len(records),
        }  # fmt: skip
