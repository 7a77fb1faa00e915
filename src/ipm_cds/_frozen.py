"""Hashing frozen pydantic models that hold lists and dicts.

pydantic hashes a frozen model by its field values, which raises ``TypeError`` on a list or a dict. The
models of ipm-cds (the patient, the assessment, the explanation) define ``__hash__`` as
``hash(hashable(self))``: the same values as nested tuples and frozensets, equal exactly when the models
are equal, so that equal models hash equal.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["hashable"]


def hashable(value: Any) -> Any:
    """``value`` as nested tuples and frozensets (a model as its type and field values)."""
    if isinstance(value, BaseModel):
        return (type(value), tuple(hashable(v) for v in value.__dict__.values()))
    if isinstance(value, list | tuple):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, hashable(v)) for k, v in value.items())
    if isinstance(value, set | frozenset):
        return frozenset(hashable(v) for v in value)
    return value
