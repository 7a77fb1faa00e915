"""Pathways beyond the spinal injections: neuromodulation, CRPS, genicular, occipital, neurolysis, trigger
points, intrathecal drug delivery."""

from __future__ import annotations

from typing import Any

from .blocks import (
    _backdate_pain,
    _care,
    _condition,
    _imaging,
    _pain,
    _pregnancy,
    _procedure,
    _psych_evaluation,
    _screening,
    _spine_region,
)
from .draws import _Ctx, _Draw
from .vocabularies import _CANCER_REGIONS, _LIMBS, _SEGMENTS, _SPINE_SURGERY, _TPI_REGIONS, SPINE


def _neuromod_candidacy(d: _Draw, ctx: _Ctx, region: str, lower: bool) -> None:
    """What SCS and DRG read: conservative care, psychological evaluation, trials, implants, contraindications."""
    _care(d, ctx, failed=70)
    _psych_evaluation(d, ctx)
    if d.chance(25):
        ctx.add("screenings", _screening(d, d.pick(("pcs", "phq9"))))
    stage = ctx.stage(d, ("none", "none", "none", "trial", "trial", "trials", "implanted"))
    kind = "drg_trial" if d.chance(60 if lower else 35) else "scs_trial"
    if stage in ("trial", "trials", "implanted"):
        like: int | None = None
        for offset in d.dates(1 if stage != "trials" else 2, 14, 500):
            done = _procedure(d, ctx, kind, region, offset, relief=(50,), like=like, weeks=(1,), flags=True)
            like = done.get("relief_pct")
    if stage == "implanted":
        _procedure(d, ctx, kind.replace("trial", "implant"), region, d.num(1, 10), relief=(50,))
    if d.chance(8):
        _condition(ctx, "spinal_cord_stimulator")
    if d.chance(40):
        contraindication = d.pick(
            (
                "active_systemic_infection",
                "local_infection_at_site",
                "bleeding_disorder",
                "untreated_major_psychiatric_disorder",
                "substance_use_disorder",
                "opioid_use_disorder",
                "substance_use_disorder",
                "opioid_use_disorder",
                "pacemaker",
                "implanted_defibrillator",
            )
        )
        _condition(ctx, contraindication)
    _pregnancy(d, ctx, 10)


def _neuromodulation(d: _Draw, ctx: _Ctx) -> None:
    kind = d.pick(("psps", "psps", "pdn"))
    if ctx.region is not None:
        kind = "psps" if ctx.region in SPINE else "pdn"
    if kind == "psps":  # persistent spinal pain after surgery
        region = _spine_region(d, ctx)
        pain = _pain(d, ctx, region, ctx.character_of(d, ("radicular", "neuropathic")), weeks=(26,), nrs=(7,))
        surgery = d.pick(_SPINE_SURGERY)
        _procedure(d, ctx, surgery, region, d.num(180, 3000), levels=d.some(_SEGMENTS[region], 1, 2))
    else:  # painful diabetic neuropathy
        region = ctx.region_of(d, ("lower_limb", "lower_limb", "upper_limb"))
        pain = _pain(d, ctx, region, ctx.character_of(d, ("neuropathic",)), weeks=(26,), nrs=(7,))
        _condition(ctx, "painful_diabetic_neuropathy", active=d.chance(92))
        if d.chance(70):
            _condition(ctx, "diabetes")
    _neuromod_candidacy(d, ctx, region, region == "lower_limb")
    _backdate_pain(ctx, pain)


def _crps(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, _LIMBS)
    pain = _pain(d, ctx, region, ctx.character_of(d, ("neuropathic",)), weeks=(12, 26), nrs=(7,))
    where = d.pick((region, region, None, None, d.pick(_LIMBS)))
    _condition(ctx, "crps", active=d.chance(92), region=where)
    if ctx.prior_procedures is not False and d.chance(30):
        upper = region in ("upper_limb", "shoulder")
        target = d.pick(("cervical", "thoracic", "upper_limb") if upper else ("lumbar", "lower_limb"))
        for offset in d.dates(d.num(1, 2), 14, 400):
            _procedure(
                d, ctx, "sympathetic_block", target, offset, relief=(50,), weeks=(2,), side=pain.get("laterality")
            )
    if d.chance(70):
        _neuromod_candidacy(d, ctx, region, region in ("lower_limb", "hip", "knee"))
    else:
        _care(d, ctx)
        _pregnancy(d, ctx, 10)
    _backdate_pain(ctx, pain)


def _genicular(d: _Draw, ctx: _Ctx) -> None:
    character = ctx.character_of(d, ("joint", "joint", "neuropathic"))
    pain = _pain(d, ctx, ctx.region_of(d, ("knee",)), character, weeks=(12, 26), nrs=(5, 7))
    _care(d, ctx)
    if d.chance(70):
        _imaging(d, ctx, "osteoarthritis", "knee", modality=d.pick(("xray", "mri")))
    stage = ctx.stage(d, ("none", "block", "rfa", "arthroplasty", "regenerative"))
    side = pain.get("laterality")
    if stage == "block":
        for offset in d.dates(d.num(1, 2), 7, 300):
            _procedure(d, ctx, "genicular_block", "knee", offset, relief=(50, 80), weeks=(0,), side=side, flags=True)
    elif stage == "rfa":
        _procedure(d, ctx, "genicular_block", "knee", d.num(300, 700), relief=(50, 80), weeks=(0,), side=side)
        for offset in d.dates(d.num(1, 2), 30, 299):
            # marks at the repeat defaults: more than 50% relief for at least 12 weeks
            _procedure(d, ctx, "genicular_rfa", "knee", offset, relief=(50, 60), weeks=(12, 26), side=side)
    elif stage == "arthroplasty":
        _procedure(d, ctx, "knee_arthroplasty", "knee", d.num(200, 2000), side=side)
    elif stage == "regenerative":
        _procedure(d, ctx, "regenerative_injection", "knee", d.num(14, 700), relief=(50,), weeks=(12,), side=side)
    _pregnancy(d, ctx, 6)
    _backdate_pain(ctx, pain)


def _occipital(d: _Draw, ctx: _Ctx) -> None:
    character = ctx.character_of(d, ("headache", "headache", "neuropathic"))
    pain = _pain(d, ctx, ctx.region_of(d, ("head",)), character, weeks=(12,), nrs=(5, 7), disability=10)
    _care(d, ctx, failed=60)
    if ctx.stage(d, ("none", "none", "some")) == "some":
        for offset in d.dates(d.num(1, 7), 7, 360):  # up to 7 sessions: past the default cap of 6
            _procedure(d, ctx, "occipital_block", "head", offset, relief=(50,), weeks=(4,))
    _backdate_pain(ctx, pain)


def _neurolysis(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("abdomen", "pelvis"))
    pain = _pain(d, ctx, region, ctx.character_of(d, ("cancer", "cancer", "visceral")), weeks=(4, 12), nrs=(7,))
    if d.chance(85):
        _condition(ctx, "cancer", active=d.chance(92))
    _care(d, ctx, failed=75)
    if ctx.stage(d, ("none", "none", "some")) == "some":
        kind = "celiac_neurolysis" if region == "abdomen" else "hypogastric_neurolysis"
        purpose = d.pick(("diagnostic", "diagnostic", "therapeutic", None))
        _procedure(d, ctx, kind, region, d.num(7, 200), relief=(50,), weeks=(2,), purpose=purpose)
    _backdate_pain(ctx, pain)


def _tpi(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, (*_TPI_REGIONS, "abdomen", "abdomen"))
    pain = _pain(d, ctx, region, ctx.character_of(d, ("myofascial",)), weeks=(6, 12), nrs=(5,))
    _care(d, ctx, failed=88)
    if d.chance(85):
        ctx.care["active_exercise_program"] = d.chance(75)
    if d.chance(90):
        band: dict[str, Any] = {"test": "taut_band", "positive": d.chance(90)}
        where = d.pick((region, region, region, None, None, None, "lumbar"))
        if where is not None:
            band["region"] = where
        ctx.add("exam", band)
    if ctx.stage(d, ("none", "none", "some")) == "some":
        offsets = d.dates(d.num(1, 5), 43, 360)
        offsets[-1] = d.near((42,), 1, 365)
        for offset in sorted(set(offsets), reverse=True):
            _procedure(d, ctx, "trigger_point_injection", region, offset, relief=(50,), weeks=(4,))
    if d.chance(30):
        _condition(ctx, "crps")
    _backdate_pain(ctx, pain)


def _idd(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, _CANCER_REGIONS)
    pain = _pain(d, ctx, region, ctx.character_of(d, ("cancer",)), weeks=(4, 12), nrs=(7, 9))
    _condition(ctx, "cancer", active=d.chance(92))
    _care(d, ctx, failed=88)
    stage = ctx.stage(d, ("none", "none", "none", "trial", "trials", "implanted"))
    if stage != "none":
        like: int | None = None
        for offset in d.dates(2 if stage == "trials" else 1, 14, 300):
            done = _procedure(
                d, ctx, "idd_trial", "thoracic", offset, relief=(50, 70), like=like, weeks=(1,), flags=True
            )
            like = done.get("relief_pct")
    if stage == "implanted":
        _procedure(d, ctx, "idd_implant", "thoracic", d.num(1, 13))
    if d.chance(10):
        _condition(ctx, "intrathecal_pump")
    if d.chance(40):
        codes = ("untreated_major_psychiatric_disorder", "bleeding_disorder", "active_systemic_infection")
        _condition(ctx, d.pick((*codes, *codes[:2], "local_infection_at_site")))
    _backdate_pain(ctx, pain)
