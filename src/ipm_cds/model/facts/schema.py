"""The fact schema: every fact type the rules can match, with its fields and their types.

Facts are flat: each attribute is a string, an integer, a number or a boolean; there are no nested
objects and no lists, so the engine's per-fact property limit is never approached and the two
backends compare values identically. A missing value is an absent attribute, never a default.

Why this module is over 600 lines: it is one table, the fact types and their fields with descriptions,
units and sources (the docs' fact reference and the rules' JSON Schema are generated from it); a table read
as one is clearer than one split by fact type.

Rule files are checked against this schema when they load: every field a rule names must exist on
its fact type, and every comparison must fit the field's type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Literal, get_args

from .. import patient as pm

ValueType = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    type: ValueType
    description: str
    values: tuple[str, ...] | None = None  # closed set of values for str fields
    source: str | None = None  # where in the patient document the value comes from
    unit: str | None = None
    vocabulary: str | None = None  # the ruleset vocabulary that gives ``values`` (see fact_types_for)

    def accepts(self, value: object) -> bool:
        """Whether a literal from a rule file has this field's type (bool is never a number)."""
        if self.type == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if self.type == "int":
            return isinstance(value, int)
        if self.type == "float":
            return isinstance(value, int | float)
        return isinstance(value, str)


@dataclass(frozen=True, slots=True)
class FactType:
    name: str
    description: str
    fields: dict[str, FieldSpec]
    identity: tuple[str, ...]  # fields that describe one fact of this type to a reader
    source: str  # the part of the patient document the facts come from


def _enum(lit: object) -> tuple[str, ...]:
    return tuple(str(v) for v in get_args(lit))


def _v(desc: str, vocabulary: str, source: str | None = None) -> FieldSpec:
    """A code of a ruleset vocabulary: its values come from the ruleset (:func:`fact_types_for`)."""
    return FieldSpec("str", desc, None, source, None, vocabulary)


def _s(desc: str, values: tuple[str, ...] | None = None, source: str | None = None) -> FieldSpec:
    return FieldSpec("str", desc, values, source)


def _i(desc: str, source: str | None = None, unit: str | None = None) -> FieldSpec:
    return FieldSpec("int", desc, None, source, unit)


def _f(desc: str, source: str | None = None, unit: str | None = None) -> FieldSpec:
    return FieldSpec("float", desc, None, source, unit)


def _b(desc: str, source: str | None = None) -> FieldSpec:
    return FieldSpec("bool", desc, None, source)


SIDES = _enum(pm.Laterality)
DATE_PRECISIONS = _enum(pm.DatePrecision)
BLEEDING_RISKS = ("low", "intermediate", "high")
INTERVENTION_KINDS = ("diagnostic", "therapeutic", "implant")
GUIDANCE = _enum(pm.ImageGuidance)

BASE_FACT_TYPES: dict[str, FactType] = {
    ft.name: ft
    for ft in [
        FactType(
            "patient",
            "The patient as a whole: demographics, conservative care, psychological evaluation. Exactly one.",
            {
                "age_years": _i("Age in whole years at as_of.", "demographics.age_years", "years"),
                "sex": _s("Sex.", ("female", "male", "other"), "demographics.sex"),
                "pregnant": _b("Currently pregnant.", "demographics.pregnant"),
                "gestational_weeks": _i("Completed weeks of gestation.", "demographics.gestational_weeks", "weeks"),
                "bmi": _f("Body-mass index.", "demographics.bmi", "kg/m2"),
                "tobacco_use": _s("Tobacco use.", ("current", "former", "never"), "demographics.tobacco_use"),
                "conservative_care_failed": _b(
                    "Documented failure of noninvasive conservative care.", "conservative_care.failed"
                ),
                "physical_therapy_weeks": _i(
                    "Weeks of physical therapy.", "conservative_care.physical_therapy_weeks", "weeks"
                ),
                "active_exercise_program": _b(
                    "A documented active exercise programme.", "conservative_care.active_exercise_program"
                ),
                "nonoperative_months": _i(
                    "Months of non-operative management.", "conservative_care.nonoperative_months", "months"
                ),
                "psych_eval_completed": _b(
                    "Pre-procedure psychological evaluation documented.", "psychological_evaluation.completed"
                ),
                "psych_eval_cleared": _b(
                    "Psychological evaluation found no contraindication.", "psychological_evaluation.cleared"
                ),
                "hospitalised": _b("In hospital (an inpatient admission in progress) at as_of.", "hospitalised"),
                "renal_gfr": _f(
                    "Renal function: the lower of the most recent eGFR (mL/min/1.73 m2) and the most recent "
                    "creatinine clearance (mL/min). Absent when neither is recorded.",
                    "labs[test=egfr|creatinine_clearance].value",
                    "mL/min",
                ),
            },
            (),
            "patient",
        ),
        FactType(
            "pain",
            "One pain complaint.",
            {
                "region": _v("Body region.", "body_region", "region"),
                "laterality": _s("Side.", SIDES, "laterality"),
                "character": _v("Character.", "pain_character", "character"),
                "duration_weeks": _i(
                    "Duration in whole weeks at as_of (from onset_date or duration_weeks).",
                    "duration_weeks",
                    "weeks",
                ),
                "duration_weeks_max": _i(
                    "The longest the duration can be: equal to duration_weeks, or from the first day of a partial "
                    "onset's month or year (duration_weeks is then the shortest). Compare it for an upper bound "
                    "(acute pain), duration_weeks for a lower bound.",
                    "onset_date",
                    "weeks",
                ),
                "onset_precision": _s("How much of the onset date is known.", DATE_PRECISIONS, "onset_precision"),
                "nrs": _i("NRS 0-10.", "nrs"),
                "odi_pct": _i("Oswestry Disability Index %.", "odi_pct", "%"),
                "ndi": _i("Neck Disability Index 0-50.", "ndi"),
                "rmdq": _i("Roland-Morris Disability Questionnaire 0-24.", "rmdq"),
                "worsening": _b("Getting worse.", "worsening"),
                "is_index": _b("The index pain.", "is_index"),
            },
            ("region", "character", "laterality"),
            "pain",
        ),
        FactType(
            "imaging",
            "One imaging finding.",
            {
                "modality": _v("Modality.", "imaging_modality", "modality"),
                "finding": _v("Finding.", "imaging_finding", "finding"),
                "region": _v("Region.", "body_region", "region"),
                "level": _s("Spinal level or segment.", None, "level"),
                "side": _s("Side.", SIDES, "side"),
                "concordant": _b("Concordant with symptoms.", "concordant"),
                "height_loss_pct": _i("Vertebral fracture: loss of vertebral body height, %.", "height_loss_pct", "%"),
                "days_since": _i("Days from the study to as_of.", "date", "days"),
                "date": _s("Date of the study, YYYY-MM-DD (for reading; compare days_since).", None, "date"),
            },
            ("finding", "region", "level", "date"),
            "imaging",
        ),
        FactType(
            "exam",
            "One examination finding or provocative test.",
            {
                "test": _v("Test or sign.", "exam_test", "test"),
                "positive": _b("Positive.", "positive"),
                "region": _v("Region.", "body_region", "region"),
                "side": _s("Side.", SIDES, "side"),
            },
            ("test", "region", "side"),
            "exam",
        ),
        FactType(
            "red_flag",
            "One red-flag symptom or sign.",
            {
                "code": _v("Red flag.", "red_flag", "code"),
                "onset_days": _i(
                    "Days since onset at as_of (a partial onset: from the last day of its month or year).",
                    "onset_date",
                    "days",
                ),
                "onset_precision": _s("How much of the onset date is known.", DATE_PRECISIONS, "onset_precision"),
                "deteriorating": _b("Getting worse.", "deteriorating"),
            },
            ("code",),
            "red_flags",
        ),
        FactType(
            "coronary_stent",
            "One coronary stent (the patient's coronary_stents[]): its type and the time since it was placed.",
            {
                "stent_type": _s("Drug-eluting or bare-metal.", ("drug_eluting", "bare_metal"), "type"),
                "days_since": _i("Days from placement to as_of.", "date", "days"),
                "months_since": _i("Whole calendar months from placement to as_of.", "date", "months"),
                "date": _s("Date placed, YYYY-MM-DD (for reading; compare days_since).", None, "date"),
            },
            ("stent_type", "date"),
            "coronary_stents",
        ),
        FactType(
            "procedure",
            "One prior procedure or operation (one session of one kind).",
            {
                "kind": _v("Procedure kind.", "procedure_kind", "kind"),
                "purpose": _s("Diagnostic or therapeutic.", ("diagnostic", "therapeutic"), "purpose"),
                "region": _v("Region.", "body_region", "region"),
                "levels": _s(
                    "Levels, distinct and in anatomical order, comma-separated: 'L4-L5,L5-S1'.", None, "levels"
                ),
                "level_count": _i("Number of levels treated.", "levels"),
                "side": _s("Side.", SIDES, "side"),
                "days_since": _i(
                    "Days from the procedure to as_of (a partial date: from the last day of its month or year, "
                    "at most as_of: the most recent it can have been).",
                    "date",
                    "days",
                ),
                "months_since": _i("Whole calendar months from the procedure to as_of.", "date", "months"),
                "date": _s(
                    "Date of the session as recorded, YYYY-MM-DD, or YYYY-MM / YYYY (for reading; compare days_since).",
                    None,
                    "date",
                ),
                "date_precision": _s("How much of the date is known.", DATE_PRECISIONS, "date_precision"),
                "relief_pct": _i("Relief of the index pain, %.", "relief_pct", "%"),
                "relief_duration_weeks": _f("Duration of relief in weeks.", "relief_duration_weeks", "weeks"),
                "same_scale": _b("Relief measured on the same scale.", "same_scale"),
                "duration_consistent_with_agent": _b(
                    "Relief duration consistent with the agent.", "duration_consistent_with_agent"
                ),
                "relief_series": _b(
                    "The pain series (NRS measurements of its region) gives this therapeutic procedure's relief: "
                    "a score on or before it and one after it, before the next in the region (always set; false "
                    "without measurements). The repeat rules read the series instead of relief_pct then."
                ),
            },
            ("kind", "region", "levels", "date"),
            "procedures",
        ),
        FactType(
            "procedure_history",
            "Summary of prior sessions of one procedure kind in one region (sessions = distinct dates).",
            {
                "kind": _v("Procedure kind.", "procedure_kind"),
                "region": _v("Region.", "body_region"),
                "sessions_in_window": _i(
                    "Sessions on distinct dates inside the ruleset's rolling window (manifest settings)."
                ),
                "sessions_total": _i("Sessions on distinct dates, ever."),
                "last_days_since": _i("Days since the most recent session.", None, "days"),
            },
            ("kind", "region"),
            "procedures",
        ),
        FactType(
            "procedure_group_history",
            "Summary of prior sessions of a group of procedure kinds in one region (manifest settings).",
            {
                "group": _s("Procedure group, from the manifest's settings."),
                "region": _v("Region.", "body_region"),
                "sessions_in_window": _i("Sessions on distinct dates inside the rolling window."),
                "sessions_total": _i("Sessions on distinct dates, ever."),
                "last_days_since": _i("Days since the most recent session.", None, "days"),
            },
            ("group", "region"),
            "procedures",
        ),
        FactType(
            "exam_summary",
            "Counts of positive and negative tests in one group of examination tests (manifest settings).",
            {
                "group": _s("Examination group, from the manifest's settings."),
                "positive_count": _i("Tests of the group recorded positive.", "positive"),
                "negative_count": _i("Tests of the group recorded negative.", "positive"),
            },
            ("group",),
            "exam",
        ),
        FactType(
            "opioid_summary",
            "Opioid dosage across current medications. Present only when an opioid is listed.",
            {
                "total_mme_per_day": _f(
                    "Morphine milligram equivalents per day: the sum of daily dose x CDC factor over counted opioids. "
                    "Absent when a counted opioid has no daily dose.",
                    "daily_dose",
                    "MME/day",
                ),
                "known_mme_per_day": _f(
                    "MME/day over the counted opioids whose daily dose is recorded: a lower bound of the total "
                    "when a dose is missing.",
                    None,
                    "MME/day",
                ),
                "opioid_count": _i("Opioids listed, counted or not."),
                "uncounted_count": _i("Opioids never counted toward MME (buprenorphine)."),
            },
            (),
            "medications",
        ),
        FactType(
            "medication_summary",
            "How many current medications fall in one group of drug classes (manifest settings).",
            {
                "group": _s("Medication group, from the manifest's settings."),
                "count": _i("Current medications whose class is in the group.", "agent"),
            },
            ("group",),
            "medications",
        ),
        FactType(
            "medication",
            "One current medication, with its class from the medication catalogue.",
            {
                "agent": _s("Medication code.", None, "agent"),
                "drug_class": _s("Class, from the medication catalogue.", None, "agent"),
                "antithrombotic": _b("An anticoagulant or antiplatelet, from the catalogue.", "agent"),
                "daily_dose": _f("Total daily dose.", "daily_dose"),
                "dose_unit": _s("Dose unit.", ("mg", "mcg", "mcg_per_hour", "units"), "dose_unit"),
                "indication": _s(
                    "Indication.",
                    ("primary_prevention", "secondary_prevention", "treatment", "pain", "other"),
                    "indication",
                ),
                "mme_per_day": _f("MME/day of this opioid (daily dose x CDC factor).", "daily_dose", "MME/day"),
                "mme_factor": _f(
                    "CDC 2022 MME conversion factor of the agent (absent: not an opioid in the table).", "agent"
                ),
                "mme_status": _s(
                    "counted toward MME/day (an opioid in the CDC table), not_counted (an opioid never counted, e.g. "
                    "buprenorphine) or not_opioid; always present.",
                    ("counted", "not_counted", "not_opioid"),
                    "agent",
                ),
            },
            ("agent",),
            "medications",
        ),
        FactType(
            "lab",
            "One laboratory result.",
            {
                "test": _v("Test.", "lab_test", "test"),
                "value": _f("Value in the test's canonical unit.", "value"),
                "days_since": _i("Days from the result to as_of.", "date", "days"),
                "date": _s("Date of the result, YYYY-MM-DD (for reading; compare days_since).", None, "date"),
                "flag": _s(
                    "The laboratory's own interpretation against its reference range: the recorded flag, else from "
                    "the recorded reference range (above reference_high: high; below reference_low: low; within "
                    "the limits given: normal). Absent when neither is recorded.",
                    ("high", "normal", "low"),
                    "flag",
                ),
            },
            ("test", "date"),
            "labs",
        ),
        FactType(
            "screening",
            "One screening-instrument score.",
            {
                "instrument": _v("Instrument.", "instrument", "instrument"),
                "score": _i("Total score.", "score"),
                "item9": _i("PHQ-9 item 9.", "item9"),
                "distress_subscore": _i("STarT Back distress subscore.", "distress_subscore"),
                "category": _s(
                    "Risk category as recorded, for a screen without its item scores (STarT Back).",
                    _enum(pm.RiskCategory),
                    "category",
                ),
                "days_since": _i("Days from the screen to as_of.", "date", "days"),
            },
            ("instrument",),
            "screenings",
        ),
        FactType(
            "condition",
            "One diagnosis or implanted device.",
            {
                "code": _v("Condition.", "condition", "code"),
                "active": _b("Currently active.", "active"),
                "region": _v("Region.", "body_region", "region"),
            },
            ("code",),
            "conditions",
        ),
        FactType(
            "steroid_injection",
            "One past corticosteroid injection, at any site (spinal, sacroiliac, peripheral joint).",
            {
                "agent": _v("Corticosteroid.", "steroid_agent", "agent"),
                "dose_mg": _f("Dose in mg.", "dose_mg", "mg"),
                "mpe_mg": _f(
                    "Dose in methylprednisolone equivalents (the vocabulary's equivalent factor).", "dose_mg", "mg"
                ),
                "region": _v("Site.", "body_region", "region"),
                "route": _s("Route.", _enum(pm.InjectionRoute), "route"),
                "days_since": _i(
                    "Days from the injection to as_of (a partial date: from the last day of its period).",
                    "date",
                    "days",
                ),
                "date": _s("Date as recorded (YYYY-MM-DD, YYYY-MM or YYYY).", None, "date"),
                "date_precision": _s("How much of the date is known.", DATE_PRECISIONS, "date_precision"),
            },
            ("agent", "region", "date"),
            "steroid_injections",
        ),
        FactType(
            "steroid_summary",
            "Cumulative corticosteroid injections over the rolling window (manifest settings). Present only when "
            "steroid injections are recorded.",
            {
                "injections_in_window": _i("Injections inside the rolling window."),
                "mpe_mg_in_window": _f(
                    "Their total in mg methylprednisolone equivalents; absent when a dose in the window is not "
                    "recorded.",
                    "dose_mg",
                    "mg",
                ),
                "known_mpe_mg_in_window": _f(
                    "The total over the injections whose dose is recorded: a lower bound.", None, "mg"
                ),
                "dose_unknown_in_window": _i("Injections in the window without a recorded dose."),
            },
            (),
            "steroid_injections",
        ),
        FactType(
            "prognosis",
            "The clinician's estimate of life expectancy. Present only when one is recorded.",
            {
                "life_expectancy_months": _i(
                    "Estimated life expectancy in months.", "life_expectancy_months", "months"
                ),
                "days_since": _i("Days from the estimate to as_of.", "date", "days"),
            },
            (),
            "prognosis",
        ),
        FactType(
            "allergy",
            "One allergy.",
            {"substance": _v("Substance.", "allergy_substance", "substance")},
            ("substance",),
            "allergies",
        ),
        FactType(
            "measure",
            "One point of an outcome series: an instrument's score on one day (the mean of that day's scores).",
            {
                "instrument": _v("Instrument.", "outcome_measure", "instrument"),
                "region": _v(
                    "Region of the complaint measured (absent for whole-patient instruments).", "body_region", "region"
                ),
                "score": _f("Score (PROMIS: T-score).", "score"),
                "days_since": _i("Days from the score to as_of.", "date", "days"),
                "date": _s("Date of the score, YYYY-MM-DD (for reading; compare days_since).", None, "date"),
            },
            ("instrument", "region", "date"),
            "measurements",
        ),
        FactType(
            "response",
            "Change of one instrument: after one therapeutic procedure in the complaint's region (scope "
            "'procedure': the last score on or before it, the last one before the next therapeutic procedure "
            "there), or over the whole series (scope 'overall'). Improvement is positive when the patient is "
            "better, whichever way the instrument runs (the vocabulary's 'better').",
            {
                "scope": _s("'procedure' or 'overall'.", ("procedure", "overall")),
                "kind": _v("The procedure's kind (scope 'procedure').", "procedure_kind", "procedures.kind"),
                "region": _v("Region of the complaint.", "body_region", "region"),
                "instrument": _v("Instrument.", "outcome_measure", "instrument"),
                "procedure_date": _s("Date of the procedure, YYYY-MM-DD.", None, "procedures.date"),
                "procedure_days_since": _i("Days from the procedure to as_of.", "procedures.date", "days"),
                "baseline": _f("Baseline score.", "score"),
                "baseline_days_since": _i("Days from the baseline score to as_of.", "date", "days"),
                "baseline_date": _s("Date of the baseline score.", None, "date"),
                "latest": _f("Latest score of the window.", "score"),
                "latest_days_since": _i("Days from the latest score to as_of.", "date", "days"),
                "latest_date": _s("Date of the latest score.", None, "date"),
                "weeks_after": _f(
                    "Weeks from the procedure (overall: the first score) to the latest score.", None, "weeks"
                ),
                "improvement": _f("Latest against baseline, in the instrument's points; positive is better.", "score"),
                "worsening": _f("The improvement with its sign reversed: positive when the patient is worse.", "score"),
                "improvement_pct": _f(
                    "Improvement in percent of the baseline (absent when the baseline is 0).", "score", "%"
                ),
                "followups": _i("Scores in the window after the procedure (overall: after the first)."),
                "days_since": _i("Days from the procedure (overall: the first score) to as_of.", None, "days"),
            },
            ("scope", "kind", "region", "instrument", "procedure_date"),
            "measurements",
        ),
        FactType(
            "followup",
            "One score after a therapeutic procedure, in its follow-up window, against the baseline.",
            {
                "kind": _v("The procedure's kind.", "procedure_kind", "procedures.kind"),
                "region": _v("Region of the complaint.", "body_region", "region"),
                "instrument": _v("Instrument.", "outcome_measure", "instrument"),
                "procedure_date": _s("Date of the procedure, YYYY-MM-DD.", None, "procedures.date"),
                "procedure_days_since": _i("Days from the procedure to as_of.", "procedures.date", "days"),
                "score": _f("Score.", "score"),
                "improvement": _f("Against the baseline, in points; positive is better.", "score"),
                "improvement_pct": _f("Improvement in percent of the baseline.", "score", "%"),
                "sustained_pct": _f(
                    "The lowest improvement_pct from the procedure up to this score: relief "
                    "of at least X% lasted at least weeks_after weeks when this is >= X.",
                    "score",
                    "%",
                ),
                "weeks_after": _f("Weeks from the procedure to this score.", "date", "weeks"),
                "days_since": _i("Days from the score to as_of.", "date", "days"),
                "date": _s("Date of the score.", None, "date"),
            },
            ("kind", "region", "instrument", "procedure_date", "date"),
            "measurements",
        ),
        FactType(
            "mme_record",
            "The total daily MME from one date (mme_history).",
            {
                "mme_per_day": _f("Total MME/day.", "mme_per_day", "MME/day"),
                "change": _s("Change made that day.", _enum(pm.MmeChange), "change"),
                "days_since": _i("Days from the record to as_of.", "date", "days"),
                "date": _s("Date, YYYY-MM-DD.", None, "date"),
            },
            ("date",),
            "mme_history",
        ),
        FactType(
            "mme_step",
            "A change of the daily MME between two consecutive records.",
            {
                "from_mme": _f("MME/day before.", "mme_per_day", "MME/day"),
                "to_mme": _f("MME/day after.", "mme_per_day", "MME/day"),
                "days_between": _i("Days between the two records.", "date", "days"),
                "reduction_pct": _f(
                    "Reduction in percent of the dose before (negative: an increase).", "mme_per_day", "%"
                ),
                "reduction_pct_per_30_days": _f("reduction_pct scaled to 30 days.", "mme_per_day", "%/30 days"),
                "change": _s("Change recorded on the later date.", _enum(pm.MmeChange), "change"),
                "days_since": _i("Days from the later record to as_of.", "date", "days"),
                "date": _s("Date of the later record.", None, "date"),
                "from_date": _s("Date of the earlier record.", None, "date"),
            },
            ("from_date", "date"),
            "mme_history",
        ),
        FactType(
            "opioid_course",
            "The daily MME over the recorded history: first, peak, latest. Present when mme_history is given.",
            {
                "first_mme": _f("MME/day of the first record.", "mme_per_day", "MME/day"),
                "peak_mme": _f("Highest MME/day recorded (the latest such day).", "mme_per_day", "MME/day"),
                "peak_date": _s("Date of the peak.", None, "date"),
                "latest_mme": _f("MME/day of the latest record.", "mme_per_day", "MME/day"),
                "latest_date": _s("Date of the latest record.", None, "date"),
                "latest_days_since": _i("Days from the latest record to as_of.", "date", "days"),
                "reduction_from_peak_pct": _f("Reduction from the peak in percent of the peak.", "mme_per_day", "%"),
                "weeks_from_peak": _f("Weeks from the peak to the latest record.", "date", "weeks"),
                "records": _i("Records (distinct dates)."),
            },
            (),
            "mme_history",
        ),
        FactType(
            "requested",
            "One requested, planned or scheduled procedure (the patient's requested[]). Each also yields the "
            "candidate fact a recommendation of the same intervention and target would, so every safety rule "
            "that matches candidates judges it.",
            {
                "order": _s("The order's identifier.", None, "id"),
                "intervention": _s("Intervention code, from the intervention catalogue.", None, "intervention"),
                "status": _s("Where the order stands.", ("requested", "planned", "scheduled"), "status"),
                "region": _v("Target region.", "body_region", "region"),
                "side": _s("Target side.", SIDES, "side"),
                "levels": _s("Levels, distinct and in anatomical order, comma-separated.", None, "levels"),
                "level_count": _i("Number of levels targeted.", "levels"),
                "approach": _v("Approach.", "procedure_approach", "approach"),
                "days_until": _i("Days from as_of to the planned date (negative: past).", "planned_date", "days"),
                "planned_date": _s("Planned date, YYYY-MM-DD (for reading; compare days_until).", None, "planned_date"),
                "guidance": _s("Planned image guidance.", GUIDANCE, "guidance"),
                "guidance_conflict": _b(
                    "The order states a guidance that is not among the intervention's allowed guidance (catalogue); "
                    "false when it states none.",
                    "guidance",
                ),
                "guidance_ionizing": _b(
                    "The order names fluoroscopy or CT guidance (ionising radiation); false when it names another "
                    "or none.",
                    "guidance",
                ),
                "steroid_agent": _v("Corticosteroid.", "steroid_agent", "steroid_agent"),
                "steroid_dose_mg": _f("Corticosteroid dose.", "steroid_dose_mg", "mg"),
            },
            ("intervention", "region", "side", "levels"),
            "requested",
        ),
        FactType(
            "candidate",
            "Derived by the engine for every recommendation, so that safety rules can match what is proposed.",
            {
                "intervention": _s("Intervention code."),
                "region": _v("Target region.", "body_region"),
                "side": _s("Target side.", SIDES),
                "bleeding_risk": _s("ASRA 2018 bleeding-risk category at this region.", BLEEDING_RISKS),
                "elective": _b("Elective procedure."),
                "kind": _s("Diagnostic, therapeutic or implant.", INTERVENTION_KINDS),
                "evidence_status": _s("Evidence status.", ("standard", "payer_dependent", "investigational")),
                "uses_steroid": _b("Usually given with a corticosteroid."),
                "uses_contrast": _b("Usually done with iodinated contrast."),
                "uses_radiofrequency": _b("Delivers radiofrequency energy."),
                "neuraxial": _b("Enters the epidural or intrathecal space."),
                "needle": _b("A needle or implant procedure."),
                "ionizing_guidance": _b("Guided by fluoroscopy or CT."),
                "ultrasound_possible": _b("Ultrasound is among its allowed guidance."),
            },
            ("intervention", "region"),
            "",
        ),
    ]
}

INPUT_FACT_TYPES = frozenset(name for name in BASE_FACT_TYPES if name != "candidate")

VOCABULARY_NAMES = frozenset(
    spec.vocabulary for ft in BASE_FACT_TYPES.values() for spec in ft.fields.values() if spec.vocabulary is not None
)
"""The vocabularies that fact fields draw on: a ruleset must declare each (its ``vocabularies`` catalogue)."""


def fact_types_for(vocabularies: Mapping[str, Collection[str]]) -> dict[str, FactType]:
    """The base fact types with each vocabulary field's values taken from a ruleset's vocabularies."""
    out: dict[str, FactType] = {}
    for name, ft in BASE_FACT_TYPES.items():
        fields = {
            f: replace(spec, values=tuple(vocabularies.get(spec.vocabulary, ())))
            if spec.vocabulary is not None
            else spec
            for f, spec in ft.fields.items()
        }
        out[name] = replace(ft, fields=fields)
    return out
