"""Testing kit for ipm-cds and rulesets built on it: hypothesis strategies and invariant checks.

- :mod:`~ipm_cds.testing.strategies`: ``patients()``, ``boundary_patients(ruleset)``, ``raw_patient_documents()``;
- :mod:`~ipm_cds.testing.invariants`: one plain function per invariant, raising an informative AssertionError;
- :mod:`~ipm_cds.testing.boundaries`: the numeric thresholds of a ruleset, and probes on both sides of them;
- :mod:`~ipm_cds.testing.coverage`: which active rules a strategy's patients never fire;
- :mod:`~ipm_cds.testing.pytest_plugin`: fixtures, options and hypothesis profiles (the ``ipm_cds`` pytest11
  entry point).

Needs the ``hypothesis`` package (``pip install ipm-cds[testing]``). The guide is docs/testing-kit.md.
"""
