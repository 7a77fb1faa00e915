"""Thresholds of a ruleset, and patients placed on, just below and just above each of them.

A threshold is a numeric comparison a rule makes on an input fact field, with a literal or a parameter
(resolved under a profile). :func:`set_fact_field` maps a fact field back to the patient document field
it comes from (``procedure.days_since`` is the procedure's date, ``pain.duration_weeks`` the pain's
duration, ``patient.age_years`` the demographics), so a probe changes exactly what a clinician would
record. Summary facts (counts, MME totals) and derived facts are not probed directly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..engine.program import build_program
from ..facts.schema import BASE_FACT_TYPES
from ..ruleset import ir
from ..ruleset.loader import Ruleset

# Minimal valid items for each patient list, used when a probe needs an item the patient lacks.
_SKELETONS: dict[str, dict[str, Any]] = {
    "pain": {"region": "lumbar", "character": "axial"},
    "procedures": {"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-06"},
    "red_flags": {"code": "bladder_dysfunction"},
    "imaging": {"modality": "mri", "finding": "normal", "region": "lumbar"},
    "medications": {"agent": "acetaminophen"},
    "labs": {"test": "inr", "value": 1.0, "date": "2025-05-01"},
    "screenings": {"instrument": "phq9", "score": 0},
    "exam": {"test": "straight_leg_raise", "positive": False},
    "conditions": {"code": "diabetes"},
}
_INSTRUMENT_MAX = {"phq9": 27, "gad7": 21, "pcs": 52, "start_back": 9, "ort": 26, "stop_bang": 8, "isi": 28}


@dataclass(frozen=True, slots=True)
class Threshold:
    fact_type: str
    field: str
    value: float
    selectors: tuple[tuple[str, object], ...]  # literal eq conditions of the same pattern (kind, test, ...)
    rule: str
    profile: str

    def probes(self) -> tuple[float, float, float]:
        step = 1.0 if float(self.value).is_integer() else 0.1
        return self.value - step, self.value, self.value + step


def thresholds(ruleset: Ruleset, profile: str | None = None) -> list[Threshold]:
    """Every numeric threshold on an input fact field, with parameters resolved under ``profile``."""
    program = build_program(ruleset, profile)
    out: dict[tuple[str, str, float, tuple[tuple[str, object], ...]], Threshold] = {}
    for rule in program.rules:
        for pattern in (*rule.patterns, *(b.pattern for b in rule.blockers)):
            if pattern.fact_type not in BASE_FACT_TYPES or pattern.fact_type == "candidate":
                continue
            selectors = tuple(
                sorted(
                    (t.field, t.operand)
                    for t in pattern.tests
                    if isinstance(t, ir.Test) and t.op == "eq" and isinstance(t.operand, str | bool)
                )
            )
            for test in pattern.all_tests():
                value = test.operand
                if test.op in ir.ORDERING_OPS and isinstance(value, int | float) and not isinstance(value, bool):
                    key = (pattern.fact_type, test.field, float(value), selectors)
                    out.setdefault(
                        key,
                        Threshold(pattern.fact_type, test.field, float(value), selectors, rule.ref, program.profile),
                    )
    return sorted(out.values(), key=lambda t: (t.fact_type, t.field, t.value, t.selectors))


def _months_before(as_of: date, months: int) -> date:
    year, month = divmod(as_of.year * 12 + as_of.month - 1 - months, 12)
    day = min(as_of.day, 28)
    return date(year, month + 1, day)


def set_fact_field(
    doc: dict[str, Any],
    fact_type: str,
    field: str,
    value: float,
    as_of: date,
    selectors: tuple[tuple[str, object], ...] = (),
    index: int = 0,
    ruleset: Ruleset | None = None,
) -> dict[str, Any] | None:
    """A copy of the patient document in which the input behind ``fact_type.field`` gives ``value``.

    Returns None when the value cannot be expressed (a summary field, a negative duration, ...).
    """
    spec = BASE_FACT_TYPES.get(fact_type)
    if spec is None or field not in spec.fields:
        return None
    number = int(value) if spec.fields[field].type == "int" else round(value, 6)
    out = copy.deepcopy(doc)
    if fact_type in ("procedure_history", "procedure_group_history", "medication_summary", "exam_summary"):
        return _set_count(out, fact_type, field, int(number), as_of, dict(selectors), ruleset)
    if fact_type == "patient":
        source = spec.fields[field].source
        if source is None or "." not in source:
            return None
        section, name = source.split(".", 1)
        if section == "psychological_evaluation":
            return None
        out.setdefault(section, {})[name] = number
        if (section, name) == ("demographics", "age_years"):
            out[section].pop("birth_date", None)
        return out
    list_name = spec.source
    if list_name not in _SKELETONS:
        return None
    items = out.setdefault(list_name, [])
    if not items:
        items.append(dict(_SKELETONS[list_name]))
    item = items[index % len(items)]
    for key, val in selectors:  # the pattern's own selectors (kind, test, instrument, ...) so that it can match
        if spec.fields[key].source == key:
            item[key] = val
    if fact_type == "screening" and "instrument" in item:
        item["score"] = min(item.get("score", 0), _INSTRUMENT_MAX[item["instrument"]])
    if field in ("days_since", "months_since", "onset_days"):
        if number < 0:
            return None
        when = as_of - timedelta(days=number) if field != "months_since" else _months_before(as_of, int(number))
        item["onset_date" if field == "onset_days" else "date"] = when.isoformat()
        return out
    if fact_type == "pain" and field == "duration_weeks":
        item.pop("onset_date", None)
    source = spec.fields[field].source
    if source is None or source in ("date", "agent", "positive") or "." in source:
        return None
    item[source] = number
    return out


def _set_count(
    doc: dict[str, Any],
    fact_type: str,
    field: str,
    count: int,
    as_of: date,
    selectors: dict[str, object],
    ruleset: Ruleset | None,
) -> dict[str, Any] | None:
    """Make a summary fact count ``count``: sessions inside the rolling window, agents, positive tests."""
    if count < 0 or count > 20:
        return None
    if fact_type in ("procedure_history", "procedure_group_history") and field == "sessions_in_window":
        if fact_type == "procedure_history":
            kind = selectors.get("kind")
        elif ruleset is not None and selectors.get("group") in ruleset.manifest.settings.procedure_groups:
            kind = ruleset.manifest.settings.procedure_groups[str(selectors["group"])][0]
        else:
            return None
        if not isinstance(kind, str):
            return None
        region = str(selectors.get("region", "lumbar"))
        window = ruleset.manifest.settings.rolling_window_days if ruleset else 365
        spacing = max(1, (window - 1) // max(count, 1))
        others = [p for p in doc.get("procedures", []) if not (p.get("kind") == kind and p.get("region") == region)]
        sessions = [
            {"kind": kind, "region": region, "date": (as_of - timedelta(days=1 + i * spacing)).isoformat()}
            for i in range(count)
        ]
        doc["procedures"] = others + sessions
        return doc
    if fact_type == "medication_summary" and field == "count" and ruleset is not None:
        classes = ruleset.manifest.settings.medication_groups.get(str(selectors.get("group")))
        if not classes:
            return None
        agents = sorted(code for code, med in ruleset.medications.items() if med.drug_class in classes)
        keep = [m for m in doc.get("medications", []) if ruleset.medications[m["agent"]].drug_class not in classes]
        if count > len(agents):
            return None
        doc["medications"] = keep + [{"agent": a} for a in agents[:count]]
        return doc
    if fact_type == "exam_summary" and field in ("positive_count", "negative_count") and ruleset is not None:
        tests = ruleset.manifest.settings.exam_groups.get(str(selectors.get("group")))
        if not tests or count > len(tests):
            return None
        positive = field == "positive_count"
        keep = [e for e in doc.get("exam", []) if e.get("test") not in tests]
        doc["exam"] = keep + [
            {"test": t, "positive": positive if i < count else not positive} for i, t in enumerate(sorted(tests))
        ]
        return doc
    return None
