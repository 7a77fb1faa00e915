"""The ``ipm-cds`` command line.

Exit codes: 0 success; 1 tests failed; 2 usage error; 3 invalid ruleset; 4 invalid patient data;
5 evaluation error; 6 an input file or folder that does not exist (``batch`` also 128 + N when stopped by
signal N). Each command's ``--help`` lists the codes it can return. Errors print one line
(``file:line:col: message (hint)`` or ``field: message``), never a traceback. A patient file given as
``-`` is read from the standard input. ``ipm-cds completion SHELL`` prints a shell completion script.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .argtypes import add_backend_option, add_engine_options
from .errors import (
    ConfigurationError,
    EvaluationError,
    InputFileError,
    IpmCdsError,
    PatientDataError,
    Problem,
    RulesetError,
)
from .patientfile import read_patient_document

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .ruleset.loader import Ruleset

EXIT_OK, EXIT_TESTS_FAILED, EXIT_USAGE, EXIT_RULESET, EXIT_PATIENT, EXIT_EVALUATION = 0, 1, 2, 3, 4, 5
EXIT_NO_INPUT = 6

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_TESTS_FAILED: "a test case failed",
    EXIT_USAGE: "usage or configuration error (a bad option, an unknown profile or parameter)",
    EXIT_RULESET: "invalid ruleset (every problem printed as file:line:col: message)",
    EXIT_PATIENT: "invalid patient data (one line per field to fix)",
    EXIT_EVALUATION: "evaluation error (no partial assessment is written)",
    EXIT_NO_INPUT: "an input file or folder does not exist or is not readable",
}
# The exit codes each command can return, for its --help.
COMMAND_EXIT_CODES: dict[str, tuple[int, ...]] = {
    "evaluate": (0, 2, 3, 4, 5, 6),
    "explain": (0, 2, 3, 4, 5, 6),
    "validate": (0, 2, 3, 6),
    "lock": (0, 2, 3, 6),
    "diff": (0, 2, 3, 4, 5, 6),
    "content": (0, 2, 3, 6),
    "schema": (0, 2),
    "batch": (0, 2, 3, 5, 6),
    "serve": (0, 2, 3, 6),
    "fhir": (0, 2, 3, 4, 6),
    "test": (0, 1, 2, 3, 5, 6),
    "new": (0, 2, 3, 6),
    "completion": (0, 2),
    "report": (0, 2, 3, 4, 5, 6),
    "summarize": (0, 2, 4, 6),
}
_EXTRA_EXIT_TEXT = {
    "batch": "  128+N  stopped by signal N (130 SIGINT, 143 SIGTERM); the output holds the records done\n"
    "  a record with invalid patient data is an error line in the output, not an exit code",
}
# Arguments naming an input that must exist (patient files are checked by their reader, which knows ``-``).
_INPUT_PATHS = ("ruleset", "old", "new", "cases", "issuers")
_RULESET_HELP = "ruleset folder (default: the bundled ipm-core)"
_PATIENT_HELP = "patient file, .json or .yaml ('-': read it from the standard input)"
# Completion hints for shtab (``ipm-cds completion``), as shtab.FILE and shtab.DIRECTORY spell them.
_COMPLETE_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
_COMPLETE_DIR = {"bash": "_shtab_compgen_dirs", "zsh": "_files -/", "tcsh": "d"}
_FOLDER_ARGUMENTS = {"ruleset", "old", "new", "cases", "schema --out"}


def exit_codes_epilog(command: str | None) -> str:
    """The ``Exit codes:`` section of a command's --help (every code for the top-level parser)."""
    codes = COMMAND_EXIT_CODES.get(command, tuple(EXIT_CODES)) if command else tuple(EXIT_CODES)
    lines = ["exit codes:", *(f"  {code:<5}  {EXIT_CODES[code]}" for code in codes)]
    if command in _EXTRA_EXIT_TEXT:
        lines.append(_EXTRA_EXIT_TEXT[command])
    return "\n".join(lines)


# Subcommands that live in their own modules: each module has register(parser) -> handler(args) -> int.
# A module whose optional dependencies are missing still gets a subcommand that says what to install.
EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("batch", "ipm_cds.serving.batch_cli", ""),
    ("serve", "ipm_cds.serving.service", "service"),
    ("fhir", "ipm_cds.interop.fhir.coverage", "service"),
    ("report", "ipm_cds.tooling.outcome_report", "report"),
    ("summarize", "ipm_cds.summarize", ""),
)
Handler = Callable[[argparse.Namespace], int]
_HANDLERS: dict[str, Handler] = {}


def _add_parser(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, epilog=exit_codes_epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser


def _register_extension(sub: Any, name: str, module: str, extra: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        parser = _add_parser(sub, name, f"(unavailable: {missing} is not installed)")
        parser.add_argument("args", nargs="*", help="the command's arguments (it cannot run here)")
        hint = f'pip install "ipm-cds[{extra}]"' if extra else "reinstall ipm-cds"

        def unavailable(args: argparse.Namespace) -> int:
            raise ConfigurationError(f"ipm-cds {name} needs {missing}, which is not installed", hint=hint)

        _HANDLERS[name] = unavailable
        return
    parser = _add_parser(sub, name, mod.__doc__.strip().splitlines()[0] if mod.__doc__ else name)
    _HANDLERS[name] = mod.register(parser)


def _add_dask_to_batch(sub: Any) -> None:
    """``ipm-cds batch --dask/--format/--partition-lines`` (ipm_cds.dask; dask itself is imported only when used)."""
    batch = sub.choices.get("batch")
    if batch is not None and "batch" in _HANDLERS:
        from .dask_cli import extend_batch

        _HANDLERS["batch"] = extend_batch(batch, _HANDLERS["batch"])


def _engine_options(parser: argparse.ArgumentParser, *, what: str = "evaluation") -> None:
    """--ruleset, --as-of, --profile, --backend and --param, as evaluate and explain take them."""
    add_engine_options(parser, ruleset_help=_RULESET_HELP, as_of_help=f"{what} date YYYY-MM-DD (default: today)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipm-cds",
        description="Clinical decision support for interventional pain management. Decision support, never an order.",
        epilog=exit_codes_epilog(None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ipm-cds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = _add_parser(sub, "evaluate", "assess one patient")
    ev.add_argument("patient", type=Path, help=_PATIENT_HELP)
    _engine_options(ev)
    ev.add_argument(
        "--format", choices=["text", "json"], default="text", help="text for people, json for programs (default: text)"
    )
    ev.add_argument(
        "--list-inactive", action="store_true", help="text format: list every rule that did not run, with why"
    )

    ex = _add_parser(sub, "explain", "why each conclusion, and why not each other intervention")
    ex.add_argument("patient", type=Path, help=_PATIENT_HELP)
    _engine_options(ex)
    ex.add_argument("--intervention", default=None, help="only this intervention's why-not and conclusions")
    ex.add_argument(
        "--format", choices=["text", "json"], default="text", help="text for people, json for programs (default: text)"
    )

    va = _add_parser(sub, "validate", "load, validate and compile a ruleset; list every problem")
    va.add_argument("ruleset", type=Path, nargs="?", default=None, help=_RULESET_HELP)
    va.add_argument(
        "--format",
        choices=["text", "json", "sarif"],
        default="text",
        help="json: one object on stdout with every problem (file, line, column, message, hint, severity, code); "
        "sarif: a SARIF 2.1.0 log for code-scanning tools",
    )

    lo = _add_parser(sub, "lock", "record each rule's content hash at its version (ruleset.lock.json)")
    lo.add_argument("ruleset", type=Path, nargs="?", default=None, help=_RULESET_HELP)
    lo.add_argument("--force", action="store_true", help="write even over unbumped changes or a broken lock file")

    di = _add_parser(sub, "diff", "impact analysis between two ruleset versions")
    di.add_argument("old", type=Path, help="the old ruleset folder")
    di.add_argument("new", type=Path, help="the new ruleset folder")
    di.add_argument("--cases", type=Path, default=None, help="a folder of patient files to evaluate too")
    di.add_argument("--generate", type=int, default=0, metavar="N", help="also evaluate N generated patients")
    di.add_argument("--profile", default=None, help="profile for both versions (default: each one's default)")
    di.add_argument(
        "--format", choices=["text", "json"], default="text", help="text for people, json for programs (default: text)"
    )

    co = _add_parser(sub, "content", "the clinical content of a ruleset as a table (rules, criteria, tags)")
    co.add_argument("ruleset", type=Path, nargs="?", default=None, help=_RULESET_HELP)
    co.add_argument(
        "--format", choices=["markdown", "json"], default="markdown", help="markdown table or JSON (default: markdown)"
    )

    sc = _add_parser(
        sub,
        "schema",
        "write JSON Schemas: rule files, catalogues, manifest, test cases, the patient document and the assessment",
    )
    sc.add_argument("--out", type=Path, default=Path("schemas"), help="output folder (default: ./schemas)")
    sc.add_argument(
        "--ruleset",
        type=Path,
        default=None,
        help="complete field names, catalogue codes and vocabulary values from this ruleset (default: bundled)",
    )

    for name, module, extra in EXTENSIONS:
        _register_extension(sub, name, module, extra)
    _add_dask_to_batch(sub)

    nw = _add_parser(sub, "new", "scaffold ruleset files: new pathway NAME")
    nw_sub = nw.add_subparsers(dest="what", required=True, metavar="WHAT", help="what to scaffold: pathway")
    nwp = nw_sub.add_parser(
        "pathway",
        help="an intervention, a parameter, a source, a criterion, a rule file and a test file that validate",
    )
    nwp.add_argument("name", help="the pathway's code (lower case, e.g. pns); also its intervention's code")
    nwp.add_argument(
        "--ruleset", type=Path, default=Path("rules/ipm-core"), help="the ruleset folder (default: rules/ipm-core)"
    )
    te = _add_parser(sub, "test", "run the ruleset's YAML test cases")
    te.add_argument("ruleset", type=Path, nargs="?", default=None, help=_RULESET_HELP)
    te.add_argument("--filter", default=None, help="only cases whose name contains this text")
    add_backend_option(te)
    te.add_argument("--junit", type=Path, default=None, metavar="FILE", help="also write a JUnit XML report")
    te.add_argument(
        "--coverage",
        default=None,
        metavar="FILE",
        help="report coverage for the rules of one rule file only (a path inside the ruleset: rules/facet.yaml); "
        "also with --filter",
    )

    cp = _add_parser(sub, "completion", "print a shell completion script (needs shtab: ipm-cds[completion])")
    cp.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete in")
    _completion_hints(parser)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-parsers of ``parser`` by command name."""
    return {
        name: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def _completion_hints(parser: argparse.ArgumentParser) -> None:
    """Tell shtab which arguments are files and which are folders (an attribute shtab reads; inert without it)."""
    for name, command in subcommands(parser).items():
        for action in command._actions:
            if action.type is Path:
                option = action.option_strings[0] if action.option_strings else ""
                folder = action.dest in _FOLDER_ARGUMENTS or f"{name} {option}" in _FOLDER_ARGUMENTS
                action.complete = _COMPLETE_DIR if folder else _COMPLETE_FILE  # type: ignore[attr-defined]


def _check_inputs(args: argparse.Namespace) -> None:
    """Every input file or folder named on the command line exists: else exit code 6, before any work."""
    for name in _INPUT_PATHS:
        value = getattr(args, name, None)
        if isinstance(value, Path) and not value.exists():
            what = "ruleset folder" if name in ("ruleset", "old", "new") else "file or folder"
            raise InputFileError(str(value), f"no such {what}")


def _completion(args: argparse.Namespace) -> int:
    try:
        import shtab
    except ImportError:
        raise ConfigurationError(
            "ipm-cds completion needs shtab, which is not installed", hint='pip install "ipm-cds[completion]"'
        ) from None
    sys.stdout.write(shtab.complete(_parser(), shell=args.shell) + "\n")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from .engine.facade import Engine
    from .model.render import render_text
    from .ruleset.loader import load_ruleset

    document = read_patient_document(args.patient)
    ruleset = load_ruleset(args.ruleset, with_tests=False)
    engine = Engine(ruleset, profile=args.profile, backend=args.backend, parameters=dict(args.param))
    assessment = engine.evaluate(document, as_of=args.as_of)
    text = render_text(assessment, list_inactive=args.list_inactive) if args.format != "json" else ""
    sys.stdout.write(assessment.to_json() + "\n" if args.format == "json" else text)
    return EXIT_OK


def _about(conclusion: str, intervention: str) -> bool:
    """Whether an explained conclusion is about ``intervention``: a candidate or an exclusion of exactly that
    code (not a code it is a prefix of, nor a reason that mentions it), or an alert or referral naming it."""
    import re

    kind, _, rest = conclusion.partition(" ")
    if kind in ("candidate", "excluded"):
        return rest.split(" ", 1)[0].rstrip(":") == intervention
    return re.search(rf"(?<![a-z0-9_]){re.escape(intervention)}(?![a-z0-9_])", conclusion) is not None


def _explain(args: argparse.Namespace) -> int:
    from .engine.explain import render_explanation
    from .engine.facade import Engine
    from .ruleset.loader import load_ruleset

    document = read_patient_document(args.patient)
    ruleset = load_ruleset(args.ruleset, with_tests=False)
    engine = Engine(ruleset, profile=args.profile, backend=args.backend, parameters=dict(args.param))
    explanation = engine.explain(document, as_of=args.as_of)
    if args.intervention:
        if args.intervention not in ruleset.interventions:
            from .ruleset.problems import did_you_mean

            raise ConfigurationError(
                f"unknown intervention {args.intervention!r}",
                hint=did_you_mean(args.intervention, ruleset.interventions),
            )
        explanation = explanation.model_copy(
            update={
                "why_not": [w for w in explanation.why_not if w.intervention == args.intervention],
                "conclusions": [c for c in explanation.conclusions if _about(c.conclusion, args.intervention)],
            }
        )
    if args.format == "json":
        sys.stdout.write(json.dumps(explanation.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_explanation(explanation))
    return EXIT_OK


def _print_report(problems: Sequence[Problem], ruleset: Any, fmt: str, folder: Path | None) -> None:
    """``validate --format json|sarif``: every problem for CI and editors (``tooling/report.py``)."""
    from .ruleset.loader import bundled_ruleset_path
    from .tooling.report import sarif, validation_json

    if fmt == "sarif":
        root = (folder if folder is not None else bundled_ruleset_path()).resolve()
        out = sarif(problems, (root.parent if root.is_dir() else root.parent.parent).as_uri())
    else:
        out = validation_json(problems, ruleset)
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")


def _validate(args: argparse.Namespace) -> int:
    from .engine.durable_backend import limit_problems
    from .engine.facade import Engine
    from .ruleset.loader import load_ruleset
    from .ruleset.lock import check_lock
    from .tooling.checks import semantic_problems

    fmt = getattr(args, "format", "text")
    try:
        ruleset = load_ruleset(args.ruleset)
        for profile in ruleset.manifest.profiles:
            Engine(ruleset, profile=profile, backend="python")
    except RulesetError as exc:
        if fmt == "text":
            raise
        _print_report(list(exc.problems), None, fmt, args.ruleset)
        return EXIT_RULESET
    # durable-rules' limits under every profile, checked in Python (no engine is built): a ruleset that
    # validates builds on durable-rules and runs there wherever the python backend answers.
    problems = [*ruleset.warnings, *check_lock(ruleset), *semantic_problems(ruleset), *limit_problems(ruleset)]
    errors = [p for p in problems if p.severity == "error"]
    if fmt != "text":
        _print_report(problems, None if errors else ruleset, fmt, args.ruleset)
        return EXIT_RULESET if errors else EXIT_OK
    for warning in (p for p in problems if p.severity == "warning"):
        print(f"warning[{warning.code}]: {warning}" if warning.code else f"warning: {warning}")
    if errors:
        raise RulesetError(errors)
    print(
        f"{ruleset.id} {ruleset.version}: {len(ruleset.rules)} rules, {len(ruleset.tests)} test cases, "
        f"profiles {', '.join(ruleset.manifest.profiles)}; valid (sha256 {ruleset.sha256})"
    )
    return EXIT_OK


def _lock(args: argparse.Namespace) -> int:
    from .ruleset.loader import load_ruleset
    from .ruleset.lock import write_lock

    ruleset = load_ruleset(args.ruleset)
    path = write_lock(ruleset, force=args.force)
    print(
        f"locked {len(ruleset.rule_specs)} rules, {len(ruleset.catalogue_entries)} catalogue entries and "
        f"{len(ruleset.message_specs)} messages of {ruleset.id} "
        f"{ruleset.version} in {path}"
    )
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from .ruleset.loader import load_ruleset
    from .testing.strategies import DEFAULT_AS_OF
    from .tooling.diff import case_patients, diff_rulesets, generated_patients, render_diff

    old, new = load_ruleset(args.old), load_ruleset(args.new)
    cohort = case_patients(old, new, folder=args.cases)
    cohort += [(p, DEFAULT_AS_OF) for p in generated_patients(args.generate)]
    result = diff_rulesets(old, new, patients=cohort, profile_old=args.profile, profile_new=args.profile)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_diff(result))
    return EXIT_OK


def _content(args: argparse.Namespace) -> int:
    from .ruleset.loader import load_ruleset
    from .tooling.content import content, render_markdown

    ruleset = load_ruleset(args.ruleset, with_tests=False)
    rows = content(ruleset)
    if args.format == "json":
        sys.stdout.write(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_markdown(ruleset, rows))
    return EXIT_OK


def _reachable_defs(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The ``$defs`` that ``schema`` reaches through ``#/$defs/...`` references, recursively."""
    keep: dict[str, Any] = {}
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in keep:
                    keep[name] = defs[name]
                    stack.append(defs[name])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return dict(sorted(keep.items()))


def document_schemas(ruleset: Ruleset | None = None) -> dict[str, dict[str, Any]]:
    """The JSON Schemas of what goes in and out of an evaluation: the patient document (with the codes of
    ``ruleset``'s vocabularies, as in its test files' schema), the assessment and the explanation; draft
    2020-12, with the same ``$id`` scheme as the rule-file schemas."""
    from .model.assessment import Assessment
    from .model.explanation import Explanation
    from .ruleset.schema import SCHEMA_ID_BASE, schema_for

    tests = schema_for("tests", ruleset)  # its PatientCase is the patient model, completed from the ruleset
    patient = {k: v for k, v in tests["$defs"]["PatientCase"].items()}
    patient["$defs"] = _reachable_defs(patient, tests["$defs"])
    out: dict[str, dict[str, Any]] = {"patient": patient}
    documents: tuple[tuple[str, type[BaseModel]], ...] = (("assessment", Assessment), ("explanation", Explanation))
    for name, model in documents:
        out[name] = model.model_json_schema(mode="serialization")
    for name, schema in out.items():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{SCHEMA_ID_BASE}{name}.schema.json"
    return out


def _schema(args: argparse.Namespace) -> int:
    from .ruleset.loader import load_ruleset
    from .ruleset.schema import write_schemas

    ruleset = load_ruleset(args.ruleset, with_tests=False)
    for path in write_schemas(args.out, ruleset):
        print(path)
    for name, schema in document_schemas(ruleset).items():
        path = args.out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(path)
    return EXIT_OK


def _new(args: argparse.Namespace) -> int:
    from .tooling.scaffold import new_pathway

    for path in new_pathway(args.ruleset, args.name):
        print(f"wrote {path}")
    print(
        f"next: replace every REPLACE, give {args.name}_min_pain_weeks its value from the source, then "
        f"ipm-cds validate {args.ruleset} and ipm-cds test {args.ruleset} --filter '{args.name} - '. To record "
        f"past {args.name} procedures, add {args.name} to the procedure_kind vocabulary and bump the ruleset "
        "version (docs/rule-files.md, the walkthrough)."
    )
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    from .engine.facade import choose_backend
    from .ruleset.loader import load_ruleset
    from .tooling.casetests import coverage, junit_xml, rules_in, run_cases

    ruleset = load_ruleset(args.ruleset)
    if args.coverage is not None:
        rules_in(ruleset, args.coverage)  # a file with no rule is an error before anything runs
    results = run_cases(ruleset, backend=args.backend, name_filter=args.filter)
    if args.filter and not results:
        raise ConfigurationError(f"no test case name contains {args.filter!r}")
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"FAIL {r.location}: {r.name} [{r.profile}]")
        for failure in r.failures:
            print(f"    {failure}")
    if args.junit:
        args.junit.write_text(junit_xml(ruleset, results, choose_backend(args.backend)[0]), encoding="utf-8")
    if not args.filter or args.coverage:
        cov = coverage(ruleset, results, args.coverage)
        scope = f" of {args.coverage}" if args.coverage else ""
        if cov.never_fired:
            print(f"coverage: rules{scope} no case fires: {', '.join(cov.never_fired)}")
        if cov.never_missed:
            print(f"coverage: rules{scope} never seen not firing (no near miss): {', '.join(cov.never_missed)}")
        if not cov.never_fired and not cov.never_missed:
            print(f"coverage: all {len(rules_in(ruleset, args.coverage))} rules{scope} seen firing and not firing")
    name, auto = choose_backend(args.backend)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed ({name} backend{' (auto)' if auto else ''})")
    return EXIT_TESTS_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handlers: dict[str, Handler] = {
        "evaluate": _evaluate,
        "explain": _explain,
        "validate": _validate,
        "lock": _lock,
        "diff": _diff,
        "schema": _schema,
        "content": _content,
        "test": _test,
        "new": _new,
        "completion": _completion,
        **_HANDLERS,
    }
    try:
        _check_inputs(args)
        return handlers[args.command](args)
    except RulesetError as exc:
        print(f"ipm-cds: invalid ruleset: {exc.report()}", file=sys.stderr)
        return EXIT_RULESET
    except PatientDataError as exc:
        for problem in exc.problems:  # one line per problem: every field to fix, not only the first
            print(f"ipm-cds: invalid patient data: {problem}", file=sys.stderr)
        return EXIT_PATIENT
    except InputFileError as exc:
        print(f"ipm-cds: cannot read input: {exc}", file=sys.stderr)
        return EXIT_NO_INPUT
    except ConfigurationError as exc:
        print(f"ipm-cds: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EvaluationError as exc:
        print(f"ipm-cds: evaluation failed: {exc}", file=sys.stderr)
        return EXIT_EVALUATION
    except IpmCdsError as exc:
        print(f"ipm-cds: {exc}", file=sys.stderr)
        return EXIT_EVALUATION
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
