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
    Basis,
    BoundFact,
    Citation,
    TraceEntry,
    trusted_basis,
    trusted_bound_fact,
    trusted_trace_entry,
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
