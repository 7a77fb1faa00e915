"""The ipm-cds command line: the examples, stable JSON, and one-line errors with distinct exit codes."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
        f"ipm-cds: invalid ruleset: ipm-core/rules/referrals.yaml:{line}:20: urgency: Input should be "
        "'emergency', 'urgent', 'soon' or 'routine'\n"
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
    from ipm_cds.tooling.casetests import CaseResult, coverage

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
    assert data["valid"] is True
    assert all(p["severity"] == "warning" and p["code"] for p in data["problems"])  # the linter's, if any
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
                "code": "invalid-ruleset",
            }
        ],
    }


# -- help, exit codes, stdin, missing files, schemas, completion ------------------------------------------


def test_every_command_lists_its_exit_codes_and_every_option_has_help() -> None:
    from ipm_cds.cli import COMMAND_EXIT_CODES, EXIT_CODES, _parser, subcommands

    parser = _parser()
    commands = subcommands(parser)
    assert set(commands) == set(COMMAND_EXIT_CODES)  # no command without its list
    assert all(f"  {code:<5}  {EXIT_CODES[code]}" in parser.format_help() for code in EXIT_CODES)
    for name, command in commands.items():
        text = command.format_help()
        assert "exit codes:" in text, name
        listed = {
            int(line.split()[0])
            for line in text.split("exit codes:")[1].splitlines()
            if line.split()[:1] and line.split()[0].isdigit()
        }
        assert listed == set(COMMAND_EXIT_CODES[name]), name
        for action in command._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}: no help"
    assert "128+N" in commands["batch"].format_help()


def test_the_exit_codes_in_help_are_the_ones_returned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import EXIT_CODES, EXIT_EVALUATION, EXIT_NO_INPUT

    assert {EXIT_OK, EXIT_TESTS_FAILED, EXIT_USAGE, EXIT_RULESET, EXIT_PATIENT, EXIT_EVALUATION, EXIT_NO_INPUT} == set(
        EXIT_CODES
    )
    assert run(capsys, "evaluate", str(tmp_path / "absent.yaml"))[0] == EXIT_NO_INPUT
    assert run(capsys, "evaluate", str(EXAMPLES / "cauda_equina.yaml"), "--profile", "nope")[0] == EXIT_USAGE


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def without_time(text: str) -> dict[str, object]:
    data = json.loads(text)
    data["provenance"].pop("evaluated_at")
    return dict(data)


@pytest.mark.parametrize("name", ["cauda_equina.yaml", "facet_rfa_candidate.yaml"])
def test_a_patient_from_stdin_is_evaluated_as_from_its_file(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = EXAMPLES / name
    args = ("--as-of", "2025-06-02", "--format", "json", "--backend", "python")
    code, from_file, _ = run(capsys, "evaluate", str(path), *args)
    assert code == EXIT_OK
    stdin(monkeypatch, path.read_bytes())
    code, from_yaml, err = run(capsys, "evaluate", "-", *args)
    assert code == EXIT_OK, err
    assert without_time(from_yaml) == without_time(from_file)
    as_json = json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str).encode()
    stdin(monkeypatch, b"\xef\xbb\xbf  " + as_json)  # JSON (after a byte-order mark and white space)
    assert without_time(run(capsys, "evaluate", "-", *args)[1]) == without_time(from_file)
    _, explained_file, _ = run(capsys, "explain", str(path), *args)
    stdin(monkeypatch, path.read_bytes())
    code, explained, _ = run(capsys, "explain", "-", *args)
    assert code == EXIT_OK and json.loads(explained) == json.loads(explained_file)


def test_invalid_patient_data_on_stdin_is_named_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin(monkeypatch, b'{"pain": [\n  {"region": "lumbar",}\n]}')
    code, out, err = run(capsys, "evaluate", "-")
    assert (code, out) == (EXIT_PATIENT, "")
    assert err.startswith("ipm-cds: invalid patient data: <stdin>:2:23: invalid JSON: trailing comma")
    stdin(monkeypatch, b"pain:\n  - {region: lumbar, character: axial, nrs: 11}\n")
    assert run(capsys, "explain", "-")[2] == (
        "ipm-cds: invalid patient data: pain[0].nrs: Input should be less than or equal to 10\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("evaluate", "{missing}/patient.yaml"),
        ("explain", "{missing}/patient.json"),
        ("evaluate", str(EXAMPLES / "cauda_equina.yaml"), "--ruleset", "{missing}"),
        ("validate", "{missing}"),
        ("lock", "{missing}"),
        ("test", "{missing}"),
        ("content", "{missing}"),
        ("diff", "{missing}", str(bundled_ruleset_path())),
        ("diff", str(bundled_ruleset_path()), str(bundled_ruleset_path()), "--cases", "{missing}"),
        ("batch", "{missing}/patients.jsonl"),
    ],
    ids=lambda a: " ".join(a[:1] + tuple(x for x in a[1:] if x.startswith("-"))),
)
def test_a_missing_file_is_its_own_error(
    args: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ipm_cds.cli import EXIT_NO_INPUT

    missing = str(tmp_path / "missing")
    code, out, err = run(capsys, *(a.replace("{missing}", missing) for a in args))
    assert (code, out) == (EXIT_NO_INPUT, "")
    assert err.startswith(f"ipm-cds: cannot read input: {missing}") and "no such" in err
    assert "invalid patient data" not in err and "invalid ruleset" not in err
    assert len(err.splitlines()) == 1


def test_schema_writes_the_patient_and_assessment_schemas_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jsonschema import Draft202012Validator

    code, out, _ = run(capsys, "schema", "--out", str(tmp_path))
    assert code == EXIT_OK
    written = {Path(line).name for line in out.splitlines()}
    assert {"patient.schema.json", "assessment.schema.json", "explanation.schema.json", "rules.schema.json"} <= written
    schemas = {name: json.loads((tmp_path / f"{name}.schema.json").read_text()) for name in ("patient", "assessment")}
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"https://ipm-cds.invalid/schema/{name}.schema.json"
    patient = Draft202012Validator(schemas["patient"])
    assessment = Draft202012Validator(schemas["assessment"])
    for path in sorted(EXAMPLES.glob("*.yaml")):
        document = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))
        assert not list(patient.iter_errors(document)), path.name
        # 2026-04-15: on or after every date of every example (the longitudinal ones run to 2026-03)
        _, result, _ = run(capsys, "evaluate", str(path), "--as-of", "2026-04-15", "--format", "json")
        assert not list(assessment.iter_errors(json.loads(result))), path.name
    assert list(patient.iter_errors({"pain": [{"region": "lumbar", "nrs": 11}]}))  # the schema can fail
    assert list(patient.iter_errors({"pain": [{"region": "lumbr"}]}))  # codes from the ruleset's vocabularies
    assert "lumbar" in json.dumps(schemas["patient"]) and "TestCase" not in schemas["patient"]["$defs"]
    assert list(assessment.iter_errors({"candidates": "none"}))


def test_completion_scripts_for_bash_zsh_and_tcsh(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ipm_cds.cli import _parser, subcommands

    code, script, _ = run(capsys, "completion", "bash")
    assert code == EXIT_OK
    for command in subcommands(_parser()):
        assert command in script
    assert "_shtab_ipm_cds_evaluate_pos_0_COMPGEN=_shtab_compgen_files" in script  # a patient file
    assert "_shtab_ipm_cds_validate_pos_0_COMPGEN=_shtab_compgen_dirs" in script  # a ruleset folder
    assert run(capsys, "completion", "zsh")[1].startswith("#compdef ipm-cds")
    assert run(capsys, "completion", "tcsh")[0] == EXIT_OK
    (tmp_path / "ipm-cds.bash").write_text(script)
    probe = (
        f"source {tmp_path / 'ipm-cds.bash'}; COMP_WORDS=(ipm-cds ex); COMP_CWORD=1; COMP_LINE='ipm-cds ex'; "
        'COMP_POINT=10; _shtab_ipm_cds; echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["explain"], done.stderr


def test_completion_without_shtab_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "shtab", None)  # import shtab raises ImportError
    code, out, err = run(capsys, "completion", "bash")
    assert (code, out) == (EXIT_USAGE, "")
    assert 'pip install "ipm-cds[completion]"' in err
