"""The rule IR: what rule files compile to, and what both backends run.

A rule is a conjunction of *patterns* (one fact each, bound to an alias, distinct facts for distinct
aliases), optional *blockers* (its ``unless`` clauses: each is the rule's own patterns plus one more),
and *conclusions*. Parameters appear as :class:`Param` until an engine binds a profile's values.
Rules are *stratified*: a rule runs only after every rule whose facts it negates has run, so negation
never depends on firing order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Literal

from ..errors import SourceLocation

Scalar = str | int | float | bool
Op = Literal["eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in", "present", "absent"]
ORDERING_OPS: frozenset[str] = frozenset({"lt", "lte", "gt", "gte"})


@dataclass(frozen=True, slots=True)
class Ref:
    """The value of ``field`` on the fact bound to ``alias`` (a join)."""

    alias: str
    field: str

    def __str__(self) -> str:
        return f"{self.alias}.{self.field}"


@dataclass(frozen=True, slots=True)
class Param:
    name: str

    def __str__(self) -> str:
        return f"param.{self.name}"


Operand = Scalar | tuple[Scalar, ...] | Ref | Param | None


@dataclass(frozen=True, slots=True)
class Test:
    """``field <op> operand`` on the pattern's own fact."""

    field: str
    op: Op
    operand: Operand
    location: SourceLocation | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one branch holds; each branch is a conjunction of tests."""

    branches: tuple[tuple[Test, ...], ...]
    location: SourceLocation | None = dataclasses.field(default=None, compare=False)


Node = Test | AnyOf


@dataclass(frozen=True, slots=True)
class Pattern:
    alias: str
    fact_type: str
    tests: tuple[Node, ...]
    location: SourceLocation | None = dataclasses.field(default=None, compare=False)

    def all_tests(self) -> list[Test]:
        out: list[Test] = []
        for node in self.tests:
            out.extend(t for b in node.branches for t in b) if isinstance(node, AnyOf) else out.append(node)
        return out

    def refs(self) -> set[str]:
        """Aliases this pattern joins to."""
        return {t.operand.alias for t in self.all_tests() if isinstance(t.operand, Ref)}

    def params(self) -> set[str]:
        return {t.operand.name for t in self.all_tests() if isinstance(t.operand, Param)}


AggregateFunction = Literal["latest", "earliest", "count"]


@dataclass(frozen=True, slots=True)
class Aggregate:
    """An aggregate over the facts a *selection* matches, computed once per evaluation before the rules
    that read it (so "the latest", "a newer one exists", "how many in a window" cost n log n, not n² or
    n⁴ joins).

    ``latest`` and ``earliest`` make one fact of type ``fact_type`` per selected fact: a copy of it with
    ``rank`` added, the dense rank of its ``order`` value within its ``by`` group (1 = most recent for
    ``latest``, oldest for ``earliest``). ``count`` makes one fact per ``by`` group (exactly one without
    ``by``, also when nothing is selected) with ``count`` (distinct values of ``distinct`` when given),
    ``total`` of the ``sum`` field, the ``listed`` values of the ``list`` field, and the most recent and oldest
    ``order`` values (``latest_<order>``, ``earliest_<order>``) and dates.
    """

    fact_type: str  # the type of the facts it makes, e.g. "lab@latest.3f2a9c1e"
    function: AggregateFunction
    selection: Pattern  # tests on the selected fact alone (no joins), of the source fact type
    by: tuple[str, ...]
    order: str | None  # a day-count field (days before as_of): smaller is more recent
    distinct: str | None = None
    sum: str | None = None
    list: str | None = None  # count: the distinct values of this field, sorted and joined by ", "
    location: SourceLocation | None = dataclasses.field(default=None, compare=False)

    @property
    def source_type(self) -> str:
        return self.selection.fact_type


def type_label(fact_type: str) -> str:
    """A fact type as a reader knows it: ``lab@latest.3f2a9c1e`` is "latest lab", ``procedure@count.…`` "count of
    procedure"; other types as they are."""
    source, at, made = fact_type.partition("@")
    if not at:
        return fact_type
    function = made.split(".", 1)[0]
    return f"count of {source}" if function == "count" else f"{function} {source}"


@dataclass(frozen=True, slots=True)
class Template:
    """Text with ``{alias.field}`` and ``{param.name}`` placeholders, parsed once."""

    source: str
    parts: tuple[str | Ref | Param, ...]


Value = Scalar | Ref


@dataclass(frozen=True, slots=True)
class Recommend:
    intervention: str
    target: tuple[tuple[str, Value], ...]
    rationale: Template


@dataclass(frozen=True, slots=True)
class Exclude:
    interventions: tuple[str | Ref, ...]  # a Ref names the intervention of a matched candidate
    elective_scope: bool
    region: Value | None
    severity: Literal["absolute", "relative", "unmet"]
    reason: Template


@dataclass(frozen=True, slots=True)
class Precaution:
    interventions: tuple[str | Ref, ...]
    elective_scope: bool
    region: Value | None
    text: Template


@dataclass(frozen=True, slots=True)
class Alert:
    code: str
    severity: Literal["critical", "warning", "info"]
    message: Template


@dataclass(frozen=True, slots=True)
class Refer:
    to: str
    urgency: Literal["emergency", "urgent", "soon", "routine"]
    reason: Template


@dataclass(frozen=True, slots=True)
class Derive:
    fact: str
    values: tuple[tuple[str, Value], ...]


@dataclass(frozen=True, slots=True)
class RedFlag:
    code: str
    message: Template


@dataclass(frozen=True, slots=True)
class AntithromboticHold:
    medication: str  # alias bound to a medication fact
    candidate: str  # alias bound to a candidate fact
    upgrade: bool  # the patient is at high bleeding risk: one category up (AC-UPGRADE-01)


Conclusion = Recommend | Exclude | Precaution | Alert | Refer | Derive | RedFlag | AntithromboticHold


@dataclass(frozen=True, slots=True)
class Blocker:
    """An ``unless`` clause: when ``pattern`` matches together with the rule's patterns, the rule's
    conclusions for those bindings do not stand."""

    index: int
    pattern: Pattern


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    version: str
    title: str
    criteria: tuple[str, ...]
    sources: tuple[str, ...]
    evidence_strength: str
    evidence_quality: str
    patterns: tuple[Pattern, ...]
    blockers: tuple[Blocker, ...]
    conclusions: tuple[Conclusion, ...]
    profiles: tuple[str, ...] | None
    effective: tuple[date | None, date | None] = (None, None)
    stratum: int = 0
    aggregates: tuple[Aggregate, ...] = ()  # the aggregates its patterns and unless clauses read
    location: SourceLocation | None = dataclasses.field(default=None, compare=False)
    # id@version, written once (it is read for every firing, trace entry and conclusion)
    ref: str = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref", f"{self.id}@{self.version}")

    @property
    def safety(self) -> bool:
        """Safety rules exclude, caution, alert or raise red flags; their errors fail closed."""
        return any(isinstance(c, Exclude | Precaution | Alert | RedFlag | AntithromboticHold) for c in self.conclusions)

    def input_patterns(self) -> list[Pattern]:
        """What the rule reads of the facts it was given, aggregates read through: each pattern and unless
        clause, a latest/earliest pattern as one on the selected fact type (its selection's tests and its own,
        without ``rank``), and each count's selection (its own tests are on the count). For tools that ask
        which facts and fields a rule reads (prefetch, thresholds, coverage)."""
        made = {a.fact_type: a for a in self.aggregates}
        out: list[Pattern] = []
        for pattern in (*self.patterns, *(b.pattern for b in self.blockers)):
            aggregate = made.get(pattern.fact_type)
            if aggregate is None:
                out.append(pattern)
            elif aggregate.function == "count":
                out.append(dataclasses.replace(aggregate.selection, alias=pattern.alias))
            else:
                own = tuple(t for t in pattern.tests if not (isinstance(t, Test) and t.field == "rank"))
                out.append(
                    dataclasses.replace(pattern, fact_type=aggregate.source_type, tests=aggregate.selection.tests + own)
                )
        return out

    def params(self) -> set[str]:
        out: set[str] = set()
        for pattern in self.patterns + tuple(b.pattern for b in self.blockers):
            out |= pattern.params()
        for aggregate in self.aggregates:
            out |= aggregate.selection.params()
        for conclusion in self.conclusions:
            for template in _templates(conclusion):
                out.update(p.name for p in template.parts if isinstance(p, Param))
        return out


def _templates(conclusion: Conclusion) -> list[Template]:
    if isinstance(conclusion, Recommend):
        return [conclusion.rationale]
    if isinstance(conclusion, Exclude):
        return [conclusion.reason]
    if isinstance(conclusion, Precaution):
        return [conclusion.text]
    if isinstance(conclusion, Alert | RedFlag):
        return [conclusion.message]
    if isinstance(conclusion, Refer):
        return [conclusion.reason]
    return []
