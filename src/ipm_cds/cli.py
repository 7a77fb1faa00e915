"""The ``ipm-cds`` command line.

Exit codes: 0 success; 1 tests failed; 2 usage error; 3 invalid ruleset; 4 invalid patient data;
5 evaluation error. Errors print one line (``file:line:col: message (hint)`` or ``field: message``),
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from ._version import __version__
from .argtypes import date_arg, parameter_arg
from .errors import (
    ConfigurationError,
    EvaluationError,
    IpmCdsError,
    PatientDataError,
    Problem,
    RulesetError,
)
from .patientfile import read_patient_document

EXIT_OK, EXIT_TESTS_FAILED, EXIT_USAGE, EXIT_RULESET, EXIT_PATIENT, EXIT_EVALUATION = 0, 1, 2, 3, 4, 5


# Subcommands that live in their own modules: each module has register(parser) -> handler(args) -> int.
# A module whose optional dependencies are missing still gets a subcommand that says what to install.
EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("batch", "ipm_cds.batch", ""),
    ("serve", "ipm_cds.interop.service", "service"),
)
Handler = Callable[[argparse.Namespace], int]
_HANDLERS: dict[str, Handler] = {}


def _register_extension(sub: Any, name: str, module: str, extra: str) -> None:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        parser = sub.add_parser(name, help=f"(unavailable: {missing} is not installed)")
        parser.add_argument("args", nargs="*")
        hint = f'pip install "ipm-cds[{extra}]"' if extra else "reinstall ipm-cds"

        def unavailable(args: argparse.Namespace) -> int:
            raise ConfigurationError(f"ipm-cds {name} needs {missing}, which is not installed", hint=hint)

        _HANDLERS[name] = unavailable
        return
    parser = sub.add_parser(name, help=mod.__doc__.strip().splitlines()[0] if mod.__doc__ else name)
    _HANDLERS[name] = mod.register(parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipm-cds",
        description="Clinical decision support for interventional pain management. Decision support, never an order.",
    )
    parser.add_argument("--version", action="version", version=f"ipm-cds {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="assess one patient")
    ev.add_argument("patient", type=Path, help="patient file, .json or .yaml")
    ev.add_argument("--ruleset", type=Path, default=None, help="ruleset folder (default: bundled ipm-core)")
    ev.add_argument("--as-of", type=date_arg, default=None, help="evaluation date YYYY-MM-DD (default: today)")
    ev.add_argument("--profile", default=None, help="profile, e.g. cms_lcd or society_consensus")
    ev.add_argument("--backend", choices=["durable", "python"], default="durable")
    ev.add_argument(
        "--param",
        type=parameter_arg,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter (repeatable)",
    )
    ev.add_argument("--format", choices=["text", "json"], default="text")
    ev.add_argument(
        "--list-inactive", action="store_true", help="text format: list every rule that did not run, with why"
    )

    ex = sub.add_parser("explain", help="why each conclusion, and why not each other intervention")
    ex.add_argument("patient", type=Path, help="patient file, .json or .yaml")
    ex.add_argument("--ruleset", type=Path, default=None)
    ex.add_argument("--as-of", type=date_arg, default=None)
    ex.add_argument("--profile", default=None)
    ex.add_argument("--backend", choices=["durable", "python"], default="durable")
    ex.add_argument("--param", type=parameter_arg, action="append", default=[], metavar="NAME=VALUE")
    ex.add_argument("--intervention", default=None, help="only this intervention's why-not")
    ex.add_argument("--format", choices=["text", "json"], default="text")

    va = sub.add_parser("validate", help="load, validate and compile a ruleset; list every problem")
    va.add_argument("ruleset", type=Path, nargs="?", default=None)
    va.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: one object on stdout with every problem (file, line, column, message, hint, severity)",
    )

    lo = sub.add_parser("lock", help="record each rule's content hash at its version (ruleset.lock.json)")
    lo.add_argument("ruleset", type=Path, nargs="?", default=None)
    lo.add_argument("--force", action="store_true", help="write even over unbumped changes or a broken lock file")

    di = sub.add_parser("diff", help="impact analysis between two ruleset versions")
    di.add_argument("old", type=Path)
    di.add_argument("new", type=Path)
    di.add_argument("--cases", type=Path, default=None, help="a folder of patient files to evaluate too")
    di.add_argument("--generate", type=int, default=0, metavar="N", help="also evaluate N generated patients")
    di.add_argument("--profile", default=None, help="profile for both versions (default: each one's default)")
    di.add_argument("--format", choices=["text", "json"], default="text")

    co = sub.add_parser("content", help="the clinical content of a ruleset as a table (rules, criteria, tags)")
    co.add_argument("ruleset", type=Path, nargs="?", default=None)
    co.add_argument("--format", choices=["markdown", "json"], default="markdown")

    sc = sub.add_parser("schema", help="write JSON Schemas for rule files, catalogues, manifest and test cases")
    sc.add_argument("--out", type=Path, default=Path("schemas"), help="output folder (default: ./schemas)")

    for name, module, extra in EXTENSIONS:
        _register_extension(sub, name, module, extra)

    te = sub.add_parser("test", help="run the ruleset's YAML test cases")
    te.add_argument("ruleset", type=Path, nargs="?", default=None)
    te.add_argument("--filter", default=None, help="only cases whose name contains this text")
    te.add_argument("--backend", choices=["durable", "python"], default="durable")
    te.add_argument("--junit", type=Path, default=None, metavar="FILE", help="also write a JUnit XML report")
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from .engine.facade import Engine
    from .render import render_text
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
            from .ruleset.compile import did_you_mean

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


def problem_json(problem: Problem) -> dict[str, Any]:
    """One problem as CI and editors read it: 1-based line and column, null where unknown."""
    where = problem.location
    return {
        "file": where.file if where else None,
        "line": where.line if where else None,
        "column": where.column if where else None,
        "field": problem.field,
        "message": problem.message,
        "hint": problem.hint,
        "severity": problem.severity,
    }


def _print_problems_json(problems: Sequence[Problem], ruleset: Any) -> None:
    """``validate --format json``: ``valid``, the ruleset (when it loaded cleanly) and every problem, errors first."""
    ordered = sorted(problems, key=lambda p: p.severity != "error")
    out: dict[str, Any] = {
        "valid": not any(p.severity == "error" for p in problems),
        "ruleset": (
            {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256, "rules": len(ruleset.rules)}
            if ruleset is not None
            else None
        ),
        "problems": [problem_json(p) for p in ordered],
    }
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")


def _validate(args: argparse.Namespace) -> int:
    from .engine.durable_backend import limit_problems
    from .engine.facade import Engine
    from .ruleset.loader import load_ruleset
    from .ruleset.lock import check_lock
    from .tooling.checks import semantic_problems

    as_json = getattr(args, "format", "text") == "json"
    try:
        ruleset = load_ruleset(args.ruleset)
        for profile in ruleset.manifest.profiles:
            Engine(ruleset, profile=profile, backend="python")
    except RulesetError as exc:
        if not as_json:
            raise
        _print_problems_json(list(exc.problems), None)
        return EXIT_RULESET
    # durable-rules' limits under every profile, checked in Python (no engine is built): a ruleset that
    # validates builds on durable-rules and runs there wherever the python backend answers.
    problems = [*ruleset.warnings, *check_lock(ruleset), *semantic_problems(ruleset), *limit_problems(ruleset)]
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        _print_problems_json(problems, None if errors else ruleset)
        return EXIT_RULESET if errors else EXIT_OK
    for warning in (p for p in problems if p.severity == "warning"):
        print(f"warning: {warning}")
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
        f"locked {len(ruleset.rule_specs)} rules and {len(ruleset.message_specs)} messages of {ruleset.id} "
        f"{ruleset.version} in {path}"
    )
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from .diff import case_patients, diff_rulesets, generated_patients, render_diff
    from .ruleset.loader import load_ruleset

    old, new = load_ruleset(args.old), load_ruleset(args.new)
    cohort = case_patients(old, new, folder=args.cases)
    cohort += [(p, date(2025, 6, 2)) for p in generated_patients(args.generate)]
    result = diff_rulesets(old, new, patients=cohort, profile_old=args.profile, profile_new=args.profile)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_diff(result))
    return EXIT_OK


def _content(args: argparse.Namespace) -> int:
    from .content import content, render_markdown
    from .ruleset.loader import load_ruleset

    ruleset = load_ruleset(args.ruleset, with_tests=False)
    rows = content(ruleset)
    if args.format == "json":
        sys.stdout.write(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_markdown(ruleset, rows))
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from .ruleset.schema import write_schemas

    for path in write_schemas(args.out):
        print(path)
    return EXIT_OK


def _test(args: argparse.Namespace) -> int:
    from .casetests import coverage, junit_xml, run_cases
    from .ruleset.loader import load_ruleset

    ruleset = load_ruleset(args.ruleset)
    results = run_cases(ruleset, backend=args.backend, name_filter=args.filter)
    if args.filter and not results:
        raise ConfigurationError(f"no test case name contains {args.filter!r}")
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"FAIL {r.location}: {r.name} [{r.profile}]")
        for failure in r.failures:
            print(f"    {failure}")
    if args.junit:
        args.junit.write_text(junit_xml(ruleset, results, args.backend), encoding="utf-8")
    if not args.filter:
        cov = coverage(ruleset, results)
        if cov.never_fired:
            print(f"coverage: rules no case fires: {', '.join(cov.never_fired)}")
        if cov.never_missed:
            print(f"coverage: rules never seen not firing (no near miss): {', '.join(cov.never_missed)}")
        if not cov.never_fired and not cov.never_missed:
            print(f"coverage: all {len(ruleset.rules)} rules seen firing and not firing")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
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
        **_HANDLERS,
    }
    try:
        return handlers[args.command](args)
    except RulesetError as exc:
        print(f"ipm-cds: invalid ruleset: {exc.report()}", file=sys.stderr)
        return EXIT_RULESET
    except PatientDataError as exc:
        for problem in exc.problems:  # one line per problem: every field to fix, not only the first
            print(f"ipm-cds: invalid patient data: {problem}", file=sys.stderr)
        return EXIT_PATIENT
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
