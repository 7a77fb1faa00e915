"""Testing kit for ipm-cds and rulesets built on it: hypothesis strategies and invariant checks.

Needs the ``hypothesis`` package (``pip install ipm-cds[testing]``).
"""
