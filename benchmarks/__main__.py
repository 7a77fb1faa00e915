"""ipm-cds benchmarks: ``python -m benchmarks`` prints a table and writes JSON to benchmarks/results/.

Sections (``--sections``, comma-separated; all by default):

* ``load``: load + validate + compile the bundled ruleset; build an engine per backend;
* ``latency``: per-evaluation p50/p99 on one core, durable and python backends and the plain-Python
  floor (the same checks as straight-line Python, ``benchmarks/floor.py``), as ratios, plus where the
  time goes (parse, normalise, rules, resolve);
* ``throughput``: evaluations per second in one process, on one core;
* ``batch``: ``ipm_cds.serving.batch.evaluate_many`` over JSON Lines with 1 and 2 worker processes;
* ``rss``: resident memory before and after ``--rss-evaluations`` evaluations (1,000,000 by default:
  about half an hour; pass a smaller number for a quick look);
* ``rules``: cost against synthetic rulesets of 100, 1,000 and 4,000 rules;
* ``facts``: cost against patients of 10, 100 and 1,000 facts;
* ``worst``: the largest valid patients (every list at its cap, ``--worst-seeds`` seeds, and the long
  histories of 100 INRs and 100 SIJ injections): p99 and peak RSS per backend, each backend in a fresh
  process (``benchmarks/worst_case.py``);
* ``population``: ``ipm-cds batch --workers 2`` against ``--dask local``, scaling with workers and partitions,
  the scheduler's overhead and the 1,000,000-patient figure (``benchmarks/population.py``; needs the dask extra).

Numbers depend on the machine: compare ratios, and runs on one machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("load", "latency", "throughput", "batch", "rss", "rules", "facts", "worst", "population")
TARGETS = {
    "durable_p50_ms": 0.5,
    "durable_p99_ms": 1.5,
    "python_p50_ms": 0.1,
    "load_ms": 300.0,
    "rss_growth_mb": 5.0,
    "worst_p99_ms": 50.0,
    "worst_peak_rss_mb": 200.0,
}


# -- measuring ------------------------------------------------------------------------------------------------


def pin(core: int | None) -> None:
    """Run on one core (latency and single-process figures); ``None``: every core again."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = {core} if core is not None else set(range(os.cpu_count() or 1))
    os.sched_setaffinity(0, cores)


def timings(fn: Callable[[], object], repeat: int) -> list[float]:
    """Seconds per call, each call timed on its own."""
    out = []
    clock = time.perf_counter
    for _ in range(repeat):
        start = clock()
        fn()
        out.append(clock() - start)
    return out


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(values, 0.50) * 1e3, 4),
        "p99_ms": round(pct(values, 0.99) * 1e3, 4),
        "mean_ms": round(statistics.fmean(values) * 1e3, 4),
        "n": len(values),
    }


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), cpu)
    except OSError:
        pass
    from importlib.metadata import version

    import ipm_cds

    from .engine_build import installed

    try:
        durable = version("durable_rules")
    except Exception:
        durable = "not installed"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),  # noqa: UP017
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ipm_cds": ipm_cds.__version__,
        "durable_rules": durable,
        # whether its C extension was compiled with optimisation (benchmarks/engine_build.py)
        "durable_rules_build": installed().as_dict(),
    }


# -- sections -------------------------------------------------------------------------------------------------


def bench_load(args: argparse.Namespace) -> dict[str, Any]:
    import ipm_cds

    loads = []
    for _ in range(args.load_repeat):
        gc.collect()
        start = time.perf_counter()
        ruleset = ipm_cds.load_ruleset(with_tests=False)
        loads.append(time.perf_counter() - start)
    out: dict[str, Any] = {"rules": len(ruleset.rules), "load_ms": round(statistics.median(loads) * 1e3, 1)}
    for backend in ("durable", "python"):
        builds = []
        for _ in range(args.load_repeat):
            start = time.perf_counter()
            ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
            builds.append(time.perf_counter() - start)
        out[f"engine_{backend}_ms"] = round(statistics.median(builds) * 1e3, 1)
    engine = ipm_cds.Engine(ruleset, backend="python")
    out["engine_rules"] = sum(len(s.rules) for s in engine.program.strata)
    out["strata"] = len(engine.program.strata)
    # The compiled matchers are built per rule on first use; building all of them up front costs:
    try:
        from ipm_cds.engine.compiled import compile_program
    except ImportError:  # an ipm-cds from before the compiled matchers (for before/after comparisons)
        out["compile_all_matchers_ms"] = None
    else:
        start = time.perf_counter()
        compiled = compile_program(engine.program)
        for name in compiled.rule_refs:
            compiled.missing[name]
        for s in engine.program.strata:
            for er in s.rules:
                compiled.match[er.name]
        out["compile_all_matchers_ms"] = round((time.perf_counter() - start) * 1e3, 1)
    # A full garbage collection walks every object, the loaded ruleset's included: its pause, and with the
    # ruleset's objects frozen (gc.freeze() after loading, as a long-running service can do).
    gc.collect()
    start = time.perf_counter()
    gc.collect()
    out["full_gc_pause_ms"] = round((time.perf_counter() - start) * 1e3, 1)
    gc.freeze()
    start = time.perf_counter()
    gc.collect()
    out["full_gc_pause_frozen_ms"] = round((time.perf_counter() - start) * 1e3, 1)
    gc.unfreeze()
    return out


def final_facts(engine: Any, case: Any, as_of: Any) -> dict[str, list[Any]]:
    from ipm_cds.engine.driver import run_program
    from ipm_cds.engine.match import index_by_type
    from ipm_cds.model.facts.normalise import normalise

    facts = normalise(case, as_of, engine._context)
    run = run_program(engine.program, engine._backend, facts, as_of, engine.firing_cap)
    return index_by_type(run.facts)


def measure_latency(
    engines: dict[str, Any], floor: Callable[[Any], int], documents: Sequence[Any], evaluations: int, as_of: Any
) -> dict[str, Any]:
    from ipm_cds.model.patient import parse_patient

    cases = [parse_patient(d) for d in documents]
    python = engines["python"]
    floor_inputs = [final_facts(python, c, as_of) for c in cases]
    rounds = max(1, evaluations // len(cases))
    out: dict[str, Any] = {"patients": len(cases), "evaluations_per_backend": rounds * len(cases)}
    for name, engine in engines.items():
        for c in cases:  # warm up: matchers are generated on first use
            engine.evaluate(c, as_of=as_of, timestamp=False)
        values: list[float] = []
        gc.collect()
        clock = time.perf_counter
        for _ in range(rounds):
            for c in cases:
                start = clock()
                engine.evaluate(c, as_of=as_of, timestamp=False)
                values.append(clock() - start)
        out[name] = summary_ms(values)
    values = []
    for _ in range(rounds):
        for facts in floor_inputs:
            values.extend(timings(lambda facts=facts: floor(facts), 1))
    out["floor"] = summary_ms(values)
    for name in engines:
        out[name]["p50_vs_floor"] = round(out[name]["p50_ms"] / max(out["floor"]["p50_ms"], 1e-9), 1)
        out[name]["p99_vs_floor"] = round(out[name]["p99_ms"] / max(out["floor"]["p99_ms"], 1e-9), 1)
    return out


def stages(engine: Any, documents: Sequence[Any], as_of: Any, rounds: int) -> dict[str, float]:
    """Median microseconds per stage of one evaluation: parse, normalise, rules (incl. missing data), resolve."""
    from ipm_cds.engine.driver import run_program
    from ipm_cds.engine.resolve import resolve
    from ipm_cds.model.facts.normalise import normalise
    from ipm_cds.model.patient import parse_patient

    acc: dict[str, list[float]] = {"parse": [], "normalise": [], "rules": [], "resolve": []}
    clock = time.perf_counter
    for _ in range(rounds):
        for document in documents:
            t0 = clock()
            case = parse_patient(document)
            t1 = clock()
            facts = normalise(case, as_of, engine._context)
            t2 = clock()
            run = run_program(engine.program, engine._backend, facts, as_of, engine.firing_cap)
            t3 = clock()
            resolve(engine.program, run, patient_id=case.id, as_of=as_of, backend=engine.backend_name)
            t4 = clock()
            for key, value in zip(acc, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                acc[key].append(value)
    return {k: round(statistics.median(v) * 1e6, 1) for k, v in acc.items()}


def bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    import ipm_cds

    from .floor import build_floor
    from .workloads import AS_OF, cohort, reference_patient

    ruleset = ipm_cds.load_ruleset(with_tests=False)
    engines = {b: ipm_cds.Engine(ruleset, backend=b) for b in ("durable", "python")}  # type: ignore[arg-type]
    floor = build_floor(engines["python"].program)
    pin(args.core)
    try:
        out: dict[str, Any] = {"core": args.core}
        reference = [reference_patient()]
        out["reference_patient"] = measure_latency(engines, floor, reference, args.latency_evaluations, AS_OF)
        documents = cohort(args.cohort)
        out["cohort"] = measure_latency(engines, floor, documents, args.latency_evaluations, AS_OF)
        out["stages_us"] = {
            "reference_patient": {b: stages(e, reference, AS_OF, 500) for b, e in engines.items()},
            "cohort": {b: stages(e, documents, AS_OF, 3) for b, e in engines.items()},
        }
        return out
    finally:
        pin(None)


def bench_throughput(args: argparse.Namespace) -> dict[str, Any]:
    import ipm_cds
    from ipm_cds.model.patient import parse_patient

    from .workloads import AS_OF, cohort

    ruleset = ipm_cds.load_ruleset(with_tests=False)
    documents = cohort(args.cohort)
    out: dict[str, Any] = {"core": args.core, "patients": len(documents)}
    pin(args.core)
    try:
        for backend in ("durable", "python"):
            engine = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
            for d in documents:
                engine.evaluate(d, as_of=AS_OF)
            done = 0
            start = time.perf_counter()
            while time.perf_counter() - start < args.throughput_seconds:
                for d in documents:  # from the patient document, validation included
                    engine.evaluate(d, as_of=AS_OF)
                done += len(documents)
            elapsed = time.perf_counter() - start
            out[f"{backend}_per_s"] = round(done / elapsed)
            cases = [parse_patient(d) for d in documents]
            start = time.perf_counter()
            for c in cases:
                engine.evaluate(c, as_of=AS_OF).to_json(indent=None)
            out[f"{backend}_with_json_per_s"] = round(len(cases) / (time.perf_counter() - start))
    finally:
        pin(None)
    return out


def bench_batch(args: argparse.Namespace) -> dict[str, Any]:
    from ipm_cds.serving.batch import evaluate_many

    from .workloads import AS_OF, cohort

    documents = cohort(args.cohort)
    lines = [json.dumps(documents[i % len(documents)]) for i in range(args.batch_records)]
    out: dict[str, Any] = {"records": len(lines), "cores": os.cpu_count()}
    for workers in (1, 2):
        start = time.perf_counter()
        first: float | None = None
        count = 0
        for result in evaluate_many(lines, workers=workers, as_of=AS_OF):
            if first is None:
                first = time.perf_counter()
            assert result.ok, result.error
            count += 1
        end = time.perf_counter()
        assert first is not None
        out[f"workers_{workers}"] = {
            "records_per_s": round(count / (end - start)),
            "steady_records_per_s": round((count - 1) / max(end - first, 1e-9)),
            "startup_s": round(first - start, 2),
        }
    out["speedup"] = round(out["workers_2"]["steady_records_per_s"] / out["workers_1"]["steady_records_per_s"], 2)
    return out


def bench_rss(args: argparse.Namespace) -> dict[str, Any]:
    import ipm_cds
    from ipm_cds.model.patient import parse_patient

    from .workloads import AS_OF, cohort

    ruleset = ipm_cds.load_ruleset(with_tests=False)
    engine = ipm_cds.Engine(ruleset, backend=args.rss_backend)
    cases = [parse_patient(d) for d in cohort(args.cohort)]
    for c in cases:  # warm up: generated matchers, caches, allocator pools
        engine.evaluate(c, as_of=AS_OF)
    gc.collect()
    n = args.rss_evaluations
    samples = [(0, round(rss_mb(), 2))]
    step = max(1, n // 10)
    start = time.perf_counter()
    for i in range(1, n + 1):
        engine.evaluate(cases[i % len(cases)], as_of=AS_OF)
        if i % step == 0 or i == n:
            samples.append((i, round(rss_mb(), 2)))
    elapsed = time.perf_counter() - start
    gc.collect()
    return {
        "backend": args.rss_backend,
        "evaluations": n,
        "seconds": round(elapsed, 1),
        "rss_before_mb": samples[0][1],
        "rss_after_mb": round(rss_mb(), 2),
        "rss_growth_mb": round(rss_mb() - samples[0][1], 2),
        "samples": samples,
    }


def bench_population(args: argparse.Namespace) -> dict[str, Any]:
    from .population import bench

    return bench(args)


def bench_worst(args: argparse.Namespace) -> dict[str, Any]:
    import subprocess

    out: dict[str, Any] = {}
    root = Path(__file__).resolve().parent.parent
    for backend in ("durable", "python"):
        for freeze in (False, True):
            command = [sys.executable, "-m", "benchmarks.worst_case", "--backend", backend]
            command += ["--seeds", str(args.worst_seeds)] + (["--freeze"] if freeze else [])
            done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
            out[f"{backend}{' gc.freeze()' if freeze else ''}"] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def bench_rules(args: argparse.Namespace) -> dict[str, Any]:
    import ipm_cds

    from .floor import build_floor
    from .workloads import AS_OF, reference_patient, synthetic_ruleset

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.rule_sizes:
            root = synthetic_ruleset(size, Path(tmp))
            start = time.perf_counter()
            ruleset = ipm_cds.load_ruleset(root, with_tests=False)
            load = time.perf_counter() - start
            row: dict[str, Any] = {"load_ms": round(load * 1e3, 1)}
            engines = {}
            for backend in ("durable", "python"):
                start = time.perf_counter()
                engines[backend] = ipm_cds.Engine(ruleset, backend=backend)  # type: ignore[arg-type]
                row[f"engine_{backend}_ms"] = round((time.perf_counter() - start) * 1e3, 1)
            floor = build_floor(engines["python"].program)
            pin(args.core)
            try:
                result = measure_latency(engines, floor, [reference_patient()], args.scaling_evaluations, AS_OF)
            finally:
                pin(None)
            row.update({k: result[k] for k in ("durable", "python", "floor")})
            out[str(size)] = row
    return out


def bench_facts(args: argparse.Namespace) -> dict[str, Any]:
    import ipm_cds
    from ipm_cds.model.facts.normalise import normalise
    from ipm_cds.model.patient import parse_patient

    from .floor import build_floor
    from .workloads import AS_OF, sized_patient

    ruleset = ipm_cds.load_ruleset(with_tests=False)
    engines = {b: ipm_cds.Engine(ruleset, backend=b) for b in ("durable", "python")}  # type: ignore[arg-type]
    floor = build_floor(engines["python"].program)
    out: dict[str, Any] = {}
    for per_list in (1, 10, 100):
        document = sized_patient(per_list, ruleset)
        facts = normalise(parse_patient(document), AS_OF, engines["python"]._context)
        evaluations = max(20, args.scaling_evaluations // per_list)
        row: dict[str, Any] = {"items_per_list": per_list, "facts": len(facts)}
        pin(args.core)
        try:
            result = measure_latency(engines, floor, [document], evaluations, AS_OF)
        except ipm_cds.IpmCdsError as exc:  # e.g. the firing cap: recorded, not hidden
            row["error"] = f"{type(exc).__name__}: {exc}"
        else:
            row.update({k: result[k] for k in ("durable", "python", "floor")})
            run_facts = final_facts(engines["python"], parse_patient(document), AS_OF)
            row["facts_after_rules"] = sum(len(v) for v in run_facts.values())
        finally:
            pin(None)
        out[f"{len(facts)}"] = row
    return out


# -- report ---------------------------------------------------------------------------------------------------


def _check(value: float, target: float) -> str:
    return "met" if value <= target else "missed"


def report(results: dict[str, Any]) -> str:
    lines = [
        f"ipm-cds benchmarks, {results['machine']['date']}, {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores, Python {results['machine']['python']}",
        f"durable-rules {results['machine']['durable_rules']}: {results['machine']['durable_rules_build']['note']}",
        "",
    ]
    if "load" in results:
        r = results["load"]
        lines += [
            f"load + validate + compile: {r['load_ms']} ms ({r['rules']} rules, {r['engine_rules']} engine rules, "
            f"{r['strata']} strata) — target <= {TARGETS['load_ms']:.0f} ms: "
            f"{_check(r['load_ms'], TARGETS['load_ms'])}",
            f"engine build: durable {r['engine_durable_ms']} ms, python {r['engine_python_ms']} ms "
            f"(all matchers compiled up front: {r['compile_all_matchers_ms']} ms); full GC pause "
            f"{r['full_gc_pause_ms']} ms ({r['full_gc_pause_frozen_ms']} ms after gc.freeze())",
            "",
        ]
    if "latency" in results:
        for label in ("reference_patient", "cohort"):
            r = results["latency"][label]
            lines.append(f"latency, {label.replace('_', ' ')} ({r['patients']} patients, one core):")
            lines.append("  path      p50 ms   p99 ms   p50/floor  p99/floor")
            for name in ("durable", "python", "floor"):
                x = r[name]
                ratio = f"{x.get('p50_vs_floor', 1.0):>9}  {x.get('p99_vs_floor', 1.0):>9}"
                lines.append(f"  {name:<8} {x['p50_ms']:>7.3f}  {x['p99_ms']:>7.3f}  {ratio}")
        ref = results["latency"]["reference_patient"]
        lines.append(
            f"targets (reference patient): durable p50 <= 0.5 ms {_check(ref['durable']['p50_ms'], 0.5)}, "
            f"p99 <= 1.5 ms {_check(ref['durable']['p99_ms'], 1.5)}; python p50 <= 0.1 ms "
            f"{_check(ref['python']['p50_ms'], 0.1)}"
        )
        for label, per in results["latency"]["stages_us"].items():
            for backend, s in per.items():
                lines.append(f"  stages µs, {label}, {backend}: " + ", ".join(f"{k} {v}" for k, v in s.items()))
        lines.append("")
    if "throughput" in results:
        r = results["throughput"]
        lines += [
            f"throughput, one process, one core: durable {r['durable_per_s']}/s, python {r['python_per_s']}/s "
            f"(with JSON output: {r['durable_with_json_per_s']}/s, {r['python_with_json_per_s']}/s)",
            "",
        ]
    if "batch" in results:
        r = results["batch"]
        lines += [
            f"batch ({r['records']} records, durable): 1 worker {r['workers_1']['steady_records_per_s']}/s, "
            f"2 workers {r['workers_2']['steady_records_per_s']}/s (x{r['speedup']}); with start-up "
            f"{r['workers_1']['records_per_s']}/s and {r['workers_2']['records_per_s']}/s",
            "",
        ]
    if "rss" in results:
        r = results["rss"]
        lines += [
            f"RSS over {r['evaluations']:,} evaluations ({r['backend']}, {r['seconds']} s): {r['rss_before_mb']} MB -> "
            f"{r['rss_after_mb']} MB, growth {r['rss_growth_mb']} MB — target < 5 MB: "
            f"{_check(r['rss_growth_mb'], TARGETS['rss_growth_mb'])}",
            "",
        ]
    if "worst" in results:
        lines.append("largest valid patients (every list at its cap, and the long INR and SIJ histories):")
        for backend, r in results["worst"].items():
            runs = r["evaluations"] // r["patients"]
            lines.append(
                f"  {backend:<19} {r['patients']} patients x {runs}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                f"max {r['max_ms']} ms ({r['slowest']}), at most {r['max_firings']} firings, "
                f"peak RSS {r['peak_rss_mb']} MB — targets p99 <= {TARGETS['worst_p99_ms']:.0f} ms "
                f"{_check(r['p99_ms'], TARGETS['worst_p99_ms'])}, peak <= {TARGETS['worst_peak_rss_mb']:.0f} MB "
                f"{_check(r['peak_rss_mb'], TARGETS['worst_peak_rss_mb'])}"
            )
        lines.append("")
    if "population" in results:
        from .population import report_lines

        lines += [*report_lines(results["population"]), ""]
    for section, error in results.get("errors", {}).items():
        lines += [f"{section}: FAILED: {error}", ""]
    for key, title in (("rules", "synthetic rules"), ("facts", "facts")):
        if key not in results:
            continue
        lines.append(f"scaling with {title}:")
        lines.append("  size    load ms  engine ms (durable)  durable p50  python p50  floor p50")
        for size, r in results[key].items():
            if "error" in r:
                lines.append(f"  {size:<7} {r['error']}")
                continue
            load = f"{r.get('load_ms', '-'):>7}  {r.get('engine_durable_ms', '-'):>19}"
            lines.append(
                f"  {size:<7} {load}  {r['durable']['p50_ms']:>11.3f}  {r['python']['p50_ms']:>10.3f}  "
                f"{r['floor']['p50_ms']:>9.4f}"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--core", type=int, default=(os.cpu_count() or 1) - 1, help="core for one-core figures")
    parser.add_argument("--rss-evaluations", type=int, default=1_000_000, metavar="N")
    parser.add_argument("--rss-backend", choices=["durable", "python"], default="durable")
    parser.add_argument("--latency-evaluations", type=int, default=5000, metavar="N")
    parser.add_argument("--scaling-evaluations", type=int, default=400, metavar="N")
    parser.add_argument("--cohort", type=int, default=200, metavar="N", help="generated patients")
    parser.add_argument("--batch-records", type=int, default=4000, metavar="N")
    parser.add_argument("--throughput-seconds", type=float, default=5.0)
    parser.add_argument("--load-repeat", type=int, default=5)
    parser.add_argument("--rule-sizes", type=lambda t: [int(x) for x in t.split(",")], default=[100, 1000, 4000])
    parser.add_argument("--worst-seeds", type=int, default=100, metavar="N", help="sized patients in 'worst'")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/results/<time>.json)")
    from .population import add_arguments as population_arguments

    population_arguments(parser)
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")
    results: dict[str, Any] = {
        "machine": machine(),
        "targets": TARGETS,
        "arguments": vars(args) | {"out": str(args.out)},
    }
    runners = {
        "load": bench_load,
        "latency": bench_latency,
        "throughput": bench_throughput,
        "batch": bench_batch,
        "rss": bench_rss,
        "rules": bench_rules,
        "facts": bench_facts,
        "worst": bench_worst,
        "population": bench_population,
    }
    failed = []
    for section in chosen:
        print(f"... {section}", file=sys.stderr, flush=True)
        try:
            results[section] = runners[section](args)
        except Exception as exc:  # record it and go on: the other sections still count
            import traceback

            traceback.print_exc()
            failed.append(section)
            results.setdefault("errors", {})[section] = f"{type(exc).__name__}: {exc}"
    text = report(results)
    print(text)
    out = args.out or RESULTS / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"written: {out}", file=sys.stderr)
    if failed:
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
