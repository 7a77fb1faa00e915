"""Read a patient document from a file: JSON or YAML, with errors that name the file, line and column.

JSON is read with the one reader of everything others send (:mod:`ipm_cds.jsonsrc`: no traceback on deep
nesting or huge numbers) and handed on as text, for pydantic's JSON mode; YAML with the same safe reader
as rule files. Used by the CLI, ``ipm-cds diff`` and tests; the patient model validates what it returns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import PatientDataError, Problem, RulesetError, SourceLocation
from .jsonsrc import JsonInputError, parse_json

__all__ = ["read_patient_document"]


def _line_column(message: str) -> tuple[int, int]:
    """The position in a parser message ending ``at line L column C`` (1, 1 when there is none)."""
    found = re.search(r"line (\d+) column (\d+)", message)
    return (int(found.group(1)), int(found.group(2))) if found else (1, 1)


def read_patient_document(path: Path) -> Any:
    """Read a patient file (JSON or YAML). YAML is read with the same safe reader as rule files."""
    from .ruleset.yamlsrc import load_yaml, read_text

    if not path.is_file():
        raise PatientDataError([Problem(f"no such file: {path}")])
    try:
        text = read_text(path)
    except RulesetError as exc:
        raise PatientDataError(exc.problems) from None
    if path.suffix.lower() == ".json":
        try:
            parse_json(text)  # the reader of everything others send: a position, never a traceback
        except JsonInputError as exc:
            raise PatientDataError(
                [
                    Problem(
                        f"invalid JSON: {exc}",
                        SourceLocation(str(path), *_line_column(str(exc))),
                        hint="a patient document is a few levels deep with ordinary numbers" if exc.limit else None,
                    )
                ]
            ) from None
        return text  # validated by pydantic in JSON mode
    try:
        data, _ = load_yaml(text, str(path))
    except RulesetError as exc:
        raise PatientDataError(exc.problems) from None
    return data
