"""Aggregates (latest, earliest, count_of) and the bound on every valid patient.

Long histories used to enumerate pairs and tuples of one fact type (90 monthly INRs: thousands of firings
and a FiringLimitError; 100 SIJ injections: gigabytes). These tests pin what the rules now say about such
records on both backends, the aggregates' own semantics, the errors a rule author gets, the warning on a
join over one fact type, and that the firing cap holds while matching with one message for both backends.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.engine import aggregates
from ipm_cds.engine.driver import DEFAULT_FIRING_CAP
from ipm_cds.engine.match import Unknown
from ipm_cds.engine.python_backend import PythonBackend
from ipm_cds.errors import FiringLimitError
from ipm_cds.model.facts.normalise import Fact
from ipm_cds.ruleset import ir
from ipm_cds.tooling.checks import semantic_problems

from .conftest import AS_OF
from .test_ruleset_errors import edit, line_of, problems

THOROUGH = os.environ.get("IPM_CDS_HYPOTHESIS_PROFILE") == "thorough"
# Far under the cap: the largest valid patients fire a few hundred rules (docs/performance.md, worst case).
FIRING_BOUND = DEFAULT_FIRING_CAP // 10


def _day(n: int) -> str:
    return (AS_OF - timedelta(days=n)).isoformat()


def _outcome(engine: ipm_cds.Engine, document: dict[str, Any]) -> tuple[str, int]:
    assessment = engine.evaluate(document, as_of=AS_OF, timestamp=False)
    text = assessment.to_json(timestamp=False).replace(f'"backend": "{engine.backend_name}"', "")
    return text, len(assessment.trace)


def _both(durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, document: dict[str, Any]) -> ipm_cds.Assessment:
    (text_d, fired_d), (text_p, fired_p) = _outcome(durable, document), _outcome(python_engine, document)
    assert text_d == text_p
    assert fired_d == fired_p <= FIRING_BOUND
    return durable.evaluate(document, as_of=AS_OF, timestamp=False)


# -- long records at the model's caps -----------------------------------------------------------------


def _radiculopathy_in_two_regions() -> dict[str, Any]:
    """Lumbar and cervical radiculopathy with concordant MRI after failed conservative care: an epidural
    candidate in each region."""
    return {
        "pain": [
            {
                "region": "lumbar",
                "laterality": "left",
                "character": "radicular",
                "duration_weeks": 10,
                "nrs": 7,
                "odi_pct": 38,
            },
            {
                "region": "cervical",
                "laterality": "right",
                "character": "radicular",
                "duration_weeks": 12,
                "nrs": 7,
                "ndi": 20,
            },
        ],
        "imaging": [
            {
                "modality": "mri",
                "finding": "disc_herniation",
                "region": region,
                "level": level,
                "side": side,
                "concordant": True,
                "date": _day(50),
            }
            for region, level, side in (("lumbar", "L5-S1", "left"), ("cervical", "C5-C6", "right"))
        ],
        "conservative_care": {"physical_therapy_weeks": 12, "active_exercise_program": True, "failed": True},
    }


def test_a_hundred_inrs_on_warfarin_judge_the_latest(durable: ipm_cds.Engine, python_engine: ipm_cds.Engine) -> None:
    """Lumbar and cervical radiculopathy on warfarin with 100 monthly INRs (the model's cap): assessed, and
    only the latest INR (2.9, above SIR's 1.5 before an intermediate-risk epidural) speaks, as a relative
    exclusion: a precaution on each epidural candidate."""
    inrs = [{"test": "inr", "value": 2.2, "date": _day(30 * i + 10)} for i in range(1, 100)]
    inrs.append({"test": "inr", "value": 2.9, "date": _day(3)})
    document = {
        **_radiculopathy_in_two_regions(),
        "medications": [{"agent": "warfarin", "daily_dose": 5, "dose_unit": "mg", "indication": "treatment"}],
        "labs": inrs,
    }
    assessment = _both(durable, python_engine, document)
    epidurals = [c for c in assessment.candidates if c.intervention.startswith("esi_")]
    assert {c.target.region for c in epidurals} == {"lumbar", "cervical"}
    for candidate in epidurals:
        (sir,) = [p for p in candidate.precautions if p.basis.rule.startswith("coag.inr.sir_high_risk@")]
        assert sir.text.startswith(f"Latest INR 2.9 ({_day(3)}) is above 1.5")


def test_a_hundred_therapeutic_sij_injections_are_counted(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine
) -> None:
    """100 therapeutic SIJ injections on distinct dates within a year (was 1.8 GB, then FiringLimitError)."""
    document = {
        "pain": [{"region": "sacroiliac", "character": "joint", "duration_weeks": 60, "nrs": 7}],
        "procedures": [
            {
                "kind": "sij_injection",
                "purpose": "therapeutic",
                "region": "sacroiliac",
                "date": _day(3 * i + 1),
                "relief_pct": 60,
                "relief_duration_weeks": 14,
            }
            for i in range(100)
        ],
    }
    assessment = _both(durable, python_engine, document)
    (cap,) = [e for e in assessment.excluded if e.basis.rule.startswith("sij.therapeutic.frequency@")]
    assert cap.intervention == "sij_injection_therapeutic"
    assert cap.reason.startswith("100 therapeutic SIJ sessions in the rolling 12 months")
    assert "at most 4 are allowed" in cap.reason


def test_three_sessions_are_under_the_cap_four_reach_it(durable: ipm_cds.Engine) -> None:
    def capped(sessions: list[int]) -> bool:
        document = {
            "procedures": [
                {"kind": "sij_injection", "purpose": "therapeutic", "region": "sacroiliac", "date": _day(d)}
                for d in sessions
            ]
        }
        assessment = durable.evaluate(document, as_of=AS_OF)
        return any(e.basis.rule.startswith("sij.therapeutic.frequency@") for e in assessment.excluded)

    assert not capped([10, 100, 200])
    assert not capped([10, 100, 200, 200])  # two on one date are one session
    assert not capped([10, 100, 200, 365])  # the fourth is outside the rolling 12 months
    assert capped([10, 100, 200, 364])


def _sized(items: int, ruleset: ipm_cds.Ruleset, seed: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from benchmarks.workloads import sized_patient
    finally:
        sys.path.pop(0)
    return sized_patient(items, ruleset, seed=seed)


def test_a_crowded_record_is_assessed_far_under_the_cap(durable: ipm_cds.Engine, python_engine: ipm_cds.Engine) -> None:
    """20 radicular pains x 100 concordant images x 100 epidurals x 100 antithrombotic orders: the spine rules
    join one fact per distinct finding and level (count_of ... by), not every image."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from benchmarks.worst_case import crowded_patient
    finally:
        sys.path.pop(0)
    assessment = _both(durable, python_engine, crowded_patient())
    assert len(assessment.trace) < 200
    referrals = [r for r in assessment.referrals if r.to == "spine_surgery"]
    assert [r.reason for r in referrals] == [
        "Lumbar radicular pain refractory to conservative care, with concordant disc herniation at L5-S1 on mri: "
        "spine-surgery opinion."
    ]


@pytest.mark.parametrize("seed", [35, 39, 40, 50, 55])
def test_the_sized_patients_that_hit_the_cap_are_assessed(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, seed: int
) -> None:
    """Seeds 35, 39, 40, 50 and 55 of the 100-item sized patient raised FiringLimitError on both backends."""
    _both(durable, python_engine, _sized(100, durable.ruleset, seed))


@settings(
    max_examples=200 if THOROUGH else 4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_every_sized_patient_at_the_caps_is_assessed_far_under_the_firing_cap(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, seed: int
) -> None:
    _both(durable, python_engine, _sized(100, durable.ruleset, seed))


# -- the aggregates themselves ------------------------------------------------------------------------


def _fact(key: str, **values: Any) -> Fact:
    return Fact("lab", key, values, f"lab[{key}]")


def _aggregate(function: ir.AggregateFunction, **options: Any) -> ir.Aggregate:
    selection = ir.Pattern("_", "lab", (ir.Test("test", "eq", "inr"),))
    order = "days_since"
    return ir.Aggregate(f"lab@{function}.test", function, selection, tuple(options.pop("by", ())), order, **options)


LABS = [
    _fact("a", test="inr", value=2.0, days_since=30, date="2025-05-03"),
    _fact("b", test="inr", value=3.0, days_since=3, date="2025-05-30"),
    _fact("c", test="inr", value=2.5, days_since=3, date="2025-05-30"),
    _fact("d", test="inr", value=1.0, days_since=300, date="2024-08-06"),
    _fact("e", test="platelets", value=90.0, days_since=1, date="2025-06-01"),
]


def test_latest_ranks_densely_and_ties_share_a_rank() -> None:
    out = aggregates.Aggregated()
    aggregates.compute(_aggregate("latest"), LABS, out)
    ranks = {out.sources[f.key].key: f.values["rank"] for f in out.facts}
    assert ranks == {"a": 2, "b": 1, "c": 1, "d": 3}  # platelets are not selected
    assert {f.label for f in out.facts if f.values["rank"] == 1} == {"lab[b], latest #1 of 4", "lab[c], latest #1 of 4"}
    assert all(len(out.members[f.key]) == 4 for f in out.facts)


def test_earliest_ranks_from_the_oldest() -> None:
    out = aggregates.Aggregated()
    aggregates.compute(_aggregate("earliest"), LABS, out)
    assert {out.sources[f.key].key: f.values["rank"] for f in out.facts} == {"d": 1, "a": 2, "b": 3, "c": 3}


def test_an_undated_fact_has_no_rank_and_makes_the_latest_uncertain() -> None:
    out = aggregates.Aggregated()
    aggregates.compute(_aggregate("latest"), [*LABS[:2], _fact("u", test="inr", value=4.0)], out)
    undated = next(f for f in out.facts if out.sources[f.key].key == "u")
    assert "rank" not in undated.values and undated.label == "lab[u], undated, latest rank unknown"
    newest = next(f for f in out.facts if out.sources[f.key].key == "b")
    assert [u.fact.key for u in out.uncertain[newest.key]] == ["u"]
    assert [(u.fact.key, u.field) for u in out.translate(Unknown(undated, "rank"))] == [("u", "days_since")]


def test_count_distinct_total_listed_and_dates() -> None:
    out = aggregates.Aggregated()
    aggregates.compute(_aggregate("count", distinct="days_since", sum="value", list="date"), LABS, out)
    (count,) = out.facts
    assert count.values == {
        "count": 3,  # b and c on one day
        "total": 8.5,
        "listed": "2024-08-06, 2025-05-03, 2025-05-30",
        "latest_days_since": 3,
        "earliest_days_since": 300,
        "latest_date": "2025-05-30",
        "earliest_date": "2024-08-06",
    }


def test_a_count_without_groups_is_made_when_nothing_is_selected() -> None:
    out = aggregates.Aggregated()
    aggregates.compute(_aggregate("count"), LABS[4:], out)
    assert [f.values for f in out.facts] == [{"count": 0}]


@pytest.mark.parametrize(
    "made",
    [_aggregate("count"), _aggregate("count", by=("value",)), _aggregate("latest"), _aggregate("earliest")],
    ids=["count", "count-by", "latest", "earliest"],
)
@pytest.mark.parametrize(
    "facts", [LABS[4:], [_fact("u", value=1.0, days_since=2)], LABS], ids=["none", "undecided", "some"]
)
def test_what_selects_nothing_is_what_no_facts_make(made: ir.Aggregate, facts: list[Fact]) -> None:
    # The driver's shortcut: an aggregate given the facts it makes from none (and their members and fields,
    # already in ``out``) adds those facts as they are when it selects nothing; otherwise it computes.
    empty = aggregates.Aggregated()
    aggregates.compute(made, (), empty)
    shortcut, computed = aggregates.Aggregated(), aggregates.Aggregated()
    for out in (shortcut, computed):
        out.add(empty)
        out.facts.clear()
    aggregates.compute(made, facts, shortcut, nothing=tuple(empty.facts))
    aggregates.compute(made, facts, computed)
    assert shortcut == computed
    assert [(f.key, f.values, f.label) for f in shortcut.facts] == [(f.key, f.values, f.label) for f in computed.facts]
    if facts is LABS[4:]:  # nothing selected, nothing undecided: the very facts given
        assert all(a is b for a, b in zip(shortcut.facts, empty.facts, strict=True))


def test_a_total_over_a_missing_value_is_missing_never_smaller() -> None:
    out = aggregates.Aggregated()
    aggregates.compute(_aggregate("count", sum="value"), [LABS[0], _fact("x", test="inr", days_since=5)], out)
    (count,) = out.facts
    assert "total" not in count.values
    assert [(u.fact.key, u.field) for u in out.translate(Unknown(count, "total"))] == [("x", "value")]


def test_groups_by_field_and_a_missing_group_value() -> None:
    facts = [
        Fact("procedure", "p1", {"kind": "facet_mbb", "region": "lumbar", "days_since": 10}, "p1"),
        Fact("procedure", "p2", {"kind": "facet_mbb", "region": "lumbar", "days_since": 20}, "p2"),
        Fact("procedure", "p3", {"kind": "facet_mbb", "region": "cervical", "days_since": 5}, "p3"),
        Fact("procedure", "p4", {"kind": "facet_mbb", "days_since": 1}, "p4"),
    ]
    selection = ir.Pattern("_", "procedure", (ir.Test("kind", "eq", "facet_mbb"),))
    out = aggregates.Aggregated()
    aggregates.compute(ir.Aggregate("procedure@count.t", "count", selection, ("region",), "days_since"), facts, out)
    counts = {f.values.get("region"): f.values["count"] for f in out.facts}
    assert counts == {"cervical": 1, "lumbar": 2, None: 1}
    lacking = next(f for f in out.facts if "region" not in f.values)
    assert [u.fact.key for u in out.translate(Unknown(lacking, "region"))] == ["p4"]


def test_an_undecided_selection_is_kept_beside_what_it_could_change() -> None:
    facts = [
        Fact("procedure", "t1", {"kind": "sij_injection", "purpose": "therapeutic", "days_since": 10}, "t1"),
        Fact("procedure", "u1", {"kind": "sij_injection", "days_since": 20}, "u1"),
    ]
    selection = ir.Pattern(
        "_", "procedure", (ir.Test("kind", "eq", "sij_injection"), ir.Test("purpose", "eq", "therapeutic"))
    )
    out = aggregates.Aggregated()
    aggregates.compute(ir.Aggregate("procedure@count.s", "count", selection, (), "days_since"), facts, out)
    (count,) = out.facts
    assert count.values["count"] == 1
    assert [(u.fact.key, u.field) for u in out.undecided[count.key]] == [("u1", "purpose")]
    at_least = ir.Pattern("s", "procedure@count.s", (ir.Test("count", "gte", 2),))
    assert aggregates.could_change(at_least, count, 1)  # 1 + 1 could reach 2
    assert not aggregates.could_change(ir.Pattern("s", "procedure@count.s", (ir.Test("count", "gte", 4),)), count, 1)


def test_missing_purpose_is_reported_only_where_it_could_reach_the_cap(durable: ipm_cds.Engine) -> None:
    def needs_purpose(therapeutic: int) -> bool:
        procedures = [
            {"kind": "sij_injection", "purpose": "therapeutic", "region": "sacroiliac", "date": _day(20 * i + 5)}
            for i in range(therapeutic)
        ]
        procedures.append({"kind": "sij_injection", "region": "sacroiliac", "date": _day(200)})
        assessment = durable.evaluate({"procedures": procedures}, as_of=AS_OF)
        return any(
            m.field == "procedures.purpose" and any(r.startswith("sij.therapeutic.frequency") for r in m.needed_by)
            for m in assessment.missing_data
        )

    assert not needs_purpose(1)  # 1 + 1 cannot reach 4
    assert needs_purpose(3)  # 3 + 1 could


def test_an_undated_screen_beside_a_dated_one_is_reported(durable: ipm_cds.Engine) -> None:
    document = {
        "screenings": [
            {"instrument": "phq9", "score": 12, "date": _day(30)},
            {"instrument": "phq9", "score": 3},
        ]
    }
    assessment = durable.evaluate(document, as_of=AS_OF)
    assert any(r.to == "behavioral_health" for r in assessment.referrals)
    assert any(m.field == "screenings.date" for m in assessment.missing_data)


# -- what a rule author gets --------------------------------------------------------------------------


SIJ_DX = "        count_of: {type: procedure, kind: sij_injection, purpose: diagnostic}\n"


@pytest.mark.parametrize(
    ("new", "offset", "message"),
    [
        (
            SIJ_DX + "        type: procedure\n",
            1,
            "an aggregate pattern takes its fact type from its selection: move 'type' into count_of: {...}",
        ),
        (
            "        count_of: {type: procedure, kind: sij_injection, region: {same_as: pain.region}}\n",
            0,
            "an aggregate's selection cannot join to another pattern (pain.region) (select on the fact's own fields, "
            "group with by: [FIELD], and join the aggregate's fact instead)",
        ),
        (
            SIJ_DX + "        by: [regoin]\n",
            1,
            "fact type 'procedure' has no field 'regoin' (did you mean 'region'?)",
        ),
        (
            SIJ_DX + "        sum: kind\n",
            1,
            "sum needs a numeric field; procedure.kind is a str",
        ),
    ],
)
def test_aggregate_mistakes_name_the_place(copy: Path, new: str, offset: int, message: str) -> None:
    edit(copy, "rules/sij.yaml", SIJ_DX, new)
    found = problems(copy)
    assert len(found) == 1, found
    found = found[0]
    line = line_of(copy, "rules/sij.yaml", new.splitlines()[0].strip()) + offset
    assert found.startswith(f"ipm-core/rules/sij.yaml:{line}:"), found
    assert found.endswith(message), found


def test_latest_needs_a_day_count(copy: Path) -> None:
    edit(
        copy,
        "rules/opioids.yaml",
        "      bzd: {count_of: {type: medication, drug_class: benzodiazepine}, list: agent, count: {gte: 1}}",
        "      bzd: {latest: {type: medication, drug_class: benzodiazepine}}",
    )
    (found,) = problems(copy)
    assert "latest ranks facts by a day count, and fact type 'medication' has no days_since" in found
    assert "name an integer day-count field with order: FIELD" in found


def test_validate_warns_on_a_join_over_pairs_of_one_fact_type(copy: Path) -> None:
    edit(
        copy,
        "rules/sij.yaml",
        "      sessions:\n"
        + SIJ_DX
        + "        distinct: days_since\n        count: {gte: {param: sij_dx_max_sessions}}\n",
        "      first: {type: procedure, kind: sij_injection, purpose: diagnostic}\n"
        "      second: {type: procedure, kind: sij_injection, purpose: diagnostic, "
        "days_since: {lt: {ref: first.days_since}}}\n",
    )
    edit(
        copy,
        "rules/sij.yaml",
        "            {sessions.count} diagnostic SIJ sessions are already on record (the latest on\n"
        "            {sessions.latest_date});",
        "            Diagnostic SIJ sessions are already on record;",
    )
    (copy / "ruleset.lock.json").unlink()  # an edit without a version bump; the lock is not what is tested
    ruleset = ipm_cds.load_ruleset(copy)
    warnings = [p for p in semantic_problems(ruleset) if p.severity == "warning" and "joins 2 procedure" in p.message]
    (warning,) = warnings
    assert warning.message.startswith("rule sij.diagnostic.frequency joins 2 procedure facts (first, second)")
    assert "count_of" in (warning.hint or "")
    assert warning.location is not None and warning.location.line == line_of(copy, "rules/sij.yaml", "      second:")
    assert not [p for p in semantic_problems(ipm_cds.load_ruleset()) if "joins" in p.message]


# -- the firing cap -----------------------------------------------------------------------------------


def test_the_cap_gives_one_message_on_both_backends(ruleset: ipm_cds.Ruleset) -> None:
    agents = ["apixaban", "rivaroxaban", "warfarin"]
    document = {"medications": [{"agent": a} for a in agents], "conditions": [{"code": "mechanical_heart_valve"}]}
    messages = []
    for backend in ("durable", "python"):
        engine = ipm_cds.Engine(ruleset, backend=backend, firing_cap=1)  # type: ignore[arg-type]
        with pytest.raises(FiringLimitError) as info:
            engine.evaluate(document, as_of=AS_OF)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("more than 1 rule firings in one evaluation over 3 medication, ")
    assert "[rule " in messages[0]


def test_the_python_backend_checks_the_cap_while_matching(ruleset: ipm_cds.Ruleset) -> None:
    """Matches fire as they are found: at the cap the evaluation stops, with no further match collected."""
    engine = ipm_cds.Engine(ruleset, backend="python", firing_cap=3)
    backend = engine._backend
    assert isinstance(backend, PythonBackend) and backend._compiled is not None
    pulled = 0

    def counting(inner: Any) -> Any:
        def matches(by_type: Any) -> Any:
            nonlocal pulled
            for bound in inner(by_type):
                pulled += 1
                yield bound

        return matches

    for name in backend._compiled.match._keys:  # built lazily: build and wrap every one
        backend._compiled.match[name] = counting(backend._compiled.match[name])
    # a pregnancy on eight NSAIDs: safety.pregnancy.nsaid alone could fire eight times
    agents = ["ibuprofen", "diclofenac", "ketorolac", "etodolac", "indomethacin", "naproxen", "meloxicam", "piroxicam"]
    document = {"demographics": {"sex": "female", "pregnant": True}, "medications": [{"agent": a} for a in agents]}
    with pytest.raises(FiringLimitError):
        engine.evaluate(document, as_of=AS_OF)
    assert pulled == 4  # the fourth match fired past the cap; nothing more was matched


def test_an_item_recorded_twice_is_one_fact_and_still_counts_in_the_summaries(ruleset: ipm_cds.Ruleset) -> None:
    from ipm_cds.model.facts.normalise import normalise
    from ipm_cds.model.patient import parse_patient

    document = {"medications": [{"agent": "oxycodone", "daily_dose": 30, "dose_unit": "mg"}] * 2}
    facts = normalise(parse_patient(document), AS_OF, ruleset.normalise_context())
    assert [f.values["agent"] for f in facts if f.type == "medication"] == ["oxycodone"]
    (summary,) = [f for f in facts if f.type == "opioid_summary"]
    assert summary.values["total_mme_per_day"] == 90.0  # 2 x 30 mg x 1.5: both orders count


def test_the_engine_page_gives_the_firing_cap_the_code_uses() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "engine.md").read_text(encoding="utf-8")
    assert f"A cap on firings per evaluation ({DEFAULT_FIRING_CAP:,} by default" in page


def test_hold_advice_over_counts_reaches_every_candidate_once_per_drug(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine
) -> None:
    """asra.hold(.upgraded) binds a count of candidates and a count of medications by agent and indication: it
    fires once per drug and indication, and every candidate still carries the advice for every drug."""
    document = {
        **_radiculopathy_in_two_regions(),
        "medications": [
            {"agent": "apixaban", "daily_dose": 10, "dose_unit": "mg"},
            {"agent": "apixaban", "daily_dose": 10, "dose_unit": "mg", "indication": "treatment"},
            {"agent": "clopidogrel", "daily_dose": 75, "dose_unit": "mg"},
        ],
    }
    assessment = _both(durable, python_engine, document)
    assert len(assessment.candidates) >= 2
    for candidate in assessment.candidates:
        held = {p.medication for p in candidate.precautions if p.kind == "antithrombotic"}
        assert held == {"apixaban", "clopidogrel"}, (candidate.intervention, candidate.target.region)
    holds = [t for t in assessment.trace if t.rule.startswith("asra.hold") and t.status == "fired"]
    # one firing per (agent, indication): apixaban without and with an indication, clopidogrel
    assert len(holds) == 3, [t.rule for t in holds]


def test_a_count_that_stands_for_nothing_fails_closed() -> None:
    """A conclusion bound to a count is given for the facts the count was made from; a count whose facts
    cannot be found is an evaluation error, never a conclusion silently dropped."""
    from ipm_cds.engine.driver import Run
    from ipm_cds.errors import EvaluationError
    from ipm_cds.model.facts.normalise import Fact

    run = Run()
    candidate = Fact("candidate", "candidate#0", {"intervention": "facet_mbb"}, "candidate[facet_mbb]")
    count = Fact("candidate@count.x", "candidate@count.x#0", {"count": 1}, "count of candidate = 1", derived=True)
    assert run.stands_for(candidate, "candidate") == (candidate,)
    with pytest.raises(EvaluationError, match="stands for no candidate fact"):
        run.stands_for(count, "candidate")
    run.aggregated.members[count.key] = (candidate,)
    assert run.stands_for(count, "candidate") == (candidate,)
