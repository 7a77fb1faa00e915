"""durable-rules' hard limits, checked on the engine JSON of a program before ``create_ruleset`` is called.

``engine-notes.md`` (its table of hard limits) lists what a compiled ruleset must stay under. Crossing some
of them hangs ``create_ruleset`` forever with the GIL held, so they can only be checked beforehand, in
Python. This module does it by rebuilding the part of the engine that the limits are about, the alpha
network, the way ``create_ruleset`` builds it (durable-rules 2.0.28, ``src/rules/rete.c``), from the very
JSON the durable backend gives the engine:

* a pattern ``{"$and": [c1, c2, ...]}`` is a chain of conditions from the engine's root: ``type == X``,
  then each clause in order. A condition is *shared* with an identical one under the same parent (same
  attribute, operator and literal; ``5`` and ``5.0`` differ). A join (``{"f": {"alias": "f"}}``) is never
  shared: the engine compares where its strings are stored, and stores them anew every time.
* an ``$or`` (an ``in``, ``any_of`` or ``or_absent``) adds each branch under the ``$or``'s parent (shared
  like any condition), and a fresh *forward* node that every branch end links to. What follows the
  ``$or`` hangs from the forward node alone.
* each condition keeps its successors in three fixed-size, zero-terminated tables: a 512-slot hash table
  of conditions (a full one makes every lookup loop forever: the hang), a 128-slot list of "not exists"
  conditions (``$nex``, and the forward node of every ``$or`` branch that ends there: the 129th entry is
  written past its end, the 130th gives error 107),
  and a 256-slot list of the patterns that end there (error 108, or a segfault at exactly 256).

Matching a fact walks this network depth first with a 64-entry stack: each condition the fact satisfies
pushes every successor it satisfies (joins and forward nodes always), and its siblings wait on the stack
while the successors of the one popped first are pushed (error 303 on the 65th entry, measured: nine waiting siblings
and 56 successors fail, 55 do not). The check bounds that depth for any fact: successors that test one
attribute count once for each value the attribute can take at once (``region == "lumbar"`` and
``region == "cervical"`` exclude each other; so do ``nrs > 7`` and ``nrs < 3``), and everything else,
joins and forward nodes included, counts as possibly true together.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from ..errors import Problem, SourceLocation
from ..ruleset import ir

# engine-notes.md, hard limits (and rete.c / events.c / state.h of durable-rules 2.0.28 for the exact counts).
MAX_FACT_PROPERTIES = 252  # properties per fact; past it the fact (and the rest of the batch) is dropped
ENGINE_ATTRIBUTES = 5  # type, key, id, _t and sid: set by ipm-cds on every fact it asserts
MAX_RULES_PER_RULESET = 4096  # error 106 (the sentinel rule counts)
MAX_FACTS_PER_RULE = 16  # error 304
MAX_JOINS_PER_PATTERN = 29  # error 113, for a pattern without any_of, in or not_in (see MAX_EXPRESSIONS)
MAX_EXPRESSIONS_PER_PATTERN = 31  # a pattern's expression sequence: each join 1, each $and and $or 2; error 113 at 32
MAX_STRING = 65_535  # regex and identity comparisons are silently wrong from 65,536 characters
MAX_CHILDREN_PER_CONDITION = 511  # 512 fill the hash table: create_ruleset (or the first assert) never returns
# Checked with a margin: the count models how the engine shares conditions (read from its source, and
# measured: 511 build, 512 hang) rather than asking the engine, and undercounting costs a process that hangs
# with the GIL held and ignores Ctrl-C. No sensible ruleset needs 500 conditions after one shared condition.
MAX_SAFE_CHILDREN = 500
# A 128-slot zero-terminated list: a full one is read past its end while matching; measured in ipm-core (21 entries
# there already), 128 entries build, the 129th is silently written past the list, the 130th gives error 107.
MAX_OR_ENDS_PER_CONDITION = 127
MAX_SIBLINGS_AT_ONCE = 64  # the matching stack; error 303 on every assert of a fact that fills it
MAX_RULES_ON_IDENTICAL_CONDITION = 255  # patterns ending on one condition; 256 segfault, 257 give error 108

_HINT_SPLIT = (
    "split the in list or any_of over several rules, start the patterns with a condition that tells them "
    "apart, or derive an intermediate fact"
)


@dataclass(frozen=True, slots=True)
class Clause:
    """One clause of a pattern's top-level ``$and`` in the engine JSON, and where it comes from."""

    json: dict[str, Any]
    location: SourceLocation | None


@dataclass(frozen=True, slots=True)
class PatternShape:
    alias: str
    fact_type: str
    clauses: tuple[Clause, ...]
    location: SourceLocation | None


@dataclass(frozen=True, slots=True)
class RuleShape:
    """One engine rule: its name in the engine JSON, the rule it comes from, and its patterns' clauses."""

    name: str
    rule: ir.Rule | None  # None for the sentinel rule
    patterns: tuple[PatternShape, ...]


@dataclass(frozen=True, slots=True)
class _Origin:
    rule: ir.Rule | None
    location: SourceLocation | None
    grouped: bool  # made by an $or (a value of an in, a branch of an any_of) or below one


@dataclass(eq=False)
class _Node:
    """A condition of the alpha network."""

    kind: str  # "root", "test", "join", "nex", "forward"
    attribute: str
    op: str
    value: Any
    origin: _Origin | None
    path: tuple[str, ...] = ()  # the labels from the root: which condition this is, whatever the profile
    tests: list[_Node] = field(default_factory=list)  # the 512-slot hash table (tests and joins)
    shared: dict[tuple[Any, ...], _Node] = field(default_factory=dict)  # identical tests and $nex, for sharing
    ends: list[_Node] = field(default_factory=list)  # the 128-slot list ($nex and forward nodes, repeats kept)
    patterns: list[_Origin] = field(default_factory=list)  # the 256-slot list of patterns ending here

    def label(self) -> str:
        if self.kind == "root":
            return "the engine's root"
        if self.kind == "forward":
            return "an any_of or in"
        if self.kind == "nex":
            return f"{self.attribute} absent"
        if self.kind == "join":
            return f"{self.attribute} joined to {json.dumps(self.value)}"
        symbol = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "ex": "present"}
        if self.op == "ex":
            return f"{self.attribute} present"
        return f"{self.attribute} {symbol.get(self.op, self.op)} {json.dumps(self.value, ensure_ascii=False)}"


def _literal_key(value: Any) -> tuple[str, Any]:
    """How the engine tells two literals apart: by JSON type, then value (5 and 5.0 are two conditions)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value)
    return (type(value).__name__, json.dumps(value, sort_keys=True))


def _is_join(operand: Any) -> bool:
    return isinstance(operand, dict)


class _Network:
    def __init__(self) -> None:
        self.root = _Node("root", "", "", None, None)

    def add(self, parent: _Node, expr: dict[str, Any], origin: _Origin) -> _Node:
        """Add one expression under ``parent`` as ``createAlpha`` does; returns the node the chain goes on from."""
        ((name, value),) = expr.items()
        if name == "$and":
            current = parent
            for sub in value:
                current = self.add(current, sub, origin)
            return current
        if name == "$or":
            inner = _Origin(origin.rule, origin.location, grouped=True)
            forward = _Node("forward", "$forward", "nex", None, inner)
            forward.path = (*parent.path, f"an any_of or in of {_who(origin)}")
            for sub in value:
                self.add(parent, sub, inner).ends.append(forward)
            return forward
        if name.startswith("$"):
            ((attribute, operand),) = value.items()
            op = name[1:]
        else:
            attribute, operand, op = name, value, "eq"
        if op == "nex":
            key: tuple[Any, ...] = ("nex", attribute)
            node = parent.shared.get(key)
            if node is None:
                node = parent.shared[key] = self._new(parent, "nex", attribute, op, None, origin)
                parent.ends.append(node)
            return node
        if _is_join(operand):
            node = self._new(parent, "join", attribute, op, operand, origin)
            parent.tests.append(node)
            return node
        key = ("test", attribute, op, _literal_key(operand))
        node = parent.shared.get(key)
        if node is None:
            node = parent.shared[key] = self._new(parent, "test", attribute, op, operand, origin)
            parent.tests.append(node)
        return node

    @staticmethod
    def _new(parent: _Node, kind: str, attribute: str, op: str, value: Any, origin: _Origin) -> _Node:
        node = _Node(kind, attribute, op, value, origin)
        node.path = (*parent.path, node.label())
        return node

    def nodes(self) -> Iterable[_Node]:
        seen: set[int] = set()
        stack = [self.root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            stack.extend(node.tests)
            stack.extend(node.ends)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _holds(op: str, value: Any, probe: Any) -> bool:
    """Whether ``attribute <op> value`` holds when the attribute is ``probe`` (a number, or anything else:
    the compiler checks literals against the field's type, so numbers meet numbers only)."""
    if op == "ex":
        return True
    number, numeric_probe = _is_number(value), _is_number(probe)
    if op in ("eq", "neq"):
        if number or numeric_probe:
            same = number and numeric_probe and value == probe
        else:
            same = probe is not _FRESH and _literal_key(value) == _literal_key(probe)
        return same if op == "eq" else not same
    if not number:
        return True  # an ordering of something else than numbers: not modelled, so possibly true
    if not numeric_probe:
        return False
    return bool({"lt": probe < value, "lte": probe <= value, "gt": probe > value, "gte": probe >= value}[op])


_FRESH = object()  # a value equal to none of the literals
_COMPARISONS = frozenset({"eq", "neq", "lt", "lte", "gt", "gte"})


class _Scores:
    """How many of a set of literal comparisons on one attribute hold at a value, in O(log n) per value
    (an any_of or in may bring hundreds)."""

    def __init__(self, literal: list[_Node]) -> None:
        numbers = [n for n in literal if _is_number(n.value)]
        others = [n for n in literal if not _is_number(n.value)]
        self.bounds = {op: sorted(n.value for n in numbers if n.op == op) for op in ("lt", "lte", "gt", "gte")}
        self.equal = Counter(n.value for n in numbers if n.op == "eq")  # 5 and 5.0 are one key: numerically equal
        self.unequal = Counter(n.value for n in numbers if n.op == "neq")
        self.other_equal = Counter(_literal_key(n.value) for n in others if n.op == "eq")
        self.other_unequal = Counter(_literal_key(n.value) for n in others if n.op == "neq")
        self.other_orderings = sum(1 for n in others if n.op not in ("eq", "neq"))

    def __call__(self, probe: Any) -> int:
        numbers_unequal = self.unequal.total()
        others_unequal = self.other_unequal.total()
        if _is_number(probe):
            lt, lte, gt, gte = (self.bounds[op] for op in ("lt", "lte", "gt", "gte"))
            ordered = len(lt) - bisect_right(lt, probe) + len(lte) - bisect_left(lte, probe)
            ordered += bisect_left(gt, probe) + bisect_right(gte, probe)
            held = self.equal[probe] + numbers_unequal - self.unequal[probe] + ordered
            return held + others_unequal + self.other_orderings
        key = None if probe is _FRESH else _literal_key(probe)
        held = numbers_unequal + self.other_orderings + others_unequal
        return held + (self.other_equal[key] - self.other_unequal[key] if key is not None else 0)


def _at_once_on(attribute_tests: list[_Node]) -> list[_Node]:
    """The largest set of these successors (all on one attribute) that one value of the attribute satisfies."""
    always = [n for n in attribute_tests if n.kind == "join" or n.op not in _COMPARISONS]
    literal = [n for n in attribute_tests if n.kind != "join" and n.op in _COMPARISONS]
    if not literal:
        return always
    # Every comparison's truth is constant between two consecutive literals: trying each literal, a value
    # between each two, one beyond each end and one equal to none finds the best value.
    numbers = sorted({n.value for n in literal if _is_number(n.value)})
    probes: list[Any] = [*numbers, *((a + b) / 2 for a, b in pairwise(numbers))]
    if numbers:
        probes.extend((numbers[0] - 1, numbers[-1] + 1))
    probes.extend(n.value for n in literal if not _is_number(n.value))
    probes.append(_FRESH)
    best = max(probes, key=_Scores(literal))
    return always + [n for n in literal if _holds(n.op, n.value, best)]


def _at_once(node: _Node) -> list[_Node]:
    """The successors of ``node`` that one fact can push on the matching stack at once (an upper bound)."""
    out = [n for n in node.ends if n.kind == "forward"]  # the forward node's attribute is never in a fact
    by_attribute: dict[str, list[_Node]] = {}
    for n in node.tests:
        by_attribute.setdefault(n.attribute, []).append(n)
    absent = {n.attribute: n for n in node.ends if n.kind == "nex"}
    for attribute in sorted(by_attribute.keys() | absent.keys()):
        present = _at_once_on(by_attribute.get(attribute, []))
        missing = [absent[attribute]] if attribute in absent else []
        out.extend(present if len(present) >= len(missing) else missing)
    return out


def _where(origin: _Origin | None) -> SourceLocation | None:
    if origin is None:
        return None
    if origin.location is not None:
        return origin.location
    return origin.rule.location if origin.rule is not None else None


def _who(origin: _Origin | None) -> str:
    return f"rule {origin.rule.id}" if origin is not None and origin.rule is not None else "the sentinel rule"


def _top_contributor(nodes: Sequence[_Node]) -> tuple[_Origin | None, str]:
    """The origin of most of these conditions (where the problem is shown), and who made them, in words."""
    counts: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], _Origin | None] = {}
    for n in nodes:
        key = (_who(n.origin), str(_where(n.origin)))
        counts[key] += 1
        first.setdefault(key, n.origin)
    if not counts:
        return None, ""
    key, count = counts.most_common(1)[0]
    origin = first[key]
    rules = len({who for who, _ in counts})
    if rules == 1:
        return origin, f"all from {_who(origin)}{_grouped(origin)}"
    return origin, f"from {rules} rules, {count} from {_who(origin)}{_grouped(origin)}"


def _grouped(origin: _Origin | None) -> str:
    return " (each value of an in and each branch of an any_of counts)" if origin and origin.grouped else ""


Keyed = list[tuple[Hashable, Problem]]  # problems with what they are about, the same under every profile


def _network_problems(network: _Network, where: str) -> Keyed:
    problems: Keyed = []
    for node in network.nodes():
        if len(node.tests) > MAX_SAFE_CHILDREN:
            origin, who = _top_contributor(node.tests)
            problems.append(
                (
                    ("children", node.path, _who(origin)),
                    Problem(
                        f"{len(node.tests)} distinct conditions follow the condition {node.label()} in {where}, "
                        f"{who}; durable-rules hangs past "
                        f"{MAX_CHILDREN_PER_CONDITION} when it builds the engine (checked at {MAX_SAFE_CHILDREN}, "
                        "with a margin)",
                        _where(origin),
                        hint=_HINT_SPLIT,
                    ),
                )
            )
        if len(node.ends) > MAX_OR_ENDS_PER_CONDITION:
            origin, who = _top_contributor(node.ends)
            repeated = len(node.ends) > len({id(n) for n in node.ends})
            problems.append(
                (
                    ("ends", node.path, _who(origin)),
                    Problem(
                        f"{len(node.ends)} any_of branches, in values and absence tests end on the condition "
                        f"{node.label()} in {where}, {who}; durable-rules allows "
                        f"{MAX_OR_ENDS_PER_CONDITION} (error 107)",
                        _where(origin),
                        hint="remove repeated values from the in list; " + _HINT_SPLIT if repeated else _HINT_SPLIT,
                    ),
                )
            )
        if len(node.patterns) > MAX_RULES_ON_IDENTICAL_CONDITION:
            origin = node.patterns[MAX_RULES_ON_IDENTICAL_CONDITION]
            problems.append(
                (
                    ("patterns", node.path),
                    Problem(
                        f"{len(node.patterns)} patterns end on one identical condition ({node.label()}) in {where}; "
                        f"durable-rules allows {MAX_RULES_ON_IDENTICAL_CONDITION} (it crashes or fails with error 108)",
                        _where(origin),
                        hint="vary or merge the rules; this is the first pattern past the limit",
                    ),
                )
            )
    problems.extend(_stack_problems(network, where))
    return problems


def _stack_problems(network: _Network, where: str) -> Keyed:
    """Facts whose matching could fill the engine's 64-entry stack (error 303), one problem per fact type."""
    peak: dict[int, int] = {}
    at_once: dict[int, list[_Node]] = {}

    def sets(node: _Node) -> list[_Node]:
        found = at_once.get(id(node))
        if found is None:
            found = at_once[id(node)] = _at_once(node)
        return found

    def depth(node: _Node) -> int:
        """The most stack entries matching can use from ``node`` on, ``node`` itself popped."""
        known = peak.get(id(node))
        if known is not None:
            return known
        pushed = len(sets(node))
        deepest = pushed
        for child in (*node.tests, *node.ends):
            deepest = max(deepest, pushed - 1 + depth(child))
        peak[id(node)] = deepest
        return deepest

    problems: Keyed = []
    for type_node in network.root.tests:
        total = depth(type_node)  # the root pushes the one type node of the fact's type, popped first
        if total <= MAX_SIBLINGS_AT_ONCE:
            continue
        # Walk down the deepest path to where it overflows, and blame the largest contributor there.
        node, waiting = type_node, 0
        while True:
            pushed = sets(node)
            if waiting + len(pushed) > MAX_SIBLINGS_AT_ONCE:
                break
            children = (*node.tests, *node.ends)
            node = max(children, key=depth)
            waiting += len(pushed) - 1
        origin, who = _top_contributor(pushed)
        pending = f"; {waiting} more wait on the stack from earlier conditions" if waiting else ""
        problems.append(
            (
                ("stack", type_node.value, _who(origin)),
                Problem(
                    f"matching one {type_node.value} fact can keep up to {total} conditions pending at once in "
                    f"{where}, and durable-rules fails every assert of such a fact past {MAX_SIBLINGS_AT_ONCE} "
                    f"(error 303): {len(pushed)} that can hold together follow the condition {node.label()}, "
                    f"{who}{pending}",
                    _where(origin),
                    hint="conditions on one field with different values exclude each other, other conditions may "
                    "hold together: " + _HINT_SPLIT,
                ),
            )
        )
    return problems


def _expressions(expr: dict[str, Any]) -> tuple[int, int, int]:
    """(join clauses, $and/$or groups, string literals too long) in one clause."""
    ((name, value),) = expr.items()
    if name in ("$and", "$or"):
        joins, groups, long = 0, 1, 0
        for sub in value:
            j, g, s = _expressions(sub)
            joins, groups, long = joins + j, groups + g, long + s
        return joins, groups, long
    operand = next(iter(value.values())) if name.startswith("$") else value
    if _is_join(operand):
        return 1, 0, 0
    return 0, 0, int(isinstance(operand, str) and len(operand) > MAX_STRING)


def check_rules(rules: Sequence[RuleShape], where: str) -> list[Problem]:
    """Every limit that one engine ruleset (one stratum, the sentinel rule included) can cross."""
    return [problem for _, problem in check_rules_keyed(rules, where)]


def check_rules_keyed(rules: Sequence[RuleShape], where: str) -> Keyed:
    """:func:`check_rules`, each problem with a key that says what it is about, the same under every profile."""
    problems: Keyed = []
    if len(rules) > MAX_RULES_PER_RULESET:
        problems.append(
            (
                ("rules", where),
                Problem(
                    f"{where} compiles to {len(rules)} engine rules; durable-rules allows {MAX_RULES_PER_RULESET} "
                    "(error 106)",
                    hint="split the ruleset",
                ),
            )
        )
    network = _Network()
    for shape in rules:
        rule_location = shape.rule.location if shape.rule is not None else None
        name = _who(_Origin(shape.rule, None, grouped=False))
        if len(shape.patterns) > MAX_FACTS_PER_RULE:
            problems.append(
                (
                    ("facts", name),
                    Problem(
                        f"{name} matches {len(shape.patterns)} facts at once in one engine rule (its patterns, and "
                        f"an unless clause); durable-rules allows {MAX_FACTS_PER_RULE} (error 304)",
                        rule_location,
                        hint="derive an intermediate fact",
                    ),
                )
            )
        for pattern in shape.patterns:
            joins = groups = long = 0
            for clause in pattern.clauses:
                j, g, n = _expressions(clause.json)
                joins, groups, long = joins + j, groups + g, long + n
            expressions = joins + 2 * (groups + 1)  # + the pattern's own $and
            if expressions > MAX_EXPRESSIONS_PER_PATTERN:
                problems.append(
                    (
                        ("joins", name, pattern.alias),
                        Problem(
                            f"pattern {pattern.alias} of {name} has {joins} join clauses (one of them added by "
                            f"ipm-cds) and {groups} any_of, in or not_in groups, which makes {expressions} engine "
                            "expressions; "
                            f"durable-rules allows {MAX_EXPRESSIONS_PER_PATTERN} (error 113): "
                            f"{MAX_JOINS_PER_PATTERN} join clauses in a pattern without any_of, in or not_in, "
                            "two fewer for each of them",
                            pattern.location or rule_location,
                            hint="join on fewer fields, or derive an intermediate fact",
                        ),
                    )
                )
            if long:
                problems.append(
                    (
                        ("string", name, pattern.alias),
                        Problem(
                            f"pattern {pattern.alias} of {name} compares with a string longer than {MAX_STRING} "
                            "characters; durable-rules compares such strings wrongly",
                            pattern.location or rule_location,
                        ),
                    )
                )
            current = network.root
            for clause in pattern.clauses:
                current = network.add(current, clause.json, _Origin(shape.rule, clause.location, grouped=False))
            current.patterns.append(_Origin(shape.rule, pattern.location, grouped=False))
    problems.extend(_network_problems(network, where))
    return problems


def check_derived(rules: Iterable[ir.Rule]) -> Keyed:
    """Derived facts that durable-rules would silently drop, with too many properties. Facts are flat: one
    property per field (no nested objects, each of which would count too), plus the attributes ipm-cds adds."""
    problems: Keyed = []
    for rule in rules:
        for conclusion in rule.conclusions:
            if isinstance(conclusion, ir.Derive):
                count = len(conclusion.values) + ENGINE_ATTRIBUTES
                if count > MAX_FACT_PROPERTIES:
                    problems.append(
                        (
                            ("derive", rule.id, conclusion.fact),
                            Problem(
                                f"rule {rule.id} derives a {conclusion.fact} fact with {len(conclusion.values)} "
                                f"fields, {count} properties with the {ENGINE_ATTRIBUTES} that ipm-cds adds (type, "
                                f"key, id, _t, sid); durable-rules drops facts over {MAX_FACT_PROPERTIES} properties",
                                rule.location,
                                hint=f"derive at most {MAX_FACT_PROPERTIES - ENGINE_ATTRIBUTES} fields per fact: "
                                "split it into several derived facts",
                            ),
                        )
                    )
    return problems
