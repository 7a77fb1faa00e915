"""Building blocks of a patient document: a pain complaint, a procedure session, imaging, conditions,
conservative care, screenings, medications, laboratory results, red flags."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from .draws import _Ctx, _Draw
from .vocabularies import _CES, _DISABILITY, _OPIOIDS, _SCREEN_MARKS, _SCREEN_MAX


def _pain(
    d: _Draw,
    ctx: _Ctx,
    region: str,
    character: str,
    *,
    weeks: tuple[int, ...] = (12,),
    nrs: tuple[int, ...] = (4, 7),
    disability: int = 50,
    worsening: int = 20,
    worse: int = 75,
) -> dict[str, Any]:
    """A pain complaint: duration near ``weeks``, NRS near ``nrs``, a disability score in ``disability`` % of
    draws, and a course recorded (worsening or not) in ``worsening`` %."""
    item: dict[str, Any] = {"region": region, "character": character}
    side = d.side()
    if side is not None:
        item["laterality"] = side
    if d.chance(95):
        item["nrs"] = d.near(nrs, 0, 10)
    if d.chance(95):
        duration = d.near(weeks, 0, 520)
        if d.chance(70):
            item["duration_weeks"] = duration
        else:  # an onset date that gives the same whole weeks
            item["onset_date"] = d.ago(duration * 7 + d.num(0, 6))
    if d.chance(disability):
        if _DISABILITY.get(region, "odi_pct") == "ndi":
            item["ndi"] = d.num(0, 50)
        else:
            item["odi_pct"] = d.near((40,), 0, 100, pct=40)
    if d.chance(worsening):
        item["worsening"] = d.chance(worse)
    return ctx.add("pain", item)


def _relief(d: _Draw, marks: tuple[int, ...], like: int | None = None) -> int | None:
    """Relief near ``marks``; close to ``like`` (an earlier session's relief) two times in three."""
    if d.chance(6):
        return None
    if like is not None and d.chance(65):
        return min(100, max(0, like + d.pick((0, 0, 1, -1, 5, -5, 10))))
    return d.near(marks, 0, 100)


def _procedure(
    d: _Draw,
    ctx: _Ctx,
    kind: str,
    region: str,
    days_ago: int,
    *,
    relief: tuple[int, ...] | None = None,
    like: int | None = None,
    weeks: tuple[int, ...] | None = None,
    purpose: str | None = None,
    levels: Sequence[str] = (),
    side: str | None = None,
    flags: bool = False,
) -> dict[str, Any]:
    """One session ``days_ago`` days before as_of; relief near ``relief``, relief duration near ``weeks`` (never
    longer than the time since the session); ``flags``: same scale and duration consistent with the agent."""
    item: dict[str, Any] = {"kind": kind, "region": region, "date": d.ago(days_ago)}
    if purpose is not None:
        item["purpose"] = purpose
    if levels:
        item["levels"] = list(levels)
    if side is not None:
        item["side"] = side
    if relief is not None:
        pct = _relief(d, relief, like)
        if pct is not None:
            item["relief_pct"] = pct
    if weeks is not None and d.chance(92):
        limit = days_ago // 7
        if limit >= 1 and weeks != (0,):
            item["relief_duration_weeks"] = float(min(d.near(weeks, 0, 520), limit))
        else:  # a diagnostic block: hours to days
            item["relief_duration_weeks"] = min(float(limit), d.pick((0.0, 0.02, 0.1, 0.5, 1.0)))
    if flags:
        for flag in ("same_scale", "duration_consistent_with_agent"):
            if d.chance(20):
                item[flag] = d.chance(65)
    return ctx.add("procedures", item)


def _imaging(
    d: _Draw,
    ctx: _Ctx,
    finding: str,
    region: str,
    *,
    level: str | None = None,
    modality: str | None = None,
    concordant: bool | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"modality": modality or d.pick(("mri", "mri", "ct", "xray")), "finding": finding}
    item["region"] = region
    if level is not None:
        item["level"] = level
    if concordant is not None:
        item["concordant"] = concordant
    if d.chance(50):
        item["date"] = d.ago(d.num(0, 700))
    return ctx.add("imaging", item)


def _condition(ctx: _Ctx, code: str, *, active: bool = True, region: str | None = None) -> None:
    if any(c["code"] == code for c in ctx.doc.get("conditions", [])):
        return
    item: dict[str, Any] = {"code": code}
    if not active:
        item["active"] = False
    if region is not None:
        item["region"] = region
    ctx.add("conditions", item)


def _care(d: _Draw, ctx: _Ctx, failed: int = 85, therapy: tuple[int, ...] = (4,)) -> None:
    """Conservative care: failed in ``failed`` % of draws, physical therapy for weeks near ``therapy``, an
    exercise programme."""
    care = ctx.care
    if d.chance(96):
        care["failed"] = d.chance(failed)
    if d.chance(50):
        care["physical_therapy_weeks"] = d.near(therapy, 0, 52)
    if d.chance(55):
        care["active_exercise_program"] = d.chance(50)


def _psych_evaluation(d: _Draw, ctx: _Ctx) -> None:
    if d.chance(70):
        completed = d.chance(85)
        evaluation: dict[str, Any] = {"completed": completed}
        if completed:
            evaluation["date"] = d.ago(d.num(5, 300))
            if d.chance(85):
                evaluation["cleared"] = d.chance(65)
        ctx.doc["psychological_evaluation"] = evaluation


def _pregnancy(d: _Draw, ctx: _Ctx, pct: int) -> None:
    """A pregnant patient in ``pct`` % of draws (a woman of child-bearing age)."""
    if d.chance(pct):
        demo = ctx.demographics
        demo["sex"] = "female"
        demo["age_years"] = d.num(18, 45)
        demo["pregnant"] = True
        if d.chance(60):  # gestational age about the NSAID point (20 weeks), or not recorded
            demo["gestational_weeks"] = d.near((20,), 4, 41)
        if d.chance(25):  # an NSAID she should not take
            ctx.add("medications", {"agent": d.pick(("ibuprofen", "naproxen", "diclofenac"))})


def _spine_region(d: _Draw, ctx: _Ctx) -> str:
    return ctx.region_of(d, ("lumbar", "lumbar", "cervical", "thoracic"))


def _oldest_days(ctx: _Ctx) -> int:
    dates = [date.fromisoformat(p["date"]) for p in ctx.doc.get("procedures", [])]
    return max(((ctx.as_of - x).days for x in dates), default=0)


def _backdate_pain(ctx: _Ctx, pain: dict[str, Any]) -> None:
    """The pain began before the first procedure done for it."""
    oldest = _oldest_days(ctx)
    weeks = pain.get("duration_weeks")
    if "onset_date" in pain:
        weeks = (ctx.as_of - date.fromisoformat(pain["onset_date"])).days // 7
    if oldest and weeks is not None and weeks * 7 <= oldest:
        pain.pop("onset_date", None)
        pain["duration_weeks"] = oldest // 7 + 2


def _screening(d: _Draw, instrument: str) -> dict[str, Any]:
    score = d.near(_SCREEN_MARKS[instrument], 0, _SCREEN_MAX[instrument])
    item: dict[str, Any] = {"instrument": instrument, "score": score}
    if instrument == "phq9" and d.chance(60):
        item["item9"] = d.pick((0, 0, 1, 2, 3))
    if instrument == "start_back" and d.chance(20):  # only the category recorded, no item scores
        item = {"instrument": instrument, "category": d.pick(("low", "medium", "high"))}
    elif instrument == "start_back" and d.chance(60):
        item["distress_subscore"] = d.near((4,), 0, 5)
    if d.chance(60):
        item["date"] = d.ago(d.num(0, 800))
    return item


def _opioid(d: _Draw) -> dict[str, Any]:
    agent = d.pick(tuple(_OPIOIDS))
    unit, doses = _OPIOIDS[agent]
    item: dict[str, Any] = {"agent": agent}
    if d.chance(85):
        item["daily_dose"] = float(d.pick(doses))
        item["dose_unit"] = unit
    if d.chance(30):
        item["indication"] = "pain"
    return item


def _lab(d: _Draw, test: str) -> dict[str, Any]:
    if test == "inr":
        value = d.pick((0.9, 1.0, 1.1, 1.4, 1.5, 1.6, 2.0, 2.5, 2.9, 3.0, 3.1, 3.5, 4.5))
    elif test == "platelets":
        value = float(d.pick((8.0, 15.0, 19.0, 20.0, 21.0, 49.0, 50.0, 51.0, 99.0, 100.0, 101.0, 180.0, 250.0)))
    elif test == "glucose":
        value = float(d.pick((85, 110, 150, 201, 250, 300, 301, 320, 400)))
    elif test == "hba1c":
        value = d.pick((5.4, 6.5, 7.0, 8.1, 9.5, 11.0))
    elif test == "crp":
        value = float(d.pick((1, 4, 12, 45, 120)))
    elif test == "esr":
        value = float(d.pick((5, 18, 35, 70, 110)))
    else:  # eGFR and creatinine clearance, about the renal threshold of 30
        value = float(d.pick((15, 29, 30, 31, 45, 60, 90)))
    lab = {"test": test, "value": value, "date": d.ago(d.near((1,), 0, 200, pct=30))}  # about the 1-day INR recency
    if test in ("crp", "esr") and d.chance(70):  # the laboratory's own reading: a flag, a range, or both
        upper = 5.0 if test == "crp" else 20.0  # a typical laboratory's range: the lab's number, never a rule's
        how = d.pick(("flag", "range", "both"))
        if how in ("flag", "both"):
            lab["flag"] = "high" if value > upper else d.pick(("normal", "normal", "low"))
        if how in ("range", "both"):
            lab["reference_high"] = upper
            if d.chance(50):
                lab["reference_low"] = 0.0
    return lab


def _steroid_injection(d: _Draw, region: str) -> dict[str, Any]:
    """A past corticosteroid injection (any site), its dose in mg about the usual 10 / 40 / 80, sometimes
    undosed, sometimes dated only by month or year (a period that ended before as_of)."""
    item: dict[str, Any] = {"agent": d.pick(d.codes["steroid_agent"]), "region": region}
    if d.chance(85):
        item["dose_mg"] = float(d.pick((4, 10, 40, 40, 80, 80, 120)))
    if d.chance(60):
        item["route"] = d.pick(("epidural", "facet", "sacroiliac", "intra_articular", "soft_tissue"))
    back = d.num(0, 500)
    day = date.fromisoformat(d.ago(back))
    if d.chance(15) and day.year < d.as_of.year:
        item["date"] = str(day.year)
    elif d.chance(15) and (day.year, day.month) < (d.as_of.year, d.as_of.month):
        item["date"] = f"{day.year:04d}-{day.month:02d}"
    else:
        item["date"] = day.isoformat()
    return item


def _red_flag(d: _Draw, code: str | None = None) -> dict[str, Any]:
    flag: dict[str, Any] = {"code": code or d.pick((*_CES, *d.codes["red_flag"]))}
    if d.chance(60):
        flag["onset_date"] = d.ago(d.near((14,), 0, 400))
    if d.chance(55):
        flag["deteriorating"] = d.chance(50)
    return flag
