"""The largest valid patients: ``python -m benchmarks.worst_case [--seeds 100] [--backend durable]``.

Evaluates, on one backend in this process, every list of the patient model at its cap
(``workloads.sized_patient(100, seed)`` for ``--seeds`` seeds), the long-history shapes that once had no
assessment (100 monthly INRs on warfarin with two radiculopathies; 100 therapeutic SIJ injections in a
year) and a crowded record whose items all meet the same rules (``crowded_patient``), each ``--repeat``
times, and prints one JSON line: p50, p99 and max milliseconds per evaluation, the most firings of any one
evaluation, and the process's peak RSS (``ru_maxrss``: the ruleset, the engine and the largest evaluation
together). ``--freeze`` calls ``gc.freeze()`` once the engine is built, as ``ipm-cds serve`` and the batch
workers do. ``python -m benchmarks --sections worst`` runs it per backend, with and without, each in a
fresh process, so that one run's peak does not hide another's.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from .workloads import AS_OF, sized_patient


def _day(n: int) -> str:
    return (AS_OF - timedelta(days=n)).isoformat()


def long_inr_patient(inrs: int = 100) -> dict[str, Any]:
    """Lumbar and cervical radiculopathy on warfarin with ``inrs`` monthly INRs (the shape of the first report)."""
    return {
        "id": f"warfarin-{inrs}-inr",
        "pain": [
            {"region": "lumbar", "laterality": "left", "character": "radicular", "duration_weeks": 10, "nrs": 7,
             "odi_pct": 38},
            {"region": "cervical", "laterality": "right", "character": "radicular", "duration_weeks": 12, "nrs": 7,
             "ndi": 20},
        ],
        "imaging": [
            {"modality": "mri", "finding": "disc_herniation", "region": region, "level": level, "side": side,
             "concordant": True, "date": _day(50)}
            for region, level, side in (("lumbar", "L5-S1", "left"), ("cervical", "C5-C6", "right"))
        ],
        "conservative_care": {"physical_therapy_weeks": 12, "active_exercise_program": True, "failed": True},
        "medications": [{"agent": "warfarin", "daily_dose": 5, "dose_unit": "mg", "indication": "treatment"}],
        "labs": [{"test": "inr", "value": 2.2 + (i % 8) / 10, "date": _day(30 * i + 3)} for i in range(inrs)],
    }  # fmt: skip


def sij_patient(injections: int = 100) -> dict[str, Any]:
    """``injections`` therapeutic SIJ injections on distinct dates within a year."""
    return {
        "id": f"sij-{injections}",
        "pain": [{"region": "sacroiliac", "character": "joint", "duration_weeks": 60, "nrs": 7}],
        "procedures": [
            {"kind": "sij_injection", "purpose": "therapeutic", "region": "sacroiliac", "date": _day(3 * i + 1),
             "relief_pct": 60, "relief_duration_weeks": 14}
            for i in range(injections)
        ],
    }  # fmt: skip


def crowded_patient() -> dict[str, Any]:
    """Every list at its cap with items that all meet the same rules: 20 radicular pains in one region, 100
    concordant disc herniations there, 100 epidurals, 100 antithrombotic orders (joins across types, where
    each side has many facts)."""
    agents = ["apixaban", "rivaroxaban", "warfarin", "clopidogrel", "aspirin", "dabigatran", "edoxaban",
              "prasugrel", "ticagrelor", "ibuprofen"]  # fmt: skip
    return {
        "id": "crowded",
        "pain": [
            {"region": "lumbar", "character": "radicular", "laterality": ["left", "right", "bilateral"][i % 3],
             "duration_weeks": 10 + i, "nrs": 7, "odi_pct": 30 + i}
            for i in range(20)
        ],
        "imaging": [
            {"modality": "mri", "finding": "disc_herniation", "region": "lumbar", "level": "L5-S1",
             "concordant": True, "date": _day(i + 1)}
            for i in range(100)
        ],
        "conservative_care": {"failed": True, "physical_therapy_weeks": 12, "active_exercise_program": True},
        "medications": [
            {"agent": agents[i % 10], "indication": ["treatment", "secondary_prevention"][i % 2],
             "daily_dose": 10 + i, "dose_unit": "mg"}
            for i in range(100)
        ],
        "procedures": [
            {"kind": "esi_transforaminal", "region": "lumbar", "date": _day(10 * i + 5), "relief_pct": 60,
             "relief_duration_weeks": 8}
            for i in range(100)
        ],
    }  # fmt: skip


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(backend: str, seeds: int, repeat: int, freeze: bool = False) -> dict[str, Any]:
    import gc

    import ipm_cds

    ruleset = ipm_cds.load_ruleset(with_tests=False)
    engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
    documents = [long_inr_patient(), sij_patient(), crowded_patient()]
    documents += [sized_patient(100, ruleset, seed=s) for s in range(1, seeds + 1)]
    cases = [ipm_cds.parse_patient(d) for d in documents]
    for case in cases[:3]:  # warm up: matchers are built on first use
        engine.evaluate(case, as_of=AS_OF)
    if freeze:  # as ipm-cds serve and the batch workers do once their engine is built
        gc.freeze()
    times: list[float] = []
    firings = 0
    slowest = ("", 0.0)
    for case in cases:
        for _ in range(repeat):
            started = time.perf_counter()
            assessment = engine.evaluate(case, as_of=AS_OF)
            elapsed = time.perf_counter() - started
            times.append(elapsed)
            if elapsed > slowest[1]:
                slowest = (case.id or "", elapsed)
        firings = max(firings, len(assessment.trace))
    return {
        "backend": backend,
        "gc_freeze": freeze,
        "patients": len(cases),
        "evaluations": len(times),
        "p50_ms": round(pct(times, 0.50) * 1e3, 2),
        "p99_ms": round(pct(times, 0.99) * 1e3, 2),
        "max_ms": round(max(times) * 1e3, 2),
        "slowest": slowest[0],
        "max_firings": firings,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worst_case", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["durable", "python"], default="durable")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() once the engine is built, as serve does")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.backend, args.seeds, args.repeat, args.freeze)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
