"""Evaluations from 8 threads with an aggressive switch interval match sequential results exactly."""

from __future__ import annotations

import sys
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.patient import PatientCase
from ipm_cds.testing.strategies import patients

from .conftest import AS_OF


@settings(max_examples=1, suppress_health_check=list(HealthCheck), deadline=None)
@given(st.lists(patients(), min_size=40, max_size=40))
def test_eight_threads_match_sequential_results(ruleset: ipm_cds.Ruleset, cohort: list[PatientCase]) -> None:
    engine = ipm_cds.Engine(ruleset)
    expected = [engine.evaluate(p, as_of=AS_OF, timestamp=False).to_json() for p in cohort]
    rounds = 10
    results: dict[tuple[int, int, int], str] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for r in range(rounds):
                for i, patient in enumerate(cohort):
                    results[(worker, r, i)] = engine.evaluate(patient, as_of=AS_OF, timestamp=False).to_json()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    assert len(results) == 8 * rounds * len(cohort)
    mismatches = [k for k, v in results.items() if v != expected[k[2]]]
    assert mismatches == []
