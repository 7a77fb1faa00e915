"""Hypothesis strategies for patients.

``patients()`` draws valid, clinically coherent :class:`~ipm_cds.PatientCase` objects: every date is on
or before ``as_of``, relief is 0–100 %, scores stay in their instruments' ranges, and numbers cluster
around the thresholds the bundled rules use so that both sides of each are reached. Keyword knobs
steer the draw (region, character, red flags, anticoagulants, prior procedures).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, get_args

from hypothesis import strategies as st

from .. import patient as pm
from ..patient import PatientCase

DEFAULT_AS_OF = date(2025, 6, 2)

SPINE = ("cervical", "thoracic", "lumbar")
_REGIONS = (*SPINE, "sacral", "sacroiliac", "knee", "hip", "head", "lower_limb")
_CHARACTERS = tuple(get_args(pm.PainCharacter))
_PROCEDURE_KINDS = (
    "facet_mbb",
    "facet_mbb",
    "facet_mbb",
    "facet_mbb",
    "facet_rfa",
    "facet_rfa",
    "facet_ia",
    "facet_ia",
    "spinal_fusion",
    "esi_transforaminal",
    "sij_injection",
)
_ANTITHROMBOTICS = (
    "aspirin",
    "clopidogrel",
    "warfarin",
    "apixaban",
    "rivaroxaban",
    "dabigatran",
    "enoxaparin_therapeutic",
    "ibuprofen",
    "naproxen",
    "ticagrelor",
    "edoxaban",
    "heparin_sc",
)
_OTHER_MEDICATIONS = ("acetaminophen", "gabapentin", "duloxetine", "sertraline", "oxycodone", "tramadol", "alprazolam")
_CONDITIONS = tuple(get_args(pm.ConditionCode))
_RED_FLAGS = tuple(get_args(pm.RedFlagCode))

# Values on and around the thresholds of the bundled ruleset, mixed with the whole range.
_RELIEF = st.one_of(st.sampled_from([0, 30, 49, 50, 51, 59, 60, 74, 75, 79, 80, 81, 85, 90, 100]), st.integers(0, 100))
_WEEKS = st.one_of(st.sampled_from([0, 4, 11, 12, 13, 25, 26, 27, 52]), st.integers(0, 520))


def _maybe(strategy: st.SearchStrategy[Any], none_weight: bool = True) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy) if none_weight else strategy


def _past_date(as_of: date, max_days: int) -> st.SearchStrategy[str]:
    return st.integers(0, max_days).map(lambda d: (as_of - timedelta(days=d)).isoformat())


@st.composite
def _pain(draw: st.DrawFn, as_of: date, region: str | None, character: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "region": region or draw(st.sampled_from(_REGIONS)),
        "character": character or draw(st.sampled_from(("axial", "axial", "radicular", *_CHARACTERS))),
        "laterality": draw(_maybe(st.sampled_from(get_args(pm.Laterality)))),
        "nrs": draw(_maybe(st.integers(0, 10))),
        "odi_pct": draw(_maybe(st.integers(0, 100))),
    }
    if draw(st.booleans()):
        doc["duration_weeks"] = draw(_maybe(_WEEKS))
    else:
        doc["onset_date"] = draw(_past_date(as_of, 3000))
    if draw(st.booleans()):
        doc["ndi"] = draw(st.integers(0, 50))
    return doc


@st.composite
def _procedure(draw: st.DrawFn, as_of: date, region: str | None, focus: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(_PROCEDURE_KINDS))
    # Most procedures are at the patient's focus region, so that pathways build up across sessions.
    region = region or draw(st.sampled_from((focus, focus, focus, *SPINE, "sacroiliac")))
    levels = draw(st.lists(st.sampled_from(["L3-L4", "L4-L5", "L5-S1", "C5-C6", "T11-T12"]), max_size=3, unique=True))
    doc: dict[str, Any] = {
        "kind": kind,
        "region": region,
        "levels": levels,
        # dates near the 6-month and 12-month edges, and anywhere in the last three years
        "date": draw(
            st.one_of(
                st.sampled_from([150, 181, 182, 183, 184, 200, 364, 365, 366]).map(
                    lambda d: (as_of - timedelta(days=d)).isoformat()
                ),
                _past_date(as_of, 1100),
            )
        ),
        "relief_pct": draw(_maybe(_RELIEF)),
        "relief_duration_weeks": draw(_maybe(st.one_of(_WEEKS.map(float), st.floats(0, 2, allow_nan=False)))),
        "side": draw(_maybe(st.sampled_from(get_args(pm.Laterality)))),
    }
    for flag in ("same_scale", "duration_consistent_with_agent"):
        value = draw(st.sampled_from([None, None, True, False]))
        if value is not None:
            doc[flag] = value
    return doc


@st.composite
def patients(
    draw: st.DrawFn,
    *,
    as_of: date = DEFAULT_AS_OF,
    region: str | None = None,
    character: str | None = None,
    red_flags: bool | None = None,
    anticoagulants: bool | None = None,
    prior_procedures: bool | None = None,
    max_pain: int = 2,
) -> PatientCase:
    """A valid, clinically coherent patient. ``None`` knobs leave the choice to hypothesis."""
    sex = draw(st.sampled_from(["female", "male", None]))
    demographics: dict[str, Any] = {
        "age_years": draw(_maybe(st.integers(18, 95))),
        "sex": sex,
        "bmi": draw(_maybe(st.floats(15, 55, allow_nan=False).map(lambda x: round(x, 1)))),
        "tobacco_use": draw(_maybe(st.sampled_from(["current", "former", "never"]))),
    }
    if sex == "female":
        demographics["pregnant"] = draw(st.sampled_from([None, False, False, True]))
    focus = region or draw(st.sampled_from(SPINE))
    pain = draw(st.lists(_pain(as_of, region, character), min_size=1, max_size=max_pain))
    if region is None and draw(st.booleans()):
        pain[0]["region"] = focus
        if character is None and draw(st.booleans()):
            pain[0]["character"] = "axial"
    pain[0]["is_index"] = True
    n_procs = {True: (1, 6), False: (0, 0), None: (0, 6)}[prior_procedures]
    procedures = draw(st.lists(_procedure(as_of, region, focus), min_size=n_procs[0], max_size=n_procs[1]))
    n_flags = {True: (1, 2), False: (0, 0), None: (0, 2)}[red_flags]
    flags = draw(
        st.lists(
            st.fixed_dictionaries(
                {"code": st.sampled_from(_RED_FLAGS)},
                optional={
                    "onset_date": st.one_of(
                        st.sampled_from([12, 13, 14, 15]).map(lambda d: (as_of - timedelta(days=d)).isoformat()),
                        _past_date(as_of, 400),
                    ),
                    "deteriorating": st.booleans(),
                },
            ),
            min_size=n_flags[0],
            max_size=n_flags[1],
        )
    )
    meds: list[dict[str, Any]] = []
    if anticoagulants is not False:
        n = (1, 2) if anticoagulants else (0, 2)
        for agent in draw(st.lists(st.sampled_from(_ANTITHROMBOTICS), min_size=n[0], max_size=n[1], unique=True)):
            meds.append(
                {
                    "agent": agent,
                    "indication": draw(
                        st.sampled_from([None, "primary_prevention", "secondary_prevention", "treatment"])
                    ),
                }
            )
    for agent in draw(st.lists(st.sampled_from(_OTHER_MEDICATIONS), max_size=2, unique=True)):
        meds.append({"agent": agent})
    conditions = [
        {"code": c, "active": draw(st.booleans())}
        for c in draw(st.lists(st.sampled_from(_CONDITIONS), max_size=3, unique=True))
    ]
    care = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "failed": st.booleans(),
                "active_exercise_program": st.booleans(),
                "physical_therapy_weeks": st.integers(0, 52),
            },
        )
    )
    imaging = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "modality": st.sampled_from(["mri", "ct", "xray"]),
                    "finding": st.sampled_from(
                        ["facet_arthropathy", "disc_herniation", "vertebral_fracture", "tumor", "normal"]
                    ),
                    "region": st.sampled_from(SPINE),
                }
            ),
            max_size=2,
        )
    )
    doc = {
        "id": draw(_maybe(st.text("abcdef0123456789", min_size=1, max_size=8))),
        "demographics": demographics,
        "pain": pain,
        "procedures": procedures,
        "red_flags": flags,
        "medications": meds,
        "conditions": conditions,
        "conservative_care": care,
        "imaging": imaging,
    }
    return PatientCase.model_validate(doc)
