"""Aggregates: "the latest", "a newer one exists", "the n-th most recent", "how many in a window".

Each :class:`~ipm_cds.ruleset.ir.Aggregate` of a program is computed once per evaluation, by the driver,
before the first stratum that reads it, and identically for both backends: its facts are ordinary facts
that the rules then match. The cost is one pass over the facts plus a sort per group (n log n), where the
same question written as a join over pairs or tuples of facts costs n², n⁴.

Semantics, chosen to equal the pairwise joins they replace:

* ``latest`` / ``earliest`` copy every selected fact, adding ``rank``: the dense rank of its ``order``
  value among the dated facts of its ``by`` group (facts on the same day share a rank; 1 is the most recent
  for ``latest``, the oldest for ``earliest``). A fact without an ``order`` value, and a fact whose
  selection cannot be decided (a field the selection tests is missing), get a copy without ``rank``: no
  rule matches it, and the missing-data search reports, for every rule that could, what its rank waits
  for. A rule that fires on a ranked copy reports the missing fields of the facts that may rank before it.
* ``count`` makes one fact per ``by`` group (exactly one without ``by``, also when nothing is selected):
  ``count`` (of distinct ``distinct`` values when given; a fact without that value counts on its own),
  ``total`` (the sum of ``sum``; absent when a member lacks the value, so that a rule testing it is
  undecided and reports the value missing, never a smaller sum), ``listed`` (the distinct values of
  ``list``, sorted, joined by ", "), and the smallest and largest ``order`` values with their dates.
* A selected fact without a ``by`` value is grouped with the others that lack it; the fact made for that
  group lacks the value too, so a rule that joins on it is undecided, and reports what its facts lack.
* For a count, a fact of undecided selection is kept beside the counts it could add to, and the driver
  reports its missing field for a rule only when that could change the rule's answer
  (:func:`could_change`). When no count of its group exists, it makes one without ``count`` (every
  ``count_of`` pattern requires ``count``, so no rule matches it), and the missing-data search reports,
  for every rule that could, what that count waits for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.facts.normalise import SORTED_JSON, Fact, Scalar, make_fact
from ..ruleset import ir
from .match import Unknown, eval_pattern

Group = tuple[Scalar | None, ...]
_NUMBER = (int, float)  # (isinstance with a tuple: the same test as ``int | float``, cheaper in 3.11)
GroupKeys = dict[tuple[tuple[type, ...], Group], str]


@dataclass
class Aggregated:
    """What the aggregates of one evaluation made, and what fed them (for the trace, explain and missing data)."""

    facts: list[Fact] = field(default_factory=list)
    members: dict[str, tuple[Fact, ...]] = field(default_factory=dict)  # made fact key -> the facts that fed it
    sources: dict[str, Fact] = field(default_factory=dict)  # copy key -> the fact it copies
    # count key -> the missing fields of facts whose selection is undecided and that could join its group
    undecided: dict[str, list[Unknown]] = field(default_factory=dict)
    # count key of a group that only facts of undecided selection would make (it has no ``count``, so no rule
    # matches it) -> what its count waits for
    pending: dict[str, list[Unknown]] = field(default_factory=dict)
    # ranked copy key -> the missing fields of facts of its group that may rank before it (undated, or of
    # undecided selection): a rule that fires on the copy waits for them
    uncertain: dict[str, list[Unknown]] = field(default_factory=dict)
    # copy key of a fact without a rank (undated, or of undecided selection) -> what its rank waits for
    unranked: dict[str, list[Unknown]] = field(default_factory=dict)
    # made fact type -> its fields that stand for a field of the selected facts (rank -> days_since, total -> ...)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    # a memo of groups' JSON (their order), shared by a program's evaluations
    group_keys: GroupKeys | None = field(default=None, compare=False, repr=False)

    def add(self, other: Aggregated) -> None:
        """Add what another computation made (copies of its containers: ``other`` may be reused)."""
        self.facts.extend(other.facts)
        self.members.update(other.members)  # (tuples: immutable)
        if other.sources:
            self.sources.update(other.sources)
        if other.undecided or other.pending or other.uncertain or other.unranked:  # (rarely: most add nothing)
            for mine, theirs in (
                (self.undecided, other.undecided),
                (self.pending, other.pending),
                (self.uncertain, other.uncertain),
                (self.unranked, other.unranked),
            ):
                mine.update((key, list(value)) for key, value in theirs.items())
        # shared, not copied: a fields mapping is never changed in place, only replaced (compute assigns new ones)
        self.fields.update(other.fields)

    def translate(self, unknown: Unknown) -> list[Unknown]:
        """A field missing on a made fact, as the fields missing on the facts it was made from."""
        if unknown.field == "rank" and unknown.fact.key in self.unranked:
            return list(self.unranked[unknown.fact.key])
        if unknown.field == "count" and unknown.fact.key in self.pending:
            return list(self.pending[unknown.fact.key])
        name = self.fields.get(unknown.fact.type, {}).get(unknown.field, unknown.field)
        source = self.sources.get(unknown.fact.key)
        if source is not None:  # a copy lacks what its fact lacks
            return [Unknown(source, name)]
        members = self.members.get(unknown.fact.key)
        if members is not None:  # a count lacks a group value or a total when its facts lack them
            return [Unknown(m, name) for m in members if name not in m.values]
        return [unknown]


Selection = Callable[[Fact, Any], "tuple[bool | None, list[Unknown]] | None"]


def selection_of(aggregate: ir.Aggregate) -> Selection:
    """The selection as a plain function (what :func:`compute` calls when it is given none)."""

    def select(fact: Fact, env: Any) -> tuple[bool | None, list[Unknown]] | None:
        unknowns: list[Unknown] = []
        truth = eval_pattern(aggregate.selection, fact, {}, unknowns)
        return None if truth is False else (truth, unknowns)

    return select


Prefilter = tuple[str, frozenset[Scalar]]


def prefilter(aggregate: ir.Aggregate) -> Prefilter | None:
    """A field and the values the selection's own conjunction requires it to equal (``eq`` or ``in`` a constant),
    the narrowest such test; None when it has none. A fact whose value is another is refuted by that test, so
    by the whole conjunction (false and anything is false, also three-valued); a fact without the field is
    undecided, not refuted: :class:`FieldIndex` keeps it."""
    best: Prefilter | None = None
    for test in aggregate.selection.tests:
        if not isinstance(test, ir.Test) or test.op not in ("eq", "in") or test.operand is None:
            continue
        if isinstance(test.operand, ir.Ref | ir.Param):
            continue
        allowed = frozenset(test.operand if isinstance(test.operand, tuple) else (test.operand,))
        if best is None or len(allowed) < len(best[1]):
            best = (test.field, allowed)
    return best


class FieldIndex:
    """The facts of one evaluation by type, narrowed on demand to those a :func:`prefilter` does not refute,
    in their original order (what :func:`compute` makes does not depend on which aggregates were narrowed)."""

    def __init__(self, by_type: Mapping[str, Sequence[Fact]]) -> None:
        self.by_type = by_type
        # (fact type, field) -> value -> positions of the facts with it; the positions of facts without it
        self._index: dict[tuple[str, str], tuple[dict[Scalar, list[int]], list[int]]] = {}

    def facts(self, fact_type: str, gate: Prefilter | None) -> Sequence[Fact]:
        facts = self.by_type.get(fact_type, ())
        if gate is None or not facts:
            return facts
        name, allowed = gate
        if len(facts) == 1:  # (most records: one fact of a type)
            value = facts[0].values.get(name)
            return facts if value is None or value in allowed else ()
        if len(facts) < 8:  # too few to be worth an index
            return [f for f in facts if (value := f.values.get(name)) is None or value in allowed]
        entry = self._index.get((fact_type, name))
        if entry is None:
            by_value: dict[Scalar, list[int]] = {}
            lacking: list[int] = []
            for i, fact in enumerate(facts):
                value = fact.values.get(name)
                if value is None:
                    lacking.append(i)
                else:
                    by_value.setdefault(value, []).append(i)
            entry = self._index[(fact_type, name)] = (by_value, lacking)
        by_value, lacking = entry
        positions = [i for value in allowed for i in by_value.get(value, ())]
        positions += lacking
        positions.sort()
        return [facts[i] for i in positions]


def compute(
    aggregate: ir.Aggregate,
    facts: Sequence[Fact],
    out: Aggregated,
    select: Selection | None = None,
    nothing: Sequence[Fact] | None = None,
) -> None:
    """Add the facts ``aggregate`` makes from ``facts`` (those of its source type are read) to ``out``.
    ``select``: the selection compiled (``compiled.selection_check``), else it is interpreted. ``nothing``: the
    facts it makes from no facts, when the caller has them and ``out`` already holds their members and fields
    (the driver's plan): when no fact is selected, nor undecided, they are what it makes, and are added as
    they are."""
    check = select or selection_of(aggregate)
    selected: list[Fact] = []
    undecided: list[tuple[Fact, list[Unknown]]] = []
    source = aggregate.selection.fact_type  # (the source type, without a property's call)
    for fact in facts:
        if fact.type != source:
            continue
        result = check(fact, ())
        if result is None:
            continue
        if result[0] is True:
            selected.append(fact)
        else:
            undecided.append((fact, result[1]))
    if nothing is not None and not selected and not undecided:
        out.facts.extend(nothing)
        return
    by = aggregate.by
    groups: dict[Group, list[Fact]]
    if by:
        groups = {}
        for fact in selected:
            groups.setdefault(tuple(map(fact.values.get, by)), []).append(fact)
    else:  # (one group; a count makes it also from none)
        groups = {(): selected} if selected or aggregate.function == "count" else {}
    if aggregate.function != "count":
        _rank(aggregate, groups, undecided, out)
        return
    made = _count(aggregate, groups, out)
    if not undecided:
        return
    alone: dict[Group, list[Unknown]] = {}
    for fact, unknowns in undecided:  # beside every count it could add to
        mine = tuple(fact.values.get(b) for b in aggregate.by)
        for _group, fact_made in made:
            if _may_join(mine, _group):
                out.undecided.setdefault(fact_made.key, []).extend(unknowns)
        if mine not in groups:  # it could make a group of its own
            alone.setdefault(mine, []).extend(unknowns)
    for i, group in enumerate(_group_order(alone, out.group_keys)):
        values = {b: v for b, v in zip(aggregate.by, group, strict=True) if v is not None}
        where = ", ".join(f"{b}={v}" for b, v in values.items())
        key = f"{aggregate.fact_type}#pending{i}"
        label = f"count of {aggregate.source_type}{f'[{where}]' if where else ''} undecided"
        out.facts.append(make_fact(aggregate.fact_type, key, values, label, derived=True))
        out.members[key] = ()
        out.pending[key] = alone[group]


def _may_precede(aggregate: ir.Aggregate, fact: Fact, other: Fact) -> bool:
    """Whether ``fact`` could rank at or before ``other`` (an unknown date could be any date)."""
    assert aggregate.order is not None
    mine, theirs = fact.values.get(aggregate.order), other.values.get(aggregate.order)
    if not isinstance(mine, _NUMBER) or not isinstance(theirs, _NUMBER):
        return True
    return mine <= theirs if aggregate.function == "latest" else mine >= theirs


def could_change(pattern: ir.Pattern, fact: Fact, extra: int) -> bool:
    """Whether ``extra`` facts of undecided selection could change what ``pattern`` says of the count ``fact``:
    whether its tests on ``count`` answer otherwise with ``extra`` more."""
    tests = [
        t for t in pattern.all_tests() if t.field == "count" and t.op != "present" and not isinstance(t.operand, ir.Ref)
    ]
    if not tests:
        return False
    count = fact.values.get("count")
    if not isinstance(count, int):
        return True
    more = Fact(fact.type, fact.key, {**fact.values, "count": count + extra}, fact.label, fact.derived)
    return any(
        eval_pattern(ir.Pattern("_", fact.type, (t,)), fact, {}, None)
        != eval_pattern(ir.Pattern("_", fact.type, (t,)), more, {}, None)
        for t in tests
    )


_GROUP_KEYS = 4096  # the most group texts a memo keeps


def _group_order(groups: Iterable[Group], memo: GroupKeys | None = None) -> list[Group]:
    """Groups in a fixed order (by their JSON), whatever the order of the facts that made them. ``memo``: the
    JSON of groups already seen (records share most groups: a region, a kind), kept by the caller."""
    ordered = list(groups)
    if len(ordered) < 2:
        return ordered  # (sorted would still write the JSON of the one key)
    if memo is None:
        return sorted(ordered, key=lambda g: SORTED_JSON(list(g)))

    def text(group: Group) -> str:
        typed = (tuple(map(type, group)), group)  # (1, 1.0 and True are equal, and written differently)
        found = memo.get(typed)
        if found is None:
            if len(memo) >= _GROUP_KEYS:
                memo.clear()  # bounded (threads: a lost entry is written again)
            found = memo[typed] = SORTED_JSON(list(group))
        return found

    return sorted(ordered, key=text)


def _rank(
    aggregate: ir.Aggregate,
    groups: Mapping[Group, list[Fact]],
    undecided: Sequence[tuple[Fact, list[Unknown]]],
    out: Aggregated,
) -> None:
    order = aggregate.order
    assert order is not None, "latest and earliest rank by a day count (checked when the rule compiled)"
    if aggregate.fact_type not in out.fields:  # (as in _count)
        out.fields[aggregate.fact_type] = {"rank": order}
    word = aggregate.function
    fact_type = aggregate.fact_type
    if not undecided and len(groups) == 1:
        members = tuple(next(iter(groups.values())))
        if len(members) == 1:  # (most: one fact, ranked first, or undated) what the general case below makes
            fact = members[0]
            key = f"{fact_type}:{fact.key}"
            if isinstance(fact.values.get(order), _NUMBER):
                label = f"{fact.label}, {word} #1 of 1"
                out.facts.append(make_fact(fact_type, key, {**fact.values, "rank": 1}, label, derived=fact.derived))
            else:
                label = f"{fact.label}, undated, {word} rank unknown"
                out.facts.append(make_fact(fact_type, key, dict(fact.values), label, derived=fact.derived))
                out.unranked[key] = [Unknown(fact, order)]
            out.members[key] = members
            out.sources[key] = fact
            return
    pending: dict[Group, list[tuple[Fact, list[Unknown]]]] = {}  # facts without a rank, by group
    for fact, unknowns in undecided:
        pending.setdefault(tuple(fact.values.get(b) for b in aggregate.by), []).append((fact, unknowns))
    reverse = word == "earliest"
    for group in _group_order({*groups, *pending} if pending else groups, out.group_keys):
        members = tuple(groups.get(group, ()))
        # one pass over the members (loops, not comprehensions): the dated ones with their values, the distinct
        # values (the first of equal ones, as a set keeps it), the undated ones
        dated: list[tuple[Fact, Scalar]] = []
        days_seen: set[Scalar] = set()
        unranked: list[tuple[Fact, list[Unknown]]] = []
        for fact in members:
            value = fact.values.get(order)
            if isinstance(value, _NUMBER):
                dated.append((fact, value))
                days_seen.add(value)
            else:
                unranked.append((fact, [Unknown(fact, order)]))
        # facts of this group, or of a group not known, that may rank before a ranked fact
        maybe_before = unranked
        if pending:
            unranked += pending.get(group, [])
            maybe_before = unranked + [
                item for g, items in pending.items() if g != group and _may_join(g, group) for item in items
            ]
        days = sorted(days_seen, reverse=reverse)
        rank_of = dict(zip(days, range(1, len(days) + 1), strict=True))
        size = len(members)
        for fact, value in dated:
            key = f"{fact_type}:{fact.key}"
            rank = rank_of[value]
            if maybe_before:
                before = [u for f, unknowns in maybe_before if _may_precede(aggregate, f, fact) for u in unknowns]
                if before:
                    out.uncertain[key] = before
            out.facts.append(
                make_fact(fact_type, key, {**fact.values, "rank": rank}, f"{fact.label}, {word} #{rank} of {size}",
                          derived=fact.derived)
            )  # fmt: skip
            out.members[key] = members
            out.sources[key] = fact
        for fact, unknowns in unranked:  # no rank: every condition on its rank waits for what it lacks
            key = f"{aggregate.fact_type}:{fact.key}"
            selected = fact in members
            label = f"{fact.label}, {'undated' if selected else 'not known to be selected'}, {word} rank unknown"
            out.facts.append(make_fact(aggregate.fact_type, key, dict(fact.values), label, derived=fact.derived))
            out.members[key] = members
            out.sources[key] = fact
            out.unranked[key] = unknowns


def _may_join(one: Group, other: Group) -> bool:
    """Whether a fact of group ``one`` could belong to ``other`` (a missing value could be any)."""
    return all(a is None or a == b for a, b in zip(one, other, strict=True))


def _count(aggregate: ir.Aggregate, groups: Mapping[Group, list[Fact]], out: Aggregated) -> list[tuple[Group, Fact]]:
    order = aggregate.order
    fact_type, by, distinct = aggregate.fact_type, aggregate.by, aggregate.distinct
    if fact_type not in out.fields:  # (the driver's plan has put it there already: the same mapping)
        out.fields[fact_type] = {
            name: source for name, source in (("total", aggregate.sum), ("listed", aggregate.list)) if source
        }
    made: list[tuple[Group, Fact]] = []
    head = f"count of {aggregate.selection.fact_type}"
    if order is not None:
        latest, earliest = f"latest_{order}", f"earliest_{order}"
    # (most counts have one group: nothing to order)
    for i, group in enumerate(_group_order(groups, out.group_keys) if len(groups) > 1 else groups):
        members = tuple(groups[group])
        values: dict[str, Scalar] = {}
        label = head
        if group:
            # (the group's known values, before the counts join them; loops, not comprehensions: most groups
            # have one value)
            shown: list[str] = []
            for b, v in zip(by, group, strict=True):
                if v is not None:
                    values[b] = v
                    shown.append(f"{b}={v}")
            if shown:
                label = f"{head}[{', '.join(shown)}]"
        if distinct is None:
            values["count"] = len(members)
        else:
            known = {f.values[distinct] for f in members if distinct in f.values}
            values["count"] = len(known) + sum(1 for f in members if distinct not in f.values)
        if aggregate.sum is not None and all(aggregate.sum in f.values for f in members):
            values["total"] = round(sum(float(f.values[aggregate.sum]) for f in members), 6) + 0.0
        if aggregate.list is not None:
            listed = {str(f.values[aggregate.list]) for f in members if aggregate.list in f.values}
            values["listed"] = ", ".join(sorted(listed))
        if order is not None and members:
            # the first dated fact with the smallest and the first with the largest value (as min and max give)
            newest = oldest = None
            # (int | float, not a float: compiled with mypyc, a variable inferred float turns an int into one, and
            # "earliest_days_since": 521 would be written 521.0)
            low: int | float = 0
            high: int | float = 0
            for f in members:
                value = f.values.get(order)
                if not isinstance(value, _NUMBER):
                    continue
                if newest is None:
                    newest = oldest = f
                    low = high = value
                elif value < low:
                    newest, low = f, value
                elif value > high:
                    oldest, high = f, value
            if newest is not None and oldest is not None:
                values[latest] = low
                values[earliest] = high
                if "date" in newest.values and "date" in oldest.values:
                    values["latest_date"] = newest.values["date"]
                    values["earliest_date"] = oldest.values["date"]
        key = f"{fact_type}#{i}"
        # Derived: its fields are computed; what its facts lack is found through Aggregated.translate.
        fact = make_fact(fact_type, key, values, f"{label} = {values['count']}", derived=True)
        out.facts.append(fact)
        out.members[key] = members
        made.append((group, fact))
    return made
