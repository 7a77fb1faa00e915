"""An executable program: the ruleset's IR with one profile's parameter values bound, split in strata.

Each IR rule becomes one :class:`ExecRule`, and each of its ``unless`` clauses one more (the rule's
own patterns plus the clause's pattern); both backends run exactly these. Rules that read a parameter
with no value under the chosen profile (an [UNVERIFIED] item the deployment has not set) are left
out and listed, never run with a guessed number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..errors import ConfigurationError
from ..ruleset import ir
from ..ruleset.loader import Ruleset

ParamValue = int | float


@dataclass(frozen=True, slots=True)
class ExecRule:
    name: str  # engine-level name, unique in the program
    rule: ir.Rule  # the rule it belongs to (parameters bound)
    patterns: tuple[ir.Pattern, ...]
    blocker: int | None  # index of the unless clause, or None for the rule itself


@dataclass(frozen=True, slots=True)
class Stratum:
    index: int
    rules: tuple[ExecRule, ...]


@dataclass(frozen=True)
class Program:
    ruleset: Ruleset
    profile: str
    parameters: Mapping[str, ParamValue]
    overrides: Mapping[str, ParamValue]
    strata: tuple[Stratum, ...]
    rules: tuple[ir.Rule, ...]  # active rules, parameters bound
    disabled: Mapping[str, str]  # rule ref -> why it does not run
    # What evaluations derive once from the program and reuse (compiled matchers, indexes); never compared.
    cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


def resolve_parameters(
    ruleset: Ruleset, profile: str, overrides: Mapping[str, ParamValue] | None
) -> tuple[dict[str, ParamValue], dict[str, ParamValue]]:
    """Parameter values for a profile, with deployment overrides checked against each parameter's bounds."""
    values: dict[str, ParamValue] = {}
    for name, param in ruleset.parameters.items():
        value = param.value(profile)
        if value is not None:
            values[name] = value
    checked: dict[str, ParamValue] = {}
    for name, value in (overrides or {}).items():
        known = ruleset.parameters.get(name)
        if known is None:
            from ..ruleset.problems import did_you_mean

            raise ConfigurationError(f"unknown parameter {name!r}", hint=did_you_mean(name, ruleset.parameters))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (known.type == "int" and not isinstance(value, int))
        ):
            raise ConfigurationError(f"parameter {name} takes an {known.type}, got {value!r}")
        if not known.min <= value <= known.max:
            raise ConfigurationError(f"parameter {name}={value} is outside {known.min}..{known.max} {known.unit}")
        checked[name] = value
    values.update(checked)
    return values, checked


def _bind_test(test: ir.Test, values: Mapping[str, ParamValue]) -> ir.Test:
    if isinstance(test.operand, ir.Param):
        return replace(test, operand=values[test.operand.name])
    return test


def _bind_pattern(pattern: ir.Pattern, values: Mapping[str, ParamValue]) -> ir.Pattern:
    tests: list[ir.Node] = []
    for node in pattern.tests:
        if isinstance(node, ir.AnyOf):
            tests.append(replace(node, branches=tuple(tuple(_bind_test(t, values) for t in b) for b in node.branches)))
        else:
            tests.append(_bind_test(node, values))
    return replace(pattern, tests=tuple(tests))


def build_program(
    ruleset: Ruleset, profile: str | None = None, overrides: Mapping[str, ParamValue] | None = None
) -> Program:
    profile = profile or ruleset.manifest.default_profile
    if profile not in ruleset.manifest.profiles:
        from ..ruleset.problems import did_you_mean

        raise ConfigurationError(
            f"unknown profile {profile!r}",
            hint=did_you_mean(profile, ruleset.manifest.profiles)
            or f"profiles: {', '.join(ruleset.manifest.profiles)}",
        )
    values, checked = resolve_parameters(ruleset, profile, overrides)
    disabled: dict[str, str] = {}  # rule ref -> why it is inactive, in the message catalogue's words
    messages = ruleset.messages
    active: list[ir.Rule] = []
    for rule in ruleset.rules:
        spec = ruleset.rule_specs[rule.id]
        if spec.status != "active":
            disabled[rule.ref] = messages["rule.status"].render(status=spec.status)
            continue
        if rule.profiles is not None and profile not in rule.profiles:
            disabled[rule.ref] = messages["rule.not_in_profile"].render(profile=profile)
            continue
        unset = sorted(p for p in rule.params() if p not in values)
        if unset:
            disabled[rule.ref] = messages["rule.parameter_unset"].render(parameters=", ".join(unset))
            continue
        active.append(
            replace(
                rule,
                patterns=tuple(_bind_pattern(p, values) for p in rule.patterns),
                blockers=tuple(replace(b, pattern=_bind_pattern(b.pattern, values)) for b in rule.blockers),
                aggregates=tuple(replace(a, selection=_bind_pattern(a.selection, values)) for a in rule.aggregates),
            )
        )
    by_stratum: dict[int, list[ExecRule]] = {}
    for n, rule in enumerate(active):
        bucket = by_stratum.setdefault(rule.stratum, [])
        bucket.append(ExecRule(f"r{n}", rule, rule.patterns, None))
        for blocker in rule.blockers:
            bucket.append(ExecRule(f"r{n}u{blocker.index}", rule, (*rule.patterns, blocker.pattern), blocker.index))
    strata = tuple(Stratum(i, tuple(by_stratum[i])) for i in sorted(by_stratum))
    return Program(ruleset, profile, values, checked, strata, tuple(active), disabled)
