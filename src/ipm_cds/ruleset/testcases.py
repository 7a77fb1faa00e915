"""Test cases of a ruleset: read from its test files, their fixtures applied, every code they name checked.

A test file's cases may extend a fixture of the file (a base patient); each case's expectations may name
only codes the ruleset has (interventions, referral targets, medications, alerts, rule ids), so that a
misspelt code is a load error rather than an expectation that can never hold (or always holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import Problem, SourceLocation
from .model import TestCase, TestFile
from .problems import did_you_mean
from .yamlsrc import Path_, Positions


@dataclass(frozen=True)
class LoadedTestCase:
    case: TestCase
    location: SourceLocation


@dataclass(frozen=True)
class CaseCodes:
    """What a test case's codes are checked against."""

    profiles: Mapping[str, Any]
    interventions: Mapping[str, Any]
    referrals: Mapping[str, Any]
    medications: Mapping[str, Any]
    alert_codes: set[str]
    rule_ids: set[str]
    rules_ok: bool  # rule ids and alert codes are checked only once the rules themselves loaded cleanly


MERGED_SECTIONS = ("demographics", "conservative_care", "psychological_evaluation")
"""Patient sections that a test case merges field by field into its fixture's (the others it replaces)."""


def extend_patient(fixture: Mapping[str, Any], patient: Mapping[str, Any]) -> dict[str, Any]:
    """A test case's patient on top of its fixture: sections replace, the one-object sections merge, null drops."""
    out = dict(fixture)
    for key, value in patient.items():
        if value is None:
            out.pop(key, None)
        elif key in MERGED_SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _check_expectation_codes(
    case: TestCase,
    pos: Positions,
    at: Path_,
    problems: list[Problem],
    codes: CaseCodes,
) -> None:
    """Every code a test case expects must exist: a misspelt code would make an expectation that can never hold
    (or, in an empty list, one that always holds)."""
    expect = case.expect
    interventions, referrals, medications = codes.interventions, codes.referrals, codes.medications

    def check(value: str, table: Any, what: str, path: Path_, *, key: bool = False) -> None:
        if value not in table:
            problems.append(
                Problem(
                    f"unknown {what} {value!r} in expect.{path[0]}",
                    pos.at((*at, *path), key=key),
                    hint=did_you_mean(value, table),
                )
            )

    for name in ("candidates", "excluded", "precautions"):
        for k, code in enumerate(getattr(expect, name) or []):
            check(code, interventions, "intervention", (name, k))
    for code in expect.exclusion_kinds:
        check(code, interventions, "intervention", ("exclusion_kinds", code), key=True)
    for name in ("requested", "requested_safety", "requested_rules", "requested_missing", "scope"):
        for code in getattr(expect, name) or {}:
            check(code, interventions, "intervention", (name, code), key=True)
    for name in ("referrals", "deferred_referrals"):
        for k, code in enumerate(getattr(expect, name) or []):
            check(code, referrals, "referral target", (name, k))
    for code in expect.referral_urgency:
        check(code, referrals, "referral target", ("referral_urgency", code), key=True)
    for k, want in enumerate(expect.precaution_details):
        if want.intervention is not None:
            check(want.intervention, interventions, "intervention", ("precaution_details", k, "intervention"))
        if want.medication is not None:
            check(want.medication, medications, "medication", ("precaution_details", k, "medication"))
    if codes.rules_ok:  # alert codes come from the rules: only once they loaded cleanly
        for k, code in enumerate(expect.alerts or []):
            check(code, codes.alert_codes, "alert", ("alerts", k))
        for code in expect.alert_severity:
            check(code, codes.alert_codes, "alert", ("alert_severity", code), key=True)


def load_cases(tfile: TestFile, tpos: Positions, problems: list[Problem], codes: CaseCodes) -> list[LoadedTestCase]:
    """The cases of one test file, each with its fixture applied; problems are added to ``problems``."""
    out: list[LoadedTestCase] = []
    for j, written in enumerate(tfile.cases):
        case = written
        if case.extends is not None:
            fixture = tfile.fixtures.get(case.extends)
            if fixture is None:
                problems.append(
                    Problem(
                        f"unknown fixture {case.extends!r}",
                        tpos.at(("cases", j, "extends")),
                        hint=did_you_mean(case.extends, tfile.fixtures)
                        or "fixtures are declared under fixtures: at the top of the test file",
                    )
                )
                continue
            case = case.model_copy(update={"patient": extend_patient(fixture, case.patient)})
        if case.profile is not None and case.profile not in codes.profiles:
            problems.append(
                Problem(
                    f"unknown profile {case.profile!r}",
                    tpos.at(("cases", j, "profile")),
                    hint=did_you_mean(case.profile, codes.profiles),
                )
            )
        _check_expectation_codes(
            case,
            tpos,
            ("cases", j, "expect"),
            problems,
            codes,
        )
        for key in ("fired", "not_fired"):
            for k, rule_id in enumerate(getattr(case.expect, key)):
                # only once the rules themselves loaded cleanly: a broken rule file is the problem to show
                if codes.rules_ok and rule_id not in codes.rule_ids:
                    problems.append(
                        Problem(
                            f"unknown rule {rule_id!r} in expect.{key}",
                            tpos.at(("cases", j, "expect", key, k)),
                            hint=did_you_mean(rule_id, codes.rule_ids),
                        )
                    )
        out.append(LoadedTestCase(case, tpos.at(("cases", j))))
    return out
