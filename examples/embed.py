"""Embed ipm-cds the way an EHR integration would.

Run from the repository root::

    PYTHONPATH=src python examples/embed.py

What it shows:

* load the ruleset once (the bundled ``ipm-core``), build one :class:`ipm_cds.Engine` per profile, and
  reuse both for every patient;
* evaluate a patient built in code (what an EHR adapter produces) and one read from
  ``examples/patients/``, always with a pinned ``as_of`` so the answer is reproducible;
* handle :class:`ipm_cds.PatientDataError` (fix the record, nothing was assessed) and
  :class:`ipm_cds.EvaluationError` (fail closed: show no recommendation at all);
* print candidates with their rationale and rule id@version, exclusions with their reasons, referrals
  with their urgency, missing data, and the provenance to store beside the result.

The output is decision support for a clinician, never an order.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import yaml

import ipm_cds

AS_OF = date(2025, 6, 2)
"""Pin the evaluation date. In production, pass the date of the encounter, not today's wall clock."""

EXAMPLES = Path(__file__).resolve().parent / "patients"


def make_engine(ruleset: ipm_cds.Ruleset, profile: str) -> ipm_cds.Engine:
    """An engine on backend="auto" (the default): durable-rules where it is installed and importable, the
    plain-Python backend otherwise (Python 3.13+, no C compiler); the provenance names the one that ran."""
    return ipm_cds.Engine(ruleset, profile=profile)


def patient_from_ehr() -> dict[str, Any]:
    """A patient as an EHR adapter builds it: plain JSON-like data, codes from the closed vocabularies."""
    return {
        "id": "ehr-demo-001",
        "demographics": {"age_years": 71, "sex": "female"},
        "pain": [
            {
                "region": "cervical",
                "laterality": "left",
                "character": "axial",
                "onset_date": "2024-11-04",
                "nrs": 6,
                "ndi": 22,
                "is_index": True,
            },
        ],
        "conservative_care": {"physical_therapy_weeks": 8, "failed": True},
        "medications": [
            {"agent": "aspirin", "daily_dose": 81, "dose_unit": "mg", "indication": "secondary_prevention"},
        ],
    }


def patient_from_file(name: str) -> Any:
    """A patient document from examples/patients/ (YAML; a JSON string or a dict works the same)."""
    with (EXAMPLES / name).open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def show(assessment: ipm_cds.Assessment) -> None:
    """Print what a clinician-facing integration would display, each item with the rule behind it."""
    print(f"Assessment for {assessment.patient_id} as of {assessment.as_of.isoformat()}")
    for alert in assessment.alerts:
        print(f"  ALERT {alert.severity}: {alert.message} [{alert.basis.rule}]")
    print(f"  Candidates ({len(assessment.candidates)}):")
    for cand in assessment.candidates:
        target = ", ".join(p for p in (cand.target.region, cand.target.side, cand.target.levels) if p)
        print(f"    - {cand.name} ({target}) [{cand.basis.rule}]")
        print(f"      rationale: {cand.rationale}")
        for precaution in cand.precautions:
            approval = " (prescriber approval)" if precaution.requires_prescriber_approval else ""
            print(f"      precaution{approval}: {precaution.text} [{precaution.basis.rule}]")
        for check in cand.unresolved_checks:
            print(f"      undecided for lack of data: {check}")
    print(f"  Excluded ({len(assessment.excluded)}):")
    for exclusion in assessment.excluded:
        print(f"    - {exclusion.name}: {exclusion.kind}: {exclusion.reason} [{exclusion.basis.rule}]")
    print(f"  Referrals ({len(assessment.referrals)}):")
    for referral in assessment.referrals:
        reasons = "; ".join(referral.reason.splitlines())
        print(f"    - {referral.name} [{referral.urgency}]: {reasons} [{referral.basis.rule}]")
    print(f"  Missing data ({len(assessment.missing_data)}):")
    for missing in assessment.missing_data:
        safety = " [safety]" if missing.safety else ""
        print(f"    - {missing.field} of {missing.item}{safety}: needed by {', '.join(missing.needed_by)}")
    p = assessment.provenance
    print(
        f"  Provenance: ruleset {p.ruleset_id} {p.ruleset_version} sha256 {p.ruleset_sha256}, "
        f"profile {p.profile}, backend {p.backend}, overrides {p.parameter_overrides or 'none'}"
    )


def assess(engine: ipm_cds.Engine, document: Any) -> ipm_cds.Assessment | None:
    """Evaluate one patient; on error say why and return None. There is never a partial assessment."""
    try:
        return engine.evaluate(document, as_of=AS_OF)
    except ipm_cds.PatientDataError as exc:
        # The record is unusable as it stands: show every problem, by field path, to whoever can fix it.
        print("Patient record rejected; nothing was assessed:")
        for problem in exc.problems:
            print(f"  - {problem}")
    except ipm_cds.EvaluationError as exc:
        # Fail closed: the whole evaluation is abandoned. Show no candidates and log the rule named.
        print(f"Evaluation failed; show no recommendations: {exc}")
    return None


def main() -> int:
    try:
        ruleset = ipm_cds.load_ruleset()  # bundled ipm-core; load once at start-up, share between engines
    except ipm_cds.RulesetError as exc:
        # A deployment problem, not a patient problem: refuse to start, listing every file:line:col.
        print(f"Cannot start: the ruleset is invalid:\n{exc.report()}", file=sys.stderr)
        return 2
    engine = make_engine(ruleset, profile="cms_lcd")

    failures = 0
    for document in (patient_from_ehr(), patient_from_file("facet_rfa_candidate.yaml")):
        assessment = assess(engine, document)
        if assessment is None:
            failures += 1
        else:
            show(assessment)
        print()

    # The same record under the society-consensus thresholds (a second engine, same ruleset).
    consensus = make_engine(ruleset, profile="society_consensus")
    assessment = assess(consensus, patient_from_file("facet_discordant_blocks.yaml"))
    if assessment is None:
        failures += 1
    else:
        show(assessment)
    print()

    # A record with mistakes, to show the error path: it is rejected whole, with every problem listed.
    # (Checks that need the ruleset or as_of, such as medication codes and dates after as_of, run once
    # the record has passed these schema checks.)
    broken = patient_from_ehr()
    broken["pain"][0]["nrs"] = 11
    broken["pain"][0]["laterality"] = "L"
    if assess(engine, broken) is not None:
        failures += 1  # an invalid record must never produce an assessment
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
