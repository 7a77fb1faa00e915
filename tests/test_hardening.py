"""Hardening: hostile rule files, hostile patients, facts at the engine's limits, injected faults, threads.

Everything here is bounded for CI (a few seconds per test). ``IPM_CDS_STRESS=full`` runs the full-size
versions (20,000 threaded evaluations, more fuzz examples); see docs/performance.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.engine import closures, compiled, driver, durable_backend, gates
from ipm_cds.engine.match import index_by_type, matches
from ipm_cds.errors import EngineFaultError, EvaluationError, FiringLimitError, PatientDataError, RulesetError
from ipm_cds.model.facts.normalise import Fact, normalise
from ipm_cds.model.facts.schema import BASE_FACT_TYPES
from ipm_cds.model.patient import PatientCase
from ipm_cds.ruleset import yamlsrc
from ipm_cds.ruleset.loader import bundled_ruleset_path
from ipm_cds.testing.strategies import patients, raw_patient_documents

from .conftest import AS_OF, RFA_PATIENT, run_in_threads

FULL = os.environ.get("IPM_CDS_STRESS") == "full"
# every hostile input is refused well within this many CPU seconds of this process (CPU, not wall time: on a
# loaded machine, xdist workers and other jobs stretch wall time without the refusal doing more work)
TIME_BOUND_S = 5.0
MEMORY_BOUND_MB = 64.0


@pytest.fixture
def ruleset_copy(tmp_path: Path) -> Path:
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    return root


def refused(root: Path) -> tuple[str, float]:
    """Load ``root``: it must fail with a RulesetError. Returns the report and the CPU seconds it took."""
    started = time.process_time()
    with pytest.raises(RulesetError) as info:
        ipm_cds.load_ruleset(root)
    return info.value.report(), time.process_time() - started


# -- hostile rule files ------------------------------------------------------------------------------------------

_ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
)

HOSTILE_FILES: dict[str, tuple[bytes, str]] = {
    "alias bomb": (_ALIAS_BOMB.encode(), "expands to more than"),
    "deep flow nesting": (b"rules: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nesting deeper than"),
    "deep block nesting": (b"rules:\n" + b"- " * 5000 + b"x\n", "nesting deeper than"),
    "deep mapping nesting": (b"rules: " + b"{a: " * 3000 + b"1" + b"}" * 3000 + b"\n", "nesting deeper than"),
    "python object tag": (b"rules: !!python/object/apply:os.system [echo hi]\n", "is not allowed in rule files"),
    "python name tag": (b"rules:\n  - !!python/name:os.system\n", "is not allowed in rule files"),
    "custom tag": (b"rules: !include ../../secrets.yaml\n", "is not allowed in rule files"),
    "non-UTF-8 bytes": (b"rules:\n  - id: caf\xe9\n", "not valid UTF-8"),
    "UTF-16": ("rules: []\n".encode("utf-16"), "not valid UTF-8"),
    "oversize": (b"rules: '" + b"x" * (yamlsrc.MAX_DOCUMENT_BYTES + 1) + b"'\n", "byte limit"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_rule_file_is_refused_quickly_and_clearly(ruleset_copy: Path, name: str) -> None:
    content, expected = HOSTILE_FILES[name]
    path = ruleset_copy / "rules" / "zz-hostile.yaml"
    path.write_bytes(content)
    report, elapsed = refused(ruleset_copy)
    assert expected in report
    assert "ipm-core/rules/zz-hostile.yaml:" in report, report  # the file (and a line:col) is named
    assert elapsed < TIME_BOUND_S, f"{name}: refused after {elapsed:.1f} s"
    # The file alone, with its memory measured: refused before anything large is built.
    tracemalloc.start()
    try:
        with pytest.raises(RulesetError):
            yamlsrc.load_yaml_file(path)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND_MB, f"{name}: {peak:.0f} MB allocated before refusing"


def test_deep_nesting_is_refused_without_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-Python composer recurses once per level; the stack running out is a clear error too."""
    monkeypatch.setattr(yamlsrc, "_FAST_LOADER", yaml.SafeLoader)
    for text in ("a: " + "[" * 3000 + "]" * 3000 + "\n", "- " * 3000 + "x\n"):
        started = time.process_time()
        with pytest.raises(RulesetError, match="nesting deeper than"):
            yamlsrc.load_yaml(text, "f.yaml")
        assert time.process_time() - started < TIME_BOUND_S
    assert sys.getrecursionlimit() > 0  # the interpreter is intact afterwards


@pytest.mark.parametrize(
    "entry", ["../outside.yaml", "../*.yaml", "rules/../../outside.yaml", "/etc/hostname", "link.yaml"]
)
def test_manifest_cannot_include_files_outside_its_folder(ruleset_copy: Path, entry: str) -> None:
    outside = ruleset_copy.parent / "outside.yaml"
    outside.write_text("rules: []\n", encoding="utf-8")
    (ruleset_copy / "link.yaml").symlink_to(outside)  # a symlink that leads out of the folder
    manifest = ruleset_copy / "ruleset.yaml"
    text = manifest.read_text(encoding="utf-8")
    assert '  - "rules/*.yaml"' in text
    manifest.write_text(text.replace('  - "rules/*.yaml"', f'  - "rules/*.yaml"\n  - "{entry}"'), encoding="utf-8")
    report, elapsed = refused(ruleset_copy)
    assert "is outside the ruleset folder" in report
    assert elapsed < TIME_BOUND_S


def test_symlinked_rule_file_in_a_glob_is_refused(ruleset_copy: Path) -> None:
    outside = ruleset_copy.parent / "outside.yaml"
    outside.write_text("rules: []\n", encoding="utf-8")
    (ruleset_copy / "rules" / "zz-link.yaml").symlink_to(outside)
    report, _ = refused(ruleset_copy)
    assert "'rules/zz-link.yaml' is outside the ruleset folder" in report


def test_hostile_patient_yaml_file_is_refused(tmp_path: Path) -> None:
    """Patient files are read with the same bounded reader (``ipm-cds evaluate patient.yaml``)."""
    from ipm_cds.cli import main

    for name, (content, _) in HOSTILE_FILES.items():
        path = tmp_path / "patient.yaml"
        path.write_bytes(content.replace(b"rules", b"pain"))
        started = time.process_time()
        assert main(["evaluate", str(path), "--as-of", "2025-06-02"]) == 4, name
        assert time.process_time() - started < TIME_BOUND_S, name


def test_deeply_nested_patient_json_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import main

    path = tmp_path / "patient.json"
    path.write_text('{"pain": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    assert main(["evaluate", str(path), "--as-of", "2025-06-02"]) == 4
    assert "invalid JSON: nested too deeply at line 1 column" in capsys.readouterr().err


def test_a_patient_json_file_with_a_huge_number_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import main

    path = tmp_path / "patient.json"
    path.write_text('{"pain": [{"nrs": ' + "9" * 5000 + "}]}", encoding="utf-8")
    assert main(["evaluate", str(path), "--as-of", "2025-06-02"]) == 4
    err = capsys.readouterr().err
    assert "invalid JSON: number too large at line 1 column" in err and "set_int_max_str_digits" not in err


def test_deeply_nested_patient_json_is_refused_by_the_library_and_batch(durable: ipm_cds.Engine) -> None:
    text = '{"pain": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(PatientDataError, match="recursion limit"):
        durable.evaluate(text, as_of=AS_OF)
    from ipm_cds.serving.batch import evaluate_many

    (result,) = evaluate_many([text], as_of=AS_OF)
    assert result.error is not None and result.error["type"] == "PatientDataError"


# -- hostile patients --------------------------------------------------------------------------------------------


def _outcome(engine: ipm_cds.Engine, document: Any) -> str:
    try:
        assessment = engine.evaluate(document, as_of=AS_OF, timestamp=False)
    except PatientDataError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return "rejected: " + exc.report()
    data = json.loads(assessment.to_json(timestamp=False))
    data["provenance"].pop("backend")
    return json.dumps(data, sort_keys=True)


@settings(max_examples=2000 if FULL else 150, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw_patient_documents())
def test_fuzz_hostile_documents_same_answer_on_both_backends(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, document: Any
) -> None:
    """Rejected with the same problems, or assessed identically; never a crash, a hang or a different answer."""
    started = time.process_time()
    assert _outcome(durable, document) == _outcome(python_engine, document)
    assert time.process_time() - started < TIME_BOUND_S


@pytest.mark.parametrize("as_json", [False, True])
def test_huge_lists_are_rejected_quickly(durable: ipm_cds.Engine, as_json: bool) -> None:
    item = {"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-01", "relief_pct": 90}
    document: Any = {"pain": [{"region": "lumbar", "character": "axial"}], "procedures": [item] * 200_000}
    document = json.dumps(document) if as_json else document
    started = time.process_time()
    with pytest.raises(PatientDataError, match="procedures"):
        durable.evaluate(document, as_of=AS_OF)
    assert time.process_time() - started < TIME_BOUND_S


def test_every_list_at_its_cap_is_assessed_identically(durable: ipm_cds.Engine, python_engine: ipm_cds.Engine) -> None:
    """Every list of the patient model at its cap (items recorded twice with the same content are one fact, so
    about 700 facts here): both backends, the same answer."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from benchmarks.workloads import sized_patient
    finally:
        sys.path.pop(0)
    document = sized_patient(100, durable.ruleset)
    case = PatientCase.model_validate(document)
    assert all(len(getattr(case, name)) == 100 for name in ("imaging", "procedures", "medications", "labs"))
    facts = normalise(case, AS_OF, durable.ruleset.normalise_context())
    distinct = {(f.type, tuple(sorted(f.values.items()))) for f in facts}
    assert len(facts) == len(distinct) > 600
    started = time.process_time()
    assert _outcome(durable, document) == _outcome(python_engine, document)
    assert time.process_time() - started < 4 * TIME_BOUND_S


def test_no_fact_type_can_reach_the_engine_property_limit() -> None:
    """engine-notes §4: a fact with more than 252 properties is silently dropped. Ours carry 5 of our own."""
    for fact_type in BASE_FACT_TYPES.values():
        assert len(fact_type.fields) + 5 <= durable_backend.MAX_FACT_PROPERTIES, fact_type.name


def test_a_fact_over_the_property_limit_fails_closed(durable: ipm_cds.Engine) -> None:
    backend = durable._backend
    stratum = durable.program.strata[0]
    wide = Fact("pain", "pain#0", {f"x{i}": i for i in range(durable_backend.MAX_FACT_PROPERTIES)}, "pain")

    def never(name: str, bound: dict[str, Fact]) -> list[Fact]:  # pragma: no cover - nothing may fire
        raise AssertionError(name)

    with pytest.raises(EngineFaultError, match="properties"):
        backend.run_stratum(stratum, [wide], never)
    assert durable.evaluate(RFA_PATIENT, as_of=AS_OF).codes()["candidates"] == ["facet_rfa"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), "x" * 70_000),  # longer than the engine compares reliably (65,535): refused by the model
        (("medications", 0, "agent"), "w" * 70_000),
        (("allergies", 0, "reaction"), "r" * 70_000),
        (("demographics", "age_years"), 10**30),
        (("procedures", 0, "relief_pct"), 2**63),
        (("procedures", 0, "relief_duration_weeks"), 1e308),
    ],
)
def test_values_past_the_engine_limits_are_rejected(durable: ipm_cds.Engine, path: tuple[Any, ...], value: Any) -> None:
    document: Any = json.loads(json.dumps({**RFA_PATIENT, "allergies": [{"substance": "latex"}]}))
    target = document
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value
    with pytest.raises(PatientDataError):
        durable.evaluate(document, as_of=AS_OF)


@pytest.mark.parametrize("tiny", [1e-7, 5e-324, 0.0000005, 0.9999995])
def test_floats_at_the_precision_edge_agree(
    durable: ipm_cds.Engine, python_engine: ipm_cds.Engine, tiny: float
) -> None:
    """Exponent notation is misread by the engine; six-decimal facts are written in fixed notation."""
    document = {**RFA_PATIENT, "procedures": [dict(p, relief_duration_weeks=tiny) for p in RFA_PATIENT["procedures"]]}
    assert _outcome(durable, document) == _outcome(python_engine, document)


_PROBE_RULE = """  - id: probe.r{n}
    version: 1.0.0
    status: active
    title: Probe {n}
    criteria: [RF-CES-01]
    evidence: {{strength: strong, quality: not_graded, sources: [bmj_ces]}}
    when:
{when}
    then:
      - alert: {{code: probe.a{n}, severity: info, message: "probe {n}"}}
"""


def _with_rules(root: Path, count: int, when: str) -> ipm_cds.Ruleset:
    body = "".join(_PROBE_RULE.format(n=n, when=when.format(a=n % 11, b=n % 101)) for n in range(count))
    (root / "rules" / "zz-probe.yaml").write_text("rules:\n" + body, encoding="utf-8")
    return ipm_cds.load_ruleset(root, with_tests=False)


def test_too_many_joined_patterns_of_one_type_are_refused_not_hung(ruleset_copy: Path) -> None:
    """engine-notes §4: past 511 conditions under one shared condition, create_ruleset never returns. A join
    is a new condition every time (measured), so 520 patterns of one type that join would hang the process."""
    ruleset = _with_rules(
        ruleset_copy,
        520,
        "      pain: {{type: pain, nrs: {{gte: {a}}}}}\n"
        "      block: {{type: procedure, region: {{same_as: pain.region}}, relief_pct: {{gte: {b}}}}}",
    )
    started = time.process_time()
    with pytest.raises(RulesetError, match="hangs past 511"):
        ipm_cds.Engine(ruleset, backend="durable")
    assert time.process_time() - started < TIME_BOUND_S
    assert ipm_cds.Engine(ruleset, backend="python").evaluate(RFA_PATIENT, as_of=AS_OF).alerts


def test_more_joins_than_the_engine_evaluates_at_once_are_refused(ruleset_copy: Path) -> None:
    """Every join under a fact type holds at once for a fact of that type; past 64, durable-rules refuses the
    fact (error 303) and every patient with such a fact would fail. Refused when the engine is built."""
    ruleset = _with_rules(
        ruleset_copy,
        70,
        "      pain: {{type: pain, nrs: {{gte: {a}}}}}\n"
        "      block: {{type: procedure, region: {{same_as: pain.region}}, relief_pct: {{gte: {b}}}}}",
    )
    with pytest.raises(RulesetError, match="error 303"):
        ipm_cds.Engine(ruleset, backend="durable")
    # 40 such rules are fine, on both backends, with the same answer
    ruleset = _with_rules(
        ruleset_copy,
        40,
        "      pain: {{type: pain, nrs: {{gte: {a}}}}}\n"
        "      block: {{type: procedure, region: {{same_as: pain.region}}, relief_pct: {{gte: {b}}}}}",
    )
    durable, python = ipm_cds.Engine(ruleset, backend="durable"), ipm_cds.Engine(ruleset, backend="python")
    assert _outcome(durable, RFA_PATIENT) == _outcome(python, RFA_PATIENT)


def test_too_many_any_of_under_one_condition_are_refused(ruleset_copy: Path) -> None:
    """Each in/any_of is a new engine condition ($or); 140 under one condition cross two limits (128: error
    107 at create_ruleset; 64 at once: error 303 for a matching fact). Refused when the engine is built."""
    ruleset = _with_rules(
        ruleset_copy,
        140,
        "      pain: {{type: pain, region: lumbar, character: {{in: [axial, radicular]}}, nrs: {{gte: {a}}}}}",
    )
    with pytest.raises(RulesetError) as info:
        ipm_cds.Engine(ruleset, backend="durable")
    messages = " ".join(p.message for p in info.value.problems)
    assert "(error 107)" in messages
    assert "(error 303)" in messages
    assert ipm_cds.Engine(ruleset, backend="python").evaluate(RFA_PATIENT, as_of=AS_OF).alerts


def test_engine_refusals_at_load_are_ruleset_errors(ruleset: ipm_cds.Ruleset, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error code of create_ruleset that the checks above do not foresee is a clear RulesetError naming
    the stratum, not the C extension's own exception."""
    real = durable_backend._engine
    created: list[int] = []

    def create(name: str, text: str) -> int:
        if len(created) == 2:
            raise real.error("Could not create ruleset, error code: 107")
        created.append(real.create_ruleset(name, text))
        return created[-1]

    monkeypatch.setattr(durable_backend, "_engine", _Engine(real, create_ruleset=create))
    with pytest.raises(RulesetError, match=r"stratum 2 .*error 107: more than 128"):
        ipm_cds.Engine(ruleset, backend="durable")


# -- fail closed: injected faults ----------------------------------------------------------------------------------


class _Engine:
    """Delegates to the real C extension; ``faults`` replace chosen functions."""

    def __init__(self, real: Any, **faults: Any) -> None:
        self._real, self._faults = real, faults

    def __getattr__(self, name: str) -> Any:
        return self._faults.get(name) or getattr(self._real, name)


def _recovers(engine: ipm_cds.Engine) -> None:
    assert engine.evaluate(RFA_PATIENT, as_of=AS_OF).codes()["candidates"] == ["facet_rfa"]


def test_a_refused_derived_fact_fails_closed_naming_the_rule(
    durable: ipm_cds.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = durable_backend._engine
    monkeypatch.setattr(durable_backend, "_engine", _Engine(real, assert_fact=lambda handle, text: (3, 0)))
    with pytest.raises(EngineFaultError, match="refused a derived fact") as info:
        durable.evaluate(RFA_PATIENT, as_of=AS_OF)
    assert info.value.rule in {r.ref for r in durable.program.rules}
    monkeypatch.setattr(durable_backend, "_engine", real)
    _recovers(durable)


def test_an_error_of_the_c_extension_mid_evaluation_fails_closed_naming_the_rule(
    durable: ipm_cds.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = durable_backend._engine

    calls = [0]

    def broken(handle: int, state: int) -> Any:
        calls[0] += 1
        if calls[0] == 3:  # after the sentinel's frame and one rule's: the rule being completed is named
            raise real.error("Could not complete action, error code: 302")
        return real.complete_and_start_action(handle, state)

    monkeypatch.setattr(durable_backend, "_engine", _Engine(real, complete_and_start_action=broken))
    with pytest.raises(EngineFaultError, match="302") as info:
        durable.evaluate(RFA_PATIENT, as_of=AS_OF)
    assert info.value.rule in {r.ref for r in durable.program.rules}
    monkeypatch.setattr(durable_backend, "_engine", real)
    _recovers(durable)


@pytest.mark.parametrize("backend", ["durable", "python"])
def test_an_exception_in_an_action_fails_closed_on_both_backends(
    ruleset: ipm_cds.Ruleset, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    real = driver.derived_fact

    def broken(type_name: str, values: Any, memo: Any = None) -> Any:
        if type_name == "candidate":
            raise ValueError("injected")
        return real(type_name, values, memo)

    monkeypatch.setattr(driver, "derived_fact", broken)
    with pytest.raises(EvaluationError, match="injected") as info:
        engine.evaluate(RFA_PATIENT, as_of=AS_OF)
    assert info.value.rule in {r.ref for r in engine.program.rules}
    monkeypatch.setattr(driver, "derived_fact", real)
    _recovers(engine)


def test_failed_evaluations_never_leak_engine_states(ruleset: ipm_cds.Ruleset, monkeypatch: pytest.MonkeyPatch) -> None:
    """durable-rules refuses a 1025th live state: 1,100 failures in a row, then a success, prove none leaked.

    The failures are the firing cap and an interrupt (a BaseException, as Ctrl-C raises) inside an action."""
    capped = ipm_cds.Engine(ruleset, backend="durable", firing_cap=1)
    for _ in range(1100):
        with pytest.raises(FiringLimitError):
            capped.evaluate(RFA_PATIENT, as_of=AS_OF)
    engine = ipm_cds.Engine(ruleset, backend="durable")
    real = driver.derived_fact

    def interrupted(type_name: str, values: Any, memo: Any = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "derived_fact", interrupted)
    for _ in range(1100):
        with pytest.raises(KeyboardInterrupt):
            engine.evaluate(RFA_PATIENT, as_of=AS_OF)
    monkeypatch.setattr(driver, "derived_fact", real)
    _recovers(engine)
    _recovers(capped.__class__(ruleset))


# -- the compiled matchers are the reference matcher -----------------------------------------------------------------


def _reference_missing(patterns: Any, by_type: Any) -> Iterator[tuple[dict[str, Fact], list[Any]]]:
    for bound, truth, unknown in matches(patterns, by_type, three_valued=True):
        if truth is None:
            yield bound, unknown


@settings(max_examples=60, deadline=None)
@given(st.one_of(patients(), patients(prior_procedures=True, anticoagulants=True), patients(red_flags=True)))
def test_compiled_matchers_equal_the_reference_matcher(python_engine: ipm_cds.Engine, patient: PatientCase) -> None:
    """The compiled matchers (engine/compiled.py) give what match.py gives: same combinations, same order,
    same unknown fields, for every rule, on the facts a real evaluation ends with (recorded and derived).
    tests/test_compiled_matchers.py does the same for arbitrary patterns."""
    program = python_engine.program
    run = python_engine._run(patient, AS_OF, timestamp=False)[0]
    by_type = index_by_type(run.facts)
    code = compiled.compile_program(program)
    for stratum in program.strata:
        admitted = gates.GateIndex.build([code.gates[er.name] for er in stratum.rules]).admitted(by_type)
        for i, er in enumerate(stratum.rules):
            expected = [bound for bound, _, _ in matches(er.patterns, by_type)]
            assert code.match[er.name](by_type) == expected, er.rule.ref
            assert i in admitted or not expected, f"{er.rule.ref}: its gates leave out a rule that matches"
            ranged = gates.range_gate_of(er.patterns)  # (the python backend's, for a rule without gates)
            if ranged is not None and expected:
                holds = closures.predicate(ranged.op, ranged.bound)
                facts = by_type.get(ranged.fact_type, ())
                assert any((x := f.values.get(ranged.field)) is not None and holds(x) for f in facts), er.rule.ref
    waiting = code.rule_gates.admitted(by_type, three_valued=True)
    lacking = code.rule_fields.may_wait(by_type)
    assert code.rule_waits.waiting(by_type) == sorted(waiting & lacking)  # (both in one walk, as bits)
    for i, rule in enumerate(program.rules):
        expected_missing = list(_reference_missing(rule.patterns, by_type))
        assert code.missing[rule.ref](by_type) == expected_missing, rule.ref
        assert i in waiting or not expected_missing, f"{rule.ref}: its gates leave out a rule that waits for data"
        assert i in lacking or not expected_missing, f"{rule.ref}: left out as reading no missing field, yet waits"
        for firing in (f for f in run.firings if f.rule.id == rule.id):
            for blocker in rule.blockers:
                expected_extend = [(t, u) for _, t, u in driver._extend(blocker.pattern, firing.bindings, by_type)]
                used = {id(f) for f in firing.bindings.values()}
                got = [
                    r
                    for f in by_type.get(blocker.pattern.fact_type, ())
                    if id(f) not in used
                    and (r := code.extend[(rule.id, blocker.index)](f, firing.bindings)) is not None
                ]
                assert got == expected_extend, rule.ref


# -- concurrency ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["durable", "python"])
def test_threads_with_an_aggressive_switch_interval_match_sequential_results(
    ruleset: ipm_cds.Ruleset, backend: str
) -> None:
    """8 threads share one engine, the interpreter switching threads every 10 µs; every result is compared
    with the sequential one. CI: 2,000 evaluations per backend; IPM_CDS_STRESS=full: 20,000."""
    total = 20_000 if FULL else 2_000
    cohort: list[PatientCase] = []

    @settings(max_examples=100, database=None, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(patients(prior_procedures=True, anticoagulants=True))
    def collect(patient: PatientCase) -> None:
        cohort.append(patient)

    collect()
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    expected = [engine.evaluate(p, as_of=AS_OF, timestamp=False).to_json() for p in cohort]
    per_thread = total // 8
    mismatches: list[tuple[int, int]] = []

    def work(worker: int) -> None:
        for k in range(per_thread):
            i = (worker * 7 + k) % len(cohort)
            if engine.evaluate(cohort[i], as_of=AS_OF, timestamp=False).to_json() != expected[i]:
                mismatches.append((worker, i))

    run_in_threads(work)
    assert mismatches == []
