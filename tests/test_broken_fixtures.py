"""Deliberately broken rule files: each gives exactly the problems its header declares.

Each fixture in tests/fixtures/broken/ starts with ``# expect: LINE:COL: message`` lines (``{file}`` stands for
the fixture's path as shown), ``# check: semantic`` when ``validate``'s semantic checks find it,
``# check: limits`` when its checks of durable-rules' limits do, and
``# schema: rejects`` when the generated JSON Schema must reject it too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from ipm_cds import RulesetError, load_ruleset
from ipm_cds.engine.durable_backend import limit_problems
from ipm_cds.ruleset.loader import bundled_ruleset_path
from ipm_cds.ruleset.schema import schema_for
from ipm_cds.tooling.checks import semantic_problems

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "broken").glob("*.yaml"))


def header(path: Path, key: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith(f"# {key}:")]


def test_there_are_at_least_fifteen_fixtures() -> None:
    assert len(FIXTURES) >= 15


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_fixture_gives_exactly_its_declared_problems(fixture: Path, tmp_path: Path) -> None:
    root = tmp_path / "ipm-core"
    shutil.copytree(bundled_ruleset_path(), root)
    target = root / "rules" / f"zz-{fixture.name}"
    shutil.copy(fixture, target)
    shown = f"ipm-core/rules/zz-{fixture.name}"
    expected = [f"{shown}:{e.replace('{file}', shown)}" for e in header(fixture, "expect")]
    assert expected, "fixture declares no expected problem"
    if header(fixture, "check") == ["semantic"]:
        found = [str(p) for p in semantic_problems(load_ruleset(root)) if p.severity == "error"]
    elif header(fixture, "check") == ["limits"]:
        found = [str(p) for p in limit_problems(load_ruleset(root)) if p.severity == "error"]
    else:
        with pytest.raises(RulesetError) as info:
            load_ruleset(root)
        found = [str(p) for p in info.value.problems]
    assert found == expected


@pytest.mark.parametrize("fixture", [f for f in FIXTURES if header(f, "schema") == ["rejects"]], ids=lambda f: f.stem)
def test_schema_rejects_what_it_can_see(fixture: Path) -> None:
    data = json.loads(json.dumps(yaml.safe_load(fixture.read_text()), default=str))
    errors = list(jsonschema.Draft202012Validator(schema_for("rules")).iter_errors(data))
    assert errors, f"the rules schema accepts {fixture.name}"


def test_schemas_accept_every_bundled_file() -> None:
    root = bundled_ruleset_path()
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        name = (
            "ruleset"
            if rel == "ruleset.yaml"
            else "rules"
            if rel.startswith("rules/")
            else "tests"
            if rel.startswith("tests/")
            else path.stem.split("-")[0]
        )
        data = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
        errors = list(jsonschema.Draft202012Validator(schema_for(name)).iter_errors(data))
        assert not errors, f"{rel}: {errors[0].message} at {list(errors[0].absolute_path)}"
