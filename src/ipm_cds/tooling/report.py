"""``ipm-cds validate``'s report for machines: JSON for CI scripts and editors, SARIF 2.1.0 for code scanning.

Both carry every problem with its file, 1-based line and column, message, hint, severity and, for the
linter's warnings, its code (SARIF's ``ruleId``; errors are ``invalid-ruleset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..errors import Problem
from ..ruleset.loader import Ruleset
from .lint import LINT_CODES

__all__ = ["OTHER_CODES", "problem_json", "sarif", "validation_json"]

OTHER_CODES: dict[str, str] = {
    "invalid-ruleset": "The ruleset does not load, validate or compile; evaluation refuses it.",
    "unlocked": "A rule, catalogue entry or message is not in ruleset.lock.json, or the lock differs.",
    "never-fires": "A rule needs a derived fact that no active rule derives under a profile.",
    "superlinear-join": "A rule joins two or more facts of one growing type; use an aggregate.",
    "unused-intervention": "An intervention no rule names.",
    "unused-referral-target": "A referral target no rule names.",
    "unused-parameter": "A parameter no rule reads.",
    "unused-source": "A source nothing cites.",
}
"""Codes of the checks that are not the linter's (errors, lock, engine, usage)."""


def _code(problem: Problem) -> str:
    if problem.code:
        return problem.code
    return "invalid-ruleset" if problem.severity == "error" else "unlocked"


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
        "code": _code(problem),
    }


def validation_json(problems: Sequence[Problem], ruleset: Ruleset | None) -> dict[str, Any]:
    """``valid``, the ruleset (when it loaded cleanly) and every problem, errors first."""
    ordered = sorted(problems, key=lambda p: p.severity != "error")
    return {
        "valid": not any(p.severity == "error" for p in problems),
        "ruleset": (
            {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256, "rules": len(ruleset.rules)}
            if ruleset is not None
            else None
        ),
        "problems": [problem_json(p) for p in ordered],
    }


def sarif(problems: Sequence[Problem], base: str | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one validation run. ``base``: the folder the file paths are relative to (the
    ruleset folder's parent), recorded as the ``RULESETROOT`` base URI."""
    descriptions = {**OTHER_CODES, **LINT_CODES}
    codes = sorted({_code(p) for p in problems} | set(LINT_CODES))
    results = []
    for p in sorted(problems, key=lambda p: p.severity != "error"):
        text = p.message + (f" ({p.hint})" if p.hint else "")
        result: dict[str, Any] = {
            "ruleId": _code(p),
            "level": "error" if p.severity == "error" else "warning",
            "message": {"text": f"{p.field}: {text}" if p.field else text},
        }
        if p.location is not None:
            result["locations"] = [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": p.location.file, "uriBaseId": "RULESETROOT"},
                        "region": {"startLine": p.location.line, "startColumn": p.location.column},
                    }
                }
            ]
        results.append(result)
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "ipm-cds",
                "version": __version__,
                "informationUri": "https://github.com/ipm-cds/ipm-cds",
                "rules": [{"id": c, "shortDescription": {"text": descriptions.get(c, c)}} for c in codes],
            }
        },
        "results": results,
    }
    if base is not None:
        run["originalUriBaseIds"] = {"RULESETROOT": {"uri": base.rstrip("/") + "/"}}
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    }
