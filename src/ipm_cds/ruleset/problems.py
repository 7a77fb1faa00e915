"""Problems for rule authors: pydantic validation errors as file:line:col problems, and did-you-mean hints.

Every model of a rule file, a catalogue or a manifest is validated by pydantic; this turns its errors into
:class:`~ipm_cds.errors.Problem` objects at the place in the YAML they are about, with the message a rule
author needs (an unknown field with the nearest known one, a missing value after ``key:``, a version that
is not MAJOR.MINOR.PATCH, a number that wants quoting).
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Problem
from .model import SEMVER
from .yamlsrc import Path_, Positions

__all__ = ["did_you_mean", "pydantic_problems"]


def did_you_mean(word: str, options: Any) -> str | None:
    close = get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model found at ``loc`` inside ``model``, if the path leads to one."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        candidates = [a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type)]
        models = [a for a in candidates if issubclass(a, BaseModel)]
        if not models:  # list[Model] | None and the like: one level further down
            inner = [x for a in getattr(annotation, "__args__", ()) for x in getattr(a, "__args__", (a,))]
            models = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return None
        current = models[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at ``loc`` inside ``model`` (for did-you-mean on unknown fields)."""
    found = _model_at(model, loc)
    return list(found.model_fields) if found is not None else []


def _is_version_error(err: Any) -> bool:
    """A version field given as a number (``version: 1.1``) or as a string that is not semver."""
    if err["type"] == "string_pattern_mismatch":
        return bool(err.get("ctx", {}).get("pattern") == SEMVER.pattern)
    loc = err["loc"]
    return bool(
        err["type"] == "string_type" and loc and loc[-1] == "version" and isinstance(err.get("input"), int | float)
    )


def _semver_like(value: Any) -> str:
    """The semantic version a near miss means: ``1.1`` -> ``1.1.0``, ``2`` -> ``2.0.0``; else ``1.0.0``."""
    parts = str(value).strip().lstrip("vV").split(".")
    if 1 <= len(parts) <= 3 and all(p.isdigit() for p in parts):
        return ".".join(str(int(p)) for p in [*parts, "0", "0"][:3])
    return "1.0.0"


def pydantic_problems(
    exc: ValidationError, pos: Positions, prefix: Path_ = (), model: type[BaseModel] = BaseModel
) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        path = (*prefix, *loc)
        message = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
            fields = _fields_at(model, loc[:-1])
            hint = did_you_mean(str(loc[-1]), fields) if fields else None
            location = pos.at(path, key=True)
        elif err["type"] == "missing":
            message = f"missing required field {loc[-1]!r}"
            location = pos.at(path[:-1])
        elif err.get("input", ...) is None and loc and isinstance(loc[-1], str):
            # `status:` with nothing after it: YAML reads null, and pydantic's message would be about null's type
            message = f"a value is missing after '{loc[-1]}:'"
            location = pos.at(path)
            if loc[-1] == "version":
                hint = "a version has three numbers, e.g. 1.0.0"
            elif err["msg"].startswith("Input should be "):
                hint = "it " + err["msg"].removeprefix("Input ")
            else:
                hint = err["msg"].removeprefix("Value error, ")
        elif _is_version_error(err):
            where = ".".join(str(p) for p in loc)
            message = f"{where}: {err['input']!r} is not a semantic version MAJOR.MINOR.PATCH"
            location = pos.at(path)
            hint = f"a version has three numbers, e.g. {_semver_like(err['input'])}; no quotes needed"
        else:
            where = ".".join(str(p) for p in loc)
            message = f"{where}: {message}" if where else message
            location = pos.at(path)
            if err["type"] == "string_type" and isinstance(err.get("input"), int | float):
                hint = f'quote it: "{err["input"]}"'
            elif err["type"] == "literal_error" and loc and isinstance(loc[-1], str):
                owner = _model_at(model, loc[:-1])  # the field's own description says what each value means
                field = owner.model_fields.get(loc[-1]) if owner is not None else None
                hint = field.description if field is not None else None
        problems.append(Problem(message, location, hint=hint))
    return problems
