"""Run a program over a patient's facts, stratum by stratum, whatever the backend.

The driver owns everything both backends must do identically: what a firing derives (``derive``
conclusions and the ``candidate`` fact of every recommendation), which firings an ``unless`` clause
blocks, the firing cap, and the search for missing data. Backends only match and fire.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import date

from ..errors import EvaluationError, FiringLimitError, IpmCdsError
from ..model.facts.normalise import SORTED_JSON, Fact, Scalar, make_fact
from ..ruleset import ir
from .aggregates import Aggregated, FieldIndex, Prefilter, Selection, compute, could_change, prefilter
from .base import Backend
from .compiled import compile_program, selection_check
from .gates import Gate, GateIndex
from .match import Truth, Unknown, eval_pattern, index_by_type
from .program import ExecRule, Program

DEFAULT_FIRING_CAP = 20_000
Signature = tuple[tuple[str, str], ...]  # (alias, fact key) for each of a rule's own patterns


@dataclass(frozen=True, slots=True)
class Firing:
    rule: ir.Rule
    bindings: Mapping[str, Fact]
    signature: Signature


@dataclass
class Run:
    """Everything an evaluation produced before resolution."""

    firings: list[Firing] = field(default_factory=list)
    blocked: dict[tuple[str, Signature], set[int]] = field(default_factory=dict)
    facts: list[Fact] = field(default_factory=list)
    unknown_blockers: dict[tuple[str, Signature], list[Unknown]] = field(default_factory=dict)
    not_in_effect: set[str] = field(default_factory=set)  # rule refs outside their effective period
    derived_by: dict[str, list[Firing]] = field(default_factory=dict)  # derived fact key -> firings that made it
    missing: dict[str, list[Unknown]] = field(default_factory=dict)  # rule ref -> unknown fields
    # rule ref -> candidate facts bound in combinations the rule could not decide (safety rules that target
    # the candidate they match concern only those candidates)
    undecided_candidates: dict[str, list[Fact]] = field(default_factory=dict)
    aggregated: Aggregated = field(default_factory=Aggregated)  # what the aggregates made, and from what

    def is_blocked(self, firing: Firing) -> bool:
        return (firing.rule.id, firing.signature) in self.blocked

    def stands_for(self, fact: Fact, fact_type: str) -> tuple[Fact, ...]:
        """The facts of ``fact_type`` a bound fact stands for: itself, or, for a count over that type, the
        facts that fed it (an antithrombotic hold bound to a count of candidates speaks for each of them)."""
        if fact.type == fact_type:
            return (fact,)
        members = tuple(f for f in self.aggregated.members.get(fact.key, ()) if f.type == fact_type)
        if not members:  # a conclusion bound to a count it could not trace back: fail closed, never drop it
            raise EvaluationError(f"{fact.label} stands for no {fact_type} fact", hint="report this as a bug")
        return members


def _signature(rule: ir.Rule, bound: Mapping[str, Fact]) -> Signature:
    patterns = rule.patterns
    if len(patterns) == 1:  # (most rules: one or two patterns, without a generator's frame)
        alias = patterns[0].alias
        return ((alias, bound[alias].key),)
    if len(patterns) == 2:
        first, second = patterns[0].alias, patterns[1].alias
        return ((first, bound[first].key), (second, bound[second].key))
    return tuple((p.alias, bound[p.alias].key) for p in patterns)


# A firing is made for each rule that fires (about 20 a record): through its slots, as make_fact makes facts,
# rather than the frozen dataclass's __init__ (an object.__setattr__ per field)
_SET_RULE, _SET_BINDINGS, _SET_SIGNATURE = (getattr(Firing, n).__set__ for n in ("rule", "bindings", "signature"))
if tuple(f.name for f in dataclass_fields(Firing)) != ("rule", "bindings", "signature"):  # pragma: no cover
    raise TypeError("the driver sets every field of Firing: a new one must be set in _firing too")


def _firing(rule: ir.Rule, bindings: Mapping[str, Fact], signature: Signature) -> Firing:
    """``Firing(rule, bindings, signature)``, the same object."""
    firing = object.__new__(Firing)
    _SET_RULE(firing, rule)
    _SET_BINDINGS(firing, bindings)
    _SET_SIGNATURE(firing, signature)
    return firing


def resolve_value(value: ir.Value, bound: Mapping[str, Fact]) -> Scalar | None:
    if isinstance(value, ir.Ref):
        return bound[value.alias].values.get(value.field)
    return value


_DerivedKey = tuple[str, tuple[tuple[str, type, Scalar], ...]]
DerivedMemo = dict[_DerivedKey, Fact]
_DERIVED_MEMO_SIZE = 4096


def derived_memo(program: Program) -> DerivedMemo:
    """The program's memo of recently derived facts (one per program, so per engine: no module state)."""
    memo = program.cache.setdefault("derived_facts", {})
    assert isinstance(memo, dict)
    return memo


def derived_fact(type_name: str, values: Mapping[str, Scalar | None], memo: DerivedMemo | None = None) -> Fact:
    """The derived fact of this type and content. Its key is a digest of the content, so equal content gives
    an equal fact: with a ``memo``, recently made ones are reused (a fact is immutable), which spares the
    digest and label."""
    # the value's type is part of the key: 1, 1.0 and True are equal (and hash alike) but are written differently
    cache_key = (type_name, tuple((k, type(v), v) for k, v in sorted(values.items()) if v is not None))
    return _derived_fact(cache_key, values, memo)


def _derived_fact(cache_key: _DerivedKey, values: Mapping[str, Scalar | None], memo: DerivedMemo | None) -> Fact:
    """:func:`derived_fact`, its memo's key made (the type, and the values by name, with their types, not None)."""
    type_name = cache_key[0]
    if memo is not None:
        fact = memo.get(cache_key)
        if fact is not None:
            return fact
    compact = {k: v for k, v in sorted(values.items()) if v is not None}
    digest = hashlib.sha256(SORTED_JSON([type_name, compact]).encode()).hexdigest()[:12]
    label = f"{type_name}[{', '.join(f'{k}={v}' for k, v in compact.items())}]"
    fact = make_fact(type_name, f"{type_name}:{digest}", compact, label, derived=True)
    if memo is not None:
        if len(memo) >= _DERIVED_MEMO_SIZE:
            memo.clear()  # bounded: a long-running engine keeps at most this many (threads: a lost entry is remade)
        memo[cache_key] = fact
    return fact


_Content = tuple[str, tuple[tuple[str, Scalar], ...]]


def _made_contents(program: Program) -> dict[int, tuple[Fact, _Content]]:
    """The program's memo of the contents of facts that firings made (most are the derived facts' and candidate
    facts' memos' own, made again by every record): by the fact's id, with the fact."""
    made = program.cache.setdefault("made_contents", {})
    assert isinstance(made, dict)
    return made


_RISK_RANK = {"low": 0, "intermediate": 1, "high": 2}


class CandidateFacts:
    """Builds the ``candidate`` fact of a recommendation from the intervention catalogue."""

    def __init__(self, program: Program) -> None:
        self.catalogue = program.ruleset.interventions
        self.memo = derived_memo(program)
        # (intervention, region, side, unknown_highest) -> its candidate fact: most records make the same few
        made = program.cache.setdefault("candidate_facts", {})
        assert isinstance(made, dict)
        self.made: dict[tuple[str, type, Scalar | None, type, Scalar | None, bool], Fact] = made

    def __call__(self, rec: ir.Recommend, bound: Mapping[str, Fact]) -> Fact:
        target = {k: resolve_value(v, bound) for k, v in rec.target}
        return self.make(rec.intervention, target.get("region"), target.get("side"))

    def requested(self, fact: Fact) -> Fact:
        """The candidate fact of a requested procedure: the very fact (same content, same key) that a
        recommendation of the same intervention and target makes, so every safety rule judges both alike.
        An order whose region is not recorded is judged at the highest bleeding risk the intervention has at any
        region (missing is never read as the lower risk)."""
        return self.make(
            str(fact.values["intervention"]), fact.values.get("region"), fact.values.get("side"), unknown_highest=True
        )

    def make(
        self, intervention: str, region: Scalar | None, side: Scalar | None, unknown_highest: bool = False
    ) -> Fact:
        # (the value's type is part of the key, as in derived_fact)
        key = (intervention, type(region), region, type(side), side, unknown_highest)
        fact = self.made.get(key)
        if fact is None:
            if len(self.made) >= _DERIVED_MEMO_SIZE:
                self.made.clear()  # bounded, as the derived facts' memo
            fact = self.made[key] = self._make(intervention, region, side, unknown_highest)
        return fact

    def _make(self, intervention: str, region: Scalar | None, side: Scalar | None, unknown_highest: bool) -> Fact:
        item = self.catalogue[intervention]
        risk = item.bleeding_risk.by_region.get(str(region), item.bleeding_risk.default)
        if region is None and unknown_highest:
            risk = max((risk, *item.bleeding_risk.by_region.values()), key=_RISK_RANK.__getitem__)
        return derived_fact(
            "candidate",
            {
                "intervention": intervention,
                "region": region,
                "side": side,
                "bleeding_risk": risk,
                "elective": item.elective,
                "kind": item.kind,
                "evidence_status": item.evidence_status,
                "uses_steroid": item.uses_steroid,
                "uses_contrast": item.uses_contrast,
                "uses_radiofrequency": item.uses_radiofrequency,
                "neuraxial": item.neuraxial,
                "needle": item.needle,
                "ionizing_guidance": any(g in ("fluoroscopy", "ct") for g in item.image_guidance),
                "ultrasound_possible": "ultrasound" in item.image_guidance,
            },
        )


def in_effect(rule: ir.Rule, as_of: date) -> bool:
    """Whether ``as_of`` falls inside the rule's effective period (both ends inclusive)."""
    start, end = rule.effective
    return (start is None or start <= as_of) and (end is None or as_of <= end)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every evaluation of a program needs and nothing in it changes: computed once per program."""

    exec_rules: Mapping[str, ExecRule]
    # per stratum: the fact types its engine rules need that the stratum cannot derive itself (the least such sets)
    needs: tuple[tuple[frozenset[str], ...], ...]
    dated: tuple[ir.Rule, ...]  # rules with an effective period (the others are always in effect)
    aggregates: tuple[_AggregateBatch, ...]  # per stratum: the aggregates first read there
    # per stratum: what its aggregates make from no facts (most records have none of most types), made once:
    # their ``members`` and ``fields`` entries, merged (a computed aggregate replaces its own)
    empty: tuple[tuple[Mapping[str, tuple[Fact, ...]], Mapping[str, dict[str, str]]], ...]
    derivable: frozenset[str]  # the fact types a firing can make (derive conclusions, candidates)
    # engine rule name -> the conclusions that make a fact, in order (most rules make none): a derivation, or the
    # recommendation whose candidate it makes
    makes: Mapping[str, tuple[_Derivation | ir.Recommend, ...]]


@dataclass(frozen=True, slots=True)
class _Derivation:
    """A ``derive`` conclusion, its values in :func:`derived_fact`'s order (by name) for the memo's key."""

    fact_type: str
    values: tuple[tuple[str, ir.Value], ...]


def _makes(rule: ir.Rule) -> tuple[_Derivation | ir.Recommend, ...]:
    made: list[_Derivation | ir.Recommend] = []
    for conclusion in rule.conclusions:
        if isinstance(conclusion, ir.Derive):
            assert len(dict(conclusion.values)) == len(conclusion.values), "a derived fact names each field once"
            made.append(_Derivation(conclusion.fact, tuple(sorted(conclusion.values, key=lambda kv: kv[0]))))
        elif isinstance(conclusion, ir.Recommend):
            made.append(conclusion)
    return tuple(made)


@dataclass(frozen=True, slots=True)
class _AggregatePlan:
    aggregate: ir.Aggregate
    source_type: str
    selection: Selection  # compiled
    prefilter: Prefilter | None  # the facts its selection could take
    empty: tuple[Fact, ...]  # the facts it makes from no facts


@dataclass(frozen=True, slots=True)
class _AggregateBatch:
    """The aggregates first read in one stratum."""

    planned: tuple[_AggregatePlan, ...]
    # the aggregates by their prefilters, as rules by their gates (the same test: a fact without the field is
    # admitted): one the record's facts cannot feed makes what it makes from none, without being looked at
    gates: GateIndex
    empty: tuple[Fact, ...]  # what each aggregate makes from no facts, in order
    bounds: tuple[tuple[int, int], ...]  # per aggregate: where its own are in ``empty``

    def __bool__(self) -> bool:
        return bool(self.planned)


def _batch(planned: tuple[_AggregatePlan, ...]) -> _AggregateBatch:
    gates = [() if p.prefilter is None else (Gate(p.source_type, *p.prefilter),) for p in planned]
    bounds: list[tuple[int, int]] = []
    empty: list[Fact] = []
    for p in planned:
        bounds.append((len(empty), len(empty) + len(p.empty)))
        empty.extend(p.empty)
    return _AggregateBatch(planned, GateIndex.build(gates), tuple(empty), tuple(bounds))


def _plan(program: Program) -> _Plan:
    plan = program.cache.get("plan")
    if plan is None:
        needs: list[tuple[frozenset[str], ...]] = []
        derives: list[frozenset[str]] = []
        aggregates: list[tuple[ir.Aggregate, ...]] = []
        computed: set[str] = set()
        for stratum in program.strata:
            first: dict[str, ir.Aggregate] = {}
            for er in stratum.rules:
                reads = {p.fact_type for p in er.patterns}
                for aggregate in er.rule.aggregates:
                    if aggregate.fact_type in reads and aggregate.fact_type not in computed:
                        first.setdefault(aggregate.fact_type, aggregate)
            computed.update(first)
            aggregates.append(tuple(first.values()))
            made: set[str] = set()
            for er in stratum.rules:
                for c in er.rule.conclusions:
                    if isinstance(c, ir.Derive):
                        made.add(c.fact)
                    elif isinstance(c, ir.Recommend):
                        made.add("candidate")
            derives.append(frozenset(made))
            needs.append(_least(frozenset(p.fact_type for p in er.patterns) - made for er in stratum.rules))
        # what each aggregate makes from no facts, made once: its own facts, and merged per stratum
        nothing = {a.fact_type: _from_nothing(a) for batch in aggregates for a in batch}
        planned = tuple(tuple(_plan_aggregate(a, nothing[a.fact_type]) for a in batch) for batch in aggregates)
        plan = _Plan(
            {er.name: er for s in program.strata for er in s.rules},
            tuple(needs),
            tuple(r for r in program.rules if r.effective != (None, None)),
            tuple(_batch(batch) for batch in planned),
            tuple(_merged([nothing[a.fact_type] for a in batch]) for batch in aggregates),
            frozenset().union(*derives),
            {er.name: _makes(er.rule) for s in program.strata for er in s.rules},
        )
        program.cache["plan"] = plan
    assert isinstance(plan, _Plan)
    return plan


def _from_nothing(aggregate: ir.Aggregate) -> Aggregated:
    made = Aggregated()
    compute(aggregate, (), made, selection_check(aggregate.selection))
    # (from no facts: nothing undecided, copied or pending, which the driver's shortcut relies on)
    assert not (made.sources or made.undecided or made.pending or made.uncertain or made.unranked)
    return made


def _plan_aggregate(aggregate: ir.Aggregate, from_nothing: Aggregated) -> _AggregatePlan:
    return _AggregatePlan(
        aggregate,
        aggregate.source_type,
        selection_check(aggregate.selection),
        prefilter(aggregate),
        tuple(from_nothing.facts),
    )


def _merged(made: Sequence[Aggregated]) -> tuple[dict[str, tuple[Fact, ...]], dict[str, dict[str, str]]]:
    merged = Aggregated()
    for part in made:
        merged.add(part)
    return merged.members, merged.fields


def _least(needs: Iterable[frozenset[str]]) -> tuple[frozenset[str], ...]:
    """The sets of ``needs`` that hold no other one, smallest first (deterministic): :func:`can_fire` asks whether
    any set is present, and a set is only present when every set it holds is (164 rules' sets -> 49)."""
    distinct = set(needs)
    least = [n for n in distinct if not any(other < n for other in distinct)]
    return tuple(sorted(least, key=lambda n: (len(n), sorted(n))))


def can_fire(plan_needs: Sequence[frozenset[str]], present: set[str]) -> bool:
    """Whether any rule of a stratum could match: each of its patterns needs a fact of its type, recorded or
    derivable in the stratum (``plan_needs`` holds what the stratum cannot derive). A stratum where none could is
    not run (nothing would fire in it)."""
    return any(needed <= present for needed in plan_needs)


class _Firings:
    """What a firing does to a run (its :meth:`fire` is the backends' ``on_fire``), and how new facts join it.

    An object rather than closures over :func:`run_program`'s variables: compiled with mypyc, a nested function
    and the environment holding it refer to each other, so each run became garbage only the cyclic collector
    frees (measured: 270 objects a record, and the collector's walks costing more than the compiled code saved).
    Interpreted, the results are the same and the object is a little faster (1.5 to 2.7 %, measured)."""

    __slots__ = ("_cap", "_plan", "by_type", "candidate_fact", "count", "deferred", "known", "present", "run")

    def __init__(self, run: Run, plan: _Plan, candidate_fact: CandidateFacts, program: Program, cap: int) -> None:
        self.run = run
        self.candidate_fact = candidate_fact
        # Content of the facts a firing could make again (content includes the type: only a derivable type can
        # meet a derived fact), so that each derived fact is added once.
        self.known = {f.content() for f in run.facts if f.type in plan.derivable}
        self.present = {f.type for f in run.facts}
        self.by_type = index_by_type(run.facts)  # kept beside run.facts: the same facts, in the same order, by type
        self.count = 0
        self.deferred: list[tuple[ir.Rule, Signature, list[Fact]]] = []  # derivations of rules with unless clauses
        self._cap = cap
        self._plan = (plan.exec_rules, plan.makes, _made_contents(program))

    def add(self, new_facts: Sequence[Fact]) -> None:
        """``new_facts`` join the run's facts, by type too."""
        self.run.facts.extend(new_facts)
        by_type, present = self.by_type, self.present
        for fact in new_facts:
            # a new list, never an extended one: the backend holds the lists it was given while a stratum runs
            pool = by_type.get(fact.type)
            by_type[fact.type] = [*pool, fact] if pool else [fact]
            present.add(fact.type)

    def fire(self, name: str, bound: dict[str, Fact]) -> list[Fact]:
        """A backend's ``on_fire``: the firing of rule ``name`` on ``bound`` recorded, the new facts it derived."""
        run = self.run
        exec_rules, makes, made_contents = self._plan
        self.count += 1
        if self.count > self._cap:
            raise firing_limit_error(self._cap, exec_rules[name].rule.ref if name in exec_rules else name, run)
        er = exec_rules.get(name)
        if er is None:
            raise EvaluationError(f"the engine fired an unknown rule {name!r}")
        rule = er.rule
        if run.not_in_effect and rule.ref in run.not_in_effect:
            return []
        try:
            signature = _signature(rule, bound)
            if er.blocker is not None:
                run.blocked.setdefault((rule.id, signature), set()).add(er.blocker)
                return []
            run.firings.append(_firing(rule, dict(bound), signature))
            made: list[Fact] = []
            for making in makes[name]:
                if isinstance(making, _Derivation):  # derived_fact(type, values, memo), its key made here
                    typed: list[tuple[str, type, Scalar]] = []
                    for field_name, operand in making.values:
                        value = (
                            bound[operand.alias].values.get(operand.field) if isinstance(operand, ir.Ref) else operand
                        )
                        if value is not None:
                            typed.append((field_name, type(value), value))
                    cache_key = (making.fact_type, tuple(typed))
                    memo = self.candidate_fact.memo
                    fact = memo.get(cache_key)
                    if fact is None:
                        fact = _derived_fact(cache_key, {k: v for k, _, v in typed}, memo)
                    made.append(fact)
                else:
                    made.append(self.candidate_fact(making, bound))
        except IpmCdsError:
            raise
        except Exception as exc:
            raise EvaluationError(f"error while firing: {exc.__class__.__name__}: {exc}", rule=rule.ref) from exc
        if rule.blockers:
            self.deferred.append((rule, signature, made))
            return []
        if not made:
            return made  # (most firings: a conclusion only)
        firing = run.firings[-1]
        contents = []
        for fact in made:
            run.derived_by.setdefault(fact.key, []).append(firing)
            seen = made_contents.get(id(fact))  # (a memo's fact is made again and again: its content once)
            if seen is not None and seen[0] is fact:
                contents.append(seen[1])
            else:
                content = fact.content()
                if len(made_contents) >= _DERIVED_MEMO_SIZE:
                    made_contents.clear()  # bounded, as the memos of the facts
                made_contents[id(fact)] = (fact, content)  # (the fact kept: its id is not reused)
                contents.append(content)
        known = self.known
        new = [f for f, content in zip(made, contents, strict=True) if content not in known]
        known.update(contents)  # (the others' contents are known already)
        self.add(new)
        return new


def run_program(
    program: Program, backend: Backend, facts: Sequence[Fact], as_of: date, firing_cap: int = DEFAULT_FIRING_CAP
) -> Run:
    """Evaluate every stratum. Any error aborts the whole evaluation (fail closed).

    Rules outside their effective period at ``as_of`` still match in the engine (it is compiled once) but
    their firings are ignored here, identically for both backends, and they are listed as inactive.
    """
    plan = _plan(program)
    group_keys = program.cache.setdefault("aggregate_group_keys", {})
    assert isinstance(group_keys, dict)
    run = Run(facts=list(facts), aggregated=Aggregated(group_keys=group_keys))
    run.not_in_effect = {r.ref for r in plan.dated if not in_effect(r, as_of)}
    candidate_fact = CandidateFacts(program)
    # A requested procedure is judged as a proposed one: its candidate fact exists from the start.
    run.facts.extend({f.key: f for f in (candidate_fact.requested(r) for r in facts if r.type == "requested")}.values())
    firings = _Firings(run, plan, candidate_fact, program, firing_cap)
    by_type, present, deferred = firings.by_type, firings.present, firings.deferred
    for stratum, needs, aggregates, empty in zip(program.strata, plan.needs, plan.aggregates, plan.empty, strict=True):
        if aggregates:  # computed once, before the first stratum that reads them, from the facts known then
            aggregated = run.aggregated
            before = len(aggregated.facts)
            # What every aggregate of the stratum makes from no facts, made when the plan was (immutable): an
            # aggregate computed below replaces its own entries (the same keys: a count without ``by`` makes
            # its one group from facts or none; the others make nothing from none).
            members, fields = empty
            aggregated.members.update(members)
            aggregated.fields.update(fields)
            # Computed: the aggregates a fact of the record could feed (most records have none of most types, or
            # none a prefilter admits), in order; the others make what they make from none, in their place.
            made_facts = aggregated.facts
            of_type: FieldIndex | None = None
            done = 0
            for i in sorted(aggregates.gates.admitted(by_type, three_valued=True)):
                planned = aggregates.planned[i]
                selectable: Sequence[Fact] | None = by_type.get(planned.source_type)
                if not selectable:
                    continue  # (an aggregate without a prefilter is admitted whatever the record has)
                if len(selectable) > 1 and planned.prefilter is not None:  # (one fact: admitted, it is the one)
                    if of_type is None:
                        of_type = FieldIndex(by_type)
                    selectable = of_type.facts(planned.source_type, planned.prefilter)
                start, end = aggregates.bounds[i]
                if done < start:
                    made_facts.extend(aggregates.empty[done:start])
                compute(planned.aggregate, selectable, aggregated, planned.selection, planned.empty)
                done = end
            made_facts.extend(aggregates.empty[done:])
            firings.add(made_facts[before:])
        if not can_fire(needs, present):
            continue
        deferred.clear()
        backend.run_stratum(stratum, list(run.facts), firings.fire, by_type)
        for rule, signature, made in deferred:
            if (rule.id, signature) in run.blocked:
                continue
            firing = next(f for f in reversed(run.firings) if f.rule.id == rule.id and f.signature == signature)
            for fact in made:
                run.derived_by.setdefault(fact.key, []).append(firing)
                if fact.content() not in firings.known:
                    firings.known.add(fact.content())
                    firings.add((fact,))
    _find_missing(program, run, by_type)
    return run


def firing_limit_error(cap: int, rule_ref: str, run: Run) -> FiringLimitError:
    """The error both backends give when an evaluation passes the firing cap: the rule, and the facts."""
    counts: dict[str, int] = {}
    made = 0  # derived and aggregate facts: what the rules made of the record
    for fact in run.facts:
        if fact.derived or "@" in fact.type:
            made += 1
        else:
            counts[fact.type] = counts.get(fact.type, 0) + 1
    listed = ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    listed += f" facts and {made} made from them"
    return FiringLimitError(
        f"more than {cap} rule firings in one evaluation over {listed} (a rule derives facts without end, or "
        "joins facts of one type in pairs or tuples)",
        rule=rule_ref,
        hint="write 'the latest', 'a newer one exists' and 'how many' with latest, earliest or count_of "
        "(docs/rule-files.md), not as joins",
    )


def _find_missing(program: Program, run: Run, by_type: Mapping[str, Sequence[Fact]]) -> None:
    """Three-valued re-evaluation: which rules (and which unless clauses) wait for missing data.

    Runs the compiled matchers (:mod:`compiled`), which return exactly what :func:`match.matches` with
    ``three_valued=True`` would, restricted to the undecided combinations this search looks at."""
    compiled = compile_program(program)
    translate = run.aggregated.translate
    not_in_effect = run.not_in_effect
    present = set(by_type)
    # (a rule reading a fact type with no fact has no combination, decided or not, nor one whose gates no
    # value or absence admits, nor one none of whose fields a fact lacks: it is not run). In the program's order.
    needs, refs, candidate_aliases = compiled.rule_needs, compiled.rule_refs, compiled.rule_candidates
    for i in compiled.rule_waits.waiting(by_type):
        if not needs[i] <= present:
            continue
        ref = refs[i]
        if ref in not_in_effect:
            continue
        found = compiled.missing[ref](by_type)
        if not found:
            continue
        # Every undecided combination counts, also for a rule that fired on other facts.
        unknowns: list[Unknown] = []
        for bound, unknown in found:
            recorded = [t for u in unknown for t in translate(u) if not t.fact.derived]
            unknowns.extend(recorded)
            if recorded and candidate_aliases[i]:  # (the facts its candidate patterns bound, in their order)
                run.undecided_candidates.setdefault(ref, []).extend([bound[a] for a in candidate_aliases[i]])
        if unknowns:
            run.missing[ref] = unknowns
    aggregated = run.aggregated
    # the types of the counts that facts of undecided selection could change (only their patterns can wait)
    waits = {f.type for f in aggregated.facts if f.key in aggregated.undecided} if aggregated.undecided else set()
    if waits:  # facts a count could not take or leave: where they could change its answer
        readers = _count_readers(program)
        chosen = {rule.ref: rule for fact_type in waits for rule in readers.get(fact_type, ())}
        for ref in sorted(chosen, key=compiled.rule_order.__getitem__):  # (in the program's order)
            rule = chosen[ref]
            if ref in not_in_effect:
                continue
            waiting = [
                u for p in rule.patterns if p.fact_type in waits for u in _could_change(p, by_type, aggregated, None)
            ]
            if waiting:
                run.missing.setdefault(rule.ref, []).extend(waiting)
    uncertain = run.aggregated.uncertain
    blocked = run.blocked  # (run.is_blocked, inline: once or twice a firing)
    for firing in run.firings:
        # (uncertain: it bound "the latest" of a group where another may be newer)
        if uncertain and (firing.rule.id, firing.signature) not in blocked:
            for fact in firing.bindings.values():
                maybe_newer = uncertain.get(fact.key)
                if maybe_newer:
                    run.unknown_blockers.setdefault((firing.rule.id, firing.signature), []).extend(
                        u for u in maybe_newer if not u.fact.derived
                    )
        if not firing.rule.blockers or (firing.rule.id, firing.signature) in blocked:
            continue
        undecided: list[Unknown] = []
        used = {id(f) for f in firing.bindings.values()}
        for blocker in firing.rule.blockers:
            extend = compiled.extend[(firing.rule.id, blocker.index)]
            for fact in by_type.get(blocker.pattern.fact_type, ()):
                if id(fact) in used:
                    continue
                result = extend(fact, firing.bindings)
                if result is not None and result[0] is None:
                    undecided.extend(t for u in result[1] for t in translate(u) if not t.fact.derived)
            if blocker.pattern.fact_type in waits:  # an unless clause on a count they could change
                undecided.extend(_could_change(blocker.pattern, by_type, aggregated, firing.bindings))
        if undecided:
            run.unknown_blockers.setdefault((firing.rule.id, firing.signature), []).extend(undecided)


def _count_readers(program: Program) -> Mapping[str, tuple[ir.Rule, ...]]:
    """Fact type -> the rules with aggregates that have a pattern of it (once per program): the rules a count
    of that type could leave waiting."""
    readers = program.cache.get("count_readers")
    if readers is None:
        found: dict[str, list[ir.Rule]] = {}
        for rule in program.rules:
            if rule.aggregates:
                for fact_type in dict.fromkeys(p.fact_type for p in rule.patterns):
                    found.setdefault(fact_type, []).append(rule)
        readers = program.cache["count_readers"] = {t: tuple(r) for t, r in found.items()}
    assert isinstance(readers, dict)
    return readers


def _could_change(
    pattern: ir.Pattern,
    by_type: Mapping[str, Sequence[Fact]],
    aggregated: Aggregated,
    bindings: Mapping[str, Fact] | None,
) -> list[Unknown]:
    """The missing fields of facts whose selection an aggregate could not decide, where they could change what
    ``pattern`` says of a fact the aggregate made (for an unless clause: one that joins the firing's facts)."""
    out: list[Unknown] = []
    own = tuple(n for n in pattern.tests if not (isinstance(n, ir.Test) and n.field == "count"))
    joins = ir.Pattern(pattern.alias, pattern.fact_type, own)
    for fact in by_type.get(pattern.fact_type, ()):
        unknowns = aggregated.undecided.get(fact.key)
        if not unknowns:
            continue
        if bindings is not None and eval_pattern(joins, fact, bindings, []) is False:
            continue  # (three-valued: a group value the undecided fact lacks could be the one joined)
        if could_change(pattern, fact, len({id(u.fact) for u in unknowns})):
            out.extend(u for u in unknowns if not u.fact.derived)
    return out


def _extend(
    pattern: ir.Pattern, bound: Mapping[str, Fact], by_type: Mapping[str, Sequence[Fact]]
) -> Iterator[tuple[dict[str, Fact], Truth, list[Unknown]]]:
    used = {id(f) for f in bound.values()}
    for fact in by_type.get(pattern.fact_type, ()):
        if id(fact) in used:
            continue
        unknowns: list[Unknown] = []
        truth = eval_pattern(pattern, fact, bound, unknowns)
        if truth is not False:
            yield {pattern.alias: fact}, truth, unknowns
