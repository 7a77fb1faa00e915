"""A new pathway added purely as files: no Python is touched.

A rule author adds peripheral nerve stimulation (PNS) with a generic peripheral nerve block to a copy of the
bundled ruleset: the codes go into the vocabularies, the interventions, parameter, criterion and source into
their catalogues, the logic into a rule file and its cases into a test file. The copy validates, its cases
pass on both backends, and the safety rules that every needle procedure gets (a red flag blocks it, an
anticoagulant gets its hold advice) apply to the new interventions with no rule of their own. This mirrors
docs/rule-files.md's walkthrough (examples/pathway-pns); its values are an illustration, not shipped content.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import ipm_cds
from ipm_cds import PatientDataError, load_ruleset
from ipm_cds.cli import EXIT_OK, main

from .conftest import AS_OF
from .test_ruleset_errors import bundled_version

PATHWAY = Path(__file__).resolve().parents[1] / "examples" / "pathway-pns"


def _add_pathway(root: Path) -> None:
    """What the walkthrough does: copy the pathway's files in, add its codes and criterion, bump the version."""
    subprocess.run(["bash", str(PATHWAY / "add.sh"), str(root)], check=True)
    vocab = (root / "catalogues" / "vocabularies.yaml").read_text(encoding="utf-8")
    minor = bundled_version()[2]  # the next minor version of the bundled ruleset
    assert "code: pns_trial" in vocab and f"version: {minor}" in (root / "ruleset.yaml").read_text(encoding="utf-8")


def test_the_bundled_ruleset_does_not_know_the_new_codes(copy: Path) -> None:
    doc = {"procedures": [{"kind": "peripheral_nerve_block", "region": "lower_limb", "date": "2025-05-01"}]}
    with pytest.raises(PatientDataError, match="unknown procedure_kind code 'peripheral_nerve_block'"):
        load_ruleset(copy).parse_patient(doc)


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_a_pathway_added_as_files_validates_and_its_cases_pass(
    copy: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_pathway(copy)
    assert main(["lock", str(copy)]) == EXIT_OK
    assert main(["validate", str(copy)]) == EXIT_OK
    assert "warning: " not in capsys.readouterr().out  # nothing unlocked (the linter's warnings have codes)
    assert main(["test", str(copy), "--backend", backend, "--filter", "pns - "]) == EXIT_OK
    out = capsys.readouterr().out
    assert "4 passed" in out, out


def test_the_new_interventions_get_the_shared_safety_rules(copy: Path) -> None:
    _add_pathway(copy)
    engine = ipm_cds.Engine(load_ruleset(copy), backend="python")
    doc = {
        "pain": [{"region": "lower_limb", "laterality": "left", "character": "neuropathic", "duration_weeks": 30}],
        "procedures": [
            {"kind": "peripheral_nerve_block", "region": "lower_limb", "date": "2025-05-01", "relief_pct": 70}
        ],
        "medications": [{"agent": "clopidogrel", "indication": "secondary_prevention"}],
    }
    assessment = engine.evaluate(doc, as_of=AS_OF)
    assert {c.intervention for c in assessment.candidates} == {"peripheral_nerve_block", "pns_trial"}
    held = {c.intervention for c in assessment.candidates for p in c.precautions if p.medication == "clopidogrel"}
    assert held == {"peripheral_nerve_block", "pns_trial"}


def test_every_fhir_map_target_is_a_code_of_the_bundled_vocabularies(ruleset: ipm_cds.Ruleset) -> None:
    from ipm_cds.interop.maps import load_maps

    codes = {name: {c.code for c in v.codes} for name, v in ruleset.vocabularies.items()}
    assert load_maps().codes_outside(codes) == []
    del codes["condition"]  # a ruleset without conditions: every condition map target is outside it
    outside = load_maps().codes_outside(codes)
    assert outside and all("is not a condition code" in line for line in outside)
