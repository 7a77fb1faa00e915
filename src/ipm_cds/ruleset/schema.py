"""JSON Schemas for rule-file authors' editors, generated from the pydantic models.

The models type a rule's ``when``/``unless``/``then`` loosely (they are checked by the compiler against
the fact schema); here the schema is tightened with the condition language itself: a pattern needs a
``type`` naming a fact type, a condition is a value or a mapping of known operators, a conclusion is one
of the known kinds with its fields. An editor then flags a misspelt operator or conclusion as you type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter

from ..model.facts.schema import BASE_FACT_TYPES, FieldSpec
from ..model.patient import PatientCase
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

if TYPE_CHECKING:
    from .loader import Ruleset

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


def schema_for(name: str, ruleset: Ruleset | None = None) -> dict[str, Any]:
    """The JSON Schema of one kind of ruleset file. With a ruleset, also its completions: in rule files,
    each fact type's fields inside patterns (with their descriptions and vocabulary values) and the
    catalogue codes conclusions name; in test files, the vocabularies' codes in the patient."""
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
    if ruleset is not None:
        _complete(schema, name, ruleset)
    return schema


def write_schemas(out: Path, ruleset: Ruleset | None = None) -> list[Path]:
    """Write every schema into ``out``, with the completions of ``ruleset`` (see :func:`schema_for`)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        path = out / f"{name}.schema.json"
        text = json.dumps(schema_for(name, ruleset), indent=2, sort_keys=True)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written


# -- completions from a loaded ruleset ------------------------------------------------------------------


def _codes(options: Mapping[str, str]) -> dict[str, Any]:
    """A closed set of codes with a hover text each (``enumDescriptions``, as editors read it)."""
    return {"enum": list(options), "enumDescriptions": list(options.values())}


def _field_condition(spec: FieldSpec) -> dict[str, Any]:
    text = spec.description + (f" ({spec.unit})" if spec.unit else "")
    if spec.values:
        return {"description": text, "anyOf": [_codes(dict.fromkeys(spec.values, text)), _CONDITION]}
    return {"description": text, **_CONDITION}


def _typed_patterns(ruleset: Ruleset) -> list[dict[str, Any]]:
    """One pattern schema per fact type a rule can match: its fields, nothing else, each described."""
    out = []
    for name, fact_type in sorted(ruleset.fact_types.items()):
        if "@" in name:  # an aggregate's own type: written as latest/earliest/count_of, never by name
            continue
        fields = {f: _field_condition(spec) for f, spec in fact_type.fields.items()}
        branch = {"type": "object", "minProperties": 1, "properties": fields, "additionalProperties": False}
        out.append(
            {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"const": name, "description": fact_type.description},
                    "any_of": {"type": "array", "items": branch, "minItems": 2},
                    **fields,
                },
                "additionalProperties": False,
            }
        )
    return out


def _complete(schema: dict[str, Any], name: str, ruleset: Ruleset) -> None:
    defs = schema.get("$defs", {})
    if name == "rules":
        pattern = schema["$defs"]["RuleSpec"]["properties"]["when"]["additionalProperties"]
        pattern["oneOf"][0] = {"oneOf": _typed_patterns(ruleset)}
        interventions = _codes({c: i.name for c, i in ruleset.interventions.items()})
        referrals = _codes({c: r.name for c, r in ruleset.referrals.items()})
        recommend = defs["RecommendBody"]["properties"]
        recommend["intervention"] = {**recommend["intervention"], **interventions}
        # exclusions and precautions may name the intervention of a bound candidate: candidate.intervention
        either = {"anyOf": [interventions, {"type": "string", "pattern": r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$"}]}
        for body in ("ExcludeBody", "PrecautionBody"):
            props = defs[body]["properties"]
            props["intervention"] = {"description": "An intervention code, or alias.intervention.", **either}
            props["interventions"] = {"type": "array", "items": either, "minItems": 1}
        defs["ReferBody"]["properties"]["to"] = {**defs["ReferBody"]["properties"]["to"], **referrals}
    for model in defs.values():  # vocabulary codes wherever the patient model marks one (test files)
        for prop in model.get("properties", {}).values():
            for target in (prop, *prop.get("anyOf", ()), prop.get("items", {})):
                vocabulary = ruleset.vocabularies.get(target.get("x-vocabulary", ""))
                if vocabulary is not None:
                    target.update(_codes({c.code: c.label for c in vocabulary.codes}))
