"""The ipm-cds command line: the examples, stable JSON, and one-line errors with distinct exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ipm_cds
from ipm_cds.cli import EXIT_OK, EXIT_PATIENT, EXIT_RULESET, EXIT_TESTS_FAILED, EXIT_USAGE, main
from ipm_cds.ruleset.loader import bundled_ruleset_path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "patients"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_rfa_example_shows_candidate_with_rationale_criteria_citations_and_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "evaluate", str(EXAMPLES / "facet_rfa_candidate.yaml"), "--as-of", "2025-06-02")
    assert code == EXIT_OK
    flat = " ".join(out.split())
    assert "CANDIDATE INTERVENTIONS (1)" in out
    assert "Facet medial branch radiofrequency ablation (thermal) [facet_rfa] - lumbar, bilateral" in out
    assert "gave 90% and 85% relief of the index pain, each at or above 80%" in flat
    assert "Rule facet.rfa.initial@1.2.0; criteria FACET-IMG-01, FACET-LEVELS-01, FACET-RFA-01" in out
    assert "[cms_lcd_facet] CMS LCD Facet Joint Interventions" in flat
    assert "Apixaban:" in out


def test_society_profile_changes_the_discordant_example(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "facet_discordant_blocks.yaml")
    _, cms, _ = run(capsys, "evaluate", path, "--as-of", "2025-06-02", "--format", "json")
    _, soc, _ = run(
        capsys, "evaluate", path, "--as-of", "2025-06-02", "--format", "json", "--profile", "society_consensus"
    )
    assert [c["intervention"] for c in json.loads(cms)["candidates"]] == []
    assert [e["intervention"] for e in json.loads(cms)["excluded"]] == ["facet_rfa"]
    assert [c["intervention"] for c in json.loads(soc)["candidates"]] == ["facet_rfa"]


def test_cauda_equina_example_has_no_elective_candidate_and_an_emergency_referral(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, "evaluate", str(EXAMPLES / "cauda_equina.yaml"), "--as-of", "2025-06-02", "--format", "json"
    )
    data = json.loads(out)
    assert code == EXIT_OK
    assert data["candidates"] == []
    assert {e["intervention"]: e["kind"] for e in data["excluded"]} == {"facet_rfa": "red_flag"}
    assert any(r["to"] == "emergency_department" and r["urgency"] == "emergency" for r in data["referrals"])


def test_json_output_is_stable_and_sorted(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("evaluate", str(EXAMPLES / "facet_rfa_candidate.yaml"), "--as-of", "2025-06-02", "--format", "json")
    _, first, _ = run(capsys, *args)
    _, second, _ = run(capsys, *args, "--backend", "python")
    a, b = json.loads(first), json.loads(second)
    for d in (a, b):
        d["provenance"].pop("evaluated_at")
        d["provenance"].pop("backend")
        d["provenance"].pop("backend_auto")
    assert a == b
    assert first == json.dumps(json.loads(first), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_malformed_patient_gives_one_line_error_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pain:\n  - {region: lumbar, character: axial, nrs: 11}\n")
    code, out, err = run(capsys, "evaluate", str(bad), "--as-of", "2025-06-02")
    assert code == EXIT_PATIENT
    assert out == ""
    assert err == "ipm-cds: invalid patient data: pain[0].nrs: Input should be less than or equal to 10\n"


def test_malformed_patient_json_gives_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"pain": [\n  {"region": "lumbar",}\n]}')
    code, _, err = run(capsys, "evaluate", str(bad))
    assert code == EXIT_PATIENT
    assert f"{bad}:2:23: invalid JSON: trailing comma at line 2 column 23" in err


def test_malformed_rule_file_gives_file_line_col(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    path = root / "rules" / "referrals.yaml"
    path.write_text(path.read_text().replace("urgency: routine", "urgency: whenever", 1))
    code, _, err = run(capsys, "evaluate", str(EXAMPLES / "cauda_equina.yaml"), "--ruleset", str(root))
    line = next(i for i, s in enumerate(path.read_text().splitlines(), 1) if "urgency: whenever" in s)
    assert code == EXIT_RULESET
    assert err == (
        f"ipm-cds: invalid ruleset: ipm-core/rules/referrals.yaml:{line}:20: urgency is emergency, "
        f"urgent, soon or routine\n"
    )
    code, _, err = run(capsys, "validate", str(root))
    assert code == EXIT_RULESET


def test_unknown_profile_and_bad_parameter_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "facet_rfa_candidate.yaml")
    code, _, err = run(capsys, "evaluate", path, "--profile", "cms")
    assert code == EXIT_USAGE
    assert "unknown profile 'cms' (did you mean 'cms_lcd'?)" in err
    code, _, err = run(capsys, "evaluate", path, "--param", "facet_block_relief_pct=180")
    assert code == EXIT_USAGE
    assert "facet_block_relief_pct=180 is outside 0..100" in err


def test_parameter_override_changes_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "facet_discordant_blocks.yaml")
    _, out, _ = run(
        capsys, "evaluate", path, "--as-of", "2025-06-02", "--format", "json", "--param", "facet_block_relief_pct=60"
    )
    data = json.loads(out)
    assert [c["intervention"] for c in data["candidates"]] == ["facet_rfa"]
    assert data["provenance"]["parameter_overrides"] == {"facet_block_relief_pct": 60}


def test_validate_and_test_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate")
    assert code == EXIT_OK and "valid (sha256" in out
    code, out, _ = run(capsys, "test")
    assert code == EXIT_OK
    assert " passed, 0 failed" in out


def test_failing_case_exits_with_tests_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    path = root / "tests" / "referrals.yaml"
    text = path.read_text()
    path.write_text(text.replace("referrals: [physical_therapy]", "referrals: []", 1))
    code, out, _ = run(capsys, "test", str(root))
    assert code == EXIT_TESTS_FAILED
    assert "referrals: expected [], got ['physical_therapy'] (unexpected ['physical_therapy'])" in out


def test_console_entry_point_runs_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("demographics: {age_years: -3}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ipm_cds", "evaluate", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == EXIT_PATIENT
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "ipm-cds: invalid patient data: demographics.age_years: Input should be greater than or equal to 0"
    )


def test_relative_ruleset_path_shows_relative_file_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    path = root / "rules" / "referrals.yaml"
    path.write_text(path.read_text().replace("urgency: routine", "urgency: whenever", 1))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "ipm-core"]) == EXIT_RULESET
    assert capsys.readouterr().err.startswith("ipm-cds: invalid ruleset: ipm-core/rules/referrals.yaml:")


def test_junit_report_and_coverage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import xml.etree.ElementTree as ET

    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    path = root / "tests" / "referrals.yaml"
    path.write_text(path.read_text().replace("referrals: [physical_therapy]", "referrals: []", 1))
    report = tmp_path / "junit.xml"
    assert main(["test", str(root), "--junit", str(report)]) == EXIT_TESTS_FAILED
    out = capsys.readouterr().out
    assert "coverage: all " in out and " rules seen firing and not firing" in out
    suite = ET.parse(report).getroot()
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) and len(cases) > 50
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == 1 and suite.get("failures") == "1"
    assert failures[0].get("classname") == "ipm-core/tests/referrals.yaml"


def test_coverage_names_rules_never_fired_and_never_missed(ruleset: object) -> None:
    from ipm_cds.casetests import CaseResult, coverage

    rs = ipm_cds.load_ruleset()
    ids = sorted(r.id for r in rs.rules)
    a, b = ids[0], ids[1]
    results = [
        CaseResult("one", "f:1:1", "cms_lcd", (), fired=frozenset({a}), active=frozenset(ids)),
        CaseResult("two", "f:2:1", "cms_lcd", (), fired=frozenset({a, b}), active=frozenset(ids)),
    ]
    cov = coverage(rs, results)
    assert cov.never_missed == (a,)
    assert a not in cov.never_fired and b not in cov.never_fired
    assert set(cov.never_fired) == set(ids) - {a, b}


def test_validate_json_lists_every_problem_for_ci_and_editors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "validate", "--format", "json")
    assert code == EXIT_OK and err == ""
    data = json.loads(out)
    assert data["valid"] is True and data["problems"] == []
    assert data["ruleset"]["id"] == "ipm_core" and len(data["ruleset"]["sha256"]) == 64
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    path = root / "rules" / "facet.yaml"
    text = path.read_text()
    path.write_text(text.replace("        type: pain\n", "        type: pian\n", 1))
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if "type: pian" in row)
    code, out, err = run(capsys, "validate", str(root), "--format", "json")
    assert code == EXIT_RULESET and err == ""
    assert json.loads(out) == {
        "valid": False,
        "ruleset": None,
        "problems": [
            {
                "file": "ipm-core/rules/facet.yaml",
                "line": line,
                "column": 15,
                "field": None,
                "message": "unknown fact type 'pian'",
                "hint": "did you mean 'pain'?",
                "severity": "error",
            }
        ],
    }
