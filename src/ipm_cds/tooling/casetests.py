"""Run the YAML test cases that live beside a ruleset's rules, and diff expected against actual.

A case pins ``as_of`` and the profile, so results never depend on the day the suite runs. Lists of
codes in ``expect`` are exact sets; ``fired`` and ``not_fired`` name rules that must or must not fire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.facade import BackendChoice, Engine, choose_backend
from ..errors import ConfigurationError, IpmCdsError
from ..model.assessment import Assessment, Precaution, RequestedVerdict
from ..ruleset import ir
from ..ruleset.loader import Ruleset
from ..ruleset.model import Expectation, PrecautionExpectation
from ..ruleset.testcases import LoadedTestCase


@dataclass(frozen=True)
class CaseResult:
    name: str
    location: str
    profile: str
    failures: tuple[str, ...]
    fired: frozenset[str] = field(default_factory=frozenset)
    active: frozenset[str] = field(default_factory=frozenset)  # rules that ran for this case
    assessment: Assessment | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def _diff(what: str, expected: Iterable[str] | None, actual: Iterable[str]) -> list[str]:
    if expected is None:
        return []
    exp, act = set(expected), set(actual)
    if exp == act:
        return []
    parts = []
    if exp - act:
        parts.append(f"missing {sorted(exp - act)}")
    if act - exp:
        parts.append(f"unexpected {sorted(act - exp)}")
    return [f"{what}: expected {sorted(exp)}, got {sorted(act)} ({'; '.join(parts)})"]


_EXCLUSION_KINDS = {"absolute": "absolute_contraindication", "unmet": "unmet_criterion"}
_PRECAUTION_KINDS = {"relative": "relative_contraindication"}


def _diff_map(what: str, expected: Mapping[str, str], actual: Iterable[tuple[str, str]]) -> list[str]:
    """Each expected code must stand with the expected value (e.g. a referral's urgency); others may stand too."""
    if not expected:
        return []
    got: dict[str, set[str]] = {}
    for code, value in actual:
        got.setdefault(code, set()).add(value)
    wrong = {code: value for code, value in expected.items() if value not in got.get(code, set())}
    if not wrong:
        return []
    shown = {code: ", ".join(sorted(got[code])) if code in got else "absent" for code in sorted(wrong)}
    return [f"{what}: expected {dict(sorted(wrong.items()))}, got {shown}"]


def _describe(want: PrecautionExpectation) -> str:
    fields = want.model_dump(exclude_none=True, exclude_defaults=True)
    return ", ".join(f"{k}={v!r}" for k, v in fields.items())


def _precaution_matches(want: PrecautionExpectation, got: Precaution) -> bool:
    text = got.text.casefold()
    kind = _PRECAUTION_KINDS.get(want.kind, want.kind) if want.kind else None
    return (
        (kind is None or got.kind == kind)
        and (want.medication is None or got.medication == want.medication)
        and (want.bleeding_risk is None or got.bleeding_risk == want.bleeding_risk)
        and (want.prescriber_approval is None or got.requires_prescriber_approval == want.prescriber_approval)
        and (want.hold is None or f"hold {want.hold}".casefold() in text)
        and (want.restart is None or f"restart {want.restart}".casefold() in text)
        and all(part.casefold() in text for part in want.text_contains)
    )


def _check_precaution(want: PrecautionExpectation, assessment: Assessment) -> list[str]:
    if want.intervention is None:
        where, pool = "the patient", list(assessment.precautions)
    else:
        candidates = [c for c in assessment.candidates if c.intervention == want.intervention]
        if not candidates:
            return [f"precaution ({_describe(want)}): {want.intervention} is not a candidate"]
        where, pool = want.intervention, [p for c in candidates for p in c.precautions]
    if any(_precaution_matches(want, got) for got in pool):
        return []
    actual = [
        f"{p.kind}{f' {p.medication}' if p.medication else ''}"
        f"{f' ({p.bleeding_risk} risk)' if p.bleeding_risk else ''}: {p.text!r}"
        for p in pool
    ]
    return [
        f"precaution ({_describe(want)}): no precaution of {where} matches; "
        f"got {len(pool)}: {'; '.join(actual) if actual else 'none'}"
    ]


def _check_requested(expect: Expectation, assessment: Assessment) -> list[str]:
    """Verdicts on requested procedures, their safety judgements and missing data; the interventions in scope."""
    failures: list[str] = []
    by_code: dict[str, list[RequestedVerdict]] = {}
    for v in assessment.requested:
        by_code.setdefault(v.intervention, []).append(v)
    for code, verdict in sorted(expect.requested.items()):
        got = sorted({v.verdict for v in by_code.get(code, [])})
        if got != [verdict]:
            failures.append(f"requested {code}: expected verdict {verdict}, got {got or 'no request'}")
    for code, kinds in sorted(expect.requested_safety.items()):
        got_kinds = {j.kind for v in by_code.get(code, []) for j in v.safety}
        if not set(kinds) <= got_kinds:
            failures.append(
                f"requested {code}: safety judgements {sorted(set(kinds) - got_kinds)} missing; got {sorted(got_kinds)}"
            )
    for code, rules in sorted(expect.requested_rules.items()):
        behind = {
            b.split("@")[0]
            for v in by_code.get(code, [])
            for b in [*(j.basis.rule for j in v.safety), *(r.basis.rule for r in v.reasons)]
        }
        if not set(rules) <= behind:
            failures.append(f"requested {code}: no judgement or reason by {sorted(set(rules) - behind)}")
    for code, fields in sorted(expect.requested_missing.items()):
        got_fields = {m.field for v in by_code.get(code, []) for m in v.missing}
        if not set(fields) <= got_fields:
            failures.append(
                f"requested {code}: missing data {sorted(set(fields) - got_fields)} not listed; "
                f"got {sorted(got_fields)}"
            )
    if expect.scope is not None:
        failures += _diff("scope", list(expect.scope), {e.intervention for e in assessment.scope})
        failures += _diff_map("scope status", expect.scope, [(e.intervention, e.status) for e in assessment.scope])
    return failures


def check_case(loaded: LoadedTestCase, assessment: Assessment) -> list[str]:
    expect = loaded.case.expect
    failures: list[str] = []
    codes = assessment.codes()
    failures += _diff("candidates", expect.candidates, codes["candidates"])
    failures += _diff("excluded", expect.excluded, codes["excluded"])
    failures += _diff("referrals", expect.referrals, codes["referrals"])
    failures += _diff("deferred referrals", expect.deferred_referrals, codes["deferred_referrals"])
    failures += _diff("alerts", expect.alerts, codes["alerts"])
    failures += _diff(
        "precautions", expect.precautions, {c.intervention for c in assessment.candidates if c.precautions}
    )
    failures += _diff("missing", expect.missing, {m.field for m in assessment.missing_data})
    failures += _diff_map(
        "exclusion kinds",
        {code: _EXCLUSION_KINDS.get(kind, kind) for code, kind in expect.exclusion_kinds.items()},
        [(e.intervention, e.kind) for e in assessment.excluded],
    )
    referrals = [*assessment.referrals, *(d.referral for d in assessment.deferred_referrals)]
    failures += _diff_map("referral urgency", expect.referral_urgency, [(r.to, r.urgency) for r in referrals])
    failures += _diff_map("alert severity", expect.alert_severity, [(a.code, a.severity) for a in assessment.alerts])
    for want in expect.precaution_details:
        failures += _check_precaution(want, assessment)
    failures += _check_requested(expect, assessment)
    fired = {t.rule.split("@")[0] for t in assessment.trace if t.status == "fired"}
    for rule in expect.fired:
        if rule not in fired:
            failures.append(f"rule {rule} was expected to fire but did not")
    for rule in expect.not_fired:
        if rule in fired:
            failures.append(f"rule {rule} fired but was expected not to")
    return failures


def run_cases(ruleset: Ruleset, *, backend: BackendChoice = "auto", name_filter: str | None = None) -> list[CaseResult]:
    """Run the ruleset's YAML test cases. An unknown or unavailable backend raises once, before any case."""
    choose_backend(backend)
    engines: dict[tuple[str, tuple[tuple[str, int | float], ...]], Engine] = {}
    results: list[CaseResult] = []
    for loaded in ruleset.tests:
        case = loaded.case
        if name_filter and name_filter not in case.name:
            continue
        profile = case.profile or ruleset.manifest.default_profile
        key = (profile, tuple(sorted(case.parameters.items())))
        try:
            if key not in engines:
                engines[key] = Engine(ruleset, profile=profile, backend=backend, parameters=case.parameters)
            assessment = engines[key].evaluate(case.patient, as_of=case.as_of, timestamp=False)
        except IpmCdsError as exc:
            results.append(CaseResult(case.name, str(loaded.location), profile, (f"error: {exc}",)))
            continue
        fired = frozenset(t.rule.split("@")[0] for t in assessment.trace if t.status == "fired")
        inactive = {ref.split("@")[0] for ref in assessment.provenance.rules_inactive}
        active = frozenset(r.id for r in engines[key].program.rules if r.id not in inactive)
        results.append(
            CaseResult(
                name=case.name,
                location=str(loaded.location),
                profile=profile,
                failures=tuple(check_case(loaded, assessment)),
                fired=fired,
                active=active,
                assessment=assessment,
            )
        )
    return results


@dataclass(frozen=True)
class Coverage:
    never_fired: tuple[str, ...]  # active rules that no case fires
    never_missed: tuple[str, ...]  # rules that fired in every case where they ran: no near miss


def coverage(ruleset: Ruleset, results: Sequence[CaseResult], rule_file: str | None = None) -> Coverage:
    """Rules no case fires, and rules no case shows not firing; ``rule_file`` (a path inside the ruleset
    folder, ``rules/facet.yaml``) limits the report to the rules written there."""
    fired: set[str] = set().union(*(r.fired for r in results)) if results else set()
    missed: set[str] = set().union(*(r.active - r.fired for r in results)) if results else set()
    ids = sorted(r.id for r in rules_in(ruleset, rule_file))
    return Coverage(tuple(i for i in ids if i not in fired), tuple(i for i in ids if i in fired and i not in missed))


def rules_in(ruleset: Ruleset, rule_file: str | None) -> list[ir.Rule]:
    """The rules written in one rule file (all when None). Raises ConfigurationError for a file with none."""
    if rule_file is None:
        return list(ruleset.rules)
    wanted = (ruleset.path.resolve().name + "/" + Path(rule_file).as_posix().removeprefix("./")).rstrip("/")
    found = [r for r in ruleset.rules if r.location is not None and r.location.file == wanted]
    if not found:
        files = sorted({r.location.file.split("/", 1)[-1] for r in ruleset.rules if r.location is not None})
        raise ConfigurationError(
            f"no rule of {ruleset.id} is written in {rule_file}", hint=f"rule files: {', '.join(files)}"
        )
    return found


def junit_xml(ruleset: Ruleset, results: Sequence[CaseResult], backend: str) -> str:
    import xml.etree.ElementTree as ET

    suite = ET.Element(
        "testsuite",
        name=f"{ruleset.id}@{ruleset.version} ({backend})",
        tests=str(len(results)),
        failures=str(sum(1 for r in results if not r.passed)),
    )
    for r in results:
        case = ET.SubElement(suite, "testcase", name=r.name, classname=r.location.split(":")[0])
        ET.SubElement(case, "properties").append(ET.Element("property", name="profile", value=r.profile))
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=r.failures[0])
            failure.text = "\n".join([r.location, *r.failures])
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
