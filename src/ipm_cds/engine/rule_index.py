"""What the program's rules say about interventions, as indexes cached on the program (computed once per
program, read by :mod:`.verdicts` for every requested procedure): which rules recommend an intervention, which
rules derive what another reads, which can stand against a procedure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..ruleset import ir
from .program import Program


def recommenders(program: Program) -> Mapping[str, tuple[tuple[ir.Rule, tuple[ir.Recommend, ...]], ...]]:
    """Intervention code -> every rule of the ruleset (active or not) that recommends it, with those conclusions."""
    cached = program.cache.get("verdicts.recommenders")
    if cached is None:
        found: dict[str, list[tuple[ir.Rule, tuple[ir.Recommend, ...]]]] = {}
        for rule in program.ruleset.rules:
            recs = [c for c in rule.conclusions if isinstance(c, ir.Recommend)]
            for code in dict.fromkeys(c.intervention for c in recs):
                found.setdefault(code, []).append((rule, tuple(c for c in recs if c.intervention == code)))
        cached = {code: tuple(v) for code, v in found.items()}
        program.cache["verdicts.recommenders"] = cached
    assert isinstance(cached, dict)
    return cached


def upstream(program: Program) -> Mapping[str, tuple[str, ...]]:
    """Rule id -> refs of the rules that derive, directly or through others, the facts it reads: an indication
    rule waits for data when a rule it depends on does (``esi.initial`` on ``esi.indication.radicular``)."""
    cached = program.cache.get("verdicts.upstream")
    if cached is None:
        program.cache["verdicts.upstream"] = cached = _derived_from(program.rules)
    assert isinstance(cached, dict)
    return cached


def upstream_all(program: Program) -> Mapping[str, tuple[str, ...]]:
    """As :func:`upstream`, over every rule of the ruleset, those that do not run too (a derivation that cannot
    run for want of a threshold leaves the indication that reads it unproven)."""
    cached = program.cache.get("verdicts.upstream_all")
    if cached is None:
        program.cache["verdicts.upstream_all"] = cached = _derived_from(program.ruleset.rules)
    assert isinstance(cached, dict)
    return cached


def _derived_from(rules: Sequence[ir.Rule]) -> dict[str, tuple[str, ...]]:
    makers: dict[str, set[str]] = {}
    for rule in rules:
        for c in rule.conclusions:
            if isinstance(c, ir.Derive):
                makers.setdefault(c.fact, set()).add(rule.id)
    by_id = {r.id: r for r in rules}

    def reads(rule: ir.Rule) -> set[str]:
        types = {p.fact_type for p in rule.patterns} | {b.pattern.fact_type for b in rule.blockers}
        return types | {a.source_type for a in rule.aggregates}

    made: dict[str, tuple[str, ...]] = {}
    for rule in rules:
        seen: set[str] = set()
        todo = [rule.id]
        while todo:
            for t in reads(by_id[todo.pop()]):
                for maker in makers.get(t, ()):
                    if maker not in seen and maker != rule.id:
                        seen.add(maker)
                        todo.append(maker)
        made[rule.id] = tuple(sorted(by_id[m].ref for m in seen))
    return made


def may_concern(rule: ir.Rule, exclusion: ir.Exclude, code: str, elective: bool) -> bool:
    """Whether an exclusion of a rule that cannot run could concern this intervention: it names it (or every
    elective procedure), or it excludes a matched candidate whose pattern does not rule the intervention out."""
    if exclusion.elective_scope:
        return elective
    static = {x for x in exclusion.interventions if isinstance(x, str)}
    if code in static:
        return True
    if len(static) == len(exclusion.interventions):
        return False  # names other interventions only
    for pattern in rule.patterns:
        if pattern.fact_type != "candidate":
            continue
        for test in pattern.tests:
            if isinstance(test, ir.Test) and test.field == "intervention":
                allowed = test.operand if isinstance(test.operand, tuple | list) else (test.operand,)
                if test.op in ("eq", "in") and code not in allowed:
                    return False
    return True


def active_rules(program: Program) -> Mapping[str, ir.Rule]:
    cached = program.cache.get("verdicts.active")
    if cached is None:
        cached = {r.id: r for r in program.rules}
        program.cache["verdicts.active"] = cached
    assert isinstance(cached, dict)
    return cached


def may_block(program: Program, ref: str) -> bool:
    """Whether a rule could stand against a procedure: it raises a red flag or excludes (absolute or unmet)."""
    blocking = program.cache.get("verdicts.blocking")
    if blocking is None:
        blocking = {
            r.ref
            for r in program.rules
            if any(
                isinstance(c, ir.RedFlag) or (isinstance(c, ir.Exclude) and c.severity != "relative")
                for c in r.conclusions
            )
        }
        program.cache["verdicts.blocking"] = blocking
    assert isinstance(blocking, set)
    return ref in blocking


SafetyPlan = tuple[str, bool, tuple[tuple[bool, tuple[str, ...]], ...], bool]
"""A safety rule's ref; whether it raises a red flag; for each exclusion or precaution, whether it is about
every elective procedure and the codes it names; whether any conclusion could be about a matched candidate (an
exclusion, precaution, hold, alert or referral)."""


def safety_plans(program: Program) -> tuple[SafetyPlan, ...]:
    """What a requested procedure's verdict asks of each safety rule of the program, read once per program."""
    cached = program.cache.get("verdicts.safety_plans")
    if cached is None:
        plans: list[SafetyPlan] = []
        for rule in program.rules:
            if not rule.safety:
                continue
            scopes = tuple(
                (c.elective_scope, tuple(x for x in c.interventions if isinstance(x, str)))
                for c in rule.conclusions
                if isinstance(c, ir.Exclude | ir.Precaution)
            )
            about_candidate = any(
                isinstance(c, ir.Exclude | ir.Precaution | ir.AntithromboticHold | ir.Alert | ir.Refer)
                for c in rule.conclusions
            )
            red_flag = any(isinstance(c, ir.RedFlag) for c in rule.conclusions)
            plans.append((rule.ref, red_flag, scopes, about_candidate))
        program.cache["verdicts.safety_plans"] = cached = tuple(plans)
    assert isinstance(cached, tuple)
    return cached


def unset_rules(program: Program) -> tuple[ir.Rule, ...]:
    """The ruleset's rules that do not run because a parameter they read has no value under the profile (active,
    and part of the profile, otherwise)."""
    cached = program.cache.get("verdicts.unset")
    if cached is None:
        cached = tuple(
            r
            for r in program.ruleset.rules
            if r.ref in program.disabled
            and r.params() - set(program.parameters)
            and program.ruleset.rule_specs[r.id].status == "active"  # off for its status or profile: chosen
            and (r.profiles is None or program.profile in r.profiles)
        )
        program.cache["verdicts.unset"] = cached
    assert isinstance(cached, tuple)
    return cached


def statically_concerned(program: Program, code: str, elective: bool) -> frozenset[str]:
    """Refs of the safety rules that concern every procedure of this code whatever the record holds: a red flag
    (for an elective procedure), or an exclusion or precaution naming the code (or every elective procedure)."""
    known = program.cache.setdefault("verdicts.statically_concerned", {})
    assert isinstance(known, dict)
    refs = known.get((code, elective))
    if refs is None:
        refs = known[(code, elective)] = frozenset(
            ref
            for ref, red_flag, scopes, _about in safety_plans(program)
            if (red_flag and elective) or any((scoped and elective) or code in static for scoped, static in scopes)
        )
    assert isinstance(refs, frozenset)
    return refs


def about_candidates(program: Program) -> frozenset[str]:
    """Refs of the safety rules with a conclusion that could be about a matched candidate (see
    :func:`safety_plans`)."""
    cached = program.cache.get("verdicts.about_candidates")
    if cached is None:
        cached = frozenset(ref for ref, _flag, _scopes, about in safety_plans(program) if about)
        program.cache["verdicts.about_candidates"] = cached
    assert isinstance(cached, frozenset)
    return cached
