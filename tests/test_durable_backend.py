"""The durable backend: engine defects we work around, the hard limits, and failing closed."""

from __future__ import annotations

from typing import Any

import pytest

import ipm_cds
from ipm_cds.engine import driver, durable_backend
from ipm_cds.errors import EngineFaultError, EvaluationError, FiringLimitError

from .conftest import AS_OF, RFA_PATIENT


def codes(engine: ipm_cds.Engine, patient: dict[str, Any]) -> dict[str, list[str]]:
    return engine.evaluate(patient, as_of=AS_OF).codes()


def test_dumps_never_writes_exponent_notation() -> None:
    assert (
        durable_backend.dumps([1e-05, 5e-324, 1e20, -0.0, 0.5, 3])
        == "[0.00001," + "0." + "0" * 323 + "5,100000000000000000000,0,0.5,3]"
    )
    with pytest.raises(EngineFaultError):
        durable_backend.dumps(float("nan"))


def test_tiny_float_does_not_silence_the_engine(durable: ipm_cds.Engine, python_engine: ipm_cds.Engine) -> None:
    """Regression: json.dumps wrote 1e-05 and durable-rules then matched nothing for the patient."""
    patient = {**RFA_PATIENT, "procedures": [dict(p, relief_duration_weeks=0.00001) for p in RFA_PATIENT["procedures"]]}
    assert codes(durable, patient) == codes(python_engine, patient)
    assert codes(durable, patient)["candidates"] == ["facet_rfa"]


def test_or_pattern_fires_once_per_fact(durable: ipm_cds.Engine) -> None:
    """Regression: a pattern with $or fired once per true branch (onset < 14 days AND deteriorating)."""
    patient = {"red_flags": [{"code": "bladder_dysfunction", "onset_date": "2025-05-30", "deteriorating": True}]}
    trace = durable.evaluate(patient, as_of=AS_OF).trace
    assert [t.rule for t in trace] == ["red_flag.cauda_equina@1.1.0"]


def test_exception_inside_an_action_fails_closed_and_engine_recovers(
    durable: ipm_cds.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = durable.evaluate(RFA_PATIENT, as_of=AS_OF, timestamp=False).to_json()
    real = driver.CandidateFacts.__call__

    def broken(self: Any, rec: Any, bound: Any) -> Any:  # a recommendation's action: its candidate fact
        raise RuntimeError("injected fault")

    monkeypatch.setattr(driver.CandidateFacts, "__call__", broken)
    first = next(durable_backend._SIDS)
    with pytest.raises(EvaluationError) as info:
        durable.evaluate(RFA_PATIENT, as_of=AS_OF)
    assert _live_states(durable, range(first, next(durable_backend._SIDS))) == []  # abandoned, then deleted
    recommending = {r.ref for r in durable.program.rules if any(type(c).__name__ == "Recommend" for c in r.conclusions)}
    assert info.value.rule in recommending
    assert "injected fault" in str(info.value)
    monkeypatch.setattr(driver.CandidateFacts, "__call__", real)
    assert durable.evaluate(RFA_PATIENT, as_of=AS_OF, timestamp=False).to_json() == before


@pytest.mark.parametrize("backend", ["durable", "python"])
def test_firing_cap_fails_closed_and_engine_recovers(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    engine = ipm_cds.Engine(ruleset, backend=backend, firing_cap=2)  # type: ignore[arg-type]
    with pytest.raises(FiringLimitError) as info:
        engine.evaluate(RFA_PATIENT, as_of=AS_OF)
    assert info.value.rule in {r.ref for r in engine.program.rules}
    assert engine.evaluate({"pain": [{"region": "knee", "character": "joint"}]}, as_of=AS_OF).candidates == []


class _Wrapper:
    """Delegates to the real C extension, returning a chosen code from assert_facts."""

    def __init__(self, real: Any, code: int) -> None:
        self._real, self._code = real, code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def assert_facts(self, handle: int, text: str) -> tuple[int, int]:
        _, state = self._real.assert_facts(handle, text)
        return self._code, state


@pytest.mark.parametrize("code", [2, 3, 301])
def test_unexpected_engine_codes_fail_closed(
    durable: ipm_cds.Engine, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    real = durable_backend._engine
    monkeypatch.setattr(durable_backend, "_engine", _Wrapper(real, code))
    first = next(durable_backend._SIDS)
    with pytest.raises(EngineFaultError, match=f"code {code}"):
        durable.evaluate(RFA_PATIENT, as_of=AS_OF)
    monkeypatch.setattr(durable_backend, "_engine", real)
    assert _live_states(durable, range(first, next(durable_backend._SIDS))) == []
    assert codes(durable, RFA_PATIENT)["candidates"] == ["facet_rfa"]


def test_patterns_with_joins_end_on_the_t_join(durable: ipm_cds.Engine) -> None:
    for stratum in durable.program.strata:
        for er in stratum.rules:
            for pattern in er.patterns:
                clauses = durable_backend.pattern_json(pattern, er.patterns[0].alias)[pattern.alias]["$and"]
                if pattern.refs():
                    assert clauses[-1] == {"_t": {er.patterns[0].alias: "_t"}}
                assert all("$not" not in str(c) and "$in" not in str(c) for c in clauses)


def test_limit_check_rejects_oversized_stratum(durable: ipm_cds.Engine) -> None:
    from dataclasses import replace

    stratum = durable.program.strata[0]
    huge = replace(stratum, rules=stratum.rules * (durable_backend.MAX_RULES_PER_RULESET // len(stratum.rules) + 1))
    problems = durable_backend.check_limits(huge, "test")
    assert any("durable-rules allows 4096" in p.message for p in problems)


def test_join_on_a_field_the_other_fact_lacks(tmp_path: Any) -> None:
    """Regression: durable-rules failed the whole assert (error 311) when a joined field was absent."""
    import shutil

    from ipm_cds.ruleset.loader import bundled_ruleset_path

    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    (root / "rules" / "zz-probe.yaml").write_text("""rules:
  - id: probe.latest_gad7
    version: 1.0.0
    status: active
    title: Latest GAD-7 only
    criteria: [MD-GAD7]
    evidence: {strength: strong, quality: moderate, sources: [acp_2017]}
    when:
      gad7: {type: screening, instrument: gad7, score: {gte: 10}}
    unless:
      - newer: {type: screening, instrument: gad7, days_since: {lt: {ref: gad7.days_since}}}
    then:
      - alert: {code: probe.gad7, severity: info, message: "GAD-7 {gad7.score}"}
""")
    ruleset = ipm_cds.load_ruleset(root)
    patient = {
        "screenings": [{"instrument": "gad7", "score": 12}, {"instrument": "gad7", "score": 4, "date": "2025-05-20"}]
    }
    results = [
        ipm_cds.Engine(ruleset, backend=b).evaluate(patient, as_of=AS_OF).codes()  # type: ignore[arg-type]
        for b in ("durable", "python")
    ]
    assert results[0] == results[1]
    assert results[0]["alerts"] == ["probe.gad7"]


class _Raising(_Wrapper):
    def assert_facts(self, handle: int, text: str) -> tuple[int, int]:
        raise self._real.error("Could not assert facts, error code: 999")


def test_errors_of_the_c_extension_fail_closed(durable: ipm_cds.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    real = durable_backend._engine
    monkeypatch.setattr(durable_backend, "_engine", _Raising(real, 0))
    first = next(durable_backend._SIDS)
    with pytest.raises(EngineFaultError, match=r"durable-rules could not assert the facts: .*999"):
        durable.evaluate(RFA_PATIENT, as_of=AS_OF)
    monkeypatch.setattr(durable_backend, "_engine", real)
    assert _live_states(durable, range(first, next(durable_backend._SIDS))) == []
    assert codes(durable, RFA_PATIENT)["candidates"] == ["facet_rfa"]


def test_joins_after_an_or_are_not_ignored(tmp_path: Any) -> None:
    """Regression: durable-rules treated a join that followed an $or in one pattern as always true."""
    import shutil

    from ipm_cds.ruleset.loader import bundled_ruleset_path

    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    (root / "rules" / "zz-probe.yaml").write_text("""rules:
  - id: probe.latest_block
    version: 1.0.0
    status: active
    title: Judged on the most recent session only
    criteria: [FACET-DX-02]
    evidence: {strength: coverage, quality: not_graded, sources: [cms_lcd_facet]}
    when:
      history: {type: procedure_history, kind: facet_mbb}
      latest:
        type: procedure
        kind: {in: [facet_mbb, facet_ia]}
        days_since: {same_as: history.last_days_since}
        relief_pct: {lt: 50}
    then:
      - alert: {code: probe.latest_poor, severity: info, message: "latest block {latest.relief_pct}%"}
""")
    ruleset = ipm_cds.load_ruleset(root)
    patient = {
        "procedures": [
            {"kind": "facet_mbb", "region": "lumbar", "date": "2024-05-01", "relief_pct": 20},
            {"kind": "facet_mbb", "region": "lumbar", "date": "2025-01-06", "relief_pct": 90},
        ]
    }
    for backend in ("durable", "python"):
        engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
        assert engine.evaluate(patient, as_of=AS_OF).codes()["alerts"] == [], backend


def test_fast_fact_json_is_used_only_when_exact() -> None:
    assert all(durable_backend._plain(v) for v in (1, 0.5, "x", True))
    assert not durable_backend._plain(1e-05)  # repr() would write 1e-05: the exact writer takes it
    assert durable_backend.dumps({"a": 1e-05}) == '{"a":0.00001}'
    with pytest.raises(EngineFaultError):
        durable_backend.dumps({"a": float("inf")})


def _too_many_siblings_ruleset(tmp_path: Any) -> ipm_cds.Ruleset:
    """The bundled ruleset and 70 probe rules whose conditions all follow ``type: pain, region: thoracic``:
    for thoracic pain of 69 weeks or more, more than 64 of them hold at once and durable-rules refuses the
    whole assert (error 303), a real failure of ``assert_facts``. The limit check would refuse this ruleset;
    the caller switches it off."""
    import shutil

    from ipm_cds.ruleset.loader import bundled_ruleset_path

    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    rules = "".join(
        f"""  - id: probe.duration_{weeks}
    version: 1.0.0
    status: active
    title: Thoracic pain for {weeks} weeks or more
    criteria: [MD-GAD7]
    evidence: {{strength: strong, quality: moderate, sources: [acp_2017]}}
    when:
      pain: {{type: pain, region: thoracic, duration_weeks: {{gte: {weeks}}}}}
    then:
      - alert: {{code: probe.duration_{weeks}, severity: info, message: "{{pain.duration_weeks}} weeks"}}
"""
        for weeks in range(70)
    )
    (root / "rules" / "zz-probe.yaml").write_text("rules:\n" + rules)
    return ipm_cds.load_ruleset(root)


def _live_states(engine: ipm_cds.Engine, sids: range) -> list[tuple[int, int]]:
    """(stratum, sid) of every state among ``sids`` that the extension still holds: its ``get_state`` answers
    for a live state and raises (error 309) for a deleted or unknown one."""
    real = durable_backend._engine
    assert real is not None
    live = []
    for index, handle in engine._backend._handles.items():  # type: ignore[attr-defined]
        for sid in sids:
            try:
                real.get_state(handle, str(sid))
            except real.error as exc:
                assert "309" in str(exc), exc
            else:
                live.append((index, sid))
    return live


def test_failed_asserts_leave_no_state_behind(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 21): a state that ``assert_facts`` created before raising stayed live; past 1,024
    live states the engine raises MemoryError and corrupts the ruleset. 2,000 refused patients in a row on
    one engine, then a normal patient evaluates correctly, and no state is left."""
    monkeypatch.setattr(durable_backend, "check_program", lambda program: [])  # let the engine itself refuse
    ruleset = _too_many_siblings_ruleset(tmp_path)
    durable = ipm_cds.Engine(ruleset, backend="durable")
    python = ipm_cds.Engine(ruleset, backend="python")
    refused = {"pain": [{"region": "thoracic", "character": "axial", "duration_weeks": 100}]}
    assert len(python.evaluate(refused, as_of=AS_OF).alerts) >= 70  # valid input: only durable-rules fails
    first = next(durable_backend._SIDS)
    with pytest.raises(EngineFaultError, match="303"):
        durable.evaluate(refused, as_of=AS_OF)
    assert _live_states(durable, range(first, next(durable_backend._SIDS))) == []
    for _ in range(2_000):
        with pytest.raises(EngineFaultError, match="303"):
            durable.evaluate(refused, as_of=AS_OF)
    expected = python.evaluate(RFA_PATIENT, as_of=AS_OF, timestamp=False).codes()
    assert durable.evaluate(RFA_PATIENT, as_of=AS_OF, timestamp=False).codes() == expected
    assert expected["candidates"] == ["facet_rfa"]
    assert _live_states(durable, range(first, next(durable_backend._SIDS))) == []


class _Recorder(_Wrapper):
    """Delegates to the real C extension and records the state calls; assert_facts as the wrapped one does."""

    def __init__(self, real: Any, inner: Any) -> None:
        super().__init__(real, 0)
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in ("assert_fact", "start_action_for_state", "abandon_action", "delete_state"):
            return attr

        def recorded(*args: Any) -> Any:
            self.calls.append(name)
            return attr(*args)

        return recorded

    def assert_facts(self, handle: int, text: str) -> tuple[int, int]:
        self.calls.append("assert_facts")
        result: tuple[int, int] = self._inner.assert_facts(handle, text)
        return result


@pytest.mark.parametrize("inner", [_Wrapper, _Raising], ids=["refused code", "assert raises"])
def test_a_failed_state_gets_an_action_before_it_is_deleted(
    durable: ipm_cds.Engine, monkeypatch: pytest.MonkeyPatch, inner: type[_Wrapper]
) -> None:
    """The engine leaves a state's action context uninitialised until an action starts, and delete_state frees
    it: on the paths that fail before the action loop, a sentinel action is started and abandoned first."""
    real = durable_backend._engine
    recorder = _Recorder(real, inner(real, 3))
    monkeypatch.setattr(durable_backend, "_engine", recorder)
    with pytest.raises(EngineFaultError):
        durable.evaluate(RFA_PATIENT, as_of=AS_OF)
    monkeypatch.setattr(durable_backend, "_engine", real)
    expected = ["start_action_for_state", "abandon_action", "delete_state"]
    if inner is _Raising:  # no state offset came back: a sentinel fact brings it
        expected.insert(0, "assert_fact")
    assert recorder.calls == ["assert_facts", *expected]
    assert codes(durable, RFA_PATIENT)["candidates"] == ["facet_rfa"]


@pytest.mark.parametrize("backend", ["durable", "python"])
def test_an_engine_closes_its_backend_and_then_refuses_to_evaluate(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    with ipm_cds.Engine(ruleset, backend=backend) as engine:  # type: ignore[arg-type]
        assert engine.evaluate(RFA_PATIENT, as_of=AS_OF).codes()["candidates"] == ["facet_rfa"]
        if backend == "durable":
            handles = list(engine._backend._handles.values())  # type: ignore[attr-defined]
            assert handles
    assert engine.closed
    if backend == "durable":
        assert engine._backend._handles == {}  # type: ignore[attr-defined]
    engine.close()  # idempotent
    with pytest.raises(ipm_cds.ConfigurationError, match="this engine is closed"):
        engine.evaluate(RFA_PATIENT, as_of=AS_OF)


def test_as_of_a_datetime_is_its_date_and_anything_else_is_refused_clearly(ruleset: ipm_cds.Ruleset) -> None:
    from datetime import datetime

    engine = ipm_cds.Engine(ruleset, backend="python")
    midnight = engine.evaluate(RFA_PATIENT, as_of=datetime(2025, 6, 2), timestamp=False)
    assert midnight.to_json(timestamp=False) == engine.evaluate(RFA_PATIENT, as_of=AS_OF, timestamp=False).to_json(
        timestamp=False
    )
    with pytest.raises(ipm_cds.ConfigurationError, match="as_of must be a date, not str"):
        engine.evaluate(RFA_PATIENT, as_of="2025-06-02")  # type: ignore[arg-type]


def test_a_ruleset_prints_short(ruleset: ipm_cds.Ruleset) -> None:
    text = repr(ruleset)
    assert text.startswith("Ruleset(ipm_core ") and f"{len(ruleset.rules)} rules" in text and len(text) < 80
