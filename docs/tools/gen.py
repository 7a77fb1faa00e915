"""Table generators for ``@@gen NAME``: read from the live code (patient.py, facts/schema.py, the ruleset)."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import BaseModel

from ipm_cds.model import patient as pm
from ipm_cds.model.facts import schema as fs

VOCABS: dict[str, Any] = {"Laterality": pm.Laterality}  # the model's own closed lists; codes are the ruleset's
_BY_ARGS = {tuple(get_args(v)): k for k, v in VOCABS.items()}


def _ruleset() -> Any:
    from ipm_cds import load_ruleset

    return load_ruleset(with_tests=False)


UNITS: dict[tuple[str, str], str] = {
    ("Demographics", "age_years"): "years",
    ("Demographics", "bmi"): "kg/m²",
    ("PainComplaint", "duration_weeks"): "weeks",
    ("PainComplaint", "nrs"): "NRS points",
    ("PainComplaint", "odi_pct"): "%",
    ("PainComplaint", "ndi"): "NDI points",
    ("PriorProcedure", "relief_pct"): "% relief of the index pain",
    ("PriorProcedure", "relief_duration_weeks"): "weeks",
    ("ConservativeCare", "physical_therapy_weeks"): "weeks",
    ("ConservativeCare", "nonoperative_months"): "months",
    ("Medication", "daily_dose"): "`dose_unit`",
    ("Lab", "value"): "by test, see [Labs](#labs)",
    ("Screening", "score"): "points, see [Screenings](#screenings)",
    ("Screening", "item9"): "points",
    ("Screening", "distress_subscore"): "points",
}


def _anchor(name: str) -> str:
    return name.lower()


def type_text(annotation: Any) -> tuple[str, bool]:
    """Markdown for a type, and whether None is allowed."""
    optional = False
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
        origin = get_origin(annotation)
    if origin is typing.Annotated:
        vocab = next((m.name for m in get_args(annotation)[1:] if isinstance(m, pm.Vocab)), None)
        if vocab is not None:
            return f"code: [{vocab}](#{vocab})", optional
        if any(getattr(getattr(m, "func", None), "__name__", "") == "_spinal_level" for m in get_args(annotation)[1:]):
            return "spinal level (see [Spinal levels](#spinal-levels))", optional
        annotation = get_args(annotation)[0]
        origin = get_origin(annotation)
    if origin is Literal:
        values = get_args(annotation)
        name = _BY_ARGS.get(tuple(values))
        if name:
            return f"code: [{name}](#{_anchor(name)})", optional
        return "code: " + " \\| ".join(f"`{v}`" for v in values), optional
    if origin is list:
        item = get_args(annotation)[0]
        if get_origin(item) is typing.Annotated and any(
            getattr(getattr(m, "func", None), "__name__", "") == "_spinal_level" for m in get_args(item)[1:]
        ):
            return "list of spinal levels (see [Spinal levels](#spinal-levels))", optional
        inner, _ = type_text(item)
        return f"list of {inner}", optional
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{_anchor(annotation.__name__)})", optional
    names = {int: "integer", float: "number", bool: "boolean", str: "text"}
    if getattr(annotation, "__name__", "") == "date":
        return "date `YYYY-MM-DD`", optional
    return names.get(annotation, str(annotation)), optional


def range_text(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    lo = hi = None
    maxlen = minlen = None
    for m in field.metadata:
        if isinstance(m, Ge):
            lo = m.ge
        elif isinstance(m, Le):
            hi = m.le
        elif isinstance(m, MaxLen):
            maxlen = m.max_length
        elif isinstance(m, MinLen):
            minlen = m.min_length
    parts = []
    if lo is not None or hi is not None:
        parts.append(f"{lo}–{hi}")
    if maxlen is not None:
        kind = "items" if get_origin(field.annotation) is list else "characters"
        parts.append(f"{minlen or 0}–{maxlen} {kind}" if minlen else f"at most {maxlen} {kind}")
    return "; ".join(parts)


def default_text(model: type[BaseModel], name: str, optional: bool) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.get_default(call_default_factory=True, validated_data={})
        if value == []:
            return "empty list: none recorded"
        return "all its fields not recorded"
    if field.default is None:
        return "`null`: not recorded"
    return f"`{str(field.default).lower()}`"


DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("PatientCase", "demographics"): "Age, sex, pregnancy, BMI, tobacco use.",
    ("PatientCase", "pain"): "Pain complaints; at most one has `is_index: true`.",
    ("PatientCase", "imaging"): "Imaging findings.",
    ("PatientCase", "exam"): "Examination findings and provocative tests.",
    ("PatientCase", "red_flags"): "Red-flag symptoms and signs.",
    ("PatientCase", "procedures"): "Prior procedures and operations, one entry per session.",
    ("PatientCase", "conservative_care"): "Conservative care to date.",
    ("PatientCase", "medications"): "Current medications.",
    ("PatientCase", "labs"): "Laboratory results.",
    ("PatientCase", "screenings"): "Screening-instrument scores.",
    ("PatientCase", "conditions"): "Diagnoses and implanted devices.",
    ("PatientCase", "allergies"): "Allergies.",
    ("PatientCase", "psychological_evaluation"): "Pre-procedure psychological evaluation.",
    ("PainComplaint", "region"): "Body region of the pain.",
    ("ImagingFinding", "modality"): "Imaging modality.",
    ("ImagingFinding", "finding"): "The finding.",
    ("ImagingFinding", "region"): "Region of the finding.",
    ("ImagingFinding", "side"): "Side of the finding.",
    ("ImagingFinding", "date"): "Date of the study.",
    ("ExamFinding", "test"): "Sign or provocative test.",
    ("ExamFinding", "region"): "Region examined.",
    ("ExamFinding", "side"): "Side examined.",
    ("ExamFinding", "date"): "Date of the examination.",
    ("RedFlagFinding", "code"): "The red flag.",
    ("PriorProcedure", "kind"): "What was done.",
    ("PriorProcedure", "purpose"): "Diagnostic or therapeutic intent.",
    ("PriorProcedure", "region"): "Region treated.",
    ("PriorProcedure", "side"): "Side treated.",
    ("ConservativeCare", "medications_tried"): "Free-text names of medications tried; not read by any rule.",
    ("Medication", "dose_unit"): "Unit of `daily_dose`; required when `daily_dose` is given.",
    ("Lab", "test"): "Which test.",
    ("Lab", "date"): "Date of the result.",
    ("Screening", "instrument"): "Which instrument.",
    ("Screening", "date"): "Date of the screen.",
    ("Allergy", "substance"): "The allergen.",
    ("Allergy", "reaction"): "Free-text reaction; not read by any rule.",
    ("ConditionEntry", "code"): "The diagnosis or device.",
    ("ConditionEntry", "active"): "Currently active; `false` records a past condition.",
    ("ConditionEntry", "region"): "Region, where it matters (e.g. a local infection).",
    ("PsychologicalEvaluation", "date"): "Date of the evaluation.",
}


def model_table(model: type[BaseModel], extra: dict[str, str] | None = None) -> str:
    rows = ["| Field | Type | Unit | Range | When absent | Meaning |", "|---|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        annotation = typing.Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        ttext, optional = type_text(annotation)
        unit = UNITS.get((model.__name__, name), "")
        desc = (field.description or DESCRIPTIONS.get((model.__name__, name), "")).replace("|", "\\|")
        if extra and name in extra:
            desc = (desc + " " + extra[name]).strip()
        rows.append(
            f"| `{name}` | {ttext} | {unit} | {range_text(model, name)} | "
            f"{default_text(model, name, optional)} | {desc} |"
        )
    return "\n".join(rows) + "\n"


def vocabularies() -> str:
    out = []
    for name, lit in VOCABS.items():
        out.append(f"### {name}\n\n" + ", ".join(f"`{v}`" for v in get_args(lit)) + "\n")
    for name, vocabulary in _ruleset().vocabularies.items():
        codes = ", ".join(f"`{c.code}`" for c in vocabulary.codes)
        out.append(f"### {name}\n\n{vocabulary.description}\n\n{codes}\n")
    return "\n".join(out)


def labs() -> str:
    rows = ["| `test` | Canonical unit of `value` | Accepted range |", "|---|---|---|"]
    for c in _ruleset().vocabularies["lab_test"].codes:
        rows.append(f"| `{c.code}` | {c.unit} | {c.min:g}–{c.max:g} |")
    return "\n".join(rows) + "\n"


def screenings() -> str:
    rows = ["| `instrument` | `score` range | Subscores |", "|---|---|---|"]
    for c in _ruleset().vocabularies["instrument"].codes:
        rows.append(f"| `{c.code}` | {c.min:g}–{c.max:g} | {', '.join(f'`{x}`' for x in c.subscores)} |")
    return "\n".join(rows) + "\n"


def _model(name: str) -> Any:
    return lambda: model_table(getattr(pm, name))


# -- fact schema --------------------------------------------------------------------------------------

PATIENT_SOURCE_NOTES: dict[tuple[str, str], str] = {
    ("patient", "age_years"): "`demographics.age_years`, or computed from `demographics.birth_date` at `as_of`",
    ("pain", "duration_weeks"): "`pain[].duration_weeks`, or whole weeks from `pain[].onset_date` to `as_of` "
    "(days ÷ 7, rounded down)",
    ("imaging", "days_since"): "days from `imaging[].date` to `as_of`",
    ("red_flag", "onset_days"): "days from `red_flags[].onset_date` to `as_of`",
    ("procedure", "levels"): "`procedures[].levels`, without duplicates, in anatomical order (C1 … S5), "
    "joined with commas",
    ("procedure", "level_count"): "number of distinct entries in `procedures[].levels`",
    ("procedure", "days_since"): "days from `procedures[].date` to `as_of`",
    ("procedure", "months_since"): "whole calendar months from `procedures[].date` to `as_of`",
    ("medication", "drug_class"): "looked up from `medications[].agent` in the medication catalogue",
    ("medication", "antithrombotic"): "looked up from `medications[].agent` in the medication catalogue",
    ("lab", "days_since"): "days from `labs[].date` to `as_of`",
    ("screening", "days_since"): "days from `screenings[].date` to `as_of`",
    ("procedure_history", "kind"): "`procedures[].kind` (one fact per kind and region)",
    ("procedure_history", "region"): "`procedures[].region`",
    ("procedure_history", "sessions_in_window"): "distinct `procedures[].date` values of that kind and region "
    "less than `settings.rolling_window_days` days before `as_of`",
    ("procedure_history", "sessions_total"): "distinct `procedures[].date` values of that kind and region",
    ("procedure_history", "last_days_since"): "days from the latest of those dates to `as_of`",
}


MEANING = {("procedure", "levels"): "Levels treated, e.g. 'L4-L5,L5-S1'."}


def fact_source(ft: fs.FactType, fname: str, spec: fs.FieldSpec) -> str:
    note = PATIENT_SOURCE_NOTES.get((ft.name, fname))
    if note:
        return note
    if ft.name == "candidate":
        return "the recommendation and the intervention catalogue"
    if spec.source is None:
        return ""
    if ft.name == "patient":
        return f"`{spec.source}`"
    return f"`{ft.source}[].{spec.source}`"


def fact_table(ft: fs.FactType) -> str:
    rows = ["| Field | Type | Unit | Values | Comes from | Meaning |", "|---|---|---|---|---|---|"]
    for fname, spec in ft.fields.items():
        values = ", ".join(f"`{v}`" for v in spec.values) if spec.values else ""
        if spec.vocabulary is not None:  # the ruleset's codes, listed on the patient model page
            values = f"[{spec.vocabulary}](patient-model.md#{spec.vocabulary})"
        meaning = MEANING.get((ft.name, fname), spec.description)
        rows.append(
            f"| `{fname}` | {spec.type} | {spec.unit or ''} | {values} | {fact_source(ft, fname, spec)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"


FACT_INTRO = {
    "patient": "",
    "procedure_history": "One per procedure kind and region present in `procedures`.",
    "candidate": "One per distinct recommendation.",
}


def fact_types() -> str:
    out = []
    for ft in fs.BASE_FACT_TYPES.values():
        ident = ", ".join(f"`{i}`" for i in ft.identity) or "none"
        intro = FACT_INTRO.get(ft.name, f"One per item of `{ft.source}`.")
        text = " ".join(p for p in (ft.description, intro, f"Label fields: {ident}.") if p)
        out.append(f"### `{ft.name}`\n\n{text}\n\n" + fact_table(ft))
    return "\n".join(out)


def derived_types() -> str:
    import ipm_cds

    rs = ipm_cds.load_ruleset()
    out = []
    for name, ft in sorted(rs.fact_types.items()):
        if name in fs.BASE_FACT_TYPES:
            continue
        rows = ["| Field | Type |", "|---|---|"]
        for fname, spec in sorted(ft.fields.items()):
            rows.append(f"| `{fname}` | {spec.type} |")
        makers = []
        for rid, rule in sorted(rs.rule_specs.items()):
            for item in rule.then:
                body = item.get("derive") if isinstance(item, dict) else None
                if isinstance(body, dict) and body.get("fact") == name:
                    sets = ", ".join(f"{k}: {v}" for k, v in (body.get("set") or {}).items())
                    makers.append(f"- `{rid}@{rule.version}` sets `{{{sets}}}`")
        out.append(f"### `{name}`\n\n" + "\n".join(rows) + "\n\nMade by:\n\n" + "\n".join(makers) + "\n")
    return "\n".join(out)


def medication_codes() -> str:
    import ipm_cds

    rs = ipm_cds.load_ruleset()
    rows = ["| `agent` | Name | Class | Antithrombotic (ASRA table) |", "|---|---|---|---|"]
    for code, med in rs.medications.items():
        rows.append(f"| `{code}` | {med.name} | `{med.drug_class}` | {'yes' if med.antithrombotic else 'no'} |")
    return "\n".join(rows) + "\n"


GENERATORS = {
    "medication_codes": medication_codes,
    "vocabularies": vocabularies,
    "labs": labs,
    "screenings": screenings,
    "fact_types": fact_types,
    "derived_types": derived_types,
    **{
        f"model_{n}": _model(n)
        for n in (
            "PatientCase",
            "Demographics",
            "PainComplaint",
            "ImagingFinding",
            "ExamFinding",
            "RedFlagFinding",
            "PriorProcedure",
            "ConservativeCare",
            "Medication",
            "Lab",
            "Screening",
            "Allergy",
            "ConditionEntry",
            "CoronaryStent",
            "PsychologicalEvaluation",
            "RequestedProcedure",
            "SteroidInjection",
            "Prognosis",
        )
    },
}
