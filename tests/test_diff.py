"""ipm-cds diff: structural changes and clinical impact between two ruleset versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ipm_cds
from ipm_cds.cli import EXIT_OK, main
from ipm_cds.ruleset.loader import bundled_ruleset_path
from ipm_cds.tooling.diff import case_patients, diff_rulesets, generated_patients


def test_identical_rulesets_change_nothing(ruleset: ipm_cds.Ruleset) -> None:
    d = diff_rulesets(ruleset, ruleset, patients=case_patients(ruleset)[::4])
    assert d.changes == [] and d.parameters_changed == [] and d.rules_added == []
    assert d.unchanged == d.patients + d.probes and d.patients > 50


def test_facet_threshold_80_to_50_reports_patients_who_gain_rfa(ruleset: ipm_cds.Ruleset, copy: Path) -> None:
    path = copy / "catalogues" / "parameters.yaml"
    path.write_text(path.read_text().replace("      cms_lcd: 80\n", "      cms_lcd: 50\n"))
    new = ipm_cds.load_ruleset(copy)
    # the facet cases: patients with a facet procedure (the rest cannot change; the test stays fast)
    cohort = [
        (p, when) for p, when in case_patients(ruleset, new) if any(x.kind.startswith("facet") for x in p.procedures)
    ]
    assert len(cohort) > 20
    d = diff_rulesets(ruleset, new, patients=cohort[:12])
    assert d.parameters_changed == ["facet_block_relief_pct [cms_lcd]: 80 -> 50"]
    assert d.probes > 0
    rfa = next(c for c in d.changes if (c.what, c.code) == ("candidate", "facet_rfa"))
    assert rfa.gained > 0 and rfa.lost == 0
    assert rfa.gained_example is not None
    # the example really gains RFA: evaluate it under both versions
    old_engine, new_engine = ipm_cds.Engine(ruleset), ipm_cds.Engine(new)
    from datetime import date

    when = date(2025, 6, 2)
    assert "facet_rfa" not in old_engine.evaluate(rfa.gained_example, as_of=when).codes()["candidates"]
    assert "facet_rfa" in new_engine.evaluate(rfa.gained_example, as_of=when).codes()["candidates"]


def test_structural_changes_are_listed(ruleset: ipm_cds.Ruleset, copy: Path) -> None:
    path = copy / "rules" / "referrals.yaml"
    path.write_text(
        path.read_text()
        .replace("urgency: routine", "urgency: soon", 1)
        .replace("    version: 1.0.0", "    version: 1.1.0", 1)
    )
    facet = copy / "rules" / "facet.yaml"
    facet.write_text(facet.read_text().replace("at most {param.facet_max_levels} levels, under", "under", 1))
    new = ipm_cds.load_ruleset(copy)
    d = diff_rulesets(ruleset, new, patients=[])
    assert d.rules_reversioned == ["referral.physical_therapy 1.0.0 -> 1.1.0"]
    assert d.rules_changed_without_version == ["facet.mbb.first@1.3.0"]


def test_generated_patients_are_the_same_on_every_run() -> None:
    a, b = generated_patients(5), generated_patients(5)
    assert len(a) == 5 and [p.model_dump_json() for p in a] == [p.model_dump_json() for p in b]


def _without_tests(target: Path) -> Path:
    shutil.copytree(bundled_ruleset_path(), target, ignore=shutil.ignore_patterns("tests"))
    manifest = target / "ruleset.yaml"
    manifest.write_text(manifest.read_text().replace('tests:\n  - "tests/*.yaml"\n', "tests: []\n"))
    return target


def test_cli_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _without_tests(tmp_path / "old"), _without_tests(tmp_path / "new")
    params = new / "catalogues" / "parameters.yaml"
    params.write_text(params.read_text().replace("      cms_lcd: 80\n", "      cms_lcd: 50\n"))
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(
        Path(__file__).resolve().parent.parent / "examples" / "patients" / "facet_discordant_blocks.yaml", cases
    )
    assert main(["diff", str(old), str(new), "--cases", str(cases), "--generate", "10"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "facet_block_relief_pct [cms_lcd]: 80 -> 50" in out
    assert "candidate facet_rfa: +" in out and "smallest patient who gained it:" in out


def test_a_new_pathways_criteria_vocabulary_and_thresholds_are_listed_and_probed(
    ruleset: ipm_cds.Ruleset, copy: Path
) -> None:
    import subprocess

    from ipm_cds.tooling.diff import _changed_thresholds, _structure

    subprocess.run(
        ["bash", str(Path(__file__).resolve().parents[1] / "examples/pathway-pns/add.sh"), str(copy)], check=True
    )
    new = ipm_cds.load_ruleset(copy)
    structure = _structure(ruleset, new)
    assert "criterion added: PNS-01" in structure["catalogue"]
    assert "vocabulary changed: procedure_kind" in structure["catalogue"]
    assert "intervention added: pns_trial" in structure["catalogue"]
    assert "pns_block_relief_pct: added" in structure["params"]
    probed = {
        (t.rule.split("@")[0], t.field): values for t, values in _changed_thresholds(ruleset, new, "cms_lcd", "cms_lcd")
    }
    assert probed[("pns.trial.candidate", "relief_pct")] == [49, 50, 51]
