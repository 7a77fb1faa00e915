"""The durable backend: the IR compiled to durable-rules JSON and run through its C extension.

This module follows ``engine-notes.md`` to the letter, because the naive use of durable-rules crashes
or answers wrongly:

* no ``durable.engine.Host`` and no ``durable.lang``: the C extension is driven directly;
* one process-wide lock around each whole evaluation, a fresh sid per state, ``delete_state`` always,
  errors included — the only global mutable state in ipm-cds; also when ``assert_facts`` itself
  raises (it may have created the state), and never before an action was started on the state
  (:func:`_discard_state`);
* a sentinel rule and a sentinel fact in every state (an action-less state corrupts the heap);
* a cap on firings per evaluation, because the engine has no loop guard (counted by the driver, for both
  backends);
* facts, never events; our own ids ``f0, f1, …``; ``_t: 1`` on every fact;
* dotted paths for equality, ``$or`` of equalities for ``in``, no ``$not``, no rule-level ``any``,
  joins only on our own attributes and a trailing ``_t`` join on every pattern that joins;
* numbers in fixed notation only: exponent notation (``1e-05``) is silently misread in facts and
  refused in rulesets (found by our property tests);
* joins come first in a pattern: a join that follows an ``$or`` is ignored (found by a rule author's test);
* a pattern holding ``$or`` fires once per *true branch* for the same facts (found by our property
  tests, not in the notes): repeated frames are completed and ignored, so a combination fires once;
* the hard limits (engine-notes.md, its table of them) checked by ``durable_limits`` before any engine ruleset
  is created, and on every fact.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import sys
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from pydantic_core import from_json, to_json

from ..errors import BackendUnavailableError, EngineFaultError, IpmCdsError, Problem, RulesetError
from ..model.facts.normalise import Fact
from ..ruleset import ir
from ..ruleset.loader import Ruleset
from . import durable_limits
from .base import OnFire
from .durable_limits import (
    ENGINE_ATTRIBUTES,
    MAX_FACT_PROPERTIES,
    MAX_RULES_ON_IDENTICAL_CONDITION,
    MAX_RULES_PER_RULESET,
    Clause,
    PatternShape,
    RuleShape,
)
from .program import Program, Stratum, build_program

try:  # pragma: no cover - exercised on 3.13+ only
    import durable_rules_engine as _engine

    _IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover
    _engine = None
    _IMPORT_ERROR = str(exc)

SENTINEL_RULE = "__sentinel"
SENTINEL_TYPE = "__sentinel__"

# The one piece of global mutable state (engine-notes.md: one lock per process around the whole evaluation):
# the engine is not safe for two live states.
_LOCK = threading.Lock()
_SIDS = itertools.count(1)
_RULESET_NAMES = itertools.count(1)

RESERVED = frozenset({"type", "key", "id", "_t", "sid"})  # attributes ipm-cds sets on every engine fact
_TEXT_CACHE_SIZE = 4096


def _compact_json(value: dict[str, Any]) -> str:
    """The JSON of a fact whose numbers are all plain (see :func:`_plain`): pydantic-core's encoder, about
    five times faster than ``json.dumps`` on these small dicts, writes the same values (no spaces; non-ASCII
    characters as they are, control characters escaped), which is all the engine's parser reads."""
    return to_json(value).decode()


OK_CODES = (0, 1)  # 0 ok; 1 some fact matched no rule (normal)


def available() -> bool:
    """durable-rules is installed and its C extension imports on this interpreter."""
    return _engine is not None


def require() -> None:
    """Raise :class:`BackendUnavailableError` when durable-rules cannot run here, saying what to do instead."""
    if _engine is None:
        raise BackendUnavailableError(
            f"the durable backend needs durable-rules, which cannot be imported here ({_IMPORT_ERROR})",
            hint=f"use backend='auto' or 'python' on Python {sys.version_info.major}.{sys.version_info.minor} "
            "(--backend auto, the default, or --backend python); durable-rules installs with a C compiler on "
            "Python 3.11 and 3.12: pip install 'ipm-cds[durable]'",
        )


def dumps(value: Any) -> str:
    """JSON for durable-rules. Numbers are written in fixed notation: the engine's parser silently
    misreads exponent notation (``1e-05`` made every comparison on the fact false; measured, see
    docs/engine.md) and refuses it in rulesets (error 204)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EngineFaultError(f"cannot give the engine the number {value!r}")
        text = format(Decimal(repr(value)), "f")
        return text if text not in ("-0", "-0.0") else "0"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + dumps(v) for k, v in value.items()) + "}"
    raise EngineFaultError(f"cannot give the engine a {type(value).__name__}")


def _plain(value: object) -> bool:
    """A scalar that json.dumps writes exactly as durable-rules reads it (no exponent, finite)."""
    if isinstance(value, float):
        text = repr(value)
        return "e" not in text and "n" not in text  # 'inf' and 'nan' contain an n
    return True


def _test_json(test: ir.Test) -> dict[str, Any]:
    operand = test.operand
    if test.op == "present":
        return {"$ex": {test.field: 1}}
    if test.op == "absent":
        return {"$nex": {test.field: 1}}
    if isinstance(operand, ir.Ref):
        ref = {operand.alias: operand.field}
        if test.op == "eq":
            return {test.field: ref}
        return {f"${test.op}": {test.field: ref}}
    if test.op == "eq":
        return {test.field: operand}
    if test.op in ("in", "not_in"):
        assert isinstance(operand, tuple)
        if test.op == "in":
            options = [{test.field: v} for v in operand]
            return options[0] if len(options) == 1 else {"$or": options}
        exclusions = [{"$neq": {test.field: v}} for v in operand]
        return exclusions[0] if len(exclusions) == 1 else {"$and": exclusions}
    return {f"${test.op}": {test.field: operand}}


def _node_json(node: ir.Node) -> dict[str, Any]:
    if isinstance(node, ir.AnyOf):
        branches = []
        for branch in node.branches:
            parts = [_test_json(t) for t in branch]
            branches.append(parts[0] if len(parts) == 1 else {"$and": parts})
        return {"$or": branches}
    return _test_json(node)


def pattern_clauses(pattern: ir.Pattern, first_alias: str, guards: frozenset[str] = frozenset()) -> list[Clause]:
    """The clauses of a pattern's top-level ``$and``, in order, each with the place in the rule file it comes from."""
    here = pattern.location
    clauses = [Clause({"type": pattern.fact_type}, here)]
    # Joins first: durable-rules ignores a join that follows an $or in the same pattern (it then matches as if
    # the join held; measured, see docs/engine.md). Conjunction order changes nothing else.
    joins = [n for n in pattern.tests if isinstance(n, ir.Test) and isinstance(n.operand, ir.Ref)]
    clauses.extend(Clause(_node_json(node), node.location or here) for node in joins)
    clauses.extend(Clause(_node_json(node), node.location or here) for node in pattern.tests if node not in joins)
    # A later pattern joins on these fields of this fact: when the fact lacks one, durable-rules fails the whole
    # assert with error 311 instead of treating the join as false. The join is false then anyway, so requiring
    # the field here changes no result (joins sit in the top-level conjunction: the compiler refuses them
    # inside any_of).
    clauses.extend(Clause({"$ex": {field: 1}}, here) for field in sorted(guards))
    if pattern.refs():
        # engine-notes (the join crash, upstream #381): a false last join reads past the expression sequence.
        clauses.append(Clause({"_t": {first_alias: "_t"}}, here))
    return clauses


def pattern_json(pattern: ir.Pattern, first_alias: str, guards: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {pattern.alias: {"$and": [c.json for c in pattern_clauses(pattern, first_alias, guards)]}}


def join_guards(patterns: Sequence[ir.Pattern]) -> dict[str, frozenset[str]]:
    """For each alias, the fields that other patterns of the same engine rule join on."""
    guards: dict[str, set[str]] = {}
    for pattern in patterns:
        for test in pattern.all_tests():
            if isinstance(test.operand, ir.Ref):
                guards.setdefault(test.operand.alias, set()).add(test.operand.field)
    return {alias: frozenset(fields) for alias, fields in guards.items()}


def stratum_json(stratum: Stratum) -> dict[str, Any]:
    rules: dict[str, Any] = {SENTINEL_RULE: {"all": [{"m": {"type": SENTINEL_TYPE}}]}}
    for er in stratum.rules:
        first = er.patterns[0].alias
        guards = join_guards(er.patterns)
        rules[er.name] = {"all": [pattern_json(p, first, guards.get(p.alias, frozenset())) for p in er.patterns]}
    return rules


def rule_shapes(stratum: Stratum) -> list[RuleShape]:
    """The engine rules of a stratum as :mod:`durable_limits` checks them: the same clauses as
    :func:`stratum_json` gives the engine, the sentinel rule included."""
    sentinel = PatternShape("m", SENTINEL_TYPE, (Clause({"type": SENTINEL_TYPE}, None),), None)
    shapes = [RuleShape(SENTINEL_RULE, None, (sentinel,))]
    for er in stratum.rules:
        first = er.patterns[0].alias
        guards = join_guards(er.patterns)
        patterns = tuple(
            PatternShape(
                p.alias, p.fact_type, tuple(pattern_clauses(p, first, guards.get(p.alias, frozenset()))), p.location
            )
            for p in er.patterns
        )
        shapes.append(RuleShape(er.name, er.rule, patterns))
    return shapes


def check_limits(stratum: Stratum, where: str) -> list[Problem]:
    """The engine's hard limits (engine-notes.md) that the engine ruleset of one stratum can cross."""
    return durable_limits.check_rules(rule_shapes(stratum), where)


def _check_program_keyed(program: Program) -> durable_limits.Keyed:
    problems = durable_limits.check_derived(program.rules)
    for stratum in program.strata:
        problems.extend(durable_limits.check_rules_keyed(rule_shapes(stratum), f"stratum {stratum.index}"))
    return problems


def check_program(program: Program) -> list[Problem]:
    """Every hard limit of durable-rules that a program can cross: checked before any ``create_ruleset``, which
    never returns past some of them."""
    return [problem for _, problem in _check_program_keyed(program)]


def limit_problems(ruleset: Ruleset) -> list[Problem]:
    """:func:`check_program` under every profile of the ruleset (parameter values change the conditions, so
    what one profile builds another may not). A problem found under several profiles is listed once, naming
    the first in the manifest's order. Needs no C extension: ``ipm-cds validate`` runs it everywhere."""
    seen: set[Hashable] = set()
    out: list[Problem] = []
    for profile in ruleset.manifest.profiles:
        for key, problem in _check_program_keyed(build_program(ruleset, profile)):
            if key not in seen:
                seen.add(key)
                out.append(replace(problem, message=f"{problem.message}, under profile {profile}"))
    return out


# create_ruleset's error codes (durable-rules rules.h) that a compiled ruleset can reach, in words.
_CREATE_ERRORS = {
    106: f"more than {MAX_RULES_PER_RULESET} engine rules in one stratum",
    107: "more than 128 any_of branches, in values and absence tests end on one identical condition",
    108: f"more than {MAX_RULES_ON_IDENTICAL_CONDITION + 1} engine rules share one condition",
}


def _create_error(stratum: Stratum, exc: Exception) -> RulesetError:
    match = re.search(r"error code: (\d+)", str(exc))
    code = int(match.group(1)) if match else None
    meaning = _CREATE_ERRORS.get(code or 0, "a limit of the engine")
    return RulesetError(
        [
            Problem(
                f"durable-rules cannot run stratum {stratum.index} of this ruleset "
                f"(error {code if code is not None else exc}: {meaning})",
                hint="vary the rules' leading conditions, split the rules over more strata, or use the python backend",
            )
        ]
    )


def _discard_state(handle: int, sid: str, state: int | None, started: bool, *, quiet: bool) -> None:
    """Delete the state of ``sid`` on every path of an evaluation, failures included.

    * ``assert_facts`` can raise after it created the state (error 303 when too many sibling conditions hold
      at once, for example): the state then stays live unless it is deleted here, and past 1,024 live states
      the engine raises MemoryError and corrupts the ruleset. When it raised before creating any state,
      deleting answers error 309 (no such sid), which is not a failure.
    * ``delete_state`` and ``abandon_action`` free the state's action context, which the engine leaves
      uninitialised until an action is started (valgrind: conditional jumps on uninitialised values in
      ``deleteStateNode``; engine-notes: a state in which no action ran corrupts the heap when deleted). The
      sentinel rule starts one in every evaluation that gets that far; on the paths that fail earlier
      (``assert_facts`` raised, or returned a code we refuse) a sentinel is asserted and its action started
      and abandoned here first, so that the context is set before the state is deleted.
    * A state touched by ``abandon_action`` is never reused (engine-notes: reusing one crashed under
      AddressSanitizer): it is deleted here, and every evaluation takes a fresh sid.

    ``quiet``: an error is already on its way, and a failure to delete must not hide it.
    """
    assert _engine is not None
    if not started:
        with contextlib.suppress(Exception):  # best effort: the state is deleted below whatever happens here
            if state is None:
                sentinel = f'{{"type": "{SENTINEL_TYPE}", "id": "sentinel-discard", "_t": 1, "sid": "{sid}"}}'
                _, state = _engine.assert_fact(handle, sentinel)
            if _engine.start_action_for_state(handle, state):
                _engine.abandon_action(handle, state)
    try:
        _engine.delete_state(handle, sid)
    except Exception as exc:
        if "error code: 309" in str(exc) or quiet:
            return
        raise EngineFaultError(f"durable-rules could not delete a state: {exc}") from exc


Gate = Callable[[Fact], bool]


def _check_fact(fact: Fact) -> None:
    """Fail closed on a fact the engine would mishandle (every fact given to a stratum that reads its type,
    asserted or not): past the property limit it is silently dropped, and our own attributes are reserved."""
    if len(fact.values) + ENGINE_ATTRIBUTES > MAX_FACT_PROPERTIES:
        raise EngineFaultError(
            f"fact {fact.label} has {len(fact.values) + ENGINE_ATTRIBUTES} properties; the engine drops "
            f"facts over {MAX_FACT_PROPERTIES}"
        )
    if RESERVED & fact.values.keys():
        raise EngineFaultError(f"fact {fact.label} uses an attribute the engine reserves")


def _gates(stratum: Stratum) -> dict[str, Gate]:
    """Per fact type of the stratum, whether a fact could match any of its patterns of that type, judged on the
    patterns' equalities with constants (``eq``, ``in``) alone; no gate where some pattern has none."""
    needs: dict[str, list[tuple[tuple[str, frozenset[object]], ...]] | None] = {}
    for er in stratum.rules:
        for pattern in er.patterns:
            constants = tuple(
                (t.field, frozenset(t.operand if isinstance(t.operand, tuple) else (t.operand,)))
                for t in pattern.tests
                if isinstance(t, ir.Test)
                and t.op in ("eq", "in")
                and not isinstance(t.operand, ir.Ref | ir.Param)
                and t.operand is not None
            )
            known = needs.setdefault(pattern.fact_type, [])
            if known is None or not constants:
                needs[pattern.fact_type] = None  # this pattern takes any fact of the type
            else:
                known.append(constants)
    return {fact_type: _gate(tuple(alternatives)) for fact_type, alternatives in needs.items() if alternatives}


def _gate(alternatives: tuple[tuple[tuple[str, frozenset[object]], ...], ...]) -> Gate:
    def admits(fact: Fact) -> bool:
        values = fact.values
        for constants in alternatives:
            for field, allowed in constants:
                value = values.get(field)
                if value is None or value not in allowed:
                    break
            else:
                return True
        return False

    return admits


class DurableBackend:
    """Runs programs on durable-rules. One instance per engine; handles live as long as it does."""

    name = "durable"

    def __init__(self) -> None:
        require()
        self._handles: dict[int, int] = {}
        self._refs: dict[str, str] = {}  # engine rule name -> rule id@version, for error messages
        self._reads: dict[int, frozenset[str]] = {}  # stratum -> the fact types its patterns read
        self._gates: dict[int, dict[str, Gate]] = {}  # stratum -> fact type -> could a fact match there
        self._first_stratum = 0
        # id(fact) -> (fact, JSON text without id, _t, sid and the closing brace): a fact is written once per
        # evaluation, not once per stratum. The entry holds the fact, so its id cannot be reused meanwhile.
        self._texts: dict[int, tuple[Fact, str]] = {}
        # id(fact) -> fact, for facts left out of a stratum once checked: checked once per evaluation, not per
        # stratum (the entry holds the fact, as above; a fact that is written is checked by _text)
        self._checked: dict[int, Fact] = {}

    def prepare(self, program: Program) -> None:
        # Before any create_ruleset: past some limits it never returns, holding the GIL (engine-notes.md).
        problems = check_program(program)
        if problems:
            raise RulesetError(problems)
        assert _engine is not None
        self._refs = {er.name: er.rule.ref for stratum in program.strata for er in stratum.rules}
        self._reads = {s.index: frozenset(p.fact_type for er in s.rules for p in er.patterns) for s in program.strata}
        self._gates = {s.index: _gates(s) for s in program.strata}
        self._first_stratum = program.strata[0].index if program.strata else 0
        for stratum in program.strata:
            text = dumps(stratum_json(stratum))
            name = f"ipm_cds_{next(_RULESET_NAMES)}"
            with _LOCK:
                try:
                    self._handles[stratum.index] = _engine.create_ruleset(name, text)
                except Exception as exc:  # a limit of the engine that check_program does not model
                    error = _create_error(stratum, exc)
                else:
                    continue
            self.close()  # the strata already created are not left behind
            raise error

    def run_stratum(
        self,
        stratum: Stratum,
        facts: Sequence[Fact],
        on_fire: OnFire,
        by_type: Mapping[str, Sequence[Fact]] | None = None,  # (the engine indexes the facts itself)
    ) -> None:
        assert _engine is not None
        handle = self._handles[stratum.index]
        reads = self._reads[stratum.index]
        with _LOCK:
            if stratum.index == self._first_stratum or max(len(self._texts), len(self._checked)) > _TEXT_CACHE_SIZE:
                self._texts.clear()  # a new evaluation: the facts of the last one are not asked for again
                self._checked.clear()
            checked = self._checked
            sid = str(next(_SIDS))
            by_id: dict[str, Fact] = {}
            counter = itertools.count()
            tail = f', "_t": 1, "sid": "{sid}"}}'

            def encode(fact: Fact) -> str:
                """The fact's JSON: ``json.dumps`` of its values, type, key, id, ``_t`` and sid, in that order."""
                fid = f"f{next(counter)}"
                by_id[fid] = fact
                return self._text(fact) + f', "id": "{fid}"' + tail

            # A fact of a type no pattern of the stratum reads can match nothing there: it is not asserted.
            payload = [f'{{"type": "{SENTINEL_TYPE}", "id": "sentinel", "_t": 1, "sid": "{sid}"}}']
            # Nor is one that no pattern of its type could take: a field every such pattern requires to equal a
            # constant (a kind, a test, a code) holds another value, or none (an absent field is never equal).
            gates = self._gates[stratum.index]
            for f in facts:
                if f.type not in reads:
                    continue
                gate = gates.get(f.type)
                if gate is None or gate(f):
                    payload.append(encode(f))  # _text checks the fact the first time it writes it
                elif checked.get(id(f)) is not f:  # left out here, it must still fit the engine: fail closed
                    _check_fact(f)
                    checked[id(f)] = f
            state: int | None = None  # the state's offset, once assert_facts has returned it
            started = False  # whether an action was started on the state (its action context is set)
            current: str | None = None
            failed = True
            try:
                try:
                    code, state = _engine.assert_facts(handle, "[" + ", ".join(payload) + "]")
                except Exception as exc:  # the C extension raises its own error type: fail closed, clearly
                    raise EngineFaultError(f"durable-rules could not assert the facts: {exc}") from exc
                if code not in OK_CODES:
                    raise EngineFaultError(
                        f"durable-rules refused the facts (code {code})",
                        hint="an 'observed' code means two facts share an id",
                    )
                result = _engine.start_action_for_state(handle, state)
                started = True
                message = result[1] if result else None
                seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
                while message:
                    frame = from_json(message)  # pydantic-core: twice as fast as json.loads on these frames
                    ((current, binding),) = frame.items()
                    # A pattern with $or fires once per true branch (measured, see docs/engine.md): each
                    # combination of facts must fire a rule once, so repeats are completed and ignored.
                    signature = (current, tuple(sorted((a, o["id"]) for a, o in binding.items())))
                    if current != SENTINEL_RULE and signature not in seen:
                        seen.add(signature)  # the firing cap is the driver's, counted in on_fire for both backends
                        bound = {alias: by_id[obj["id"]] for alias, obj in binding.items()}
                        for new in on_fire(current, bound):
                            code, _ = _engine.assert_fact(handle, encode(new))
                            if code not in OK_CODES:
                                raise EngineFaultError(
                                    f"durable-rules refused a derived fact (code {code})",
                                    rule=self._refs.get(current, current),
                                )
                    message = _engine.complete_and_start_action(handle, state)
                    current = None
                failed = False
            except IpmCdsError:
                if current is not None:
                    with contextlib.suppress(Exception):
                        _engine.abandon_action(handle, state)
                raise
            except Exception as exc:  # an error of the C extension itself
                if current is not None:
                    with contextlib.suppress(Exception):
                        _engine.abandon_action(handle, state)
                raise EngineFaultError(
                    f"durable-rules failed: {exc}", rule=self._refs.get(current or "", current)
                ) from exc
            except BaseException:
                if current is not None:
                    # The original error is what matters; the state is deleted below either way.
                    with contextlib.suppress(Exception):
                        _engine.abandon_action(handle, state)
                raise
            finally:
                _discard_state(handle, sid, state, started, quiet=failed)

    def _text(self, fact: Fact) -> str:
        entry = self._texts.get(id(fact))
        if entry is not None and entry[0] is fact:
            return entry[1]
        _check_fact(fact)
        body = {**fact.values, "type": fact.type, "key": fact.key}
        text = _compact_json(body) if all(_plain(v) for v in fact.values.values()) else dumps(body)
        text = text[:-1]
        self._texts[id(fact)] = (fact, text)
        return text

    def close(self) -> None:
        if _engine is None:
            return
        with _LOCK:
            for handle in self._handles.values():
                with contextlib.suppress(Exception):  # nothing useful to do at teardown
                    _engine.delete_ruleset(handle)
            self._handles.clear()
