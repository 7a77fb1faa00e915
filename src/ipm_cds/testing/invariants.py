"""Invariant checks: plain functions that raise an informative AssertionError, usable with any ruleset."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from ..engine.facade import Engine
from ..model.assessment import Assessment
from ..model.patient import PatientCase


def _diff(a: str, b: str) -> str:
    import difflib

    return "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "first", "second", lineterm=""))[:60])


def _without_backend(assessment: Assessment) -> str:
    """The assessment's JSON without the names of the backend that ran and of how it was chosen."""
    provenance = assessment.provenance.model_copy(update={"backend": "python", "backend_auto": False})
    return assessment.model_copy(update={"provenance": provenance}).to_json(timestamp=False)


def assert_backends_agree(durable: Engine, python: Engine, patient: PatientCase, as_of: date) -> Assessment:
    """The durable and python backends return identical assessments (backend name aside)."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    a = durable.evaluate(patient, as_of=as_of, timestamp=False)
    b = python.evaluate(patient, as_of=as_of, timestamp=False)
    ja, jb = (_without_backend(x) for x in (a, b))
    assert ja == jb, f"backends disagree:\n{_diff(ja, jb)}"
    return a


def shuffled(patient: PatientCase, rng: random.Random) -> PatientCase:
    """The same patient with every list in the document shuffled."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            items = [walk(v) for v in value]
            rng.shuffle(items)
            return items
        return value

    return PatientCase.model_validate(walk(patient.model_dump(mode="python")))


def assert_order_invariant(engine: Engine, patient: PatientCase, as_of: date, rng: random.Random) -> None:
    """Shuffling every list in the input, or evaluating twice, gives byte-identical JSON."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    first = engine.evaluate(patient, as_of=as_of, timestamp=False).to_json(timestamp=False)
    again = engine.evaluate(patient, as_of=as_of, timestamp=False).to_json(timestamp=False)
    assert first == again, f"two evaluations differ:\n{_diff(first, again)}"
    other = engine.evaluate(shuffled(patient, rng), as_of=as_of, timestamp=False).to_json(timestamp=False)
    assert first == other, f"shuffling the input changed the assessment:\n{_diff(first, other)}"


def assert_red_flag_dominance(engine: Engine, assessment: Assessment) -> None:
    """With a red flag, no elective candidate or elective referral remains and an emergency or urgent referral
    is made; without one, no referral is deferred."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    if not any(a.code.startswith("red_flag.") for a in assessment.alerts):
        deferred = [d.referral.to for d in assessment.deferred_referrals]
        assert not deferred, f"referrals deferred with no red flag: {deferred}"
        return
    catalogue = engine.ruleset.interventions
    elective = [c.intervention for c in assessment.candidates if catalogue[c.intervention].elective]
    assert not elective, f"elective candidates despite a red flag: {elective}"
    targets = engine.ruleset.referrals
    elective_referrals = [r.to for r in assessment.referrals if targets[r.to].elective]
    assert not elective_referrals, f"elective referrals despite a red flag: {elective_referrals}"
    assert any(r.urgency in ("emergency", "urgent") for r in assessment.referrals), (
        "red flag without an emergency or urgent referral"
    )


def assert_provenance_complete(engine: Engine, assessment: Assessment) -> None:
    """Every conclusion names an active rule id@version, criteria and sources that resolve in the ruleset."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    active = {r.ref: r for r in engine.program.rules}
    bases = (
        [c.basis for c in assessment.candidates]
        + [e.basis for e in assessment.excluded]
        + [a.basis for a in assessment.alerts]
        + [r.basis for r in assessment.referrals]
        + [d.basis for d in assessment.deferred_referrals]
        + [d.referral.basis for d in assessment.deferred_referrals]
        + [p.basis for c in assessment.candidates for p in c.precautions]
        + [p.basis for p in assessment.precautions]
    )
    for basis in bases:
        assert basis.rule in active, f"unknown rule {basis.rule}"
        assert basis.criteria, f"{basis.rule} names no criteria"
        assert basis.sources, f"{basis.rule} cites no source"
        for crit in basis.criteria:
            assert crit in engine.ruleset.criteria, f"{basis.rule} cites unknown criterion {crit}"
        for src in basis.sources:
            assert src.id in engine.ruleset.sources, f"{basis.rule} cites unknown source {src.id}"


def assert_round_trip(assessment: Assessment) -> None:
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    again = Assessment.model_validate_json(assessment.to_json())
    assert again == assessment, "the assessment does not survive a JSON round trip"


# -- hostile input ------------------------------------------------------------------------------------------


def assert_rejects_or_evaluates(engine: Engine, document: Any, as_of: date) -> Assessment | None:
    """Bad input is rejected with a PatientDataError naming a field; anything else is a bug."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    from ..errors import PatientDataError

    try:
        return engine.evaluate(document, as_of=as_of, timestamp=False)
    except PatientDataError as exc:
        assert exc.problems and all(str(p) for p in exc.problems), "a rejection must say what is wrong"
        return None


# -- metamorphic relations ------------------------------------------------------------------------------------


def _candidates(engine: Engine, patient: PatientCase, as_of: date) -> set[tuple[str, str | None]]:
    a = engine.evaluate(patient, as_of=as_of, timestamp=False)
    return {(c.intervention, c.target.region) for c in a.candidates}


def assert_adding_never_adds_candidates(
    engine: Engine, patient: PatientCase, as_of: date, addition: dict[str, Any]
) -> None:
    """Adding a red flag or a contraindication (``addition``: e.g. ``{"conditions": [{"code": ...}]}``)
    never adds a candidate."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    doc = patient.model_dump(mode="python")
    for key, items in addition.items():
        doc[key] = [*doc.get(key, []), *items]
    before = _candidates(engine, patient, as_of)
    after = _candidates(engine, PatientCase.model_validate(doc), as_of)
    assert after <= before, f"adding {addition} added candidates {sorted(after - before)}"


def assert_more_relief_never_removes(
    engine: Engine, patient: PatientCase, as_of: date, kinds: tuple[str, ...] = ("facet_mbb",), step: int = 10
) -> None:
    """Raising a diagnostic block's relief never removes a candidate."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    before = _candidates(engine, patient, as_of)
    for i, proc in enumerate(patient.procedures):
        if proc.kind not in kinds or proc.relief_pct is None or proc.relief_pct >= 100:
            continue
        doc = patient.model_dump(mode="python")
        doc["procedures"][i]["relief_pct"] = min(100, proc.relief_pct + step)
        after = _candidates(engine, PatientCase.model_validate(doc), as_of)
        assert before <= after, (
            f"raising procedures[{i}] relief from {proc.relief_pct}% removed {sorted(before - after)}"
        )


def unread_patient_fields(engine: Engine) -> list[str]:
    """Patient fields (``section.field``) that no active rule reads under the engine's profile."""
    from ..model.facts.schema import BASE_FACT_TYPES
    from ..ruleset import ir

    read: set[tuple[str, str]] = set()
    for rule in engine.program.rules:
        inputs = rule.input_patterns()
        alias_types = {p.alias: p.fact_type for p in inputs}
        for pattern in inputs:
            for test in pattern.all_tests():
                read.add((pattern.fact_type, test.field))
                if isinstance(test.operand, ir.Ref):
                    alias_type = alias_types.get(test.operand.alias)
                    if alias_type:
                        read.add((alias_type, test.operand.field))
        for template in _templates_of(rule):
            for part in template.parts:
                if isinstance(part, ir.Ref):
                    alias_type = alias_types.get(part.alias)
                    if alias_type:
                        read.add((alias_type, part.field))
        for conclusion in rule.conclusions:
            for value in dict(getattr(conclusion, "values", ()) or ()).values():
                if isinstance(value, ir.Ref):
                    alias_type = alias_types.get(value.alias)
                    if alias_type:
                        read.add((alias_type, value.field))
    out = []
    for fact_type in ("patient", "pain"):
        spec = BASE_FACT_TYPES[fact_type]
        for name, field in spec.fields.items():
            if (fact_type, name) not in read and field.source and field.type in ("int", "float", "bool"):
                out.append(field.source if fact_type == "patient" else f"pain.{field.source}")
    return sorted(out)


def _templates_of(rule: Any) -> list[Any]:
    from ..ruleset.ir import _templates

    out: list[Any] = []
    for conclusion in rule.conclusions:
        out.extend(_templates(conclusion))
    return out


def assert_unread_field_changes_nothing(
    engine: Engine, patient: PatientCase, as_of: date, field: str, value: Any
) -> None:
    """Changing a field no rule reads changes no conclusion (the trace, which shows all values, aside)."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    doc = patient.model_dump(mode="python")
    section, name = field.split(".", 1)
    if section == "pain":
        if not doc["pain"]:
            return
        for item in doc["pain"]:
            item[name] = value
    else:
        doc.setdefault(section, {})
        doc[section] = {**(doc[section] or {}), name: value}
    try:
        changed = PatientCase.model_validate(doc)
    except ValueError:
        return
    a = engine.evaluate(patient, as_of=as_of, timestamp=False).model_dump(mode="json", exclude={"trace"})
    b = engine.evaluate(changed, as_of=as_of, timestamp=False).model_dump(mode="json", exclude={"trace"})
    assert a == b, f"changing {field} (read by no rule) to {value!r} changed the assessment"


def _request_key(item: Any) -> str:
    import json

    return json.dumps(item.model_dump(mode="json"), sort_keys=True)


def assert_every_request_has_a_verdict(engine: Engine, patient: PatientCase, assessment: Assessment) -> None:
    """Each requested procedure (requests of identical content count once) gets exactly one verdict, with what
    it stands on: a not-appropriate verdict has its reasons, a cannot-tell verdict its missing data (or the
    rules that cannot run, a threshold having no value under the profile), every safety judgement an active rule.
    A request without a region gets its verdict too."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    wanted = {_request_key(r) for r in patient.requested}
    assert len(assessment.requested) == len(wanted), (
        f"{len(wanted)} distinct requested procedures, {len(assessment.requested)} verdicts"
    )
    requested = sorted((r.intervention, r.region or "") for r in patient.requested)  # "": no region recorded
    got = sorted((v.intervention, v.target.region or "") for v in assessment.requested)
    assert sorted(set(requested)) == sorted(set(got)), f"requested {requested}, verdicts on {got}"
    from ..ruleset import ir

    active = {r.ref for r in engine.program.rules}
    proposable = {c.intervention for r in engine.ruleset.rules for c in r.conclusions if isinstance(c, ir.Recommend)}
    for v in assessment.requested:
        if v.verdict == "not_appropriate":
            # a reason names the criterion and rule; an intervention no rule proposes has none to name
            assert v.reasons or v.intervention not in proposable, (
                f"{v.intervention} ({v.target.region}): not appropriate without a reason"
            )
        if v.verdict == "cannot_tell":  # data to record, or the rules that cannot run for want of a threshold
            assert v.missing or v.reasons, f"{v.intervention} ({v.target.region}): cannot tell without a reason"
        if v.verdict == "appropriate":
            assert v.proposed and not any(j.blocking or j.kind == "unmet_criterion" for j in v.safety), (
                f"{v.intervention} ({v.target.region}): appropriate, yet not proposed or blocked"
            )
        for j in v.safety:
            assert j.basis.rule in active, f"{v.intervention}: judgement by unknown rule {j.basis.rule}"


def assert_red_flag_blocks_requested(engine: Engine, assessment: Assessment) -> None:
    """With a red flag, every requested elective procedure is not appropriate, with the red flag among its
    safety judgements."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    if not any(a.code.startswith("red_flag.") for a in assessment.alerts):
        return
    catalogue = engine.ruleset.interventions
    for v in assessment.requested:
        if not catalogue[v.intervention].elective:
            continue
        assert v.verdict == "not_appropriate", f"{v.intervention}: {v.verdict} despite a red flag"
        assert any(j.kind == "red_flag" for j in v.safety), f"{v.intervention}: no red-flag judgement"


_UNPROPOSED: dict[tuple[int, str, frozenset[str]], Engine] = {}


def _without_proposals(engine: Engine, codes: frozenset[str]) -> Engine:
    """An engine over the same ruleset and profile in which no rule proposes any of ``codes``."""
    from dataclasses import replace

    from ..ruleset import ir

    key = (id(engine.ruleset), engine.profile, codes)
    made = _UNPROPOSED.get(key)
    if made is None:
        rules = tuple(
            replace(
                r,
                conclusions=tuple(
                    c for c in r.conclusions if not (isinstance(c, ir.Recommend) and c.intervention in codes)
                ),
            )
            for r in engine.ruleset.rules
        )
        parameters = dict(engine.program.overrides)
        made = Engine(
            replace(engine.ruleset, rules=rules), profile=engine.profile, backend="python", parameters=parameters
        )
        if len(_UNPROPOSED) > 64:
            _UNPROPOSED.clear()
        _UNPROPOSED[key] = made
    return made


def assert_requested_safety_independent(engine: Engine, patient: PatientCase, as_of: date) -> Assessment:
    """The safety judgements on a requested procedure are the same whether or not a rule also proposes it:
    compared with an engine in which no rule proposes the requested interventions."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    assessment = engine.evaluate(patient, as_of=as_of, timestamp=False)
    if not assessment.requested:
        return assessment
    other = _without_proposals(engine, frozenset(v.intervention for v in assessment.requested))
    unproposed = other.evaluate(patient, as_of=as_of, timestamp=False)

    def judged(a: Assessment) -> dict[tuple[str | None, ...], list[str]]:
        return {
            (v.order, v.intervention, v.target.region, v.target.side, v.target.levels): sorted(
                j.model_dump_json() for j in v.safety
            )
            for v in a.requested
        }

    first, second = judged(assessment), judged(unproposed)
    for key, judgements in first.items():
        assert judgements == second.get(key), (
            f"safety judgements on requested {key} change when no rule proposes it:\n"
            f"{_diff(chr(10).join(judgements), chr(10).join(second.get(key, [])))}"
        )
    return assessment
