"""Explanations: why each conclusion stands, and why each other intervention is not a candidate.

For a conclusion: the rule ``id@version``, the facts it matched with their values, and for every derived
fact among them the rule that derived it, recursively (the derivation tree).

For an intervention that is not a candidate, every rule that could have proposed it is analysed:
inactive (and why), blocked by an ``unless`` clause (which fact matched it), overridden by a safety rule
(which), waiting for missing data (which field), or failing a condition. A failing condition is shown
with the patient's actual value against the required one, naming the parameter behind a threshold; when
a derived fact is missing, the rules that derive it are analysed in turn (so "no RFA" leads to "the
second block gave 60% relief, below the 80% of facet_block_relief_pct").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..model.assessment import Assessment
from ..model.explanation import (
    Check,
    ConclusionExplanation,
    Derivation,
    Explanation,
    MatchedFact,
    RuleAnalysis,
    WhyNot,
)
from ..model.facts.normalise import Fact, Scalar
from ..ruleset import ir
from .driver import Firing, Run, in_effect
from .match import Unknown, eval_pattern, eval_test, index_by_type
from .program import Program

_SYMBOL = {"eq": "=", "neq": "≠", "lt": "<", "lte": "≤", "gt": ">", "gte": "≥", "in": "one of", "not_in": "none of"}
MAX_DEPTH = 4


def _fact_order(fact: Fact) -> tuple[str, str]:
    """Facts in a stable order: the engines list derived facts in their own firing order."""
    return fact.label, repr(sorted(fact.values.items()))


def _order(firing: Firing) -> tuple[tuple[str, str], ...]:
    """Firings in a stable order (the engine's firing order differs between backends)."""
    return tuple((alias, fact.label + repr(sorted(fact.values.items()))) for alias, fact in firing.bindings.items())


def _fmt(value: Scalar | tuple[Scalar, ...] | None) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _derivers(program: Program, fact_type: str) -> list[ir.Rule]:
    aggregate = next((a for r in program.rules for a in r.aggregates if a.fact_type == fact_type), None)
    if aggregate is not None:
        fact_type = aggregate.source_type
    out = []
    for rule in program.rules:
        for c in rule.conclusions:
            if (isinstance(c, ir.Derive) and c.fact == fact_type) or (
                isinstance(c, ir.Recommend) and fact_type == "candidate"
            ):
                out.append(rule)
                break
    return out


def _member(fact: Fact) -> str:
    date = fact.values.get("date")
    return f"{fact.label} {date}" if date is not None and str(date) not in fact.label else fact.label


def _resolve(value: ir.Value | None, firing: Firing) -> Scalar | None:
    if isinstance(value, ir.Ref):
        fact = firing.bindings.get(value.alias)
        return fact.get(value.field) if fact is not None else None
    return value


def _concerns(firing: Firing, intervention: str | None, region: str | None) -> bool:
    """Whether a firing concluded about this intervention (and region): a rule that excludes
    ``candidate.intervention`` fires once per candidate, and each firing explains only its own."""
    if intervention is None:
        return True
    about: list[bool] = []
    for c in firing.rule.conclusions:
        if isinstance(c, ir.Recommend):
            target_region = _resolve(dict(c.target).get("region"), firing)
            about.append(c.intervention == intervention and (region is None or target_region in (None, region)))
        elif isinstance(c, ir.Exclude | ir.Precaution):
            codes = [_resolve(i, firing) for i in c.interventions]
            about.append(c.elective_scope or intervention in codes)
    return not about or any(about)


@dataclass
class _Explainer:
    program: Program
    run: Run
    unbound: Mapping[str, ir.Rule]  # rule id -> rule with parameter names (for display)

    def matched(self, bindings: Mapping[str, Fact], depth: int = 0) -> list[MatchedFact]:
        out = []
        aggregated = self.run.aggregated
        for alias, fact in bindings.items():
            derivations = []
            source = aggregated.sources.get(fact.key, fact)  # a latest/earliest copy: derived as its source was
            if source.derived and depth < MAX_DEPTH:
                for firing in sorted(self.run.derived_by.get(source.key, []), key=_order)[:2]:
                    derivations.append(
                        Derivation(rule=firing.rule.ref, matched=self.matched(firing.bindings, depth + 1))
                    )
            members = aggregated.members.get(fact.key, ())
            out.append(
                MatchedFact(
                    alias=alias,
                    fact=fact.label,
                    values=dict(sorted(fact.values.items())),
                    derived_by=derivations,
                    aggregated_from=[_member(f) for f in sorted(members, key=_fact_order)],
                )
            )
        return out

    def shown(self, fact: Fact) -> str:
        """A fact's label; for a count, with the first facts it counted."""
        members = self.run.aggregated.members.get(fact.key)
        if not members or fact.key in self.run.aggregated.sources:
            return fact.label
        listed = ", ".join(_member(f) for f in sorted(members, key=_fact_order)[:3])
        return f"{fact.label} ({listed}{', ...' if len(members) > 3 else ''})"

    # -- conditions --------------------------------------------------------------------------------

    def describe(self, test: ir.Test) -> str:
        if test.op == "present":
            return f"{test.field} recorded"
        if test.op == "absent":
            return f"{test.field} not recorded"
        operand = test.operand
        if isinstance(operand, ir.Param):
            shown = f"{_fmt(self.program.parameters.get(operand.name))} (parameter {operand.name})"
        elif isinstance(operand, ir.Ref):
            shown = str(operand)
        else:
            shown = _fmt(operand)
        return f"{test.field} {_SYMBOL[test.op]} {shown}"

    def checks_for(self, rule: ir.Rule, index: int, fact: Fact, bound: Mapping[str, Fact]) -> list[Check]:
        """The conditions of pattern ``index`` that ``fact`` fails (or cannot decide)."""
        pattern = rule.patterns[index] if index < len(rule.patterns) else None
        shown_rule = self.unbound.get(rule.id, rule)
        if pattern is None:
            return []
        shown = shown_rule.patterns[index] if index < len(shown_rule.patterns) else pattern
        out: list[Check] = []
        for node, shown_node in zip(pattern.tests, shown.tests, strict=False):
            tests = (
                [
                    (t, s)
                    for b, sb in zip(node.branches, shown_node.branches, strict=False)
                    for t, s in zip(b, sb, strict=False)
                ]
                if isinstance(node, ir.AnyOf) and isinstance(shown_node, ir.AnyOf)
                else [(node, shown_node)]
            )
            results = []
            for test, shown_test in tests:
                assert isinstance(test, ir.Test) and isinstance(shown_test, ir.Test)
                unknowns: list[Unknown] = []
                truth = eval_test(test, fact, bound, unknowns)
                actual = fact.values.get(test.field)
                other = ""
                if isinstance(test.operand, ir.Ref):
                    other = f" ({test.operand} = {_fmt(bound[test.operand.alias].values.get(test.operand.field))})"
                results.append(
                    (
                        truth,
                        Check(
                            pattern=f"{pattern.alias} ({ir.type_label(pattern.fact_type)})",
                            fact=fact.label,
                            condition=self.describe(shown_test),
                            actual=_fmt(actual) + other,
                            outcome="missing" if truth is None else "failed",
                        ),
                    )
                )
            if isinstance(node, ir.AnyOf):
                if not any(t is True for t, _ in results):
                    joined = " or ".join(c.condition for _, c in results)
                    worst = "missing" if any(t is None for t, _ in results) else "failed"
                    out.append(
                        Check(
                            pattern=results[0][1].pattern,
                            fact=fact.label,
                            condition=f"any of: {joined}",
                            actual="; ".join(f"{c.condition.split(' ')[0]} = {c.actual}" for _, c in results),
                            outcome=worst,
                        )
                    )
            else:
                out.extend(c for t, c in results if t is not True)
        return out

    # -- rules -------------------------------------------------------------------------------------

    def analyse(self, rule: ir.Rule, depth: int = 0) -> RuleAnalysis:
        by_type = index_by_type(self.run.facts)
        firings = sorted((f for f in self.run.firings if f.rule.id == rule.id), key=_order)
        blocked = [f for f in firings if self.run.is_blocked(f)]
        if firings and len(blocked) < len(firings):
            return RuleAnalysis(rule=rule.ref, outcome="fired")
        if blocked:
            details = []
            for firing in blocked[:3]:
                for index in sorted(self.run.blocked[(rule.id, firing.signature)]):
                    clause = next(b for b in rule.blockers if b.index == index)
                    hits = [
                        f
                        for f in sorted(by_type.get(clause.pattern.fact_type, []), key=_fact_order)
                        if f not in firing.bindings.values() and eval_pattern(clause.pattern, f, firing.bindings, None)
                    ]
                    facts = "; ".join(self.shown(f) for f in hits[:3]) or "a matching fact"
                    name = ir.type_label(clause.pattern.fact_type)
                    details.append(f"unless[{index}] ({clause.pattern.alias}: {name}) matched {facts}")
            return RuleAnalysis(rule=rule.ref, outcome="blocked", details=details)
        missing = self.run.missing.get(rule.ref, [])
        checks, because = self.best_attempt(rule, by_type, depth)
        if missing:
            fields = sorted({f"{u.fact.label}.{u.field}" for u in missing})
            return RuleAnalysis(
                rule=rule.ref,
                outcome="missing data",
                details=[f"needs {f}" for f in fields],
                checks=checks,
                because=because,
            )
        return RuleAnalysis(rule=rule.ref, outcome="condition failed", checks=checks, because=because)

    def best_attempt(
        self, rule: ir.Rule, by_type: Mapping[str, Sequence[Fact]], depth: int
    ) -> tuple[list[Check], list[RuleAnalysis]]:
        """Bind patterns greedily to the facts that fail fewest conditions; report what fails."""
        bound: dict[str, Fact] = {}
        checks: list[Check] = []
        because: list[RuleAnalysis] = []
        for index, pattern in enumerate(rule.patterns):
            free = [f for f in by_type.get(pattern.fact_type, []) if f not in bound.values()]
            # Selector conditions (field = literal, field in [...]) say which facts are relevant at all.
            selectors = [
                t
                for t in pattern.tests
                if isinstance(t, ir.Test) and t.op in ("eq", "in") and not isinstance(t.operand, ir.Ref | ir.Param)
            ]
            options = [f for f in free if all(eval_test(t, f, bound, None) for t in selectors)]
            if not options:
                wanted = ", ".join(self.describe(t) for t in selectors)
                article = "another" if any(f.type == pattern.fact_type for f in bound.values()) else "a"
                name = ir.type_label(pattern.fact_type)
                checks.append(
                    Check(
                        pattern=f"{pattern.alias} ({name})",
                        fact=None,
                        condition=f"{article} {name} fact" + (f" with {wanted}" if wanted else ""),
                        actual="none recorded" if not free else f"{len(free)} {name} fact(s), none with {wanted}",
                        outcome="no such fact",
                    )
                )
                because.extend(self.why_no_fact(pattern.fact_type, depth))
                break
            scored = sorted(
                ((self.checks_for(rule, index, f, bound), f) for f in options),
                key=lambda cf: (len(cf[0]), _fact_order(cf[1])),
            )
            best_checks, best = scored[0]
            bound[pattern.alias] = best
            checks.extend(best_checks)
            if (
                best_checks
                and any(c.outcome == "failed" for c in best_checks)
                and pattern.fact_type not in ("patient",)
                and self.derivers(pattern.fact_type)
            ):
                because.extend(self.why_no_fact(pattern.fact_type, depth))
        return checks, because

    def derivers(self, fact_type: str) -> list[ir.Rule]:
        """The rules that make facts of this type (for an aggregate: of the type it selects); the program's, so
        found once per program and fact type (kept in ``program.cache``, bounded by the fact types)."""
        known = self.program.cache.setdefault("explain.derivers", {})
        assert isinstance(known, dict)
        made = known.get(fact_type)
        if made is None:
            made = known[fact_type] = tuple(_derivers(self.program, fact_type))
        return list(made)

    def why_no_fact(self, fact_type: str, depth: int) -> list[RuleAnalysis]:
        if depth >= MAX_DEPTH or fact_type == "candidate":
            return []
        out = []
        for rule in self.derivers(fact_type):
            # A deriving rule that fired may still have failed for other facts: explain those failures.
            by_type = index_by_type(self.run.facts)
            first = rule.patterns[0]
            fired_on = {f.bindings[first.alias].key for f in self.run.firings if f.rule.id == rule.id}
            for fact in sorted(by_type.get(first.fact_type, []), key=_fact_order):
                if fact.key in fired_on:
                    continue
                checks = self.checks_for(rule, 0, fact, {})
                if checks:
                    out.append(RuleAnalysis(rule=rule.ref, outcome="condition failed", checks=checks))
            if not by_type.get(first.fact_type):
                out.append(self.analyse(rule, depth + 1))
        return out


def explain_run(program: Program, run: Run, assessment: Assessment, unbound: Mapping[str, ir.Rule]) -> Explanation:
    ex = _Explainer(program, run, unbound)
    conclusions: list[ConclusionExplanation] = []
    by_rule: dict[str, list[Firing]] = {}
    for firing in run.firings:
        if not run.is_blocked(firing):
            by_rule.setdefault(firing.rule.ref, []).append(firing)

    explained: set[tuple[str, str]] = set()

    def add(what: str, rule_ref: str, intervention: str | None = None, region: str | None = None) -> None:
        if (what, rule_ref) in explained:  # e.g. two alerts of one code from one rule: explain the firings once
            return
        explained.add((what, rule_ref))
        firings = [f for f in by_rule.get(rule_ref, []) if _concerns(f, intervention, region)]
        for firing in sorted(firings, key=_order)[:3]:
            conclusions.append(
                ConclusionExplanation(conclusion=what, rule=rule_ref, matched=ex.matched(firing.bindings))
            )

    # Each conclusion leads with its decisive reason (the rationale, message or reason the rule wrote), then the
    # facts behind it.
    for c in assessment.candidates:
        add(
            f"candidate {c.intervention} ({c.target.region or 'no region'}): {c.rationale}",
            c.basis.rule,
            c.intervention,
            c.target.region,
        )
    for e in assessment.excluded:
        add(f"excluded {e.intervention}: {e.reason}", e.basis.rule, e.intervention)
    for a in assessment.alerts:
        add(f"alert {a.code}: {a.message.splitlines()[0]}", a.basis.rule)
    for r in assessment.referrals:
        add(f"referral {r.to} ({r.urgency}): {r.reason.splitlines()[0]}", r.basis.rule)
    for d in assessment.deferred_referrals:
        add(
            f"referral {d.referral.to} ({d.referral.urgency}), deferred by a red flag: "
            f"{d.referral.reason.splitlines()[0]}",
            d.referral.basis.rule,
        )

    candidates = {c.intervention for c in assessment.candidates}
    excluded = {e.intervention: e for e in assessment.excluded}
    why_not: list[WhyNot] = []
    for code, item in sorted(program.ruleset.interventions.items()):
        if code in candidates:
            continue
        analyses: list[RuleAnalysis] = []
        for rule in program.ruleset.rules:
            if not any(isinstance(c, ir.Recommend) and c.intervention == code for c in rule.conclusions):
                continue
            active = next((r for r in program.rules if r.id == rule.id), None)
            if active is None:
                analyses.append(
                    RuleAnalysis(
                        rule=rule.ref, outcome="inactive", details=[program.disabled.get(rule.ref, "not active")]
                    )
                )
            elif not in_effect(active, assessment.as_of):
                analyses.append(
                    RuleAnalysis(
                        rule=rule.ref, outcome="inactive", details=[f"not in effect on {assessment.as_of.isoformat()}"]
                    )
                )
            else:
                analysis = ex.analyse(active)
                if analysis.outcome == "fired" and code in excluded:
                    e = excluded[code]
                    analysis = RuleAnalysis(
                        rule=rule.ref,
                        outcome="overridden",
                        details=[f"{e.kind.replace('_', ' ')} by {e.basis.rule}: {e.reason}"],
                    )
                analyses.append(analysis)
        if code in excluded and not analyses:
            e = excluded[code]
            analyses.append(RuleAnalysis(rule=e.basis.rule, outcome="overridden", details=[e.reason]))
        why_not.append(
            WhyNot(
                intervention=code,
                name=item.name,
                status="excluded" if code in excluded else "not proposed",
                reason=excluded[code].reason if code in excluded else "",
                rules=analyses,
            )
        )
    titles = {r.ref: r.title for r in program.ruleset.rules}

    def titled(a: RuleAnalysis) -> RuleAnalysis:
        return a.model_copy(update={"title": titles.get(a.rule, ""), "because": [titled(b) for b in a.because]})

    why_not = [w.model_copy(update={"rules": [titled(a) for a in w.rules]}) for w in why_not]
    return Explanation(assessment=assessment, conclusions=conclusions, why_not=why_not)


def render_explanation(ex: Explanation) -> str:
    lines = [f"Explanation as of {ex.assessment.as_of.isoformat()} ({ex.assessment.provenance.profile})", ""]
    lines.append("WHY EACH CONCLUSION")

    def facts(matched: Sequence[MatchedFact], indent: str) -> None:
        for m in matched:
            values = ", ".join(f"{k}={_fmt(v)}" for k, v in m.values.items())
            lines.append(f"{indent}{m.alias}: {m.fact} {{{values}}}")
            for d in m.derived_by:
                lines.append(f"{indent}  derived by {d.rule} from:")
                facts(d.matched, indent + "    ")

    for c in ex.conclusions:
        lines.append(f"* {c.conclusion}")
        lines.append(f"  rule {c.rule}, matched:")
        facts(c.matched, "    ")
    lines += ["", "WHY NOT"]

    def analysis(a: RuleAnalysis, indent: str, lead: str = "- ") -> None:
        lines.append(f"{indent}{lead}{a.rule}" + (f" ({a.title})" if a.title else "") + f": {a.outcome}")
        for d in a.details:
            lines.append(f"{indent}    {d}")
        for c in a.checks:
            where = f" in {c.fact}" if c.fact else ""
            lines.append(f"{indent}    {c.outcome}: {c.condition}; actual {c.actual}{where}")
        for b in a.because:
            analysis(b, indent + "    ", "because ")

    for w in ex.why_not:
        lines.append(f"x {w.name} [{w.intervention}] - {w.status}" + (f": {w.reason}" if w.reason else ""))
        for a in w.rules:
            analysis(a, "  ")
    if ex.assessment.requested:  # the verdicts on requested procedures, with their reasons and judgements
        from ..model.render_verdicts import requested_section

        lines += ["", *requested_section(ex.assessment)]
    return "\n".join(lines).rstrip("\n") + "\n"
