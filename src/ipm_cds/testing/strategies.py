"""Hypothesis strategies for patients.

``patients()`` draws valid, clinically coherent :class:`~ipm_cds.PatientCase` objects. Each draw follows
one clinical **pathway** (facet, epidural, sacroiliac, neuromodulation, CRPS, vertebral augmentation,
basivertebral nerve ablation, genicular, occipital, neurolysis, trigger points, intrathecal drug delivery,
red flags, opioids, or a general pain complaint): a pain complaint in the right region with the right
character, the imaging, examination and prior procedures that pathway reads, with numbers on and around
the thresholds of the bundled ruleset so that both sides of each are reached. Around it, a background of
demographics, conservative care, screenings, medications, laboratory results, conditions, allergies and
red flags makes the safety rules meet every pathway.

Coherence: every date is on or before ``as_of``; a procedure's relief never lasts longer than the time
since it; a pain began before the procedures done for it; relief is 0–100 %, scores stay in their
instruments' ranges, laboratory values in their units' ranges, opioid doses are daily doses in the unit
the CDC MME table uses (``fentanyl_transdermal`` in ``mcg_per_hour``, the others in ``mg``); only a
female patient is pregnant. Draws are cheap (every strategy is built once, draws are plain choices) and
shrink towards the simplest patient: the general pathway, one complaint, no optional section.

Keyword knobs steer the draw; ``None`` leaves the choice to hypothesis:

- ``pathway``: one of :data:`PATHWAYS`;
- ``region``, ``character``: of every pain complaint (and the pathway's procedures); pathways that cannot
  have them are not drawn;
- ``red_flags``, ``anticoagulants`` (any antithrombotic, NSAIDs included), ``opioids``,
  ``prior_procedures``: ``True`` for at least one, ``False`` for none;
- ``max_pain``: at most this many pain complaints (at least one is always drawn).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar, cast, get_args

from hypothesis import strategies as st
from pydantic import ValidationError

from .. import patient as pm
from ..patient import PatientCase
from ..ruleset.loader import Ruleset

T = TypeVar("T")

DEFAULT_AS_OF = date(2025, 6, 2)

SPINE = ("cervical", "thoracic", "lumbar")
_REGIONS = tuple(get_args(pm.BodyRegion))
_CHARACTERS = tuple(get_args(pm.PainCharacter))
_RED_FLAGS = tuple(get_args(pm.RedFlagCode))
_CONDITIONS = tuple(get_args(pm.ConditionCode))
_ALLERGIES = tuple(get_args(pm.AllergySubstance))
_LATERALITY = tuple(get_args(pm.Laterality))
_CES = (
    "bladder_dysfunction",
    "saddle_anesthesia",
    "bowel_dysfunction",
    "bilateral_leg_neurological_deficit",
    "sexual_dysfunction",
    "bilateral_sciatica",
)
_SIJ_TESTS = (
    "sij_distraction",
    "sij_compression",
    "sij_thigh_thrust",
    "sij_sacral_thrust",
    "sij_gaenslen",
    "sij_faber",
)
_SPINE_SURGERY = ("spinal_fusion", "laminectomy", "discectomy", "other_spine_surgery")
_ESI_KINDS = ("esi_interlaminar", "esi_transforaminal", "esi_caudal")
_COMPRESSIVE = (
    "disc_herniation",
    "nerve_root_compression",
    "foraminal_stenosis",
    "central_canal_stenosis",
    "disc_bulge",
    "spondylolisthesis",
    "synovial_cyst",
)
# Segments (facet joints, discs) and vertebrae by region.
_SEGMENTS = {
    "cervical": ("C5-C6", "C6-C7", "C4-C5", "C3-C4"),
    "thoracic": ("T11-T12", "T10-T11", "T7-T8"),
    "lumbar": ("L4-L5", "L5-S1", "L3-L4", "L2-L3"),
    "sacral": ("L5-S1", "S1", "S1-S2"),
}
_VERTEBRAE = {"cervical": ("C6", "C5", "C7"), "thoracic": ("T12", "T11", "T8"), "lumbar": ("L1", "L2", "L3", "L4")}
_MODIC_LEVELS = ("L4-L5", "L5-S1", "L3-L4", "L4", "L5", "S1", "L3", "L2-L3")  # L2-L3 is outside L3-S1

# Antithrombotics (with NSAIDs, which the catalogue marks antithrombotic) and their usual indications.
_ANTITHROMBOTICS = (
    "aspirin",
    "apixaban",
    "warfarin",
    "clopidogrel",
    "rivaroxaban",
    "ibuprofen",
    "naproxen",
    "dabigatran",
    "enoxaparin_therapeutic",
    "enoxaparin_prophylactic",
    "ticagrelor",
    "prasugrel",
    "edoxaban",
    "heparin_sc",
    "acenocoumarol",
    "fondaparinux",
    "cilostazol",
    "diclofenac",
    "meloxicam",
    "ketorolac",
)
_ANTITHROMBOTIC_INDICATIONS = (None, "secondary_prevention", "primary_prevention", "treatment")
_OTHER_MEDICATIONS = (
    "acetaminophen",
    "gabapentin",
    "duloxetine",
    "sertraline",
    "prednisone",
    "pregabalin",
    "amitriptyline",
    "cyclobenzaprine",
    "escitalopram",
    "fluoxetine",
    "metformin",
    "insulin",
)
_BENZODIAZEPINES = ("alprazolam", "lorazepam", "clonazepam", "diazepam")
# Opioid -> (dose unit of the CDC MME table, daily doses giving MME/day on and around 50 and 90).
_OPIOIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "morphine": ("mg", (30, 49, 50, 51, 89, 90, 91, 120)),
    "oxycodone": ("mg", (20, 30, 40, 60, 80)),
    "hydrocodone": ("mg", (20, 49, 50, 51, 89, 90, 91)),
    "hydromorphone": ("mg", (8, 10, 12, 18, 20)),
    "oxymorphone": ("mg", (10, 20, 30, 40)),
    "fentanyl_transdermal": ("mcg_per_hour", (12, 25, 37.5, 50)),
    "methadone": ("mg", (5, 10, 20, 40)),
    "tramadol": ("mg", (100, 200, 300, 400)),
    "tapentadol": ("mg", (100, 200, 300)),
    "codeine": ("mg", (120, 240, 360)),
    "buprenorphine": ("mg", (2, 8, 16)),  # a partial agonist: never counted toward MME
}
_DISABILITY = {"cervical": "ndi", "thoracic": "odi_pct", "lumbar": "odi_pct", "sacral": "odi_pct"}

PATHWAYS = (
    "general",
    "facet",
    "esi",
    "sij",
    "neuromodulation",
    "crps",
    "pva",
    "bvn",
    "genicular",
    "occipital",
    "neurolysis",
    "tpi",
    "idd",
    "red_flags",
    "opioids",
)
"""The clinical pathways ``patients(pathway=...)`` can draw, simplest first."""

_LIMBS = ("lower_limb", "upper_limb", "knee", "hip", "shoulder")
_TPI_REGIONS = ("lumbar", "cervical", "thoracic", "shoulder", "chest_wall", "abdomen", "upper_limb")
_CANCER_REGIONS = ("thoracic", "lumbar", "abdomen", "pelvis", "chest_wall", "cervical", "hip")
# Regions and characters each pathway can draw (for the region and character knobs).
_PATHWAY_SCOPE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "general": (_REGIONS, _CHARACTERS),
    "facet": (SPINE, ("axial", "radicular", "neurogenic_claudication")),
    "esi": (SPINE, ("radicular", "neurogenic_claudication", "axial")),
    "sij": (("sacroiliac",), ("axial", "joint")),
    "neuromodulation": ((*SPINE, "lower_limb", "upper_limb"), ("radicular", "neuropathic")),
    "crps": (_LIMBS, ("neuropathic",)),
    "pva": (SPINE, ("axial", "cancer")),
    "bvn": (("lumbar",), ("axial",)),
    "genicular": (("knee",), ("joint", "neuropathic")),
    "occipital": (("head",), ("headache", "neuropathic")),
    "neurolysis": (("abdomen", "pelvis"), ("cancer", "visceral")),
    "tpi": (_TPI_REGIONS, ("myofascial",)),
    "idd": (_CANCER_REGIONS, ("cancer",)),
    "red_flags": ((*SPINE, "sacral"), ("axial", "radicular", "neurogenic_claudication")),
    "opioids": ((*SPINE, "sacral", "hip", "knee", "lower_limb"), ("axial", "radicular", "joint", "neuropathic")),
}


# -- cheap draws ------------------------------------------------------------------------------------------


@functools.cache
def _choice(options: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(options)


@functools.cache
def _int(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _around(marks: tuple[int, ...], low: int, high: int) -> tuple[int, ...]:
    """Each mark and one step either side of it, inside [low, high]."""
    values = sorted({v for m in marks for v in (m - 1, m, m + 1) if low <= v <= high})
    return tuple(values)


class _Draw:
    """Plain choices from strategies built once, so that a draw costs little and shrinks well."""

    __slots__ = ("as_of", "draw")

    def __init__(self, draw: st.DrawFn, as_of: date) -> None:
        self.draw = draw
        self.as_of = as_of

    def pick(self, options: Sequence[T]) -> T:
        return cast(T, self.draw(_choice(tuple(options))))

    def num(self, low: int, high: int) -> int:
        return self.draw(_int(low, high))

    def chance(self, pct: int) -> bool:
        """True with about ``pct`` % probability; shrinks to False."""
        return self.draw(_int(0, 99)) >= 100 - pct

    def near(self, marks: tuple[int, ...], low: int, high: int, pct: int = 75) -> int:
        """On or one step either side of a threshold mark (``pct`` %), else anywhere in [low, high]."""
        close = _around(marks, low, high)
        if close and self.chance(pct):
            return self.pick(close)
        return self.num(low, high)

    def some(self, options: Sequence[T], low: int, high: int) -> list[T]:
        """Between ``low`` and ``high`` distinct options."""
        pool = list(options)
        out: list[T] = []
        for _ in range(self.num(low, min(high, len(pool)))):
            item = self.pick(pool)
            pool.remove(item)
            out.append(item)
        return out

    def ago(self, days: int) -> str:
        return (self.as_of - timedelta(days=max(0, days))).isoformat()

    def side(self, pct: int = 60) -> str | None:
        return self.pick(_LATERALITY) if self.chance(pct) else None

    def dates(self, n: int, low: int, high: int) -> list[int]:
        """``n`` distinct day offsets in [low, high], oldest first."""
        seen: set[int] = set()
        for _ in range(n):
            offset = self.num(low, high)
            while offset in seen:
                offset = offset + 1 if offset < high else low + (offset - low + 1) % max(1, high - low + 1)
                if len(seen) >= high - low + 1:
                    break
            seen.add(offset)
        return sorted(seen, reverse=True)


@dataclass
class _Ctx:
    """The knobs of one ``patients()`` call, and the document being built."""

    region: str | None
    character: str | None
    prior_procedures: bool | None
    doc: dict[str, Any]

    def region_of(self, d: _Draw, options: Sequence[str]) -> str:
        return self.region if self.region is not None else d.pick(options)

    def character_of(self, d: _Draw, options: Sequence[str]) -> str:
        return self.character if self.character is not None else d.pick(options)

    def stage(self, d: _Draw, stages: Sequence[str]) -> str:
        """A pathway stage; stage ``"none"`` (no prior procedure) is skipped with ``prior_procedures=True``
        and the only one with ``prior_procedures=False``."""
        if self.prior_procedures is False:
            return "none"
        if self.prior_procedures:
            stages = [s for s in stages if s != "none"] or list(stages)
        return d.pick(stages)

    def add(self, section: str, item: dict[str, Any]) -> dict[str, Any]:
        self.doc.setdefault(section, []).append(item)
        return item

    @property
    def care(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.doc.setdefault("conservative_care", {}))

    @property
    def demographics(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.doc.setdefault("demographics", {}))


# -- building blocks -----------------------------------------------------------------------------------------


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
) -> dict[str, Any]:
    """A pain complaint: duration near ``weeks``, NRS near ``nrs``, disability score ``disability`` % of draws."""
    item: dict[str, Any] = {"region": region, "character": character}
    side = d.side()
    if side is not None:
        item["laterality"] = side
    if d.chance(90):
        item["nrs"] = d.near(nrs, 0, 10)
    duration = d.near(weeks, 0, 520) if d.chance(92) else None
    if duration is not None:
        if d.chance(70):
            item["duration_weeks"] = duration
        else:  # an onset date that gives the same whole weeks
            item["onset_date"] = d.ago(duration * 7 + d.num(0, 6))
    if d.chance(disability):
        score = "ndi" if _DISABILITY.get(region) == "ndi" or (region not in _DISABILITY and d.chance(30)) else "odi_pct"
        item[score] = d.near((40,), 0, 100, pct=40) if score == "odi_pct" else d.num(0, 50)
    if d.chance(worsening):
        item["worsening"] = d.chance(65)
    return ctx.add("pain", item)


def _relief(d: _Draw, marks: tuple[int, ...], missing: int = 8) -> int | None:
    return None if d.chance(missing) else d.near(marks, 0, 100)


def _procedure(
    d: _Draw,
    ctx: _Ctx,
    kind: str,
    region: str,
    days_ago: int,
    *,
    relief: tuple[int, ...] | None = None,
    weeks: tuple[int, ...] | None = None,
    purpose: str | None = None,
    levels: Sequence[str] = (),
    side: str | None = None,
    flags: bool = False,
) -> dict[str, Any]:
    """One session; relief near ``relief`` and relief duration near ``weeks``, never longer than the time since."""
    item: dict[str, Any] = {"kind": kind, "region": region, "date": d.ago(days_ago)}
    if purpose is not None:
        item["purpose"] = purpose
    if levels:
        item["levels"] = list(levels)
    if side is not None:
        item["side"] = side
    if relief is not None:
        pct = _relief(d, relief)
        if pct is not None:
            item["relief_pct"] = pct
    if weeks is not None and d.chance(90):
        limit = days_ago / 7
        if limit >= 1 and d.chance(85):
            item["relief_duration_weeks"] = float(min(d.near(weeks, 0, 520), int(limit)))
        else:  # a short block: hours to days
            item["relief_duration_weeks"] = round(min(limit, d.pick((0.0, 0.1, 0.5, 1.0))), 2)
    if flags:
        for flag in ("same_scale", "duration_consistent_with_agent"):
            if d.chance(25):
                item[flag] = d.chance(70)
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
    days_ago: int | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"modality": modality or d.pick(("mri", "mri", "ct", "xray")), "finding": finding}
    item["region"] = region
    if level is not None:
        item["level"] = level
    if concordant is not None:
        item["concordant"] = concordant
    if days_ago is not None:
        item["date"] = d.ago(days_ago)
    return ctx.add("imaging", item)


def _condition(ctx: _Ctx, code: str, *, active: bool = True, region: str | None = None) -> None:
    item: dict[str, Any] = {"code": code}
    if not active:
        item["active"] = False
    if region is not None:
        item["region"] = region
    ctx.add("conditions", item)


def _care(d: _Draw, ctx: _Ctx, failed: int = 80) -> None:
    """Conservative care: failed in ``failed`` % of draws, with physical therapy and an exercise programme."""
    care = ctx.care
    if d.chance(92):
        care["failed"] = d.chance(failed)
    if d.chance(45):
        care["physical_therapy_weeks"] = d.near((4,), 0, 52)
    if d.chance(55):
        care["active_exercise_program"] = d.chance(50)


def _psych_evaluation(d: _Draw, ctx: _Ctx) -> None:
    if d.chance(65):
        completed = d.chance(80)
        evaluation: dict[str, Any] = {"completed": completed}
        if completed:
            evaluation["date"] = d.ago(d.num(5, 300))
            if d.chance(85):
                evaluation["cleared"] = d.chance(75)
        ctx.doc["psychological_evaluation"] = evaluation


def _spine_region(d: _Draw, ctx: _Ctx) -> str:
    return ctx.region_of(d, ("lumbar", "lumbar", "cervical", "thoracic"))


def _oldest_days(ctx: _Ctx) -> int:
    dates = [date.fromisoformat(p["date"]) for p in ctx.doc.get("procedures", [])]
    return max(((ctx_as_of(ctx) - x).days for x in dates), default=0)


def ctx_as_of(ctx: _Ctx) -> date:
    return cast(date, ctx.doc["__as_of"])


# -- pathways ------------------------------------------------------------------------------------------------


def _general(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("lumbar", *_REGIONS))
    character = ctx.character_of(d, ("axial", *_CHARACTERS))
    _pain(d, ctx, region, character, weeks=(4, 12, 26), nrs=(4, 5, 7, 8))
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
            kind = d.pick(kinds)
            _procedure(d, ctx, kind, region, offset, relief=(50, 75, 80), weeks=(12,))
    if d.chance(30):
        area = region if region in _SEGMENTS or region in ("knee", "hip", "shoulder") else "lumbar"
        finding = d.pick(("normal", "facet_arthropathy", "disc_bulge", "osteoarthritis", "spondylolisthesis"))
        _imaging(d, ctx, finding, area, days_ago=d.num(0, 700) if d.chance(50) else None)


def _facet(d: _Draw, ctx: _Ctx) -> None:
    region = _spine_region(d, ctx)
    character = ctx.character_of(d, ("axial",) * 6 + ("radicular", "neurogenic_claudication"))
    if character == "neurogenic_claudication" and region != "lumbar" and ctx.character is None:
        character = "radicular"
    pain = _pain(d, ctx, region, character, weeks=(12,), nrs=(4, 5), disability=85)
    _care(d, ctx, failed=82)
    segments = _SEGMENTS[region]

    def levels() -> list[str]:
        return d.some(segments, 1, 3) if d.chance(85) else []

    stage = ctx.stage(d, ("none", "none", "one_block", "two_blocks", "two_blocks", "rfa", "rfa", "many"))
    blocks: list[dict[str, Any]] = []
    if stage in ("one_block", "two_blocks"):
        n = 1 if stage == "one_block" else 2
        where = levels()
        for offset in d.dates(n, 7, 330):
            blocks.append(
                _procedure(d, ctx, "facet_mbb", region, offset, relief=(50, 80), weeks=(0,), levels=where, flags=True)
            )
        if stage == "two_blocks" and d.chance(45):  # RFA is not an option: IA instead
            _condition(
                ctx, d.pick(("spinal_pseudarthrosis", "pacemaker", "implanted_defibrillator", "spinal_cord_stimulator"))
            )
            for offset in d.dates(d.pick((0, 0, 1, 2, 4)), 14, 360):
                _procedure(d, ctx, "facet_ia", region, offset, relief=(50,), weeks=(12,), levels=where)
    elif stage == "rfa":
        where = levels()
        for offset in d.dates(2, 330, 900):
            blocks.append(_procedure(d, ctx, "facet_mbb", region, offset, relief=(50, 80), weeks=(0,), levels=where))
        first = d.pick((150, 170, 181, 182, 183, 184, 200, 250, 300, 400))
        _procedure(d, ctx, "facet_rfa", region, first, relief=(50,), weeks=(26,), levels=where)
        if d.chance(30):
            _procedure(d, ctx, "facet_rfa", region, d.num(20, min(first - 1, 320)), relief=(50,), weeks=(26,))
    elif stage == "many":
        kind = d.pick(("facet_mbb", "facet_ia", "facet_rfa"))
        where = levels()
        count = d.pick((2, 3, 4, 5))
        for offset in d.dates(count, 5, 360):
            _procedure(d, ctx, kind, region, offset, relief=(50, 80), weeks=(12,), levels=where)
    if blocks and d.chance(15):  # a fusion, at the blocked levels or elsewhere
        fused = blocks[0].get("levels") if d.chance(60) else None
        fused = fused or d.some(segments, 1, 2)
        _procedure(d, ctx, "spinal_fusion", region, _oldest_days(ctx) + d.num(30, 900), levels=fused)
    elif stage == "none" and d.chance(10):
        _procedure(d, ctx, "spinal_fusion", region, d.num(100, 3000), levels=d.some(segments, 1, 2))
    if stage != "none" and region in ("cervical", "thoracic") and d.chance(30):
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
    if d.chance(10):
        _condition(ctx, d.pick(("pacemaker", "implanted_defibrillator", "spinal_cord_stimulator")))
    _backdate_pain(ctx, pain)


def _backdate_pain(ctx: _Ctx, pain: dict[str, Any]) -> None:
    """The pain began before the first procedure done for it."""
    oldest = _oldest_days(ctx)
    weeks = pain.get("duration_weeks")
    if "onset_date" in pain:
        weeks = (ctx_as_of(ctx) - date.fromisoformat(pain["onset_date"])).days // 7
    if oldest and weeks is not None and weeks * 7 <= oldest:
        pain.pop("onset_date", None)
        pain["duration_weeks"] = oldest // 7 + 2


def _esi(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("lumbar", "lumbar", "lumbar", "cervical", "thoracic"))
    character = ctx.character_of(
        d, ("radicular",) * 5 + ("neurogenic_claudication", "neurogenic_claudication", "axial")
    )
    if character == "neurogenic_claudication" and region != "lumbar" and ctx.character is None:
        character = "radicular"
    pain = _pain(d, ctx, region, character, weeks=(4,), nrs=(7,), disability=85)
    _care(d, ctx, failed=82)
    segments = _SEGMENTS[region]
    level = d.pick(segments)
    findings = (
        ("central_canal_stenosis", "foraminal_stenosis") if character == "neurogenic_claudication" else _COMPRESSIVE
    )
    for _ in range(d.pick((1, 1, 1, 2, 0))):
        concordant = d.pick((True, True, True, None, False))
        _imaging(
            d,
            ctx,
            d.pick(findings),
            region,
            level=level if d.chance(85) else None,
            modality="mri",
            concordant=concordant,
            days_ago=d.num(0, 400) if d.chance(50) else None,
        )
    stage = ctx.stage(d, ("none", "none", "one", "two", "many"))
    if stage != "none":
        count = {"one": 1, "two": 2, "many": d.pick((4, 5))}[stage]
        for offset in d.dates(count, 30, 330 if stage == "many" else 500):
            _procedure(
                d, ctx, d.pick(_ESI_KINDS), region, offset, relief=(50,), weeks=(12,), levels=[level], flags=True
            )
    if d.chance(15):
        _procedure(d, ctx, "laminectomy", region, _oldest_days(ctx) + d.num(60, 2000), levels=[level])
    if d.chance(15):
        ctx.add("allergies", {"substance": "iodinated_contrast"})
    if character == "radicular" and d.chance(25):  # a second, axial complaint in the same region
        _pain(d, ctx, region, "axial", weeks=(12,), nrs=(4,))
    _backdate_pain(ctx, pain)


def _sij(d: _Draw, ctx: _Ctx) -> None:
    character = ctx.character_of(d, ("axial", "joint", "joint"))
    pain = _pain(d, ctx, ctx.region_of(d, ("sacroiliac",)), character, weeks=(12,), nrs=(4,), disability=40)
    _care(d, ctx, failed=85)
    if d.chance(80):
        ctx.care["physical_therapy_weeks"] = d.near((4,), 0, 52)
    tests = d.some(_SIJ_TESTS, 0, 6)
    positives = d.near((3,), 0, len(tests), pct=60) if tests else 0
    for i, test in enumerate(tests):
        finding: dict[str, Any] = {"test": test, "positive": i < positives}
        if d.chance(30):
            finding["region"] = "sacroiliac"
        ctx.add("exam", finding)
    side = pain.get("laterality")
    stage = ctx.stage(d, ("none", "none", "diagnostic", "diagnostic", "two_diagnostic", "therapeutic", "many"))
    if stage in ("diagnostic", "two_diagnostic"):
        for offset in d.dates(1 if stage == "diagnostic" else 2, 7, 400):
            _procedure(
                d,
                ctx,
                "sij_injection",
                "sacroiliac",
                offset,
                relief=(75,),
                weeks=(0,),
                purpose="diagnostic",
                side=side,
                flags=True,
            )
    elif stage in ("therapeutic", "many"):
        count = 1 if stage == "therapeutic" else d.pick((3, 4, 5))
        offsets = d.dates(count + 1, 20, 360 if stage == "many" else 700)
        _procedure(
            d,
            ctx,
            "sij_injection",
            "sacroiliac",
            offsets[0] + 14,
            relief=(75,),
            weeks=(0,),
            purpose="diagnostic",
            side=side,
        )
        for offset in offsets[1:]:
            _procedure(
                d,
                ctx,
                "sij_injection",
                "sacroiliac",
                offset,
                relief=(50,),
                weeks=(12,),
                purpose="therapeutic",
                side=side,
                flags=True,
            )
    if d.chance(5):
        _procedure(d, ctx, "sij_rfa", "sacroiliac", d.num(30, 700), relief=(50,), weeks=(26,))
    if d.chance(12):
        region = d.pick(("sacroiliac", "sacral", "pelvis", "lumbar"))
        _imaging(d, ctx, d.pick(("vertebral_fracture", "tumor", "infection")), region)
    if d.chance(15):
        ctx.add("allergies", {"substance": "iodinated_contrast"})
    _backdate_pain(ctx, pain)


def _neuromod_candidacy(d: _Draw, ctx: _Ctx, region: str, lower: bool) -> None:
    """What SCS and DRG read: conservative care, psychological evaluation, trials, implants, contraindications."""
    _care(d, ctx, failed=72)
    _psych_evaluation(d, ctx)
    if d.chance(25):
        ctx.add("screenings", _screening(d, d.pick(("pcs", "phq9"))))
    stage = ctx.stage(d, ("none", "none", "trial", "trial", "trials", "implanted"))
    kind = "drg_trial" if lower and d.chance(40) else "scs_trial"
    if stage in ("trial", "trials", "implanted"):
        for offset in d.dates(1 if stage != "trials" else 2, 14, 500):
            _procedure(d, ctx, kind, region, offset, relief=(50,), weeks=(1,), flags=True)
    if stage == "implanted":
        _procedure(d, ctx, kind.replace("trial", "implant"), region, d.num(1, 10), relief=(50,))
    if d.chance(8):
        _condition(ctx, "spinal_cord_stimulator")
    if d.chance(25):
        _condition(
            ctx,
            d.pick(
                (
                    "active_systemic_infection",
                    "local_infection_at_site",
                    "bleeding_disorder",
                    "untreated_major_psychiatric_disorder",
                    "substance_use_disorder",
                    "opioid_use_disorder",
                    "pacemaker",
                    "implanted_defibrillator",
                )
            ),
        )
    if d.chance(12):
        ctx.demographics["sex"] = "female"
        ctx.demographics["pregnant"] = d.chance(70)


def _neuromodulation(d: _Draw, ctx: _Ctx) -> None:
    kind = d.pick(("psps", "psps", "pdn"))
    if ctx.region is not None:
        kind = "psps" if ctx.region in SPINE else "pdn"
    if kind == "psps":
        region = _spine_region(d, ctx)
        character = ctx.character_of(d, ("radicular", "neuropathic"))
        pain = _pain(d, ctx, region, character, weeks=(26,), nrs=(7,))
        surgery = d.pick(_SPINE_SURGERY)
        _procedure(d, ctx, surgery, region, d.num(180, 3000), levels=d.some(_SEGMENTS[region], 1, 2))
        lower = False
    else:
        region = ctx.region_of(d, ("lower_limb", "upper_limb"))
        pain = _pain(d, ctx, region, ctx.character_of(d, ("neuropathic",)), weeks=(26,), nrs=(7,))
        _condition(ctx, "painful_diabetic_neuropathy", active=d.chance(92))
        if d.chance(70):
            _condition(ctx, "diabetes")
        lower = region == "lower_limb"
    _neuromod_candidacy(d, ctx, region, lower)
    _backdate_pain(ctx, pain)


def _crps(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, _LIMBS)
    pain = _pain(d, ctx, region, ctx.character_of(d, ("neuropathic",)), weeks=(12, 26), nrs=(7,))
    where = d.pick((region, None, None, d.pick(_LIMBS)))
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
    _backdate_pain(ctx, pain)


def _pva(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("thoracic", "lumbar", "lumbar", "cervical"))
    character = ctx.character_of(d, ("axial", "axial", "axial", "cancer"))
    pain = _pain(d, ctx, region, character, weeks=(2, 6), nrs=(5, 8), worsening=75)
    _care(d, ctx, failed=80)
    level = d.pick(_VERTEBRAE[region])
    if d.chance(75):  # osteoporotic fracture with marrow oedema on MRI
        _imaging(d, ctx, "vertebral_fracture", region, level=level, days_ago=d.num(0, 60) if d.chance(50) else None)
        if d.chance(85):
            edema = level if d.chance(85) else d.pick(_VERTEBRAE[region])
            _imaging(d, ctx, "bone_marrow_edema", region, level=edema, modality=d.pick(("mri",) * 5 + ("ct",)))
        if d.chance(40):
            _condition(ctx, "osteoporosis")
    if character == "cancer" or d.chance(25):  # a metastatic lesion
        _imaging(d, ctx, "tumor", region, level=level, modality="mri")
        _condition(ctx, "cancer", active=d.chance(90))
    if ctx.prior_procedures is not False and d.chance(15):
        _procedure(
            d,
            ctx,
            "vertebral_augmentation",
            region,
            d.num(30, 900),
            levels=[level if d.chance(50) else d.pick(_VERTEBRAE[region])],
        )
    if ctx.prior_procedures and not ctx.doc.get("procedures"):
        _procedure(d, ctx, "vertebral_augmentation", region, d.num(30, 900), levels=[d.pick(_VERTEBRAE[region])])
    if d.chance(15):
        ctx.add("allergies", {"substance": d.pick(("bone_cement", "iodinated_contrast"))})
    if d.chance(12):
        _condition(ctx, "bleeding_disorder")
    if d.chance(10):
        _imaging(d, ctx, "infection", region, level=level, modality="mri")
    if d.chance(10):
        _condition(ctx, d.pick(("active_systemic_infection", "local_infection_at_site")))
    _backdate_pain(ctx, pain)


def _bvn(d: _Draw, ctx: _Ctx) -> None:
    pain = _pain(
        d, ctx, ctx.region_of(d, ("lumbar",)), ctx.character_of(d, ("axial",)), weeks=(26,), nrs=(5,), disability=80
    )
    _care(d, ctx, failed=85)
    if d.chance(85):
        ctx.care["nonoperative_months"] = d.near((6,), 0, 120)
    region = d.pick(("lumbar", "lumbar", "sacral"))
    _imaging(
        d,
        ctx,
        d.pick(("modic_type_1", "modic_type_2")),
        region,
        level=d.pick(_MODIC_LEVELS),
        modality=d.pick(("mri",) * 6 + ("ct",)),
    )
    if d.chance(18):
        _pain(d, ctx, d.pick(("lumbar", "sacral")), d.pick(("radicular", "neurogenic_claudication")), weeks=(12,))
    if d.chance(15):
        _imaging(
            d,
            ctx,
            d.pick(("central_canal_stenosis", "foraminal_stenosis")),
            d.pick(("lumbar", "sacral")),
            concordant=d.pick((True, False, None)),
        )
    if d.chance(15):
        _imaging(d, ctx, d.pick(("disc_herniation", "spondylolisthesis")), d.pick(("lumbar", "sacral")))
    if ctx.prior_procedures is not False and d.chance(15):
        _procedure(d, ctx, d.pick(_SPINE_SURGERY), d.pick(("lumbar", "sacral")), d.num(200, 3000))
    if ctx.prior_procedures is not False and d.chance(8):
        _procedure(d, ctx, "bvn_ablation", "lumbar", d.num(30, 900), relief=(50,), weeks=(26,))
    if ctx.prior_procedures and not ctx.doc.get("procedures"):
        _procedure(d, ctx, "bvn_ablation", "lumbar", d.num(30, 900), relief=(50,), weeks=(26,))
    if d.chance(15):
        _condition(ctx, "osteoporosis")
    _backdate_pain(ctx, pain)


def _genicular(d: _Draw, ctx: _Ctx) -> None:
    pain = _pain(
        d,
        ctx,
        ctx.region_of(d, ("knee",)),
        ctx.character_of(d, ("joint", "joint", "neuropathic")),
        weeks=(12, 26),
        nrs=(5, 7),
    )
    _care(d, ctx)
    if d.chance(70):
        _imaging(d, ctx, "osteoarthritis", "knee", modality=d.pick(("xray", "mri")))
    stage = ctx.stage(d, ("none", "block", "rfa", "arthroplasty"))
    side = pain.get("laterality")
    if stage == "block":
        for offset in d.dates(d.num(1, 2), 7, 300):
            _procedure(d, ctx, "genicular_block", "knee", offset, relief=(50, 80), weeks=(0,), side=side, flags=True)
    elif stage == "rfa":
        _procedure(d, ctx, "genicular_block", "knee", d.num(300, 700), relief=(50, 80), weeks=(0,), side=side)
        for offset in d.dates(d.num(1, 2), 30, 299):
            _procedure(d, ctx, "genicular_rfa", "knee", offset, relief=(50,), weeks=(26,), side=side)
    elif stage == "arthroplasty":
        _procedure(d, ctx, "knee_arthroplasty", "knee", d.num(200, 2000), side=side)
    _backdate_pain(ctx, pain)


def _occipital(d: _Draw, ctx: _Ctx) -> None:
    pain = _pain(
        d,
        ctx,
        ctx.region_of(d, ("head",)),
        ctx.character_of(d, ("headache", "headache", "neuropathic")),
        weeks=(12,),
        nrs=(5, 7),
        disability=10,
    )
    _care(d, ctx, failed=60)
    if ctx.stage(d, ("none", "none", "some")) == "some":
        for offset in d.dates(d.num(1, 5), 7, 360):
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
        _procedure(
            d,
            ctx,
            kind,
            region,
            d.num(7, 200),
            relief=(50,),
            weeks=(2,),
            purpose=d.pick(("diagnostic", "diagnostic", "therapeutic", None)),
        )
    _backdate_pain(ctx, pain)


def _tpi(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, _TPI_REGIONS)
    pain = _pain(d, ctx, region, ctx.character_of(d, ("myofascial",)), weeks=(6,), nrs=(5,))
    _care(d, ctx, failed=85)
    if d.chance(70):
        ctx.care["active_exercise_program"] = d.chance(65)
    if d.chance(85):
        band: dict[str, Any] = {"test": "taut_band", "positive": d.chance(85)}
        where = d.pick((region, region, None, None, "lumbar"))
        if where is not None:
            band["region"] = where
        ctx.add("exam", band)
    if ctx.stage(d, ("none", "none", "some")) == "some":
        offsets = d.dates(d.num(1, 3), 43, 360)
        offsets[-1] = d.near((42,), 1, 365)
        for offset in sorted(set(offsets), reverse=True):
            _procedure(d, ctx, "trigger_point_injection", region, offset, relief=(50,), weeks=(4,))
    if d.chance(10):
        _condition(ctx, "crps")
    _backdate_pain(ctx, pain)


def _idd(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, _CANCER_REGIONS)
    pain = _pain(d, ctx, region, ctx.character_of(d, ("cancer",)), weeks=(4, 12), nrs=(7,))
    _condition(ctx, "cancer", active=d.chance(92))
    _care(d, ctx, failed=85)
    stage = ctx.stage(d, ("none", "none", "trial", "trials", "implanted"))
    if stage != "none":
        for offset in d.dates(2 if stage == "trials" else 1, 14, 300):
            _procedure(d, ctx, "idd_trial", "thoracic", offset, relief=(50,), weeks=(1,), flags=True)
    if stage == "implanted":
        _procedure(d, ctx, "idd_implant", "thoracic", d.num(1, 13))
    if d.chance(10):
        _condition(ctx, "intrathecal_pump")
    if d.chance(18):
        codes = ("untreated_major_psychiatric_disorder", "bleeding_disorder", "active_systemic_infection")
        _condition(ctx, d.pick((*codes, "local_infection_at_site")))
    _backdate_pain(ctx, pain)


def _red_flag(d: _Draw, code: str | None = None) -> dict[str, Any]:
    flag: dict[str, Any] = {"code": code or d.pick((*_CES, *_RED_FLAGS))}
    if d.chance(60):
        flag["onset_date"] = d.ago(d.near((14,), 0, 400))
    if d.chance(55):
        flag["deteriorating"] = d.chance(50)
    return flag


def _red_flags(d: _Draw, ctx: _Ctx) -> None:
    region = ctx.region_of(d, ("lumbar", "lumbar", "thoracic", "cervical", "sacral"))
    pain = _pain(
        d,
        ctx,
        region,
        ctx.character_of(d, ("axial", "axial", "radicular", "neurogenic_claudication")),
        weeks=(2, 6),
        nrs=(7,),
        worsening=70,
    )
    _care(d, ctx, failed=50)
    scenario = d.pick(("ces", "neuro", "malignancy", "infection", "fracture", "inflammatory"))
    if scenario == "ces":
        ctx.add("red_flags", _red_flag(d, d.pick(_CES)))
    elif scenario == "neuro":
        if d.chance(50):
            ctx.add("red_flags", _red_flag(d, "progressive_neurological_deficit"))
        else:
            ctx.add("exam", {"test": "myelopathic_signs", "positive": d.chance(85)})
        if d.chance(35):
            _condition(ctx, d.pick(("cancer", "immunosuppression", "active_systemic_infection")))
    elif scenario == "malignancy":
        if d.chance(60):
            _condition(ctx, "cancer", active=d.chance(80))
        for code in d.some(("unexplained_weight_loss", "night_pain"), 0, 2):
            ctx.add("red_flags", _red_flag(d, code))
        ctx.demographics["age_years"] = d.near((50,), 18, 95)
    elif scenario == "infection":
        choice = d.pick(("fever", "ivdu", "condition", "condition"))
        if choice == "fever":
            ctx.add("red_flags", _red_flag(d, "fever"))
        elif choice == "ivdu":
            ctx.add("red_flags", _red_flag(d, "intravenous_drug_use"))
        else:
            _condition(ctx, d.pick(("immunosuppression", "active_systemic_infection")))
        if d.chance(25):
            ctx.add("red_flags", _red_flag(d, "progressive_neurological_deficit"))
    elif scenario == "fracture":
        choice = d.pick(("trauma", "steroid", "osteoporosis", "age"))
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
    pain = _pain(d, ctx, region, ctx.character_of(d, ("axial", "radicular", "joint", "neuropathic")), weeks=(26,))
    _care(d, ctx, failed=70)
    ctx.doc["__opioids"] = True
    if d.chance(40):
        ctx.add("screenings", _screening(d, d.pick(("ort", "stop_bang"))))
    if d.chance(30):
        _condition(
            ctx,
            d.pick(
                (
                    "prior_overdose",
                    "substance_use_disorder",
                    "opioid_use_disorder",
                    "sleep_apnea",
                    "advanced_renal_disease",
                    "liver_cirrhosis",
                    "cancer",
                )
            ),
            active=d.chance(80),
        )
    if d.chance(20):
        ctx.demographics["age_years"] = d.near((65,), 18, 95)
    if d.chance(10):
        pain["character"] = "cancer" if ctx.character is None else pain["character"]
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


# -- background ----------------------------------------------------------------------------------------------

_SCREEN_MARKS: dict[str, tuple[int, ...]] = {
    "phq9": (10, 20),
    "gad7": (10,),
    "pcs": (30,),
    "start_back": (4,),
    "ort": (8,),
    "stop_bang": (3, 5),
    "isi": (15,),
}
_SCREEN_MAX = {"phq9": 27, "gad7": 21, "pcs": 52, "start_back": 9, "ort": 26, "stop_bang": 8, "isi": 28}


def _screening(d: _Draw, instrument: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "instrument": instrument,
        "score": d.near(_SCREEN_MARKS[instrument], 0, _SCREEN_MAX[instrument]),
    }
    if instrument == "phq9" and d.chance(60):
        item["item9"] = d.pick((0, 0, 1, 2, 3))
    if instrument == "start_back" and d.chance(70):
        item["distress_subscore"] = d.near((4,), 0, 5)
    if d.chance(65):
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


def _background(d: _Draw, ctx: _Ctx, red_flags: bool | None, anticoagulants: bool | None, opioids: bool | None) -> None:
    doc = ctx.doc
    demo = ctx.demographics
    if "age_years" not in demo and d.chance(85):
        age = d.near((50, 65, 70), 18, 95, pct=35)
        if d.chance(15):  # a birth date instead, giving the same age at as_of
            start = date(ctx_as_of(ctx).year - age, 1, 1)
            demo["birth_date"] = (
                start + timedelta(days=d.num(0, (ctx_as_of(ctx) - date(ctx_as_of(ctx).year, 1, 1)).days))
            ).isoformat()
        else:
            demo["age_years"] = age
    if "sex" not in demo and d.chance(85):
        demo["sex"] = d.pick(("female", "male", "female", "male", "other"))
    if demo.get("sex") in ("female", "other") and "pregnant" not in demo and d.chance(50):
        recorded = demo.get("age_years")
        demo["pregnant"] = d.chance(15) and (recorded is None or recorded <= 50)
    if d.chance(60):
        demo["bmi"] = float(d.near((30,), 16, 55, pct=40)) + d.pick((0.0, 0.0, 0.5))
    if d.chance(60):
        demo["tobacco_use"] = d.pick(("never", "former", "current"))
    if "psychological_evaluation" not in doc and d.chance(10):
        _psych_evaluation(d, ctx)
    # screenings: instruments on and around their thresholds, some undated, some repeated
    if d.chance(40):
        for instrument in d.some(tuple(_SCREEN_MARKS), 1, 3):
            ctx.add("screenings", _screening(d, instrument))
            if d.chance(12):
                ctx.add("screenings", _screening(d, instrument))
    # medications
    want_at = anticoagulants if anticoagulants is not None else d.chance(22)
    if want_at:
        for agent in d.some(_ANTITHROMBOTICS, 1, 2):
            item: dict[str, Any] = {"agent": agent}
            indication = d.pick(_ANTITHROMBOTIC_INDICATIONS)
            if indication is not None:
                item["indication"] = indication
            ctx.add("medications", item)
    want_opioid = opioids if opioids is not None else (doc.pop("__opioids", False) or d.chance(12))
    doc.pop("__opioids", None)
    if want_opioid:
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
    if d.chance(30):
        for agent in d.some(_OTHER_MEDICATIONS, 1, 2):
            ctx.add("medications", {"agent": agent})
    # laboratory results, in their canonical units, before as_of
    if d.chance(22):
        for _ in range(d.num(1, 3)):
            test = d.pick(("inr", "platelets", "inr", "platelets", "glucose", "hba1c", "egfr"))
            value = {
                "inr": lambda: d.pick((0.9, 1.0, 1.1, 1.4, 1.5, 1.6, 2.0, 2.9, 3.0, 3.1, 4.0)),
                "platelets": lambda: float(d.near((20, 50, 100), 5, 450)),
                "glucose": lambda: float(d.pick((85, 110, 150, 201, 250, 320))),
                "hba1c": lambda: d.pick((5.4, 6.5, 7.0, 8.1, 9.5, 11.0)),
                "egfr": lambda: float(d.pick((15, 29, 45, 60, 90))),
            }[test]()
            ctx.add("labs", {"test": test, "value": value, "date": d.ago(d.num(0, 200))})
    # conditions, allergies
    if d.chance(30):
        for code in d.some(_CONDITIONS, 1, 2):
            entry: dict[str, Any] = {"code": code}
            if d.chance(15):
                entry["active"] = False
            if code in ("local_infection_at_site", "crps") and d.chance(60):
                pains = doc.get("pain") or [{"region": "lumbar"}]
                entry["region"] = pains[0]["region"]
            ctx.add("conditions", entry)
    if d.chance(12):
        for substance in d.some(_ALLERGIES, 1, 2):
            ctx.add("allergies", {"substance": substance})
    # red flags
    if red_flags is False:
        doc.pop("red_flags", None)
    elif red_flags or (not doc.get("red_flags") and d.chance(6)):
        have = len(doc.get("red_flags", []))
        for _ in range(d.num(max(0, 1 - have), 2 - min(have, 1))):
            ctx.add("red_flags", _red_flag(d, d.pick(_CES) if d.chance(50) else None))


def _finish(d: _Draw, ctx: _Ctx, max_pain: int, prior_procedures: bool | None) -> dict[str, Any]:
    """Apply the knobs that constrain the whole document; mark the index pain."""
    doc = ctx.doc
    pain: list[dict[str, Any]] = doc.get("pain", [])
    if len(pain) < max_pain and d.chance(15):  # an unrelated second complaint
        _pain(d, ctx, d.pick(_REGIONS), d.pick(_CHARACTERS), weeks=(12,))
    pain = doc["pain"] = doc["pain"][:max_pain]
    for item in pain:
        if ctx.region is not None:
            item["region"] = ctx.region
        if ctx.character is not None:
            item["character"] = ctx.character
    if pain and d.chance(92):
        pain[0]["is_index"] = True
    if prior_procedures is False:
        doc.pop("procedures", None)
    elif prior_procedures and not doc.get("procedures"):
        region = ctx.region or pain[0]["region"]
        kind = d.pick(("facet_mbb", "esi_transforaminal", "trigger_point_injection", "regenerative_injection"))
        _procedure(d, ctx, kind, region, d.num(7, 700), relief=(50, 80), weeks=(12,))
    if d.chance(25):
        doc["id"] = "p" + str(d.num(1, 99999))
    return {k: v for k, v in doc.items() if v not in ({}, []) and not k.startswith("__")}


def patients(
    *,
    as_of: date = DEFAULT_AS_OF,
    pathway: str | None = None,
    region: str | None = None,
    character: str | None = None,
    red_flags: bool | None = None,
    anticoagulants: bool | None = None,
    opioids: bool | None = None,
    prior_procedures: bool | None = None,
    max_pain: int = 2,
) -> st.SearchStrategy[PatientCase]:
    """Valid, clinically coherent patients (see the module docstring for the pathways and the knobs)."""
    if pathway is not None and pathway not in _BUILDERS:
        raise ValueError(f"unknown pathway {pathway!r}; choose from {', '.join(PATHWAYS)}")
    if region is not None and region not in _REGIONS:
        raise ValueError(f"unknown region {region!r}; choose from {', '.join(_REGIONS)}")
    if character is not None and character not in _CHARACTERS:
        raise ValueError(f"unknown pain character {character!r}; choose from {', '.join(_CHARACTERS)}")
    if max_pain < 1:
        raise ValueError("max_pain must be at least 1")
    if pathway is not None:
        eligible: tuple[str, ...] = (pathway,)
    else:
        eligible = tuple(
            name
            for name, (regions, characters) in _PATHWAY_SCOPE.items()
            if (region is None or region in regions) and (character is None or character in characters)
        ) or ("general",)
    # the general pathway stays the simplest (shrinking goes there) but is drawn no more often than any other
    weighted = (eligible[0], *eligible) if len(eligible) > 1 else eligible

    @st.composite
    def build(draw: st.DrawFn) -> PatientCase:
        d = _Draw(draw, as_of)
        ctx = _Ctx(region, character, prior_procedures, {"__as_of": as_of})
        name = d.pick(weighted)
        _BUILDERS[name](d, ctx)
        _background(d, ctx, red_flags, anticoagulants, opioids)
        doc = _finish(d, ctx, max_pain, prior_procedures)
        if anticoagulants is False or opioids is False:
            doc["medications"] = [
                m
                for m in doc.get("medications", [])
                if not (anticoagulants is False and m["agent"] in _ANTITHROMBOTICS)
                and not (opioids is False and m["agent"] in _OPIOIDS)
            ]
        return PatientCase.model_validate(doc)

    return build()


def boundary_patients(
    ruleset: Ruleset, *, profile: str | None = None, as_of: date = DEFAULT_AS_OF
) -> st.SearchStrategy[PatientCase]:
    """Patients with one value just below, on or just above one numeric threshold of ``ruleset``.

    Every threshold a rule compares (a literal, or a parameter resolved under ``profile``) is a target;
    the rest of the patient is drawn by :func:`patients`, so the threshold meets varied surroundings.
    """
    from hypothesis import assume

    from .boundaries import set_fact_field, thresholds

    found = thresholds(ruleset, profile)
    if not found:
        raise ValueError("the ruleset compares no numeric threshold")

    @st.composite
    def draw(draw: st.DrawFn) -> PatientCase:
        target = draw(st.sampled_from(found))
        value = draw(st.sampled_from(target.probes()))
        base = draw(patients(as_of=as_of)).model_dump(mode="json", exclude_none=True)
        doc = set_fact_field(
            base, target.fact_type, target.field, value, as_of, target.selectors, index=draw(st.integers(0, 5))
        )
        assume(doc is not None)
        try:
            return PatientCase.model_validate(doc)
        except ValidationError:
            assume(False)
            raise  # unreachable: assume(False) stops the draw

    return draw()


# -- hostile input ----------------------------------------------------------------------------------------

_HUGE = 200_000


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    doc[head] = _set(doc[head], tuple(rest), value)
    return doc


@st.composite
def raw_patient_documents(draw: st.DrawFn, *, as_of: date = DEFAULT_AS_OF) -> Any:
    """Malformed and hostile patient documents (mappings, JSON text, or anything else).

    Wrong types, missing and unknown fields, out-of-range numbers, NaN and infinities, huge strings,
    deep nesting, huge lists, unknown codes, impossible dates. A library must reject each with a
    :class:`~ipm_cds.PatientDataError` (or evaluate it, when the mutation happened to be harmless),
    never crash, hang or answer wrongly.
    """
    base = draw(patients(as_of=as_of)).model_dump(mode="json", exclude_none=True)
    kind = draw(
        st.sampled_from(
            [
                "wrong_type",
                "out_of_range",
                "non_finite",
                "huge_string",
                "deep_nesting",
                "huge_list",
                "unknown_code",
                "unknown_field",
                "drop_required",
                "future_date",
                "bad_date",
                "not_a_mapping",
                "json_text",
            ]
        )
    )
    paths = [p for p in _paths(base) if not isinstance(p[-1], int) or len(p) > 1]
    target = draw(st.sampled_from(paths)) if paths else None
    if kind == "not_a_mapping":
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)))
    if kind == "deep_nesting":
        depth = draw(st.integers(50, 3000))
        nested: Any = "x"
        for _ in range(depth):
            nested = {"a": nested} if draw(st.booleans()) else [nested]
        base[draw(st.sampled_from(["pain", "demographics", "extra"]))] = nested
        return base
    if kind == "huge_list":
        base["procedures"] = [{"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-01"}] * draw(
            st.integers(101, 5000)
        )
        return base
    if kind == "unknown_field":
        base[draw(st.text(min_size=1, max_size=12))] = draw(st.integers())
        return base
    if kind == "json_text":
        import json

        text = json.dumps(base)
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        return draw(st.sampled_from([text[:cut], text.replace("1", "NaN", 1), text + "}", "\ufeff" + text]))
    if target is None:
        return base
    replacement: Any
    if kind == "wrong_type":
        replacement = draw(
            st.one_of(
                st.text(max_size=5),
                st.lists(st.integers(), max_size=2),
                st.booleans(),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                st.none(),
            )
        )
    elif kind == "out_of_range":
        replacement = draw(st.one_of(st.integers(-(10**12), -1), st.integers(101, 10**12), st.floats(1e6, 1e300)))
    elif kind == "non_finite":
        replacement = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    elif kind == "huge_string":
        replacement = "x" * draw(st.integers(1000, _HUGE))
    elif kind == "unknown_code":
        replacement = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
    elif kind == "future_date":
        replacement = (as_of + timedelta(days=draw(st.integers(1, 4000)))).isoformat()
    elif kind == "bad_date":
        replacement = draw(
            st.sampled_from(
                ["2025-02-30", "2025-13-01", "01/02/2025", "2025-1-1", "yesterday", "2025-06-01T10:00:00", 20250601]
            )
        )
    else:  # drop_required
        parent = target[:-1]
        container = base
        for key in parent:
            container = container[key]
        if isinstance(container, dict):
            container.pop(target[-1], None)
        return base
    return _set(base, target, replacement)
