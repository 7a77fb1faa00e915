"""What every part of the FHIR reader shares: the result types, the limits, the helpers on validated
resources (typed ``Any``: ``fhir.resources`` models) and the records the reader collects."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from ...errors import PatientDataError, Problem
from ...model.patient import MAX_ITEMS, PatientCase

_T = TypeVar("_T")


UnmappedKind = Literal[
    "unsupported_resource",  # a resource type ipm-cds does not read (Encounter, Practitioner, ...)
    "unknown_code",  # no code of the resource is in the maps
    "ambiguous_code",  # the codes map to more than one patient-model code
    "not_current",  # status says it does not apply now (stopped, refuted, entered in error, resolved ...)
    "incomplete",  # mapped code, but something the patient model needs is missing (date, region, link ...)
    "unknown_unit",  # a quantity in a unit the map does not convert
    "superseded",  # an older value of a single-valued field, replaced by a newer one
    "partial",  # the resource was mapped, but one of its elements was not (e.g. a dose not computable)
    "older_left_out",  # an older lab, procedure, screen, exam or imaging finding beyond the list's cap
    "duplicate",  # the same condition, red flag or allergy as another resource, in a list beyond its cap
    "not_read",  # a recognised code (sickle cell disease, hospice care ...) for something no rule reads
]

MAX_RESOURCES = 5000
"""Upper bound on the resources read from one input (keeps one request's work bounded)."""

KEEP_RECENT = MAX_ITEMS
"""Most items of one dated list the reader keeps (the patient model's cap on every list, 100).

A long record holds more: years of monthly INRs, weekly injections. For labs (by test), prior procedures
(by kind and region), screenings (by instrument), examination findings (by test) and imaging findings
(by finding), the reader keeps the most recent items of each kind and shares the cap out between kinds:
each kind keeps at least ``KEEP_RECENT // kinds`` of its most recent (20 per lab test when all five
are recorded), a kind with fewer keeps them all, and what they leave goes to the others. Every item
left out is reported (``older_left_out``, saying how many of that kind were left out and which are
read), never dropped silently; an undated item counts as older than every dated one."""


class FhirInputError(PatientDataError):
    """The FHIR input is not valid FHIR R4, mixes patients, or maps to an invalid patient document."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        super().__init__(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        self.message = f"invalid FHIR input: {first}" + (f" [and {more} more]" if more else "")
        self.args = (self.message,)


@dataclass(frozen=True, slots=True)
class Unmapped:
    """Something in the input that did not become part of the patient document, and why."""

    resource: str  # "Observation/obs-1" (or "entry[3]" when the resource has no id)
    kind: UnmappedKind
    reason: str
    code: str | None = None  # "system|code" of the code that could not be mapped, when there is one

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.resource}{code}: {self.kind}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        out = {"resource": self.resource, "kind": self.kind, "reason": self.reason}
        if self.code:
            out["code"] = self.code
        return out


@dataclass(frozen=True)
class FhirMapping:
    """The result of reading FHIR: the patient document, and what was not mapped."""

    patient: PatientCase
    unmapped: tuple[Unmapped, ...]
    sources: Mapping[str, str] = field(default_factory=dict)  # patient-model path -> resource reference
    patient_reference: str | None = None

    def report(self) -> str:
        """Every unmapped item, one per line."""
        return "\n".join(str(u) for u in self.unmapped)

    def resource_of(self, path: str) -> str | None:
        """The resource a patient-model path (``pain[0].nrs``) was read from: the longest known prefix."""
        best: str | None = None
        best_len = -1
        for prefix, ref in self.sources.items():
            if (path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")) and len(
                prefix
            ) > best_len:
                best, best_len = ref, len(prefix)
        return best


def _codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) of every coding of a CodeableConcept (or of a list of Codings)."""
    if concept is None:
        return []
    codings = concept if isinstance(concept, list) else (concept.coding or [])
    return [(str(c.system or ""), str(c.code)) for c in codings if c.code is not None]


def _code_text(codings: Sequence[tuple[str, str]]) -> str | None:
    return ", ".join(f"{s}|{c}" for s, c in codings) or None


def _to_date(value: Any) -> date | None:
    """A FHIR date/dateTime as a calendar date; a partial date (year or year-month) is None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return date.fromisoformat(value)
    return None


def _day_text(value: Any) -> str | None:
    """A FHIR date/dateTime as the patient model takes it: ``YYYY-MM-DD``, or a partial date kept partial
    (``YYYY`` or ``YYYY-MM``, which the patient model reads as the least safe day of its period and marks so)."""
    day = _to_date(value)
    if day is not None:
        return day.isoformat()
    if isinstance(value, str) and re.fullmatch(r"\d{4}(-\d{2})?", value):
        return value
    return None


def _last_day(text: str) -> date:
    """The last day a full or partial date can mean (for ordering records by recency)."""
    if len(text) == 10:
        return date.fromisoformat(text)
    year, month = int(text[:4]), int(text[5:7]) if len(text) == 7 else 12
    following = date(year + month // 12, month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


def _number(value: Decimal | int | float) -> int | float:
    """An integral value as int, anything else as float (the patient model decides what it accepts)."""
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


def _ref_key(reference: Any) -> str | None:
    return str(reference.reference) if reference is not None and reference.reference else None


def _shares(counts: Mapping[tuple[str, ...], int], cap: int) -> dict[tuple[str, ...], int]:
    """How many items each kind keeps so that together they keep at most ``cap``: every kind keeps
    all of its items or an even share of what the smaller kinds leave, whichever is fewer (max-min fair)."""
    if sum(counts.values()) <= cap:
        return dict(counts)
    shares: dict[tuple[str, ...], int] = {}
    remaining = cap
    pending = sorted(counts, key=lambda k: (counts[k], k))
    while pending:
        even = remaining // len(pending)
        smallest = pending[0]
        if counts[smallest] <= even:
            shares[smallest] = counts[smallest]
            remaining -= counts[smallest]
            pending.pop(0)
            continue
        extra = remaining - even * len(pending)
        for i, kind in enumerate(sorted(pending)):
            shares[kind] = even + (1 if i < extra else 0)
        break
    return shares


@dataclass
class _Value:
    value: Any
    when: date | None
    ref: str


@dataclass
class _Pain:
    ref: str
    region: str
    character: str
    laterality: str | None
    onset: str | None  # YYYY-MM-DD, or a partial YYYY / YYYY-MM
    is_index: bool
    fields: dict[str, list[_Value]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class _Proc:
    ref: str
    doc: dict[str, Any]
    fields: dict[str, list[_Value]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class _Screen:
    ref: str
    instrument: str
    score: Any
    when: date | None
    links: set[str]
    item9: _Value | None = None
    distress: _Value | None = None
    category: str | None = None  # STarT Back recorded as its risk category only (no total score)


@dataclass
class _Pending:
    """An observation value that belongs to another item (a pain complaint, a procedure, a screen)."""

    ref: str
    target: str
    value: Any
    when: date | None
    links: set[str]
    code: str | None


_PAIN_FIELDS = {
    "pain.nrs": "nrs",
    "pain.odi_pct": "odi_pct",
    "pain.ndi": "ndi",
    "pain.rmdq": "rmdq",
    "pain.worsening": "worsening",
    "pain.duration_weeks": "duration_weeks",
}
_DATED_LISTS = {"labs": "test", "exam": "test", "imaging": "finding"}  # list -> the field naming its kind
_UNDATED_LISTS = ("conditions", "red_flags", "allergies")  # collapsed to distinct entries beyond the cap
_SUBJECT_FIELDS = ("subject", "patient")
_CONDITION_INACTIVE = {"inactive", "remission", "resolved"}
_OBSERVATION_USABLE = {"final", "amended", "corrected", "preliminary"}
