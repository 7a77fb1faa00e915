"""Wording (issue 14): one alert per red-flag syndrome listing its findings; no 'onset not recorded days ago';
no text sending the reader to the alert it is part of; explain leads with the decisive reason."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

import ipm_cds
from ipm_cds.engine.explain import render_explanation

AS_OF = date(2025, 6, 2)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "patients"


def _ces(*flags: dict[str, Any]) -> dict[str, Any]:
    return {
        "demographics": {"age_years": 50, "sex": "female", "bmi": 26.0, "tobacco_use": "never"},
        "pain": [
            {
                "region": "lumbar",
                "laterality": "bilateral",
                "character": "radicular",
                "duration_weeks": 3,
                "nrs": 7,
                "is_index": True,
                "worsening": False,
            }
        ],
        "conservative_care": {"active_exercise_program": True},
        "red_flags": list(flags),
    }


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_one_alert_per_syndrome_listing_its_findings(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    a = engine.evaluate(yaml.safe_load((EXAMPLES / "cauda_equina.yaml").read_text()), as_of=AS_OF)
    (ces,) = [al for al in a.alerts if al.code == "red_flag.cauda_equina"]
    assert "bladder dysfunction" in ces.message and "saddle anesthesia" in ces.message
    assert len(ces.message.splitlines()) == 1


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_a_missing_onset_is_not_printed_as_days(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    a = engine.evaluate(
        _ces({"code": "saddle_anesthesia"}, {"code": "bladder_dysfunction", "onset_date": "2025-05-30"}), as_of=AS_OF
    )
    (ces,) = [al for al in a.alerts if al.code == "red_flag.cauda_equina"]
    lines = ces.message.splitlines()
    assert len(lines) == 2  # the new symptom and the one whose course is not recorded, in one alert
    assert "bladder dysfunction" in lines[0] and "saddle anesthesia" in lines[1]
    texts = [al.message for al in a.alerts] + [r.reason for r in a.referrals] + [e.reason for e in a.excluded]
    assert not [t for t in texts if "not recorded days" in t]
    (ed,) = [r for r in a.referrals if r.to == "emergency_department"]
    assert ed.urgency == "emergency"


def test_no_text_sends_the_reader_to_the_alerts(ruleset: ipm_cds.Ruleset) -> None:
    a = ipm_cds.Engine(ruleset, backend="python").evaluate(
        yaml.safe_load((EXAMPLES / "cauda_equina.yaml").read_text()), as_of=AS_OF
    )
    reasons = [e.reason for e in a.excluded] + [d.reason for d in a.deferred_referrals]
    assert reasons and not [r for r in reasons if "alert" in r.lower()]


def test_explain_leads_with_the_decisive_reason(ruleset: ipm_cds.Ruleset) -> None:
    engine = ipm_cds.Engine(ruleset, backend="python")
    ex = engine.explain(yaml.safe_load((EXAMPLES / "facet_rfa_candidate.yaml").read_text()), as_of=AS_OF)
    rfa = next(c for c in ex.conclusions if c.conclusion.startswith("candidate facet_rfa"))
    candidate = next(c for c in ex.assessment.candidates if c.intervention == "facet_rfa")
    assert rfa.conclusion.endswith(candidate.rationale)
    ex = engine.explain(yaml.safe_load((EXAMPLES / "facet_discordant_blocks.yaml").read_text()), as_of=AS_OF)
    (why,) = [w for w in ex.why_not if w.intervention == "facet_rfa"]
    assert why.status == "excluded" and why.reason.startswith("Discordant diagnostic blocks")
    initial = next(a for a in why.rules if a.rule.startswith("facet.rfa.initial@"))
    assert initial.title == "Initial medial branch RFA after two positive diagnostic blocks"
    text = render_explanation(ex)
    assert "[facet_rfa] - excluded: Discordant diagnostic blocks" in text
    assert "facet.rfa.initial@1.2.0 (Initial medial branch RFA after two positive diagnostic blocks)" in text
