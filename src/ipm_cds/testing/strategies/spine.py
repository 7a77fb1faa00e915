"""The spinal pathways: facet joints, epidural steroid injections, sacroiliac joints, vertebral augmentation,
basivertebral nerve ablation."""

from __future__ import annotations

from typing import Any

from .blocks import (
    _backdate_pain,
    _care,
    _condition,
    _imaging,
    _oldest_days,
    _pain,
    _pregnancy,
    _procedure,
    _spine_region,
)
from .draws import _Ctx, _Draw
from .vocabularies import _COMPRESSIVE, _ESI_KINDS, _MODIC_LEVELS, _SEGMENTS, _SIJ_TESTS, _SPINE_SURGERY, _VERTEBRAE


def _facet(d: _Draw, ctx: _Ctx) -> None:
    region = _spine_region(d, ctx)
    character = ctx.character_of(d, ("axial",) * 7 + ("radicular", "neurogenic_claudication"))
    if character == "neurogenic_claudication" and region != "lumbar" and ctx.character is None:
        character = "radicular"
    pain = _pain(d, ctx, region, character, weeks=(12, 26), nrs=(4, 5, 7), disability=92)
    _care(d, ctx, failed=88)
    segments = _SEGMENTS[region]

    def levels() -> list[str]:
        return d.some(segments, 1, 3) if d.chance(90) else []

    stages = (
        *("none", "none", "one_block", "one_block", "one_block", "two_blocks", "two_blocks", "ia", "ia", "ia", "ia"),
        *("rfa", "rfa", "rfa", "rfa", "many_mbb", "many_mbb", "many_ia", "many_rfa"),
    )
    stage = ctx.stage(d, stages)
    blocks: list[dict[str, Any]] = []
    where = levels()
    if stage in ("one_block", "two_blocks", "ia"):
        like: int | None = None
        for offset in d.dates(1 if stage == "one_block" else 2, 7, 330):
            block = _procedure(
                d,
                ctx,
                "facet_mbb",
                region,
                offset,
                relief=(80, 90) if stage == "ia" else (50, 80, 90),
                like=like,
                weeks=(0,),
                levels=where,
                flags=True,
            )
            like = block.get("relief_pct")
            blocks.append(block)
        if stage == "ia" or (stage == "two_blocks" and d.chance(20)):  # no RFA: intra-articular injection instead
            reason = d.pick(("spinal_pseudarthrosis", "pacemaker", "implanted_defibrillator", "spinal_cord_stimulator"))
            _condition(ctx, reason)
            for offset in d.dates(d.pick((0, 0, 1, 2, 4)), 14, 360):
                _procedure(d, ctx, "facet_ia", region, offset, relief=(50,), weeks=(12,), levels=where)
    elif stage == "rfa":
        like = None
        for offset in d.dates(2, 330, 900):
            block = _procedure(
                d, ctx, "facet_mbb", region, offset, relief=(50, 80, 90), like=like, weeks=(0,), levels=where
            )
            like = block.get("relief_pct")
            blocks.append(block)
        first = d.pick((150, 170, 181, 182, 183, 184, 200, 250, 300, 400, 500))
        _procedure(d, ctx, "facet_rfa", region, first, relief=(50, 70), weeks=(26, 40), levels=where)
        if d.chance(20):
            _procedure(d, ctx, "facet_rfa", region, d.num(20, min(first - 1, 320)), relief=(50,), weeks=(26,))
    elif stage.startswith("many_"):
        kind = "facet_" + stage.removeprefix("many_")
        for offset in d.dates(d.pick((2, 3, 4, 4, 5)), 5, 360):
            _procedure(d, ctx, kind, region, offset, relief=(50, 80), weeks=(12,), levels=where)
    if d.chance(22):  # a fusion, at the blocked levels or elsewhere
        fused = where if where and blocks and d.chance(70) else d.some(segments, 1, 2)
        _procedure(d, ctx, "spinal_fusion", region, _oldest_days(ctx) + d.num(30, 900), levels=fused)
    if stage != "none" and region in ("cervical", "thoracic") and d.chance(35):
        other = "thoracic" if region == "cervical" else "cervical"
        kind = d.pick(("facet_mbb", "facet_rfa", "facet_ia"))
        _procedure(d, ctx, kind, other, d.num(10, 360), relief=(80,), levels=d.some(_SEGMENTS[other], 1, 2))
    if d.chance(40):
        finding = d.pick(
            (
                "facet_arthropathy",
                "facet_arthropathy",
                "synovial_cyst",
                "disc_bulge",
                "vertebral_fracture",
                "tumor",
                "infection",
                "significant_deformity",
                "central_canal_stenosis",
            )
        )
        _imaging(d, ctx, finding, region, level=d.pick(segments) if d.chance(60) else None)
    if d.chance(15):
        _condition(ctx, d.pick(("pacemaker", "implanted_defibrillator", "spinal_cord_stimulator")))
    _pregnancy(d, ctx, 5)
    _backdate_pain(ctx, pain)


def _esi(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("lumbar", "lumbar", "lumbar", "cervical", "cervical", "thoracic"))
    character = ctx.character_of(d, ("radicular",) * 5 + ("neurogenic_claudication",) * 3 + ("axial",))
    if character == "neurogenic_claudication" and region != "lumbar" and ctx.character is None:
        character = "radicular"
    pain = _pain(d, ctx, region, character, weeks=(4, 12), nrs=(5, 7), disability=92)
    if character == "radicular" and d.chance(40):  # unilateral radiculopathy: the transforaminal presentation
        pain["laterality"] = d.pick(("left", "right"))
    _care(d, ctx, failed=88)
    level = d.pick(_SEGMENTS[region])
    claudication = character == "neurogenic_claudication"
    findings = ("central_canal_stenosis", "foraminal_stenosis") if claudication else _COMPRESSIVE
    for _ in range(d.pick((1, 1, 1, 1, 1, 2, 0))):
        concordant = d.pick((True, True, True, True, True, None, False))
        where = level if d.chance(85) else None
        if where is not None and d.chance(25):  # a finding at another level: the multilevel presentation
            where = d.pick(_SEGMENTS[region])
        _imaging(d, ctx, d.pick(findings), region, level=where, modality="mri", concordant=concordant)
    stage = ctx.stage(d, ("none", "none", "none", "one", "two", "many"))
    if stage != "none":
        count = {"one": 1, "two": 2, "many": d.pick((4, 5))}[stage]
        like: int | None = None
        for offset in d.dates(count, 30, 330 if stage == "many" else 500):
            kind = d.pick(_ESI_KINDS)
            done = _procedure(d, ctx, kind, region, offset, relief=(50, 70), like=like, weeks=(12, 20), levels=[level])
            like = done.get("relief_pct")
    if d.chance(35):
        _procedure(d, ctx, "laminectomy", region, _oldest_days(ctx) + d.num(60, 2000), levels=[level])
    if d.chance(25):
        ctx.add("allergies", {"substance": "iodinated_contrast"})
    if d.chance(15):
        _condition(ctx, "diabetes")
    if d.chance(15):
        ctx.add("medications", {"agent": "prednisone"})
    if character == "radicular" and d.chance(25):  # a second, axial complaint in the same region
        _pain(d, ctx, region, "axial", weeks=(12,), nrs=(4,))
    _pregnancy(d, ctx, 5)
    _backdate_pain(ctx, pain)


def _sij(d: _Draw, ctx: _Ctx) -> None:
    character = ctx.character_of(d, ("axial", "joint", "joint"))
    region = ctx.region_of(d, ("sacroiliac",))
    pain = _pain(d, ctx, region, character, weeks=(12, 26), nrs=(4, 6), disability=40)
    _care(d, ctx, failed=90, therapy=(4, 12))
    if d.chance(80):
        ctx.care["physical_therapy_weeks"] = d.near((4, 12), 0, 52)
    tests = d.some(_SIJ_TESTS, d.pick((0, 2, 3, 4, 5, 6)), 6)
    positives = d.near((3, 5), 0, len(tests), pct=70) if tests else 0
    for i, test in enumerate(tests):
        finding: dict[str, Any] = {"test": test, "positive": i < positives}
        if d.chance(30):
            finding["region"] = "sacroiliac"
        ctx.add("exam", finding)
    side = pain.get("laterality")
    stages = (
        "none",
        "none",
        "none",
        "none",
        "diagnostic",
        "diagnostic",
        "two_diagnostic",
        "therapeutic",
        "therapeutic",
        "many",
    )
    stage = ctx.stage(d, stages)
    if stage in ("diagnostic", "two_diagnostic"):
        like: int | None = None
        for offset in d.dates(1 if stage == "diagnostic" else 2, 7, 400):
            block = _procedure(
                d,
                ctx,
                "sij_injection",
                region,
                offset,
                relief=(75,),
                like=like,
                weeks=(0,),
                purpose="diagnostic",
                side=side,
                flags=True,
            )
            like = block.get("relief_pct")
    elif stage in ("therapeutic", "many"):
        count = d.pick((1, 1, 2)) if stage == "therapeutic" else d.pick((3, 4, 4, 5))
        offsets = d.dates(count, 20, 350) if stage == "many" else d.dates(count, 90, 700)
        _procedure(
            d,
            ctx,
            "sij_injection",
            region,
            offsets[0] + d.num(14, 60),
            relief=(75, 90),
            weeks=(0,),
            purpose="diagnostic",
            side=side,
        )
        like = None
        for offset in offsets:
            done = _procedure(
                d,
                ctx,
                "sij_injection",
                region,
                offset,
                relief=(50, 70),
                like=like,
                weeks=(12, 20),
                purpose="therapeutic",
                side=side,
                flags=True,
            )
            like = done.get("relief_pct")
    if d.chance(5):
        _procedure(d, ctx, "sij_rfa", region, d.num(30, 700), relief=(50,), weeks=(26,))
    if d.chance(10):
        where = d.pick(("sacroiliac", "sacral", "pelvis", "lumbar"))
        _imaging(d, ctx, d.pick(("vertebral_fracture", "tumor", "infection")), where)
    if d.chance(25):
        ctx.add("allergies", {"substance": "iodinated_contrast"})
    if d.chance(10):
        _condition(ctx, "diabetes")
    if d.chance(15):
        ctx.add("medications", {"agent": "prednisone"})
    _pregnancy(d, ctx, 8)
    _backdate_pain(ctx, pain)


def _pva(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("thoracic", "lumbar", "lumbar", "cervical"))
    character = ctx.character_of(d, ("axial", "axial", "axial", "cancer"))
    pain = _pain(d, ctx, region, character, weeks=(2, 6), nrs=(4, 5, 8), worsening=92, worse=65)
    _care(d, ctx, failed=88)
    level = d.pick(_VERTEBRAE[region])
    if d.chance(75):  # osteoporotic fracture, with marrow oedema on MRI
        _imaging(d, ctx, "vertebral_fracture", region, level=level)
        if d.chance(90):
            edema = level if d.chance(90) else d.pick(_VERTEBRAE[region])
            _imaging(d, ctx, "bone_marrow_edema", region, level=edema, modality=d.pick(("mri",) * 6 + ("ct",)))
        if d.chance(40):
            _condition(ctx, "osteoporosis")
    if character == "cancer" or d.chance(25):  # a metastatic lesion
        _imaging(d, ctx, "tumor", region, level=level, modality="mri")
        _condition(ctx, "cancer", active=d.chance(90))
    if ctx.prior_procedures is not False and (d.chance(15) or (ctx.prior_procedures and not ctx.doc.get("procedures"))):
        treated = level if d.chance(50) else d.pick(_VERTEBRAE[region])
        _procedure(d, ctx, "vertebral_augmentation", region, d.num(30, 900), levels=[treated])
    if d.chance(15):
        ctx.add("allergies", {"substance": d.pick(("bone_cement", "iodinated_contrast"))})
    if d.chance(15):
        _condition(ctx, "bleeding_disorder")
    if d.chance(15):
        _imaging(d, ctx, "infection", region, level=level, modality="mri")
    if d.chance(10):
        _condition(ctx, d.pick(("active_systemic_infection", "local_infection_at_site")))
    _pregnancy(d, ctx, 6)
    _backdate_pain(ctx, pain)


def _bvn(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("lumbar",))
    pain = _pain(d, ctx, region, ctx.character_of(d, ("axial",)), weeks=(26, 52), nrs=(5,), disability=85)
    _care(d, ctx, failed=88)
    if d.chance(88):
        ctx.care["nonoperative_months"] = d.near((6, 12), 0, 120)
    modic = d.pick(("modic_type_1", "modic_type_2"))
    _imaging(d, ctx, modic, d.pick(("lumbar", "lumbar", "sacral")), level=d.pick(_MODIC_LEVELS), modality="mri")
    if d.chance(30):
        _pain(d, ctx, d.pick(("lumbar", "sacral")), d.pick(("radicular", "neurogenic_claudication")), weeks=(12,))
    if d.chance(35):
        stenosis = d.pick(("central_canal_stenosis", "foraminal_stenosis"))
        _imaging(d, ctx, stenosis, d.pick(("lumbar", "sacral")), concordant=d.pick((True, True, True, False, None)))
    if d.chance(30):
        _imaging(d, ctx, d.pick(("disc_herniation", "spondylolisthesis")), d.pick(("lumbar", "sacral")))
    if ctx.prior_procedures is not False and d.chance(22):
        _procedure(d, ctx, d.pick(_SPINE_SURGERY), d.pick(("lumbar", "sacral")), d.num(200, 3000))
    if ctx.prior_procedures is not False and (d.chance(8) or (ctx.prior_procedures and not ctx.doc.get("procedures"))):
        _procedure(d, ctx, "bvn_ablation", region, d.num(30, 900), relief=(50,), weeks=(26,))
    if d.chance(20):
        _condition(ctx, "osteoporosis")
    if d.chance(15):
        _condition(ctx, d.pick(("pacemaker", "implanted_defibrillator")))
    if d.chance(8):
        _imaging(d, ctx, "infection", region, modality="mri")
    _pregnancy(d, ctx, 6)
    _backdate_pain(ctx, pain)
