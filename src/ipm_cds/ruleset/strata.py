"""Derived fact types and strata: what each ``derive`` makes, and the order in which rules run.

A derived fact type's fields are inferred from every rule that derives it (their types must agree); a
rule runs in a stratum after every rule that makes a fact it reads, derived or aggregated, so that
negation (``unless``) and aggregates see every fact they could see. A cycle through a blocker is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import Problem
from ..model.facts.schema import BASE_FACT_TYPES, FactType, FieldSpec
from . import ir
from .model import RuleSpec
from .yamlsrc import Positions

RESERVED_ATTRIBUTES = frozenset({"type", "id", "sid", "_t", "key"})
"""Attribute names the engines use themselves: a derived fact may not set them."""
AGGREGATE_KEYS: dict[str, ir.AggregateFunction] = {"latest": "latest", "earliest": "earliest", "count_of": "count"}
"""The aggregate keys of the rule language and the function each names."""


def compatible(a: FieldSpec, b: FieldSpec) -> bool:
    numeric = {"int", "float"}
    return a.type == b.type or (a.type in numeric and b.type in numeric)


def _pattern_fields(pattern: Any, known: Mapping[str, Mapping[str, FieldSpec]]) -> Mapping[str, FieldSpec]:
    """The fields of the fact a (not yet compiled) pattern binds, for inferring derived fields."""
    if not isinstance(pattern, dict):
        return {}
    for key, function in AGGREGATE_KEYS.items():
        selection = pattern.get(key)
        if isinstance(selection, dict):
            source = known.get(str(selection.get("type")), {})
            if function != "count":
                return {**source, "rank": FieldSpec("int", "rank")}
            by = pattern.get("by")
            return {
                **{b: source[b] for b in (by if isinstance(by, list) else []) if isinstance(b, str) and b in source},
                "count": FieldSpec("int", "count"),
                "total": FieldSpec("float", "total"),
                "listed": FieldSpec("str", "listed"),
            }
    return known.get(str(pattern.get("type")), {})


def derived_fact_types(specs: list[tuple[RuleSpec, Positions]], problems: list[Problem]) -> dict[str, FactType]:
    """Infer the schema of every derived fact type from the ``derive`` conclusions that make it."""
    derived: dict[str, dict[str, FieldSpec]] = {}
    origins: dict[str, str] = {}
    pending: list[tuple[RuleSpec, Positions, int, dict[str, Any]]] = []
    for spec, pos in specs:
        for i, item in enumerate(spec.then):
            if isinstance(item, dict) and isinstance(item.get("derive"), dict):
                pending.append((spec, pos, i, item["derive"]))
    for spec, pos, i, body in pending:
        name = body.get("fact")
        if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_]*$", name):
            problems.append(Problem("derive needs fact: a lower-case name", pos.at(("then", i, "derive"))))
            continue
        if name in BASE_FACT_TYPES:
            problems.append(
                Problem(
                    f"cannot derive {name!r}: it is an input fact type",
                    pos.at(("then", i, "derive", "fact")),
                    hint="choose another name",
                )
            )
            continue
        derived.setdefault(name, {})
        origins.setdefault(name, spec.id)
    # Resolve field types; derived-from-derived needs a few rounds.
    for _ in range(len(pending) + 1):
        changed = False
        known = {**{n: ft.fields for n, ft in BASE_FACT_TYPES.items()}, **derived}
        for spec, _pos, _i, body in pending:
            name = body.get("fact")
            if name not in derived:
                continue
            for key, raw in (body.get("set") or {}).items():
                if key in derived[name]:
                    continue
                fs: FieldSpec | None = None
                if isinstance(raw, str) and "." in raw and raw.split(".", 1)[0] in spec.when:
                    a, f = raw.split(".", 1)
                    fs = _pattern_fields(spec.when[a], known).get(f)
                elif isinstance(raw, bool):
                    fs = FieldSpec("bool", f"derived by {spec.id}")
                elif isinstance(raw, int):
                    fs = FieldSpec("int", f"derived by {spec.id}")
                elif isinstance(raw, float):
                    fs = FieldSpec("float", f"derived by {spec.id}")
                elif isinstance(raw, str):
                    fs = FieldSpec("str", f"derived by {spec.id}")
                if fs is not None:
                    derived[name][key] = FieldSpec(fs.type, fs.description, fs.values, None, fs.unit)
                    changed = True
        if not changed:
            break
    for _spec, pos, i, body in pending:
        name = body.get("fact")
        for key in body.get("set") or {}:
            if key in RESERVED_ATTRIBUTES:
                problems.append(
                    Problem(
                        f"{key!r} is reserved and cannot be derived",
                        pos.at(("then", i, "derive", "set", key), key=True),
                    )
                )
            elif name in derived and key not in derived[name]:
                problems.append(
                    Problem(
                        f"cannot tell the type of derived field {key!r}",
                        pos.at(("then", i, "derive", "set", key)),
                        hint="derive from a bound alias.field or a plain value",
                    )
                )
    return {
        name: FactType(name, f"Derived by rules (first: {origins[name]}).", fields, tuple(sorted(fields)), "")
        for name, fields in derived.items()
    }


def stratify(rules: list[ir.Rule], problems: list[Problem]) -> list[ir.Rule]:
    """Order rules in strata so that a rule runs after every producer of the facts it negates.

    The stratum of a derived fact type is the highest stratum of the rules that make it, plus one when
    such a rule has ``unless`` clauses (its conclusions are only known once its blockers have run). A rule
    that reads an aggregate of a derived type runs in a later stratum than every producer of that type.
    ``candidate`` facts are made by every recommending rule.
    """
    produces: dict[str, list[ir.Rule]] = {}
    for rule in rules:
        for c in rule.conclusions:
            if isinstance(c, ir.Derive):
                produces.setdefault(c.fact, []).append(rule)
            elif isinstance(c, ir.Recommend):
                produces.setdefault("candidate", []).append(rule)
    stratum = {rule.id: 0 for rule in rules}
    limit = len(rules) + 1
    for _ in range(limit + 1):
        changed = False
        type_stratum = {
            t: max(stratum[r.id] + (1 if r.blockers else 0) for r in makers) for t, makers in produces.items()
        }
        for rule in rules:
            need = max(
                [type_stratum.get(p.fact_type, 0) for p in rule.patterns]
                + [
                    type_stratum.get(b.pattern.fact_type, 0) + 1
                    for b in rule.blockers
                    if b.pattern.fact_type in produces
                ]
                # an aggregate over a derived type is computed once every producer of that type has run
                + [type_stratum[a.source_type] + 1 for a in rule.aggregates if a.source_type in produces]
                + [0]
            )
            if need > stratum[rule.id]:
                if need > limit:
                    problems.append(
                        Problem(
                            f"rule {rule.id} depends on its own conclusions through an unless clause",
                            rule.location,
                            hint="negation must not be circular: split the rule",
                        )
                    )
                    return rules
                stratum[rule.id] = need
                changed = True
        if not changed:
            break
    from dataclasses import replace

    return sorted((replace(r, stratum=stratum[r.id]) for r in rules), key=lambda r: (r.stratum, r.id))
