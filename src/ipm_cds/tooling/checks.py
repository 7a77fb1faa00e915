"""Semantic checks for ``ipm-cds validate``, beyond what loading already refuses.

Errors: conditions that can never hold (``gte: 80`` with ``lt: 50`` on one field, under some profile),
rules that can never fire (they need a fact no active rule produces under a profile), a rule that
recommends and excludes the same intervention. Warnings, each with a code: catalogue entries nothing
uses (``unused-*``), rules that can never fire under a profile (``never-fires``), joins that grow faster than
linearly (``superlinear-join``), and the linter's (:mod:`ipm_cds.tooling.lint`).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..engine.program import build_program
from ..errors import Problem
from ..model.facts.schema import INPUT_FACT_TYPES
from ..ruleset import ir
from ..ruleset.loader import Ruleset
from .lint import lint

_NUMERIC = (int, float)


def _literal_tests(pattern: ir.Pattern) -> dict[str, list[ir.Test]]:
    """Top-level tests with literal operands, by field (any_of branches are not conjunctive)."""
    out: dict[str, list[ir.Test]] = {}
    for node in pattern.tests:
        if isinstance(node, ir.Test) and not isinstance(node.operand, ir.Ref | ir.Param):
            out.setdefault(node.field, []).append(node)
    return out


def unsatisfiable(tests: list[ir.Test]) -> str | None:
    """Why a conjunction of tests on one field can never hold, or None."""
    low: tuple[float, bool] | None = None  # (bound, inclusive)
    high: tuple[float, bool] | None = None
    equal: set[object] | None = None
    excluded: set[object] = set()
    needs_value = absent = False
    for t in tests:
        if t.op == "absent":
            absent = True
            continue
        needs_value = True
        if t.op == "present":
            continue
        operand = t.operand
        values: set[object] = set(operand) if isinstance(operand, tuple) else {operand}
        if t.op in ("eq", "in"):
            equal = values if equal is None else equal & values
        elif t.op in ("neq", "not_in"):
            excluded |= values
        elif isinstance(operand, _NUMERIC) and not isinstance(operand, bool):
            value = float(operand)
            if t.op in ("gt", "gte"):
                bound = (value, t.op == "gte")
                if low is None or bound[0] > low[0] or (bound[0] == low[0] and not bound[1]):
                    low = bound
            else:
                bound = (value, t.op == "lte")
                if high is None or bound[0] < high[0] or (bound[0] == high[0] and not bound[1]):
                    high = bound
    if absent and needs_value:
        return "requires the value to be both recorded and not recorded"
    if equal is not None:
        remaining = {v for v in equal if v not in excluded}
        if low is not None:
            remaining = {v for v in remaining if isinstance(v, _NUMERIC) and (v > low[0] or (low[1] and v == low[0]))}
        if high is not None:
            remaining = {
                v for v in remaining if isinstance(v, _NUMERIC) and (v < high[0] or (high[1] and v == high[0]))
            }
        if not remaining:
            return "no value satisfies every condition"
    empty = (
        low is not None and high is not None and (low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1])))
    )
    if empty and low is not None and high is not None:
        lo = (">=" if low[1] else ">") + f" {low[0]:g}"
        hi = ("<=" if high[1] else "<") + f" {high[0]:g}"
        return f"requires {lo} and {hi}"
    return None


def semantic_problems(ruleset: Ruleset) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for profile in ruleset.manifest.profiles:
        program = build_program(ruleset, profile)
        producible = set(INPUT_FACT_TYPES)
        changed = True
        while changed:
            changed = False
            for rule in program.rules:
                for aggregate in rule.aggregates:  # a count without groups always makes its one fact
                    if aggregate.fact_type not in producible and (
                        aggregate.source_type in producible or (aggregate.function == "count" and not aggregate.by)
                    ):
                        producible.add(aggregate.fact_type)
                        changed = True
                if all(p.fact_type in producible for p in rule.patterns):
                    for c in rule.conclusions:
                        made = (
                            c.fact if isinstance(c, ir.Derive) else "candidate" if isinstance(c, ir.Recommend) else None
                        )
                        if made and made not in producible:
                            producible.add(made)
                            changed = True
        for rule in program.rules:
            for pattern in rule.patterns:
                for field, tests in _literal_tests(pattern).items():
                    why = unsatisfiable(tests)
                    key = (rule.id, f"{pattern.alias}.{field}:{why}")
                    if why and key not in seen:
                        seen.add(key)
                        problems.append(
                            Problem(
                                f"rule {rule.id}: condition on {pattern.alias}.{field} can never hold under profile "
                                f"{profile}: {why}",
                                tests[0].location or pattern.location,
                                hint="check the thresholds and their parameters",
                            )
                        )
            missing = sorted({p.fact_type for p in rule.patterns} - producible)
            key = (rule.id, f"never:{missing}")
            if missing and key not in seen:
                seen.add(key)
                problems.append(
                    Problem(
                        f"rule {rule.id} can never fire under profile {profile}: no active rule derives "
                        f"{', '.join(missing)}",
                        rule.location,
                        hint="the rules that derive it are inactive under this profile (see provenance.rules_inactive)",
                        severity="warning",
                        code="never-fires",
                    )
                )
    for rule in ruleset.rules:
        recommended = {c.intervention for c in rule.conclusions if isinstance(c, ir.Recommend)}
        excluded = {
            x for c in rule.conclusions if isinstance(c, ir.Exclude) for x in c.interventions if isinstance(x, str)
        }
        both = sorted(recommended & excluded)
        if both:
            problems.append(
                Problem(
                    f"rule {rule.id} both recommends and excludes {', '.join(both)}",
                    rule.location,
                    hint="split it: a recommendation and a safety rule",
                )
            )
    problems.extend(_unused(ruleset))
    problems.extend(_superlinear_joins(ruleset))
    problems.extend(lint(ruleset))
    return problems


BOUNDED_FACT_TYPES = frozenset(
    {"patient", "opioid_summary", "exam_summary", "medication_summary", "procedure_history", "procedure_group_history"}
)
"""Input fact types whose number does not grow with the record: one per patient, or one per catalogue group."""


def _one_rank(pattern: ir.Pattern) -> bool:
    """A pattern on a latest/earliest aggregate that picks one rank: ties on one date at most."""
    return any(isinstance(t, ir.Test) and t.field == "rank" and t.op == "eq" for t in pattern.tests)


def _superlinear_joins(ruleset: Ruleset) -> Iterable[Problem]:
    """Warn on a rule (with one of its unless clauses) that binds two or more facts of one type: the
    combinations it enumerates grow as n², n³, ... with the length of the patient's record."""
    for rule in ruleset.rules:
        clauses = [rule.patterns] + [(*rule.patterns, b.pattern) for b in rule.blockers]
        warned: set[str] = set()
        for patterns in clauses:
            by_type: dict[str, list[ir.Pattern]] = {}
            for pattern in patterns:
                by_type.setdefault(pattern.fact_type, []).append(pattern)
            for fact_type, same in by_type.items():
                if (
                    len(same) < 2
                    or fact_type in BOUNDED_FACT_TYPES
                    or fact_type in warned
                    or "@count." in fact_type  # one fact per group
                    or all(_one_rank(p) for p in same)
                ):
                    continue
                warned.add(fact_type)
                aliases = ", ".join(p.alias for p in same)
                yield Problem(
                    f"rule {rule.id} joins {len(same)} {fact_type} facts ({aliases}): the combinations it tries "
                    f"grow as n^{len(same)} with the number of {fact_type} facts",
                    same[-1].location or rule.location,
                    hint="for 'the latest', 'a newer one exists' or 'the n-th most recent' use latest: {...} "
                    "(with rank), for 'how many' count_of: {...} (docs/rule-files.md, aggregates)",
                    severity="warning",
                    code="superlinear-join",
                )


def _unused(ruleset: Ruleset) -> Iterable[Problem]:
    used_interventions: set[str] = set()
    used_referrals: set[str] = set()
    used_sources: set[str] = {ruleset.manifest.settings.rolling_window_source}
    used_params: set[str] = set()
    for rule in ruleset.rules:
        used_sources.update(rule.sources)
        used_params |= rule.params()
        for c in rule.conclusions:
            if isinstance(c, ir.Recommend):
                used_interventions.add(c.intervention)
            elif isinstance(c, ir.Exclude | ir.Precaution):
                used_interventions.update(x for x in c.interventions if isinstance(x, str))
            elif isinstance(c, ir.Refer):
                used_referrals.add(c.to)
    for item in ruleset.interventions.values():
        used_sources.update(item.sources)
        used_sources.add(item.bleeding_risk.source)
    for param in ruleset.parameters.values():
        used_sources.add(param.source)
    for med in ruleset.medications.values():
        used_sources.update(s for s in (med.source, med.mme_source) if s)

    def warn(kind: str, names: Iterable[str]) -> Iterable[Problem]:
        for name in sorted(names):
            yield Problem(
                f"{kind} {name!r} is not used by any rule",
                None,
                severity="warning",
                code="unused-" + kind.replace(" ", "-"),
            )

    yield from warn("intervention", set(ruleset.interventions) - used_interventions)
    yield from warn("referral target", set(ruleset.referrals) - used_referrals)
    yield from warn("parameter", set(ruleset.parameters) - used_params)
    for name in sorted(set(ruleset.sources) - used_sources):
        yield Problem(f"source {name!r} is not cited anywhere", None, severity="warning", code="unused-source")
