"""Every YAML test case beside the rules passes on both backends, and every active rule is exercised."""

from __future__ import annotations

import pytest

import ipm_cds
from ipm_cds.casetests import run_cases

RULESET = ipm_cds.load_ruleset()
CASES = [c.case.name for c in RULESET.tests]


@pytest.fixture(scope="module", params=["durable", "python"])
def results(request: pytest.FixtureRequest) -> dict[str, object]:
    return {r.name: r for r in run_cases(RULESET, backend=request.param)}


@pytest.mark.parametrize("name", CASES)
def test_case(results: dict[str, object], name: str) -> None:
    result = results[name]
    assert result.passed, f"{result.location}: {name}\n" + "\n".join(result.failures)  # type: ignore[attr-defined]


def test_case_names_are_unique() -> None:
    assert len(CASES) == len(set(CASES))


def test_every_active_rule_fires_in_some_case_and_is_missed_in_another() -> None:
    results = run_cases(RULESET, backend="python")
    fired: set[str] = set().union(*(r.fired for r in results))
    not_fired: set[str] = set()
    for loaded in RULESET.tests:
        not_fired.update(loaded.case.expect.not_fired)
    active = {r.id for r in RULESET.rules if RULESET.rule_specs[r.id].status == "active"}
    assert active - fired == set(), "rules no case fires"
    assert active - not_fired == set(), "rules without a near-miss case (expect.not_fired)"
