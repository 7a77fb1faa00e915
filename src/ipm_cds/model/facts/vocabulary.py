"""Codes in a patient document, checked against the vocabularies of the ruleset that evaluates it.

The patient model marks every coded field with :class:`~ipm_cds.model.patient.Vocab` (the vocabulary's name);
the ruleset declares the codes of each vocabulary (its ``vocabularies`` catalogue). This module finds the
marked fields of a parsed document by walking the model, so a coded field added to the model is checked
with no more code, and reports every unknown code with the field's path and the nearest known code. The
vocabulary entries also carry what a code needs to be read: a laboratory test's plausible range, an
instrument's score range and the subscores it has.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from ...errors import Problem
from ..patient import SUBSCORE_FIELDS, Lab, Measurement, PatientCase, Screening, Vocab

__all__ = ["CodeInfo", "check_codes", "coded_fields", "nested_fields", "range_check"]


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What the patient model needs of one vocabulary code: the unit and plausible range of a value
    recorded with it (laboratory tests, instruments) and the subscores it carries (instruments)."""

    label: str
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    subscores: tuple[str, ...] = field(default=())
    better: str | None = None  # outcome instruments: "higher" or "lower" is the better score
    equivalent: float | None = None  # corticosteroids: mg methylprednisolone per mg of the agent


Vocabularies = Mapping[str, Mapping[str, CodeInfo]]


def _vocab_of(annotation: Any) -> tuple[str | None, bool]:
    """The vocabulary an annotation's value belongs to, and whether the value is a list of codes."""
    origin = get_origin(annotation)
    if origin is Annotated:
        args = get_args(annotation)
        for meta in args[1:]:
            if isinstance(meta, Vocab):
                return meta.name, False
        return _vocab_of(args[0])
    if origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            name, many = _vocab_of(arg)
            if name is not None:
                return name, many
    if origin in (list, tuple):
        name, _ = _vocab_of(get_args(annotation)[0])
        return name, name is not None
    return None, False


@cache
def coded_fields(model: type[BaseModel]) -> tuple[tuple[str, str, bool], ...]:
    """``(field, vocabulary, is_list)`` for every coded field of one model (its own fields only)."""
    out: list[tuple[str, str, bool]] = []
    for name, info in model.model_fields.items():
        vocab, many = _vocab_of(Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation)
        if vocab is not None:
            out.append((name, vocab, many))
    return tuple(out)


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, BaseModel)
    return any(_holds_model(arg) for arg in get_args(annotation))


@cache
def nested_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a model that hold models (or lists of them): the only ones the walk descends into."""
    return tuple(name for name, info in model.model_fields.items() if _holds_model(info.annotation))


def _walk(value: Any, path: str | None) -> Iterator[tuple[BaseModel, str]]:
    """Every model in ``value`` with its field path (``""`` for all of them when ``path`` is None: the
    paths are written only for a document that has a problem to name)."""
    if isinstance(value, BaseModel):
        yield value, path or ""
        for name in nested_fields(type(value)):
            yield from _walk(getattr(value, name), None if path is None else f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, None if path is None else f"{path}[{i}]")


def _unknown(code: str, vocabulary: str, known: Mapping[str, CodeInfo], where: str) -> Problem:
    close = get_close_matches(code, list(known), n=1)
    hint = (
        f"did you mean {close[0]!r}?"
        if close
        else f"the ruleset's {vocabulary} vocabulary has: {', '.join(sorted(known)[:12])}"
        + (", ..." if len(known) > 12 else "")
    )
    return Problem(f"unknown {vocabulary} code {code!r}", field=where, hint=hint)


def check_codes(patient: PatientCase, vocabularies: Vocabularies) -> list[Problem]:
    """Every problem with the codes of one document: unknown codes, values outside a test's or an
    instrument's range, subscores on an instrument that has none of that name. Empty when all is well.

    A document is first checked without writing field paths (most have no problem); only one with a
    problem is walked again to name where each is."""
    if not _problems(patient, vocabularies, with_paths=False):
        return []
    return _problems(patient, vocabularies, with_paths=True)


def _problems(patient: PatientCase, vocabularies: Vocabularies, *, with_paths: bool) -> list[Problem]:
    problems: list[Problem] = []
    for model, path in _walk(patient, "" if with_paths else None):
        for name, vocabulary, many in coded_fields(type(model)):
            value = getattr(model, name)
            known = vocabularies.get(vocabulary)
            if value is None or known is None:
                continue
            codes = list(enumerate(value)) if many else [(None, value)]
            for i, code in codes:
                where = f"{path}.{name}" if path else name
                if code not in known:
                    problems.append(_unknown(code, vocabulary, known, where if i is None else f"{where}[{i}]"))
        check = range_check(type(model))
        if check is not None:
            problems.extend(check(model, path, vocabularies))
    return problems


RangeCheck = Callable[[Any, str, Vocabularies], list[Problem]]


@cache
def range_check(model: type[BaseModel]) -> RangeCheck | None:
    """The check of the values a model's codes give a range to (laboratory results, screening and outcome scores):
    ``check(instance, path, vocabularies)`` lists the problems; None for a model with no such value."""
    if issubclass(model, Lab):
        return _lab_range
    if issubclass(model, Screening):
        return _screening_range
    if issubclass(model, Measurement):
        return _measurement_range
    return None


def _lab_range(lab: Lab, path: str, vocabularies: Vocabularies) -> list[Problem]:
    info = vocabularies.get("lab_test", {}).get(lab.test)
    if info is None or info.min is None or info.max is None:
        return []
    if info.min <= lab.value <= info.max:
        return []
    unit = f" {info.unit}" if info.unit else ""
    return [
        Problem(
            f"{lab.test} {lab.value:g} is outside {info.min:g}–{info.max:g}{unit}",
            field=f"{path}.value",
            hint=f"give the value in {info.unit}" if info.unit else None,
        )
    ]


def _screening_range(screen: Screening, path: str, vocabularies: Vocabularies) -> list[Problem]:
    info = vocabularies.get("instrument", {}).get(screen.instrument)
    if info is None:
        return []
    problems: list[Problem] = []
    score = screen.score
    if score is not None and info.min is not None and info.max is not None and not info.min <= score <= info.max:
        problems.append(
            Problem(
                f"{screen.instrument} score {screen.score} is outside {info.min:g}–{info.max:g}",
                field=f"{path}.score",
            )
        )
    for sub in SUBSCORE_FIELDS:
        if getattr(screen, sub) is not None and sub not in info.subscores:
            owners = sorted(code for code, c in vocabularies.get("instrument", {}).items() if sub in c.subscores)
            problems.append(
                Problem(
                    f"{sub} belongs to {' or '.join(owners) or 'no instrument'}, not {screen.instrument}",
                    field=f"{path}.{sub}",
                )
            )
    return problems


def _measurement_range(point: Measurement, path: str, vocabularies: Vocabularies) -> list[Problem]:
    info = vocabularies.get("outcome_measure", {}).get(point.instrument)
    if info is None or info.min is None or info.max is None or info.min <= point.score <= info.max:
        return []
    return [
        Problem(
            f"{point.instrument} score {point.score:g} is outside {info.min:g}–{info.max:g}",
            field=f"{path}.score",
        )
    ]
