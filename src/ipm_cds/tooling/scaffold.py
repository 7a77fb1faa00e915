"""``ipm-cds new pathway NAME``: the files of a new pathway, which validate and whose cases pass as written.

The scaffold is a starting point, not content: every clinical value in it is a placeholder marked
``REPLACE``, its parameter has no default (so its rule is off until the author gives one, or a deployment
sets it, and ``validate``'s linter says so), its source and criterion say what to cite, and its
intervention's bleeding-risk category is the conservative one (``high``) until the author sets the ASRA
2018 category. Nothing outside the ruleset folder is touched, and no existing file is changed except the
criteria catalogue, which gains the pathway's criterion at its end.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["new_pathway"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


def _files(name: str, criterion: str, year: int) -> dict[str, str]:
    title = name.replace("_", " ")
    return {
        f"catalogues/interventions-{name}.yaml": f"""# Pathway {name}: its interventions. Each REPLACE is a placeholder.
interventions:
  - code: {name}
    name: "REPLACE: the {title} intervention's display name"
    kind: therapeutic
    elective: true
    evidence_status: standard
    bleeding_risk:
      default: high              # REPLACE: the ASRA 2018 category (high until set: the conservative end)
      source: {name}_source
      verification: UNVERIFIED
    image_guidance: [fluoroscopy]
    sources: [{name}_source]
""",
        f"catalogues/sources-{name}.yaml": f"""# Pathway {name}: the sources it cites.
sources:
  - id: {name}_source
    citation: "REPLACE: the guideline or payer policy the {title} pathway follows (authors, title, year, section)."
    year: {year}
    kind: guideline
""",
        f"catalogues/parameters-{name}.yaml": f"""# Pathway {name}: its thresholds. No default until a source gives one.
parameters:
  - name: {name}_min_pain_weeks
    type: int
    unit: weeks
    description: "REPLACE: minimum duration of pain before {title}, as the source states it."
    default: null
    min: 0
    max: 520
    source: {name}_source
    verification: UNVERIFIED
    criteria: [{criterion}]
""",
        f"rules/{name}.yaml": f"""# Pathway {name}. REPLACE the pattern with the indication the source gives.
rules:
  - id: {name}.candidate
    version: 1.0.0
    status: active
    title: "REPLACE: {title} for ..."
    criteria: [{criterion}]
    evidence: {{strength: consensus, quality: not_graded, sources: [{name}_source]}}
    when:
      pain: {{type: pain, duration_weeks: {{gte: {{param: {name}_min_pain_weeks}}}}}}
    then:
      - recommend:
          intervention: {name}
          target: {{region: pain.region, side: pain.laterality}}
          rationale: >-
            {{pain.region}} pain for {{pain.duration_weeks}} weeks (at least {{param.{name}_min_pain_weeks}}):
            REPLACE with the rationale the source gives.
""",
        f"tests/{name}.yaml": f"""# Pathway {name}: a case for each branch of each rule, with a near miss beside each.
fixtures:
  patient:
    demographics: {{age_years: 50, sex: female, bmi: 26.0, tobacco_use: never}}
    pain:
      - {{region: lumbar, laterality: left, character: axial, duration_weeks: 30, nrs: 7, is_index: true}}
cases:
  - name: {name} - indication met
    as_of: 2025-06-02
    parameters: {{{name}_min_pain_weeks: 12}}
    extends: patient
    expect:
      fired: [{name}.candidate]
  - name: {name} - near miss - pain too recent
    as_of: 2025-06-02
    parameters: {{{name}_min_pain_weeks: 12}}
    extends: patient
    patient:
      pain:
        - {{region: lumbar, laterality: left, character: axial, duration_weeks: 8, nrs: 7, is_index: true}}
    expect:
      not_fired: [{name}.candidate]
""",
    }


def new_pathway(ruleset: Path, name: str) -> list[Path]:
    """Write the files of pathway ``name`` into a ruleset folder; return them (the criteria catalogue last).

    Refuses (:class:`ConfigurationError`) a name that is not a lower-case code, a folder that is not a
    ruleset, and a pathway whose files or codes already exist.
    """
    if not _NAME.match(name):
        raise ConfigurationError(
            f"pathway name {name!r} is not a lower-case code", hint="letters, digits and _, e.g. pns"
        )
    manifest = ruleset / "ruleset.yaml"
    criteria = ruleset / "catalogues" / "criteria.yaml"
    if not manifest.is_file() or not criteria.is_file():
        raise ConfigurationError(
            f"{ruleset} is not a ruleset folder with catalogues/criteria.yaml", hint="e.g. rules/ipm-core"
        )
    criterion = name.upper().replace("_", "-") + "-01"
    files = _files(name, criterion, date.today().year)
    taken = [rel for rel in files if (ruleset / rel).exists()]
    existing = criteria.read_text(encoding="utf-8")
    if taken or re.search(rf"^\s*- id: {re.escape(criterion)}\s*$", existing, re.M):
        raise ConfigurationError(
            f"pathway {name} exists already in {ruleset}: {', '.join(taken) or 'criterion ' + criterion}",
            hint="choose another name, or edit its files",
        )
    written = []
    for rel, text in files.items():
        path = ruleset / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    entry = (
        f'  - id: {criterion}\n    title: "REPLACE: the {name.replace("_", " ")} criterion, as the source '
        f'states it"\n    section: "REPLACE: its section"\n    verification: UNVERIFIED\n'
    )
    criteria.write_text(existing + ("" if existing.endswith("\n") else "\n") + entry, encoding="utf-8")
    written.append(criteria)
    return written
