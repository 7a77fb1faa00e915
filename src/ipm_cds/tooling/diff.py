"""Impact analysis between two versions of a ruleset (``ipm-cds diff OLD NEW``).

Structural changes: rules added, removed, re-versioned or changed; parameter values changed per
profile; catalogue entries added or removed. Clinical impact: the same patients evaluated under both
versions, and per intervention, referral and alert, how many gained or lost it, each kind of change
with the smallest patient that shows it. The patients are the test cases of both rulesets, any patient
files given, generated patients, and *threshold probes*: for every parameter whose value changed, copies
of those patients with the compared field set just below, on and just above the old and the new value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..engine.facade import Engine
from ..errors import IpmCdsError
from ..model.patient import PatientCase
from ..ruleset import ir
from ..ruleset.loader import Ruleset
from ..ruleset.lock import rule_hash
from ..testing.boundaries import Threshold, set_fact_field, thresholds
from ..testing.strategies import DEFAULT_AS_OF


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Change(_Out):
    what: str = Field(description="'candidate', 'referral', 'deferred referral' or 'alert'.")
    code: str
    gained: int = Field(description="Patients who have it under NEW but not OLD.")
    lost: int = Field(description="Patients who had it under OLD but not NEW.")
    gained_example: dict[str, Any] | None = None
    lost_example: dict[str, Any] | None = None


class RulesetDiff(_Out):
    old: str
    new: str
    profile_old: str
    profile_new: str
    rules_added: list[str]
    rules_removed: list[str]
    rules_reversioned: list[str]
    rules_changed_without_version: list[str]
    parameters_changed: list[str]
    catalogue_changes: list[str]
    patients: int
    probes: int
    unchanged: int
    errors: list[str]
    changes: list[Change]


def _structure(old: Ruleset, new: Ruleset) -> dict[str, list[str]]:
    added = sorted(set(new.rule_specs) - set(old.rule_specs))
    removed = sorted(set(old.rule_specs) - set(new.rule_specs))
    reversioned, silent = [], []
    for rid in sorted(set(old.rule_specs) & set(new.rule_specs)):
        a, b = old.rule_specs[rid], new.rule_specs[rid]
        if a.version != b.version:
            reversioned.append(f"{rid} {a.version} -> {b.version}")
        elif rule_hash(a) != rule_hash(b):
            silent.append(f"{rid}@{a.version}")
    params = []
    profiles = sorted(set(old.manifest.profiles) | set(new.manifest.profiles))
    for name in sorted(set(old.parameters) | set(new.parameters)):
        pa, pb = old.parameters.get(name), new.parameters.get(name)
        if pa is None or pb is None:
            params.append(f"{name}: {'added' if pa is None else 'removed'}")
            continue
        for profile in profiles:
            va, vb = pa.value(profile), pb.value(profile)
            if va != vb:
                params.append(f"{name} [{profile}]: {va} -> {vb}")
    catalogue = []
    for what, a_map, b_map in (
        ("intervention", old.interventions, new.interventions),
        ("referral target", old.referrals, new.referrals),
        ("medication", old.medications, new.medications),
        ("source", old.sources, new.sources),
        ("criterion", old.criteria, new.criteria),
        ("vocabulary", old.vocabularies, new.vocabularies),
        ("message", old.messages, new.messages),
    ):
        catalogue += [f"{what} added: {k}" for k in sorted(set(b_map) - set(a_map))]
        catalogue += [f"{what} removed: {k}" for k in sorted(set(a_map) - set(b_map))]
        catalogue += [f"{what} changed: {k}" for k in sorted(set(a_map) & set(b_map)) if a_map[k] != b_map[k]]
    return {
        "added": added,
        "removed": removed,
        "reversioned": reversioned,
        "silent": silent,
        "params": params,
        "catalogue": catalogue,
    }


def _changed_thresholds(
    old: Ruleset, new: Ruleset, profile_old: str, profile_new: str
) -> list[tuple[Threshold, list[float]]]:
    """Thresholds that read a parameter whose value differs, with probe values around old and new."""
    changed: dict[str, set[float]] = {}
    for name in sorted(set(new.parameters)):  # a new parameter is probed around its value too
        a, b = old.parameters.get(name), new.parameters[name]
        va, vb = a.value(profile_old) if a is not None else None, b.value(profile_new)
        if va != vb or a is None:
            step = 1 if b.type == "int" else 0.1
            changed[name] = {v + d for v in (va, vb) if v is not None for d in (-step, 0, step)}
    out: list[tuple[Threshold, list[float]]] = []
    for ruleset, profile in ((old, profile_old), (new, profile_new)):
        unbound = {r.id: r for r in ruleset.rules}
        for t in thresholds(ruleset, profile):
            rule = unbound[t.rule.split("@")[0]]
            names = {
                x.operand.name
                for p in (*rule.patterns, *(b.pattern for b in rule.blockers))
                for x in p.all_tests()
                if isinstance(x.operand, ir.Param) and x.field == t.field
            }
            values = sorted(set().union(*(changed[n] for n in names if n in changed)))
            if values:
                out.append((t, values))
    return out


def _probes(
    patient: PatientCase, when: date, found: list[tuple[Threshold, list[float]]], ruleset: Ruleset
) -> list[PatientCase]:
    doc = patient.model_dump(mode="json", exclude_none=True)
    out = []
    for threshold, values in found:
        for value in values:
            for index in range(max(1, len(doc.get("procedures", [])))):
                probed = set_fact_field(
                    doc,
                    threshold.fact_type,
                    threshold.field,
                    value,
                    when,
                    threshold.selectors,
                    index=index,
                    ruleset=ruleset,
                )
                if probed is None:
                    break
                try:
                    out.append(PatientCase.model_validate(probed))
                except ValueError:
                    continue  # outside the field's range: not a patient
    return out


def generated_patients(n: int) -> list[PatientCase]:
    """``n`` patients from the testing kit's strategy, the same ones on every run."""
    if n <= 0:
        return []
    from hypothesis import HealthCheck, Phase, given, settings

    from ..testing.strategies import patients

    drawn: list[PatientCase] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(patients())
    def collect(patient: PatientCase) -> None:
        drawn.append(patient)

    collect()
    return drawn[:n]


def _codes(engine: Engine, patient: PatientCase, as_of: date) -> dict[str, set[str]]:
    a = engine.evaluate(patient, as_of=as_of, timestamp=False)
    return {
        "candidate": {c.intervention for c in a.candidates},
        "referral": {r.to for r in a.referrals},
        "deferred referral": {d.referral.to for d in a.deferred_referrals},
        "alert": {x.code for x in a.alerts},
    }


def diff_rulesets(
    old: Ruleset,
    new: Ruleset,
    *,
    patients: Sequence[tuple[PatientCase, date]],
    profile_old: str | None = None,
    profile_new: str | None = None,
    parameters: Mapping[str, int | float] | None = None,
) -> RulesetDiff:
    e_old = Engine(old, profile=profile_old, backend="python", parameters=parameters)
    e_new = Engine(new, profile=profile_new, backend="python", parameters=parameters)
    structure = _structure(old, new)
    found = _changed_thresholds(old, new, e_old.profile, e_new.profile)
    cohort = list(patients)
    probes = [(p2, when) for p, when in patients for p2 in _probes(p, when, found, new)]
    tallies: dict[tuple[str, str], dict[str, list[PatientCase]]] = {}
    unchanged, errors = 0, []
    for patient, when in cohort + probes:
        try:
            a, b = _codes(e_old, patient, when), _codes(e_new, patient, when)
        except IpmCdsError as exc:
            errors.append(f"{patient.id or 'patient'}: {exc}")
            continue
        same = True
        for what in ("candidate", "referral", "deferred referral", "alert"):
            for code in b[what] - a[what]:
                tallies.setdefault((what, code), {"gained": [], "lost": []})["gained"].append(patient)
                same = False
            for code in a[what] - b[what]:
                tallies.setdefault((what, code), {"gained": [], "lost": []})["lost"].append(patient)
                same = False
        unchanged += same

    def smallest(group: list[PatientCase]) -> dict[str, Any] | None:
        if not group:
            return None
        best = min(group, key=lambda p: (len(p.model_dump_json(exclude_defaults=True)), p.model_dump_json()))
        return best.model_dump(mode="json", exclude_defaults=True)

    changes = [
        Change(
            what=what,
            code=code,
            gained=len(t["gained"]),
            lost=len(t["lost"]),
            gained_example=smallest(t["gained"]),
            lost_example=smallest(t["lost"]),
        )
        for (what, code), t in sorted(tallies.items())
    ]
    return RulesetDiff(
        old=f"{old.id}@{old.version} ({old.sha256[:12]})",
        new=f"{new.id}@{new.version} ({new.sha256[:12]})",
        profile_old=e_old.profile,
        profile_new=e_new.profile,
        rules_added=structure["added"],
        rules_removed=structure["removed"],
        rules_reversioned=structure["reversioned"],
        rules_changed_without_version=structure["silent"],
        parameters_changed=structure["params"],
        catalogue_changes=structure["catalogue"],
        patients=len(cohort),
        probes=len(probes),
        unchanged=unchanged,
        errors=errors[:20],
        changes=changes,
    )


def case_patients(*rulesets: Ruleset, folder: Path | None = None) -> list[tuple[PatientCase, date]]:
    """The test-case patients of the rulesets (with their as_of) and the patient files in ``folder``."""
    from ..model.patient import parse_patient
    from ..patientfile import read_patient_document

    out: list[tuple[PatientCase, date]] = []
    seen: set[str] = set()
    for ruleset in rulesets:
        for loaded in ruleset.tests:
            patient = parse_patient(loaded.case.patient)
            key = patient.model_dump_json() + loaded.case.as_of.isoformat()
            if key not in seen:
                seen.add(key)
                out.append((patient, loaded.case.as_of))
    if folder is not None:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
                out.append((parse_patient(read_patient_document(path)), DEFAULT_AS_OF))
    return out


def render_diff(d: RulesetDiff) -> str:
    lines = [f"ipm-cds diff: {d.old} -> {d.new} (profiles {d.profile_old} -> {d.profile_new})", ""]
    for title, items in (
        ("Rules added", d.rules_added),
        ("Rules removed", d.rules_removed),
        ("Rules re-versioned", d.rules_reversioned),
        ("Rules changed WITHOUT a version bump", d.rules_changed_without_version),
        ("Parameters changed", d.parameters_changed),
        ("Catalogues", d.catalogue_changes),
    ):
        if items:
            lines.append(f"{title}:")
            lines += [f"  {x}" for x in items]
    lines += ["", f"Evaluated {d.patients} patients and {d.probes} threshold probes: {d.unchanged} unchanged."]
    if not d.changes:
        lines.append("No patient gained or lost a candidate, referral or alert.")
    for c in d.changes:
        lines.append(f"  {c.what} {c.code}: +{c.gained} gained, -{c.lost} lost")
        for label, example in (("gained", c.gained_example), ("lost", c.lost_example)):
            if example is not None:
                lines.append(f"    smallest patient who {label} it: {json.dumps(example, sort_keys=True)}")
    for e in d.errors:
        lines.append(f"  error: {e}")
    return "\n".join(lines) + "\n"
