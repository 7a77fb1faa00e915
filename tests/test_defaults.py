"""Tagged parameter defaults (issue 14): no rule is off by default, and an assessment names every tagged
default that decided an outcome; the text report summarises rules that did not run in one line."""

from __future__ import annotations

from datetime import date

import pytest

import ipm_cds
from ipm_cds.model.render import render_text
from ipm_cds.tooling.content import content, render_markdown, tagged_defaults

AS_OF = date(2025, 6, 2)


def _patient(age: int) -> dict[str, object]:
    return {
        "demographics": {"age_years": age, "sex": "female"},
        "pain": [
            {
                "region": "lumbar",
                "laterality": "bilateral",
                "character": "axial",
                "duration_weeks": 30,
                "nrs": 6,
                "odi_pct": 34,
                "is_index": True,
            }
        ],
        "conservative_care": {"physical_therapy_weeks": 10, "active_exercise_program": True, "failed": True},
        "medications": [
            {"agent": "clopidogrel", "daily_dose": 75, "dose_unit": "mg", "indication": "secondary_prevention"}
        ],
    }


def test_no_rule_is_off_by_default_under_any_profile(ruleset: ipm_cds.Ruleset) -> None:
    for row in content(ruleset):
        for profile, why in row.profiles.items():
            assert "parameter without a value" not in why, (row.rule, profile, why)


def test_every_parameter_has_a_default_or_a_value_in_every_profile(ruleset: ipm_cds.Ruleset) -> None:
    for name, param in ruleset.parameters.items():
        for profile in ruleset.manifest.profiles:
            assert param.profiles.get(profile, param.default) is not None, (name, profile)


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_a_tagged_default_that_decided_an_outcome_is_named(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    old = engine.evaluate(_patient(80), as_of=AS_OF)
    applied = [d for d in old.provenance.defaults_applied if d.parameter == "asra_old_age_years"]
    assert len(applied) == 1
    assert applied[0].value == 65
    assert applied[0].basis == "conservative_default"
    assert applied[0].source == "pisters_2010_has_bled"
    assert applied[0].rule.startswith("asra.bleeding_risk.age@")
    assert applied[0].decided == ["derive:high_bleeding_risk"]
    # Below the threshold the rule does not fire, so the default decided nothing.
    young = engine.evaluate(_patient(64), as_of=AS_OF)
    assert not [d for d in young.provenance.defaults_applied if d.parameter == "asra_old_age_years"]


def test_an_override_is_not_reported_as_a_default(ruleset: ipm_cds.Ruleset) -> None:
    engine = ipm_cds.Engine(ruleset, backend="python", parameters={"asra_old_age_years": 70})
    assessment = engine.evaluate(_patient(80), as_of=AS_OF)
    assert assessment.provenance.rules_active > 0
    assert not [d for d in assessment.provenance.defaults_applied if d.parameter == "asra_old_age_years"]
    assert "asra.bleeding_risk.age" in {t.rule.split("@")[0] for t in assessment.trace}


def test_text_report_summarises_inactive_rules_unless_asked(ruleset: ipm_cds.Ruleset) -> None:
    engine = ipm_cds.Engine(ruleset, profile="nice", backend="python")
    assessment = engine.evaluate(_patient(80), as_of=AS_OF)
    inactive = assessment.provenance.rules_inactive
    assert inactive
    short = render_text(assessment)
    assert f"INACTIVE RULES ({len(inactive)}):" in short
    assert not any(f"- {ref}:" in short for ref in inactive)
    long = render_text(assessment, list_inactive=True)
    assert all(f"- {ref}:" in long for ref in inactive)
    assert "DEFAULTS THAT DECIDED AN OUTCOME" in short and "asra_old_age_years = 65" in short


def test_content_lists_the_tagged_defaults(ruleset: ipm_cds.Ruleset) -> None:
    defaults = {d.name: d for d in tagged_defaults(ruleset)}
    assert defaults["infection_recent_procedure_days"].kind == "conservative_default"
    assert defaults["tpi_max_sessions"].kind == "common_practice"
    assert "red_flag.spinal_infection.post_procedure" in defaults["infection_recent_procedure_days"].rules[0]
    text = render_markdown(ruleset, content(ruleset))
    assert "| inr_normal_max | 1.2 INR | conservative_default |" in text
