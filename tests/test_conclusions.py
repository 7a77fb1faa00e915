"""Conclusions are typed: one pydantic model per kind gives both the compiler's checks and the editor's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

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
