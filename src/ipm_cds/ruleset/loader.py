"""Load a ruleset directory: manifest, catalogues, rule files and test cases, validated and compiled.

Every problem is collected with its file:line:col before anything is raised, so a rule author sees
the whole list at once. The ruleset's content hash is the sha256 of a canonical form of every file
it includes (parsed content, not bytes: comments and formatting do not change it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigurationError, PatientDataError, Problem, RulesetError, SourceLocation
from ..model.facts.normalise import MedicationInfo, NormaliseContext
from ..model.facts.schema import FactType, fact_types_for
from ..model.facts.vocabulary import CodeInfo, check_codes
from ..model.patient import PatientCase, parse_patient
from . import ir
from .catalogues import _catalogue_entries, _check_references, _index, _items, _messages, _vocabularies
from .compile import CompileContext, compile_rules
from .messages import Template
from .model import (
    Criterion,
    CriterionCatalogue,
    Intervention,
    InterventionCatalogue,
    Manifest,
    MedicationCatalogue,
    MedicationEntry,
    Message,
    MessageCatalogue,
    Parameter,
    ParameterCatalogue,
    ReferralCatalogue,
    ReferralTarget,
    RuleSpec,
    Source,
    SourceCatalogue,
    TestFile,
    Vocabulary,
    VocabularyCatalogue,
)
from .problems import did_you_mean, pydantic_problems
from .testcases import CaseCodes, LoadedTestCase, load_cases
from .yamlsrc import Path_, Positions, load_yaml_file

logger = logging.getLogger(__name__)
MANIFEST = "ruleset.yaml"
_T = TypeVar("_T", bound=BaseModel)


@dataclass(frozen=True)
class Ruleset:
    """A loaded, validated and compiled ruleset. Immutable; safe to share between engines."""

    def __repr__(self) -> str:  # the whole ruleset would print as a million characters
        return (
            f"Ruleset({self.manifest.id} {self.manifest.version}, {len(self.rules)} rules, sha256 {self.sha256[:12]})"
        )

    path: Path
    manifest: Manifest
    interventions: Mapping[str, Intervention]
    referrals: Mapping[str, ReferralTarget]
    sources: Mapping[str, Source]
    parameters: Mapping[str, Parameter]
    medications: Mapping[str, MedicationEntry]
    criteria: Mapping[str, Criterion]
    messages: Mapping[str, Template]
    vocabularies: Mapping[str, Vocabulary]
    rules: tuple[ir.Rule, ...]
    rule_specs: Mapping[str, RuleSpec]
    fact_types: Mapping[str, FactType]
    tests: tuple[LoadedTestCase, ...]
    sha256: str
    warnings: tuple[Problem, ...] = field(default=())
    version_locations: Mapping[str, SourceLocation] = field(default_factory=dict)  # rule id -> its version
    message_specs: Mapping[str, Message] = field(default_factory=dict)  # as written, for the lock
    message_locations: Mapping[str, SourceLocation] = field(default_factory=dict)  # message id -> its text
    # every catalogue entry as written, for the lock: (catalogue, key) -> (entry, where it is)
    catalogue_entries: Mapping[tuple[str, str], tuple[BaseModel, SourceLocation]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version

    def normalise_context(self) -> NormaliseContext:
        settings = self.manifest.settings
        return NormaliseContext(
            {
                code: MedicationInfo(m.drug_class, m.antithrombotic, m.mme_factor, m.mme_dose_unit, m.mme_excluded)
                for code, m in self.medications.items()
            },
            settings.rolling_window_days,
            {k: tuple(v) for k, v in settings.procedure_groups.items()},
            {k: tuple(v) for k, v in settings.exam_groups.items()},
            {k: tuple(v) for k, v in settings.medication_groups.items()},
            self.code_infos(),
            {code: tuple(item.image_guidance) for code, item in self.interventions.items()},
        )

    def parse_patient(self, document: Any) -> PatientCase:
        """Validate a patient document against the patient model and this ruleset's vocabularies.

        :func:`ipm_cds.parse_patient` checks the document's shape and the spelling of its codes; this also
        checks that each code is one of the ruleset's (with the nearest code as a hint), that laboratory
        values and scores are in their ranges and subscores belong to their instrument. Raises
        :class:`~ipm_cds.errors.PatientDataError` naming every field at fault.
        """
        case = parse_patient(document)
        problems = check_codes(case, self.code_infos())
        if problems:
            raise PatientDataError(problems)
        return case

    def code_infos(self) -> dict[str, dict[str, CodeInfo]]:
        """Each vocabulary's codes with what the patient model needs of them (units, ranges, subscores)."""
        return {
            name: {
                c.code: CodeInfo(c.label, c.unit, c.min, c.max, tuple(c.subscores), c.better, c.equivalent)
                for c in vocabulary.codes
            }
            for name, vocabulary in self.vocabularies.items()
        }

    def rule(self, rule_id: str) -> ir.Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def _validate(model: type[_T], data: Any, pos: Positions, problems: list[Problem], prefix: Path_ = ()) -> _T | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, pos, prefix, model))
        return None


class _Loader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.canonical: dict[str, Any] = {}

    def display(self, path: Path) -> str:
        """A file as problems show it: relative to the ruleset folder's parent (``ipm-core/rules/x.yaml``)."""
        try:
            return path.resolve().relative_to(self.root.resolve().parent).as_posix()
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

    def expand(self, entry: str, where: SourceLocation) -> list[Path]:
        """One manifest entry: a relative path, or a glob such as ``rules/*.yaml`` (sorted)."""
        if not any(ch in entry for ch in "*?["):
            path = self.resolve(entry, where)
            return [path] if path else []
        if ".." in Path(entry).parts or Path(entry).is_absolute():
            self.problems.append(
                Problem(
                    f"{entry!r} is outside the ruleset folder",
                    where,
                    hint="a ruleset includes only files inside its own folder",
                )
            )
            return []
        matches = sorted(p for p in self.root.glob(entry) if p.is_file())
        if not matches:
            self.problems.append(Problem(f"{entry!r} matches no file", where))
        return [p for p in (self.resolve(m.relative_to(self.root).as_posix(), where) for m in matches) if p]

    def read(self, path: Path, *, hashed: bool = True) -> tuple[Any, Positions] | None:
        """Read one YAML file; ``hashed`` files (all but test cases) make up the ruleset's content hash."""
        try:
            data, pos = load_yaml_file(path, self.display(path))
        except RulesetError as exc:
            self.problems.extend(exc.problems)
            return None
        if hashed:
            self.canonical[path.relative_to(self.root.resolve()).as_posix()] = data
        return data, pos

    def catalogue(
        self, model: type[_T], entries: list[tuple[str, SourceLocation]]
    ) -> list[tuple[_T, Positions]] | None:
        """Load every file of one catalogue; None when any of them failed."""
        out: list[tuple[_T, Positions]] = []
        ok = True
        for entry, where in entries:
            for path in self.expand(entry, where):
                loaded = self.read(path)
                if loaded is None:
                    ok = False
                    continue
                data, pos = loaded
                result = _validate(model, data, pos, self.problems)
                if result is None:
                    ok = False
                else:
                    out.append((result, pos))
        return out if ok else None


def load_ruleset(path: str | Path | None = None, *, with_tests: bool = True) -> Ruleset:
    """Load, validate and compile a ruleset directory (the bundled ``ipm-core`` when ``path`` is None).

    ``with_tests=False`` skips the test-case files (an application that only evaluates needs none). The
    content hash never covers test cases: editing a test does not change a ruleset's provenance.

    Raises :class:`~ipm_cds.errors.RulesetError` listing every problem found, each with file:line:col.
    """
    if path is not None and not isinstance(path, str | os.PathLike):
        raise ConfigurationError(
            f"the ruleset path must be a path, not {type(path).__name__} {path!r}",
            hint="load_ruleset('rules/ipm-core'), or load_ruleset() for the bundled ruleset",
        )
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
    if manifest is None:
        raise RulesetError(loader.problems)
    cat = manifest.catalogues
    problems = loader.problems

    def cat_load(model: type[_T], name: str) -> list[tuple[_T, Positions]] | None:
        entries = getattr(cat, name)
        if isinstance(entries, list):
            return loader.catalogue(model, [(e, mpos.at(("catalogues", name, i))) for i, e in enumerate(entries)])
        return loader.catalogue(model, [(entries, mpos.at(("catalogues", name)))])

    sources_c = cat_load(SourceCatalogue, "sources")
    criteria_c = cat_load(CriterionCatalogue, "criteria")
    interventions_c = cat_load(InterventionCatalogue, "interventions")
    referrals_c = cat_load(ReferralCatalogue, "referrals")
    parameters_c = cat_load(ParameterCatalogue, "parameters")
    medications_c = cat_load(MedicationCatalogue, "medications")
    messages_c = cat_load(MessageCatalogue, "messages")
    vocabularies_c = cat_load(VocabularyCatalogue, "vocabularies")
    if (
        vocabularies_c is None
        or sources_c is None
        or criteria_c is None
        or interventions_c is None
        or referrals_c is None
        or parameters_c is None
        or medications_c is None
        or messages_c is None
    ):
        raise RulesetError(problems)
    sources = _index(sources_c, "sources", "id", problems)
    criteria = _index(criteria_c, "criteria", "id", problems)
    interventions = _index(interventions_c, "interventions", "code", problems)
    referrals = _index(referrals_c, "referrals", "code", problems)
    parameters = _index(parameters_c, "parameters", "name", problems)
    medications = _index(medications_c, "medications", "code", problems)
    messages = _messages(messages_c, criteria, mpos.at(("catalogues", "messages")), problems)
    vocabularies = _vocabularies(vocabularies_c, mpos.at(("catalogues", "vocabularies")), problems)
    codes = {name: tuple(c.code for c in v.codes) for name, v in vocabularies.items()}  # in the order written

    _check_references(manifest, mpos, codes, sources, criteria, interventions_c, parameters_c, medications_c, problems)

    specs: list[tuple[RuleSpec, Positions]] = []
    seen_ids: dict[str, SourceLocation] = {}
    rule_paths = [p for i, entry in enumerate(manifest.rules) for p in loader.expand(entry, mpos.at(("rules", i)))]
    for rule_path in rule_paths:
        loaded_rules = loader.read(rule_path)
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

    ctx = CompileContext(
        interventions, referrals, parameters, criteria, sources, manifest.profiles, fact_types_for(codes)
    )
    rules = compile_rules([s for s in specs if s[0].status != "retired"], ctx, problems)

    tests: list[LoadedTestCase] = []
    rules_ok = not any(p.severity == "error" for p in problems)
    alert_codes = {
        code
        for rule in rules
        for c in rule.conclusions
        for code in (
            [c.code] if isinstance(c, ir.Alert) else [f"red_flag.{c.code}"] if isinstance(c, ir.RedFlag) else []
        )
    }
    test_entries = manifest.tests if with_tests else []
    test_paths = [p for i, entry in enumerate(test_entries) for p in loader.expand(entry, mpos.at(("tests", i)))]
    for test_path in test_paths:
        loaded_tests = loader.read(test_path, hashed=False)
        if loaded_tests is None:
            continue
        tdata, tpos = loaded_tests
        tfile = _validate(TestFile, tdata, tpos, problems)
        if tfile is None:
            continue
        tests += load_cases(
            tfile,
            tpos,
            problems,
            CaseCodes(manifest.profiles, interventions, referrals, medications, alert_codes, set(seen_ids), rules_ok),
        )

    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RulesetError(errors)
    digest = hashlib.sha256(
        json.dumps(loader.canonical, sort_keys=True, default=str, separators=(",", ":")).encode()
    ).hexdigest()
    logger.debug(
        "loaded %s %s from %s: %d rules, %d test cases, sha256 %s",
        manifest.id,
        manifest.version,
        root,
        len(rules),
        len(tests),
        digest,
    )
    return Ruleset(
        path=root,
        manifest=manifest,
        interventions=interventions,
        referrals=referrals,
        sources=sources,
        parameters=parameters,
        medications=medications,
        criteria=criteria,
        messages=messages,
        vocabularies=vocabularies,
        catalogue_entries=_catalogue_entries(
            {
                "interventions": (interventions_c, "interventions", "code"),
                "referrals": (referrals_c, "referrals", "code"),
                "parameters": (parameters_c, "parameters", "name"),
                "medications": (medications_c, "medications", "code"),
                "sources": (sources_c, "sources", "id"),
                "criteria": (criteria_c, "criteria", "id"),
                "vocabularies": (vocabularies_c, "vocabularies", "name"),
            }
        ),
        message_specs={m.id: m for m, _, _ in _items(messages_c, "messages") if m.id in messages},
        message_locations={
            m.id: pos.at(("messages", i, "text")) for m, pos, i in _items(messages_c, "messages") if m.id in messages
        },
        rules=tuple(rules),
        rule_specs={s.id: s for s, _ in specs},
        version_locations={s.id: pos.at(("version",)) for s, pos in specs},
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
