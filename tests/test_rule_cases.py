"""Every YAML test case beside the rules passes on both backends, and every active rule is exercised."""

from __future__ import annotations

import pytest

import ipm_cds
from ipm_cds.tooling.casetests import run_cases

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


# Criteria that no rule can encode with the current patient model, and why.
NOT_RULE_ABLE: dict[str, str] = {}  # MD-PEG became rule-able with dated measurements (outcomes.function.peg)


def test_every_rule_able_criterion_is_cited_by_an_active_rule() -> None:
    cited = {c for r in RULESET.rules if RULESET.rule_specs[r.id].status == "active" for c in r.criteria}
    assert set(RULESET.criteria) - cited == set(NOT_RULE_ABLE)


def test_every_rule_cites_a_source_from_the_catalogue() -> None:
    for rule in RULESET.rules:
        assert rule.sources, rule.id
        assert set(rule.sources) <= set(RULESET.sources), rule.id


def test_content_table_lists_every_rule_with_criteria_tags_and_profiles() -> None:
    from ipm_cds.tooling.content import content, render_markdown

    rows = content(RULESET)
    assert [r.rule for r in rows] == [r.ref for r in sorted(RULESET.rules, key=lambda r: r.id)]
    age = next(r for r in rows if r.rule.startswith("asra.bleeding_risk.age@"))
    assert age.parameters[0].name == "asra_old_age_years" and age.parameters[0].verification == "UNVERIFIED"
    # a conservative default (issue 14: no rule off by default), tagged as such
    assert set(age.profiles.values()) == {"runs"} and age.parameters[0].default_basis == "conservative_default"
    positive = next(r for r in rows if r.rule.startswith("facet.block.positive@"))
    block = next(p for p in positive.parameters if p.name == "facet_block_relief_pct")
    assert block.values["cms_lcd"] == 80 and block.values["society_consensus"] == 50
    table = render_markdown(RULESET, rows)
    assert table.count("\n| `") == len(RULESET.rules)
