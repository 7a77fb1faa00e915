"""Clinical scenario tests written from the published guidelines, independently of the rule files.

Each vignette in ``scenarios.yaml`` names the guideline passage it comes from and the outcome a clinician
expects from that passage. The expectations were written before the scenarios were run (see the git
history of ``scenarios.yaml``), and are never adjusted to the library's output: where the library
disagrees, the scenario carries ``known_gap`` (what the library does instead) and ``gap_checks`` (the
exact checks that fail). For those scenarios this test asserts that exactly those checks still fail, so
it fails loudly once the library is fixed and the marker must be removed. ``GAPS.md`` lists the gaps.

Each scenario runs on both backends under every profile it names.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

import ipm_cds
from ipm_cds import Assessment
from ipm_cds.model.assessment import Precaution

HERE = Path(__file__).parent
SCENARIOS: list[dict[str, Any]] = yaml.safe_load((HERE / "scenarios.yaml").read_text(encoding="utf-8"))
BACKENDS = ("python", "durable")
URGENCY_RANK = {"routine": 0, "soon": 1, "urgent": 2, "emergency": 3}
ALLOWED_KEYS = {
    "id", "title", "family", "source", "passage", "profiles", "as_of", "patient", "expect", "note",
    "known_gap", "gap_checks",
}  # fmt: skip
EXPECT_KEYS = {
    "candidates", "not_candidates", "excluded", "alerts", "no_alerts", "critical_alert", "no_critical_alert",
    "max_critical_alerts", "referrals", "no_referrals", "deferred_referrals", "referral_any",
    "min_urgency_any", "precautions", "mme", "one_referral_per_target", "missing", "no_missing",
}  # fmt: skip


@cache
def _ruleset() -> ipm_cds.Ruleset:
    return ipm_cds.load_ruleset()


@cache
def _engine(profile: str, backend: str) -> ipm_cds.Engine:
    return ipm_cds.Engine(_ruleset(), profile=profile, backend=backend)  # type: ignore[arg-type]


def _all_precautions(assessment: Assessment) -> list[Precaution]:
    """Patient-wide precautions and every candidate's own, each with the intervention it applies to."""
    found = list(assessment.precautions)
    for candidate in assessment.candidates:
        for p in candidate.precautions:
            found.append(p if p.intervention else p.model_copy(update={"intervention": candidate.intervention}))
    return found


def _precaution_matches(p: Precaution, want: dict[str, Any]) -> bool:
    for key in ("intervention", "kind", "medication", "bleeding_risk", "requires_prescriber_approval"):
        if key in want and getattr(p, key) != want[key]:
            return False
    if "text_contains" in want:
        options = want["text_contains"] if isinstance(want["text_contains"], list) else [want["text_contains"]]
        if not any(o.lower() in p.text.lower() for o in options):
            return False
    return True


def _mentions_number(text: str, value: float) -> bool:
    number = f"{value:g}"
    return re.search(rf"(?<![\d.]){re.escape(number)}(\.0+)?(?![\d]|\.\d)", text) is not None


def failed_checks(assessment: Assessment, expect: dict[str, Any]) -> list[str]:
    """The expectation checks that the assessment does not meet, each by a stable id."""
    failed: list[str] = []
    candidates = {c.intervention for c in assessment.candidates}
    excluded = {(e.intervention, e.kind) for e in assessment.excluded}
    alerts = {a.code for a in assessment.alerts}
    referrals: dict[str, list[int]] = {}
    for r in assessment.referrals:
        referrals.setdefault(r.to, []).append(URGENCY_RANK[r.urgency])
    deferred = {d.referral.to for d in assessment.deferred_referrals}

    for code in expect.get("candidates", []):
        if code not in candidates:
            failed.append(f"candidate:{code}")
    for code in expect.get("not_candidates", []):
        if code in candidates:
            failed.append(f"not_candidate:{code}")
    for item in expect.get("excluded", []):
        code, _, kind = item.partition(":")
        if not any(i == code and (not kind or k == kind) for i, k in excluded):
            failed.append(f"excluded:{item}")
    for code in expect.get("alerts", []):
        if code not in alerts:
            failed.append(f"alert:{code}")
    for code in expect.get("no_alerts", []):
        if code in alerts:
            failed.append(f"no_alert:{code}")
    critical = [a for a in assessment.alerts if a.severity == "critical"]
    if expect.get("critical_alert") and not critical:
        failed.append("critical_alert")
    if expect.get("no_critical_alert") and critical:
        failed.append("no_critical_alert")
    if "max_critical_alerts" in expect and len(critical) > expect["max_critical_alerts"]:
        failed.append(f"max_critical_alerts:{expect['max_critical_alerts']}")
    for target, urgency in (expect.get("referrals") or {}).items():
        if not any(rank >= URGENCY_RANK[urgency] for rank in referrals.get(target, [])):
            failed.append(f"referral:{target}>={urgency}")
    for target in expect.get("no_referrals", []):
        if target in referrals:
            failed.append(f"no_referral:{target}")
    for target in expect.get("deferred_referrals", []):
        if target not in deferred:
            failed.append(f"deferred:{target}")
    for group in expect.get("referral_any", []):
        targets, urgency = group["to"], group.get("urgency", "routine")
        if not any(rank >= URGENCY_RANK[urgency] for t in targets for rank in referrals.get(t, [])):
            failed.append(f"referral_any:{'|'.join(targets)}>={urgency}")
    if "min_urgency_any" in expect:
        want = URGENCY_RANK[expect["min_urgency_any"]]
        if not any(rank >= want for ranks in referrals.values() for rank in ranks):
            failed.append(f"min_urgency_any:{expect['min_urgency_any']}")
    if expect.get("one_referral_per_target"):
        for target, ranks in sorted(referrals.items()):
            if len(ranks) > 1:
                failed.append(f"one_referral_per_target:{target}")
    precautions = _all_precautions(assessment)
    for index, want in enumerate(expect.get("precautions", [])):
        if want.get("if_candidate") and want.get("intervention") not in candidates:
            continue
        if not any(_precaution_matches(p, want) for p in precautions):
            failed.append(f"precaution:{index}")
    if "mme" in expect:
        mme_alerts = [a for a in assessment.alerts if a.code.startswith("opioid.mme")]
        if not any(_mentions_number(a.message, expect["mme"]) for a in mme_alerts):
            failed.append(f"mme:{expect['mme']:g}")
    missing = [m.field for m in assessment.missing_data]
    for text in expect.get("missing", []):  # a part of a missing-data field path, e.g. 'egfr'
        if not any(text in f for f in missing):
            failed.append(f"missing:{text}")
    for text in expect.get("no_missing", []):
        if any(text in f for f in missing):
            failed.append(f"no_missing:{text}")
    return failed


def _cases() -> list[Any]:
    return [
        pytest.param(s, profile, backend, id=f"{s['id']}-{profile}-{backend}")
        for s in SCENARIOS
        for profile in s["profiles"]
        for backend in BACKENDS
    ]


def test_scenario_file_is_well_formed() -> None:
    ids = [s["id"] for s in SCENARIOS]
    assert len(ids) == len(set(ids)), "scenario ids must be unique"
    assert len(SCENARIOS) >= 45
    for s in SCENARIOS:
        assert set(s) <= ALLOWED_KEYS, (s["id"], set(s) - ALLOWED_KEYS)
        assert set(s["expect"]) <= EXPECT_KEYS, (s["id"], set(s["expect"]) - EXPECT_KEYS)
        assert s["source"] and s["passage"] and s["profiles"], s["id"]
        assert ("known_gap" in s) == ("gap_checks" in s), s["id"]
        ipm_cds.parse_patient(s["patient"])


@pytest.mark.parametrize(("scenario", "profile", "backend"), _cases())
def test_guideline_scenario(scenario: dict[str, Any], profile: str, backend: str) -> None:
    as_of = date.fromisoformat(str(scenario.get("as_of", "2025-06-02")))
    assessment = _engine(profile, backend).evaluate(scenario["patient"], as_of=as_of)
    assert_outcome(scenario, profile, failed_checks(assessment, scenario["expect"]), assessment)


def assert_outcome(scenario: dict[str, Any], profile: str, failed: list[str], assessment: Assessment) -> None:
    """No check fails; or, for a known gap, exactly the recorded checks still fail (a fix must remove the marker)."""
    summary = assessment.codes()
    if "known_gap" not in scenario:
        assert failed == [], f"{scenario['id']} ({scenario['source']}): {failed}; got {summary}"
    else:
        gaps = scenario["gap_checks"]
        expected = sorted(gaps.get(profile, []) if isinstance(gaps, dict) else gaps)
        assert sorted(failed) == expected, (
            f"{scenario['id']}: the known gap changed (fixed?). Still failing: {failed}; recorded: {expected}. "
            f"Remove or update known_gap/gap_checks. Got {summary}"
        )


def _comparable(assessment: Assessment) -> dict[str, Any]:
    data = assessment.model_dump(mode="json")
    data["provenance"].pop("evaluated_at", None)
    data["provenance"].pop("backend")
    return data


def test_both_backends_agree() -> None:
    """Every scenario's assessment is the same on both backends, field for field (the backend's name and the
    wall-clock time aside)."""
    for s in SCENARIOS:
        as_of = date.fromisoformat(str(s.get("as_of", "2025-06-02")))
        for profile in s["profiles"]:
            python, durable = (_engine(profile, b).evaluate(s["patient"], as_of=as_of) for b in BACKENDS)
            assert _comparable(python) == _comparable(durable), (s["id"], profile, python.codes(), durable.codes())
