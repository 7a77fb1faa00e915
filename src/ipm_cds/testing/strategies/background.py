"""Around the pathway: demographics, screenings, medications, laboratory results, conditions, allergies and
red flags; complications that safety rules read; and the knobs applied to the whole document."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from .blocks import (
    _condition,
    _lab,
    _opioid,
    _pain,
    _pregnancy,
    _procedure,
    _psych_evaluation,
    _red_flag,
    _screening,
    _steroid_injection,
)
from .draws import _Ctx, _Draw
from .vocabularies import (
    _ANTITHROMBOTIC_INDICATIONS,
    _ANTITHROMBOTICS,
    _BACKGROUND_CONDITIONS,
    _BENZODIAZEPINES,
    _CES,
    _OTHER_MEDICATIONS,
    _SCREEN_MARKS,
)


def _demographics(d: _Draw, ctx: _Ctx) -> None:
    demo = ctx.demographics
    if "age_years" not in demo and d.chance(85):
        age = d.near((50, 65, 70), 18, 95, pct=35)
        if d.chance(15):  # a birth date instead, giving the same age at as_of
            january = date(ctx.as_of.year, 1, 1)
            born = date(ctx.as_of.year - age, 1, 1) + timedelta(days=d.num(0, (ctx.as_of - january).days))
            demo["birth_date"] = born.isoformat()
        else:
            demo["age_years"] = age
    if "sex" not in demo and d.chance(85):
        demo["sex"] = d.pick(("female", "male", "female", "male", "other"))
    if demo.get("sex") == "female" and "pregnant" not in demo and d.chance(50):
        recorded = demo.get("age_years")
        demo["pregnant"] = d.chance(20) and (recorded is None or recorded <= 50) and "birth_date" not in demo
    if d.chance(60):
        demo["bmi"] = float(d.near((30,), 16, 55, pct=40)) + d.pick((0.0, 0.0, 0.5))
    if d.chance(60):
        demo["tobacco_use"] = d.pick(("never", "former", "current"))


def _background(d: _Draw, ctx: _Ctx, red_flags: bool | None, anticoagulants: bool | None, opioids: bool | None) -> None:
    doc = ctx.doc
    _demographics(d, ctx)
    if "psychological_evaluation" not in doc and d.chance(10):
        _psych_evaluation(d, ctx)
    # screenings: instruments on and around their thresholds, some undated, some repeated
    if d.chance(40):
        for instrument in d.some(tuple(_SCREEN_MARKS), 1, 3):
            ctx.add("screenings", _screening(d, instrument))
            if d.chance(12):
                ctx.add("screenings", _screening(d, instrument))
    # medications
    if anticoagulants if anticoagulants is not None else d.chance(25):
        for agent in d.some(_ANTITHROMBOTICS, 1, 2):
            item: dict[str, Any] = {"agent": agent}
            indication = d.pick(_ANTITHROMBOTIC_INDICATIONS)
            if indication is not None:
                item["indication"] = indication
            ctx.add("medications", item)
            if agent in ("warfarin", "acenocoumarol") and d.chance(75):
                ctx.add("labs", _lab(d, "inr"))
    if opioids if opioids is not None else (ctx.opioid or d.chance(10)):
        agents: set[str] = set()
        for _ in range(d.pick((1, 1, 1, 2, 2, 3))):
            opioid = _opioid(d)
            if opioid["agent"] not in agents:
                agents.add(opioid["agent"])
                ctx.add("medications", opioid)
        if d.chance(20):
            ctx.add("medications", {"agent": d.pick(_BENZODIAZEPINES)})
        if d.chance(25):
            ctx.add("medications", {"agent": "naloxone"})
    if d.chance(25):
        for agent in d.some(_OTHER_MEDICATIONS, 1, 2):
            ctx.add("medications", {"agent": agent})
    # laboratory results, in their canonical units, before as_of
    if d.chance(30):
        for _ in range(d.num(1, 3)):
            tests = ("inr", "platelets", "inr", "platelets", "glucose", "hba1c", "egfr", "creatinine_clearance")
            ctx.add("labs", _lab(d, d.pick((*tests, "crp", "esr") if d.chance(20) else tests)))
    # past corticosteroid injections at any site (cumulative exposure), and a prognosis (end of life)
    if d.codes.get("steroid_agent") and d.chance(12):
        sites = ("knee", "hip", "shoulder", "lumbar", "cervical", "sacroiliac")
        for _ in range(d.pick((1, 1, 2, 3, 4))):
            ctx.add("steroid_injections", _steroid_injection(d, d.pick(sites)))
    if d.chance(20):  # in hospital now, or recorded as not (absent: not recorded)
        doc["hospitalised"] = d.chance(50)
    if d.chance(5):
        doc["prognosis"] = {"life_expectancy_months": d.near((6,), 0, 120)}
        if d.chance(60):
            doc["prognosis"]["date"] = d.ago(d.num(0, 90))
    # conditions, allergies
    if d.chance(35):
        known = d.codes["condition"]
        for code in d.some((*(c for c in _BACKGROUND_CONDITIONS if c in known), *known), 1, 2):
            region = None
            if code in ("local_infection_at_site", "crps") and d.chance(70):
                region = (doc.get("pain") or [{"region": "lumbar"}])[0]["region"]
            _condition(ctx, code, active=d.chance(88), region=region)
    oud = any(c["code"] == "opioid_use_disorder" and c.get("active", True) for c in doc.get("conditions", []))
    if oud and d.chance(40):  # medication for OUD already in place (or buprenorphine taken for pain)
        agent = d.pick(("buprenorphine", "buprenorphine", "methadone", "naltrexone"))
        ctx.add("medications", {"agent": agent, "indication": d.pick(("treatment", "treatment", "pain"))})
    if doc.get("pain") and d.chance(5):  # an infected injection site
        _condition(ctx, "local_infection_at_site", region=doc["pain"][0]["region"])
    if d.chance(12):
        for substance in d.some(d.codes["allergy_substance"], 1, 2):
            ctx.add("allergies", {"substance": substance})
    # red flags
    if red_flags is False:
        doc.pop("red_flags", None)
    elif (red_flags and not doc.get("red_flags")) or (red_flags is None and d.chance(5)):
        for _ in range(d.pick((1, 1, 2))):
            ctx.add("red_flags", _red_flag(d, d.pick(_CES) if d.chance(70) else None))


def _complication(d: _Draw, ctx: _Ctx) -> None:
    """One finding that a safety rule reads beside the candidates of the pathway (in ``region``)."""
    region = ctx.doc["pain"][0]["region"] if ctx.doc.get("pain") else "lumbar"
    what = d.pick(
        (
            "pregnant",
            "site_infection",
            "systemic_infection",
            "immunosuppression",
            "fever",
            "contrast_allergy",
            "anaesthetic_allergy",
            "diabetes",
            "prednisone",
            "device",
            "bleeding_disorder",
            "renal_hepatic",
            "inr_high",
            "platelets_low",
            "warfarin",
            "thrombotic_risk",
            "drug_use",
        )
    )
    if what == "pregnant":
        _pregnancy(d, ctx, 100)
    elif what == "site_infection":
        _condition(ctx, "local_infection_at_site", region=region)
    elif what == "systemic_infection":
        _condition(ctx, "active_systemic_infection")
    elif what in ("immunosuppression", "diabetes", "bleeding_disorder"):
        _condition(ctx, what)
    elif what == "fever":
        ctx.add("red_flags", _red_flag(d, "fever"))
    elif what == "drug_use":  # a risk factor for spinal infection, not a red flag by itself
        ctx.add("red_flags", _red_flag(d, "intravenous_drug_use"))
    elif what in ("contrast_allergy", "anaesthetic_allergy"):
        ctx.add("allergies", {"substance": "iodinated_contrast" if what == "contrast_allergy" else "local_anesthetic"})
    elif what == "prednisone":
        ctx.add("medications", {"agent": "prednisone"})
    elif what == "device":
        _condition(ctx, d.pick(("pacemaker", "implanted_defibrillator")))
    elif what == "renal_hepatic":
        _condition(ctx, d.pick(("advanced_renal_disease", "liver_cirrhosis")))
    elif what in ("inr_high", "platelets_low"):
        test = "inr" if what == "inr_high" else "platelets"
        value = d.pick((1.6, 2.0, 3.1, 3.5, 4.5)) if test == "inr" else d.pick((8.0, 15.0, 19.0, 45.0, 80.0))
        ctx.add("labs", {"test": test, "value": value, "date": d.ago(d.num(0, 30))})
    elif what == "warfarin":
        ctx.add("medications", {"agent": d.pick(("warfarin", "acenocoumarol")), "indication": "treatment"})
        if d.chance(50):
            ctx.add("labs", _lab(d, "inr"))
    else:
        ctx.add("medications", {"agent": d.pick(("clopidogrel", "apixaban", "aspirin", "warfarin"))})
        conditions = ("mechanical_heart_valve", "recent_coronary_stent", "recent_vte_or_stroke", "atrial_fibrillation")
        _condition(ctx, d.pick(tuple(c for c in conditions if c in d.codes["condition"])))


def _finish(d: _Draw, ctx: _Ctx, max_pain: int) -> dict[str, Any]:
    """Apply the knobs that constrain the whole document; mark the index pain."""
    doc = ctx.doc
    if len(doc.get("pain", [])) < max_pain and d.chance(12):  # an unrelated second complaint
        _pain(d, ctx, d.pick(d.codes["body_region"]), d.pick(d.codes["pain_character"]), weeks=(12,))
    pain = doc["pain"] = doc["pain"][:max_pain]
    for item in pain:
        if ctx.region is not None:
            item["region"] = ctx.region
        if ctx.character is not None:
            item["character"] = ctx.character
    if d.chance(92):
        pain[0]["is_index"] = True
    if ctx.prior_procedures is False:
        doc.pop("procedures", None)
    elif ctx.prior_procedures and not doc.get("procedures"):
        kind = d.pick(("facet_mbb", "esi_transforaminal", "trigger_point_injection", "regenerative_injection"))
        _procedure(d, ctx, kind, pain[0]["region"], d.num(7, 700), relief=(50, 80), weeks=(12,))
    if d.chance(25):
        doc["id"] = "p" + str(d.num(1, 99999))
    return {k: v for k, v in doc.items() if v not in ({}, [])}
