"""ipm-cds: clinical decision support for interventional pain management.

Decision support for clinicians, never an order::

    import ipm_cds
    ruleset = ipm_cds.load_ruleset()
    engine = ipm_cds.Engine(ruleset, profile="cms_lcd")
    assessment = engine.evaluate(patient, as_of=date(2025, 6, 2))

ipm-cds logs through the standard :mod:`logging` module, one logger per module under ``ipm_cds`` (e.g.
``ipm_cds.ruleset.loader``, ``ipm_cds.serving.observability``). The library configures no handler: the
package logger has a :class:`logging.NullHandler`, and the application decides what is written where.
"""

import logging as _logging

from ._version import __version__
from .assessment import (
    Alert,
    Assessment,
    Basis,
    Candidate,
    Citation,
    DeferredReferral,
    Exclusion,
    MissingData,
    Precaution,
    Provenance,
    Referral,
    Target,
    TraceEntry,
)
from .engine import Engine
from .engine.explain import Explanation, WhyNot
from .errors import (
    BackendUnavailableError,
    ConfigurationError,
    EngineFaultError,
    EvaluationError,
    FiringLimitError,
    IpmCdsError,
    PatientDataError,
    Problem,
    RulesetError,
    SourceLocation,
)
from .patient import PatientCase, parse_patient
from .ruleset.loader import Ruleset, load_ruleset

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "Alert",
    "Assessment",
    "BackendUnavailableError",
    "Basis",
    "Candidate",
    "Citation",
    "ConfigurationError",
    "DeferredReferral",
    "Engine",
    "EngineFaultError",
    "EvaluationError",
    "Exclusion",
    "Explanation",
    "FiringLimitError",
    "IpmCdsError",
    "MissingData",
    "PatientCase",
    "PatientDataError",
    "Precaution",
    "Problem",
    "Provenance",
    "Referral",
    "Ruleset",
    "RulesetError",
    "SourceLocation",
    "Target",
    "TraceEntry",
    "WhyNot",
    "__version__",
    "load_ruleset",
    "parse_patient",
]
