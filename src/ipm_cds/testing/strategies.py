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
from pydantic import ValidationError

from .. import patient as pm
from ..patient import PatientCase
from ..ruleset.loader import Ruleset

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
