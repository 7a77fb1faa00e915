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
from .messages import CRITERION, SLOTS, Template, parse_template
from .model import (
    SEMVER,
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
    rules: tuple[ir.Rule, ...]
    rule_specs: Mapping[str, RuleSpec]
    fact_types: Mapping[str, FactType]
    tests: tuple[LoadedTestCase, ...]
    sha256: str
    warnings: tuple[Problem, ...] = field(default=())
    version_locations: Mapping[str, SourceLocation] = field(default_factory=dict)  # rule id -> its version
    message_specs: Mapping[str, Message] = field(default_factory=dict)  # as written, for the lock
    message_locations: Mapping[str, SourceLocation] = field(default_factory=dict)  # message id -> its text

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
        )

    def rule(self, rule_id: str) -> ir.Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at ``loc`` inside ``model`` (for did-you-mean on unknown fields)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        nested = [a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type)]
        models = [a for a in nested if issubclass(a, BaseModel)]
        if not models:
            inner = [x for a in getattr(annotation, "__args__", ()) for x in getattr(a, "__args__", (a,))]
            models = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return []
        current = models[0]
    return list(getattr(current, "model_fields", {}))


def _is_version_error(err: Any) -> bool:
    """A version field given as a number (``version: 1.1``) or as a string that is not semver."""
    if err["type"] == "string_pattern_mismatch":
        return bool(err.get("ctx", {}).get("pattern") == SEMVER.pattern)
    loc = err["loc"]
    return bool(
        err["type"] == "string_type" and loc and loc[-1] == "version" and isinstance(err.get("input"), int | float)
    )


def _semver_like(value: Any) -> str:
    """The semantic version a near miss means: ``1.1`` -> ``1.1.0``, ``2`` -> ``2.0.0``; else ``1.0.0``."""
    parts = str(value).strip().lstrip("vV").split(".")
    if 1 <= len(parts) <= 3 and all(p.isdigit() for p in parts):
        return ".".join(str(int(p)) for p in [*parts, "0", "0"][:3])
    return "1.0.0"


def _pydantic_problems(
    exc: ValidationError, pos: Positions, prefix: Path_ = (), model: type[BaseModel] = BaseModel
) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        path = (*prefix, *loc)
        message = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
            fields = _fields_at(model, loc[:-1])
            hint = did_you_mean(str(loc[-1]), fields) if fields else None
            location = pos.at(path, key=True)
        elif err["type"] == "missing":
            message = f"missing required field {loc[-1]!r}"
            location = pos.at(path[:-1])
        elif err.get("input", ...) is None and loc and isinstance(loc[-1], str):
            # `status:` with nothing after it: YAML reads null, and pydantic's message would be about null's type
            message = f"a value is missing after '{loc[-1]}:'"
            location = pos.at(path)
            if loc[-1] == "version":
                hint = "a version has three numbers, e.g. 1.0.0"
            elif err["msg"].startswith("Input should be "):
                hint = "it " + err["msg"].removeprefix("Input ")
            else:
                hint = err["msg"].removeprefix("Value error, ")
        elif _is_version_error(err):
            where = ".".join(str(p) for p in loc)
            message = f"{where}: {err['input']!r} is not a semantic version MAJOR.MINOR.PATCH"
            location = pos.at(path)
            hint = f"a version has three numbers, e.g. {_semver_like(err['input'])}; no quotes needed"
        else:
            where = ".".join(str(p) for p in loc)
            message = f"{where}: {message}" if where else message
            location = pos.at(path)
            if err["type"] == "string_type" and isinstance(err.get("input"), int | float):
                hint = f'quote it: "{err["input"]}"'
        problems.append(Problem(message, location, hint=hint))
    return problems


def _validate(model: type[_T], data: Any, pos: Positions, problems: list[Problem], prefix: Path_ = ()) -> _T | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, pos, prefix, model))
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


def _index(files: list[tuple[Any, Positions]], list_key: str, key: str, problems: list[Problem]) -> dict[str, Any]:
    """Merge the items of one catalogue's files by key; a key defined twice is an error (across files too)."""
    out: dict[str, Any] = {}
    where: dict[str, SourceLocation] = {}
    for model, pos in files:
        for i, item in enumerate(getattr(model, list_key)):
            k = getattr(item, key)
            if k in out:
                problems.append(Problem(f"duplicate {key} {k!r} (first at {where[k]})", pos.at((list_key, i, key))))
                continue
            out[k] = item
            where[k] = pos.at((list_key, i, key))
    return out


def _items(files: list[tuple[Any, Positions]], list_key: str) -> list[tuple[Any, Positions, int]]:
    return [(item, pos, i) for model, pos in files for i, item in enumerate(getattr(model, list_key))]


def _messages(
    files: list[tuple[MessageCatalogue, Positions]],
    criteria: Mapping[str, Criterion],
    declared: SourceLocation,
    problems: list[Problem],
) -> dict[str, Template]:
    """Parse the message templates and check them against what the code needs (:data:`messages.SLOTS`)."""
    out: dict[str, Template] = {}
    for message, pos, i in _items(files, "messages"):
        if message.id not in SLOTS:
            problems.append(
                Problem(
                    f"unknown message {message.id!r}: the code uses no such message",
                    pos.at(("messages", i, "id")),
                    hint=did_you_mean(message.id, SLOTS),
                )
            )
            continue
        for j, crit in enumerate(message.criteria):
            if crit not in criteria:
                problems.append(
                    Problem(
                        f"unknown criterion {crit!r}",
                        pos.at(("messages", i, "criteria", j)),
                        hint=did_you_mean(crit, criteria),
                    )
                )
        template, errors = parse_template(message)
        at = pos.at(("messages", i, "text"))
        problems.extend(Problem(e, at) for e in errors)
        if template is None:
            continue
        slots = SLOTS[message.id]
        for name in sorted(template.names - slots):
            hint = did_you_mean(name, slots) or (
                f"{message.id} fills {', '.join('{' + s + '}' for s in sorted(slots))}" if slots else None
            )
            problems.append(Problem(f"message {message.id}: unknown placeholder {{{name}}}", at, hint=hint))
        if CRITERION in template.names and not message.criteria:
            problems.append(
                Problem(
                    f"message {message.id} uses {{{CRITERION}}} but names no criteria",
                    pos.at(("messages", i)),
                    hint="list them under criteria:",
                )
            )
        if message.id in out:
            problems.append(Problem(f"duplicate message id {message.id!r}", pos.at(("messages", i, "id"))))
            continue
        out[message.id] = template
    for key in sorted(set(SLOTS) - set(out)):
        if not any(p.message.startswith(f"message {key}:") for p in problems):
            problems.append(
                Problem(
                    f"the message catalogue has no message {key!r}, which the code needs",
                    declared,
                    hint="add it to the message catalogue; its placeholders: "
                    + (", ".join("{" + s + "}" for s in sorted(SLOTS[key])) or "none"),
                )
            )
    return out


def _check_expectation_codes(
    case: TestCase,
    pos: Positions,
    at: Path_,
    problems: list[Problem],
    interventions: Mapping[str, Any],
    referrals: Mapping[str, Any],
    medications: Mapping[str, Any],
    alert_codes: set[str],
    rules_ok: bool,
) -> None:
    """Every code a test case expects must exist: a misspelt code would make an expectation that can never hold
    (or, in an empty list, one that always holds)."""
    expect = case.expect

    def check(value: str, table: Any, what: str, path: Path_, *, key: bool = False) -> None:
        if value not in table:
            problems.append(
                Problem(
                    f"unknown {what} {value!r} in expect.{path[0]}",
                    pos.at((*at, *path), key=key),
                    hint=did_you_mean(value, table),
                )
            )

    for name in ("candidates", "excluded", "precautions"):
        for k, code in enumerate(getattr(expect, name) or []):
            check(code, interventions, "intervention", (name, k))
    for code in expect.exclusion_kinds:
        check(code, interventions, "intervention", ("exclusion_kinds", code), key=True)
    for name in ("referrals", "deferred_referrals"):
        for k, code in enumerate(getattr(expect, name) or []):
            check(code, referrals, "referral target", (name, k))
    for code in expect.referral_urgency:
        check(code, referrals, "referral target", ("referral_urgency", code), key=True)
    for k, want in enumerate(expect.precaution_details):
        if want.intervention is not None:
            check(want.intervention, interventions, "intervention", ("precaution_details", k, "intervention"))
        if want.medication is not None:
            check(want.medication, medications, "medication", ("precaution_details", k, "medication"))
    if rules_ok:  # alert codes come from the rules: only once they loaded cleanly
        for k, code in enumerate(expect.alerts or []):
            check(code, alert_codes, "alert", ("alerts", k))
        for code in expect.alert_severity:
            check(code, alert_codes, "alert", ("alert_severity", code), key=True)


def load_ruleset(path: str | Path | None = None, *, with_tests: bool = True) -> Ruleset:
    """Load, validate and compile a ruleset directory (the bundled ``ipm-core`` when ``path`` is None).

    ``with_tests=False`` skips the test-case files (an application that only evaluates needs none). The
    content hash never covers test cases: editing a test does not change a ruleset's provenance.

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
    if (
        sources_c is None
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

    def check_ref(value: str | None, table: Mapping[str, Any], what: str, pos: Positions, path: Path_) -> None:
        if value is not None and value not in table:
            problems.append(Problem(f"unknown {what} {value!r}", pos.at(path), hint=did_you_mean(value, table)))

    check_ref(manifest.settings.rolling_window_source, sources, "source", mpos, ("settings", "rolling_window_source"))
    for item, ipos, i in _items(interventions_c, "interventions"):
        for j, src in enumerate(item.sources):
            check_ref(src, sources, "source", ipos, ("interventions", i, "sources", j))
        check_ref(item.bleeding_risk.source, sources, "source", ipos, ("interventions", i, "bleeding_risk", "source"))
        for j, crit in enumerate(item.guidance_criteria):
            check_ref(crit, criteria, "criterion", ipos, ("interventions", i, "guidance_criteria", j))
    for param, ppos, i in _items(parameters_c, "parameters"):
        check_ref(param.source, sources, "source", ppos, ("parameters", i, "source"))
        if param.default_basis is not None:
            check_ref(param.default_basis.source, sources, "source", ppos, ("parameters", i, "default_basis", "source"))
        for j, crit in enumerate(param.criteria):
            check_ref(crit, criteria, "criterion", ppos, ("parameters", i, "criteria", j))
        for prof in param.profiles:
            check_ref(prof, manifest.profiles, "profile", ppos, ("parameters", i, "profiles", prof))
    for med, medpos, i in _items(medications_c, "medications"):
        check_ref(med.source, sources, "source", medpos, ("medications", i, "source"))
        check_ref(med.mme_source, sources, "source", medpos, ("medications", i, "mme_source"))

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

    ctx = CompileContext(interventions, referrals, parameters, criteria, sources, manifest.profiles)
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
        for j, case in enumerate(tfile.cases):
            if case.profile is not None:
                check_ref(case.profile, manifest.profiles, "profile", tpos, ("cases", j, "profile"))
            _check_expectation_codes(
                case,
                tpos,
                ("cases", j, "expect"),
                problems,
                interventions,
                referrals,
                medications,
                alert_codes,
                rules_ok,
            )
            for key in ("fired", "not_fired"):
                for k, rule_id in enumerate(getattr(case.expect, key)):
                    # only once the rules themselves loaded cleanly: a broken rule file is the problem to show
                    if rules_ok and rule_id not in seen_ids:
                        problems.append(
                            Problem(
                                f"unknown rule {rule_id!r} in expect.{key}",
                                tpos.at(("cases", j, "expect", key, k)),
                                hint=did_you_mean(rule_id, seen_ids),
                            )
                        )
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
        messages=messages,
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
