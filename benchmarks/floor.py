"""The plain-Python floor: a program's checks generated as one straight-line Python function.

Every engine rule of every stratum becomes nested ``for`` loops over the facts of its patterns' types,
with each comparison inlined (``v.get("nrs") is not None and v["nrs"] >= 7``). The function counts the
combinations that match. It runs over a patient's *final* facts (recorded and derived), so it performs
the same checks the engines perform, on the same facts, with none of their machinery: no fact
encoding, no forward chaining, no missing-data search, no resolution, no assessment. It is written
independently of ``ipm_cds.engine.compiled`` (which does the same job with the engine's full
semantics), and it is what the engines' latencies are divided by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ipm_cds.engine.program import Program
from ipm_cds.model.facts.normalise import Fact
from ipm_cds.ruleset import ir

FloorFn = Callable[[Mapping[str, Sequence[Fact]]], int]
_OPS = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _test(test: ir.Test, var: str, aliases: Mapping[str, str], consts: dict[str, Any]) -> str:
    def const(value: Any) -> str:
        name = f"C{len(consts)}"
        consts[name] = value
        return name

    get = f"{var}.get({test.field!r})"
    if test.op == "present":
        return f"{get} is not None"
    if test.op == "absent":
        return f"{get} is None"
    if isinstance(test.operand, ir.Ref):
        other = f"{aliases[test.operand.alias]}.get({test.operand.field!r})"
        return f"((a := {get}) is not None and (b := {other}) is not None and a {_OPS[test.op]} b)"
    if test.op in ("in", "not_in"):
        assert isinstance(test.operand, tuple)
        return (
            f"((a := {get}) is not None and a {'in' if test.op == 'in' else 'not in'} {const(frozenset(test.operand))})"
        )
    return f"((a := {get}) is not None and a {_OPS[test.op]} {const(test.operand)})"


def _node(node: ir.Node, var: str, aliases: Mapping[str, str], consts: dict[str, Any]) -> str:
    if isinstance(node, ir.AnyOf):
        return (
            "("
            + " or ".join("(" + " and ".join(_test(t, var, aliases, consts) for t in b) + ")" for b in node.branches)
            + ")"
        )
    return _test(node, var, aliases, consts)


def build_floor(program: Program) -> FloorFn:
    """One function that runs every engine rule's checks over facts indexed by type."""
    lines = ["def floor(T):", "    n = 0"]
    consts: dict[str, Any] = {}
    for stratum in program.strata:
        for er in stratum.rules:
            depth = 1
            aliases: dict[str, str] = {}
            for i, pattern in enumerate(er.patterns):
                pad = "    " * depth
                lines.append(f"{pad}for f{i} in T.get({pattern.fact_type!r}, ()):")
                depth += 1
                pad = "    " * depth
                same = [f"f{i} is f{j}" for j, p in enumerate(er.patterns[:i]) if p.fact_type == pattern.fact_type]
                if same:
                    lines.append(f"{pad}if {' or '.join(same)}: continue")
                lines.append(f"{pad}v{i} = f{i}.values")
                for node in pattern.tests:
                    lines.append(f"{pad}if not {_node(node, f'v{i}', aliases, consts)}: continue")
                aliases[pattern.alias] = f"v{i}"
            lines.append("    " * depth + "n += 1")
    lines.append("    return n")
    namespace: dict[str, Any] = dict(consts)
    exec(compile("\n".join(lines) + "\n", "<floor>", "exec"), namespace)
    floor: FloorFn = namespace["floor"]
    return floor
