"""The ruleset linter: warnings, each with a code, for what loads and runs but is probably not what was meant.

``ipm-cds validate`` runs it after the checks that refuse a ruleset. Its warnings never fail validation;
CI can choose to (``validate --format sarif`` gives each its rule id for code-scanning tools). The codes:

- ``no-default``: a parameter with no value under any profile; every rule that reads it is off until a
  deployment sets it.
- ``off-under-profile``: a rule that is off under one profile because a parameter it reads has no value
  there (other profiles run it).
- ``untested``: no test case expects the rule to fire.
- ``no-near-miss``: no test case shows the rule not firing (``not_fired``), so nothing pins its boundary.
- ``exclusion-never-proposed``: an exclusion or precaution for an intervention that no rule proposes; it
  speaks only when the intervention is requested or a later rule proposes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import Problem, SourceLocation
from ..ruleset import ir
from ..ruleset.loader import Ruleset

LINT_CODES: dict[str, str] = {
    "no-default": "A parameter with no value under any profile switches off the rules that read it.",
    "off-under-profile": "A rule is off under a profile because a parameter it reads has no value there.",
    "untested": "No test case expects the rule to fire.",
    "no-near-miss": "No test case shows the rule not firing (a near miss pins its boundary).",
    "exclusion-never-proposed": "An exclusion or precaution names an intervention no rule proposes.",
}
"""Every linter code with what it means (the SARIF rule descriptions)."""


def lint(ruleset: Ruleset) -> list[Problem]:
    """Every linter warning for a loaded ruleset, in a stable order."""
    return [*_no_default(ruleset), *_off_under_profile(ruleset), *_untested(ruleset), *_never_proposed(ruleset)]


def _entry(ruleset: Ruleset, catalogue: str, key: str) -> SourceLocation | None:
    found = ruleset.catalogue_entries.get((catalogue, key))
    return found[1] if found is not None else None


def _readers(ruleset: Ruleset) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rule in ruleset.rules:
        for name in sorted(rule.params()):
            out.setdefault(name, []).append(rule.id)
    return out


def _no_default(ruleset: Ruleset) -> Iterable[Problem]:
    readers = _readers(ruleset)
    profiles = list(ruleset.manifest.profiles)
    for name, param in sorted(ruleset.parameters.items()):
        if all(param.value(p) is None for p in profiles) and name in readers:
            rules = readers[name]
            these = (
                f"the {len(rules)} rules reading it ({', '.join(rules)}) are"
                if len(rules) > 1
                else (f"the rule reading it ({rules[0]}) is")
            )
            yield Problem(
                f"parameter {name} has no value under any profile: {these} off by default",
                _entry(ruleset, "parameters", name),
                hint="give it a default from its source (tagged with its verification), or profile values",
                severity="warning",
                code="no-default",
            )


def _off_under_profile(ruleset: Ruleset) -> Iterable[Problem]:
    profiles = list(ruleset.manifest.profiles)
    for rule in ruleset.rules:
        spec = ruleset.rule_specs[rule.id]
        if spec.status != "active":
            continue
        off: dict[str, list[str]] = {}
        for profile in profiles if rule.profiles is None else [p for p in profiles if p in rule.profiles]:
            unset = sorted(p for p in rule.params() if ruleset.parameters[p].value(profile) is None)
            # a parameter unset everywhere is no-default's warning; this one is about profiles that differ
            unset = [p for p in unset if any(ruleset.parameters[p].value(q) is not None for q in profiles)]
            if unset:
                off.setdefault(", ".join(unset), []).append(profile)
        for params, where in sorted(off.items()):
            yield Problem(
                f"rule {rule.id} is off under profile{'s' if len(where) > 1 else ''} {', '.join(where)}: "
                f"{params} {'has' if ',' not in params else 'have'} no value there",
                rule.location,
                hint="intended when the profile's source gives no value; else add the profile's value, or "
                "limit the rule with profiles: [...]",
                severity="warning",
                code="off-under-profile",
            )


def _untested(ruleset: Ruleset) -> Iterable[Problem]:
    if not ruleset.tests:  # loaded without its test files: nothing to say
        return
    fired = {rid for t in ruleset.tests for rid in t.case.expect.fired}
    not_fired = {rid for t in ruleset.tests for rid in t.case.expect.not_fired}
    for rule in ruleset.rules:
        if ruleset.rule_specs[rule.id].status != "active":
            continue
        if rule.id not in fired:
            yield Problem(
                f"no test case expects rule {rule.id} to fire",
                rule.location,
                hint="add a case with the rule under expect.fired",
                severity="warning",
                code="untested",
            )
        elif rule.id not in not_fired:
            yield Problem(
                f"no test case shows rule {rule.id} not firing",
                rule.location,
                hint="add a near miss (just under a threshold, one criterion unmet) with it under expect.not_fired",
                severity="warning",
                code="no-near-miss",
            )


def _never_proposed(ruleset: Ruleset) -> Iterable[Problem]:
    proposed = {c.intervention for rule in ruleset.rules for c in rule.conclusions if isinstance(c, ir.Recommend)}
    for rule in ruleset.rules:
        named = sorted(
            {
                x
                for c in rule.conclusions
                if isinstance(c, ir.Exclude | ir.Precaution)
                for x in c.interventions
                if isinstance(x, str) and x not in proposed
            }
        )
        if named:
            yield Problem(
                f"rule {rule.id} excludes or cautions {', '.join(named)}, which no rule proposes",
                rule.location,
                hint="it speaks only for a requested procedure; check the intervention code",
                severity="warning",
                code="exclusion-never-proposed",
            )
