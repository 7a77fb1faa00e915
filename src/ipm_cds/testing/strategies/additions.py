"""Strategies that add to drawn patients: requested procedures (:func:`with_requested`) and dated series
(:func:`with_series`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import strategies as st

from ...model.patient import PatientCase
from ...ruleset.loader import Ruleset
from .draws import DEFAULT_AS_OF, _Draw
from .patients import patients
from .rulesets import RulesetSource, _bundled, _codes, _ruleset


def with_requested(
    base: st.SearchStrategy[PatientCase] | None = None,
    *,
    as_of: date = DEFAULT_AS_OF,
    max_requested: int = 3,
    ruleset: RulesetSource | None = None,
    without_region_pct: int = 0,
    stent_pct: int = 0,
) -> st.SearchStrategy[PatientCase]:
    """Patients of ``base`` (default :func:`patients`) with 1 to ``max_requested`` requested procedures: mostly
    an intervention aimed at the region of one of their pain complaints (so that some are also proposed),
    sometimes any intervention of the catalogue anywhere, with or without side, levels, guidance, steroid and
    a planned date on or after ``as_of``. ``ruleset`` as for :func:`patients` (a path or a function is read
    when the first patient is drawn).

    ``without_region_pct``: about that percent of the orders carry no region (an order whose code does not fix it).
    ``stent_pct``: about that percent of the patients have a coronary stent, placed about the ACC/AHA limits (30
    days after a bare-metal stent, 3 and 6 months after a drug-eluting one), its type or date sometimes not
    recorded. Both 0 by default: then nothing more is drawn, so the patients drawn stay those of earlier
    versions (the rule-coverage runs that other strategies build on keep their draws)."""
    if ruleset is not None and not isinstance(ruleset, Ruleset):
        source = ruleset
        return st.deferred(
            lambda: with_requested(
                base,
                as_of=as_of,
                max_requested=max_requested,
                ruleset=_ruleset(source),
                without_region_pct=without_region_pct,
                stent_pct=stent_pct,
            )
        )
    held = ruleset if ruleset is not None else _bundled()
    base = base if base is not None else patients(as_of=as_of, ruleset=ruleset)
    interventions = tuple(sorted(held.interventions))
    injections = tuple(code for code in interventions if held.interventions[code].uses_steroid)
    guidance = {code: tuple(item.image_guidance) for code, item in held.interventions.items()}
    codes = dict(_codes(held))
    regions = codes["body_region"]
    approaches, steroids = codes.get("procedure_approach", ()), codes.get("steroid_agent", ())
    spinal_levels = {"cervical": ("C5-C6", "C6-C7"), "thoracic": ("T6-T7",), "lumbar": ("L3-L4", "L4-L5", "L5-S1")}

    @st.composite
    def build(draw: st.DrawFn) -> PatientCase:
        patient = draw(base)
        d = _Draw(draw, as_of, codes)
        requested: list[dict[str, Any]] = []
        for n in range(d.num(1, max_requested)):
            # half are injections, whose steroid agent and dose the order may carry
            code = d.pick(injections) if injections and d.chance(50) else d.pick(interventions)
            pains = [p.region for p in patient.pain]
            region = d.pick(pains) if pains and d.chance(80) else d.pick(regions)
            item: dict[str, Any] = {"id": f"sr-{n}", "intervention": code, "region": region}
            if without_region_pct and d.chance(without_region_pct):  # a code that does not fix the region
                del item["region"]
            item["status"] = d.pick(("requested", "planned", "scheduled"))
            if d.chance(50):
                item["side"] = d.pick(("left", "right", "bilateral"))
            if region in spinal_levels and d.chance(60):
                item["levels"] = d.some(spinal_levels[region], 1, len(spinal_levels[region]))
            if d.chance(60):
                item["guidance"] = d.pick((*guidance[code], "landmark"))
            if approaches and d.chance(40):
                item["approach"] = d.pick(approaches)
            if steroids and held.interventions[code].uses_steroid and d.chance(60):
                item["steroid_agent"] = d.pick(steroids)
                if d.chance(70):
                    item["steroid_dose_mg"] = float(d.pick((4, 10, 40, 80)))
            if d.chance(50):
                item["planned_date"] = (as_of + timedelta(days=d.num(0, 90))).isoformat()
            requested.append(item)
        extra: dict[str, Any] = {}
        if stent_pct and d.chance(stent_pct):  # the stent-timing rules judge the requested procedures
            stent: dict[str, Any] = {}
            if d.chance(90):
                stent["type"] = d.pick(("drug_eluting", "bare_metal"))
            if d.chance(90):
                stent["date"] = d.ago(d.near((30, 91, 182), 0, 730))
            extra["coronary_stents"] = [stent]
        return PatientCase.model_validate(
            {**patient.model_dump(mode="json", exclude_none=True), "requested": requested, **extra}
        )

    return build()


_SERIES_KINDS = {"lumbar": ("facet_rfa", "esi_transforaminal", "scs_trial"), "sacroiliac": ("sij_injection",),
                 "knee": ("genicular_rfa",)}  # fmt: skip
_FOLLOW_UP_WEEKS = (2, 4, 8, 13, 26, 30, 40)


def with_series(
    base: st.SearchStrategy[PatientCase] | None = None,
    *,
    as_of: date = DEFAULT_AS_OF,
    ruleset: RulesetSource | None = None,
) -> st.SearchStrategy[PatientCase]:
    """Patients of ``base`` (default :func:`patients`) with dated series (issue 16): around each therapeutic
    procedure (or one added in the region of a pain complaint), an NRS baseline and follow-ups, often an ODI
    series, sometimes PEG and PGIC, and sometimes an MME history that tapers at random steps."""
    if ruleset is not None and not isinstance(ruleset, Ruleset):
        source = ruleset
        return st.deferred(lambda: with_series(base, as_of=as_of, ruleset=_ruleset(source)))
    held = ruleset if ruleset is not None else _bundled()
    base = base if base is not None else patients(as_of=as_of, ruleset=ruleset)
    codes = dict(_codes(held))

    @st.composite
    def build(draw: st.DrawFn) -> PatientCase:
        patient = draw(base)
        d = _Draw(draw, as_of, codes)
        doc = patient.model_dump(mode="json", exclude_none=True)
        procedures = [p for p in doc.get("procedures", []) if p.get("purpose") != "diagnostic"]
        pains = [(p["region"], p["character"]) for p in doc.get("pain", []) if p["region"] in _SERIES_KINDS]
        if (not procedures or d.chance(40)) and pains:
            region, character = d.pick(pains)
            kind = "esi_transforaminal" if character == "radicular" and d.chance(80) else d.pick(_SERIES_KINDS[region])
            # an RFA about 6 months back half of the time: the repeat interval, and follow-ups of 12 weeks or more
            back = d.num(150, 400) if kind in ("facet_rfa", "genicular_rfa") and d.chance(70) else d.num(20, 400)
            added = {"kind": kind, "purpose": "therapeutic", "region": region,
                     "date": (as_of - timedelta(days=back)).isoformat()}  # fmt: skip
            doc.setdefault("procedures", []).append(added)
            procedures.append(added)
            if added["kind"] == "sij_injection" and d.chance(70):  # the diagnostic block a repeat needs
                block_day = date.fromisoformat(added["date"]) - timedelta(days=30)
                doc["procedures"].append({"kind": "sij_injection", "purpose": "diagnostic", "region": region,
                                          "date": block_day.isoformat(), "relief_pct": d.num(50, 100)})  # fmt: skip
        measurements: list[dict[str, Any]] = []
        for proc in procedures[:2]:
            day = date.fromisoformat(proc["date"])
            region = proc["region"]
            baseline = d.num(3, 10)
            measurements.append({"instrument": "nrs", "region": region, "score": baseline,
                                 "date": (day - timedelta(days=3)).isoformat()})  # fmt: skip
            weeks = sorted(set(d.some(_FOLLOW_UP_WEEKS, 1, 4)))
            if d.chance(60):  # the 3- and 6-month follow-ups that the repeat criteria read, most of the time
                weeks = sorted({*weeks, d.pick((13, 26))})
            follow = [w for w in weeks if day + timedelta(weeks=w) <= as_of]
            # often a lasting responder (at most half the baseline), often a non-responder (at most 20% better)
            shape = d.num(0, 9) if d.chance(70) else 0  # a lasting responder more often than not
            low, high = (
                (0, baseline // 2)
                if shape < 4
                else ((baseline * 8 + 9) // 10, baseline)
                if shape < 7
                else (0, baseline)
            )
            scores = [d.num(low, high) for _ in follow]
            for w, score in zip(follow, scores, strict=True):
                when = (day + timedelta(weeks=w)).isoformat()
                measurements.append({"instrument": "nrs", "region": region, "score": score, "date": when})
            if follow and d.chance(50):
                odi = d.num(20, 60)
                measurements += [
                    {"instrument": "odi", "region": region, "score": odi,
                     "date": (day - timedelta(days=3)).isoformat()},
                    {"instrument": "odi", "region": region, "score": odi + d.num(-20, 20),
                     "date": (day + timedelta(weeks=follow[0])).isoformat()},
                ]  # fmt: skip
            if follow and d.chance(30):  # PROMIS physical function: a T-score, higher is better
                promis = d.num(30, 55)
                measurements += [
                    {"instrument": "promis_pf", "region": region, "score": float(promis),
                     "date": (day - timedelta(days=3)).isoformat()},
                    {"instrument": "promis_pf", "region": region, "score": float(promis + d.num(-8, 8)),
                     "date": (day + timedelta(weeks=follow[0])).isoformat()},
                ]  # fmt: skip
            if follow and d.chance(30):
                measurements.append({"instrument": "pgic", "score": d.num(1, 7),
                                     "date": (day + timedelta(weeks=follow[-1])).isoformat()})  # fmt: skip
        if measurements and d.chance(30):
            region = measurements[0]["region"]
            measurements += [
                {"instrument": "peg", "region": region, "score": d.num(4, 10),
                 "date": (as_of - timedelta(days=200)).isoformat()},
                {"instrument": "peg", "region": region, "score": d.num(0, 10), "date": as_of.isoformat()},
            ]  # fmt: skip
        if d.chance(30):
            mme, day = float(d.num(30, 120)), as_of - timedelta(days=d.num(100, 300))
            history = [{"date": day.isoformat(), "mme_per_day": mme, "change": "taper_start"}]
            for _ in range(d.num(1, 4)):
                day += timedelta(days=d.num(7, 40))
                mme = round(mme * (1 - d.num(0, 30) / 100), 1)
                if day > as_of:
                    break
                history.append({"date": day.isoformat(), "mme_per_day": mme, "change": "decrease"})
            doc["mme_history"] = history
        doc["measurements"] = measurements
        return PatientCase.model_validate(doc)

    return build()
