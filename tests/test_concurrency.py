"""Evaluations from 8 threads with an aggressive switch interval match sequential results exactly."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.model.patient import PatientCase
from ipm_cds.testing.strategies import patients

from .conftest import AS_OF, run_in_threads


@settings(max_examples=1, suppress_health_check=list(HealthCheck), deadline=None)
@given(st.lists(patients(), min_size=40, max_size=40))
def test_eight_threads_match_sequential_results(ruleset: ipm_cds.Ruleset, cohort: list[PatientCase]) -> None:
    engine = ipm_cds.Engine(ruleset, backend="durable")
    expected = [engine.evaluate(p, as_of=AS_OF, timestamp=False).to_json() for p in cohort]
    rounds = 10
    results: dict[tuple[int, int, int], str] = {}

    def work(worker: int) -> None:
        for r in range(rounds):
            for i, patient in enumerate(cohort):
                results[(worker, r, i)] = engine.evaluate(patient, as_of=AS_OF, timestamp=False).to_json()

    run_in_threads(work)
    assert len(results) == 8 * rounds * len(cohort)
    mismatches = [k for k, v in results.items() if v != expected[k[2]]]
    assert mismatches == []
