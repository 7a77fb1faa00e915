"""A malformed rule file gives every problem with file:line:col, a message and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipm_cds import RulesetError, load_ruleset
from ipm_cds.ruleset.loader import bundled_ruleset_path


def edit(root: Path, relative: str, old: str, new: str, *, first: bool = False) -> None:
    path = root / relative
    text = path.read_text()
    assert text.count(old) == 1 or (first and text.count(old) > 1), f"{old!r} must occur once in {relative}"
    path.write_text(text.replace(old, new, 1))


def bundled_version() -> tuple[str, str, str]:
    """The bundled ruleset's version, the next correction and the next minor version (tests that bump it)."""
    import yaml

    from ipm_cds.ruleset.loader import bundled_ruleset_path

    version = str(yaml.safe_load((bundled_ruleset_path() / "ruleset.yaml").read_text())["version"])
    major, minor, patch = (int(n) for n in version.split("."))
    return version, f"{major}.{minor}.{patch + 1}", f"{major}.{minor + 1}.0"


def problems(root: Path) -> list[str]:
    with pytest.raises(RulesetError) as info:
        load_ruleset(root)
    return [str(p) for p in info.value.problems]


def line_of(root: Path, relative: str, fragment: str) -> int:
    lines = (root / relative).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if fragment in line)


def col_of(root: Path, relative: str, fragment: str) -> int:
    """1-based column where ``fragment`` starts on its line."""
    line = (root / relative).read_text().splitlines()[line_of(root, relative, fragment) - 1]
    return line.index(fragment) + 1


def test_bundled_ruleset_is_valid() -> None:
    ruleset = load_ruleset()
    assert ruleset.id == "ipm_core"
    assert len(ruleset.sha256) == 64
    assert {r.id for r in ruleset.rules} >= {"facet.rfa.initial", "red_flag.cauda_equina", "asra.hold"}


def test_misspelt_field_path(copy: Path) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "        relief_pct: {gte: {param: facet_block_relief_pct}}\n        same_scale",
        "        relif_pct: {gte: {param: facet_block_relief_pct}}\n        same_scale",
    )
    line = line_of(copy, "rules/facet.yaml", "relif_pct")
    assert problems(copy) == [
        f"ipm-core/rules/facet.yaml:{line}:9: fact type 'procedure' has no field "
        f"'relif_pct' (did you mean 'relief_pct'?)"
    ]


def test_wrong_type_comparison(copy: Path) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "    when:\n      pain:\n        type: pain\n        region: {in: [cervical, thoracic, lumbar]}\n"
        "        character: axial\n        duration_weeks: {gte: {param: chronic_pain_min_weeks}}",
        "    when:\n      pain:\n        type: pain\n        region: {in: [cervical, thoracic, lumbar]}\n"
        "        character: axial\n        duration_weeks: {gte: twelve}",
    )
    line = line_of(copy, "rules/facet.yaml", "gte: twelve")
    assert problems(copy) == [
        f"ipm-core/rules/facet.yaml:{line}:31: pain.duration_weeks is an int, but 'twelve' is a "
        f"str (quote strings, write numbers and true/false plainly)"
    ]


def test_unknown_code_and_dangling_references(copy: Path) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "intervention: facet_rfa\n          target: {region: pain.region, side: pain.laterality}\n"
        "          rationale: >-\n            Two diagnostic",
        "intervention: facet_rf\n          target: {region: pain.region, side: pain.laterality}\n"
        "          rationale: >-\n            Two diagnostic",
    )
    edit(copy, "rules/referrals.yaml", "to: physical_therapy", "to: physiotherapy", first=True)
    edit(
        copy,
        "rules/red_flags.yaml",
        "    criteria: [RF-CES-01]\n    evidence: {strength: strong, quality: not_graded, "
        "sources: [bmj_ces]}\n    when:\n      symptoms:\n        count_of:\n          type: red_flag",
        "    criteria: [RF-CES-1]\n    evidence: {strength: strong, quality: not_graded, sources: [bmj_ces]}\n"
        "    when:\n      symptoms:\n        count_of:\n          type: red_flag",
        first=True,
    )
    found = problems(copy)
    rfa = line_of(copy, "rules/facet.yaml", "intervention: facet_rf")
    assert f"ipm-core/rules/facet.yaml:{rfa}:25: unknown intervention 'facet_rf' (did you mean 'facet_rfa'?)" in found
    crit = line_of(copy, "rules/red_flags.yaml", "RF-CES-1]")
    assert f"ipm-core/rules/red_flags.yaml:{crit}:16: unknown criterion 'RF-CES-1' (did you mean 'RF-CES-01'?)" in found
    pt = line_of(copy, "rules/referrals.yaml", "to: physiotherapy")
    assert (
        f"ipm-core/rules/referrals.yaml:{pt}:15: unknown referral target 'physiotherapy' (did you mean "
        f"'physical_therapy'?)" in found
    )
    assert len(found) == 3


def test_duplicate_rule_id(copy: Path) -> None:
    edit(copy, "rules/facet.yaml", "  - id: facet.rfa.too_soon", "  - id: facet.rfa.repeat")
    first = line_of(copy, "rules/facet.yaml", "  - id: facet.rfa.repeat")
    second = [
        i
        for i, line in enumerate((copy / "rules/facet.yaml").read_text().splitlines(), 1)
        if line == "  - id: facet.rfa.repeat"
    ][1]
    assert problems(copy) == [
        f"ipm-core/rules/facet.yaml:{second}:9: duplicate rule id 'facet.rfa.repeat' "
        f"(first at ipm-core/rules/facet.yaml:{first}:9)"
    ]


def test_schema_error_and_unknown_field(copy: Path) -> None:
    edit(copy, "rules/referrals.yaml", "    version: 1.0.0", "    version: 1.0\n    owner: me", first=True)
    line = line_of(copy, "rules/referrals.yaml", "version: 1.0")
    found = problems(copy)
    assert (
        found[0]
        == f"ipm-core/rules/referrals.yaml:{line}:14: version: 1.0 is not a semantic version MAJOR.MINOR.PATCH "
        "(a version has three numbers, e.g. 1.0.0; no quotes needed)"
    )
    assert found[1] == f"ipm-core/rules/referrals.yaml:{line + 1}:5: unknown field 'owner'"


def test_unknown_parameter_and_operator(copy: Path) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "months_since: {lt: {param: facet_rfa_repeat_min_months}}\n    then:",
        "months_since: {less: {param: facet_rfa_repeat_min_month}}\n    then:",
    )
    line = line_of(copy, "rules/facet.yaml", "{less:")
    assert problems(copy) == [
        f"ipm-core/rules/facet.yaml:{line}:24: unknown operator 'less' (operators: eq, neq, lt, "
        f"lte, gt, gte, in, not_in, same_as, present, or_absent)"
    ]


def test_include_outside_the_ruleset_folder(copy: Path) -> None:
    edit(copy, "ruleset.yaml", '  - "rules/*.yaml"\ntests:', '  - "rules/*.yaml"\n  - ../../etc/passwd\ntests:')
    line = line_of(copy, "ruleset.yaml", "../../etc/passwd")
    assert problems(copy) == [
        f"ipm-core/ruleset.yaml:{line}:5: '../../etc/passwd' is outside the ruleset folder "
        f"(a ruleset includes only files inside its own folder)"
    ]


def test_bad_yaml_syntax(copy: Path) -> None:
    edit(
        copy,
        "rules/referrals.yaml",
        "    title: Physical therapy / exercise when no active programme and no adequate completed course are "
        "documented",
        "    title: Physical therapy: exercise when no active programme and no adequate completed course are "
        "documented",
        first=True,
    )
    line = line_of(copy, "rules/referrals.yaml", "title: Physical therapy:")
    col = col_of(copy, "rules/referrals.yaml", ": exercise")
    assert problems(copy) == [
        f"ipm-core/rules/referrals.yaml:{line}:{col}: YAML syntax error: a value contains a colon followed by a "
        'space (quote the value, e.g. title: "Physical therapy: exercise")'
    ]


def test_join_to_an_unbound_alias(copy: Path) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "second: {latest: {type: positive_facet_block}, by: [region], rank: 1, region: {same_as: pain.region}}\n"
        "    unless:\n      - prior_rfa",
        "second: {latest: {type: positive_facet_block}, by: [region], rank: 1, region: {same_as: pian.region}}\n"
        "    unless:\n      - prior_rfa",
    )
    line = line_of(copy, "rules/facet.yaml", "pian.region")
    col = col_of(copy, "rules/facet.yaml", "pian.region")
    assert problems(copy) == [
        f"ipm-core/rules/facet.yaml:{line}:{col}: alias 'pian' is not bound before this pattern (did you mean 'pain'?)"
    ]


def test_parameter_value_outside_its_bounds(copy: Path) -> None:
    edit(copy, "catalogues/parameters.yaml", "      cms_lcd: 80\n", "      cms_lcd: 180\n")
    found = problems(copy)
    assert len(found) == 1
    assert "parameter facet_block_relief_pct value 180 is outside 0..100" in found[0]
    assert found[0].startswith("ipm-core/catalogues/parameters.yaml:")


def test_misspelt_rule_field_gets_did_you_mean(copy: Path) -> None:
    edit(copy, "rules/referrals.yaml", "    evidence: {strength: strong", "    evidense: {strength: strong", first=True)
    line = line_of(copy, "rules/referrals.yaml", "evidense:")
    found = problems(copy)
    assert f"ipm-core/rules/referrals.yaml:{line}:5: unknown field 'evidense' (did you mean 'evidence'?)" in found


def test_red_flag_without_urgent_referral_is_refused(copy: Path) -> None:
    path = copy / "rules/red_flags.yaml"
    text = path.read_text()
    start = text.index("      - refer:\n          to: emergency_department")
    end = text.index("  - id: red_flag.cauda_equina.course_unknown")
    path.write_text(text[:start] + "\n" + text[end:])
    line = line_of(copy, "rules/red_flags.yaml", "      - red_flag:")
    assert problems(copy) == [  # the position of the rule's 'then' list
        f"ipm-core/rules/red_flags.yaml:{line}:7: a rule that raises a red flag must also refer with urgency "
        "emergency or urgent (add e.g. - refer: {to: emergency_department, urgency: emergency, reason: ...})"
    ]


def test_unverified_parameter_default_must_be_labelled_local_policy(copy: Path) -> None:
    text = (copy / "catalogues/parameters.yaml").read_text()
    start = text.index("    local_policy_default: true\n")
    end = text.index("\n", text.index("      note: ", start)) + 1
    edit(copy, "catalogues/parameters.yaml", text[start:end], "")
    found = problems(copy)
    assert len(found) == 1
    assert "parameter facet_dx_max_sessions is UNVERIFIED and ships a default: set local_policy_default" in found[0]


def test_default_basis_source_must_resolve(copy: Path) -> None:
    edit(
        copy,
        "catalogues/parameters.yaml",
        "      source: cms_lcd_facet\n      verification: UNVERIFIED\n",
        "      source: cms_lcd_facets\n      verification: UNVERIFIED\n",
    )
    found = problems(copy)
    assert len(found) == 1
    assert "unknown source 'cms_lcd_facets'" in found[0]


def test_target_literal_is_checked_against_the_vocabulary(copy: Path) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "          target: {region: pain.region, side: pain.laterality}\n          rationale: >-\n            Axial",
        "          target: {region: lumber, side: pain.laterality}\n          rationale: >-\n            Axial",
    )
    found = problems(copy)
    assert len(found) == 1 and "'lumber' is not a value of value (did you mean 'lumbar'?)" in found[0]


def test_content_hash_ignores_test_files_and_comments(copy: Path) -> None:
    original = load_ruleset(copy).sha256
    (copy / "tests/referrals.yaml").write_text((copy / "tests/referrals.yaml").read_text() + "\n# note\n")
    (copy / "rules/facet.yaml").write_text("# a comment\n" + (copy / "rules/facet.yaml").read_text())
    assert load_ruleset(copy).sha256 == original
    edit(copy, "catalogues/parameters.yaml", "      cms_lcd: 80\n", "      cms_lcd: 81\n")
    assert load_ruleset(copy).sha256 != original


def test_broken_test_file_does_not_stop_evaluation_only_loading(copy: Path) -> None:
    (copy / "tests/referrals.yaml").write_text("cases: [\n")
    assert "YAML syntax error" in problems(copy)[0]
    assert load_ruleset(copy, with_tests=False).tests == ()


def test_globs_in_the_manifest(copy: Path) -> None:
    listed = "".join(f"  - tests/{p.name}\n" for p in sorted((copy / "tests").glob("*.yaml")))
    edit(copy, "ruleset.yaml", '  - "tests/*.yaml"\n', listed)
    assert len(load_ruleset(copy).tests) == len(load_ruleset().tests)
    edit(copy, "ruleset.yaml", listed, '  - "tests/none-*.yaml"\n')
    assert any("'tests/none-*.yaml' matches no file" in p for p in problems(copy))
    edit(copy, "ruleset.yaml", '  - "tests/none-*.yaml"\n', '  - "../*/tests/*.yaml"\n')
    assert any("is outside the ruleset folder" in p for p in problems(copy))


def lock_problems(root: Path) -> list[str]:
    from ipm_cds.ruleset.lock import check_lock

    return [f"{p.severity}: {p}" for p in check_lock(load_ruleset(root))]


def test_bundled_lock_is_current() -> None:
    assert lock_problems(bundled_ruleset_path()) == []


def test_changed_rule_without_version_bump(copy: Path) -> None:
    edit(copy, "rules/referrals.yaml", "urgency: routine", "urgency: soon", first=True)
    line = line_of(copy, "rules/referrals.yaml", "  - id: referral.physical_therapy") + 1
    assert lock_problems(copy) == [
        f"error: ipm-core/rules/referrals.yaml:{line}:14: rule referral.physical_therapy changed but its version is "
        "still 1.1.0 (bump it (e.g. 1.1.1 for a fix, 1.2.0 for new logic) and run ipm-cds lock)"
    ]
    edit(copy, "rules/referrals.yaml", "    version: 1.1.0", "    version: 1.2.0", first=True)
    assert lock_problems(copy) == []


def test_version_going_backwards(copy: Path) -> None:
    edit(
        copy,
        "rules/antithrombotic.yaml",
        "  - id: asra.bleeding_risk.concurrent_agents\n    version: 1.1.0",
        "  - id: asra.bleeding_risk.concurrent_agents\n    version: 1.0.9",
    )
    line = line_of(copy, "rules/antithrombotic.yaml", "version: 1.0.9")
    assert lock_problems(copy) == [
        f"error: ipm-core/rules/antithrombotic.yaml:{line}:14: rule asra.bleeding_risk.concurrent_agents version "
        "1.0.9 is lower than the locked 1.1.0 (versions only go up)"
    ]


NEW_RULE = """rules:
  - id: zz.new_rule
    version: 1.0.0
    status: active
    title: A rule added after the last lock
    criteria: [MD-PT]
    evidence: {strength: strong, quality: moderate, sources: [acp_2017]}
    when:
      pain: {type: pain, region: lumbar}
    then:
      - alert: {code: zz.note, severity: info, message: "x"}
"""


def test_new_rule_is_a_warning_until_locked(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import EXIT_OK, EXIT_RULESET, main

    (copy / "rules" / "zz-new.yaml").write_text(NEW_RULE)
    found = lock_problems(copy)
    assert found == [
        "warning: ipm-core/rules/zz-new.yaml:3:14: rule zz.new_rule is not in ruleset.lock.json (run ipm-cds lock)"
    ]
    assert main(["validate", str(copy)]) == EXIT_OK
    assert main(["lock", str(copy)]) == EXIT_OK
    assert lock_problems(copy) == []
    (copy / "rules" / "zz-new.yaml").write_text(NEW_RULE.replace("severity: info", "severity: warning"))
    assert main(["validate", str(copy)]) == EXIT_RULESET
    assert "rule zz.new_rule changed but its version is still 1.0.0" in capsys.readouterr().err
    (copy / "rules" / "zz-new.yaml").unlink()
    assert lock_problems(copy) == [
        "warning: ipm-core/ruleset.lock.json:1:1: locked rule zz.new_rule is no longer "
        "in the ruleset (run ipm-cds lock to record its removal)"
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[]", "Input should be an object"),
        ('{"ruleset": "x", "rules": {"facet.rfa.initial": "1.0.0"}}', "rules.facet.rfa.initial: Input should be"),
        (
            '{"ruleset": "x", "rules": {"facet.rfa.initial": {"version": "1.1", "sha256": "' + "a" * 64 + '"}}}',
            "rules.facet.rfa.initial.version: String should match pattern",
        ),
        ("not json", "Invalid JSON"),
    ],
)
def test_malformed_lock_file_is_a_clear_error(copy: Path, content: str, fragment: str) -> None:
    (copy / "ruleset.lock.json").write_text(content)
    (problem,) = lock_problems(copy)
    assert problem.startswith("error: ipm-core/ruleset.lock.json:1:1: ruleset.lock.json is not a valid lock file: ")
    assert fragment in problem


def test_lock_refuses_to_bless_an_unbumped_change(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import EXIT_OK, EXIT_RULESET, main

    before = (copy / "ruleset.lock.json").read_text()
    edit(copy, "rules/referrals.yaml", "urgency: routine", "urgency: soon", first=True)
    assert main(["lock", str(copy)]) == EXIT_RULESET
    assert "changed but its version is still 1.1.0" in capsys.readouterr().err
    assert (copy / "ruleset.lock.json").read_text() == before
    assert main(["lock", str(copy), "--force"]) == EXIT_OK


def test_unknown_rule_in_a_test_expectation(copy: Path) -> None:
    edit(
        copy,
        "tests/referrals.yaml",
        "fired: [referral.physical_therapy",
        "fired: [referral.physical_therapi",
        first=True,
    )
    line = line_of(copy, "tests/referrals.yaml", "referral.physical_therapi,")
    col = col_of(copy, "tests/referrals.yaml", "referral.physical_therapi,")
    assert problems(copy) == [
        f"ipm-core/tests/referrals.yaml:{line}:{col}: unknown rule 'referral.physical_therapi' in expect.fired "
        "(did you mean 'referral.physical_therapy'?)"
    ]


@pytest.mark.parametrize(
    ("relative", "old", "new", "typo", "meant"),
    [
        # the alias is used in a join (unless ... same_as: pain.region), a target and a template
        ("rules/facet.yaml", "        type: pain\n", "        type: pian\n", "pian", "pain"),
        # the aliases are used by an antithrombotic_hold conclusion
        (
            "rules/antithrombotic.yaml",
            "      candidate: {count_of: {type: candidate}, count: {gte: 1}}\n      # once per drug",
            "      candidate: {count_of: {type: candidat}, count: {gte: 1}}\n      # once per drug",
            "candidat",
            "candidate",
        ),
        (
            "rules/antithrombotic.yaml",
            "      medication: {count_of: {type: medication, antithrombotic: true}, by: [agent, indication]}\n"
            "      # no high",
            "      medication: {count_of: {type: medicaton, antithrombotic: true}, by: [agent, indication]}\n"
            "      # no high",
            "medicaton",
            "medication",
        ),
    ],
)
def test_misspelt_fact_type_is_one_problem_without_a_cascade(
    copy: Path, relative: str, old: str, new: str, typo: str, meant: str
) -> None:
    edit(copy, relative, old, new, first=True)
    line = line_of(copy, relative, f"type: {typo}")
    col = col_of(copy, relative, f"type: {typo}") + len("type: ")
    assert problems(copy) == [f"ipm-core/{relative}:{line}:{col}: unknown fact type {typo!r} (did you mean {meant!r}?)"]


def test_misspelt_fact_type_is_a_clean_cli_error(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import EXIT_RULESET, main

    edit(copy, "rules/facet.yaml", "        type: pain\n", "        type: pian\n", first=True)
    assert main(["validate", str(copy)]) == EXIT_RULESET
    err = capsys.readouterr().err
    assert "unknown fact type 'pian' (did you mean 'pain'?)" in err
    assert "Traceback" not in err and "KeyError" not in err
    patient = Path(__file__).resolve().parent.parent / "examples" / "patients" / "facet_rfa_candidate.yaml"
    assert main(["evaluate", str(patient), "--ruleset", str(copy), "--as-of", "2025-06-02"]) == EXIT_RULESET
    err = capsys.readouterr().err
    assert "unknown fact type 'pian' (did you mean 'pain'?)" in err and "KeyError" not in err


@pytest.mark.parametrize(
    ("written", "shown", "meant"),
    [("1.1", "1.1", "1.1.0"), ('"1.1"', "'1.1'", "1.1.0"), ("'2'", "'2'", "2.0.0"), ("v1.0.0", "'v1.0.0'", "1.0.0")],
)
def test_a_version_that_is_not_semver_says_so(copy: Path, written: str, shown: str, meant: str) -> None:
    edit(copy, "rules/referrals.yaml", "    version: 1.1.0", f"    version: {written}", first=True)
    line = line_of(copy, "rules/referrals.yaml", f"version: {written}")
    assert problems(copy) == [
        f"ipm-core/rules/referrals.yaml:{line}:14: version: {shown} is not a semantic version MAJOR.MINOR.PATCH "
        f"(a version has three numbers, e.g. {meant}; no quotes needed)"
    ]


def test_the_manifest_version_is_semver(copy: Path) -> None:
    version = bundled_version()[0]
    edit(copy, "ruleset.yaml", f"version: {version}\ntitle", "version: 0.2\ntitle")
    assert problems(copy) == [
        "ipm-core/ruleset.yaml:3:10: version: 0.2 is not a semantic version MAJOR.MINOR.PATCH "
        "(a version has three numbers, e.g. 0.2.0; no quotes needed)"
    ]


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("facet_block_relief_pct", "a parameter is read with {param: facet_block_relief_pct}"),
        ("facet_block_relief_pc", "did you mean {param: facet_block_relief_pct}?"),
        ('">= 80"', "operators are words: write {gte: 80}"),
        ('"<=facet_block_relief_pct"', "operators are words: write {lte: {param: facet_block_relief_pct}}"),
    ],
)
def test_a_word_where_a_number_is_expected_suggests_a_parameter(copy: Path, written: str, hint: str) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "relief_pct: {gte: {param: facet_block_relief_pct}}",
        f"relief_pct: {{gte: {written}}}",
        first=True,
    )
    fragment = f"relief_pct: {{gte: {written}}}"
    line = line_of(copy, "rules/facet.yaml", fragment)
    col = col_of(copy, "rules/facet.yaml", fragment) + len("relief_pct: {gte: ")
    shown = written.strip('"')
    assert problems(copy) == [
        f"ipm-core/rules/facet.yaml:{line}:{col}: procedure.relief_pct is an int, but {shown!r} is a str ({hint})"
    ]


@pytest.mark.parametrize(
    ("symbol", "word"), [(">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("==", "eq"), ("!=", "neq")]
)
def test_an_operator_written_as_a_symbol_suggests_its_word(copy: Path, symbol: str, word: str) -> None:
    edit(
        copy,
        "rules/facet.yaml",
        "relief_pct: {gte: {param: facet_block_relief_pct}}",
        f"relief_pct: {{'{symbol}': {{param: facet_block_relief_pct}}}}",
        first=True,
    )
    line = line_of(copy, "rules/facet.yaml", f"relief_pct: {{'{symbol}'")
    col = col_of(copy, "rules/facet.yaml", f"'{symbol}'")
    assert problems(copy) == [
        f"ipm-core/rules/facet.yaml:{line}:{col}: unknown operator {symbol!r} "
        f"(operators are words: write {{{word}: {{param: facet_block_relief_pct}}}})"
    ]


@pytest.mark.parametrize(
    ("old", "new", "at", "message"),
    [
        (
            "    status: active\n",
            "      status: active\n",
            "      status: active",
            "a mapping key is indented differently from its siblings, or the line above is missing its ':' "
            "(align the key with the keys above it; every key is followed by ':')",
        ),
        (
            "    status: active\n",
            "   status: active\n",
            "   status: active",
            "a mapping key is indented differently from its siblings "
            "(align it with the keys of its mapping, using the same number of spaces)",
        ),
        (
            "    status: active\n",
            "\tstatus: active\n",
            "\tstatus: active",
            "a tab character is used for indentation (YAML indents with spaces only: replace the tab by spaces)",
        ),
    ],
)
def test_yaml_indentation_errors_are_plain(copy: Path, old: str, new: str, at: str, message: str) -> None:
    edit(copy, "rules/referrals.yaml", old, new, first=True)
    line = line_of(copy, "rules/referrals.yaml", at)
    (found,) = problems(copy)
    assert found.startswith(f"ipm-core/rules/referrals.yaml:{line}:")
    assert found.endswith(f": YAML syntax error: {message}")


def _failures(root: Path, name: str) -> list[str]:
    from ipm_cds.tooling.casetests import run_cases

    (result,) = run_cases(load_ruleset(root), backend="python", name_filter=name)
    return list(result.failures)


def test_case_content_expectations_pass_and_fail_with_a_diff(copy: Path) -> None:
    apixaban = "cervical MBB on apixaban is intermediate risk"
    bladder = "new bladder dysfunction 13 days ago suppresses"
    assert _failures(copy, apixaban) == []
    assert _failures(copy, bladder) == []
    edit(copy, "tests/antithrombotic.yaml", "          hold: 3-5 days\n", "          hold: 5 days\n")
    edit(copy, "tests/red_flags.yaml", "{facet_rfa: red_flag}", "{facet_rfa: unmet}")
    edit(copy, "tests/red_flags.yaml", "{emergency_department: emergency}", "{emergency_department: urgent}")
    edit(copy, "tests/red_flags.yaml", "{red_flag.cauda_equina: critical}", "{red_flag.cauda_equina: warning}")
    (failure,) = _failures(copy, apixaban)
    assert failure.startswith(
        "precaution (intervention='facet_mbb', kind='antithrombotic', medication='apixaban', "
        "bleeding_risk='intermediate', hold='5 days', restart='24 h', prescriber_approval=True): "
        "no precaution of facet_mbb matches; got 4: antithrombotic apixaban (intermediate risk): "
        '"Apixaban: hold 3-5 days before this intermediate-bleeding-risk procedure'
    )
    assert _failures(copy, bladder) == [
        "exclusion kinds: expected {'facet_rfa': 'unmet_criterion'}, got {'facet_rfa': 'red_flag'}",
        "referral urgency: expected {'emergency_department': 'urgent'}, got {'emergency_department': 'emergency'}",
        "alert severity: expected {'red_flag.cauda_equina': 'warning'}, got {'red_flag.cauda_equina': 'critical'}",
    ]


def test_precaution_text_parts_and_a_missing_candidate(copy: Path) -> None:
    name = "cervical MBB on apixaban is intermediate risk"
    edit(
        copy,
        "tests/antithrombotic.yaml",
        "          prescriber_approval: true\n",
        "          prescriber_approval: true\n          text_contains: [never stop without it]\n"
        "        - {intervention: facet_rfa, medication: apixaban}\n",
    )
    assert _failures(copy, name) == [
        "precaution (intervention='facet_rfa', medication='apixaban'): facet_rfa is not a candidate"
    ]


@pytest.mark.parametrize(
    ("old", "new", "fragment", "message"),
    [
        (
            "{facet_rfa: red_flag}",
            "{facet_rf: red_flag}",
            "facet_rf:",
            "unknown intervention 'facet_rf' in expect.exclusion_kinds (did you mean 'facet_rfa'?)",
        ),
        (
            "{emergency_department: emergency}",
            "{emergency_departement: emergency}",
            "emergency_departement:",
            "unknown referral target 'emergency_departement' in expect.referral_urgency "
            "(did you mean 'emergency_department'?)",
        ),
        (
            "{red_flag.cauda_equina: critical}",
            "{red_flag.cauda_equine: critical}",
            "red_flag.cauda_equine:",
            "unknown alert 'red_flag.cauda_equine' in expect.alert_severity (did you mean 'red_flag.cauda_equina'?)",
        ),
        (
            "      alerts: [red_flag.cauda_equina]\n      # safety",
            "      alerts: [red_flag.cauda_equin]\n      # safety",
            "red_flag.cauda_equin]",
            "unknown alert 'red_flag.cauda_equin' in expect.alerts (did you mean 'red_flag.cauda_equina'?)",
        ),
        (
            "      excluded: [facet_rfa]\n      referrals: [emergency_department]\n"
            "      alerts: [red_flag.cauda_equina]\n      # safety",
            "      excluded: [facet_rfa]\n      referrals: [emergency_departmen]\n"
            "      alerts: [red_flag.cauda_equina]\n      # safety",
            "emergency_departmen]",
            "unknown referral target 'emergency_departmen' in expect.referrals (did you mean 'emergency_department'?)",
        ),
        (
            "      excluded: [facet_rfa]\n      referrals: [emergency_department]\n"
            "      alerts: [red_flag.cauda_equina]\n      # safety",
            "      excluded: [facet_rf]\n      referrals: [emergency_department]\n"
            "      alerts: [red_flag.cauda_equina]\n      # safety",
            "facet_rf]",
            "unknown intervention 'facet_rf' in expect.excluded (did you mean 'facet_rfa'?)",
        ),
    ],
)
def test_unknown_code_in_a_test_expectation(copy: Path, old: str, new: str, fragment: str, message: str) -> None:
    edit(copy, "tests/red_flags.yaml", old, new)
    line = line_of(copy, "tests/red_flags.yaml", fragment)
    col = col_of(copy, "tests/red_flags.yaml", fragment)
    assert problems(copy) == [f"ipm-core/tests/red_flags.yaml:{line}:{col}: {message}"]


def test_unknown_medication_in_a_precaution_expectation(copy: Path) -> None:
    edit(copy, "tests/antithrombotic.yaml", "          medication: apixaban\n", "          medication: apixiban\n")
    line = line_of(copy, "tests/antithrombotic.yaml", "medication: apixiban")
    assert problems(copy) == [
        f"ipm-core/tests/antithrombotic.yaml:{line}:23: unknown medication 'apixiban' in "
        "expect.precaution_details (did you mean 'apixaban'?)"
    ]


def test_test_files_do_not_change_the_ruleset_hash(copy: Path) -> None:
    before = load_ruleset(copy).sha256
    edit(copy, "tests/red_flags.yaml", "{emergency_department: emergency}", "{emergency_department: urgent}")
    assert load_ruleset(copy).sha256 == before


def test_a_value_missing_after_a_colon_says_so(copy: Path) -> None:
    edit(copy, "rules/referrals.yaml", "    status: active\n", "    status:\n", first=True)
    edit(
        copy,
        "rules/facet.yaml",
        "relief_pct: {gte: {param: facet_block_relief_pct}}",
        "relief_pct: {gte: }",
        first=True,
    )
    status = line_of(copy, "rules/referrals.yaml", "    status:")
    gte = line_of(copy, "rules/facet.yaml", "relief_pct: {gte: }")
    found = problems(copy)
    assert f"ipm-core/rules/referrals.yaml:{status}:12: a value is missing after 'status:' " in found[0]
    assert found == [
        f"ipm-core/rules/referrals.yaml:{status}:12: a value is missing after 'status:' "
        "(it should be 'draft', 'active' or 'retired')",
        f"ipm-core/rules/facet.yaml:{gte}:{col_of(copy, 'rules/facet.yaml', '{gte: }') + 6}: a value is missing after "
        "'gte:' (procedure.relief_pct takes a number or {param: NAME})",
    ]


def test_antithrombotic_hold_needs_a_candidate(copy: Path) -> None:
    """The hold advice is given for a candidate, or for each candidate of a count of candidates."""
    counted = "candidate: {count_of: {type: candidate}, count: {gte: 1}}"
    edit(copy, "rules/antithrombotic.yaml", counted, "candidate: {count_of: {type: pain}, count: {gte: 1}}", first=True)
    line = line_of(copy, "rules/antithrombotic.yaml", "- antithrombotic_hold:")
    col = col_of(copy, "rules/antithrombotic.yaml", "candidate: candidate, upgrade") + len("candidate: ")
    assert problems(copy) == [
        f"ipm-core/rules/antithrombotic.yaml:{line}:{col}: candidate names an alias bound to a candidate fact or to "
        "a count of candidates (e.g. candidate: {count_of: {type: candidate}, count: {gte: 1}})"
    ]


def test_antithrombotic_hold_needs_the_drug_agent(copy: Path) -> None:
    """The hold advice reads the drug's agent: a count of medications is accepted only grouped by agent."""
    grouped = "medication: {count_of: {type: medication, antithrombotic: true}, by: [agent, indication]}"
    ungrouped = "medication: {count_of: {type: medication, antithrombotic: true}, by: [indication]}"
    edit(copy, "rules/antithrombotic.yaml", grouped, ungrouped, first=True)
    line = line_of(copy, "rules/antithrombotic.yaml", "- antithrombotic_hold:")
    col = col_of(copy, "rules/antithrombotic.yaml", "{medication: medication") + len("{medication: ")
    assert problems(copy) == [
        f"ipm-core/rules/antithrombotic.yaml:{line}:{col}: medication names an alias bound to a medication fact or "
        "to a count of medications by agent (e.g. medication: {count_of: {type: medication, antithrombotic: "
        "true}, by: [agent, indication]})"
    ]
