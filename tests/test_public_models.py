"""The public models: documented class by class and field by field, hashable when frozen (equal models
hash equal), and the library's logging left to the application (a NullHandler, nothing else)."""

from __future__ import annotations

import inspect
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

import ipm_cds
from ipm_cds.model.assessment import BoundFact, Numbers, Provenance, Scalars
from ipm_cds.patientfile import read_patient_document

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "patients"
AS_OF = date(2025, 6, 2)


def public_models() -> list[type[BaseModel]]:
    """The models of the public API, and every model an assessment or explanation holds (its candidates,
    alerts, ...; they are importable from ipm_cds.model)."""
    seen: set[type[BaseModel]] = {ipm_cds.PatientCase}  # the input model's own fields (its parts: patient-model.md)
    for name in ipm_cds.__all__:
        obj = getattr(ipm_cds, name)
        if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj is not ipm_cds.PatientCase:
            reachable(obj, seen)
    return sorted(seen, key=lambda m: m.__name__)


def reachable(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    """``model`` and every model its fields hold (lists, optionals), into ``seen``."""
    if model in seen:
        return
    seen.add(model)
    for info in model.model_fields.values():
        stack: list[Any] = [info.annotation]
        while stack:
            annotation = stack.pop()
            if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
                reachable(annotation, seen)
            stack.extend(getattr(annotation, "__args__", ()))


def test_the_public_models_are_the_expected_ones() -> None:
    names = {m.__name__ for m in public_models()}
    assert {"Assessment", "Candidate", "Alert", "Referral", "Explanation", "PatientCase", "WhyNot"} <= names


@pytest.mark.parametrize("model", public_models(), ids=lambda m: m.__name__)
def test_every_public_model_has_a_docstring_and_every_field_a_description(model: type[BaseModel]) -> None:
    assert model.__doc__ and model.__doc__ != BaseModel.__doc__ and "__doc__" in vars(model), model.__name__
    undocumented = [name for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not undocumented, f"{model.__name__}: fields without a description: {undocumented}"
    schema = model.model_json_schema(mode="serialization")
    if "$ref" in schema:  # a recursive model: its schema is a reference to its own definition
        schema = schema["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    assert schema.get("description"), "the docstring reaches the JSON Schema"


def test_every_model_an_assessment_or_explanation_holds_is_documented() -> None:
    seen: set[type[BaseModel]] = set()
    reachable(ipm_cds.Explanation, seen)
    assert ipm_cds.Assessment in seen and len(seen) > 15
    for model in seen:
        assert "__doc__" in vars(model) and model.__doc__, model.__name__
        missing = [n for n, info in model.model_fields.items() if not info.description]
        assert not missing, f"{model.__name__}: {missing}"


@pytest.fixture(scope="module")
def assessments(ipm_engine: ipm_cds.Engine) -> dict[str, ipm_cds.Assessment]:
    return {
        name: ipm_engine.evaluate(read_patient_document(EXAMPLES / f"{name}.yaml"), as_of=AS_OF)
        for name in ("cauda_equina", "facet_rfa_candidate")
    }


def test_an_assessment_hashes_and_equal_assessments_hash_equal(assessments: dict[str, ipm_cds.Assessment]) -> None:
    a = assessments["cauda_equina"]
    copy = ipm_cds.Assessment.model_validate_json(a.to_json())  # equal, not the same object
    assert copy == a and copy is not a
    assert hash(copy) == hash(a)
    other = assessments["facet_rfa_candidate"]
    assert other != a and hash(other) != hash(a)
    assert len({a, copy, other}) == 2  # usable in sets and as dict keys
    later = a.model_copy(update={"as_of": date(2025, 6, 3)})
    assert later != a and hash(later) != hash(a)


def test_explanations_and_patients_hash_too(ipm_engine: ipm_cds.Engine) -> None:
    document = read_patient_document(EXAMPLES / "facet_rfa_candidate.yaml")
    first, second = ipm_cds.parse_patient(document), ipm_cds.parse_patient(document)
    assert first == second and hash(first) == hash(second)
    explanation = ipm_engine.explain(first, as_of=AS_OF)
    again = ipm_cds.Explanation.model_validate_json(explanation.model_dump_json())
    assert again == explanation and hash(again) == hash(explanation)


def test_the_hash_agrees_with_equality_on_numbers_and_dict_order() -> None:
    base: dict[str, Any] = {
        "ruleset_id": "r",
        "ruleset_version": "1.0.0",
        "ruleset_sha256": "0" * 64,
        "library_version": "0",
        "profile": "p",
        "parameter_overrides": {},
        "backend": "python",
        "as_of": AS_OF,
        "rules_active": 1,
        "rules_inactive": {},
    }
    one = Provenance(**base, parameters={"a": 1, "b": 2.5})
    same = Provenance(**base, parameters={"b": 2.5, "a": 1.0})  # another order, 1.0 == 1
    assert one == same and hash(one) == hash(same)
    different = Provenance(**base, parameters={"a": 2, "b": 2.5})
    assert one != different and hash(one) != hash(different)


def test_the_library_configures_no_log_handler() -> None:
    package = logging.getLogger("ipm_cds")
    assert [type(h) for h in package.handlers] == [logging.NullHandler]
    from ipm_cds.ruleset import loader

    assert loader.logger.name == "ipm_cds.ruleset.loader"  # one logger per module, named after it


def test_loading_a_ruleset_logs_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ipm_cds")
    ruleset = ipm_cds.load_ruleset(with_tests=False)
    (record,) = [r for r in caplog.records if r.name == "ipm_cds.ruleset.loader"]
    assert record.levelno == logging.DEBUG and ruleset.sha256 in record.getMessage()


# -- mappings of scalars: written from each value's own type ---------------------------------------------------


@pytest.mark.parametrize(
    ("model", "field", "written", "union"),
    [
        (BoundFact, "values", Scalars, dict[str, str | int | float | bool]),
        (Provenance, "parameters", Numbers, dict[str, int | float]),
    ],
)
def test_scalar_mappings_are_written_and_described_as_their_type_would_be(
    model: type[BaseModel], field: str, written: Any, union: Any
) -> None:
    # Written with pydantic's "any" serializer, not its union dispatch; the text, the JSON Schema (both modes)
    # and validation stay the type's own, and a dump is a copy.
    plain = TypeAdapter(union)
    values = {
        "s": "é 0.5",
        "yes": True,
        "no": False,
        "i": 3,
        "big": 2**70,
        "x": 1.5,
        "tiny": 1e-7,
        "zero": 0.0,
        "n": -2,
    }
    if written is Numbers:
        values = {k: v for k, v in values.items() if type(v) in (int, float)}
    info = model.model_fields[field]
    assert (info.annotation, info.metadata) == (union, list(written.__metadata__))  # the model's field is written so
    adapter = TypeAdapter(written)
    assert adapter.dump_json(values) == plain.dump_json(values)
    dumped = adapter.dump_python(values, mode="json")
    assert dumped == plain.dump_python(values, mode="json") and dumped is not values  # a copy: the model's stays
    assert adapter.dump_python(values) == values and adapter.dump_python(values) is not values
    for mode in ("validation", "serialization"):
        own = model.model_json_schema(mode=mode)["properties"][field]
        assert {k: v for k, v in own.items() if k not in ("title", "description")} == plain.json_schema(mode=mode)
    with pytest.raises(ValidationError):
        adapter.validate_python({"a": [1]})
    bound = BoundFact(alias="a", fact="f", values={"x": 1.5, "yes": True})
    assert bound.model_dump_json() == '{"alias":"a","fact":"f","values":{"x":1.5,"yes":true}}'
