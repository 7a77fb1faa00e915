"""explain: derivation trees and why-not analyses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ipm_cds
from ipm_cds.cli import EXIT_OK, EXIT_USAGE, main

from .conftest import AS_OF

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "patients"


def load(name: str) -> object:
    from ipm_cds.patientfile import read_patient_document

    return read_patient_document(EXAMPLES / name)


def test_discordant_blocks_name_the_second_block_and_the_threshold(durable: ipm_cds.Engine) -> None:
    ex = durable.explain(load("facet_discordant_blocks.yaml"), as_of=AS_OF)  # type: ignore[arg-type]
    rfa = next(w for w in ex.why_not if w.intervention == "facet_rfa")
    assert rfa.status == "excluded"
    initial = next(a for a in rfa.rules if a.rule == "facet.rfa.initial@1.2.0")
    assert initial.outcome == "condition failed"
    assert initial.checks[0].condition == "a latest positive_facet_block fact with rank = 2"
    (positive,) = initial.because
    assert positive.rule == "facet.block.positive@1.0.0"
    (check,) = positive.checks
    assert check.condition == "relief_pct ≥ 80 (parameter facet_block_relief_pct)"
    assert check.actual == "60"
    assert check.fact == "procedure[kind=facet_mbb, region=lumbar, levels=L4-L5, date=2025-03-17]"


def test_derivation_tree_reaches_the_input_facts(durable: ipm_cds.Engine) -> None:
    ex = durable.explain(load("facet_rfa_candidate.yaml"), as_of=AS_OF)  # type: ignore[arg-type]
    rfa = next(c for c in ex.conclusions if c.conclusion.startswith("candidate facet_rfa"))
    assert rfa.rule == "facet.rfa.initial@1.2.0"
    blocks = [m for m in rfa.matched if m.alias in ("first", "second")]
    assert len(blocks) == 2
    for block in blocks:
        (derivation,) = block.derived_by
        assert derivation.rule == "facet.block.positive@1.0.0"
        assert derivation.matched[0].values["kind"] == "facet_mbb"
    assert sorted(b.values["relief_pct"] for b in blocks) == [85, 90]


def test_red_flag_override_and_blocked_rules_are_named(python_engine: ipm_cds.Engine) -> None:
    ex = python_engine.explain(load("cauda_equina.yaml"), as_of=AS_OF)  # type: ignore[arg-type]
    rfa = next(w for w in ex.why_not if w.intervention == "facet_rfa")
    initial = next(a for a in rfa.rules if a.rule == "facet.rfa.initial@1.2.0")
    assert initial.outcome == "overridden"
    assert initial.details[0].startswith("red flag by red_flag.cauda_equina@1.1.0")
    assert initial.title and rfa.reason.startswith("Red flag (cauda equina)")
    mbb = next(w for w in ex.why_not if w.intervention == "facet_mbb")
    first = next(a for a in mbb.rules if a.rule == "facet.mbb.first@1.3.0")
    assert first.outcome == "blocked"
    assert first.details[0].startswith(
        "unless[0] (earlier_block: count of procedure) matched count of procedure[region=lumbar] = 2 "
        "(procedure[kind=facet_mbb"
    )


def test_missing_data_is_the_reason(durable: ipm_cds.Engine) -> None:
    patient = {
        "pain": [{"region": "lumbar", "character": "axial", "nrs": 7, "odi_pct": 40}],
        "conservative_care": {"failed": True},
    }
    ex = durable.explain(patient, as_of=AS_OF)
    mbb = next(w for w in ex.why_not if w.intervention == "facet_mbb")
    first = next(a for a in mbb.rules if a.rule == "facet.mbb.first@1.3.0")
    assert first.outcome == "missing data"
    assert first.details == ["needs pain[region=lumbar, character=axial].duration_weeks"]


def test_backends_explain_alike(durable: ipm_cds.Engine, python_engine: ipm_cds.Engine) -> None:
    for name in ("facet_rfa_candidate.yaml", "facet_discordant_blocks.yaml", "cauda_equina.yaml"):
        a = durable.explain(load(name), as_of=AS_OF).model_dump(mode="json")  # type: ignore[arg-type]
        b = python_engine.explain(load(name), as_of=AS_OF).model_dump(mode="json")  # type: ignore[arg-type]
        for d in (a, b):
            d["assessment"]["provenance"].pop("backend")
        assert a == b


def test_cli_explain(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "facet_discordant_blocks.yaml")
    assert main(["explain", path, "--as-of", "2025-06-02", "--intervention", "facet_rfa"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "x Facet medial branch radiofrequency ablation (thermal) [facet_rfa] - excluded" in out
    assert "failed: relief_pct ≥ 80 (parameter facet_block_relief_pct); actual 60 in procedure[" in out
    assert "[facet_mbb]" not in out
    assert main(["explain", path, "--as-of", "2025-06-02", "--format", "json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert {w["intervention"] for w in data["why_not"]} >= {"facet_rfa", "facet_mbb", "facet_ia"}
    assert main(["explain", path, "--intervention", "facet_rf"]) == EXIT_USAGE
    assert "did you mean 'facet_rfa'?" in capsys.readouterr().err


def test_explain_one_intervention_lists_only_its_own_firings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """safety.infection.local_site excludes candidate.intervention: it fires once per candidate, and the
    exclusion of facet_mbb is explained by the facet_mbb firing only, never by the BVN ablation's."""
    patient = tmp_path / "p.yaml"
    patient.write_text(
        "demographics: {age_years: 55, sex: male, bmi: 26.0, tobacco_use: never}\n"
        "pain:\n"
        "  - {region: lumbar, laterality: midline, character: axial, duration_weeks: 40, nrs: 6, odi_pct: 30,"
        " is_index: true}\n"
        "imaging:\n"
        "  - {modality: mri, finding: modic_type_1, region: lumbar, level: L4-L5, date: 2025-03-01}\n"
        "conditions:\n"
        "  - {code: local_infection_at_site, region: lumbar}\n"
        "conservative_care: {physical_therapy_weeks: 10, failed: true, active_exercise_program: true,"
        " nonoperative_months: 8}\n"
    )
    args = ["explain", str(patient), "--as-of", "2025-06-02", "--format", "json"]
    assert main(args) == EXIT_OK
    everything = json.loads(capsys.readouterr().out)
    excluded = {e["intervention"] for e in everything["assessment"]["excluded"]}
    assert {"facet_mbb", "bvn_ablation"} <= excluded
    for code in ("facet_mbb", "bvn_ablation"):
        assert main([*args, "--intervention", code]) == EXIT_OK
        data = json.loads(capsys.readouterr().out)
        local = [c for c in data["conclusions"] if c["rule"].startswith("safety.infection.local_site@")]
        assert [c["conclusion"].split(":")[0] for c in local] == [f"excluded {code}"]
        (conclusion,) = local
        (candidate,) = [m for m in conclusion["matched"] if m["alias"] == "candidate"]
        assert candidate["values"]["intervention"] == code
    for c in everything["conclusions"]:
        if c["conclusion"].startswith("excluded "):
            code = c["conclusion"].split(" ")[1].rstrip(":")
            bound = [m["values"].get("intervention") for m in c["matched"] if m["alias"] == "candidate"]
            assert all(b == code for b in bound), c["conclusion"]
