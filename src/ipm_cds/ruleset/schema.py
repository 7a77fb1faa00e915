"""JSON Schemas for rule-file authors' editors, generated from the pydantic models.

The models type a rule's ``when``/``unless``/``then`` loosely (they are checked by the compiler against
the fact schema); here the schema is tightened with the condition language itself: a pattern needs a
``type`` naming a fact type, a condition is a value or a mapping of known operators, a conclusion is one
of the known kinds with its fields. An editor then flags a misspelt operator or conclusion as you type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from ..facts.schema import BASE_FACT_TYPES
from ..patient import PatientCase
from .compile import OPS
from .model import (
    Conclusion,
    CriterionCatalogue,
    InterventionCatalogue,
    Manifest,
    MedicationCatalogue,
    MessageCatalogue,
    ParameterCatalogue,
    ReferralCatalogue,
    RuleFile,
    SourceCatalogue,
    TestFile,
    VocabularyCatalogue,
)

SCHEMA_ID_BASE = "https://ipm-cds.invalid/schema/"
FILES: dict[str, type[BaseModel]] = {
    "ruleset": Manifest,
    "rules": RuleFile,
    "tests": TestFile,
    "interventions": InterventionCatalogue,
    "referrals": ReferralCatalogue,
    "sources": SourceCatalogue,
    "parameters": ParameterCatalogue,
    "medications": MedicationCatalogue,
    "criteria": CriterionCatalogue,
    "messages": MessageCatalogue,
    "vocabularies": VocabularyCatalogue,
}

_SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean"]}
_OPERAND: dict[str, Any] = {
    "oneOf": [
        _SCALAR,
        {
            "type": "object",
            "properties": {"param": {"type": "string"}},
            "required": ["param"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"ref": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$"}},
            "required": ["ref"],
            "additionalProperties": False,
        },
    ]
}
_CONDITION: dict[str, Any] = {
    "oneOf": [
        _SCALAR,
        {
            "type": "object",
            "minProperties": 1,
            "properties": {
                **{op: _OPERAND for op in OPS if op not in ("in", "not_in")},
                "in": {"type": "array", "items": _SCALAR, "minItems": 1},
                "not_in": {"type": "array", "items": _SCALAR, "minItems": 1},
                "same_as": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$"},
                "present": {"type": "boolean"},
                "or_absent": {"const": True},
            },
            "additionalProperties": False,
        },
    ]
}
_BRANCH: dict[str, Any] = {"type": "object", "minProperties": 1, "additionalProperties": _CONDITION}


def _pattern(fact_types: list[str]) -> dict[str, Any]:
    plain: dict[str, Any] = {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "description": "The fact type this pattern matches.", "examples": fact_types},
            "any_of": {"type": "array", "items": _BRANCH, "minItems": 2},
        },
        "additionalProperties": _CONDITION,
    }
    field = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}
    options: dict[str, Any] = {
        "by": {"type": "array", "items": field, "minItems": 1, "description": "One ranking or count per group."},
        "order": {**field, "description": "The integer day count that ranks facts (default days_since)."},
    }
    ranked_properties: dict[str, Any] = {**options, "any_of": plain["properties"]["any_of"]}
    aggregates = [
        {
            "type": "object",
            "additionalProperties": _CONDITION,
            "required": [key],
            "not": {"required": ["type"]},
            "properties": {
                **ranked_properties,
                key: {**plain, "description": description},
                **(
                    {
                        "distinct": {**field, "description": "Count distinct values of this field."},
                        "sum": {**field, "description": "total: the sum of this numeric field."},
                        "list": {**field, "description": "listed: the distinct values of this field."},
                    }
                    if key == "count_of"
                    else {}
                ),
            },
        }
        for key, description in (
            ("latest", "Rank the facts this selection matches, 1 = the most recent (field rank)."),
            ("earliest", "Rank the facts this selection matches, 1 = the oldest (field rank)."),
            ("count_of", "Count the facts this selection matches (fields count, total, listed, ...)."),
        )
    ]
    return {
        "oneOf": [
            {**plain, "not": {"anyOf": [{"required": [k]} for k in ("latest", "earliest", "count_of")]}},
            *aggregates,
        ]
    }


def _conclusions(defs: dict[str, Any]) -> dict[str, Any]:
    """The conclusion union's schema, from the models the compiler validates with (model.CONCLUSIONS)."""
    schema = TypeAdapter(Conclusion).json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def schema_for(name: str) -> dict[str, Any]:
    model = FILES[name]
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{SCHEMA_ID_BASE}{name}.schema.json"
    if name == "rules":
        rule = schema["$defs"]["RuleSpec"]["properties"]
        pattern = _pattern(sorted(BASE_FACT_TYPES))
        rule["when"] = {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": pattern,
            "description": rule["when"].get("description", ""),
        }
        rule["unless"] = {
            "type": "array",
            "items": {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": pattern},
        }
        rule["then"] = {"type": "array", "minItems": 1, "items": _conclusions(schema["$defs"])}
    if name == "tests":
        patient = PatientCase.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
        schema["$defs"].update(patient.pop("$defs", {}))
        schema["$defs"]["PatientCase"] = patient
        schema["$defs"]["TestCase"]["properties"]["patient"] = {"$ref": "#/$defs/PatientCase"}
    return schema


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(schema_for(name), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
