"""What the benchmarks evaluate: a generated cohort, patients of growing size, synthetic rulesets."""

from __future__ import annotations

import random
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ipm_cds.model import patient as pm
from ipm_cds.ruleset.loader import Ruleset, bundled_ruleset_path

AS_OF = date(2025, 6, 2)
REFERENCE_PATIENT = Path(__file__).resolve().parent.parent / "examples" / "patients" / "facet_rfa_candidate.yaml"


def reference_patient() -> dict[str, Any]:
    """The README's facet RFA example (10 facts): the patient the issue's targets were first measured on."""
    from ipm_cds.ruleset.yamlsrc import load_yaml, read_text

    data, _ = load_yaml(read_text(REFERENCE_PATIENT), str(REFERENCE_PATIENT))
    assert isinstance(data, dict)
    return data


def cohort(size: int, seed: int = 0) -> list[dict[str, Any]]:
    """``size`` clinically coherent patients from ``ipm_cds.testing.strategies.patients`` (deterministic)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ipm_cds.testing.strategies import patients

    out: list[dict[str, Any]] = []
    strategy = st.one_of(
        patients(), patients(prior_procedures=True), patients(anticoagulants=True, prior_procedures=True)
    )

    @settings(
        max_examples=size,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(patient: pm.PatientCase) -> None:
        if len(out) < size:
            out.append(patient.model_dump(mode="json", exclude_none=True))

    collect()
    rng = random.Random(seed)
    while len(out) < size:  # hypothesis may stop early when it has seen enough distinct examples
        out.append(rng.choice(out))
    return out


def sized_patient(items_per_list: int, ruleset: Ruleset, seed: int = 1) -> dict[str, Any]:
    """A valid patient with ``items_per_list`` items in every list (pain: at most 20, the model's cap).

    Every list of the patient model is capped at 100 items (``patient.MAX_ITEMS``; pain at 20), so the
    largest patient the model accepts has about 1,000 facts: 20 pain complaints and 100 of each other
    kind of item, plus the summaries the normaliser adds. The size series is 1, 10 and 100 items per
    list; the benchmark reports the number of facts each normalises to.
    """
    rng = random.Random(seed)
    codes = _vocabularies(ruleset)

    def day(max_days: int) -> str:
        return (AS_OF - timedelta(days=rng.randint(0, max_days))).isoformat()

    regions = ["cervical", "thoracic", "lumbar", "sacroiliac", "knee", "hip"]
    n = items_per_list
    meds = sorted(ruleset.medications)
    doc: dict[str, Any] = {
        "id": f"sized-{n}",
        "demographics": {"age_years": 64, "sex": "female", "bmi": 27.5, "tobacco_use": "never"},
        "pain": [
            {
                "region": rng.choice(regions),
                "character": rng.choice(["axial", "radicular", "joint", "neuropathic"]),
                "onset_date": day(2000),
                "nrs": rng.randint(0, 10),
                "odi_pct": rng.randint(0, 100),
                "is_index": i == 0,
            }
            for i in range(min(n, 20))
        ],
        "imaging": [
            {
                "modality": rng.choice(["mri", "ct", "xray"]),
                "finding": rng.choice(codes["imaging_finding"]),
                "region": rng.choice(regions[:3]),
                "date": day(1500),
            }
            for _ in range(n)
        ],
        "exam": [{"test": rng.choice(codes["exam_test"]), "positive": rng.random() < 0.5} for _ in range(n)],
        "red_flags": [{"code": rng.choice(codes["red_flag"]), "onset_date": day(400)} for _ in range(n)],
        "procedures": [
            {
                "kind": rng.choice(["facet_mbb", "facet_rfa", "esi_transforaminal", "sij_injection", "facet_ia"]),
                "region": rng.choice(regions[:4]),
                "levels": [rng.choice(["L3-L4", "L4-L5", "L5-S1"])],
                "date": day(1100),
                "relief_pct": rng.randint(0, 100),
            }
            for _ in range(n)
        ],
        "conservative_care": {"physical_therapy_weeks": 12, "active_exercise_program": True, "failed": True},
        "medications": [{"agent": rng.choice(meds)} for _ in range(n)],
        "labs": [{"test": "inr", "value": round(rng.uniform(0.8, 3.0), 1), "date": day(60)} for _ in range(n)],
        "screenings": [{"instrument": "phq9", "score": rng.randint(0, 27), "date": day(300)} for _ in range(n)],
        "conditions": [{"code": rng.choice(codes["condition"]), "active": rng.random() < 0.5} for _ in range(n)],
        "allergies": [{"substance": rng.choice(codes["allergy_substance"])} for _ in range(n)],
    }
    ruleset.parse_patient(doc)  # the size series must be valid patients
    return doc


# -- synthetic rulesets -------------------------------------------------------------------------------------

_RULE = """  - id: synthetic.r{n}
    version: 1.0.0
    status: active
    title: Synthetic rule {n}
    criteria: [RF-CES-01]
    evidence: {{strength: strong, quality: not_graded, sources: [bmj_ces]}}
    when:
{when}
    then:
      - alert: {{code: synthetic.a{n}, severity: info, message: "synthetic {n}"}}
"""


_JOINED = 200  # joined rules at most (50 per joined fact type)


def _vocabularies(ruleset: Ruleset) -> dict[str, tuple[str, ...]]:
    """The ruleset's vocabularies in the order it lists them (so a seed draws the same patient)."""
    return {name: tuple(c.code for c in v.codes) for name, v in ruleset.vocabularies.items()}


def _bundled_codes(name: str) -> tuple[str, ...]:
    from ipm_cds.ruleset.loader import load_ruleset

    return _vocabularies(load_ruleset(with_tests=False))[name]


def _when(n: int, exams: tuple[str, ...], conditions: tuple[str, ...]) -> str:
    """Four rule shapes, within durable-rules' limits (engine-notes §4, docs/performance.md): under one shared
    condition at most 64 conditions that can hold at once (joins, any_of and in count once per pattern),
    at most 128 any_of/in, fewer than 255 rules ending on one identical condition."""
    k = n // 4
    region = ["lumbar", "cervical", "thoracic", "sacroiliac"][k % 4]
    shape = n % 4
    if shape == 0:
        return f"      pain: {{type: pain, region: {region}, nrs: {{gte: {k % 11}}}, odi_pct: {{gte: {k % 60}}}}}"
    if shape == 1:
        if k < _JOINED:
            # A join is a new engine condition every time, and every join holds at once for a fact of its type:
            # at most 64 per fact type and stratum, so the joined rules are capped and spread over four types.
            other = [
                f"procedure, region: {{same_as: pain.region}}, relief_pct: {{gte: {k % 101}}}",
                f"imaging, region: {{same_as: pain.region}}, days_since: {{gte: {k % 200}}}",
                f"exam, region: {{same_as: pain.region}}, test: {exams[k % len(exams)]}",
                f"condition, region: {{same_as: pain.region}}, code: {conditions[k % len(conditions)]}",
            ][k % 4]
            return (
                f"      pain: {{type: pain, region: {region}, nrs: {{gte: {k % 11}}}}}\n      other: {{type: {other}}}"
            )
        return f"      block: {{type: procedure, region: {region}, relief_pct: {{gte: {k % 60}}}}}"
    if shape == 2:
        return (
            f"      pain: {{type: pain, region: {region}, nrs: {{gte: {k % 11}}},\n"
            f"             any_of: [{{odi_pct: {{lt: {k % 97 + 1}}}}}, {{worsening: true}}]}}"
        )
    drug_class = ["anticoagulant", "antiplatelet", "nsaid", "opioid"][k % 4]
    return f"      med: {{type: medication, drug_class: {drug_class}, daily_dose: {{gte: {(k // 4) % 60}}}}}"


def synthetic_ruleset(rules: int, folder: Path) -> Path:
    """A copy of the bundled ruleset's manifest and catalogues with ``rules`` generated rules instead of its own."""
    root = folder / f"synthetic-{rules}"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(bundled_ruleset_path(), root)
    for path in (root / "rules").glob("*.yaml"):
        path.unlink()
    shutil.rmtree(root / "tests", ignore_errors=True)
    (root / "ruleset.lock.json").unlink(missing_ok=True)
    exams, conditions = _bundled_codes("exam_test"), _bundled_codes("condition")
    body = "".join(_RULE.format(n=n, when=_when(n, exams, conditions)) for n in range(rules))
    (root / "rules" / "synthetic.yaml").write_text("rules:\n" + body, encoding="utf-8")
    return root
