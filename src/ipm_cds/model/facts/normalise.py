"""Normalise one patient into small, flat, typed facts, with dates made relative to ``as_of``.

This is the only place where the patient document is read. It checks what needs the evaluation date
(nothing dated after ``as_of``; age and birth date agree; the age a birth date gives is 0–120) and
what needs the ruleset (every code belongs to one of its vocabularies, medication codes to its catalogue:
:mod:`ipm_cds.model.facts.vocabulary`). Lists are sorted canonically first,
so the order of items in the input can never change which fact gets which key, and so never the answer.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from functools import cache
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel

from ...errors import PatientDataError, Problem
from ..patient import (
    FUTURE_DATE_FIELDS,
    MAX_AGE_YEARS,
    PRECISION_FIELDS,
    DatePrecision,
    Lab,
    PatientCase,
    period_of,
)
from .schema import BASE_FACT_TYPES
from .series import relief_in_series, series_facts
from .vocabulary import CodeInfo, RangeCheck, Vocabularies, check_codes, coded_fields, nested_fields, range_check

Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact. ``values`` holds only the attributes that are known: absent means missing."""

    type: str
    key: str
    values: Mapping[str, Scalar]
    label: str
    derived: bool = False

    def get(self, name: str) -> Scalar | None:
        return self.values.get(name)

    def content(self) -> tuple[str, tuple[tuple[str, Scalar], ...]]:
        """Identity by content (type and attributes), independent of keys and engine ids."""
        return self.type, tuple(sorted(self.values.items()))


@dataclass(frozen=True, slots=True)
class MedicationInfo:
    drug_class: str
    antithrombotic: bool
    mme_factor: float | None = None
    mme_dose_unit: str | None = None
    mme_excluded: bool = False


@dataclass(frozen=True, slots=True)
class NormaliseContext:
    """What the normaliser needs from the ruleset: the medication catalogue, the rolling window, the
    groups that summary facts count over and the vocabularies that codes belong to (all data from the
    ruleset, no clinical numbers in code)."""

    medications: Mapping[str, MedicationInfo]
    rolling_window_days: int
    procedure_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    exam_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    medication_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    vocabularies: Mapping[str, Mapping[str, CodeInfo]] = field(default_factory=dict)
    # intervention code -> its allowed image guidance (requested procedures are checked against it)
    interventions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_M = TypeVar("_M", bound=BaseModel)
SORTED_JSON = json.JSONEncoder(sort_keys=True).encode  # json.dumps(x, sort_keys=True), the encoder made once


def _json_of(model: BaseModel) -> bytes:
    """``model.model_dump_json()`` as UTF-8 bytes, from pydantic-core without the wrapper's keyword handling (the
    same defaults); UTF-8 bytes sort as their text does, so the order is the same."""
    return model.__pydantic_serializer__.to_json(model)


@cache
def _first_field(model: type[BaseModel]) -> str:
    """The name of a model's first field: the first in its JSON (per model class, a few)."""
    return next(iter(model.model_fields))


def _canonical(items: Sequence[_M]) -> Sequence[_M]:
    if len(items) < 2:
        return items  # nothing to order (and no JSON to write for the sort key); only read, never changed
    # Most items differ in their first field, a code (region, kind, agent): the JSON of two items of one model
    # then compares as that code does, so the order is theirs, with no JSON written. (A code of letters, digits
    # and underscores: no character of it is escaped in JSON or sorts before the quote that ends it there, so a
    # code that begins another ends first in both orders.)
    kind = type(items[0])
    name = _first_field(kind)
    by_head: dict[str, _M] = {}
    for item in items:
        head = getattr(item, name) if type(item) is kind else None
        if type(head) is not str or not head.isidentifier() or head in by_head:
            break  # (two items with one code, or a field that is no code: the JSON decides)
        by_head[head] = item
    else:
        return [by_head[head] for head in sorted(by_head)]
    # pydantic-core's JSON of each item (fields in declaration order): a total order on content, three times
    # faster than sorted-key JSON of model_dump (measured on the largest patients)
    return sorted(items, key=_json_of)


_SEGMENT_ORDER = {"C": 0, "T": 1, "L": 2, "S": 3}


_SHOWN = MappingProxyType({"day": 10, "month": 7, "year": 4})  # characters of an ISO date a precision keeps


def _levels(levels: list[str]) -> list[str]:
    """Distinct levels in anatomical order (one or none: nothing to order)."""
    return sorted(set(levels), key=_level_key) if len(levels) > 1 else list(levels)


def _level_key(level: str) -> tuple[int, int, str]:
    """Anatomical order of a spinal level or segment: C1 < ... < T12 < L1 < ... < S5."""
    return _SEGMENT_ORDER[level[0]], int(level[1:].split("-", maxsplit=1)[0]), level


def _months_between(earlier: date, later: date) -> int:
    months = (later.year - earlier.year) * 12 + (later.month - earlier.month)
    return months - (1 if later.day < earlier.day else 0)


def _labeller(type_name: str, identity: tuple[str, ...]) -> Callable[[Mapping[str, Scalar]], str]:
    """The label of a fact of one type: its type and the values of its identity fields (``lab[test=inr, date=
    2025-05-01]``), made once a type (most name one field or none, which needs no list)."""
    if not identity:
        return lambda values: type_name
    if len(identity) == 1:
        name = identity[0]
        return lambda values: f"{type_name}[{name}={values[name]}]" if name in values else type_name

    def label(values: Mapping[str, Scalar]) -> str:
        parts = []
        for name in identity:  # a loop: a comprehension would make a function object each label
            if name in values:
                parts.append(f"{name}={values[name]}")
        return f"{type_name}[{', '.join(parts)}]" if parts else type_name

    return label


_LABELS = MappingProxyType({name: _labeller(name, ft.identity) for name, ft in BASE_FACT_TYPES.items()})

# Fact(...) runs the frozen dataclass's __init__, an object.__setattr__ for each field; setting the same slots
# through their descriptors makes the same object in a third of the time (normalise makes ~17 facts a patient).
_FACT_SLOTS = ("type", "key", "values", "label", "derived")
if tuple(f.name for f in fields(Fact)) != _FACT_SLOTS:  # pragma: no cover (a new field must be set here too)
    raise TypeError(f"normalise sets the fields {_FACT_SLOTS} of Fact, not {[f.name for f in fields(Fact)]}")
_SET_TYPE, _SET_KEY, _SET_VALUES, _SET_LABEL, _SET_DERIVED = (getattr(Fact, n).__set__ for n in _FACT_SLOTS)
_new_fact = object.__new__


def make_fact(type_name: str, key: str, values: Mapping[str, Scalar], label: str, derived: bool = False) -> Fact:
    """``Fact(type_name, key, values, label, derived)``, made through the slots (see ``_FACT_SLOTS``): the same
    object, for the code that makes facts per record (the aggregates, the driver's derived facts)."""
    fact = _new_fact(Fact)
    _SET_TYPE(fact, type_name)
    _SET_KEY(fact, key)
    _SET_VALUES(fact, values)
    _SET_LABEL(fact, label)
    _SET_DERIVED(fact, derived)
    return fact


_COMPARED = 8  # normalise compares a fact with up to this many of its type one by one, then hashes them all
_KEYS = MappingProxyType({name: tuple(f"{name}#{i}" for i in range(16)) for name in BASE_FACT_TYPES})
"""The keys of the first 16 facts of each type (``pain#0`` ... ``pain#15``), made once."""


FLOAT_DECIMALS = 6
"""Float facts carry at most this many decimals: no clinical measurement needs more, and both backends
then compare exactly the same numbers."""


_PLAIN = (str, int, float, bool, type(None))
_KEPT_AS_IS = frozenset({str, int, bool})


def _may_hold_date(annotation: Any) -> bool:
    """False only for annotations made of strings, numbers, booleans, None and literals (no date inside)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _may_hold_date(get_args(annotation)[0])
    if origin is Literal:
        return False
    if origin is Union or origin is types.UnionType or origin in (list, tuple):
        return any(_may_hold_date(a) for a in get_args(annotation) if a is not Ellipsis)
    return not (isinstance(annotation, type) and issubclass(annotation, _PLAIN))


_DATE_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _date_fields(model: type[BaseModel]) -> tuple[str, ...]:
    names = _DATE_FIELDS.get(model)
    if names is None:
        names = tuple(
            n
            for n, info in model.model_fields.items()
            if _may_hold_date(info.annotation) and n not in FUTURE_DATE_FIELDS
        )
        _DATE_FIELDS[model] = names
    return names


def _first_day(model: BaseModel, name: str, value: date) -> date:
    """The earliest day a date field can mean: the date itself, or the first day of its month or year when the
    model records it as partial (``onset_precision``, ``date_precision``)."""
    precision: DatePrecision = getattr(model, PRECISION_FIELDS.get(name, ""), "day")
    return value if precision == "day" else period_of(value, precision)[0]


def _any_after(value: Any, as_of: date) -> bool:
    """Whether any date in ``value`` is after ``as_of`` (the fast check before :func:`_check_dates`)."""
    if isinstance(value, BaseModel):
        for name in _DATE_FIELDS.get(type(value)) or _date_fields(type(value)):
            field_value = getattr(value, name)
            if isinstance(field_value, date):
                if _first_day(value, name, field_value) > as_of:
                    return True
            elif _any_after(field_value, as_of):
                return True
        return False
    if isinstance(value, list):
        for item in value:  # noqa: SIM110 (a loop: any() over a generator costs a frame per item)
            if _any_after(item, as_of):
                return True
        return False
    return isinstance(value, date) and value > as_of


_ScanPlan = tuple[tuple[str, ...], tuple[tuple[str, str, bool], ...], RangeCheck | None, tuple[str, ...]]


@cache
def _scan_plan(model: type[BaseModel]) -> _ScanPlan:
    """What :func:`_clean` reads of one model: the fields that may hold a date (other than the models inside),
    the coded fields, the check of its ranged values, the fields that hold models."""
    nested = nested_fields(model)
    dates = tuple(n for n in _date_fields(model) if n not in nested)
    return dates, coded_fields(model), range_check(model), nested


def _clean(models: Sequence[Any], as_of: date, vocabularies: Vocabularies) -> bool:
    """True when nothing in ``models`` (a patient, or the items of one of its lists) is dated after ``as_of`` and
    :func:`check_codes` has nothing to report: the one walk that most documents need. False when either may have
    a problem (a partial date is read as its last day here); the caller then runs the exact checks, which name
    each field."""
    kind: type | None = None
    for model in models:
        if type(model) is not kind:  # the first item of a list (its items share a type): what to read of it
            if not isinstance(model, BaseModel):
                return False  # not a shape the patient model has: the exact checks decide
            kind = type(model)
            dates, codes, check, nested = _scan_plan(kind)
        for name in dates:
            value = getattr(model, name)
            if isinstance(value, date):
                if value > as_of:
                    return False
            elif value is not None and _any_after(value, as_of):
                return False
        for name, vocabulary, many in codes:
            value = getattr(model, name)
            if value is None:
                continue
            known = vocabularies.get(vocabulary)
            if known is None:
                continue
            if many:
                for code in value:
                    if code not in known:
                        return False
            elif value not in known:
                return False
        if check is not None and check(model, "", vocabularies):
            return False
        for name in nested:
            value = getattr(model, name)
            if type(value) is list:
                if value and not _clean(value, as_of, vocabularies):
                    return False
            elif isinstance(value, BaseModel):
                if not _clean((value,), as_of, vocabularies):
                    return False
            elif value is not None:
                return False  # not a shape the patient model has: the exact checks decide
    return True


# The laboratory tests of renal function (ruleset vocabulary lab_test): their latest results make the patient's
# renal_gfr, so that a rule can wait for renal function on the one patient fact (reported missing when none is
# recorded) instead of matching nothing when no result exists.
_RENAL_TESTS = ("egfr", "creatinine_clearance")


def _renal_gfr(labs: Sequence[Lab]) -> float | None:
    """The lower of the most recent eGFR and the most recent creatinine clearance (on one date, the lower result)."""
    latest: dict[str, tuple[date, float]] = {}
    for lab in labs:
        if lab.test not in _RENAL_TESTS:
            continue
        held = latest.get(lab.test)
        if held is None or lab.date > held[0] or (lab.date == held[0] and lab.value < held[1]):
            latest[lab.test] = (lab.date, float(lab.value))
    return min((value for _, value in latest.values()), default=None)


def _lab_flag(lab: Lab) -> str | None:
    """The laboratory's own reading of a result: its flag, else its reference range; None when it gave neither."""
    if lab.flag is not None:
        return lab.flag
    low, high = lab.reference_low, lab.reference_high
    if low is None and high is None:
        return None
    if high is not None and lab.value > high:
        return "high"
    if low is not None and lab.value < low:
        return "low"
    return "normal"


def _check_dates(patient: PatientCase, as_of: date) -> list[Problem]:
    """Every date in the document must be on or before as_of (field paths use the input order)."""
    problems: list[Problem] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                if name in FUTURE_DATE_FIELDS:
                    continue  # a planned date may lie after as_of
                field_value = getattr(value, name)
                if isinstance(field_value, date) and _first_day(value, name, field_value) <= as_of:
                    continue  # a partial date whose month or year has begun by as_of
                walk(field_value, f"{path}.{name}" if path else name)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, date) and value > as_of:
            problems.append(
                Problem(
                    f"date {value.isoformat()} is after the evaluation date {as_of.isoformat()}",
                    field=path,
                    hint="correct the date, or evaluate with a later --as-of",
                )
            )

    walk(patient, "")
    return problems


def normalise(patient: PatientCase, as_of: date, context: NormaliseContext) -> list[Fact]:
    """Turn a validated patient into facts. Raises :class:`PatientDataError` naming the field."""
    problems: list[Problem] = []
    if not _clean((patient,), as_of, context.vocabularies):  # most documents: one walk, no problem to name
        problems = _check_dates(patient, as_of) if _any_after(patient, as_of) else []
        if context.vocabularies:
            problems += check_codes(patient, context.vocabularies)
    demo = patient.demographics
    age = demo.age_years
    if demo.birth_date is not None:
        born = demo.birth_date
        computed = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
        if computed > MAX_AGE_YEARS:  # a birth date after as_of is reported by _check_dates
            problems.append(
                Problem(
                    f"birth_date {born.isoformat()} gives age {computed} at {as_of.isoformat()}, "
                    f"outside 0–{MAX_AGE_YEARS} (the range of age_years)",
                    field="demographics.birth_date",
                    hint="correct it, or leave it out when the date of birth is unknown (age is then "
                    "reported missing): a placeholder such as 1900-01-01 is not a date of birth",
                )
            )
        elif age is not None and age != computed:
            problems.append(
                Problem(
                    f"age_years {age} disagrees with birth_date {born.isoformat()} "
                    f"(age {computed} at {as_of.isoformat()})",
                    field="demographics.age_years",
                    hint="give one of them, or correct it",
                )
            )
        age = computed
    for i, med in enumerate(patient.medications):
        info = context.medications.get(med.agent)
        if info is not None and info.mme_dose_unit and med.dose_unit and med.dose_unit != info.mme_dose_unit:
            problems.append(
                Problem(
                    f"{med.agent} doses are counted in {info.mme_dose_unit} (CDC MME table), not {med.dose_unit}",
                    field=f"medications[{i}].dose_unit",
                    hint=f"give the total daily dose in {info.mme_dose_unit}",
                )
            )
        if med.agent not in context.medications:
            from difflib import get_close_matches

            close = get_close_matches(med.agent, list(context.medications), n=1)
            problems.append(
                Problem(
                    f"unknown medication code {med.agent!r}",
                    field=f"medications[{i}].agent",
                    hint=f"did you mean {close[0]!r}?"
                    if close
                    else "see the ruleset's medication catalogue for the codes",
                )
            )
    if context.interventions:
        for i, req in enumerate(patient.requested):
            if req.intervention not in context.interventions:
                from difflib import get_close_matches

                close = get_close_matches(req.intervention, list(context.interventions), n=1)
                problems.append(
                    Problem(
                        f"unknown intervention code {req.intervention!r}",
                        field=f"requested[{i}].intervention",
                        hint=f"did you mean {close[0]!r}?"
                        if close
                        else "see the ruleset's intervention catalogue for the codes",
                    )
                )
    if problems:
        raise PatientDataError(problems)

    facts: list[Fact] = []
    # the values of the facts of each type so far: a list while they are few (compared as dicts), then a set of
    # their contents (frozensets of the attributes); equal either way exactly when the attributes are
    kept: dict[str, list[dict[str, Scalar]] | set[frozenset[tuple[str, Scalar]]]] = {}

    def add(type_name: str, index: int | None, values: Mapping[str, Any], *, unique: bool = False) -> None:
        # the known values, floats rounded; a str, int or bool (most values) is kept with no isinstance call, and
        # a loop, not a comprehension, costs no function object a fact
        compact: dict[str, Scalar] = {}
        for k, v in values.items():
            if v is not None:
                compact[k] = (
                    v if type(v) in _KEPT_AS_IS else round(v, FLOAT_DECIMALS) + 0.0 if isinstance(v, float) else v
                )
        # Facts are a set: an item recorded twice with the same content (the same drug listed twice, one
        # result entered twice) is one fact, so no rule matches it twice. Summaries are computed from the
        # document itself, so two orders of one opioid still add up in MME/day. A fact that is ``unique`` (the
        # only one of its type, or one per distinct key) cannot repeat another.
        if not unique:
            same = kept.get(type_name)
            if same is None:
                kept[type_name] = [compact]
            elif isinstance(same, list):
                if compact in same:
                    return
                if len(same) < _COMPARED:
                    same.append(compact)
                else:
                    kept[type_name] = {frozenset(earlier.items()) for earlier in (*same, compact)}
            else:
                held = len(same)
                same.add(frozenset(compact.items()))
                if len(same) == held:
                    return
        fact = _new_fact(Fact)  # Fact(type_name, key, compact, label), through the slots (see _FACT_SLOTS)
        _SET_TYPE(fact, type_name)
        if index is None:
            _SET_KEY(fact, type_name)
        else:
            keys = _KEYS[type_name]
            _SET_KEY(fact, keys[index] if index < len(keys) else f"{type_name}#{index}")
        _SET_VALUES(fact, compact)
        _SET_LABEL(fact, _LABELS[type_name](compact))
        _SET_DERIVED(fact, False)
        facts.append(fact)

    def days(d: date | None) -> int | None:
        return (as_of - d).days if d is not None else None

    def iso(d: date | None) -> str | None:
        return d.isoformat() if d is not None else None

    def latest(d: date, precision: str) -> date:
        """The least safe reading of a partial date: the last day of its period, at most as_of."""
        return min(d, as_of) if precision != "day" else d

    def shown(d: date, precision: str) -> str:
        """A partial date as the clinician gave it (YYYY or YYYY-MM), so that no text reads it as exact."""
        return d.isoformat()[: _SHOWN[precision]]

    care, psych = patient.conservative_care, patient.psychological_evaluation
    add("patient", None, {
        "age_years": age, "sex": demo.sex, "pregnant": demo.pregnant,
        "gestational_weeks": demo.gestational_weeks, "bmi": demo.bmi,
        "tobacco_use": demo.tobacco_use, "conservative_care_failed": care.failed,
        "physical_therapy_weeks": care.physical_therapy_weeks,
        "active_exercise_program": care.active_exercise_program, "nonoperative_months": care.nonoperative_months,
        "psych_eval_completed": psych.completed if psych else None,
        "psych_eval_cleared": psych.cleared if psych else None,
        "hospitalised": patient.hospitalised, "renal_gfr": _renal_gfr(patient.labs),
    }, unique=True)  # fmt: skip
    for i, pain in enumerate(_canonical(patient.pain)):
        weeks = longest = pain.duration_weeks
        if pain.onset_date is not None:  # a partial onset: shortest from its last day, longest from its first
            weeks = (as_of - latest(pain.onset_date, pain.onset_precision)).days // 7
            longest = (as_of - period_of(pain.onset_date, pain.onset_precision)[0]).days // 7
        add("pain", i, {
            "region": pain.region, "laterality": pain.laterality, "character": pain.character,
            "duration_weeks": weeks, "duration_weeks_max": longest, "onset_precision": pain.onset_precision,
            "nrs": pain.nrs, "odi_pct": pain.odi_pct, "ndi": pain.ndi, "rmdq": pain.rmdq,
            "worsening": pain.worsening, "is_index": pain.is_index,
        })  # fmt: skip
    for i, img in enumerate(_canonical(patient.imaging)):
        add("imaging", i, {
            "modality": img.modality, "finding": img.finding, "region": img.region, "level": img.level,
            "side": img.side, "concordant": img.concordant, "height_loss_pct": img.height_loss_pct,
            "days_since": days(img.date), "date": iso(img.date),
        })  # fmt: skip
    for i, ex in enumerate(_canonical(patient.exam)):
        add("exam", i, {"test": ex.test, "positive": ex.positive, "region": ex.region, "side": ex.side})
    for i, (group, members) in enumerate(sorted(context.exam_groups.items())):
        positive = negative = 0
        for ex in patient.exam:
            if ex.test in members:
                if ex.positive:
                    positive += 1
                else:
                    negative += 1
        add("exam_summary", i, {"group": group, "positive_count": positive, "negative_count": negative}, unique=True)
    for i, rf in enumerate(_canonical(patient.red_flags)):
        onset = latest(rf.onset_date, rf.onset_precision) if rf.onset_date is not None else None
        add("red_flag", i, {"code": rf.code, "deteriorating": rf.deteriorating, "onset_days": days(onset),
                            "onset_precision": rf.onset_precision if onset is not None else None})  # fmt: skip
    by_kind: dict[tuple[str, str], set[date]] = {}
    in_series = relief_in_series(patient, as_of, context.vocabularies.get("outcome_measure", {}))
    for i, proc in enumerate(_canonical(patient.procedures)):
        levels = _levels(proc.levels)
        when = latest(proc.date, proc.date_precision)
        add("procedure", i, {
            "kind": proc.kind, "purpose": proc.purpose, "region": proc.region,
            "levels": ",".join(levels) if levels else None, "level_count": len(levels) if levels else None,
            "side": proc.side, "days_since": days(when), "months_since": _months_between(when, as_of),
            "date": shown(proc.date, proc.date_precision), "date_precision": proc.date_precision,
            "relief_pct": proc.relief_pct,
            "relief_duration_weeks": proc.relief_duration_weeks, "same_scale": proc.same_scale,
            "duration_consistent_with_agent": proc.duration_consistent_with_agent,
            "relief_series": (proc.date, proc.kind, proc.region) in in_series,
        })  # fmt: skip
        by_kind.setdefault((proc.kind, proc.region), set()).add(when)

    def history(head: str, name: str, region: str, dates: set[date]) -> dict[str, Any]:
        ages = [(as_of - d).days for d in dates]
        window = context.rolling_window_days
        return {
            head: name, "region": region, "sessions_in_window": len([age for age in ages if age < window]),
            "sessions_total": len(dates), "last_days_since": min(ages),
        }  # fmt: skip

    for i, ((kind, region), dates) in enumerate(sorted(by_kind.items())):
        add("procedure_history", i, history("kind", kind, region, dates), unique=True)
    by_group: dict[tuple[str, str], set[date]] = {}
    for group, members in context.procedure_groups.items():
        for (kind, region), dates in by_kind.items():
            if kind in members:
                by_group.setdefault((group, region), set()).update(dates)
    for i, ((group, region), dates) in enumerate(sorted(by_group.items())):
        add("procedure_group_history", i, history("group", group, region, dates), unique=True)
    mme_total: float | None = 0.0
    mme_known = 0.0
    opioids = uncounted = 0
    for i, med in enumerate(_canonical(patient.medications)):
        info = context.medications[med.agent]
        mme: float | None = None
        if info.mme_excluded:
            opioids, uncounted = opioids + 1, uncounted + 1
        elif info.mme_factor is not None:
            opioids += 1
            mme = med.daily_dose * info.mme_factor if med.daily_dose is not None else None
            mme_total = mme_total + mme if mme is not None and mme_total is not None else None
            mme_known += mme or 0.0
        add("medication", i, {
            "agent": med.agent, "drug_class": info.drug_class, "antithrombotic": info.antithrombotic,
            "daily_dose": float(med.daily_dose) if med.daily_dose is not None else None,
            "dose_unit": med.dose_unit, "indication": med.indication, "mme_per_day": mme,
            "mme_factor": info.mme_factor,
            "mme_status": (
                "not_counted" if info.mme_excluded else ("counted" if info.mme_factor is not None else "not_opioid")
            ),
        })  # fmt: skip
    if opioids:
        add("opioid_summary", None, {
            "total_mme_per_day": mme_total, "known_mme_per_day": mme_known, "opioid_count": opioids,
            "uncounted_count": uncounted}, unique=True)  # fmt: skip
    for i, (group, classes) in enumerate(sorted(context.medication_groups.items())):
        count = 0
        for med in patient.medications:
            if context.medications[med.agent].drug_class in classes:
                count += 1
        add("medication_summary", i, {"group": group, "count": count}, unique=True)
    for i, lab in enumerate(_canonical(patient.labs)):
        add("lab", i, {
            "test": lab.test, "value": float(lab.value), "days_since": days(lab.date), "date": iso(lab.date),
            "flag": _lab_flag(lab),
        })  # fmt: skip
    for i, scr in enumerate(_canonical(patient.screenings)):
        add("screening", i, {
            "instrument": scr.instrument, "score": scr.score, "item9": scr.item9,
            "distress_subscore": scr.distress_subscore, "category": scr.category, "days_since": days(scr.date),
        })  # fmt: skip
    for i, cond in enumerate(_canonical(patient.conditions)):
        add("condition", i, {"code": cond.code, "active": cond.active, "region": cond.region})
    if patient.steroid_injections:
        equivalents = context.vocabularies.get("steroid_agent", {})
        in_window: list[float | None] = []
        for i, inj in enumerate(_canonical(patient.steroid_injections)):
            when = latest(inj.date, inj.date_precision)
            agent_info = equivalents.get(inj.agent)
            factor = agent_info.equivalent if agent_info is not None else None
            mpe = inj.dose_mg * factor if inj.dose_mg is not None and factor is not None else None
            if (as_of - when).days < context.rolling_window_days:
                in_window.append(mpe)
            add("steroid_injection", i, {
                "agent": inj.agent, "dose_mg": inj.dose_mg, "mpe_mg": mpe, "region": inj.region, "route": inj.route,
                "days_since": days(when), "date": shown(inj.date, inj.date_precision),
                "date_precision": inj.date_precision,
            })  # fmt: skip
        known = [m for m in in_window if m is not None]
        add("steroid_summary", None, {
            "injections_in_window": len(in_window),
            "mpe_mg_in_window": sum(known) if len(known) == len(in_window) else None,
            "known_mpe_mg_in_window": sum(known), "dose_unknown_in_window": len(in_window) - len(known),
        }, unique=True)  # fmt: skip
    if patient.prognosis is not None:
        add("prognosis", None, {
            "life_expectancy_months": patient.prognosis.life_expectancy_months,
            "days_since": days(patient.prognosis.date),
        }, unique=True)  # fmt: skip
    for i, stent in enumerate(_canonical(patient.coronary_stents)):
        add("coronary_stent", i, {
            "stent_type": stent.type, "days_since": days(stent.date),
            "months_since": _months_between(stent.date, as_of) if stent.date is not None else None,
            "date": iso(stent.date),
        })  # fmt: skip
    for i, allergy in enumerate(_canonical(patient.allergies)):
        add("allergy", i, {"substance": allergy.substance})
    if patient.measurements or patient.mme_history:
        counters: dict[str, int] = {}
        for type_name, values in series_facts(patient, as_of, context.vocabularies.get("outcome_measure", {})):
            counters[type_name] = counters.get(type_name, -1) + 1
            add(type_name, counters[type_name], values)
    for i, req in enumerate(_canonical(patient.requested)):
        levels = _levels(req.levels)
        allowed = context.interventions.get(req.intervention)
        add("requested", i, {
            "order": req.id, "intervention": req.intervention, "status": req.status, "region": req.region,
            "side": req.side, "levels": ",".join(levels) if levels else None,
            "level_count": len(levels) if levels else None, "approach": req.approach,
            "days_until": (req.planned_date - as_of).days if req.planned_date is not None else None,
            "planned_date": iso(req.planned_date), "guidance": req.guidance,
            "guidance_conflict": req.guidance is not None and allowed is not None and req.guidance not in allowed,
            "guidance_ionizing": req.guidance in ("fluoroscopy", "ct"),
            "steroid_agent": req.steroid_agent, "steroid_dose_mg": req.steroid_dose_mg,
        })  # fmt: skip
    return facts
