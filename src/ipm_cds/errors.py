"""The error hierarchy of ipm-cds.

Every error says *where* (a file:line:col, a patient field path, or a rule id@version) and, where
one exists, *what to do* (a hint). ``str(error)`` is a single line suitable for a CLI message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """A position in a rule file: 1-based line and column, as editors show them."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a rule file or a patient document."""

    message: str
    location: SourceLocation | None = None
    field: str | None = None
    hint: str | None = None
    severity: str = "error"  # "error" or "warning"
    code: str | None = None  # the check that found it, for warnings of validate's linter ("no-default", ...)

    def __str__(self) -> str:
        where = str(self.location) if self.location else (self.field or "")
        text = f"{where}: {self.message}" if where else self.message
        if self.field and self.location:
            text = f"{where}: {self.field}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class IpmCdsError(Exception):
    """Base class of every error raised by ipm-cds."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class RulesetError(IpmCdsError):
    """A ruleset failed to load, validate or compile. Carries every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("RulesetError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        message = str(first) + (f" [and {more} more problem{'s' if more > 1 else ''}]" if more else "")
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def report(self) -> str:
        """All problems, one per line."""
        return "\n".join(str(p) for p in self.problems)


class PatientDataError(IpmCdsError):
    """A patient document is malformed: wrong types, impossible values, unknown codes."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        if not self.problems:
            raise ValueError("PatientDataError needs at least one problem")
        first = self.problems[0]
        more = len(self.problems) - 1
        message = f"invalid patient data: {first}" + (f" [and {more} more]" if more else "")
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def report(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class ConfigurationError(IpmCdsError):
    """An engine was configured wrongly: unknown profile or backend, bad parameter override."""


class EvaluationError(IpmCdsError):
    """An evaluation failed. The evaluation is abandoned whole: there is never a partial assessment."""

    def __init__(self, message: str, *, rule: str | None = None, hint: str | None = None) -> None:
        self.rule = rule
        super().__init__(f"{message} [rule {rule}]" if rule else message, hint=hint)


class EngineFaultError(EvaluationError):
    """The rule engine itself reported an error code or an inconsistent state."""


class FiringLimitError(EvaluationError):
    """More rule firings than the per-evaluation cap: a rule derives facts without end."""


class BackendUnavailableError(ConfigurationError):
    """The requested backend cannot run on this interpreter (durable-rules on Python 3.13+)."""


class InputFileError(IpmCdsError):
    """A file or folder given as input does not exist or cannot be read (``ipm-cds`` exit code 6).

    Distinct from :class:`PatientDataError` and :class:`RulesetError`, which say what is wrong *inside* a
    file that was read: here there was nothing to read. ``path`` is the path as given.
    """

    def __init__(self, path: str, reason: str = "no such file or folder", *, hint: str | None = None) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}", hint=hint)
