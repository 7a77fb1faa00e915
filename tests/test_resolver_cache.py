"""What the resolver builds once per program and what it builds per assessment: the trusted builders give the
models the validating constructors give, and nothing an assessment holds is shared with another assessment
(the per-program index holds texts and lookups only, never a list or dict that an assessment hands out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import ipm_cds
from ipm_cds.model.assessment import (
    Alert,
    Basis,
    BoundFact,
    Candidate,
    Citation,
    Exclusion,
    MissingData,
    Precaution,
    Referral,
    ScopeEntry,
    Target,
    TraceEntry,
    VerdictReason,
    trusted,
    trusted_alert,
    trusted_basis,
    trusted_bound_fact,
    trusted_copy,
    trusted_exclusion,
    trusted_missing_data,
    trusted_precaution,
    trusted_referral,
    trusted_scope_entry,
    trusted_trace_entry,
    trusted_verdict_reason,
)


def same(made: BaseModel, validated: BaseModel) -> None:
    assert made == validated
    assert made.model_dump_json() == validated.model_dump_json()
    assert repr(made) == repr(validated)
    assert made.model_fields_set == validated.model_fields_set
    assert made.model_dump_json(exclude_unset=True) == validated.model_dump_json(exclude_unset=True)


def test_the_trusted_builders_give_what_the_models_validate() -> None:
    citation = Citation(id="cms_lcd_facet", citation="CMS LCD L38803", url=None, year=2021)
    basis = trusted_basis("facet.rfa.initial@1.2.0", ["FACET-RFA-01"], [citation])
    same(basis, Basis(rule="facet.rfa.initial@1.2.0", criteria=["FACET-RFA-01"], sources=[citation]))
    bound = trusted_bound_fact("pain", "pain[region=lumbar]", {"region": "lumbar", "score": 7, "axial": True})
    same(
        bound,
        BoundFact(alias="pain", fact="pain[region=lumbar]", values={"region": "lumbar", "score": 7, "axial": True}),
    )
    entry = trusted_trace_entry("facet.rfa.initial@1.2.0", 2, "blocked", ["unless[0]"], [bound])
    same(
        entry,
        TraceEntry(
            rule="facet.rfa.initial@1.2.0", stratum=2, status="blocked", blocked_by=["unless[0]"], bindings=[bound]
        ),
    )


def test_the_builders_of_the_next_most_frequent_models_give_what_the_models_validate() -> None:
    basis = trusted_basis("spine.red_flag@1.0.0", ["RF-01"], [])
    same(
        trusted_alert("x.y", "warning", "Text", basis),
        Alert(code="x.y", severity="warning", message="Text", basis=basis),
    )
    same(
        trusted_referral("physical_therapy", "Physical therapy", "routine", "Why", basis, ["a@1.0.0"]),
        Referral(
            to="physical_therapy",
            name="Physical therapy",
            urgency="routine",
            reason="Why",
            basis=basis,
            rules=["a@1.0.0"],
        ),
    )
    same(
        trusted_exclusion("facet_rfa", "Facet RFA", "Why", "red_flag", True, basis),
        Exclusion(
            intervention="facet_rfa", name="Facet RFA", reason="Why", kind="red_flag", was_candidate=True, basis=basis
        ),
    )
    same(
        trusted_missing_data("pain.duration_weeks", "pain[region=lumbar]", ["a@1.0.0"], ["C-1"], True),
        MissingData(
            field="pain.duration_weeks",
            item="pain[region=lumbar]",
            needed_by=["a@1.0.0"],
            criteria=["C-1"],
            safety=True,
        ),
    )
    reason = trusted_verdict_reason("Why", basis)
    same(reason, VerdictReason(text="Why", basis=basis))
    for intervention in (None, "facet_rfa"):
        same(
            trusted_precaution(intervention, "caution", "Heed", basis),
            Precaution(intervention=intervention, kind="caution", text="Heed", basis=basis),
        )
    common: dict[str, Any] = {"family": "facet", "intervention": "facet_rfa", "name": "Facet RFA", "region": "lumbar"}
    same(
        trusted_scope_entry("facet", "facet_rfa", "Facet RFA", "lumbar", "candidate", basis),
        ScopeEntry(**common, status="candidate", in_scope_by=basis),
    )
    same(
        trusted_scope_entry("facet", "facet_rfa", "Facet RFA", "lumbar", "excluded", basis, reasons=[reason]),
        ScopeEntry(**common, status="excluded", in_scope_by=basis, reasons=[reason]),
    )
    same(
        trusted_scope_entry("facet", "facet_rfa", "Facet RFA", "lumbar", "not_decidable", basis, missing=["pain.x"]),
        ScopeEntry(**common, status="not_decidable", in_scope_by=basis, missing=["pain.x"]),
    )
    # an entry's default lists are its own
    first = trusted_scope_entry("facet", "facet_rfa", "Facet RFA", None, "candidate", basis)
    second = trusted_scope_entry("facet", "facet_rfa", "Facet RFA", None, "candidate", basis)
    assert first.reasons is not second.reasons and first.missing is not second.missing


def test_trusted_copy_gives_what_model_copy_gives() -> None:
    basis = trusted_basis("facet.rfa.initial@1.2.0", ["FACET-RFA-01"], [])
    candidate = trusted(
        Candidate,
        intervention="facet_rfa",
        name="Facet RFA",
        kind="therapeutic",
        cpt=["64635"],
        evidence_status="standard",
        target=trusted(Target, region="lumbar"),
        image_guidance=["fluoroscopy"],
        bleeding_risk="intermediate",
        rationale="Why",
        evidence="Strong",
        basis=basis,
    )
    update: dict[str, Any] = {"precautions": [], "unresolved_checks": ["check"]}
    made, copied = trusted_copy(candidate, dict(update)), candidate.model_copy(update=dict(update))
    same(made, copied)
    assert made.__dict__ is not candidate.__dict__ and made.model_fields_set is not candidate.model_fields_set
    assert candidate.unresolved_checks == [] and "unresolved_checks" not in candidate.model_fields_set
    precaution = trusted_precaution(None, "relative_contraindication", "Weigh it", basis)
    same(
        trusted_copy(precaution, {"intervention": "facet_rfa"}),
        precaution.model_copy(update={"intervention": "facet_rfa"}),
    )


def mutable_parts(model: Any) -> Iterator[Any]:
    """Every list, dict and model an output model holds, itself included, recursively."""
    if isinstance(model, BaseModel):
        yield model
        for name in type(model).model_fields:
            yield from mutable_parts(getattr(model, name))
    elif isinstance(model, list):
        yield model
        for item in model:
            yield from mutable_parts(item)
    elif isinstance(model, dict):
        yield model
        for item in model.values():
            yield from mutable_parts(item)


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_two_assessments_share_no_list_dict_or_model(backend: str) -> None:
    """Texts and citations (immutable) may be shared; a Basis, a list of criteria, the provenance's parameters
    must not be, or a caller changing one assessment would change the next."""
    ruleset = ipm_cds.load_ruleset()
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    checked = 0
    for loaded in ruleset.tests:
        case = loaded.case
        if case.profile or case.parameters:
            continue
        try:
            first = engine.evaluate(case.patient, as_of=case.as_of, timestamp=False)
        except ipm_cds.IpmCdsError:
            continue  # (a case about refused input)
        second = engine.evaluate(case.patient, as_of=case.as_of, timestamp=False)
        assert first == second
        held = {id(x) for x in mutable_parts(first) if not isinstance(x, Citation)}
        shared = [x for x in mutable_parts(second) if id(x) in held and not isinstance(x, Citation)]
        assert shared == [], f"{case.name}: shared between assessments: {shared[:3]}"
        assert first.provenance.parameters is not engine.program.parameters
        checked += 1
        if checked == 40:
            break
    assert checked == 40


def test_the_per_program_memos_give_what_working_it_out_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bound fact's values sorted by name and a missing field's rules and criteria, read from the per-program
    memos (filled by the first assessments), are what an engine that remembers none of them works out."""
    from ipm_cds.engine import resolve as resolve_module

    ruleset = ipm_cds.load_ruleset()
    cases = [t.case for t in ruleset.tests if not t.case.profile and not t.case.parameters][:60]

    def outputs(engine: ipm_cds.Engine) -> list[str]:
        out = []
        for case in cases:
            try:
                out.append(engine.evaluate(case.patient, as_of=case.as_of, timestamp=False).to_json())
            except ipm_cds.IpmCdsError:
                out.append("refused")
        return out

    warm = ipm_cds.Engine(ruleset, backend="python")
    outputs(warm)  # (fills the memos)
    remembered = outputs(warm)
    monkeypatch.setattr(resolve_module, "_ORDERS_MAX", 0)
    monkeypatch.setattr(resolve_module, "_GROUPS_MAX", 0)
    cold = ipm_cds.Engine(ruleset, backend="python")
    assert outputs(cold) == remembered
    index = resolve_module._index(cold.program)
    assert not index.value_orders and not index.waiting_groups
    assert resolve_module._index(warm.program).waiting_groups  # (the cases have rules waiting for one field)
    for names, by_name in resolve_module._index(warm.program).value_orders.items():
        assert (by_name or names) == tuple(sorted(names))
