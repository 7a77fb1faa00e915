"""The public API as an integrator meets it: backend="auto" and its fallback, errors for every bad argument,
engines that pickle and run under ``spawn``, short reprs, and the version from the package metadata."""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis.vendor.pretty import pretty

import ipm_cds
from ipm_cds.cli import EXIT_OK, EXIT_USAGE, main
from ipm_cds.decision_log import DecisionLog
from ipm_cds.engine import durable_backend
from ipm_cds.errors import BackendUnavailableError
from ipm_cds.testing.strategies import boundary_patients, patients
from ipm_cds.tooling.casetests import run_cases

from .conftest import AS_OF, RFA_PATIENT

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "patients" / "facet_rfa_candidate.yaml"


@pytest.fixture
def no_durable(monkeypatch: pytest.MonkeyPatch) -> None:
    """This interpreter as one without durable-rules (Python 3.13+, or an install without a compiler)."""
    monkeypatch.setattr(durable_backend, "_engine", None)
    monkeypatch.setattr(durable_backend, "_IMPORT_ERROR", "No module named 'durable_rules_engine'")


def _json(assessment: ipm_cds.Assessment) -> str:
    return assessment.to_json(timestamp=False)


# -- backend="auto" ---------------------------------------------------------------------------------------


def test_auto_is_the_default_and_says_what_it_chose(ruleset: ipm_cds.Ruleset) -> None:
    engine = ipm_cds.Engine(ruleset)
    expected = "durable" if durable_backend.available() else "python"
    assert (engine.backend_name, engine.backend_auto) == (expected, True)
    provenance = engine.evaluate(RFA_PATIENT, as_of=AS_OF).provenance
    assert (provenance.backend, provenance.backend_auto) == (expected, True)
    explicit = ipm_cds.Engine(ruleset, backend="python").evaluate(RFA_PATIENT, as_of=AS_OF).provenance
    assert (explicit.backend, explicit.backend_auto) == ("python", False)


def test_auto_falls_back_to_python_without_durable_rules(ruleset: ipm_cds.Ruleset, no_durable: None) -> None:
    engine = ipm_cds.Engine(ruleset)
    assert (engine.backend_name, engine.backend_auto) == ("python", True)
    assert engine.evaluate(RFA_PATIENT, as_of=AS_OF).candidate("facet_rfa") is not None
    with pytest.raises(BackendUnavailableError, match="durable-rules") as caught:
        ipm_cds.Engine(ruleset, backend="durable")
    assert caught.value.hint is not None and "auto" in caught.value.hint
    # the YAML test cases: on auto they run (on python); on durable they fail once, not once per case
    results = run_cases(ruleset, name_filter="RFA")
    assert results and all(r.passed for r in results)
    with pytest.raises(BackendUnavailableError):
        run_cases(ruleset, backend="durable")
    with pytest.raises(BackendUnavailableError):
        ipm_cds.evaluate_many([RFA_PATIENT], ruleset=ruleset, backend="durable")
    (result,) = ipm_cds.evaluate_many([RFA_PATIENT], ruleset=ruleset, as_of=AS_OF)
    assert result.assessment().provenance.backend == "python"


def test_the_cli_falls_back_too_and_says_so(no_durable: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(EXAMPLE), "--as-of", "2025-06-02"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "python backend (auto)" in out and "facet.rfa.initial@" in out
    assert main(["evaluate", str(EXAMPLE), "--as-of", "2025-06-02", "--backend", "durable"]) == EXIT_USAGE
    assert "durable-rules" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "explain", "test", "batch"])
def test_help_names_auto_as_the_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "auto (default): durable-rules where it is installed and importable" in " ".join(
        capsys.readouterr().out.split()
    )


# -- errors for bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"profile": 5}, "profile must be a profile name"),
        ({"profile": ["cms_lcd"]}, "profile must be a profile name"),
        ({"profile": "cms"}, "unknown profile"),
        ({"backend": "c"}, "unknown backend"),
        ({"backend": None}, "unknown backend"),
        ({"parameters": [("facet_block_relief_pct", 80)]}, "parameters must map"),
        ({"parameters": {"facet_block_relief_pct": "80"}}, "takes an"),
        ({"firing_cap": "10"}, "firing_cap"),
        ({"firing_cap": True}, "firing_cap"),
        ({"decision_log": "log.jsonl"}, "decision_log must be a DecisionLog"),
    ],
)
def test_bad_engine_arguments_are_configuration_errors(
    ruleset: ipm_cds.Ruleset, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ipm_cds.ConfigurationError, match=message):
        ipm_cds.Engine(ruleset, **arguments)


def test_a_path_is_not_a_ruleset() -> None:
    with pytest.raises(ipm_cds.ConfigurationError, match="load_ruleset"):
        ipm_cds.Engine("rules/ipm-core")  # type: ignore[arg-type]
    with pytest.raises(ipm_cds.ConfigurationError, match="must be a path"):
        ipm_cds.load_ruleset(5)  # type: ignore[arg-type]
    with pytest.raises(ipm_cds.RulesetError, match=r"no ruleset\.yaml"):
        ipm_cds.load_ruleset("no/such/folder")


@pytest.mark.parametrize("as_of", ["2025-06-02", 20250602, 1.5])
def test_as_of_must_be_a_date(python_engine: ipm_cds.Engine, as_of: object) -> None:
    with pytest.raises(ipm_cds.ConfigurationError, match="as_of must be a date"):
        python_engine.evaluate(RFA_PATIENT, as_of=as_of)  # type: ignore[arg-type]


def test_a_datetime_counts_as_its_date(python_engine: ipm_cds.Engine) -> None:
    on_date = _json(python_engine.evaluate(RFA_PATIENT, as_of=AS_OF))
    for moment in (datetime(2025, 6, 2), datetime(2025, 6, 2, 23, 59, 59)):
        assert _json(python_engine.evaluate(RFA_PATIENT, as_of=moment)) == on_date


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"as_of": "2025-06-02"}, "as_of must be a date"),
        ({"ruleset": 5}, "ruleset must be a Ruleset or a folder path"),
        ({"profile": 3}, "profile must be a profile name"),
        ({"backend": "fast"}, "unknown backend"),
        ({"workers": 0}, "workers must be a positive"),
        ({"decision_log": 5}, "decision_log must be a path"),
        ({"parameters": ["x"]}, "parameters must map"),
    ],
)
def test_bad_evaluate_many_arguments_fail_before_any_patient(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ipm_cds.ConfigurationError, match=message):
        ipm_cds.evaluate_many([RFA_PATIENT], **arguments)


def test_evaluate_many_needs_an_iterable() -> None:
    with pytest.raises(ipm_cds.ConfigurationError, match="iterable"):
        ipm_cds.evaluate_many(5)  # type: ignore[arg-type]


# -- pickling and processes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "python", "durable"])
def test_engines_pickle_and_rebuild_their_backend(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    engine = ipm_cds.Engine(ruleset, backend=backend, parameters={"facet_block_relief_pct": 50})  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(engine))
    assert (copy.backend_name, copy.backend_auto, copy.profile) == (engine.backend_name, engine.backend_auto, "cms_lcd")
    assert copy._backend is not engine._backend
    assert _json(copy.evaluate(RFA_PATIENT, as_of=AS_OF)) == _json(engine.evaluate(RFA_PATIENT, as_of=AS_OF))
    engine.close()
    closed = pickle.loads(pickle.dumps(engine))
    assert closed.closed
    with pytest.raises(ipm_cds.ConfigurationError, match="closed"):
        closed.evaluate(RFA_PATIENT, as_of=AS_OF)


def test_an_engine_with_a_decision_log_does_not_pickle(ruleset: ipm_cds.Ruleset, tmp_path: Path) -> None:
    engine = ipm_cds.Engine(ruleset, backend="python", decision_log=DecisionLog(tmp_path / "log.jsonl"))
    with pytest.raises(ipm_cds.ConfigurationError, match="decision log"):
        pickle.dumps(engine)


def _codes(engine: ipm_cds.Engine) -> tuple[str, dict[str, list[str]]]:
    return engine.backend_name, engine.evaluate(RFA_PATIENT, as_of=AS_OF).codes()


@pytest.mark.parametrize("backend", ["python", "durable"])
def test_an_engine_works_in_a_spawned_process(ruleset: ipm_cds.Ruleset, backend: str) -> None:
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        name, codes = pool.apply(_codes, (engine,))
    assert name == backend
    assert codes == engine.evaluate(RFA_PATIENT, as_of=AS_OF).codes()
    assert codes["candidates"] == ["facet_rfa"]


# -- reprs, the version -------------------------------------------------------------------------------------


def test_engines_and_rulesets_print_short(ruleset: ipm_cds.Ruleset, python_engine: ipm_cds.Engine) -> None:
    manifest = ruleset.manifest
    assert repr(python_engine) == f"Engine({manifest.id} {manifest.version}, profile=cms_lcd, backend=python)"
    assert len(repr(ruleset)) < 200


def test_a_patient_prints_as_compact_yaml_that_reads_back() -> None:
    patient = ipm_cds.parse_patient(RFA_PATIENT)
    shown = pretty(patient)
    assert shown.startswith('PatientCase.from_yaml("""\n') and "null" not in shown and "[]" not in shown
    assert "is_index" not in shown  # a default value is left out too
    assert eval(shown, {"PatientCase": ipm_cds.PatientCase}) == patient
    with pytest.raises(ipm_cds.PatientDataError):
        ipm_cds.PatientCase.from_yaml("pain: [{region: lumbar, nrs: 11}]")


def test_the_version_is_the_package_metadata() -> None:
    assert ipm_cds.__version__ == importlib.metadata.version("ipm-cds")


# -- strategies that load their ruleset late ------------------------------------------------------------------


@given(patient=boundary_patients())
def test_boundary_patients_load_the_bundled_ruleset_when_first_drawn(patient: ipm_cds.PatientCase) -> None:
    assert isinstance(patient, ipm_cds.PatientCase)


@given(patient=patients(ruleset=lambda: ipm_cds.load_ruleset(with_tests=False), anticoagulants=True))
def test_patients_take_a_ruleset_function(patient: ipm_cds.PatientCase) -> None:
    assert patient.medications


def test_the_plugin_serves_several_rulesets(ipm_engines: Any, ipm_rulesets: Any, copy: Path) -> None:
    bundled = ipm_rulesets(None)
    assert ipm_rulesets(None) is bundled and ipm_rulesets(copy) is ipm_rulesets(str(copy))
    assert ipm_rulesets(copy) is not bundled
    engine = ipm_engines(copy, "society_consensus", "python")
    assert engine is ipm_engines(str(copy), "society_consensus", "python")
    assert engine.ruleset is ipm_rulesets(copy) and engine.profile == "society_consensus"
    assert ipm_engines(bundled).backend_auto


@pytest.mark.parametrize("ipm_ruleset", [None, str(Path(__file__).parent.parent / "rules" / "ipm-core")], indirect=True)
def test_ipm_ruleset_can_be_parametrized(ipm_ruleset: ipm_cds.Ruleset, ipm_engine: ipm_cds.Engine) -> None:
    assert ipm_engine.ruleset is ipm_ruleset and ipm_engine.backend_auto
