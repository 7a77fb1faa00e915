"""Read a patient document from a file: JSON or YAML, with errors that name the file, line and column.

JSON is read with the one reader of everything others send (:mod:`ipm_cds.jsonsrc`: no traceback on deep
nesting or huge numbers) and handed on as text, for pydantic's JSON mode; YAML with the same safe reader
as rule files. Used by the CLI, ``ipm-cds diff`` and tests; the patient model validates what it returns.

The path ``-`` reads the standard input: JSON when its first character (after white space) is ``{``,
YAML otherwise. A file that does not exist is an :class:`~ipm_cds.errors.InputFileError`, not invalid
patient data: there was nothing to read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from .errors import InputFileError, PatientDataError, Problem, RulesetError, SourceLocation
from .jsonsrc import JsonInputError, parse_json

__all__ = ["read_patient_document"]


def _line_column(message: str) -> tuple[int, int]:
    """The position in a parser message ending ``at line L column C`` (1, 1 when there is none)."""
    found = re.search(r"line (\d+) column (\d+)", message)
    return (int(found.group(1)), int(found.group(2))) if found else (1, 1)


STDIN = "-"


def _read_stdin() -> str:
    """The standard input as text, bounded like a file."""
    from .ruleset.yamlsrc import MAX_DOCUMENT_BYTES

    raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
    where = SourceLocation("<stdin>", 1, 1)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise PatientDataError([Problem(f"the standard input is over the {MAX_DOCUMENT_BYTES}-byte limit", where)])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PatientDataError([Problem("the standard input is not valid UTF-8", where)]) from None


def read_patient_document(path: Path) -> Any:
    """Read a patient file (JSON or YAML; ``-``: the standard input). YAML is read with the same safe reader
    as rule files."""
    from .ruleset.yamlsrc import load_yaml, read_text

    stdin = str(path) == STDIN
    if stdin:
        text = _read_stdin()
    else:
        if not path.exists():
            raise InputFileError(
                str(path), "no such file", hint="a patient file is .json or .yaml; - reads the standard input"
            )
        if not path.is_file():
            raise InputFileError(
                str(path), "not a file", hint="a patient file is .json or .yaml; - reads the standard input"
            )
        try:
            text = read_text(path)
        except RulesetError as exc:
            raise PatientDataError(exc.problems) from None
    if text.lstrip().startswith("{") if stdin else path.suffix.lower() == ".json":
        try:
            parse_json(text)  # the reader of everything others send: a position, never a traceback
        except JsonInputError as exc:
            raise PatientDataError(
                [
                    Problem(
                        f"invalid JSON: {exc}",
                        SourceLocation("<stdin>" if stdin else str(path), *_line_column(str(exc))),
                        hint="a patient document is a few levels deep with ordinary numbers" if exc.limit else None,
                    )
                ]
            ) from None
        return text  # validated by pydantic in JSON mode
    try:
        data, _ = load_yaml(text, "<stdin>" if stdin else str(path))
    except RulesetError as exc:
        raise PatientDataError(exc.problems) from None
    return data
