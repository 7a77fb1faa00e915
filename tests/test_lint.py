"""validate's linter: warnings with codes, file:line:col, in text, JSON and SARIF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipm_cds import load_ruleset
from ipm_cds.cli import EXIT_OK, EXIT_RULESET, main
from ipm_cds.tooling.lint import LINT_CODES, lint

from .test_ruleset_errors import edit, line_of

PARAMS = "catalogues/parameters-spine.yaml"
ESI_WEEKS = "    default: 4\n    min: 0\n    max: 520\n    source: cms_lcd_esi"


def codes(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in lint(load_ruleset(root)):
        out.setdefault(str(p.code), []).append(str(p))
    return out


def test_a_parameter_without_a_value_is_named_with_the_rules_it_switches_off(copy: Path) -> None:
    before = codes(copy).get("no-default", [])
    edit(copy, PARAMS, ESI_WEEKS, ESI_WEEKS.replace("default: 4", "default: null"))
    added = sorted(set(codes(copy)["no-default"]) - set(before))
    line = line_of(copy, PARAMS, "name: esi_min_pain_weeks")
    assert len(added) == 1
    assert added[0].startswith(
        f"ipm-core/{PARAMS}:{line}:11: parameter esi_min_pain_weeks has no value under any profile"
    )
    assert "esi.lumbar.initial" in added[0] or "esi." in added[0]


def test_a_rule_off_under_one_profile_is_named(copy: Path) -> None:
    edit(
        copy,
        PARAMS,
        ESI_WEEKS,
        ESI_WEEKS.replace("default: 4", "default: null\n    profiles: {cms_lcd: 4, society_consensus: 4}"),
    )
    found = codes(copy)
    assert not any("esi_min_pain_weeks" in p for p in found.get("no-default", []))
    off = [p for p in found["off-under-profile"] if "esi_min_pain_weeks has no value there" in p]
    assert off and all("is off under profile nice: esi_min_pain_weeks" in p for p in off)


def test_untested_rules_and_missing_near_misses(copy: Path) -> None:
    assert "untested" not in codes(copy) and "no-near-miss" not in codes(copy)  # the bundled ruleset is covered
    edit(copy, "tests/other_interventions.yaml", "      not_fired: [onb.frequency]\n", "")  # its near miss, gone
    for path in ("tests/other_interventions.yaml", "tests/scenarios.yaml"):  # every case expecting onb.candidate
        text = (copy / path).read_text()
        text = text.replace("fired: [onb.candidate]", "fired: []").replace("[onb.candidate, ", "[")
        (copy / path).write_text(text.replace("      not_fired: [onb.candidate]\n", ""))
    found = codes(copy)
    assert any(
        p.endswith(
            "no test case shows rule onb.frequency not firing (add a near miss (just under a threshold, "
            "one criterion unmet) with it under expect.not_fired)"
        )
        for p in found["no-near-miss"]
    )
    assert [p for p in found["untested"] if "rule onb.candidate" in p]


def test_an_exclusion_of_an_intervention_no_rule_proposes(copy: Path) -> None:
    edit(
        copy,
        "rules/other_interventions.yaml",
        "      - recommend:\n          intervention: occipital_block",
        "      - recommend:\n          intervention: trigger_point_injection",
        first=True,
    )
    found = codes(copy)["exclusion-never-proposed"]
    assert any("rule onb.frequency excludes or cautions occipital_block, which no rule proposes" in p for p in found)


def test_validate_prints_codes_and_writes_sarif(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(copy, PARAMS, ESI_WEEKS, ESI_WEEKS.replace("default: 4", "default: null"))
    (copy / "ruleset.lock.json").unlink()
    assert main(["validate", str(copy)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "warning[no-default]: ipm-core/catalogues/parameters-spine.yaml:" in out
    assert main(["validate", str(copy), "--format", "sarif"]) == EXIT_OK
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} >= set(LINT_CODES)
    assert run["originalUriBaseIds"]["RULESETROOT"]["uri"] == copy.parent.resolve().as_uri() + "/"
    result = next(
        r for r in run["results"] if r["ruleId"] == "no-default" and "esi_min_pain_weeks" in r["message"]["text"]
    )
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": f"ipm-core/{PARAMS}", "uriBaseId": "RULESETROOT"}
    assert location["region"]["startLine"] == line_of(copy, PARAMS, "name: esi_min_pain_weeks")
    assert any(r["ruleId"] == "unlocked" for r in run["results"])


def test_sarif_for_a_ruleset_that_does_not_load(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(copy, PARAMS, "    type: int\n    unit: weeks\n", "    type: integer\n    unit: weeks\n", first=True)
    assert main(["validate", str(copy), "--format", "sarif"]) == EXIT_RULESET
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    errors = [r for r in run["results"] if r["level"] == "error"]
    assert errors and all(r["ruleId"] == "invalid-ruleset" for r in errors)
    assert errors[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 11
