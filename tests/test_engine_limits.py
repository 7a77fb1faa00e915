"""Mutation suite for durable-rules' hard limits (engine-notes.md, its table of hard limits).

Each refused shape is one rule file dropped into a copy of ``ipm-core``: the shapes of the reproductions of
issue 12 (an ``in`` of 500 values, two of 300, an ``any_of`` of 500 branches, one of 70 branches true at once,
a derived fact of 250 fields, 300 rules ending on one condition, an ``in`` of 520 repeated strings) and more
(17 facts in one engine rule, 30 join clauses, 28 joins beside an ``in``, 65 true branches and 501 values on a
fresh fact type, a limit crossed under one profile only). For each, ``ipm-cds validate`` refuses the ruleset
naming the rule file:line:col, the limit and the count, and building a durable engine raises
:class:`~ipm_cds.RulesetError` before ``create_ruleset`` is called (it is replaced by a function that fails the
test: past some limits it never returns).

The converse: the bundled ruleset and shapes just inside every limit validate, build and answer like the
python backend. Those builds run in a subprocess under a timeout, so a wrong model fails the test, not hangs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ipm_cds
from ipm_cds import RulesetError
from ipm_cds.cli import EXIT_RULESET, main
from ipm_cds.engine import durable_backend, durable_limits
from ipm_cds.engine.program import build_program
from ipm_cds.ruleset.loader import bundled_ruleset_path

MUTATION_FILE = "rules/zz-mut.yaml"
SHOWN = "ipm-core/" + MUTATION_FILE
BUILD_TIMEOUT_S = 60


def rule(rule_id: str, when: str, *, then: str | None = None, unless: str | None = None) -> str:
    """One rule of a mutation file; ``when``/``unless``/``then`` are YAML bodies, indented by this function."""
    text = (
        f"  - id: {rule_id}\n    version: 1.0.0\n    status: active\n    title: mutation {rule_id}\n"
        "    criteria: [MD-PT]\n    evidence: {strength: strong, quality: moderate, sources: [acp_2017]}\n"
        "    when:\n" + textwrap.indent(when.strip("\n"), "      ") + "\n"
    )
    if unless:
        text += "    unless:\n" + textwrap.indent(unless.strip("\n"), "      ") + "\n"
    then = then or f"- alert: {{code: {rule_id}, severity: info, message: mutation fired}}"
    return text + "    then:\n" + textwrap.indent(then.strip("\n"), "      ") + "\n"


def derive(fact: str, fields: int) -> str:
    """A rule deriving ``fact`` (nrs, and fields f0..f{n-1}) from a pain fact's NRS: a type no bundled rule reads."""
    values = "".join(f", f{i}: p.nrs" for i in range(fields))
    return rule(
        f"mut.make_{fact}",
        "p: {type: pain, nrs: {present: true}}",
        then=f"- derive: {{fact: {fact}, set: {{nrs: p.nrs{values}}}}}",
    )


def values(count: int, start: int = 7) -> str:
    return "[" + ", ".join(str(start - i) for i in range(count)) + "]"


def any_of(branches: list[str]) -> str:
    return "any_of:\n" + "".join(f"- {b}\n" for b in branches)


def joins(count: int, extra: str = "") -> str:
    """Two patterns of one derived type, the second joined to the first on ``count`` fields."""
    joined = ", ".join(f"f{i}: {{same_as: a.f{i}}}" for i in range(count))
    return f"a: {{type: wide29}}\nb: {{type: wide29, {joined}{extra}}}"


@dataclass(frozen=True)
class Mutation:
    name: str
    text: str  # the body of the rule file after ``rules:``
    fragment: str  # in the problem's message
    anchor: str | None  # where in the file the problem points (first occurrence), or None: the file only
    profile: str = "cms_lcd"  # the first profile, in the manifest's order, under which it is refused

    def yaml(self) -> str:
        return "rules:\n" + self.text


NO_JOIN_FACTS = "".join(f"a{i}: {{type: pain}}\n" for i in range(16))

REFUSED = [
    # -- the reproductions (/work/shared/repro/rules at the time of issue 12), rebuilt here --------------------
    Mutation(
        "in_500_values",
        rule("mut.big", f"p: {{type: pain, nrs: {{in: {values(500)}}}}}"),
        "hangs past 511",
        "[7, 6, 5",
    ),
    Mutation(
        "two_in_300_values",
        rule("mut.big1", f"p: {{type: pain, nrs: {{in: {values(300, 7)}}}}}")
        + rule("mut.big2", f"p: {{type: pain, nrs: {{in: {values(300, -293)}}}}}"),
        "hangs past 511",
        "[7, 6, 5",
    ),
    Mutation(
        "any_of_500_branches",
        rule(
            "mut.big", "p:\n  type: pain\n  " + any_of([f"{{nrs: {7 - i}}}" for i in range(500)]).replace("\n", "\n  ")
        ),
        "hangs past 511",
        "- {nrs: 7}",
    ),
    Mutation(
        "any_of_70_true_branches",
        rule(
            "mut.anyall",
            "p:\n  type: pain\n  " + any_of([f"{{nrs: {{gt: {-i}}}}}" for i in range(1, 71)]).replace("\n", "\n  "),
        ),
        "(error 303)",
        "- {nrs: {gt: -1}}",
    ),
    Mutation(
        "derive_250_fields",
        derive("wide", 249) + rule("mut.wide_use", "w: {type: wide, f248: {gte: 0}}"),
        "derives a wide fact with 250 fields, 255 properties",
        "id: mut.make_wide",
    ),
    Mutation(
        "same_condition_300_rules",
        "".join(rule(f"mut.same.r{i}", "p: {type: pain, region: lumbar}") for i in range(300)),
        "300 patterns end on one identical condition",
        None,
    ),
    Mutation(
        "in_520_duplicate_strings",
        rule("mut.big", "p: {type: pain, region: {in: [" + ", ".join(["lumbar", "cervical"] * 260) + "]}}"),
        "(error 107)",
        "[lumbar, cervical",
    ),
    # -- more shapes ----------------------------------------------------------------------------------------------
    Mutation(
        "facts_17_with_an_unless_clause",
        rule("mut.facts", NO_JOIN_FACTS, unless="- u: {type: red_flag}"),
        "matches 17 facts at once",
        "id: mut.facts",
    ),
    Mutation(
        "join_clauses_30",
        derive("wide29", 29) + rule("mut.joins", joins(29)),
        "30 join clauses (one of them added by ipm-cds) and 0 any_of",  # 29 written, and the trailing _t join
        "{type: wide29, f0",
    ),
    Mutation(
        "join_clauses_28_beside_an_in",
        derive("wide29", 29) + rule("mut.joins", joins(27, ", nrs: {in: [1, 2]}")),
        "28 join clauses (one of them added by ipm-cds) and 1 any_of",
        "{type: wide29, f0",
    ),
    Mutation(
        "any_of_65_true_branches_on_a_fresh_type",
        derive("probe", 0)
        + rule(
            "mut.any65",
            "q:\n  type: probe\n  " + any_of([f"{{nrs: {{gt: {-i}}}}}" for i in range(1, 66)]).replace("\n", "\n  "),
        ),
        "up to 65 conditions",
        "- {nrs: {gt: -1}}",
    ),
    Mutation(
        "in_501_values_on_a_fresh_type",
        derive("probe", 0) + rule("mut.in501", f"q: {{type: probe, nrs: {{in: {values(501)}}}}}"),
        '501 distinct conditions follow the condition type == "probe"',
        "[7, 6, 5",
    ),
    Mutation(
        # Under cms_lcd (80) the parameter's 10 conditions differ from the 250 literal ones; under
        # society_consensus (50) they are the same condition: 260 patterns end on it.
        "identical_under_one_profile_only",
        derive("probe", 0)
        + "".join(rule(f"mut.lit{i}", "q: {type: probe, nrs: {gte: 50}}") for i in range(250))
        + "".join(
            rule(f"mut.par{i}", "q: {type: probe, nrs: {gte: {param: facet_block_relief_pct}}}") for i in range(10)
        ),
        "260 patterns end on one identical condition (nrs >= 50)",
        None,
        profile="society_consensus",
    ),
]


def location(text: str, anchor: str) -> str:
    """``line:col`` (1-based) of the first occurrence of ``anchor`` in ``text``."""
    before = text[: text.index(anchor)]
    return f"{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the bundled ruleset for the whole module; each test rewrites its one mutation file."""
    root = tmp_path_factory.mktemp("limits") / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    return root


def mutate(root: Path, mutation: Mutation) -> ipm_cds.Ruleset:
    (root / MUTATION_FILE).write_text(mutation.yaml(), encoding="utf-8")
    return ipm_cds.load_ruleset(root, with_tests=False)


class _NoCreate:
    """Stands in for the C extension: building any engine ruleset fails the test."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def create_ruleset(self, name: str, text: str) -> int:
        pytest.fail("create_ruleset was called for a ruleset past a limit of durable-rules")


@pytest.mark.parametrize("mutation", REFUSED, ids=[m.name for m in REFUSED])
def test_validate_and_the_durable_build_refuse_the_mutation(
    workspace: Path, mutation: Mutation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ruleset = mutate(workspace, mutation)
    where = f"{SHOWN}:{location(mutation.yaml(), mutation.anchor)}: " if mutation.anchor else f"{SHOWN}:"
    found = [str(p) for p in durable_backend.limit_problems(ruleset) if mutation.fragment in p.message]
    assert found, [str(p) for p in durable_backend.limit_problems(ruleset)]
    assert all(f.startswith(where) for f in found), found
    assert all(f"under profile {mutation.profile}" in f for f in found), found
    assert all("durable-rules" in f and "(" in f for f in found), found  # the limit, and a hint

    assert main(["validate", str(workspace)]) == EXIT_RULESET
    err = capsys.readouterr().err
    assert "invalid ruleset" in err
    assert any(line in err for line in found), err

    monkeypatch.setattr(durable_backend, "_engine", _NoCreate(durable_backend._engine))
    with pytest.raises(RulesetError) as info:
        ipm_cds.Engine(ruleset, profile=mutation.profile)
    assert any(mutation.fragment in p.message and str(p).startswith(where) for p in info.value.problems)


def test_a_limit_crossed_under_one_profile_only_is_found_under_that_profile(workspace: Path) -> None:
    mutation = next(m for m in REFUSED if m.name == "identical_under_one_profile_only")
    ruleset = mutate(workspace, mutation)
    assert durable_backend.check_program(build_program(ruleset, "cms_lcd")) == []
    assert durable_backend.check_program(build_program(ruleset, "society_consensus"))


def test_comparisons_on_one_field_count_once_per_value_the_field_can_take() -> None:
    """The count of conditions that hold at once tries every value that matters; it agrees with the plain
    count (each comparison tested at that value) on random sets of comparisons."""
    import random

    draw = random.Random(12)
    probes: list[Any] = [-4, -3, -2.5, 0, 0.5, 1, 1.5, 2, 3, 3.5, 4, "a", "b", "c", durable_limits._FRESH]
    for _ in range(500):
        nodes = []
        for _ in range(draw.randint(1, 12)):
            op = draw.choice(["eq", "neq", "lt", "lte", "gt", "gte"])
            pool: list[Any] = [draw.randint(-3, 3), draw.randint(-3, 3) + 0.5, 1.0, "a", "b", True]
            value = draw.choice(pool if op in ("eq", "neq") else pool[:3])
            nodes.append(durable_limits._Node("test", "x", op, value, None))
        count = durable_limits._Scores(nodes)
        for probe in probes:
            assert count(probe) == sum(durable_limits._holds(n.op, n.value, probe) for n in nodes), (nodes, probe)
    # nrs < -k and nrs > k exclude each other: 120 of them, 60 at most at once
    branches = [durable_limits._Node("test", "nrs", "lt", -k, None) for k in range(1, 61)]
    branches += [durable_limits._Node("test", "nrs", "gt", k, None) for k in range(1, 61)]
    assert len(durable_limits._at_once_on(branches)) == 60


def test_the_bundled_ruleset_is_within_every_limit_under_every_profile() -> None:
    ruleset = ipm_cds.load_ruleset(with_tests=False)
    assert durable_backend.limit_problems(ruleset) == []


def test_a_problem_found_under_several_profiles_is_listed_once(workspace: Path) -> None:
    ruleset = mutate(workspace, REFUSED[0])
    found = durable_backend.limit_problems(ruleset)
    assert len(found) == 1
    assert "under profile cms_lcd" in found[0].message


def test_rules_past_the_engine_rule_limit_are_refused() -> None:
    """4096 engine rules (the sentinel counts): a stratum padded with copies of its own rules."""
    from dataclasses import replace

    program = build_program(ipm_cds.load_ruleset(with_tests=False))
    stratum = program.strata[-1]
    at_limit = replace(stratum, rules=(stratum.rules * 4096)[: durable_limits.MAX_RULES_PER_RULESET - 1])
    past = replace(stratum, rules=(stratum.rules * 4096)[: durable_limits.MAX_RULES_PER_RULESET])
    assert not any("error 106" in p.message for p in durable_backend.check_limits(at_limit, "s"))
    assert any("error 106" in p.message for p in durable_backend.check_limits(past, "s"))


# -- the converse: shapes just inside every limit validate, build and answer like the python backend -----------

NEAR_LIMITS = (
    derive("probe", 0)
    # an in of 500 values: 500 conditions after type == "probe", the most checked (the engine holds 511)
    + rule("mut.in500", f"q: {{type: probe, nrs: {{in: {values(500)}}}}}")
    + derive("probe_any", 0)
    # 64 branches that all hold for one fact: the matching stack is full, not past it
    + rule(
        "mut.any64",
        "q:\n  type: probe_any\n  " + any_of([f"{{nrs: {{gt: {-i}}}}}" for i in range(1, 65)]).replace("\n", "\n  "),
    )
    + derive("probe_range", 0)
    # 120 branches, at most 60 of which hold for one value (nrs < -k and nrs > k exclude each other)
    + rule(
        "mut.range120",
        "q:\n  type: probe_range\n  "
        + any_of(
            [f"{{nrs: {{lt: {-k}}}}}" for k in range(1, 61)] + [f"{{nrs: {{gt: {k}}}}}" for k in range(1, 61)]
        ).replace("\n", "\n  "),
    )
    + derive("probe_ex", 0)
    # 300 branches that exclude each other (one field, different values): one holds at a time
    + rule(
        "mut.ex300",
        "q:\n  type: probe_ex\n  " + any_of([f"{{nrs: {7 - i}}}" for i in range(300)]).replace("\n", "\n  "),
    )
    # a derived fact of 247 fields: 252 properties with the five ipm-cds adds
    + derive("wide", 246)
    + rule("mut.wide_use", "w: {type: wide, f245: {gte: 0}}")
    # 29 join clauses in one pattern (28 written, the trailing _t join added): 31 expressions
    + derive("wide29", 29)
    + rule("mut.joins", joins(28))
    # 16 facts in the engine rule of an unless clause
    + rule("mut.facts", "".join(f"a{i}: {{type: pain}}\n" for i in range(15)), unless="- u: {type: red_flag}")
    + derive("probe_same", 0)
    # 255 patterns ending on one condition
    + "".join(rule(f"mut.same{i}", "q: {type: probe_same, nrs: {gte: 0}}") for i in range(255))
)

_BUILD_SCRIPT = """
import json, sys
from datetime import date
import ipm_cds
from ipm_cds.engine import durable_backend
ruleset = ipm_cds.load_ruleset(sys.argv[1], with_tests=False)
patient = json.loads(sys.argv[2])
if len(sys.argv) > 3:
    durable_backend.check_program = lambda program: []  # to see what the engine itself does past the check
else:
    assert durable_backend.limit_problems(ruleset) == [], [str(p) for p in durable_backend.limit_problems(ruleset)]
out = {}
for profile in list(ruleset.manifest.profiles)[: 1 if len(sys.argv) > 3 else None]:
    answers = []
    for backend in ("durable", "python"):
        engine = ipm_cds.Engine(ruleset, profile=profile, backend=backend)
        try:
            answers.append(engine.evaluate(patient, as_of=date(2025, 6, 2)).codes())
        except ipm_cds.IpmCdsError as exc:
            answers.append(str(exc))
    out[profile] = answers
print(json.dumps(out))
"""

PAIN_7 = {"pain": [{"region": "lumbar", "character": "axial", "duration_weeks": 20, "nrs": 7}]}


def build_elsewhere(root: Path, patient: dict[str, Any], *extra: str) -> dict[str, list[Any]]:
    """Load, check and build the ruleset in a fresh process, with a timeout: a wrong model fails, not hangs."""
    source = str(Path(ipm_cds.__file__).resolve().parents[1])  # this checkout's ipm_cds, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _BUILD_SCRIPT, str(root), json.dumps(patient), *extra],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"building the durable engine did not return within {BUILD_TIMEOUT_S} s")
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, list[Any]] = json.loads(done.stdout)
    return result


def test_shapes_just_inside_every_limit_validate_build_and_agree(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutation = Mutation("near_limits", NEAR_LIMITS, "", None)
    ruleset = mutate(workspace, mutation)
    assert durable_backend.limit_problems(ruleset) == []
    assert main(["validate", str(workspace)]) == 0, capsys.readouterr().err
    results = build_elsewhere(workspace, PAIN_7)
    assert set(results) == set(ruleset.manifest.profiles)
    for profile, (durable, python) in results.items():
        assert durable == python, profile
        fired = set(durable["alerts"])
        assert {"mut.in500", "mut.any64", "mut.ex300", "mut.range120", "mut.wide_use", "mut.same0"} <= fired, profile
        assert "mut.same254" in fired, profile


def test_the_stack_bound_is_the_engine_s_own(workspace: Path) -> None:
    """One branch past the checked bound, the engine itself fails the fact (error 303): 65 is refused because
    the engine would refuse it, not from caution (64 passes: see the test above)."""
    ruleset = mutate(workspace, next(m for m in REFUSED if m.name == "any_of_65_true_branches_on_a_fresh_type"))
    assert durable_backend.limit_problems(ruleset)
    (durable, python) = build_elsewhere(workspace, PAIN_7, "--skip-the-check")["cms_lcd"]
    assert isinstance(durable, str)
    assert "error code: 303" in durable
    assert "mut.any65" in python["alerts"]
