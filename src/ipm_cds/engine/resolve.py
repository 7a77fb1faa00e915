"""Resolution: from the conclusions rules drew to an Assessment, safety first, by construction.

The order is fixed here, in code, and never depends on the order rules fired in:

1. collect every conclusion of every firing that no ``unless`` clause blocked;
2. a red flag moves every elective candidate to ``excluded`` (kind ``red_flag``), and every referral to an
   elective target (the referral catalogue's ``elective: true``) to ``deferred_referrals``;
3. an absolute contraindication moves the candidates it names to ``excluded``; a relative one stays
   a candidate with a precaution attached;
4. precautions and antithrombotic holds attach to the candidates they concern;
5. missing data is reported, and candidates whose safety checks it left undecided say so;
6. everything is sorted, so the JSON is byte-identical for the same input.

Why this module is over 600 lines: those steps are one ordered pipeline, and the override order is the
safety property; kept in one function in one module, a reader sees that no step can run before the ones it
must follow. The text it writes comes from the ruleset's message catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from operator import itemgetter
from typing import Literal

from .._version import __version__
from ..model.assessment import (
    Alert,
    Assessment,
    Basis,
    BoundFact,
    Candidate,
    Citation,
    DefaultApplied,
    DeferredReferral,
    Exclusion,
    MissingData,
    Precaution,
    Provenance,
    Referral,
    Target,
    TraceEntry,
    Urgency,
    trusted,
    trusted_alert,
    trusted_basis,
    trusted_bound_fact,
    trusted_copy,
    trusted_exclusion,
    trusted_missing_data,
    trusted_precaution,
    trusted_referral,
    trusted_trace_entry,
)
from ..model.facts.normalise import Fact, Scalar
from ..model.facts.schema import BASE_FACT_TYPES
from ..ruleset import ir
from ..ruleset.messages import Template
from ..ruleset.model import HoldAdvice
from .driver import Firing, Run, resolve_value
from .match import Unknown
from .program import ParamValue, Program

_URGENCY_ORDER = {"emergency": 0, "urgent": 1, "soon": 2, "routine": 3}
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
BleedingRisk = Literal["low", "intermediate", "high"]
_RISK: dict[str, BleedingRisk] = {"low": "low", "intermediate": "intermediate", "high": "high"}
_RISK_UP: dict[BleedingRisk, BleedingRisk] = {"low": "intermediate", "intermediate": "high", "high": "high"}
ALL_ELECTIVE = "all_elective"


@dataclass(frozen=True)
class _Index:
    """Lookups over a program that every resolution needs: built once per program (``program.cache``)."""

    rules_by_ref: Mapping[str, ir.Rule]
    rank: Mapping[str, int]  # rule ref -> its place in (stratum, id) order, the order conclusions are resolved in
    rules_by_id: Mapping[str, ir.Rule]
    elective: Mapping[str, bool]
    citations: Mapping[str, Citation]  # Citation holds scalars only, so one instance can be shared
    # rule ref -> its criteria and citations, sorted (each Basis gets lists of its own)
    basis: Mapping[str, tuple[tuple[str, ...], tuple[Citation, ...]]]
    # rule ref -> the tagged defaults in force (default_basis, not set by the profile or an override) that its
    # conditions read: when the rule fires, they decided its conclusions
    tagged_defaults: Mapping[str, tuple[str, ...]]
    # rule ref -> what it decides (_decided), for the rules whose conclusions name no matched fact's value
    decided: Mapping[str, tuple[str, ...]]
    # refs of the safety rules and of the rules whose derived facts a safety rule reads (directly or through other
    # derived facts): missing data such a rule waits for is a safety rule's missing data
    safety_refs: frozenset[str]
    # the texts that depend on the program alone, rendered once:
    values: tuple[str, str, str]  # how a value not recorded, true and false read in a rule's text
    # id() of each template of the program's rules -> its text (no patient value in it), or its parts with the
    # literal text and parameter values joined (the program holds its rules, so an id cannot be reused while
    # this index lives; a template of another rule object is not found here and is rendered in full)
    texts: Mapping[int, str | _Parts]
    evidence: Mapping[str, str]  # rule ref -> its candidates' evidence line
    # rule ref -> the conclusions resolution reads (all but derivations), and whether one of them is an exclusion,
    # precaution or hold (which a firing about a requested procedure keeps to that order)
    plans: Mapping[str, tuple[tuple[ir.Conclusion, ...], bool]]
    flag_reasons: Mapping[str, str]  # red flag code -> the reason it gives for each candidate it excludes
    all_elective: str  # the name of "every elective intervention" in an exclusion
    # (medication code, secondary-prevention table, risk, approval, upgraded from) -> the antithrombotic
    # precaution's text: made when first needed, bounded by the medication catalogue
    hold_texts: dict[tuple[str, bool, str, bool, str | None], str]
    # a fact's value names, in its order -> the same names sorted, () when they already are (a bound fact's values
    # are written sorted): made when first met, at most _ORDERS_MAX of them
    value_orders: dict[tuple[str, ...], tuple[str, ...]]
    # a set of rules waiting for one patient field -> its MissingData's needed_by and criteria (sorted), and whether
    # a safety rule is among them: made when first met, at most _GROUPS_MAX of them
    waiting_groups: dict[frozenset[str], tuple[tuple[str, ...], tuple[str, ...], bool]]
    # (base fact type, field) -> the patient field a missing value is reported as
    missing_criteria: Mapping[str, tuple[str, ...]]  # rule ref -> its criteria, distinct and sorted
    missing_paths: Mapping[tuple[str, str], str]
    # sorted by name, as provenance lists them (each assessment gets a copy of its own)
    parameters: Mapping[str, ParamValue]
    overrides: Mapping[str, ParamValue]
    disabled: Mapping[str, str]


def _safety_refs(rules: Sequence[ir.Rule]) -> frozenset[str]:
    """Safety rules, and the rules that derive what they read (a fixpoint over the derived fact types)."""
    made = {r.ref: {c.fact for c in r.conclusions if isinstance(c, ir.Derive)} for r in rules}
    reads = {r.ref: {p.fact_type for p in r.input_patterns()} for r in rules}
    found = {r.ref for r in rules if r.safety}
    needed = set().union(*(reads[ref] for ref in found)) if found else set()
    changed = True
    while changed:
        changed = False
        for ref, facts in made.items():
            if ref not in found and facts & needed:
                found.add(ref)
                needed |= reads[ref]
                changed = True
    return frozenset(found)


def _index(program: Program) -> _Index:
    index = program.cache.get("resolve")
    if index is None:
        sources = program.ruleset.sources
        citations = {
            s: Citation(id=s, citation=sources[s].citation, url=sources[s].url, year=sources[s].year)
            for r in program.rules
            for s in r.sources
        }
        params = program.ruleset.parameters
        tagged = {
            name
            for name, p in params.items()
            if p.default_basis is not None and name not in program.overrides and program.profile not in p.profiles
        }
        tagged_defaults: dict[str, tuple[str, ...]] = {}
        for rule in program.ruleset.rules:
            read: set[str] = set()
            for pattern in rule.patterns + tuple(b.pattern for b in rule.blockers):
                read |= pattern.params()
            for aggregate in rule.aggregates:
                read |= aggregate.selection.params()
            if read & tagged:
                tagged_defaults[rule.ref] = tuple(sorted(read & tagged))
        messages = program.ruleset.messages
        values = (
            messages["value.not_recorded"].render(),
            messages["value.yes"].render(),
            messages["value.no"].render(),
        )
        index = _Index(
            rules_by_ref={r.ref: r for r in program.rules},
            rank={r.ref: i for i, r in enumerate(sorted(program.rules, key=lambda r: (r.stratum, r.id)))},
            rules_by_id={r.id: r for r in program.rules},
            elective={code: item.elective for code, item in program.ruleset.interventions.items()},
            citations=citations,
            basis={
                r.ref: (tuple(sorted(r.criteria)), tuple(citations[s] for s in sorted(r.sources)))
                for r in program.rules
            },
            tagged_defaults=tagged_defaults,
            decided={
                r.ref: tuple(_decided(r, {}))
                for r in program.rules
                if r.ref in tagged_defaults and not _reads_bindings(r)
            },
            safety_refs=_safety_refs(program.rules),
            values=values,
            texts={
                id(t): _compile(t, program.parameters, values)
                for r in program.rules
                for c in r.conclusions
                for t in _conclusion_templates(c)
            },
            plans={r.ref: _plan(r) for r in program.rules},
            evidence={
                r.ref: messages["candidate.evidence"].render(
                    strength=r.evidence_strength, quality=r.evidence_quality.replace("_", " ")
                )
                for r in program.rules
            },
            flag_reasons={
                c.code: messages["red_flag.exclusion"].render(flag=c.code.replace("_", " "))
                for r in program.rules
                for c in r.conclusions
                if isinstance(c, ir.RedFlag)
            },
            all_elective=messages["exclusion.all_elective"].render(),
            hold_texts={},
            value_orders={},
            waiting_groups={},
            missing_criteria={r.ref: tuple(sorted(set(r.criteria))) for r in program.rules},
            missing_paths={
                (name, fld): _missing_path(name, fld)
                for name, fact_type in BASE_FACT_TYPES.items()
                for fld in fact_type.fields
            },
            parameters=dict(sorted(program.parameters.items())),
            overrides=dict(sorted(program.overrides.items())),
            disabled=dict(sorted(program.disabled.items())),
        )
        program.cache["resolve"] = index
    assert isinstance(index, _Index)
    return index


def _fmt(value: Scalar | None, values: tuple[str, str, str]) -> str:
    """A value as a rule's text quotes it; ``values``: how not recorded, true and false read (:attr:`_Index.values`)."""
    if value is None:
        return values[0]
    if isinstance(value, bool):
        return values[1] if value else values[2]
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("_", " ") if isinstance(value, str) else str(value)


def _conclusion_templates(c: ir.Conclusion) -> tuple[ir.Template, ...]:
    """The templates the resolver renders for a conclusion."""
    if isinstance(c, ir.Recommend):
        return (c.rationale,)
    if isinstance(c, ir.RedFlag | ir.Alert):
        return (c.message,)
    if isinstance(c, ir.Exclude):
        return (c.reason,)
    if isinstance(c, ir.Precaution):
        return (c.text,)
    if isinstance(c, ir.Refer):
        return (c.reason,)
    return ()


def _compile(template: ir.Template, parameters: Mapping[str, ParamValue], values: tuple[str, str, str]) -> str | _Parts:
    """A template with what the program fixes filled in: its text, when it quotes no patient value; else its parts,
    adjacent literal text and parameter values joined, the patient values (refs) left to fill in."""
    parts: list[str | ir.Ref] = []
    for part in template.parts:
        if isinstance(part, ir.Ref):
            parts.append(part)
            continue
        text = part if isinstance(part, str) else _fmt(parameters.get(part.name), values)
        if parts and isinstance(parts[-1], str):
            parts[-1] += text
        else:
            parts.append(text)
    if any(isinstance(p, ir.Ref) for p in parts):
        # (adjacent literal text is joined: the text before the first value, and after each value)
        lead = ""
        slots: list[tuple[str, str, str]] = []
        for part in parts:
            if isinstance(part, ir.Ref):
                slots.append((part.alias, part.field, ""))
            elif slots:
                slots[-1] = (slots[-1][0], slots[-1][1], part)
            else:
                lead = part
        return _Parts(lead, tuple(slots), _settled(parts[0]) and _settled(parts[-1], end=True))
    return _finish("".join(p for p in parts if isinstance(p, str)))


@dataclass(frozen=True, slots=True)
class _Parts:
    """A template's parts, the patient values (refs) left to fill in: its literal text before the first value
    (``lead``), and each value as (alias, field, the literal text after it); ``settled``: it begins and ends with
    literal text that :func:`_finish` would leave as it is (no space to strip, an upper-case first letter)."""

    lead: str
    slots: tuple[tuple[str, str, str], ...]
    settled: bool


def _settled(part: str | ir.Ref, end: bool = False) -> bool:
    if not isinstance(part, str) or not part:
        return False
    if end:
        return not part[-1].isspace()
    return not part[0].isspace() and part[0].upper() == part[0]


def _plan(rule: ir.Rule) -> tuple[tuple[ir.Conclusion, ...], bool]:
    """What resolution reads of a rule's conclusions (:attr:`_Index.plans`)."""
    read = tuple(c for c in rule.conclusions if not isinstance(c, ir.Derive))
    return read, any(isinstance(c, ir.Exclude | ir.Precaution | ir.AntithromboticHold) for c in read)


def _finish(joined: str) -> str:
    """A rendered text: stripped, its first letter upper case."""
    text = joined.strip()
    return text[:1].upper() + text[1:]


def _missing_path(fact_type_name: str, fld: str) -> str:
    """The patient field a missing value of this base fact type's field is reported as."""
    fact_type = BASE_FACT_TYPES[fact_type_name]
    source = fact_type.fields[fld].source or fld
    return source if fact_type_name == "patient" else f"{fact_type.source}.{source}"


@dataclass
class _Resolver:
    program: Program
    run: Run
    index: _Index

    bases: dict[str, Basis] = field(default_factory=dict)  # rule ref -> its Basis, one per assessment

    @property
    def messages(self) -> Mapping[str, Template]:
        return self.program.ruleset.messages

    def render(self, template: ir.Template, bound: Mapping[str, Fact]) -> str:
        compiled = self.index.texts.get(id(template))
        if compiled is None:
            compiled = _compile(template, self.program.parameters, self.index.values)
        if isinstance(compiled, str):
            return compiled
        values = self.index.values
        out = [compiled.lead]
        for alias, fld, after in compiled.slots:
            value = bound[alias].values.get(fld)
            out.append(value.replace("_", " ") if type(value) is str else _fmt(value, values))
            out.append(after)
        return "".join(out) if compiled.settled else _finish("".join(out))

    def basis(self, rule: ir.Rule) -> Basis:
        """The rule's basis; one instance per rule within an assessment (an output model is immutable)."""
        made = self.bases.get(rule.ref)
        if made is None:
            criteria, sources = self.index.basis[rule.ref]
            made = self.bases[rule.ref] = trusted_basis(rule.ref, list(criteria), list(sources))
        return made

    def target(self, rec: ir.Recommend, bound: Mapping[str, Fact]) -> Target:
        made: dict[str, str | None] = {}
        for k, v in rec.target:
            value = resolve_value(v, bound)
            made[k] = str(value) if value is not None else None
        return trusted(Target, **made)


def _codes(items: tuple[str | ir.Ref, ...], bound: Mapping[str, Fact]) -> tuple[str, ...]:
    """Intervention codes of a conclusion; a Ref names the intervention of the candidate the rule matched."""
    return tuple(str(resolve_value(x, bound)) if isinstance(x, ir.Ref) else x for x in items)


def _matches(
    candidate: Candidate,
    codes: tuple[str, ...],
    elective_scope: bool,
    region: Scalar | None,
    elective: Mapping[str, bool],
) -> bool:
    hit = elective[candidate.intervention] if elective_scope else candidate.intervention in codes
    return hit and (region is None or candidate.target.region == region)


def _decided(rule: ir.Rule, bound: Mapping[str, Fact]) -> list[str]:
    """A fired rule's conclusions as 'kind:code' labels (codes, not prose: the catalogues hold the text)."""
    out: list[str] = []
    for c in rule.conclusions:
        if isinstance(c, ir.Recommend):
            out.append(f"recommend:{c.intervention}")
        elif isinstance(c, ir.Exclude | ir.Precaution):
            kind = "exclude" if isinstance(c, ir.Exclude) else "precaution"
            codes = _codes(c.interventions, bound) or ((ALL_ELECTIVE,) if c.elective_scope else ())
            out += [f"{kind}:{code}" for code in codes]
        elif isinstance(c, ir.Alert):
            out.append(f"alert:{c.code}")
        elif isinstance(c, ir.RedFlag):
            out.append(f"alert:red_flag.{c.code}")
        elif isinstance(c, ir.Refer):
            out.append(f"refer:{c.to}")
        elif isinstance(c, ir.Derive):
            out.append(f"derive:{c.fact}")
        else:
            out.append("hold:antithrombotic")
    return sorted(set(out))


def _reads_bindings(rule: ir.Rule) -> bool:
    """Whether what the rule decides (:func:`_decided`) names a value of the facts it matched."""
    return any(
        isinstance(x, ir.Ref)
        for c in rule.conclusions
        if isinstance(c, ir.Exclude | ir.Precaution)
        for x in c.interventions
    )


def _precaution_key(p: Precaution) -> tuple[object, ...]:
    """Everything a precaution's JSON holds (its basis follows from the rule): equal keys, equal JSON."""
    return (p.intervention, p.kind, p.text, p.medication, p.bleeding_risk, p.requires_prescriber_approval, p.basis.rule)


def _hold_text(
    messages: Mapping[str, Template],
    name: str,
    advice: HoldAdvice,
    risk: str,
    restart: str | None,
    approval: bool,
    upgraded_from: str | None,
) -> str:
    """The antithrombotic precaution: the message catalogue's sentences, joined by a space."""
    if advice.action == "hold":
        first = messages["hold.hold"].render(
            agent=name, duration=advice.duration, risk=risk, condition=advice.condition, restart=restart
        )
    elif advice.action == "shared":
        first = messages["hold.shared"].render(agent=name, risk=risk, condition=advice.condition, restart=restart)
    elif advice.condition:
        first = messages["hold.continue"].render(agent=name, risk=risk, condition=advice.condition)
    else:
        first = messages["hold.continue_no_condition"].render(agent=name, risk=risk)
    parts = [first]
    if advice.verification:
        parts.append(messages["hold.table"].render(verification=advice.verification))
    if approval:
        parts.append(messages["hold.approval"].render())
    if upgraded_from is not None:
        parts.append(messages["hold.upgrade"].render(from_risk=upgraded_from, to_risk=risk))
    return " ".join(parts)


_GROUPS_MAX = 4096  # sets of rules waiting for one field remembered per program (more are worked out each time)
_ORDERS_MAX = 4096  # distinct value-name tuples remembered per program (more are sorted each time)


def _value_order(orders: dict[tuple[str, ...], tuple[str, ...]], names: tuple[str, ...]) -> tuple[str, ...]:
    """A fact's value names sorted, or () when they already are (:attr:`_Index.value_orders`)."""
    ordered = tuple(sorted(names))
    if ordered == names:
        ordered = ()
    if len(orders) < _ORDERS_MAX:
        orders[names] = ordered
    return ordered


def _missing_entries(run: Run, index: _Index) -> tuple[list[MissingData], dict[tuple[str, str], set[str]]]:
    """Group unknown fields by patient field; return entries and (fact key, field) -> rule refs."""
    grouped: dict[tuple[str, str], set[str]] = {}
    paths = index.missing_paths
    by_id = index.rules_by_id
    waiting: list[tuple[str, list[Unknown]]] = [*run.missing.items()]
    waiting += [(by_id[rule_id].ref, unknowns) for (rule_id, _sig), unknowns in run.unknown_blockers.items()]
    for rule_ref, unknowns in waiting:
        for u in unknowns:
            fact = u.fact
            path = paths.get((fact.type, u.field))
            if path is None:
                if fact.type not in BASE_FACT_TYPES:
                    continue
                path = _missing_path(fact.type, u.field)  # (a field the fact type lacks: KeyError, as before)
            key = (fact.label, path)
            refs = grouped.get(key)
            if refs is None:
                grouped[key] = {rule_ref}
            else:
                refs.add(rule_ref)
    entries = []
    criteria = index.missing_criteria
    safety = index.safety_refs
    waiting_groups = index.waiting_groups
    for (label, path), refs in grouped.items():
        if len(refs) == 1:
            (ref,) = refs
            needed_by, of = [ref], list(criteria[ref])
            entries.append(trusted_missing_data(path, label, needed_by, of, ref in safety))
            continue
        group = frozenset(refs)
        made = waiting_groups.get(group)
        if made is None:
            made = (
                tuple(sorted(refs)),
                tuple(sorted({c for r in refs for c in criteria[r]})),
                not safety.isdisjoint(refs),
            )
            if len(waiting_groups) < _GROUPS_MAX:
                waiting_groups[group] = made
        entries.append(trusted_missing_data(path, label, list(made[0]), list(made[1]), made[2]))
    entries.sort(key=lambda m: (m.field, m.item))
    return entries, grouped


def resolve(
    program: Program,
    run: Run,
    *,
    patient_id: str | None,
    as_of: date,
    backend: Literal["durable", "python"],
    backend_auto: bool = False,
    timestamp: bool = True,
) -> Assessment:
    index = _index(program)
    rank = index.rank
    r = _Resolver(program, run, index)
    catalogue = program.ruleset.interventions
    elective = index.elective
    # The trace. One BoundFact (and its part of the sort key) per alias and fact: a fact is bound by many firings.
    bound_facts: dict[tuple[str, int], tuple[BoundFact, tuple[str, str, list[tuple[str, Scalar]]]]] = {}
    orders = index.value_orders
    keyed: list[tuple[tuple[int, str, list[tuple[str, str, list[tuple[str, Scalar]]]]], TraceEntry]] = []
    live: list[Firing] = []  # the firings no unless clause blocked (Run.is_blocked), sorted below
    blocked = run.blocked
    for firing in run.firings:
        bindings = []
        order = []
        for a, f in firing.bindings.items():
            made = bound_facts.get((a, id(f)))
            if made is None:
                values = f.values
                names = tuple(values)
                by_name = orders.get(names)
                if by_name is None:
                    by_name = _value_order(orders, names)
                # the fact's values sorted by name (by_name is empty when they already are)
                values = {name: values[name] for name in by_name} if by_name else dict(values)
                made = (trusted_bound_fact(a, f.label, values), (a, f.label, list(values.items())))
                bound_facts[(a, id(f))] = made
            bindings.append(made[0])
            order.append(made[1])
        rule = firing.rule
        # (only a rule with unless clauses can be blocked: Run.blocked holds what they matched)
        unless = blocked.get((rule.id, firing.signature)) if rule.blockers else None
        if unless is None:
            live.append(firing)
        if unless:
            status: Literal["fired", "blocked"] = "blocked"
            blocked_by = [f"unless[{i}]" for i in sorted(unless)]
        else:
            status, blocked_by = "fired", []
        traced = trusted_trace_entry(rule.ref, rule.stratum, status, blocked_by, bindings)
        keyed.append(((rule.stratum, rule.ref, order), traced))
    keyed.sort(key=itemgetter(0))  # stable, on the key alone: the order of the former trace.sort
    trace = [t for _, t in keyed]
    live.sort(key=lambda f: (rank[f.rule.ref], f.signature))

    candidates: dict[tuple[str, str | None, str | None, str | None], Candidate] = {}
    candidate_firing: dict[tuple[str, str | None, str | None, str | None], Firing] = {}
    red_flags: list[tuple[Firing, ir.RedFlag]] = []
    excludes: list[tuple[Firing, ir.Exclude]] = []
    precaution_rules: list[tuple[Firing, ir.Precaution]] = []
    holds: list[tuple[Firing, ir.AntithromboticHold]] = []
    alerts: dict[tuple[str, str], Alert] = {}
    referral_parts: dict[str, list[tuple[Urgency, str, ir.Rule]]] = {}
    syndrome_parts: dict[str, list[tuple[str, ir.Rule]]] = {}

    plans = index.plans
    for firing in live:
        rule, bound = firing.rule, firing.bindings
        conclusions, guarded = plans.get(rule.ref) or _plan(rule)
        # A rule that matches a requested procedure's own details (its levels, steroid, guidance) judges that
        # order, not the candidates: its exclusions, precautions and holds stand in the order's verdict only.
        about_order = guarded and any(f.type == "requested" for f in bound.values())
        for c in conclusions:
            if about_order and isinstance(c, ir.Exclude | ir.Precaution | ir.AntithromboticHold):
                continue
            if isinstance(c, ir.Recommend):
                item = catalogue[c.intervention]
                target = r.target(c, bound)
                key = (c.intervention, target.region, target.side, target.levels)
                if key in candidates:
                    continue  # the first rule in (stratum, id, bindings) order speaks for it
                category = item.bleeding_risk.by_region.get(target.region or "", item.bleeding_risk.default)
                candidates[key] = trusted(
                    Candidate,
                    intervention=c.intervention,
                    name=item.name,
                    kind=item.kind,
                    cpt=list(item.cpt),
                    evidence_status=item.evidence_status,
                    target=target,
                    image_guidance=list(item.image_guidance),
                    bleeding_risk=category,
                    rationale=r.render(c.rationale, bound),
                    evidence=index.evidence[rule.ref],
                    basis=r.basis(rule),
                )
                candidate_firing[key] = firing
            elif isinstance(c, ir.RedFlag):
                red_flags.append((firing, c))
                # One alert per red-flag syndrome: the findings of every rule that raised it, one per line.
                syndrome_parts.setdefault(c.code, []).append((r.render(c.message, bound), rule))
            elif isinstance(c, ir.Exclude):
                excludes.append((firing, c))
            elif isinstance(c, ir.Precaution):
                precaution_rules.append((firing, c))
            elif isinstance(c, ir.AntithromboticHold):
                holds.append((firing, c))
            elif isinstance(c, ir.Alert):
                message = r.render(c.message, bound)
                if (c.code, message) not in alerts:  # the first rule in firing order speaks for it
                    alerts[(c.code, message)] = trusted_alert(c.code, c.severity, message, r.basis(rule))
            elif isinstance(c, ir.Refer):
                # One referral per target: every reason behind it, the highest urgency wins (merged below).
                referral_parts.setdefault(c.to, []).append((c.urgency, r.render(c.reason, bound), rule))

    for flag_code, flag_parts in syndrome_parts.items():
        ordered = sorted(flag_parts, key=lambda p: (rank[p[1].ref], p[0]))
        code = f"red_flag.{flag_code}"
        alerts[(code, "")] = trusted_alert(
            code, "critical", "\n".join(dict.fromkeys(message for message, _ in ordered)), r.basis(ordered[0][1])
        )
    referrals: dict[str, Referral] = {}
    for to, parts in referral_parts.items():
        if len(parts) == 1:  # (most referrals: one rule's reason)
            urgency, reason, decisive = parts[0]
            rules = [decisive.ref]
        else:
            ranked = sorted(parts, key=lambda p: (_URGENCY_ORDER[p[0]], rank[p[2].ref], p[1]))
            urgency, _, decisive = ranked[0]
            reason = "\n".join(dict.fromkeys(reason for _, reason, _ in ranked))
            rules = sorted({rule.ref for _, _, rule in parts})
        referrals[to] = trusted_referral(
            to, program.ruleset.referrals[to].name, urgency, reason, r.basis(decisive), rules
        )

    excluded: dict[tuple[str, str], Exclusion] = {}
    removed: set[tuple[str, str | None, str | None, str | None]] = set()

    def exclude(
        key: tuple[str, str | None, str | None, str | None] | None,
        code: str,
        name: str,
        reason: str,
        kind: Literal["absolute_contraindication", "red_flag", "unmet_criterion"],
        rule: ir.Rule,
    ) -> None:
        if key is not None:
            removed.add(key)
        if (code, reason) in excluded:
            return  # the first exclusion with this reason stands (built only when it is the first)
        excluded[(code, reason)] = trusted_exclusion(code, name, reason, kind, key is not None, r.basis(rule))

    # Safety step 2: red flags suppress every elective candidate.
    for firing, flag in red_flags:
        reason = index.flag_reasons[flag.code]
        for key, cand in candidates.items():
            if elective[cand.intervention]:
                exclude(key, cand.intervention, cand.name, reason, "red_flag", firing.rule)
    # A red flag defers elective referrals too (physical therapy beside a suspected fracture, say): listed
    # with the red flag that deferred them, never dropped.
    deferred: list[DeferredReferral] = []
    if red_flags:
        codes = sorted({flag.code.replace("_", " ") for _, flag in red_flags})
        why = r.messages["red_flag.deferral"].render(flags=", ".join(codes))
        for ref_key, referral in list(referrals.items()):
            if program.ruleset.referrals[referral.to].elective:
                del referrals[ref_key]
                deferred.append(
                    trusted(DeferredReferral, referral=referral, reason=why, basis=r.basis(red_flags[0][0].rule))
                )
    # Safety step 3: absolute contraindications exclude; relative ones become precautions.
    attached: dict[tuple[str, str | None, str | None, str | None], list[Precaution]] = {}
    patient_level: list[Precaution] = []
    for firing, ex in excludes:
        region = resolve_value(ex.region, firing.bindings) if ex.region is not None else None
        reason = r.render(ex.reason, firing.bindings)
        ex_codes = _codes(ex.interventions, firing.bindings)
        hit = [k for k, c in candidates.items() if _matches(c, ex_codes, ex.elective_scope, region, elective)]
        if ex.severity in ("absolute", "unmet"):
            kind: Literal["absolute_contraindication", "unmet_criterion"] = (
                "absolute_contraindication" if ex.severity == "absolute" else "unmet_criterion"
            )
            for key in hit:
                exclude(key, candidates[key].intervention, candidates[key].name, reason, kind, firing.rule)
            if not hit:
                for code in ex_codes or (ALL_ELECTIVE,):
                    name = catalogue[code].name if code in catalogue else index.all_elective
                    exclude(None, code, name, reason, kind, firing.rule)
        else:
            p = trusted_precaution(None, "relative_contraindication", reason, r.basis(firing.rule))
            for key in hit:
                attached.setdefault(key, []).append(trusted_copy(p, {"intervention": key[0]}))
    # Safety step 4: precautions and antithrombotic holds.
    for firing, pr in precaution_rules:
        region = resolve_value(pr.region, firing.bindings) if pr.region is not None else None
        text = r.render(pr.text, firing.bindings)
        pr_codes = _codes(pr.interventions, firing.bindings)
        hit = [k for k, c in candidates.items() if _matches(c, pr_codes, pr.elective_scope, region, elective)]
        for key in hit:
            attached.setdefault(key, []).append(trusted_precaution(key[0], "caution", text, r.basis(firing.rule)))
        if not hit and pr.elective_scope:
            patient_level.append(trusted_precaution(None, "caution", text, r.basis(firing.rule)))
    meds = program.ruleset.medications
    for firing, hold in holds:
        med_fact = firing.bindings[hold.medication]
        agent = str(med_fact.values["agent"])
        entry = meds[agent]
        secondary = med_fact.values.get("indication") == "secondary_prevention"
        secondary_table = bool(secondary and entry.secondary_prevention_hold)
        table = entry.secondary_prevention_hold if secondary_table else entry.hold
        if table is None:
            continue
        approval = entry.prescriber_approval_always or secondary
        # one candidate fact, or each of those a count of candidates was made from
        for cand_fact in run.stands_for(firing.bindings[hold.candidate], "candidate"):
            base = _RISK[str(cand_fact.values.get("bleeding_risk", "high"))]
            risk: BleedingRisk = _RISK_UP[base] if hold.upgrade else base
            upgraded_from = base if hold.upgrade else None
            text_key = (agent, secondary_table, risk, approval, upgraded_from)
            hold_text = index.hold_texts.get(text_key)
            if hold_text is None:
                advice: HoldAdvice = getattr(table, risk)
                hold_text = _hold_text(r.messages, entry.name, advice, risk, entry.restart, approval, upgraded_from)
                index.hold_texts[text_key] = hold_text
            for key, cand in candidates.items():
                if cand.intervention == cand_fact.values.get(
                    "intervention"
                ) and cand.target.region == cand_fact.values.get("region"):
                    attached.setdefault(key, []).append(
                        trusted(
                            Precaution,
                            intervention=cand.intervention,
                            kind="antithrombotic",
                            text=hold_text,
                            medication=entry.code,
                            bleeding_risk=risk,
                            requires_prescriber_approval=approval,
                            basis=r.basis(firing.rule),
                        )
                    )

    missing, grouped = _missing_entries(run, index)
    # Step 5: safety checks that missing data left undecided, per candidate.
    unresolved: dict[tuple[str, str | None, str | None, str | None], set[str]] = {}
    rules_by_ref = index.rules_by_ref
    concerned_by_ref: dict[str, list[tuple[str, str | None, str | None, str | None]]] = {}

    def concerned_keys(ref: str) -> list[tuple[str, str | None, str | None, str | None]]:
        """The candidates a rule waiting for data concerns (the same whichever field it waits for)."""
        keys = concerned_by_ref.get(ref)
        if keys is not None:
            return keys
        rule = rules_by_ref[ref]
        # A rule that targets "the matched candidate" concerns the candidates it could not decide about;
        # static codes concern the candidates they name.
        undecided = {
            (f.values.get("intervention"), f.values.get("region")) for f in run.undecided_candidates.get(ref, [])
        }
        keys = []
        for key, cand in candidates.items():
            concerned = False
            for c in rule.conclusions:
                if isinstance(c, ir.RedFlag):
                    concerned = concerned or elective[cand.intervention]
                elif isinstance(c, ir.Exclude | ir.Precaution):
                    targets_candidate = any(isinstance(x, ir.Ref) for x in c.interventions) and (
                        (cand.intervention, cand.target.region) in undecided
                    )
                    static = tuple(x for x in c.interventions if isinstance(x, str))
                    concerned = (
                        concerned or targets_candidate or _matches(cand, static, c.elective_scope, None, elective)
                    )
            if concerned:
                keys.append(key)
        concerned_by_ref[ref] = keys
        return keys

    needs = r.messages["candidate.unresolved_check"]
    for (_label, path), refs in grouped.items():
        for ref in refs:
            for key in concerned_keys(ref) if candidates else ():
                unresolved.setdefault(key, set()).add(needs.render(rule=ref, field=path))
    for (rule_id, sig), unknowns in run.unknown_blockers.items():
        for key, firing in candidate_firing.items():
            if firing.rule.id == rule_id and firing.signature == sig:
                for u in unknowns:
                    unresolved.setdefault(key, set()).add(
                        needs.render(rule=firing.rule.ref, field=f"{u.fact.label}.{u.field}")
                    )

    final = []
    for key, cand in candidates.items():
        if key in removed:
            continue
        precautions = sorted(
            {_precaution_key(p): p for p in attached.get(key, [])}.values(),
            key=lambda p: (p.kind, p.medication or "", p.text),
        )
        final.append(
            trusted_copy(cand, {"precautions": precautions, "unresolved_checks": sorted(unresolved.get(key, set()))})
        )
    final.sort(key=lambda c: (c.intervention, c.target.region or "", c.target.side or "", c.target.levels or ""))

    ruleset = program.ruleset
    applied: dict[tuple[str, str], DefaultApplied] = {}
    for firing in live:
        for name in index.tagged_defaults.get(firing.rule.ref, ()):
            used = (name, firing.rule.ref)
            static = index.decided.get(firing.rule.ref)
            decided = list(static) if static is not None else _decided(firing.rule, firing.bindings)
            if used in applied:
                decided = sorted({*applied[used].decided, *decided})
            basis = ruleset.parameters[name].default_basis
            assert basis is not None
            applied[used] = trusted(
                DefaultApplied,
                parameter=name,
                value=program.parameters[name],
                basis=basis.kind,
                source=basis.source,
                verification=basis.verification,
                rule=firing.rule.ref,
                decided=decided,
            )
    if run.not_in_effect:
        not_in_effect = r.messages["rule.not_in_effect"].render(date=as_of.isoformat())
        inactive = dict(sorted({**program.disabled, **{ref: not_in_effect for ref in run.not_in_effect}}.items()))
    else:
        inactive = {**index.disabled}
    # The models below are built from values of their field types (trusted): validating them again would cost
    # more than the rest of resolving; the identity check compares their JSON with the validated build's.
    return trusted(
        Assessment,
        patient_id=patient_id,
        as_of=as_of,
        candidates=final,
        excluded=sorted(excluded.values(), key=lambda e: (e.intervention, e.kind, e.reason)),
        precautions=sorted(patient_level, key=lambda p: p.text),
        alerts=sorted(alerts.values(), key=lambda a: (_SEVERITY_ORDER[a.severity], a.code, a.message)),
        referrals=sorted(referrals.values(), key=lambda x: (_URGENCY_ORDER[x.urgency], x.to, x.reason)),
        deferred_referrals=sorted(
            deferred, key=lambda d: (_URGENCY_ORDER[d.referral.urgency], d.referral.to, d.referral.reason)
        ),
        missing_data=missing,
        trace=trace,
        provenance=trusted(
            Provenance,
            ruleset_id=ruleset.id,
            ruleset_version=ruleset.version,
            ruleset_sha256=ruleset.sha256,
            library_version=__version__,
            profile=program.profile,
            parameter_overrides={**index.overrides},
            parameters={**index.parameters},
            backend=backend,
            backend_auto=backend_auto,
            as_of=as_of,
            evaluated_at=datetime.now(timezone.utc) if timestamp else None,  # noqa: UP017
            rules_active=len(program.rules) - len(run.not_in_effect),
            rules_inactive=inactive,
            defaults_applied=[applied[u] for u in sorted(applied)],
        ),
        disclaimer=ruleset.manifest.disclaimer,
    )
