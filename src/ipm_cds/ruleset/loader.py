"""Load a ruleset directory: manifest, catalogues, rule files and test cases, validated and compiled.

Every problem is collected with its file:line:col before anything is raised, so a rule author sees
the whole list at once. The ruleset's content hash is the sha256 of a canonical form of every file
it includes (parsed content, not bytes: comments and formatting do not change it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import Problem, RulesetError, SourceLocation
from ..facts.normalise import MedicationInfo, NormaliseContext
from ..facts.schema import FactType
from . import ir
from .compile import CompileContext, compile_rules, did_you_mean
from .model import (
    Criterion,
    CriterionCatalogue,
    Intervention,
    InterventionCatalogue,
    Manifest,
    MedicationCatalogue,
    MedicationEntry,
    Parameter,
    ParameterCatalogue,
    ReferralCatalogue,
    ReferralTarget,
    RuleSpec,
    Source,
    SourceCatalogue,
    TestCase,
    TestFile,
)
from .yamlsrc import Path_, Positions, load_yaml_file

MANIFEST = "ruleset.yaml"
_T = TypeVar("_T", bound=BaseModel)


@dataclass(frozen=True)
class LoadedTestCase:
    case: TestCase
    location: SourceLocation


@dataclass(frozen=True)
class Ruleset:
    """A loaded, validated and compiled ruleset. Immutable; safe to share between engines."""

    path: Path
    manifest: Manifest
    interventions: Mapping[str, Intervention]
    referrals: Mapping[str, ReferralTarget]
    sources: Mapping[str, Source]
    parameters: Mapping[str, Parameter]
    medications: Mapping[str, MedicationEntry]
    criteria: Mapping[str, Criterion]
    rules: tuple[ir.Rule, ...]
    rule_specs: Mapping[str, RuleSpec]
    fact_types: Mapping[str, FactType]
    tests: tuple[LoadedTestCase, ...]
    sha256: str
    warnings: tuple[Problem, ...] = field(default=())

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version

    def normalise_context(self) -> NormaliseContext:
        return NormaliseContext(
            {code: MedicationInfo(m.drug_class, m.antithrombotic) for code, m in self.medications.items()},
            self.manifest.settings.rolling_window_days,
        )

    def rule(self, rule_id: str) -> ir.Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def _pydantic_problems(exc: ValidationError, pos: Positions, prefix: Path_ = ()) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        path = (*prefix, *loc)
        message = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
            parent_model = err.get("ctx", {})
            hint = parent_model.get("hint") if isinstance(parent_model, dict) else None
            location = pos.at(path, key=True)
        elif err["type"] == "missing":
            message = f"missing required field {loc[-1]!r}"
            location = pos.at(path[:-1])
        else:
            where = ".".join(str(p) for p in loc)
            message = f"{where}: {message}" if where else message
            location = pos.at(path)
        problems.append(Problem(message, location, hint=hint))
    return problems


def _validate(model: type[_T], data: Any, pos: Positions, problems: list[Problem], prefix: Path_ = ()) -> _T | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, pos, prefix))
        return None


def _extra_hints(problems: list[Problem], model: type[BaseModel], data: Any, pos: Positions) -> None:
    """Add did-you-mean hints to unknown top-level fields."""
    if not isinstance(data, dict):
        return
    for key in data:
        if key not in model.model_fields:
            for i, p in enumerate(problems):
                if p.message == f"unknown field {key!r}" and p.hint is None:
                    problems[i] = Problem(p.message, p.location, hint=did_you_mean(key, model.model_fields))


class _Loader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.canonical: dict[str, Any] = {}

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def resolve(self, relative: str, where: SourceLocation) -> Path | None:
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root.resolve()):
            self.problems.append(
                Problem(
                    f"{relative!r} is outside the ruleset folder",
                    where,
                    hint="a ruleset includes only files inside its own folder",
                )
            )
            return None
        if not candidate.is_file():
            self.problems.append(Problem(f"included file {relative!r} does not exist", where))
            return None
        return candidate

    def read(self, path: Path) -> tuple[Any, Positions] | None:
        try:
            data, pos = load_yaml_file(path, self.display(path))
        except RulesetError as exc:
            self.problems.extend(exc.problems)
            return None
        self.canonical[path.relative_to(self.root.resolve()).as_posix()] = data
        return data, pos

    def catalogue(self, model: type[_T], relative: str, where: SourceLocation) -> tuple[_T, Positions] | None:
        path = self.resolve(relative, where)
        loaded = self.read(path) if path else None
        if loaded is None:
            return None
        data, pos = loaded
        before = len(self.problems)
        result = _validate(model, data, pos, self.problems)
        _extra_hints(self.problems[before:], model, data, pos)
        return (result, pos) if result is not None else None


def _index(items: list[Any], key: str, pos: Positions, list_key: str, problems: list[Problem]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        k = getattr(item, key)
        if k in out:
            problems.append(Problem(f"duplicate {key} {k!r}", pos.at((list_key, i, key))))
        out[k] = item
    return out


def load_ruleset(path: str | Path | None = None) -> Ruleset:
    """Load, validate and compile a ruleset directory (the bundled ``ipm-core`` when ``path`` is None).

    Raises :class:`~ipm_cds.errors.RulesetError` listing every problem found, each with file:line:col.
    """
    root = Path(path) if path is not None else bundled_ruleset_path()
    if root.is_file():
        root = root.parent
    loader = _Loader(root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise RulesetError(
            [
                Problem(
                    f"no {MANIFEST} in {root}",
                    SourceLocation(str(root), 1, 1),
                    hint="point at a ruleset folder, e.g. rules/ipm-core",
                )
            ]
        )
    loaded = loader.read(manifest_path.resolve())
    if loaded is None:
        raise RulesetError(loader.problems)
    data, mpos = loaded
    manifest = _validate(Manifest, data, mpos, loader.problems)
    _extra_hints(loader.problems, Manifest, data, mpos)
    if manifest is None:
        raise RulesetError(loader.problems)
    cat = manifest.catalogues
    problems = loader.problems

    def cat_load(model: type[_T], name: str) -> tuple[_T, Positions] | None:
        return loader.catalogue(model, getattr(cat, name), mpos.at(("catalogues", name)))

    sources_c = cat_load(SourceCatalogue, "sources")
    criteria_c = cat_load(CriterionCatalogue, "criteria")
    interventions_c = cat_load(InterventionCatalogue, "interventions")
    referrals_c = cat_load(ReferralCatalogue, "referrals")
    parameters_c = cat_load(ParameterCatalogue, "parameters")
    medications_c = cat_load(MedicationCatalogue, "medications")
    if None in (sources_c, criteria_c, interventions_c, referrals_c, parameters_c, medications_c):
        raise RulesetError(problems)
    assert sources_c and criteria_c and interventions_c and referrals_c and parameters_c and medications_c
    sources = _index(sources_c[0].sources, "id", sources_c[1], "sources", problems)
    criteria = _index(criteria_c[0].criteria, "id", criteria_c[1], "criteria", problems)
    interventions = _index(interventions_c[0].interventions, "code", interventions_c[1], "interventions", problems)
    referrals = _index(referrals_c[0].referrals, "code", referrals_c[1], "referrals", problems)
    parameters = _index(parameters_c[0].parameters, "name", parameters_c[1], "parameters", problems)
    medications = _index(medications_c[0].medications, "code", medications_c[1], "medications", problems)

    def check_ref(value: str | None, table: Mapping[str, Any], what: str, pos: Positions, path: Path_) -> None:
        if value is not None and value not in table:
            problems.append(Problem(f"unknown {what} {value!r}", pos.at(path), hint=did_you_mean(value, table)))

    check_ref(manifest.settings.rolling_window_source, sources, "source", mpos, ("settings", "rolling_window_source"))
    ipos = interventions_c[1]
    for i, item in enumerate(interventions_c[0].interventions):
        for j, src in enumerate(item.sources):
            check_ref(src, sources, "source", ipos, ("interventions", i, "sources", j))
        check_ref(item.bleeding_risk.source, sources, "source", ipos, ("interventions", i, "bleeding_risk", "source"))
        for j, crit in enumerate(item.guidance_criteria):
            check_ref(crit, criteria, "criterion", ipos, ("interventions", i, "guidance_criteria", j))
    ppos = parameters_c[1]
    for i, param in enumerate(parameters_c[0].parameters):
        check_ref(param.source, sources, "source", ppos, ("parameters", i, "source"))
        for j, crit in enumerate(param.criteria):
            check_ref(crit, criteria, "criterion", ppos, ("parameters", i, "criteria", j))
        for prof in param.profiles:
            check_ref(prof, manifest.profiles, "profile", ppos, ("parameters", i, "profiles", prof))
    medpos = medications_c[1]
    for i, med in enumerate(medications_c[0].medications):
        check_ref(med.source, sources, "source", medpos, ("medications", i, "source"))

    specs: list[tuple[RuleSpec, Positions]] = []
    seen_ids: dict[str, SourceLocation] = {}
    for i, relative in enumerate(manifest.rules):
        path = loader.resolve(relative, mpos.at(("rules", i)))
        loaded_rules = loader.read(path) if path else None
        if loaded_rules is None:
            continue
        rdata, rpos = loaded_rules
        if not isinstance(rdata, dict) or not isinstance(rdata.get("rules"), list):
            problems.append(Problem("a rule file is a mapping with a 'rules' list", rpos.at(())))
            continue
        extra = [k for k in rdata if k != "rules"]
        for k in extra:
            problems.append(Problem(f"unknown field {k!r}", rpos.at((k,), key=True), hint=did_you_mean(k, ["rules"])))
        for j, raw in enumerate(rdata["rules"]):
            spec = _validate(RuleSpec, raw, rpos, problems, ("rules", j))
            if spec is None:
                continue
            rule_pos = rpos.sub(("rules", j))
            if spec.id in seen_ids:
                first = seen_ids[spec.id]
                problems.append(Problem(f"duplicate rule id {spec.id!r} (first at {first})", rule_pos.at(("id",))))
                continue
            seen_ids[spec.id] = rule_pos.at(("id",))
            specs.append((spec, rule_pos))

    ctx = CompileContext(interventions, referrals, parameters, criteria, sources, manifest.profiles)
    rules = compile_rules([s for s in specs if s[0].status != "retired"], ctx, problems)

    tests: list[LoadedTestCase] = []
    for i, relative in enumerate(manifest.tests):
        path = loader.resolve(relative, mpos.at(("tests", i)))
        loaded_tests = loader.read(path) if path else None
        if loaded_tests is None:
            continue
        tdata, tpos = loaded_tests
        tfile = _validate(TestFile, tdata, tpos, problems)
        if tfile is None:
            continue
        for j, case in enumerate(tfile.cases):
            if case.profile is not None:
                check_ref(case.profile, manifest.profiles, "profile", tpos, ("cases", j, "profile"))
            tests.append(LoadedTestCase(case, tpos.at(("cases", j))))

    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RulesetError(errors)
    digest = hashlib.sha256(
        json.dumps(loader.canonical, sort_keys=True, default=str, separators=(",", ":")).encode()
    ).hexdigest()
    return Ruleset(
        path=root,
        manifest=manifest,
        interventions=interventions,
        referrals=referrals,
        sources=sources,
        parameters=parameters,
        medications=medications,
        criteria=criteria,
        rules=tuple(rules),
        rule_specs={s.id: s for s, _ in specs},
        fact_types=dict(ctx.fact_types),
        tests=tuple(tests),
        sha256=digest,
        warnings=tuple(p for p in problems if p.severity == "warning"),
    )


def bundled_ruleset_path() -> Path:
    """Where the bundled ``ipm-core`` ruleset lives: inside the installed package, or the source tree."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "bundled" / "ipm-core"
    if installed.is_dir():
        return installed
    source_tree = here.parent.parent / "rules" / "ipm-core"
    if source_tree.is_dir():
        return source_tree
    raise RulesetError(
        [
            Problem(
                "the bundled ruleset is missing from this installation",
                SourceLocation(str(installed), 1, 1),
                hint="reinstall ipm-cds, or pass a ruleset path",
            )
        ]
    )
