"""Thresholds of a ruleset, and patients placed on, just below and just above each of them.

A threshold is a numeric comparison a rule makes on an input fact field, with a literal or a parameter
(resolved under a profile). :func:`set_fact_field` maps a fact field back to the patient document field
it comes from (``procedure.days_since`` is the procedure's date, ``pain.duration_weeks`` the pain's
duration, ``patient.age_years`` the demographics), so a probe changes exactly what a clinician would
record. Summary facts are probed through what they summarise: ``procedure_history.sessions_in_window``
and ``last_days_since`` through sessions of the procedure, ``exam_summary`` counts through the group's
tests, ``medication_summary.count`` through agents of the group, MME per day (``medication.mme_per_day``,
``opioid_summary.total_mme_per_day``) through an opioid's daily dose in its unit (these need the ruleset).
Derived facts are not probed directly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..engine.program import build_program
from ..model.facts.schema import BASE_FACT_TYPES
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
    "requested": {"intervention": "esi_transforaminal", "region": "lumbar"},
    "coronary_stents": {"type": "drug_eluting", "date": "2025-01-06"},
}
# Fact fields that stand for a document field of another name (a selector on them sets that field).
_RENAMED = {("coronary_stent", "stent_type"): "type"}
_INSTRUMENT_MAX = {"phq9": 27, "gad7": 21, "pcs": 52, "start_back": 9, "ort": 26, "stop_bang": 8, "isi": 28}
# Adjacent segments, for a probe on the number of levels a session treated.
_LEVEL_CHAINS = {
    "cervical": ("C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7", "C7-T1"),
    "thoracic": tuple(f"T{i}-T{i + 1}" for i in range(1, 12)),
    "lumbar": ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"),
}


@dataclass(frozen=True, slots=True)
class Threshold:
    fact_type: str
    field: str
    value: float
    selectors: tuple[tuple[str, object], ...]  # literal eq conditions of the same pattern (kind, test, ...)
    rule: str
    profile: str
    op: str = "gte"  # the comparison of the first rule found to make it: lt, lte, gt or gte

    def probes(self) -> tuple[float, float, float]:
        step = 1.0 if float(self.value).is_integer() else 0.1
        return round(self.value - step, 6), self.value, round(self.value + step, 6)

    def side(self, actual: float) -> str:
        """Which side of the comparison ``actual`` is on: ``"below"`` or ``"above"`` (the boundary value
        itself is above for ``lt``/``gte``, below for ``lte``/``gt``)."""
        if self.op in ("lte", "gt"):
            return "below" if actual <= self.value else "above"
        return "below" if actual < self.value else "above"


def thresholds(ruleset: Ruleset, profile: str | None = None) -> list[Threshold]:
    """Every numeric threshold on an input fact field, with parameters resolved under ``profile``."""
    program = build_program(ruleset, profile)
    out: dict[tuple[str, str, float, tuple[tuple[str, object], ...]], Threshold] = {}
    for rule in program.rules:
        for pattern in rule.input_patterns():
            if pattern.fact_type not in BASE_FACT_TYPES or pattern.fact_type == "candidate":
                continue
            plain = tuple(t for t in pattern.tests if isinstance(t, ir.Test))
            # the pattern's own tests, and each branch of an any_of with them (its selectors are the branch's too)
            groups = [
                plain,
                *(plain + branch for node in pattern.tests if isinstance(node, ir.AnyOf) for branch in node.branches),
            ]
            for tests in groups:
                selectors = tuple(
                    sorted(
                        {(t.field, t.operand) for t in tests if t.op == "eq" and isinstance(t.operand, str | bool)},
                        key=repr,
                    )
                )
                for test in tests:
                    value = test.operand
                    if test.op in ir.ORDERING_OPS and isinstance(value, int | float) and not isinstance(value, bool):
                        key = (pattern.fact_type, test.field, float(value), selectors)
                        out.setdefault(
                            key,
                            Threshold(
                                pattern.fact_type,
                                test.field,
                                float(value),
                                selectors,
                                rule.ref,
                                program.profile,
                                test.op,
                            ),
                        )
    return sorted(out.values(), key=lambda t: (t.fact_type, t.field, t.value, repr(t.selectors)))


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

    Returns None when the value cannot be expressed (a negative duration, a summary without the
    ruleset, ...). The result may still be invalid (a score outside its instrument's range): validate it.
    """
    spec = BASE_FACT_TYPES.get(fact_type)
    if spec is None or field not in spec.fields:
        return None
    number = int(value) if spec.fields[field].type == "int" else round(value, 6)
    out = copy.deepcopy(doc)
    if fact_type in _SERIES_FACTS:
        return _set_series(out, fact_type, field, float(number), as_of, dict(selectors))
    if fact_type in ("procedure_history", "procedure_group_history", "medication_summary", "exam_summary"):
        return _set_count(out, fact_type, field, int(number), as_of, dict(selectors), ruleset)
    if field in ("mme_per_day", "total_mme_per_day"):
        return _set_mme(out, float(number), index, dict(selectors), ruleset, whole=fact_type == "opioid_summary")
    if fact_type == "prognosis":
        if field != "life_expectancy_months" or not 0 <= number <= 600:
            return None
        out["prognosis"] = {"life_expectancy_months": int(number)}
        return out
    if fact_type == "steroid_summary":
        return _set_steroids(out, field, number, as_of, ruleset)
    if fact_type == "patient" and field == "renal_gfr":  # the lower of the latest eGFR and creatinine clearance
        if not 0 <= number <= 200:
            return None
        labs = [lab for lab in out.get("labs", []) if lab.get("test") not in ("egfr", "creatinine_clearance")]
        out["labs"] = [*labs, {"test": "egfr", "value": float(number), "date": as_of.isoformat()}]
        return out
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
        for key, val in selectors:  # the pattern's other conditions on the patient (conservative care failed)
            where = spec.fields[key].source
            if where and "." in where and not where.startswith("psychological_evaluation."):
                part, attr = where.split(".", 1)
                out.setdefault(part, {})[attr] = val
        return out
    list_name = spec.source
    if list_name not in _SKELETONS:
        return None
    items = out.setdefault(list_name, [])
    own = [  # selectors that are document fields
        (_RENAMED.get((fact_type, k), k), v)
        for k, v in selectors
        if spec.fields[k].source == k or (fact_type, k) in _RENAMED
    ]
    if not items:
        items.append(dict(_SKELETONS[list_name]))
    item = items[index % len(items)]
    for key, val in own:  # the pattern's own selectors (kind, test, instrument, ...) so that it can match
        item[key] = val
    if fact_type == "screening" and "instrument" in item:
        item["score"] = min(item.get("score", 0), _INSTRUMENT_MAX[item["instrument"]])
        if item["instrument"] != "phq9":  # what belongs to another instrument goes
            item.pop("item9", None)
        if item["instrument"] != "start_back":
            item.pop("distress_subscore", None)
    if field in ("days_since", "months_since", "onset_days"):
        if number < 0:
            return None
        when = as_of - timedelta(days=number) if field != "months_since" else _months_before(as_of, int(number))
        item["onset_date" if field == "onset_days" else "date"] = when.isoformat()
        return out
    if fact_type == "pain" and field in ("duration_weeks", "duration_weeks_max"):  # equal for a whole count
        item.pop("onset_date", None)
        item.pop("onset_precision", None)
        item["duration_weeks"] = number
        return out
    if fact_type in ("procedure", "requested") and field == "level_count":
        chain = _LEVEL_CHAINS.get(str(item.get("region")), _LEVEL_CHAINS["lumbar"])
        if not 1 <= number <= len(chain):
            return None
        item["levels"] = list(chain[: int(number)])
        return out
    source = spec.fields[field].source
    if source is None or source in ("date", "agent", "positive") or "." in source:
        return None
    item[source] = number
    return out


def _set_steroids(
    doc: dict[str, Any], field: str, value: float, as_of: date, ruleset: Ruleset | None
) -> dict[str, Any] | None:
    """Steroid injections inside the rolling window whose summary gives ``value``: that many injections (a count),
    that many without a dose, or one injection of an agent whose equivalent is 1 with ``value`` mg (the total)."""
    infos = ruleset.code_infos().get("steroid_agent", {}) if ruleset is not None else {}
    unit = next((code for code, info in sorted(infos.items()) if info.equivalent == 1), None)
    if unit is None or value < 0:
        return None
    when = (as_of - timedelta(days=30)).isoformat()
    if field in ("injections_in_window", "dose_unknown_in_window"):
        if value > 20:
            return None
        item: dict[str, Any] = {"agent": unit, "date": when, "region": "knee"}
        if field == "injections_in_window":
            item["dose_mg"] = 40.0
        items = [dict(item, region=r) for r in ("knee", "hip", "shoulder", "lumbar") * 5][: int(value)]
        if not items:  # none in the window, but a summary all the same: one dosed injection (outside the window)
            old = as_of - timedelta(days=ruleset.manifest.settings.rolling_window_days + 30) if ruleset else None
            dated = old.isoformat() if old is not None and field == "injections_in_window" else when
            items = [{"agent": unit, "dose_mg": 40.0, "date": dated, "region": "knee"}]
        doc["steroid_injections"] = items
        return doc
    if field in ("mpe_mg_in_window", "known_mpe_mg_in_window") and 0 < value <= 1000:
        doc["steroid_injections"] = [{"agent": unit, "dose_mg": float(value), "date": when, "region": "knee"}]
        return doc
    return None


_SERIES_FACTS = frozenset({"measure", "response", "followup", "mme_step", "opioid_course"})
# A baseline for each direction of change: a percent of it is exact to a tenth (probes step by 1 or 0.1).
_SERIES_BASELINE = {"nrs": 10.0, "peg": 10.0, "odi": 50.0, "ndi": 25.0, "rmdq": 12.0, "promis_pf": 50.0}


def _set_series(
    doc: dict[str, Any], fact_type: str, field: str, value: float, as_of: date, selectors: dict[str, object]
) -> dict[str, Any] | None:
    """Dated scores (or MME records) whose series fact gives ``value``: one therapeutic procedure of the
    selected kind with a baseline before it and one follow-up score after it (``response`` and
    ``followup``), the last PGIC (``measure``), two MME records 30 days apart (``mme_step``, ``opioid_course``)."""
    if fact_type in ("mme_step", "opioid_course"):
        if value < 0 or value > 100:
            return None
        start = as_of - timedelta(days=60)
        doc["mme_history"] = [
            {"date": start.isoformat(), "mme_per_day": 100.0},
            {"date": (start + timedelta(days=30)).isoformat(), "mme_per_day": round(100.0 - value, 6)},
        ]
        return doc
    instrument = str(selectors.get("instrument", "nrs"))
    if fact_type == "measure":
        doc["measurements"] = [{"instrument": instrument, "date": as_of.isoformat(), "score": value}]
        return doc
    base = _SERIES_BASELINE.get(instrument)
    if base is None:
        return None
    kind = str(selectors.get("kind", "facet_rfa"))
    region = "knee" if kind.startswith("genicular") else "sacroiliac" if kind.startswith("sij") else "lumbar"
    weeks, pct = (value, 80.0) if field == "weeks_after" else (13.0, value)
    if field in ("improvement", "worsening"):
        pct = 100.0 * (value if field == "improvement" else -value) / base
    if weeks < 0 or weeks > 500:
        return None
    after = base * (1 - pct / 100) if instrument != "promis_pf" else base * (1 + pct / 100)
    proc_day = as_of - timedelta(days=round(weeks * 7) + 1)
    scores = [(proc_day - timedelta(days=1), base), (proc_day + timedelta(days=round(weeks * 7)), after)]
    if selectors.get("scope") == "overall":
        scores = [(as_of - timedelta(days=100), base), (as_of, after)]
    doc["procedures"] = [
        p for p in doc.get("procedures", []) if p.get("region") != region or p.get("purpose") == "diagnostic"
    ] + [{"kind": kind, "purpose": "therapeutic", "region": region, "date": proc_day.isoformat()}]
    doc["measurements"] = [
        {"instrument": instrument, "region": region, "date": day.isoformat(), "score": round(score, 6)}
        for day, score in scores
    ]
    return doc


def _set_mme(
    doc: dict[str, Any],
    mme: float,
    index: int,
    selectors: dict[str, object],
    ruleset: Ruleset | None,
    whole: bool,
) -> dict[str, Any] | None:
    """An opioid whose daily dose gives ``mme`` MME/day (``whole``: the only counted opioid, so that the
    total is ``mme`` too), preferring a factor of 1 (morphine) so that the value is exact."""
    if ruleset is None or mme < 0:
        return None
    counted = {
        code: med
        for code, med in sorted(ruleset.medications.items())
        if med.mme_factor
        and med.mme_dose_unit
        and not med.mme_excluded
        and selectors.get("drug_class", med.drug_class) == med.drug_class
    }
    if not counted:
        return None
    agent = min(counted, key=lambda code: (abs(float(counted[code].mme_factor or 0) - 1.0), code))
    med = counted[agent]
    dose = round(mme / float(med.mme_factor or 1.0), 6)
    meds = doc.setdefault("medications", [])
    opioid = {"agent": agent, "daily_dose": dose, "dose_unit": med.mme_dose_unit}
    if whole:
        meds[:] = [m for m in meds if m.get("agent") not in counted]
        meds.append(opioid)
        return doc
    places = [i for i, m in enumerate(meds) if m.get("agent") in counted]
    if places:
        meds[places[index % len(places)]] = opioid
        others = {m["agent"] for i, m in enumerate(meds) if i != places[index % len(places)]}
        if agent in others:  # one entry per agent
            meds[:] = [m for m in meds if m.get("agent") != agent] + [opioid]
    else:
        meds.append(opioid)
    return doc


def _set_count(
    doc: dict[str, Any],
    fact_type: str,
    field: str,
    count: int,
    as_of: date,
    selectors: dict[str, object],
    ruleset: Ruleset | None,
) -> dict[str, Any] | None:
    """Make a summary fact count ``count``: sessions inside the rolling window (or the last session
    ``count`` days ago), agents, positive or negative tests."""
    if count < 0:
        return None
    if fact_type in ("procedure_history", "procedure_group_history") and field in (
        "sessions_in_window",
        "last_days_since",
    ):
        if fact_type == "procedure_history":
            kind = selectors.get("kind")
            if kind is None and ruleset is not None:  # any facet kind will do for a region-only threshold
                kind = "facet_mbb"
        elif ruleset is not None and selectors.get("group") in ruleset.manifest.settings.procedure_groups:
            kind = ruleset.manifest.settings.procedure_groups[str(selectors["group"])][0]
        else:
            return None
        if not isinstance(kind, str):
            return None
        region = str(selectors.get("region", "lumbar"))
        others = [p for p in doc.get("procedures", []) if not (p.get("kind") == kind and p.get("region") == region)]
        if field == "last_days_since":
            sessions = [{"kind": kind, "region": region, "date": (as_of - timedelta(days=count)).isoformat()}]
        else:
            if count > 20:
                return None
            window = ruleset.manifest.settings.rolling_window_days if ruleset else 365
            spacing = max(1, (window - 1) // max(count, 1))
            sessions = [
                {"kind": kind, "region": region, "date": (as_of - timedelta(days=1 + i * spacing)).isoformat()}
                for i in range(count)
            ]
            if not sessions:  # none in the window: one session before it, so that the summary exists
                sessions = [{"kind": kind, "region": region, "date": (as_of - timedelta(days=window + 30)).isoformat()}]
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
