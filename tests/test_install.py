"""The package as an integrator installs it: the built wheel and sdist in fresh virtual environments outside
the repository, with and without durable-rules.

Marked ``install`` (``-m "not install"`` leaves them out while iterating): they build the sdist and the wheel
once per session (``python -m build``: the wheel is built from the sdist, so the sdist is proven complete) and
install them with pip from the package index, in about a minute. They run on every interpreter CI uses: on
3.13 the ``durable`` extra installs nothing and ``auto`` runs the python backend, which is what they check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "patients" / "facet_rfa_candidate.yaml"
DURABLE_IMPORTS = sys.version_info < (3, 13)  # the durable extra's marker: python_version < "3.13"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def _run(
    *args: str | Path, cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    clean["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, check=False
    )
    if check:
        assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


class Venv:
    """A fresh virtual environment in a temporary folder (outside the repository)."""

    def __init__(self, path: Path) -> None:
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        self.path = path
        self.bin = path / "bin"
        self.python = self.bin / "python"

    def pip(self, *args: str | Path) -> None:
        _run(self.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args, cwd=self.path)

    def run(self, *args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(*args, cwd=cwd, check=check)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel (built from the sdist), once per session."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "-o", out, ROOT, cwd=ROOT)  # hatchling: the dev extra
    (wheel,) = out.glob("ipm_cds-*.whl")
    (sdist,) = out.glob("ipm_cds-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="session")
def plain(tmp_path_factory: pytest.TempPathFactory, dist: dict[str, Path]) -> Venv:
    """``pip install ipm-cds[fhir,testing]`` and pytest: no durable-rules, no compiler needed, no web server."""
    env = Venv(tmp_path_factory.mktemp("plain") / "venv")
    env.pip(f"{dist['wheel']}[fhir,testing]", "pytest")
    return env


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder outside the repository, holding a copy of the example patient."""
    (tmp_path / "patient.yaml").write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def test_the_wheel_carries_the_rules_and_the_licence(dist: dict[str, Path]) -> None:
    import zipfile

    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    sources = {p.relative_to(ROOT / "rules").as_posix() for p in (ROOT / "rules").rglob("*") if p.is_file()}
    assert sources and all(f"ipm_cds/bundled/{rel}" in names for rel in sources)
    assert {"ipm_cds/py.typed", f"ipm_cds-{VERSION}.dist-info/licenses/LICENSE"} <= names
    metadata = zipfile.ZipFile(dist["wheel"]).read(f"ipm_cds-{VERSION}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Project-URL: Homepage, https://github.com/ipm-cds/ipm-cds" in metadata
    assert "Classifier: Programming Language :: Python :: 3.13" in metadata
    # durable-rules is an extra, never a requirement of the install itself
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "durable-rules" in r and "extra ==" not in r] == []
    # README links work on an index page: none is relative
    assert not re.search(r"\]\((?!https?://|#)", metadata.split("\n\n", 1)[1])


def test_without_durable_rules_every_command_falls_back_to_the_python_backend(plain: Venv, outside: Path) -> None:
    py = plain.python
    shown = plain.run(py, "-c", "import ipm_cds, sys; print(ipm_cds.__version__, ipm_cds.__file__)", cwd=outside)
    version, location = shown.stdout.split()
    assert version == VERSION and Path(location).is_relative_to(plain.path)  # the installed copy, not the tree
    assert plain.run(py, "-c", "import durable_rules_engine", cwd=outside, check=False).returncode != 0

    ipm = plain.bin / "ipm-cds"
    assert "auto (default)" in plain.run(ipm, "evaluate", "--help", cwd=outside).stdout
    text = plain.run(ipm, "evaluate", "patient.yaml", "--as-of", "2025-06-02", cwd=outside).stdout
    assert "python backend (auto)" in text and "facet.rfa.initial@" in text
    data = json.loads(
        plain.run(ipm, "evaluate", "patient.yaml", "--as-of", "2025-06-02", "--format", "json", cwd=outside).stdout
    )
    assert (data["provenance"]["backend"], data["provenance"]["backend_auto"]) == ("python", True)
    assert [c["intervention"] for c in data["candidates"]] == ["facet_rfa"]
    assert "facet_rfa" in plain.run(ipm, "explain", "patient.yaml", "--as-of", "2025-06-02", cwd=outside).stdout
    record = {"pain": [{"region": "lumbar", "character": "axial", "nrs": 7}]}
    (outside / "in.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    line = json.loads(plain.run(ipm, "batch", "in.jsonl", "--as-of", "2025-06-02", cwd=outside).stdout)
    assert line["assessment"]["provenance"]["backend"] == "python"
    tested = plain.run(ipm, "test", "--filter", "RFA", cwd=outside)
    assert re.search(r"^[1-9]\d* passed, 0 failed", tested.stdout, re.M), tested.stdout
    # asking for durable-rules by name is a clear error (exit 2), not a traceback
    refused = plain.run(ipm, "evaluate", "patient.yaml", "--backend", "durable", cwd=outside, check=False)
    assert refused.returncode == 2 and "durable-rules" in refused.stderr and "Traceback" not in refused.stderr


def test_the_readme_snippet_runs_as_written(plain: Venv, outside: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    out = plain.run(plain.python, "-c", snippet, cwd=outside).stdout
    provenance = json.loads(out)["provenance"]
    assert (provenance["backend"], provenance["backend_auto"]) == ("python", True)


def test_the_pytest_plugin_serves_its_fixtures_from_the_installed_package(plain: Venv, outside: Path) -> None:
    (outside / "test_mine.py").write_text(
        textwrap.dedent(
            """
            from datetime import date

            import pytest
            from hypothesis import given

            from ipm_cds.testing.invariants import assert_backends_agree
            from ipm_cds.testing.strategies import boundary_patients

            def test_fixtures(ipm_engine, ipm_python_engine, ipm_ruleset, ipm_engines):
                assert ipm_engine.backend_name == "python" and ipm_engine.backend_auto
                assert ipm_engine.ruleset is ipm_ruleset
                assert ipm_engines(None, "society_consensus").profile == "society_consensus"
                assert len(repr(ipm_engine)) < 200

            @given(patient=boundary_patients())  # the bundled ruleset, loaded when the test first draws
            def test_agree(ipm_engine, ipm_python_engine, patient):
                assert_backends_agree(ipm_engine, ipm_python_engine, patient, date(2025, 6, 2))
            """
        ),
        encoding="utf-8",
    )
    proc = plain.run(plain.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py", cwd=outside)
    assert "2 passed" in proc.stdout
    assert "ipm-cds: ruleset bundled" in plain.run(plain.python, "-m", "pytest", "--co", cwd=outside).stdout


def test_the_fhir_reader_needs_only_the_fhir_extra(plain: Venv, outside: Path) -> None:
    script = textwrap.dedent(
        """
        import importlib.util, json
        from ipm_cds.interop.fhir import read_bundle

        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}},
            {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                          "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}}},
        ]}
        mapping = read_bundle(bundle)
        print(json.dumps({
            "birth_date": str(mapping.patient.demographics.birth_date),
            "web": [m for m in ("fastapi", "uvicorn", "jwt") if importlib.util.find_spec(m)],
        }))
        """
    )
    shown = json.loads(plain.run(plain.python, "-c", script, cwd=outside).stdout)
    assert shown == {"birth_date": "1970-01-01", "web": []}


def test_the_durable_extra_installs_where_it_builds_and_auto_uses_it(
    tmp_path: Path, dist: dict[str, Path], outside: Path
) -> None:
    env = Venv(tmp_path / "venv")
    env.pip(f"{dist['wheel']}[durable]")  # on 3.13+ the extra's marker leaves durable-rules out: never a failure
    data = json.loads(
        env.run(
            env.bin / "ipm-cds", "evaluate", "patient.yaml", "--as-of", "2025-06-02", "--format", "json", cwd=outside
        ).stdout
    )
    assert data["provenance"]["backend"] == ("durable" if DURABLE_IMPORTS else "python")
    assert data["provenance"]["backend_auto"] is True


def test_the_sdist_ships_its_tests_and_they_run(tmp_path: Path, dist: dict[str, Path]) -> None:
    """Unpacked, the sdist's suite collects whole and a quick part of it passes, on the sdist's own code."""
    with tarfile.open(dist["sdist"]) as archive:
        archive.extractall(tmp_path, filter="data")
    (tree,) = tmp_path.glob("ipm_cds-*")
    for needed in ("tests/conftest.py", "tests/fixtures", "examples/patients", "rules/ipm-core", "LICENSE"):
        assert (tree / needed).exists(), needed
    source = {"PYTHONPATH": str(tree / "src")}
    pytest_ = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider")
    collected = _run(*pytest_, "--co", "-q", "tests", cwd=tree, env=source).stdout
    assert re.search(r"^\d{4,} tests collected", collected, re.M), collected[-2000:]
    ran = _run(
        *pytest_,
        "-q",
        "-m",
        "not durable",
        "tests/test_yamlsrc.py",
        "tests/test_patient_model.py",
        cwd=tree,
        env=source,
    )
    assert re.search(r"^\d+ passed", ran.stdout.splitlines()[-1]), ran.stdout[-2000:]
    assert (
        str(tree / "src" / "ipm_cds")
        in _run(sys.executable, "-c", "import ipm_cds; print(ipm_cds.__file__)", cwd=tree, env=source).stdout
    )
