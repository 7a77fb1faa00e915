"""The Engine: one ruleset, one profile, one backend; evaluates patients."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigurationError
from ..model.assessment import Assessment
from ..model.explanation import Explanation
from ..model.facts.normalise import normalise
from ..model.patient import PatientCase, parse_patient
from ..ruleset.loader import Ruleset
from .base import Backend
from .driver import DEFAULT_FIRING_CAP, Run, run_program
from .explain import explain_run
from .program import ParamValue, Program, build_program
from .python_backend import PythonBackend
from .resolve import resolve

if TYPE_CHECKING:
    from ..decision_log import DecisionLog

BackendName = Literal["durable", "python"]


def _evaluation_date(as_of: object) -> date:
    """``as_of`` as a date: today when None, a datetime's own date; anything else is refused clearly."""
    if as_of is None:
        return date.today()
    if isinstance(as_of, datetime):
        return as_of.date()
    if isinstance(as_of, date):
        return as_of
    raise ConfigurationError(
        f"as_of must be a date, not {type(as_of).__name__} {as_of!r}", hint="e.g. as_of=date(2025, 6, 2)"
    )


class Engine:
    """Evaluate patients against a ruleset under one profile.

    ``profile`` picks the published thresholds (``cms_lcd`` by default); ``parameters`` overrides
    named parameters for a deployment (checked against their bounds). ``backend="python"`` runs the
    plain-Python evaluator instead of durable-rules. An engine is safe to share between threads:
    durable evaluations are serialised by one process-wide lock; scale with processes.
    ``decision_log`` (a :class:`~ipm_cds.decision_log.DecisionLog`) records every assessment made.

    ``close()`` releases the backend (the durable engine's rulesets in the C extension); an engine is also a
    context manager that closes itself: ``with Engine(ruleset) as engine: ...``. A closed engine refuses
    to evaluate.
    """

    def __init__(
        self,
        ruleset: Ruleset,
        profile: str | None = None,
        backend: BackendName = "durable",
        *,
        parameters: Mapping[str, ParamValue] | None = None,
        firing_cap: int = DEFAULT_FIRING_CAP,
        decision_log: DecisionLog | None = None,
    ) -> None:
        if backend not in ("durable", "python"):
            raise ConfigurationError(f"unknown backend {backend!r}", hint="use 'durable' or 'python'")
        if firing_cap < 1:
            raise ConfigurationError("firing_cap must be positive")
        self.ruleset = ruleset
        self.program: Program = build_program(ruleset, profile, parameters)
        self.backend_name: BackendName = backend
        self.firing_cap = firing_cap
        self._backend: Backend
        if backend == "durable":
            from .durable_backend import DurableBackend

            self._backend = DurableBackend()
        else:
            self._backend = PythonBackend()
        self._closed = False
        self._backend.prepare(self.program)
        self._context = ruleset.normalise_context()
        self.decision_log = decision_log

    @property
    def profile(self) -> str:
        return self.program.profile

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the backend. Idempotent; evaluating afterwards raises :class:`ConfigurationError`."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def evaluate(
        self, patient: PatientCase | Mapping[str, Any] | str, as_of: date | None = None, *, timestamp: bool = True
    ) -> Assessment:
        """Assess one patient. ``as_of`` defaults to today; pin it for reproducible results.

        Raises :class:`~ipm_cds.errors.PatientDataError` for bad input and
        :class:`~ipm_cds.errors.EvaluationError` when evaluation fails (never a partial assessment).
        """
        if self.decision_log is None:
            return self._run(patient, as_of, timestamp)[1]
        started = time.perf_counter()
        case = parse_patient(patient)
        assessment = self._run(case, as_of, timestamp)[1]
        self.decision_log.record(
            assessment, case, elapsed_seconds=time.perf_counter() - started, backend=self.backend_name
        )
        return assessment

    def explain(self, patient: PatientCase | Mapping[str, Any] | str, as_of: date | None = None) -> Explanation:
        """The assessment with its derivation tree, and why each other intervention is not a candidate."""
        run, assessment = self._run(patient, as_of, timestamp=False)
        return explain_run(self.program, run, assessment, {r.id: r for r in self.ruleset.rules})

    def _run(
        self, patient: PatientCase | Mapping[str, Any] | str, as_of: date | None, timestamp: bool
    ) -> tuple[Run, Assessment]:
        if self._closed:
            raise ConfigurationError("this engine is closed", hint="build a new Engine to evaluate again")
        case = parse_patient(patient)
        when = _evaluation_date(as_of)
        facts = normalise(case, when, self._context)
        run = run_program(self.program, self._backend, facts, when, self.firing_cap)
        assessment = resolve(
            self.program, run, patient_id=case.id, as_of=when, backend=self.backend_name, timestamp=timestamp
        )
        return run, assessment
