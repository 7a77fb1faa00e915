"""Conclusions are typed: one pydantic model per kind gives both the compiler's checks and the editor's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ipm_cds
from ipm_cds.ruleset.model import CONCLUSIONS
from ipm_cds.ruleset.schema import schema_for

from .test_ruleset_errors import col_of, edit, line_of, problems

ONB = "rules/other_interventions.yaml"


def test_the_rule_schema_offers_every_conclusion_kind_with_its_models_fields() -> None:
    schema = schema_for("rules")
    union = schema["$defs"]["RuleSpec"]["properties"]["then"]["items"]
    kinds = {}
    for branch in union["oneOf"]:
        ref = branch["$ref"].rsplit("/", 1)[-1]
        (kind,) = schema["$defs"][ref]["properties"]
        kinds[kind] = schema["$defs"][ref]["properties"][kind]["$ref"].rsplit("/", 1)[-1]
    assert set(kinds) == set(CONCLUSIONS)
    for kind, body in kinds.items():
        assert set(schema["$defs"][body]["properties"]) == set(CONCLUSIONS[kind].model_fields)
    exclude = schema["$defs"][kinds["exclude"]]["properties"]["severity"]
    assert exclude["enum"] == ["absolute", "relative", "unmet"] and "contraindication" in exclude["description"]


def test_a_misspelt_conclusion_field_is_named_with_the_right_one(copy: Path) -> None:
    edit(
        copy,
        ONB,
        "          target: {region: head, side: pain.laterality}\n          rationale:",
        "          target: {region: head, side: pain.laterality}\n          rationle:",
    )
    line = line_of(copy, ONB, "rationle:")
    assert f"ipm-core/{ONB}:{line}:11: unknown field 'rationle' (did you mean 'rationale'?)" in problems(copy)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "          severity: unmet\n          reason: >-\n            {history.sessions_in_window} occipital",
            "          severity: unmett\n          reason: >-\n            {history.sessions_in_window} occipital",
            "severity: Input should be 'absolute', 'relative' or 'unmet' (absolute/relative: a contraindication; "
            "unmet: a criterion the patient does not meet.)",
        ),
    ],
)
def test_a_wrong_value_is_explained_by_the_fields_description(copy: Path, old: str, new: str, message: str) -> None:
    edit(copy, ONB, old, new)
    line = line_of(copy, ONB, "severity: unmett")
    col = col_of(copy, ONB, "unmett")
    assert f"ipm-core/{ONB}:{line}:{col}: {message}" in problems(copy)


def test_with_a_ruleset_the_schema_completes_fields_codes_and_vocabularies(ruleset: ipm_cds.Ruleset) -> None:
    import jsonschema
    import yaml

    rules = schema_for("rules", ruleset)
    pattern = rules["$defs"]["RuleSpec"]["properties"]["when"]["additionalProperties"]
    pain = next(p for p in pattern["oneOf"][0]["oneOf"] if p["properties"]["type"]["const"] == "pain")
    assert set(pain["properties"]) == {"type", "any_of", *ruleset.fact_types["pain"].fields}
    region = pain["properties"]["region"]["anyOf"][0]
    assert region["enum"] == [c.code for c in ruleset.vocabularies["body_region"].codes]
    assert pain["properties"]["nrs"]["description"].startswith("NRS")
    recommend = rules["$defs"]["RecommendBody"]["properties"]["intervention"]
    i = recommend["enum"].index("facet_rfa")
    assert recommend["enumDescriptions"][i] == ruleset.interventions["facet_rfa"].name
    tests = schema_for("tests", ruleset)
    pain_model = tests["$defs"]["PainComplaint"]["properties"]["region"]
    assert "lumbar" in pain_model["enum"] and "Lumbar" in pain_model["enumDescriptions"]
    # every bundled rule and test file is valid under the completed schemas
    for folder, schema in (("rules", rules), ("tests", tests)):
        validator = jsonschema.Draft202012Validator(schema)
        for path in sorted((ruleset.path / folder).glob("*.yaml")):
            data = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
            errors = [e.message[:200] for e in validator.iter_errors(data)]
            assert not errors, (path.name, errors[:3])


def test_a_misspelt_pattern_field_is_flagged_by_the_completed_schema(ruleset: ipm_cds.Ruleset) -> None:
    import jsonschema

    schema = schema_for("rules", ruleset)
    rule = {
        "id": "x.y",
        "version": "1.0.0",
        "status": "active",
        "title": "t",
        "criteria": ["FACET-DX-01"],
        "evidence": {"strength": "consensus", "quality": "not_graded", "sources": ["cms_lcd_facet"]},
        "when": {"pain": {"type": "pain", "regoin": "lumbar"}},
        "then": [{"alert": {"code": "x.y", "severity": "info", "message": "m"}}],
    }
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors({"rules": [rule]}))
    assert errors
    rule["when"] = {"pain": {"type": "pain", "region": "lumbar"}}
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors({"rules": [rule]}))
