"""The pathway registry (:data:`_BUILDERS`, how often each is drawn) and the pathways that cut across the
others: a general pain complaint, red flags (on top of another pathway), opioids."""

from __future__ import annotations

from collections.abc import Callable

from .blocks import _backdate_pain, _care, _condition, _imaging, _pain, _procedure, _red_flag, _screening
from .draws import _Ctx, _Draw
from .peripheral import _crps, _genicular, _idd, _neurolysis, _neuromodulation, _occipital, _tpi
from .spine import _bvn, _esi, _facet, _pva, _sij
from .vocabularies import _CES, _PATHWAY_SCOPE, _SCREEN_MARKS, _SEGMENTS, _VERTEBRAE


def _general(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("lumbar", *d.codes["body_region"]))
    character = ctx.character_of(d, ("axial", *d.codes["pain_character"]))
    pain = _pain(d, ctx, region, character, weeks=(4, 12, 26), nrs=(4, 5, 7, 8))
    _care(d, ctx, failed=60)
    if ctx.stage(d, ("none", "none", "some")) == "some":
        kinds = (
            "facet_mbb",
            "esi_transforaminal",
            "trigger_point_injection",
            "regenerative_injection",
            "sij_injection",
            "occipital_block",
            "genicular_block",
            "spinal_fusion",
            "laminectomy",
        )
        for offset in d.dates(d.num(1, 2), 10, 1200):
            _procedure(d, ctx, d.pick(kinds), region, offset, relief=(50, 75, 80), weeks=(12,))
    for instrument in d.some(tuple(_SCREEN_MARKS), 1, 4):  # the screening referrals
        ctx.add("screenings", _screening(d, instrument))
        if d.chance(20):
            ctx.add("screenings", _screening(d, instrument))
    if d.chance(30):
        area = region if region in _SEGMENTS or region in ("knee", "hip", "shoulder") else "lumbar"
        _imaging(d, ctx, d.pick(("normal", "facet_arthropathy", "disc_bulge", "osteoarthritis", "fusion")), area)
    _backdate_pain(ctx, pain)


def _red_flags(d: _Draw, ctx: _Ctx) -> None:
    """Red flags, in a patient on another pathway half of the time (their candidates must give way)."""
    base = d.pick(("spine", "spine", "facet", "facet", "esi", "sij", "pva", "bvn", "tpi"))
    if base == "spine" or (ctx.region is not None and ctx.region not in _PATHWAY_SCOPE[base][0]):
        region = ctx.region_of(d, ("lumbar", "lumbar", "thoracic", "cervical", "sacral"))
        character = ctx.character_of(d, ("axial", "axial", "radicular", "neurogenic_claudication"))
        pain = _pain(d, ctx, region, character, weeks=(2, 6), nrs=(7,), worsening=65)
        _care(d, ctx, failed=50)
    else:
        _BUILDERS[base](d, ctx)
        pain = ctx.doc["pain"][0]
        region = pain["region"]
        if d.chance(50):
            pain["worsening"] = d.chance(60)
    scenarios = ("ces", "neuro", "malignancy", "malignancy", "infection", "infection", "fracture", "fracture", "other")
    for scenario in d.some(scenarios, 1, 2):
        if scenario == "ces":
            ctx.add("red_flags", _red_flag(d, d.pick(_CES)))
        elif scenario == "neuro":
            if d.chance(50):
                ctx.add("red_flags", _red_flag(d, "progressive_neurological_deficit"))
            else:
                ctx.add("exam", {"test": "myelopathic_signs", "positive": d.chance(85)})
            if d.chance(60):
                _condition(ctx, d.pick(("cancer", "cancer", "immunosuppression", "active_systemic_infection")))
        elif scenario == "malignancy":
            if d.chance(50):
                _condition(ctx, "cancer", active=d.chance(80))
            for code in d.some(("unexplained_weight_loss", "night_pain"), 1, 2):
                ctx.add("red_flags", _red_flag(d, code))
            ctx.demographics["age_years"] = d.near((50, 70), 18, 95)
        elif scenario == "infection":
            choice = d.pick(("fever", "fever", "ivdu", "ivdu", "condition", "condition"))
            if choice == "fever":
                ctx.add("red_flags", _red_flag(d, "fever"))
            elif choice == "ivdu":
                ctx.add("red_flags", _red_flag(d, "intravenous_drug_use"))
                if d.chance(50):  # no sign of infection (yet)
                    pain["worsening"] = False
            else:
                _condition(ctx, d.pick(("immunosuppression", "active_systemic_infection")))
            if d.chance(25):
                ctx.add("red_flags", _red_flag(d, "progressive_neurological_deficit"))
        elif scenario == "fracture":
            choice = d.pick(("trauma", "trauma", "steroid", "steroid", "osteoporosis", "age"))
            if choice == "trauma":
                ctx.add("red_flags", _red_flag(d, "significant_trauma"))
            elif choice == "steroid":
                ctx.add("red_flags", _red_flag(d, "prolonged_corticosteroid_use"))
            elif choice == "osteoporosis":
                _condition(ctx, "osteoporosis")
            else:
                ctx.demographics["age_years"] = d.near((70,), 18, 95)
            if d.chance(25):
                _imaging(d, ctx, "vertebral_fracture", region if region in _VERTEBRAE else "lumbar")
        else:
            _condition(ctx, "spondyloarthritis", active=d.chance(90))
    _backdate_pain(ctx, pain)


def _opioids(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("lumbar", "lumbar", "cervical", "sacral", "hip", "knee", "lower_limb"))
    character = ctx.character_of(d, ("axial", "radicular", "joint", "neuropathic", "cancer"))
    pain = _pain(d, ctx, region, character, weeks=(26,))
    _care(d, ctx, failed=70)
    ctx.opioid = True
    for instrument in d.some(("stop_bang", "ort", "stop_bang"), 0, 2):
        ctx.add("screenings", _screening(d, instrument))
    if d.chance(25):  # a dose on record for one opioid only: the total is unknown
        agent = d.pick(("morphine", "hydrocodone", "oxycodone"))
        ctx.add("medications", {"agent": agent, "daily_dose": float(d.pick((50, 60, 90, 120))), "dose_unit": "mg"})
        ctx.add("medications", {"agent": d.pick(("tramadol", "tapentadol", "fentanyl_transdermal"))})
    if d.chance(45):
        history = (
            "sleep_apnea",
            "prior_overdose",
            "substance_use_disorder",
            "opioid_use_disorder",
            "sleep_apnea",
            "advanced_renal_disease",
            "liver_cirrhosis",
            "cancer",
            "palliative_care",
            "sickle_cell_disease",
        )
        _condition(ctx, d.pick(history), active=d.chance(80))
    if d.chance(25):
        ctx.demographics["age_years"] = d.near((65,), 18, 95)
    if ctx.prior_procedures is not False and d.chance(10):
        _procedure(d, ctx, "regenerative_injection", region, d.num(14, 700), relief=(50,), weeks=(12,))
    _backdate_pain(ctx, pain)


_BUILDERS: dict[str, Callable[[_Draw, _Ctx], None]] = {
    "general": _general,
    "facet": _facet,
    "esi": _esi,
    "sij": _sij,
    "neuromodulation": _neuromodulation,
    "crps": _crps,
    "pva": _pva,
    "bvn": _bvn,
    "genicular": _genicular,
    "occipital": _occipital,
    "neurolysis": _neurolysis,
    "tpi": _tpi,
    "idd": _idd,
    "red_flags": _red_flags,
    "opioids": _opioids,
}
# How often each pathway is drawn, relative to the others (by the number of rules that read it).
_WEIGHTS = {
    "general": 3,
    "facet": 6,
    "esi": 6,
    "sij": 4,
    "neuromodulation": 2,
    "crps": 3,
    "pva": 4,
    "bvn": 3,
    "genicular": 1,
    "occipital": 1,
    "neurolysis": 1,
    "tpi": 3,
    "idd": 2,
    "red_flags": 6,
    "opioids": 3,
}
