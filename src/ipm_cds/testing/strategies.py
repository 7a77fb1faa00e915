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
- ``max_pain``: at most this many pain complaints (at least one is always drawn);
- ``ruleset``: draw only the medications of that ruleset's catalogue.

The numbers cluster around the thresholds of the bundled ruleset (``rules/ipm-core``). For another
ruleset's own thresholds, draw from :func:`boundary_patients` as well.

A ``ruleset`` argument (here and in :func:`boundary_patients`) is a loaded :class:`~ipm_cds.Ruleset`, or, for
a strategy built at import time (a ``@given`` decorator) while the ruleset comes later, a folder path, a
function returning the ruleset, or ``None`` for the bundled one (``boundary_patients`` only): the strategy
then loads it when it is first drawn from, once per folder. Inside a test that has the ruleset as a fixture,
``data.draw(boundary_patients(ipm_ruleset))`` with ``@given(data=st.data())`` works as well.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast, get_args

from hypothesis import strategies as st

from ..errors import PatientDataError
from ..model import patient as pm
from ..model.patient import PatientCase
from ..ruleset.loader import Ruleset

RulesetSource = Ruleset | str | os.PathLike[str] | Callable[[], Ruleset]
"""A ruleset, or where to get it when the strategy is first drawn from (a folder, or a function)."""

if TYPE_CHECKING:
    from .boundaries import Threshold

T = TypeVar("T")

DEFAULT_AS_OF = date(2025, 6, 2)
"""The reference evaluation date of generated, example and test-case patients (the one place it is written)."""

SPINE = ("cervical", "thoracic", "lumbar")
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
    "general": ((), ()),  # any region and character of the ruleset's vocabularies
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

    __slots__ = ("as_of", "codes", "count", "fn")

    def __init__(self, draw: st.DrawFn, as_of: date, codes: Mapping[str, tuple[str, ...]]) -> None:
        self.fn = draw
        self.as_of = as_of
        self.codes = codes  # the ruleset's vocabularies: what the background and general draws pick from
        self.count = 0

    def draw(self, strategy: st.SearchStrategy[T]) -> T:
        # Each choice of a patient has its own label (its position), so that hypothesis's mutator, which
        # copies a choice over another one with the same label, does not spend most draws on patients
        # that differ from an earlier one in a choice that changes nothing.
        self.count += 1
        return self.fn(strategy, label=self.count)

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
        """``n`` distinct day offsets from [low, high] (a later one moves up a day), oldest first."""
        seen: set[int] = set()
        for _ in range(n):
            offset = self.num(low, high)
            while offset in seen:
                offset += 1
            seen.add(offset)
        return sorted(seen, reverse=True)


@dataclass
class _Ctx:
    """The knobs of one ``patients()`` call, and the document being built."""

    as_of: date
    region: str | None
    character: str | None
    prior_procedures: bool | None
    doc: dict[str, Any]
    opioid: bool = False  # the pathway wants an opioid in the background

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


# -- pathways ------------------------------------------------------------------------------------------------


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


def _red_flag(d: _Draw, code: str | None = None) -> dict[str, Any]:
    flag: dict[str, Any] = {"code": code or d.pick((*_CES, *d.codes["red_flag"]))}
    if d.chance(60):
        flag["onset_date"] = d.ago(d.near((14,), 0, 400))
    if d.chance(55):
        flag["deteriorating"] = d.chance(50)
    return flag


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
# Conditions the background draws, those that safety rules read first (twice as often).
_BACKGROUND_CONDITIONS = (
    "diabetes",
    "immunosuppression",
    "active_systemic_infection",
    "local_infection_at_site",
    "bleeding_disorder",
    "liver_cirrhosis",
    "advanced_renal_disease",
    "pacemaker",
    "mechanical_heart_valve",
    "recent_coronary_stent",
    "recent_vte_or_stroke",
    "osteoporosis",
    "sleep_apnea",
)
"""Drawn beside every condition of the ruleset's vocabulary (so twice as often)."""


def _screening(d: _Draw, instrument: str) -> dict[str, Any]:
    score = d.near(_SCREEN_MARKS[instrument], 0, _SCREEN_MAX[instrument])
    item: dict[str, Any] = {"instrument": instrument, "score": score}
    if instrument == "phq9" and d.chance(60):
        item["item9"] = d.pick((0, 0, 1, 2, 3))
    if instrument == "start_back" and d.chance(60):
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
    else:
        value = float(d.pick((15, 29, 45, 60, 90)))
    return {"test": test, "value": value, "date": d.ago(d.near((1,), 0, 200, pct=30))}  # about the 1-day INR recency


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
            ctx.add("labs", _lab(d, d.pick(("inr", "platelets", "inr", "platelets", "glucose", "hba1c", "egfr"))))
    # conditions, allergies
    if d.chance(35):
        known = d.codes["condition"]
        for code in d.some((*(c for c in _BACKGROUND_CONDITIONS if c in known), *known), 1, 2):
            region = None
            if code in ("local_infection_at_site", "crps") and d.chance(70):
                region = (doc.get("pain") or [{"region": "lumbar"}])[0]["region"]
            _condition(ctx, code, active=d.chance(88), region=region)
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
        _condition(ctx, d.pick(("mechanical_heart_valve", "recent_coronary_stent", "recent_vte_or_stroke")))


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
    ruleset: RulesetSource | None = None,
) -> st.SearchStrategy[PatientCase]:
    """Valid, clinically coherent patients (the module docstring describes the pathways and the knobs).

    ``ruleset``: draw only medications of its catalogue (a ruleset with a smaller catalogue than the
    bundled one would refuse the others). The same knobs give the same strategy object (strategies are
    built once, so that drawing stays cheap).
    """
    if ruleset is not None and not isinstance(ruleset, Ruleset):
        source = ruleset
        return st.deferred(
            lambda: patients(
                as_of=as_of,
                pathway=pathway,
                region=region,
                character=character,
                red_flags=red_flags,
                anticoagulants=anticoagulants,
                opioids=opioids,
                prior_procedures=prior_procedures,
                max_pain=max_pain,
                ruleset=_ruleset(source),
            )
        )
    agents = frozenset(ruleset.medications) if ruleset is not None else None
    codes = _codes(ruleset if ruleset is not None else _bundled())
    return _patients(
        as_of, pathway, region, character, red_flags, anticoagulants, opioids, prior_procedures, max_pain, agents, codes
    )


@functools.cache
def _bundled() -> Ruleset:
    from ..ruleset.loader import load_ruleset

    return load_ruleset(with_tests=False)


def _codes(ruleset: Ruleset) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ruleset's vocabularies, hashable (strategies are cached by their arguments)."""
    return tuple((name, tuple(c.code for c in v.codes)) for name, v in sorted(ruleset.vocabularies.items()))


@functools.cache
def _patients(
    as_of: date,
    pathway: str | None,
    region: str | None,
    character: str | None,
    red_flags: bool | None,
    anticoagulants: bool | None,
    opioids: bool | None,
    prior_procedures: bool | None,
    max_pain: int,
    agents: frozenset[str] | None,
    vocabularies: tuple[tuple[str, tuple[str, ...]], ...],
) -> st.SearchStrategy[PatientCase]:
    codes = dict(vocabularies)
    regions, characters = codes["body_region"], codes["pain_character"]
    if pathway is not None and pathway not in _BUILDERS:
        raise ValueError(f"unknown pathway {pathway!r}; choose from {', '.join(PATHWAYS)}")
    if region is not None and region not in regions:
        raise ValueError(f"unknown region {region!r}; choose from {', '.join(regions)}")
    if character is not None and character not in characters:
        raise ValueError(f"unknown pain character {character!r}; choose from {', '.join(characters)}")
    if max_pain < 1:
        raise ValueError("max_pain must be at least 1")
    if pathway is not None:
        eligible: tuple[str, ...] = (pathway,)
    else:
        eligible = tuple(
            name
            for name, (scope_regions, scope_characters) in _PATHWAY_SCOPE.items()
            if (region is None or region in (scope_regions or regions))
            and (character is None or character in (scope_characters or characters))
        ) or ("general",)
    # simplest first (shrinking goes there), each pathway as often as its weight says
    weighted = tuple(name for name in eligible for _ in range(_WEIGHTS[name]))

    @st.composite
    def build(draw: st.DrawFn) -> PatientCase:
        d = _Draw(draw, as_of, codes)
        ctx = _Ctx(as_of, region, character, prior_procedures, {})
        first = d.pick(weighted)
        _BUILDERS[first](d, ctx)
        if pathway is None and max_pain > 1 and d.chance(65):  # a second complaint on another pathway
            second = d.pick(weighted)
            if second not in (first, "red_flags"):
                _BUILDERS[second](d, ctx)
        if first not in ("general", "red_flags", "opioids"):
            for _ in range(d.pick((0, 0, 1, 1, 1, 2))):
                _complication(d, ctx)
        _background(d, ctx, red_flags, anticoagulants, opioids)
        doc = _finish(d, ctx, max_pain)
        if anticoagulants is False or opioids is False or agents is not None:
            doc["medications"] = [
                m
                for m in doc.get("medications", [])
                if not (anticoagulants is False and m["agent"] in _ANTITHROMBOTICS)
                and not (opioids is False and m["agent"] in _OPIOIDS)
                and (agents is None or m["agent"] in agents)
            ]
        return PatientCase.model_validate(doc)

    return build()


def _ruleset(source: RulesetSource | None) -> Ruleset:
    """The ruleset a strategy was given: loaded now (a folder, once per session), or made by a function."""
    if isinstance(source, Ruleset):
        return source
    if source is None or isinstance(source, str | os.PathLike):
        return _load(None if source is None else os.fspath(os.path.abspath(source)))
    made = source()
    if not isinstance(made, Ruleset):
        raise TypeError(f"the ruleset function returned {type(made).__name__}, not a Ruleset")
    return made


@functools.cache
def _load(path: str | None) -> Ruleset:
    from ..ruleset.loader import load_ruleset

    return load_ruleset(path, with_tests=False)


def boundary_patients(
    ruleset: RulesetSource | None = None,
    *,
    profile: str | None = None,
    as_of: date = DEFAULT_AS_OF,
    targets: Sequence[Threshold] | None = None,
    base: st.SearchStrategy[PatientCase] | None = None,
) -> st.SearchStrategy[PatientCase]:
    """Patients with one value just below, on or just above one numeric threshold of ``ruleset`` (the bundled
    one when None; a folder or a function is loaded when the strategy is first drawn from).

    Every threshold a rule compares (a literal, or a parameter resolved under ``profile``) is a target,
    or only ``targets`` (from :func:`ipm_cds.testing.boundaries.thresholds`); each (threshold, probe value)
    pair is equally likely. The rest of the patient is drawn by ``base`` (:func:`patients` by default), so
    the threshold meets varied surroundings. Probes that cannot be recorded (a negative count, a score
    outside its instrument's range) are rejected, never drawn.
    """
    if not isinstance(ruleset, Ruleset):  # loaded when first drawn from (a strategy built at import time)
        source = ruleset
        return st.deferred(
            lambda: boundary_patients(_ruleset(source), profile=profile, as_of=as_of, targets=targets, base=base)
        )
    from hypothesis import assume

    from .boundaries import set_fact_field, thresholds

    found = list(targets) if targets is not None else thresholds(ruleset, profile)
    if not found:
        raise ValueError("the ruleset compares no numeric threshold")
    probes = tuple((t, value) for t in found for value in t.probes())
    surroundings = base if base is not None else patients(as_of=as_of)

    @st.composite
    def draw(draw: st.DrawFn) -> PatientCase:
        target, value = draw(_choice(probes))
        doc = draw(surroundings).model_dump(mode="json", exclude_none=True)
        where = draw(_int(0, 5))
        probed = set_fact_field(doc, target.fact_type, target.field, value, as_of, target.selectors, where, ruleset)
        assume(probed is not None)
        try:  # the ruleset's own check: codes, and each value within its test's or instrument's range
            return ruleset.parse_patient(probed)
        except PatientDataError:
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


def with_requested(
    base: st.SearchStrategy[PatientCase] | None = None,
    *,
    as_of: date = DEFAULT_AS_OF,
    max_requested: int = 3,
    ruleset: RulesetSource | None = None,
) -> st.SearchStrategy[PatientCase]:
    """Patients of ``base`` (default :func:`patients`) with 1 to ``max_requested`` requested procedures: mostly
    an intervention aimed at the region of one of their pain complaints (so that some are also proposed),
    sometimes any intervention of the catalogue anywhere, with or without side, levels, guidance, steroid and
    a planned date on or after ``as_of``. ``ruleset`` as for :func:`patients` (a path or a function is read
    when the first patient is drawn)."""
    if ruleset is not None and not isinstance(ruleset, Ruleset):
        source = ruleset
        return st.deferred(
            lambda: with_requested(base, as_of=as_of, max_requested=max_requested, ruleset=_ruleset(source))
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
        return PatientCase.model_validate(
            {**patient.model_dump(mode="json", exclude_none=True), "requested": requested}
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
            added = {"kind": kind, "purpose": "therapeutic", "region": region,
                     "date": (as_of - timedelta(days=d.num(20, 400))).isoformat()}  # fmt: skip
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
            follow = [w for w in weeks if day + timedelta(weeks=w) <= as_of]
            # often a lasting responder (at most half the baseline), often a non-responder (at most 20% better)
            shape = d.num(0, 9)
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
