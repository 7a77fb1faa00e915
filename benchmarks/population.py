"""Population runs: ``ipm-cds batch --workers 2`` against the Dask path, scaling, overhead, the 1,000,000 figure.

``python -m benchmarks.population [--population-records N] [--population-backend python|durable]
[--population-distinct N]`` (or ``python -m benchmarks --sections population``) generates ``--population-records``
patients (the first ``--population-distinct`` of the benchmarks' generator, 200 by default, repeated) as JSON
Lines and measures, on this machine:

* ``per_record``: CPU time per record in one process, by stage (parse, rules, assessment JSON, Parquet rows),
  per backend: what any scheduler has to pay per patient;
* ``end_to_end``: ``ipm-cds batch --workers 2`` and ``ipm-cds batch --dask local --workers 2`` (JSON Lines and
  Parquet), each a fresh process on the same input: wall time, records/s, CPU seconds of the whole process
  tree (``RUSAGE_CHILDREN``: workers, nannies, forkserver) per record;
* ``scaling``: the Dask path on a running local cluster (start-up excluded) with 1 and 2 workers and several
  partition sizes, the workers' RSS sampled through the run (flat = memory does not grow with the input);
* ``overhead``: the scheduler's cost per task (2,000 empty tasks), and per partition of the real runs;
* ``extrapolated``: 1,000,000 patients at the measured end-to-end rates, and N machines at the measured
  per-worker rate, less the scheduler's measured overhead per partition.

The machine is shared: every run records the load average before and after; CPU time per record is the
figure that load disturbs least. Numbers are this machine's, on that day.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_RECORDS = 1_000_000
TARGET_SECONDS = 600.0  # issue 17: 1,000,000 patients in under 10 minutes with two local workers
TARGET_DASK_VS_BATCH = 1.25  # the Dask path within 25 % of ipm-cds batch --workers 2


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def make_input(path: Path, records: int, distinct: int = 200) -> int:
    """``records`` JSON Lines patients: the first ``distinct`` patients of the benchmarks' generator, repeated (the
    200-patient cohort by default); returns the file's size in bytes."""
    from .workloads import cohort

    documents = [json.dumps(d) for d in cohort(min(distinct, records))]
    with path.open("w", encoding="utf-8") as out:
        for i in range(records):
            out.write(documents[i % len(documents)] + "\n")
    return path.stat().st_size


def per_record(backend: str, records: int = 600) -> dict[str, Any]:
    """CPU µs per record and stage, one process (what a worker pays per patient whatever the scheduler)."""
    import gc

    import ipm_cds
    from ipm_cds.model.patient import parse_patient
    from ipm_cds.serving.batch import WORKER_GC_THRESHOLD

    from .workloads import AS_OF, cohort

    documents = [json.dumps(d).encode() for d in cohort(200)]
    lines = [documents[i % len(documents)] for i in range(records)]
    engine = ipm_cds.Engine(ipm_cds.load_ruleset(with_tests=False), backend=backend)  # type: ignore[arg-type]
    for line in lines[:100]:
        engine.evaluate(parse_patient(line), as_of=AS_OF)
    # as a batch worker runs: what the engine holds frozen, the young generation collected every 10,000
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(WORKER_GC_THRESHOLD, *threshold[1:])
    try:
        return _per_record(engine, lines)
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _per_record(engine: Any, lines: list[bytes]) -> dict[str, Any]:
    from ipm_cds.model.patient import parse_patient
    from ipm_cds.summarize import conclusion_rows

    from .workloads import AS_OF

    clock = time.process_time
    start = clock()
    cases = [parse_patient(line) for line in lines]
    parse = clock() - start
    start = clock()
    assessments = [engine.evaluate(case, as_of=AS_OF) for case in cases]
    rules = clock() - start
    # the evaluation's own stages, CPU time summed over the records (benchmarks.__main__.stages gives medians)
    from ipm_cds.engine.driver import run_program
    from ipm_cds.engine.resolve import resolve
    from ipm_cds.model.facts.normalise import normalise

    split = [0.0, 0.0, 0.0]
    for case in cases:
        t0 = clock()
        facts = normalise(case, AS_OF, engine._context)
        t1 = clock()
        run = run_program(engine.program, engine._backend, facts, AS_OF, engine.firing_cap)
        t2 = clock()
        resolve(engine.program, run, patient_id=case.id, as_of=AS_OF, backend=engine.backend_name)
        t3 = clock()
        split[0] += t1 - t0
        split[1] += t2 - t1
        split[2] += t3 - t2
    start = clock()
    texts = [a.__pydantic_serializer__.to_json(a) for a in assessments]  # as the batch writes it: UTF-8 bytes
    to_json = clock() - start
    start = clock()
    parts: list[bytes] = []  # and each record's line, joined with the chunk's (ipm_cds.serving.batch.Lines)
    for i, text in enumerate(texts):
        parts += (b"{", f'"line": {i + 1}'.encode(), b', "assessment": ', text, b"}\n")
    jsonl = b"".join(parts)
    to_line = clock() - start
    start = clock()
    for i, a in enumerate(assessments):  # as the Dask path's Parquet output builds them: no JSON in between
        conclusion_rows({"line": i + 1, "assessment": a.model_dump(mode="json")}, i)
    rows = clock() - start
    n = len(lines)

    def us(seconds: float) -> float:
        return round(seconds / n * 1e6, 1)

    out = {
        "records": n,
        "parse_us": us(parse),
        "rules_us": us(rules),  # Engine.evaluate: normalise + rules + resolve, as split below
        "evaluate_split_us": {"normalise": us(split[0]), "run_rules": us(split[1]), "resolve": us(split[2])},
        "assessment_json_us": us(to_json),
        "jsonl_line_us": us(to_line),
        "parquet_rows_us": us(rows),
        "output_bytes_per_record": round(len(jsonl) / n),
    }
    out["jsonl_total_us"] = round(
        out["parse_us"] + out["rules_us"] + out["assessment_json_us"] + out["jsonl_line_us"], 1
    )
    out["parquet_total_us"] = round(out["parse_us"] + out["rules_us"] + out["parquet_rows_us"], 1)
    return out


def _cli(argv: Sequence[str]) -> dict[str, Any]:
    """Run ``ipm-cds ARGV`` in a fresh process: wall seconds, CPU seconds of its whole process tree."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    import psutil

    load = _load()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "ipm_cds", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    # CPU and RSS of the whole process tree (workers, nannies, forkserver), sampled: the last sample of each
    # process counts (up to one interval of a process's CPU at its very end is not seen)
    cpu: dict[int, float] = {}
    rss: dict[int, float] = {}
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
                rss[p.pid] = max(rss.get(p.pid, 0.0), p.memory_info().rss / 2**20)
            except psutil.Error:
                pass
        time.sleep(0.2)
    wall = time.perf_counter() - start
    stderr = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"ipm-cds {' '.join(argv)} exited {process.returncode}: {stderr.strip()[-500:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(sum(cpu.values()), 2),
        "processes": len(cpu),
        "max_rss_mb_per_process": sorted((round(v, 1) for v in rss.values()), reverse=True),
        "load_before": load,
        "load_after": _load(),
        "stderr": stderr.strip().splitlines()[-1:],
    }


def end_to_end(source: Path, folder: Path, records: int, backend: str) -> dict[str, Any]:
    from .workloads import AS_OF

    common = ["--as-of", AS_OF.isoformat(), "--backend", backend]
    runs: dict[str, list[str]] = {
        "batch --workers 2": ["batch", str(source), "--out", str(folder / "batch.jsonl"), "--workers", "2"],
        "batch --dask local --workers 2 (JSON Lines)": [
            "batch", str(source), "--out", str(folder / "dask.jsonl"), "--dask", "local", "--workers", "2",
        ],
        "batch --dask local --workers 2 (Parquet)": [
            "batch", str(source), "--out", str(folder / "dask.parquet"), "--dask", "local", "--workers", "2",
        ],
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name, argv in runs.items():
        r = _cli([*argv, *common])
        r["records_per_s"] = round(records / r["wall_s"])
        r["cpu_ms_per_record"] = round(r["cpu_s"] / records * 1e3, 3)
        r["seconds_for_1m"] = round(TARGET_RECORDS / r["records_per_s"])
        out[name] = r
    for path in folder.glob("*.jsonl"):
        if path.name != source.name:
            path.unlink()
    batch = out["batch --workers 2"]["wall_s"]
    out["dask_jsonl_vs_batch"] = round(out["batch --dask local --workers 2 (JSON Lines)"]["wall_s"] / batch, 3)
    out["dask_parquet_vs_batch"] = round(out["batch --dask local --workers 2 (Parquet)"]["wall_s"] / batch, 3)
    return out


class _Sampler:
    """The workers' RSS (MB), sampled every ``every`` seconds while a run goes on."""

    def __init__(self, pids: Sequence[int], every: float = 0.5) -> None:
        import psutil

        self.processes = [psutil.Process(pid) for pid in pids]
        self.samples: list[list[float]] = []
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.samples.append([round(p.memory_info().rss / 2**20, 1) for p in self.processes])
            except Exception:  # a worker that ended: the run will say why
                return

    def cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)

    def __enter__(self) -> _Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _dask_run(
    client: Any, source: Path, out: Path, records: int, backend: str, partition_lines: int, fmt: str
) -> dict[str, Any]:
    from ipm_cds.dask import run_files

    from .workloads import AS_OF

    pids = list(client.run(os.getpid).values())
    load = _load()
    with _Sampler(pids) as sampler:
        cpu_before = sampler.cpu()
        own_before = time.process_time()
        start = time.perf_counter()
        run_files([source], out, client, fmt=fmt, partition_lines=partition_lines, backend=backend, as_of=AS_OF)  # type: ignore[arg-type]
        wall = time.perf_counter() - start
        worker_cpu = sampler.cpu() - cpu_before
        own_cpu = time.process_time() - own_before
    out.unlink()
    samples = sampler.samples
    partitions = -(-records // partition_lines)
    first = samples[min(len(samples) - 1, 2)] if samples else []
    return {
        "workers": len(pids),
        "partition_lines": partition_lines,
        "partitions": partitions,
        "format": fmt,
        "wall_s": round(wall, 2),
        "records_per_s": round(records / wall),
        "per_worker_records_per_s": round(records / wall / len(pids)),
        "worker_cpu_ms_per_record": round(worker_cpu / records * 1e3, 3),
        "driver_cpu_ms_per_record": round(own_cpu / records * 1e3, 4),
        "worker_rss_mb_early": first,
        "worker_rss_mb_max": [max(s[i] for s in samples) for i in range(len(pids))] if samples else [],
        "worker_rss_mb_last": samples[-1] if samples else [],
        "load_before": load,
        "load_after": _load(),
    }


def scaling(source: Path, folder: Path, records: int, backend: str, partition_sizes: Sequence[int]) -> dict[str, Any]:
    from ipm_cds.dask import connect

    out: dict[str, Any] = {"runs": []}
    for workers in (1, 2):
        with connect("local", workers) as client:
            client.run(_warm, backend)  # each worker builds its engine before the clock starts
            sizes = partition_sizes if workers == 2 else partition_sizes[-1:]
            for lines in sizes:
                out["runs"].append(_dask_run(client, source, folder / "s.jsonl", records, backend, lines, "jsonl"))
            if workers == 2:
                out["runs"].append(
                    _dask_run(client, source, folder / "s.parquet", records, backend, partition_sizes[-1], "parquet")
                )
                out["overhead"] = overhead(client)
    return out


def _warm(backend: str) -> None:
    from ipm_cds.dask import _evaluator, _job

    from .workloads import AS_OF

    _evaluator(_job(None, None, AS_OF, backend, None, True))  # type: ignore[arg-type]


def _noop(x: int) -> int:
    return x


def overhead(client: Any, tasks: int = 2000) -> dict[str, Any]:
    """The scheduler's cost per task on this machine: empty tasks, submitted at once and gathered in order."""
    start = time.perf_counter()
    futures = client.map(_noop, range(tasks), pure=False)
    for f in futures:
        f.result()
    wall = time.perf_counter() - start
    del futures
    return {"tasks": tasks, "wall_s": round(wall, 3), "ms_per_task": round(wall / tasks * 1e3, 3)}


def extrapolate(result: dict[str, Any]) -> dict[str, Any]:
    e2e = result["end_to_end"]
    out: dict[str, Any] = {}
    for name in (
        "batch --workers 2",
        "batch --dask local --workers 2 (JSON Lines)",
        "batch --dask local --workers 2 (Parquet)",
    ):
        seconds = TARGET_RECORDS / e2e[name]["records_per_s"]
        out[name] = {"seconds_for_1m": round(seconds), "target_met": seconds <= TARGET_SECONDS}
    per = result["per_record"]
    # what two cores give if nothing but the per-record work were done, on an otherwise idle machine
    out["cpu_bound_seconds_for_1m_two_cores"] = {
        "jsonl": round(TARGET_RECORDS * per["jsonl_total_us"] / 1e6 / 2),
        "parquet": round(TARGET_RECORDS * per["parquet_total_us"] / 1e6 / 2),
    }
    runs = [r for r in result["scaling"]["runs"] if r["workers"] == 2 and r["format"] == "jsonl"]
    best = max(runs, key=lambda r: r["records_per_s"])
    per_task = result["scaling"]["overhead"]["ms_per_task"] / 1e3
    per_worker = best["per_worker_records_per_s"]
    machines = {}
    for n in (1, 4, 16, 64):
        workers = 2 * n
        partitions = TARGET_RECORDS / best["partition_lines"]
        seconds = TARGET_RECORDS / (per_worker * workers) + partitions * per_task  # the scheduler: one at a time
        machines[str(n)] = round(seconds, 1)
    out["n_machines_seconds_for_1m"] = {
        "basis": f"{per_worker}/s per worker (2 per machine), {best['partition_lines']} lines per partition, "
        f"{result['scaling']['overhead']['ms_per_task']} ms scheduler time per task",
        **machines,
    }
    return out


def bench(args: argparse.Namespace) -> dict[str, Any]:
    records = args.population_records
    backend = args.population_backend
    result: dict[str, Any] = {
        "records": records,
        "distinct": min(args.population_distinct, records),
        "backend": backend,
        "cores": os.cpu_count(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
        "load_at_start": _load(),
    }
    result["per_record"] = per_record(backend)
    result["per_record_other_backend"] = per_record("durable" if backend == "python" else "python")
    with tempfile.TemporaryDirectory(prefix="ipm-cds-population-") as tmp:
        folder = Path(tmp)
        source = folder / "patients.jsonl"
        result["input_bytes"] = make_input(source, records, args.population_distinct)
        result["end_to_end"] = end_to_end(source, folder, records, backend)
        result["scaling"] = scaling(source, folder, records, backend, args.partition_sizes)
    result["extrapolated"] = extrapolate(result)
    result["load_at_end"] = _load()
    return result


def report_lines(r: dict[str, Any]) -> list[str]:
    per = r["per_record"]
    lines = [
        f"population ({r['records']:,} generated patients, {r.get('distinct', 200):,} distinct, "
        f"{r['backend']} backend, {r['cores']} cores, "
        f"load average {r['load_at_start']} at start, {r['load_at_end']} at end):",
        f"  CPU per record, one process: parse {per['parse_us']} µs, rules {per['rules_us']} µs, assessment JSON "
        f"{per['assessment_json_us']} µs, output line {per['jsonl_line_us']} µs (= {per['jsonl_total_us']} µs for "
        f"JSON Lines, {per['output_bytes_per_record']:,} bytes/record); Parquet rows instead of JSON "
        f"{per['parquet_rows_us']} µs (= {per['parquet_total_us']} µs)",
        "  the evaluation, split: " + ", ".join(f"{k} {v} µs" for k, v in per["evaluate_split_us"].items()),
    ]
    other = r["per_record_other_backend"]
    lines.append(f"  (the other backend: rules {other['rules_us']} µs, total {other['jsonl_total_us']} µs per record)")
    for name, run in r["end_to_end"].items():
        if isinstance(run, dict):
            lines.append(
                f"  {name:<44} {run['wall_s']:>7} s  {run['records_per_s']:>6}/s  "
                f"CPU {run['cpu_ms_per_record']} ms/record, peak RSS MB {run['max_rss_mb_per_process'][:3]} "
                f"(load {run['load_before']} -> {run['load_after']})"
            )
    e2e = r["end_to_end"]
    met = "met" if e2e["dask_jsonl_vs_batch"] <= TARGET_DASK_VS_BATCH else "missed"
    lines.append(
        f"  Dask / batch wall time: JSON Lines x{e2e['dask_jsonl_vs_batch']}, Parquet x{e2e['dask_parquet_vs_batch']} "
        f"(target <= x{TARGET_DASK_VS_BATCH}: {met})"
    )
    lines.append("  Dask path on a running local cluster (start-up excluded):")
    for run in r["scaling"]["runs"]:
        lines.append(
            f"    {run['workers']} worker(s), {run['partition_lines']:>5} lines/partition, {run['format']:<7} "
            f"{run['records_per_s']:>6}/s, worker CPU {run['worker_cpu_ms_per_record']} ms/record, driver "
            f"{run['driver_cpu_ms_per_record']} ms/record, worker RSS MB early {run['worker_rss_mb_early']} max "
            f"{run['worker_rss_mb_max']} last {run['worker_rss_mb_last']}"
        )
    o = r["scaling"]["overhead"]
    lines.append(f"  scheduler: {o['ms_per_task']} ms per task ({o['tasks']} empty tasks in {o['wall_s']} s)")
    x = r["extrapolated"]
    for name in (
        "batch --workers 2",
        "batch --dask local --workers 2 (JSON Lines)",
        "batch --dask local --workers 2 (Parquet)",
    ):
        lines.append(
            f"  1,000,000 patients, {name}: {x[name]['seconds_for_1m']:,} s (target <= {TARGET_SECONDS:.0f} s: "
            f"{'met' if x[name]['target_met'] else 'missed'})"
        )
    c = x["cpu_bound_seconds_for_1m_two_cores"]
    lines.append(f"  per-record CPU alone on two idle cores: JSON Lines {c['jsonl']:,} s, Parquet {c['parquet']:,} s")
    m = x["n_machines_seconds_for_1m"]
    lines.append(
        "  N machines (2 workers each), 1,000,000 patients: "
        + ", ".join(f"{k}: {v} s" for k, v in m.items() if k != "basis")
        + f" ({m['basis']})"
    )
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--population-records", type=int, default=20_000, metavar="N")
    parser.add_argument("--population-backend", choices=["python", "durable"], default="python")
    parser.add_argument(
        "--population-distinct",
        type=int,
        default=200,
        metavar="N",
        help="distinct generated patients the end-to-end input repeats (default 200, the cohort; generating "
        "20,000 takes about a minute)",
    )
    parser.add_argument(
        "--partition-sizes", type=lambda t: [int(x) for x in t.split(",")], default=[500, 2000, 8000], metavar="A,B,C"
    )


def main(argv: Sequence[str] | None = None, printer: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.population", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default: benchmarks/results/population-<time>.json)"
    )
    args = parser.parse_args(argv)
    from .__main__ import RESULTS, machine

    result = {"machine": machine(), "population": bench(args)}
    printer("\n".join(report_lines(result["population"])))
    out = args.out or RESULTS / f"population-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
