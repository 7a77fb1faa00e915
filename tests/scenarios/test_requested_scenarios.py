"""Requested-procedure scenarios written from the published guidelines (``requested.yaml``), independently of
the rule files and before they were run. As in ``test_guideline_scenarios.py``, a disagreement is recorded as
``known_gap`` with its ``gap_checks`` (the exact checks that fail), never by changing an expectation; the test
then asserts that exactly those checks still fail. Each scenario runs on both backends under its profiles."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

import ipm_cds
from ipm_cds import Assessment

HERE = Path(__file__).parent
SCENARIOS: list[dict[str, Any]] = yaml.safe_load((HERE / "requested.yaml").read_text(encoding="utf-8"))
BACKENDS = ("python", "durable")
AS_OF = "2025-06-02"
ALLOWED_KEYS = {
    "id",
    "title",
    "source",
    "passage",
    "profiles",
    "as_of",
    "patient",
    "expect",
    "note",
    "known_gap",
    "gap_checks",
}
EXPECT_KEYS = {"verdicts", "judgements", "judgement_text", "critical_alert", "alerts"}


@cache
def _engine(profile: str, backend: str) -> ipm_cds.Engine:
    return ipm_cds.Engine(ipm_cds.load_ruleset(), profile=profile, backend=backend)  # type: ignore[arg-type]


def failed_checks(assessment: Assessment, expect: dict[str, Any]) -> list[str]:
    """The expectation checks the assessment does not meet, each by a stable id."""
    failed: list[str] = []
    by_code: dict[str, list[Any]] = {}
    for v in assessment.requested:
        by_code.setdefault(v.intervention, []).append(v)
    for code, verdict in expect.get("verdicts", {}).items():
        if {v.verdict for v in by_code.get(code, [])} != {verdict}:
            failed.append(f"verdict:{code}")
    for code, kinds in expect.get("judgements", {}).items():
        got = {j.kind for v in by_code.get(code, []) for j in v.safety}
        failed += [f"judgement:{code}:{k}" for k in kinds if k not in got]
    for code, fragments in expect.get("judgement_text", {}).items():
        texts = [
            t.lower()
            for v in by_code.get(code, [])
            for t in [*(j.text for j in v.safety), *(r.text for r in v.reasons)]
        ]
        failed += [f"text:{code}:{f}" for f in fragments if not any(f.lower() in t for t in texts)]
    if expect.get("critical_alert") and not any(a.severity == "critical" for a in assessment.alerts):
        failed.append("critical_alert")
    codes = {a.code for a in assessment.alerts}
    failed += [f"alert:{c}" for c in expect.get("alerts", []) if c not in codes]
    return failed


CASES = [(s, p, b) for s in SCENARIOS for p in s["profiles"] for b in BACKENDS]


def test_scenarios_are_well_formed() -> None:
    ids = [s["id"] for s in SCENARIOS]
    assert len(ids) == len(set(ids))
    for s in SCENARIOS:
        assert set(s) <= ALLOWED_KEYS, (s["id"], set(s) - ALLOWED_KEYS)
        assert set(s["expect"]) <= EXPECT_KEYS, (s["id"], set(s["expect"]) - EXPECT_KEYS)
        assert s["source"] and s["passage"] and s["patient"].get("requested"), s["id"]
        assert ("known_gap" in s) == ("gap_checks" in s), s["id"]


@pytest.mark.parametrize(("scenario", "profile", "backend"), CASES, ids=[f"{s['id']}-{p}-{b}" for s, p, b in CASES])
def test_requested_scenario(scenario: dict[str, Any], profile: str, backend: str) -> None:
    engine = _engine(profile, backend)
    from datetime import date

    assessment = engine.evaluate(scenario["patient"], as_of=date.fromisoformat(str(scenario.get("as_of", AS_OF))))
    failed = failed_checks(assessment, scenario["expect"])
    if "known_gap" in scenario:
        assert sorted(failed) == sorted(scenario["gap_checks"]), (
            f"{scenario['id']}: the known gap changed ({scenario['known_gap']}); failing now: {failed}"
        )
    else:
        summary = {v.intervention: (v.verdict, [j.kind for j in v.safety]) for v in assessment.requested}
        assert not failed, f"{scenario['id']} ({scenario['source']}): {failed}; got {summary}"
