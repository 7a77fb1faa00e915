"""Compile rule specs into the typed IR, checking everything the shape check cannot see.

Every field path is checked against the fact schema (with a did-you-mean), every comparison against
the field's type and vocabulary, every reference (alias, intervention, referral, parameter, criterion,
source, profile) against what exists. Problems carry the file:line:col of the offending value and are
all collected, not only the first. Rules are then stratified so that negation never depends on order
(:mod:`ipm_cds.ruleset.strata`); conclusions are checked in :mod:`ipm_cds.ruleset.conclusions`.

Why this module is about 700 lines: it is one class, the compiler of one rule's patterns, aggregates and
operands, whose methods share the rule's aliases, positions and problem list; split further, that state
would be passed through every call.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, cast

from ..errors import Problem
from ..model.facts.schema import BASE_FACT_TYPES, FactType, FieldSpec
from . import ir
from .conclusions import compile_conclusion
from .model import (
    Parameter,
    RuleSpec,
)
from .problems import did_you_mean
from .strata import AGGREGATE_KEYS, compatible, derived_fact_types, stratify
from .yamlsrc import Path_, Positions

OPS: dict[str, ir.Op] = {
    "eq": "eq",
    "neq": "neq",
    "lt": "lt",
    "lte": "lte",
    "gt": "gt",
    "gte": "gte",
    "in": "in",
    "not_in": "not_in",
}
# Comparison symbols an author may write for an operator, and the operator they mean.
SYMBOL_OPS: dict[str, str] = {
    ">=": "gte",
    "=>": "gte",
    "<=": "lte",
    "=<": "lte",
    ">": "gt",
    "<": "lt",
    "==": "eq",
    "=": "eq",
    "!=": "neq",
    "<>": "neq",
}
_SYMBOL_VALUE = re.compile(r"^\s*(>=|=>|<=|=<|==|!=|<>|>|<|=)\s*(\S.*?)\s*$")
AGGREGATE_OPTIONS = ("by", "order", "distinct", "sum", "list")
DEFAULT_ORDER = "days_since"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass
class CompileContext:
    interventions: Mapping[str, Any]
    referrals: Mapping[str, Any]
    parameters: Mapping[str, Parameter]
    criteria: Mapping[str, Any]
    sources: Mapping[str, Any]
    profiles: Mapping[str, Any]
    fact_types: dict[str, FactType] = field(default_factory=lambda: dict(BASE_FACT_TYPES))


class _RuleCompiler:
    def __init__(self, spec: RuleSpec, pos: Positions, ctx: CompileContext, problems: list[Problem]) -> None:
        self.spec = spec
        self.pos = pos
        self.ctx = ctx
        self.problems = problems
        self.aliases: dict[str, str] = {}  # alias -> fact type
        self.aggregates: dict[str, ir.Aggregate] = {}  # fact type made -> aggregate, in the order first read
        self.in_selection = False
        self.unresolved: set[str] = set()  # aliases whose pattern failed before its fact type was known

    def error(self, path: Path_, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.append(Problem(message, self.pos.at(path, key=key), hint=hint))

    # -- patterns ----------------------------------------------------------------------------------

    def pattern(self, alias: str, spec: Any, path: Path_, bound: Mapping[str, str]) -> ir.Pattern | None:
        if not isinstance(spec, dict):
            self.error(path, f"pattern {alias!r} must be a mapping with a 'type'", "e.g. {type: pain, region: lumbar}")
            return None
        functions = [k for k in AGGREGATE_KEYS if k in spec]
        if functions:
            return self.aggregate_pattern(alias, spec, path, bound, functions)
        type_name = spec.get("type")
        if not isinstance(type_name, str):
            self.error(path, f"pattern {alias!r} has no 'type'", "name the fact type, e.g. type: pain")
            return None
        fact_type = self.ctx.fact_types.get(type_name)
        if fact_type is None:
            self.error(
                (*path, "type"), f"unknown fact type {type_name!r}", did_you_mean(type_name, self.ctx.fact_types)
            )
            return None
        scope = {**bound, alias: type_name}
        tests: list[ir.Node] = []
        for name, cond in spec.items():
            if name == "type":
                continue
            if name == "any_of":
                node = self.any_of(fact_type, cond, (*path, name), scope, alias)
                if node:
                    tests.append(node)
                continue
            if isinstance(cond, dict) and "or_absent" in cond:
                flag = cond["or_absent"]
                rest = {k: v for k, v in cond.items() if k != "or_absent"}
                if flag is not True or not rest:
                    self.error(
                        (*path, name, "or_absent"),
                        "or_absent: true goes beside another condition",
                        "e.g. {neq: false, or_absent: true}",
                    )
                    continue
                inner = self.field_tests(fact_type, name, rest, (*path, name), scope, alias)
                if any(isinstance(t.operand, ir.Ref) for t in inner):
                    self.error(
                        (*path, name, "or_absent"),
                        "or_absent cannot go beside a join (same_as, ref)",
                        "split the rule: one with the join, one with present: false",
                    )
                    continue
                if inner:
                    loc = self.pos.at((*path, name))
                    tests.append(ir.AnyOf((tuple(inner), (ir.Test(name, "absent", None, loc),)), loc))
                continue
            tests.extend(self.field_tests(fact_type, name, cond, (*path, name), scope, alias))
        return ir.Pattern(alias, type_name, tuple(tests), self.pos.at(path))

    def aggregate_pattern(
        self, alias: str, spec: dict[str, Any], path: Path_, bound: Mapping[str, str], functions: list[str]
    ) -> ir.Pattern | None:
        """``{latest|earliest|count_of: SELECTION, [by, order, distinct, sum, list], field tests...}``: the alias
        binds a fact the aggregate makes (see :class:`ir.Aggregate`); the field tests apply to that fact."""
        key = functions[0]
        if len(functions) > 1:
            self.error((*path, functions[1]), f"one aggregate per pattern ({', '.join(functions)} given)", key=True)
            return None
        if "type" in spec:
            self.error(
                (*path, "type"),
                f"an aggregate pattern takes its fact type from its selection: move 'type' into {key}: {{...}}",
                key=True,
            )
            return None
        function = AGGREGATE_KEYS[key]
        selection_spec = spec[key]
        if not isinstance(selection_spec, dict):
            self.error((*path, key), f"{key} takes a pattern, e.g. {{type: lab, test: inr}}")
            return None
        self.in_selection = True
        try:
            selection = self.pattern("_", selection_spec, (*path, key), {})
        finally:
            self.in_selection = False
        if selection is None:
            return None
        if "@" in selection.fact_type:
            self.error((*path, key, "type"), "an aggregate cannot select the facts of another aggregate")
            return None
        source = self.ctx.fact_types[selection.fact_type]
        options = {name: spec[name] for name in AGGREGATE_OPTIONS if name in spec}
        by: list[str] = []
        raw_by = options.get("by", [])
        if not isinstance(raw_by, list) or not all(isinstance(b, str) for b in raw_by):
            self.error((*path, "by"), "by takes a list of field names, e.g. by: [region]")
            return None
        for i, name in enumerate(raw_by):
            if self.field_spec(source, name, (*path, "by", i)) is not None:
                by.append(name)
        order = self.option_field(source, options, "order", path, "int") if "order" in options else None
        if order is None and "order" not in options and DEFAULT_ORDER in source.fields:
            order = DEFAULT_ORDER
        distinct = total = listed = None
        if function == "count":
            distinct = self.option_field(source, options, "distinct", path, None) if "distinct" in options else None
            total = self.option_field(source, options, "sum", path, "number") if "sum" in options else None
            listed = self.option_field(source, options, "list", path, None) if "list" in options else None
        else:
            for name in ("distinct", "sum", "list"):
                if name in options:
                    self.error((*path, name), f"{name} goes with count_of, not {key}", key=True)
            if order is None:
                if "order" not in options:
                    self.error(
                        (*path, key),
                        f"{key} ranks facts by a day count, and fact type {source.name!r} has no {DEFAULT_ORDER}",
                        "name an integer day-count field with order: FIELD",
                    )
                return None
        digest = hashlib.sha256(
            json.dumps(
                [function, selection_spec, by, order, distinct, total, listed], sort_keys=True, default=str
            ).encode()
        ).hexdigest()[:8]
        made_type = f"{source.name}@{function}.{digest}"
        if made_type not in self.ctx.fact_types:
            self.ctx.fact_types[made_type] = aggregate_fact_type(
                made_type, function, source, by, order, distinct, total, listed
            )
        aggregate = ir.Aggregate(
            made_type, function, selection, tuple(by), order, distinct, total, listed, self.pos.at(path)
        )
        self.aggregates.setdefault(made_type, aggregate)
        rest = {k: v for k, v in spec.items() if k != key and k not in AGGREGATE_OPTIONS}
        pattern = self.pattern(alias, {"type": made_type, **rest}, path, bound)
        if pattern is None:
            return None
        if function == "count":  # a count its group's undecided facts would make has none: it waits, never matches
            present = ir.Test("count", "present", None, self.pos.at((*path, key)))
            return ir.Pattern(alias, made_type, (present, *pattern.tests), pattern.location)
        if "rank" in rest:
            return pattern
        # latest / earliest without a rank: the most recent (oldest) one
        return ir.Pattern(
            alias, made_type, (ir.Test("rank", "eq", 1, self.pos.at((*path, key))), *pattern.tests), pattern.location
        )

    def option_field(
        self, source: FactType, options: Mapping[str, Any], name: str, path: Path_, kind: str | None
    ) -> str | None:
        value = options[name]
        if not isinstance(value, str):
            self.error((*path, name), f"{name} takes one field name of {source.name}")
            return None
        spec = self.field_spec(source, value, (*path, name))
        if spec is None:
            return None
        if (kind == "int" and spec.type != "int") or (kind == "number" and spec.type not in ("int", "float")):
            self.error(
                (*path, name),
                f"{name} needs {'an integer' if kind == 'int' else 'a numeric'} field; "
                f"{source.name}.{value} is {_article(spec.type)}",
            )
            return None
        return value

    def any_of(
        self, fact_type: FactType, cond: Any, path: Path_, scope: Mapping[str, str], alias: str
    ) -> ir.AnyOf | None:
        if not isinstance(cond, list) or len(cond) < 2:
            self.error(path, "any_of needs a list of at least two condition mappings")
            return None
        branches: list[tuple[ir.Test, ...]] = []
        for i, branch in enumerate(cond):
            if not isinstance(branch, dict) or not branch:
                self.error((*path, i), "each any_of branch is a mapping of field conditions")
                continue
            tests: list[ir.Test] = []
            for name, sub in branch.items():
                tests.extend(self.field_tests(fact_type, name, sub, (*path, i, name), scope, alias))
            for test in tests:
                if isinstance(test.operand, ir.Ref):
                    self.problems.append(
                        Problem(
                            "joins (same_as, ref) are not allowed inside any_of",
                            test.location,
                            hint="move the join out of any_of, or split the rule",
                        )
                    )
            branches.append(tuple(tests))
        return ir.AnyOf(tuple(branches), self.pos.at(path))

    def field_spec(self, fact_type: FactType, name: str, path: Path_) -> FieldSpec | None:
        spec = fact_type.fields.get(name)
        if spec is None:
            hint = (
                did_you_mean(name, fact_type.fields)
                or f"fields of {fact_type.name}: {', '.join(sorted(fact_type.fields))}"
            )
            self.error(path, f"fact type {fact_type.name!r} has no field {name!r}", hint, key=True)
        return spec

    def field_tests(
        self, fact_type: FactType, name: str, cond: Any, path: Path_, scope: Mapping[str, str], alias: str
    ) -> list[ir.Test]:
        spec = self.field_spec(fact_type, name, path)
        if spec is None:
            return []
        loc = self.pos.at(path)
        if not isinstance(cond, dict):
            if isinstance(cond, list):
                self.error(path, "a list is not a condition", "write {in: [...]} for one of several values")
                return []
            value = self.literal(spec, cond, path, f"{fact_type.name}.{name}")
            return [ir.Test(name, "eq", value, loc)] if value is not None else []
        tests: list[ir.Test] = []
        for op_name, operand in cond.items():
            op_path = (*path, op_name)
            if op_name == "same_as":
                ref = self.ref(operand, op_path, scope, alias, spec)
                if ref:
                    tests.append(ir.Test(name, "eq", ref, self.pos.at(op_path)))
            elif op_name == "present":
                if not isinstance(operand, bool):
                    self.error(op_path, "present takes true or false")
                    continue
                tests.append(ir.Test(name, "present" if operand else "absent", None, self.pos.at(op_path)))
            elif op_name in ("in", "not_in"):
                if not isinstance(operand, list) or not operand:
                    self.error(op_path, f"{op_name} takes a non-empty list of values")
                    continue
                values = [
                    self.literal(spec, v, (*op_path, i), f"{fact_type.name}.{name}") for i, v in enumerate(operand)
                ]
                if all(v is not None for v in values):
                    tests.append(
                        ir.Test(name, OPS[op_name], tuple(cast(list[ir.Scalar], values)), self.pos.at(op_path))
                    )
            elif op_name in OPS:
                operand_ir = self.operand(spec, operand, op_path, scope, alias, f"{fact_type.name}.{name}")
                if operand_ir is None:
                    continue
                if op_name in ir.ORDERING_OPS and spec.type not in ("int", "float"):
                    self.error(
                        op_path,
                        f"{op_name} compares numbers, but {fact_type.name}.{name} is a {spec.type}",
                        "use eq, neq, in or not_in",
                    )
                    continue
                tests.append(ir.Test(name, OPS[op_name], operand_ir, self.pos.at(op_path)))
            else:
                operators = [*OPS, "same_as", "present", "or_absent"]
                if op_name == "or_absent":
                    hint: str | None = "or_absent goes on a field directly, not inside any_of"
                elif str(op_name).strip() in SYMBOL_OPS:
                    word = SYMBOL_OPS[str(op_name).strip()]
                    shown = _flow(operand)
                    hint = f"operators are words: write {{{word}: {shown}}}"
                else:
                    hint = did_you_mean(op_name, operators) or f"operators: {', '.join(operators)}"

                self.error(op_path, f"unknown operator {op_name!r}", hint, key=True)
        return tests

    def operand(
        self, spec: FieldSpec, operand: Any, path: Path_, scope: Mapping[str, str], alias: str, what: str
    ) -> ir.Operand:
        if isinstance(operand, dict):
            if set(operand) == {"param"}:
                return self.param(operand["param"], (*path, "param"), spec, what)
            if set(operand) == {"ref"}:
                return self.ref(operand["ref"], (*path, "ref"), scope, alias, spec)
            self.error(path, "an operand is a value, {param: NAME} or {ref: alias.field}")
            return None
        return self.literal(spec, operand, path, what)

    def literal(self, spec: FieldSpec, value: Any, path: Path_, what: str) -> ir.Scalar | None:
        if value is None and path and isinstance(path[-1], str):
            example = "a number or {param: NAME}" if spec.type in ("int", "float") else f"{_article(spec.type)}"
            self.error(path, f"a value is missing after '{path[-1]}:'", f"{what} takes {example}")
            return None
        if not spec.accepts(value):
            self.error(
                path,
                f"{what} is {_article(spec.type)}, but {value!r} is {_article(type(value).__name__)}",
                self.literal_hint(spec, value),
            )
            return None
        if spec.values is not None and value not in spec.values:
            self.error(
                path,
                f"{value!r} is not a value of {what}",
                did_you_mean(str(value), spec.values) or f"one of: {', '.join(spec.values)}",
            )
            return None
        return cast(ir.Scalar, value)

    def literal_hint(self, spec: FieldSpec, value: Any) -> str:
        """What the author of a wrongly typed value probably meant: a parameter, a word operator, or a quote."""
        default = "quote strings, write numbers and true/false plainly"
        if spec.type not in ("int", "float") or not isinstance(value, str):
            return default
        symbol = _SYMBOL_VALUE.match(value)
        if symbol:
            op, rest = SYMBOL_OPS[symbol.group(1)], symbol.group(2)
            if rest in self.ctx.parameters:
                rest = f"{{param: {rest}}}"
            return f"operators are words: write {{{op}: {rest}}}"
        if value in self.ctx.parameters:
            return f"a parameter is read with {{param: {value}}}"
        close = get_close_matches(value, sorted(self.ctx.parameters), n=1, cutoff=0.6)
        if close:
            return f"did you mean {{param: {close[0]}}}?"
        return default

    def param(self, name: Any, path: Path_, spec: FieldSpec | None, what: str) -> ir.Param | None:
        if not isinstance(name, str) or name not in self.ctx.parameters:
            self.error(path, f"unknown parameter {name!r}", did_you_mean(str(name), self.ctx.parameters))
            return None
        parameter = self.ctx.parameters[name]
        if spec is not None and (
            spec.type not in ("int", "float") or (spec.type == "int" and parameter.type == "float")
        ):
            self.error(path, f"parameter {name} is a {parameter.type}, but {what} is a {spec.type}")
            return None
        return ir.Param(name)

    def ref(
        self, text: Any, path: Path_, scope: Mapping[str, str], alias: str, spec: FieldSpec | None
    ) -> ir.Ref | None:
        if not isinstance(text, str) or "." not in text:
            self.error(path, f"expected alias.field, got {text!r}")
            return None
        ref_alias, ref_field = text.split(".", 1)
        if self.in_selection:
            self.error(
                path,
                f"an aggregate's selection cannot join to another pattern ({text})",
                "select on the fact's own fields, group with by: [FIELD], and join the aggregate's fact instead",
            )
            return None
        if ref_alias == alias:
            self.error(path, f"a pattern cannot join to itself ({text})")
            return None
        if ref_alias in self.unresolved:
            return None
        if ref_alias not in scope:
            self.error(
                path,
                f"alias {ref_alias!r} is not bound before this pattern",
                did_you_mean(ref_alias, scope) or "joins refer to aliases listed earlier in 'when'",
            )
            return None
        other = self.ctx.fact_types[scope[ref_alias]]
        other_spec = other.fields.get(ref_field)
        if other_spec is None:
            self.error(
                path,
                f"fact type {other.name!r} (alias {ref_alias}) has no field {ref_field!r}",
                did_you_mean(ref_field, other.fields),
            )
            return None
        if spec is not None and not compatible(spec, other_spec):
            self.error(path, f"cannot compare a {spec.type} with {text}, a {other_spec.type}")
            return None
        return ir.Ref(ref_alias, ref_field)

    # -- conclusions -------------------------------------------------------------------------------

    def template(self, text: Any, path: Path_) -> ir.Template | None:
        if not isinstance(text, str) or not text.strip():
            self.error(path, "expected text")
            return None
        parts: list[str | ir.Ref | ir.Param] = []
        last = 0
        for match in _PLACEHOLDER.finditer(text):
            parts.append(text[last : match.start()])
            last = match.end()
            inner = match.group(1)
            head, _, tail = inner.partition(".")
            if head == "param":
                p = self.param(tail, path, None, "text")
                if p:
                    parts.append(p)
            elif head in self.unresolved:
                continue
            elif head in self.aliases and tail in self.ctx.fact_types[self.aliases[head]].fields:
                parts.append(ir.Ref(head, tail))
            elif head in self.aliases:
                self.error(
                    path,
                    f"{{{inner}}}: fact type {self.aliases[head]!r} has no field {tail!r}",
                    did_you_mean(tail, self.ctx.fact_types[self.aliases[head]].fields),
                )
            else:
                self.error(
                    path, f"{{{inner}}} names no bound alias or parameter", did_you_mean(head, [*self.aliases, "param"])
                )
        parts.append(text[last:])
        return ir.Template(text, tuple(p for p in parts if p != ""))

    def value(self, text: Any, path: Path_, expected: FieldSpec | None = None) -> ir.Value | None:
        """A target/derive value: ``alias.field`` when alias is bound, otherwise a literal."""
        if isinstance(text, str) and text.split(".", 1)[0] in self.unresolved:
            return None
        if isinstance(text, str) and "." in text and text.split(".", 1)[0] in self.aliases:
            a, f = text.split(".", 1)
            spec = self.ctx.fact_types[self.aliases[a]].fields.get(f)
            if spec is None:
                self.error(
                    path,
                    f"fact type {self.aliases[a]!r} has no field {f!r}",
                    did_you_mean(f, self.ctx.fact_types[self.aliases[a]].fields),
                )
                return None
            return ir.Ref(a, f)
        if expected is not None:
            return self.literal(expected, text, path, "value")
        if isinstance(text, str | int | float | bool):
            return text
        self.error(path, "expected alias.field or a plain value")
        return None

    def codes(
        self, body: dict[str, Any], path: Path_, catalogue: Mapping[str, Any], what: str
    ) -> tuple[tuple[str | ir.Ref, ...], bool] | None:
        single, many, scope = body.get("intervention"), body.get("interventions"), body.get("scope")
        given = [k for k in ("intervention", "interventions", "scope") if k in body]
        if len(given) != 1:
            self.error(path, f"{what} needs exactly one of intervention, interventions or scope")
            return None
        if scope is not None:
            if scope != "elective":
                self.error((*path, "scope"), f"unknown scope {scope!r}", "the only scope is 'elective'")
                return None
            return (), True
        items = [single] if single is not None else many
        if not isinstance(items, list) or not items:
            self.error(path, "interventions takes a non-empty list")
            return None
        ok = True
        out: list[str | ir.Ref] = []
        for i, code in enumerate(items):
            sub = (*path, "intervention") if single is not None else (*path, "interventions", i)
            alias = code.split(".", 1)[0] if isinstance(code, str) and "." in code else None
            if alias is not None and alias in self.unresolved:
                ok = False  # the alias's own pattern is reported; this reference is not reported again
            elif alias is not None and self.aliases.get(alias) == "candidate" and code == f"{alias}.intervention":
                out.append(ir.Ref(alias, "intervention"))  # the candidate this rule matched
            elif alias is not None:
                self.error(
                    sub,
                    f"{code!r}: only a candidate's intervention can be referenced here",
                    "write alias.intervention where alias is bound to a candidate fact",
                )
                ok = False
            elif code not in catalogue:
                self.error(sub, f"unknown intervention {code!r}", did_you_mean(str(code), catalogue))
                ok = False
            else:
                out.append(code)
        return (tuple(out), False) if ok else None

    # -- rule --------------------------------------------------------------------------------------

    def compile(self) -> ir.Rule | None:
        spec = self.spec
        before = len(self.problems)
        for i, crit in enumerate(spec.criteria):
            if crit not in self.ctx.criteria:
                self.error(("criteria", i), f"unknown criterion {crit!r}", did_you_mean(crit, self.ctx.criteria))
        for i, src in enumerate(spec.evidence.sources):
            if src not in self.ctx.sources:
                self.error(("evidence", "sources", i), f"unknown source {src!r}", did_you_mean(src, self.ctx.sources))
        for i, prof in enumerate(spec.profiles or []):
            if prof not in self.ctx.profiles:
                self.error(("profiles", i), f"unknown profile {prof!r}", did_you_mean(prof, self.ctx.profiles))
        patterns: list[ir.Pattern] = []
        for alias, pat in spec.when.items():
            compiled = self.pattern(alias, pat, ("when", alias), dict(self.aliases))
            if compiled is not None:
                patterns.append(compiled)
                self.aliases[alias] = compiled.fact_type
            elif isinstance(pat, dict) and pat.get("type") in self.ctx.fact_types and not AGGREGATE_KEYS.keys() & pat:
                self.aliases[alias] = pat["type"]
            else:  # its error is reported; what refers to it is not reported again
                self.unresolved.add(alias)
        blockers: list[ir.Blocker] = []
        for i, clause in enumerate(spec.unless):
            if not isinstance(clause, dict) or len(clause) != 1:
                self.error(
                    ("unless", i),
                    "each unless clause binds one alias to one pattern",
                    "e.g. - radicular: {type: pain, character: radicular}",
                )
                continue
            alias, pat = next(iter(clause.items()))
            if alias in self.aliases:
                self.error(("unless", i, alias), f"alias {alias!r} is already bound in 'when'", key=True)
                continue
            compiled = self.pattern(alias, pat, ("unless", i, alias), dict(self.aliases))
            if compiled is not None:
                blockers.append(ir.Blocker(i, compiled))
        conclusions = [compile_conclusion(self, item, ("then", i)) for i, item in enumerate(spec.then)]
        if any(isinstance(c, ir.RedFlag) for c in conclusions) and not any(
            isinstance(c, ir.Refer) and c.urgency in ("emergency", "urgent") for c in conclusions
        ):
            self.error(
                ("then",),
                "a rule that raises a red flag must also refer with urgency emergency or urgent",
                "add e.g. - refer: {to: emergency_department, urgency: emergency, reason: ...}",
            )
        if len(patterns) > 16:
            self.error(
                ("when",),
                f"{len(patterns)} patterns: the engine allows at most 16 facts per rule",
                "split the rule, deriving an intermediate fact",
            )
        if len(self.problems) > before:
            return None
        return ir.Rule(
            id=spec.id,
            version=spec.version,
            title=spec.title,
            criteria=tuple(spec.criteria),
            sources=tuple(spec.evidence.sources),
            evidence_strength=spec.evidence.strength,
            evidence_quality=spec.evidence.quality,
            patterns=tuple(patterns),
            blockers=tuple(blockers),
            conclusions=tuple(c for c in conclusions if c is not None),
            profiles=tuple(spec.profiles) if spec.profiles is not None else None,
            effective=(spec.effective.start, spec.effective.end) if spec.effective else (None, None),
            location=self.pos.at(()),
            aggregates=tuple(self.aggregates.values()),
        )


def aggregate_fact_type(
    name: str,
    function: ir.AggregateFunction,
    source: FactType,
    by: list[str],
    order: str | None,
    distinct: str | None,
    total: str | None,
    listed: str | None = None,
) -> FactType:
    """The schema of the facts an aggregate makes."""
    if function != "count":
        rank = FieldSpec(
            "int",
            f"Dense rank of {order} within the group (1 = the {'most recent' if function == 'latest' else 'oldest'}; "
            "facts without it rank 1).",
        )
        return FactType(
            name,
            f"Each {source.name} the selection matches, ranked ({function}).",
            {**source.fields, "rank": rank},
            source.identity,
            source.source,
        )
    fields: dict[str, FieldSpec] = {
        "count": FieldSpec(
            "int", f"Number of selected facts{f' (distinct values of {distinct})' if distinct else ''}."
        ),
        **{b: source.fields[b] for b in by},
    }
    if total is not None:
        fields["total"] = FieldSpec(
            "float", f"Sum of {total} over the selected facts.", None, None, source.fields[total].unit
        )
    if listed is not None:
        fields["listed"] = FieldSpec(
            "str", f"The distinct values of {listed} among the selected facts, sorted, joined by ', '."
        )
    if order is not None:
        fields["latest_" + order] = FieldSpec("int", f"Smallest {order} among the selected facts.")
        fields["earliest_" + order] = FieldSpec("int", f"Largest {order} among the selected facts.")
        if order == DEFAULT_ORDER and "date" in source.fields:
            fields["latest_date"] = FieldSpec("str", "Date of the most recent selected fact.")
            fields["earliest_date"] = FieldSpec("str", "Date of the oldest selected fact.")
    return FactType(name, f"Count of the {source.name} facts the selection matches.", fields, tuple(by), source.source)


def _flow(value: Any) -> str:
    """A value as an author writes it in YAML flow style (for hints)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def compile_rules(
    specs: list[tuple[RuleSpec, Positions]], ctx: CompileContext, problems: list[Problem]
) -> list[ir.Rule]:
    ctx.fact_types.update(derived_fact_types(specs, problems))
    rules = []
    for spec, pos in specs:
        compiled = _RuleCompiler(spec, pos, ctx, problems).compile()
        if compiled is not None:
            rules.append(compiled)
    return stratify(rules, problems)
