"""ipm-cds: clinical decision support for interventional pain management.

Decision support for clinicians, never an order::

    import ipm_cds
    ruleset = ipm_cds.load_ruleset()
    engine = ipm_cds.Engine(ruleset, profile="cms_lcd")
    assessment = engine.evaluate(patient, as_of=date(2025, 6, 2))

Several cores: :func:`evaluate_many` (worker processes, results in input order).

The public face is small on purpose: the engine, the ruleset, the patient, the assessment and the
explanation, ``evaluate_many``, and the errors an application catches. Everything else stays importable from
its module: the models an assessment holds from :mod:`ipm_cds.model.assessment` (``Candidate``,
``Precaution``, ...), every error class from :mod:`ipm_cds.errors` (``FiringLimitError`` is an
``EvaluationError``, ``BackendUnavailableError`` a ``ConfigurationError``), the testing kit from
:mod:`ipm_cds.testing`.

ipm-cds logs through the standard :mod:`logging` module, one logger per module under ``ipm_cds`` (e.g.
``ipm_cds.ruleset.loader``, ``ipm_cds.serving.observability``). The library configures no handler: the
package logger has a :class:`logging.NullHandler`, and the application decides what is written where.
"""

import logging as _logging

from ._version import __version__
from .engine import Engine
from .errors import (
    ConfigurationError,
    EvaluationError,
    IpmCdsError,
    PatientDataError,
    RulesetError,
)
from .model.assessment import Assessment
from .model.explanation import Explanation
from .model.patient import PatientCase, parse_patient
from .ruleset.loader import Ruleset, load_ruleset
from .serving.batch import evaluate_many

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "Assessment",
    "ConfigurationError",
    "Engine",
    "EvaluationError",
    "Explanation",
    "IpmCdsError",
    "PatientCase",
    "PatientDataError",
    "Ruleset",
    "RulesetError",
    "__version__",
    "evaluate_many",
    "load_ruleset",
    "parse_patient",
]
