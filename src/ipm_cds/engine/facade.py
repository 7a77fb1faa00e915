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
from .verdicts import add_verdicts

if TYPE_CHECKING:
    from ..decision_log import DecisionLog

BackendName = Literal["durable", "python"]
"""A backend that runs: durable-rules, or the plain-Python evaluator."""
BackendChoice = Literal["auto", "durable", "python"]
"""What a caller may ask for: ``auto`` (the default) picks durable-rules where it can be imported, else python."""


def choose_backend(backend: object) -> tuple[BackendName, bool]:
    """The backend that will run for ``backend``, and whether ``auto`` chose it.

    Raises :class:`~ipm_cds.errors.ConfigurationError` for an unknown name, and its subclass
    :class:`~ipm_cds.errors.BackendUnavailableError` for ``"durable"`` where durable-rules cannot be imported.

    ``auto`` is durable-rules where it is installed and importable (its C extension builds on CPython 3.11
    and 3.12 with a C compiler), the python backend otherwise; both give identical assessments.
    """
    if backend == "auto":
        from . import durable_backend

        return ("durable" if durable_backend.available() else "python"), True
    if backend == "durable" and isinstance(backend, str):
        from . import durable_backend

        durable_backend.require()  # BackendUnavailableError, saying what to do instead
        return "durable", False
    if backend == "python" and isinstance(backend, str):
        return "python", False
    raise ConfigurationError(f"unknown backend {backend!r}", hint="use 'auto' (the default), 'durable' or 'python'")


def check_arguments(
    ruleset: object, profile: object, parameters: object, firing_cap: object, decision_log: object
) -> None:
    """Refuse, as a :class:`ConfigurationError`, an argument of the wrong type (mypy catches these; callers
    without it get a clear error instead of a failure deep inside)."""
    if not isinstance(ruleset, Ruleset):
        raise ConfigurationError(
            f"ruleset must be a Ruleset, not {type(ruleset).__name__}",
            hint="load it first: Engine(ipm_cds.load_ruleset(path)), or load_ruleset() for the bundled one",
        )
    if profile is not None and not isinstance(profile, str):
        raise ConfigurationError(
            f"profile must be a profile name, not {type(profile).__name__} {profile!r}",
            hint=f"profiles: {', '.join(ruleset.manifest.profiles)}",
        )
    if parameters is not None and (
        not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters)
    ):
        raise ConfigurationError(
            f"parameters must map parameter names to numbers, not {type(parameters).__name__} {parameters!r}",
            hint="e.g. parameters={'facet_block_relief_pct': 80}",
        )
    if isinstance(firing_cap, bool) or not isinstance(firing_cap, int) or firing_cap < 1:
        raise ConfigurationError(f"firing_cap must be a positive whole number, got {firing_cap!r}")
    if decision_log is not None:
        from ..decision_log import DecisionLog

        if not isinstance(decision_log, DecisionLog):
            raise ConfigurationError(
                f"decision_log must be a DecisionLog, not {type(decision_log).__name__}",
                hint="ipm_cds.decision_log.DecisionLog(path)",
            )


def evaluation_date(as_of: object) -> date:
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
    named parameters for a deployment (checked against their bounds). ``backend`` is ``"auto"`` by
    default: durable-rules where it is installed and importable, the plain-Python backend otherwise
    (Python 3.13+, or an install without a C compiler); ``"durable"`` or ``"python"`` asks for one and
    raises :class:`~ipm_cds.errors.BackendUnavailableError` when durable-rules cannot run here.
    :attr:`backend_name` is the backend that runs; every assessment's provenance names it (and
    ``backend_auto`` says that ``auto`` chose it). An engine is safe to share between threads:
    durable evaluations are serialised by one process-wide lock; scale with processes
    (:func:`ipm_cds.evaluate_many`). An engine pickles (its matchers are rebuilt on load), so it can be
    sent to a worker process under any start method, ``spawn`` included.
    ``decision_log`` (a :class:`~ipm_cds.decision_log.DecisionLog`) records every assessment made.

    ``close()`` releases the backend (the durable engine's rulesets in the C extension); an engine is also a
    context manager that closes itself: ``with Engine(ruleset) as engine: ...``. A closed engine refuses
    to evaluate.

    Every bad argument raises a :class:`~ipm_cds.errors.ConfigurationError` naming it.
    """

    def __init__(
        self,
        ruleset: Ruleset,
        profile: str | None = None,
        backend: BackendChoice = "auto",
        *,
        parameters: Mapping[str, ParamValue] | None = None,
        firing_cap: int = DEFAULT_FIRING_CAP,
        decision_log: DecisionLog | None = None,
    ) -> None:
        check_arguments(ruleset, profile, parameters, firing_cap, decision_log)
        name, auto = choose_backend(backend)
        self.ruleset = ruleset
        self.program: Program = build_program(ruleset, profile, parameters)
        self.backend_name: BackendName = name
        self.backend_auto = auto
        """True when ``backend="auto"`` chose :attr:`backend_name`."""
        self.firing_cap = firing_cap
        self.decision_log = decision_log
        self._closed = False
        self._start()

    def _start(self) -> None:
        """Build the backend for the program (at creation, and again when an engine is unpickled)."""
        self._backend: Backend
        if self.backend_name == "durable":
            from .durable_backend import DurableBackend

            self._backend = DurableBackend()
        else:
            self._backend = PythonBackend()
        self._backend.prepare(self.program)
        self._context = self.ruleset.normalise_context()

    def __repr__(self) -> str:
        manifest = self.ruleset.manifest
        backend = self.backend_name + (" (auto)" if self.backend_auto else "")
        closed = ", closed" if self._closed else ""
        return f"Engine({manifest.id} {manifest.version}, profile={self.profile}, backend={backend}{closed})"

    def __getstate__(self) -> dict[str, Any]:
        """What a pickle carries: the ruleset and the settings, never the backend (rebuilt on load)."""
        if self.decision_log is not None:
            raise ConfigurationError(
                "an engine with a decision log cannot be pickled (the log is an open file of this process)",
                hint="build the engine in the worker with its own DecisionLog, or use "
                "ipm_cds.evaluate_many(..., decision_log=path)",
            )
        return {
            "ruleset": self.ruleset,
            "profile": self.program.profile,
            "parameters": dict(self.program.overrides),
            "backend_name": self.backend_name,
            "backend_auto": self.backend_auto,
            "firing_cap": self.firing_cap,
            "closed": self._closed,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.ruleset = state["ruleset"]
        self.program = build_program(self.ruleset, state["profile"], state["parameters"])
        self.backend_name = state["backend_name"]
        self.backend_auto = state["backend_auto"]
        self.firing_cap = state["firing_cap"]
        self.decision_log = None
        self._closed = state["closed"]
        if not self._closed:
            self._start()

    def _unbound(self) -> dict[str, Any]:
        """The ruleset's rules by id, with parameter names (for explanations), made once per program."""
        made = self.program.cache.get("unbound_rules")
        if made is None:
            made = self.program.cache["unbound_rules"] = {r.id: r for r in self.ruleset.rules}
        assert isinstance(made, dict)
        return made

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
        return explain_run(self.program, run, assessment, self._unbound())

    def _run(
        self, patient: PatientCase | Mapping[str, Any] | str, as_of: date | None, timestamp: bool
    ) -> tuple[Run, Assessment]:
        if self._closed:
            raise ConfigurationError("this engine is closed", hint="build a new Engine to evaluate again")
        case = parse_patient(patient)
        when = evaluation_date(as_of)
        facts = normalise(case, when, self._context)
        run = run_program(self.program, self._backend, facts, when, self.firing_cap)
        assessment = resolve(
            self.program,
            run,
            patient_id=case.id,
            as_of=when,
            backend=self.backend_name,
            backend_auto=self.backend_auto,
            timestamp=timestamp,
        )
        assessment = add_verdicts(self.program, run, assessment, self._unbound())
        return run, assessment
