"""ipm-cds new pathway NAME: files that validate and whose cases pass, with every clinical value a placeholder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipm_cds import ConfigurationError, load_ruleset
from ipm_cds.cli import EXIT_OK, main
from ipm_cds.tooling.lint import lint
from ipm_cds.tooling.scaffold import new_pathway


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_a_new_pathway_validates_and_its_cases_pass(
    copy: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", "pathway", "knee_gel", "--ruleset", str(copy)]) == EXIT_OK
    assert "wrote" in capsys.readouterr().out
    assert main(["validate", str(copy)]) == EXIT_OK
    assert main(["test", str(copy), "--backend", backend, "--filter", "knee_gel - "]) == EXIT_OK
    assert "2 passed, 0 failed" in capsys.readouterr().out


def test_the_scaffold_invents_no_number(copy: Path) -> None:
    new_pathway(copy, "knee_gel")
    ruleset = load_ruleset(copy)
    assert ruleset.parameters["knee_gel_min_pain_weeks"].default is None  # off until a source gives it
    assert ruleset.interventions["knee_gel"].bleeding_risk.default == "high"  # the conservative end until set
    assert any(p.code == "no-default" and "knee_gel_min_pain_weeks" in p.message for p in lint(ruleset))
    text = "".join(p.read_text() for p in (copy / "rules").glob("knee_gel.yaml"))
    assert "REPLACE" in text


def test_a_pathway_is_not_written_twice_nor_under_a_bad_name(copy: Path) -> None:
    new_pathway(copy, "knee_gel")
    with pytest.raises(ConfigurationError, match="pathway knee_gel exists already"):
        new_pathway(copy, "knee_gel")
    with pytest.raises(ConfigurationError, match="is not a lower-case code"):
        new_pathway(copy, "Knee Gel")
    with pytest.raises(ConfigurationError, match="is not a ruleset folder"):
        new_pathway(copy / "rules", "knee_gel2")
