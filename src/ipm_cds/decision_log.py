"""An optional decision log: one JSON line per assessment, for audit.

Each entry records a decision id (uuid4), when it was made (UTC), the ruleset id, version and content
hash, the profile and backend, the evaluation date, a SHA-256 digest of the canonical input, the
conclusions (codes of candidates, exclusions, referrals and alerts) and how long the evaluation took.

No patient identifier is written unless ``include_patient_id=True``: the digest is taken over the
validated patient document *without* its ``id`` (canonical JSON: sorted keys, no whitespace), so that
it identifies the clinical input, not the person. Nothing else from the patient is written.

Use it with :class:`~ipm_cds.Engine` (``Engine(..., decision_log=DecisionLog(path))``) or with
:func:`ipm_cds.serving.batch.evaluate_many` (``decision_log=path``). An engine without a log pays nothing for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model.assessment import Assessment
    from .model.patient import PatientCase

SCHEMA_VERSION = 1


def input_digest(case: PatientCase) -> str:
    """SHA-256 of the canonical JSON of the validated patient, without its ``id``."""
    data = case.model_dump(mode="json", exclude={"id"})
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def decision_entry(
    assessment: Assessment,
    case: PatientCase,
    *,
    elapsed_seconds: float,
    backend: str,
    include_patient_id: bool = False,
) -> dict[str, Any]:
    """The log entry for one assessment (a plain dict, so that batch workers can build it and send it)."""
    provenance = assessment.provenance
    entry: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "decision_id": str(uuid.uuid4()),
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),  # noqa: UP017
        "ruleset": {
            "id": provenance.ruleset_id,
            "version": provenance.ruleset_version,
            "sha256": provenance.ruleset_sha256,
        },
        "profile": provenance.profile,
        "parameter_overrides": dict(provenance.parameter_overrides),
        "backend": backend,
        "as_of": provenance.as_of.isoformat(),
        "input_sha256": input_digest(case),
        "conclusions": assessment.codes(),
        "missing_data": len(assessment.missing_data),
        "elapsed_ms": round(elapsed_seconds * 1000, 3),
    }
    if include_patient_id:
        entry["patient_id"] = case.id
    return entry


def decision_line(entry: dict[str, Any]) -> str:
    """One entry as the log writes it: canonical JSON (sorted keys, no whitespace) and a newline."""
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


class DecisionLog:
    """Appends decision entries to a JSON Lines file; safe to share between threads.

    Entries are written whole, one ``write`` each, and flushed; the file is opened in append mode, so
    several logs (or runs) may append to one file.
    """

    def __init__(self, path: str | os.PathLike[str], *, include_patient_id: bool = False) -> None:
        self.path = Path(path)
        self.include_patient_id = include_patient_id
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def record(self, assessment: Assessment, case: PatientCase, *, elapsed_seconds: float, backend: str) -> str:
        """Write the entry for one assessment; returns its decision id."""
        entry = decision_entry(
            assessment,
            case,
            elapsed_seconds=elapsed_seconds,
            backend=backend,
            include_patient_id=self.include_patient_id,
        )
        self.write(entry)
        return str(entry["decision_id"])

    def write(self, entry: dict[str, Any]) -> None:
        self.write_lines(decision_line(entry))

    def write_lines(self, text: str) -> None:
        """Append entries already written as lines by :func:`decision_line` (a Dask partition's, say), whole."""
        if not text:
            return
        with self._lock:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
