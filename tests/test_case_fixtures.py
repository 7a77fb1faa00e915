"""Test files share base patients (fixtures) that cases extend; coverage can be limited to one rule file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipm_cds import RulesetError, load_ruleset
from ipm_cds.cli import EXIT_OK, main
from ipm_cds.ruleset.testcases import extend_patient

FILE = """fixtures:
  headache:
    demographics: {age_years: 45, sex: female, bmi: 26.0, tobacco_use: never}
    pain:
      - {region: head, laterality: right, character: headache, duration_weeks: 30, nrs: 7, is_index: true}
cases:
  - name: fixture - occipital headache
    as_of: 2025-06-02
    extends: headache
    expect:
      candidates: [occipital_block]
      fired: [onb.candidate]
  - name: fixture - the case replaces the pain, keeps the demographics
    as_of: 2025-06-02
    extends: headache
    patient:
      demographics: {age_years: 50}
      pain:
        - {region: head, laterality: right, character: myofascial, duration_weeks: 30, nrs: 7, is_index: true}
    expect:
      candidates: []
      not_fired: [onb.candidate]
"""


def test_extend_patient_replaces_sections_merges_demographics_and_drops_null() -> None:
    fixture = {"demographics": {"age_years": 45, "sex": "female"}, "pain": [{"region": "head"}], "labs": [1]}
    case = {"demographics": {"age_years": 50}, "pain": [{"region": "knee"}], "labs": None}
    assert extend_patient(fixture, case) == {
        "demographics": {"age_years": 50, "sex": "female"},
        "pain": [{"region": "knee"}],
    }


def test_cases_extend_a_fixture_of_their_file(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (copy / "tests" / "zz-fixtures.yaml").write_text(FILE, encoding="utf-8")
    loaded = {t.case.name: t.case for t in load_ruleset(copy).tests}
    second = loaded["fixture - the case replaces the pain, keeps the demographics"]
    assert second.patient["demographics"] == {"age_years": 50, "sex": "female", "bmi": 26.0, "tobacco_use": "never"}
    assert main(["test", str(copy), "--backend", "python", "--filter", "fixture - "]) == EXIT_OK
    assert "2 passed, 0 failed" in capsys.readouterr().out


def test_an_unknown_fixture_is_named_with_its_place(copy: Path) -> None:
    (copy / "tests" / "zz-fixtures.yaml").write_text(
        FILE.replace("extends: headache\n    expect", "extends: headach\n    expect"), encoding="utf-8"
    )
    with pytest.raises(RulesetError) as info:
        load_ruleset(copy)
    assert str(info.value.problems[0]) == (
        "ipm-core/tests/zz-fixtures.yaml:9:14: unknown fixture 'headach' (did you mean 'headache'?)"
    )


def test_coverage_of_one_rule_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["test", "--backend", "python", "--filter", "occipital", "--coverage", "rules/other_interventions.yaml"])
        == EXIT_OK
    )
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("coverage: rules of rules/other_interventions.yaml")]
    assert len(lines) == 2
    assert "onb.candidate" not in lines[0] and "tpi.candidate" in lines[0]  # ONB cases ran; TPI ones did not
    # the ONB near miss ("myofascial head pain") is not among the filtered cases
    assert lines[1].endswith("never seen not firing (no near miss): onb.candidate")
    assert "facet." not in out  # only that file's rules


def test_coverage_of_a_file_with_no_rules_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "--backend", "python", "--coverage", "rules/nope.yaml"]) == 2
    assert "no rule of ipm_core is written in rules/nope.yaml" in capsys.readouterr().err
