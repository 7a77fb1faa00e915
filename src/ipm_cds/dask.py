"""Evaluate whole populations on Dask: a bag or a data frame of patient documents, or JSON Lines files.

An optional extra (``pip install "ipm-cds[dask]"``: dask, distributed, pyarrow). Three ways in:

* :func:`evaluate_bag` turns a Dask bag of patient documents (mappings, :class:`~ipm_cds.PatientCase`
  objects or JSON text) into a bag of :class:`~ipm_cds.serving.batch.BatchResult`, in input order, on any Dask
  scheduler (threads, processes, a distributed cluster). Each result is what
  :func:`~ipm_cds.serving.batch.evaluate_many` gives for the same document at the same position: the same
  assessment, or the same per-record error (``{"type", "message"}`` and, where known, ``problems`` or
  ``rule``); ``index`` is the position in the whole bag.
* :func:`evaluate_dataframe` does the same for a Dask DataFrame with one document per row (one column of
  JSON text or mappings).
* ``ipm-cds batch INPUT... --out OUTPUT --dask local`` (a local cluster of ``--workers`` processes) or
  ``--dask tcp://HOST:PORT`` (a running scheduler) reads JSON Lines files or globs, split into partitions of
  ``--partition-lines`` lines, and writes JSON Lines identical to ``ipm-cds batch`` (plus a ``"file"`` key
  when it reads several files), or Parquet (``--out x.parquet`` or ``--format parquet``) with one row per
  patient and conclusion (:data:`ipm_cds.summarize.ROW_FIELDS`); the switch itself is
  :mod:`ipm_cds.dask_cli`. Each partition's results are written by the worker that evaluates it, next to
  the output; this process puts them together in input order.

Each worker process builds one engine per ruleset, profile, backend, parameters and date, once, and keeps
it for every partition that follows (a per-process cache, which works under every scheduler). A worker
that dies is Dask's to handle: its partitions run again elsewhere (``distributed.scheduler.allowed-failures``
times, 3 by default), and a partition that keeps killing workers fails the run with
:class:`~ipm_cds.errors.EvaluationError` naming its file and lines. No record is ever silently missing:
a partition's results are written whole (to a temporary file, renamed) or not at all.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import glob
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import IO, Any

from .decision_log import DecisionLog, decision_line
from .engine.facade import BackendChoice
from .errors import ConfigurationError, EvaluationError, InputFileError
from .ruleset.loader import Ruleset
from .serving.batch import BatchResult, _chunks, _Config, _config, _Evaluator
from .serving.batch_cli import _Reader, _refuse_overwriting_the_input, _StopHandler
from .summarize import ROW_FIELDS, conclusion_rows, is_parquet

__all__ = ["DEFAULT_PARTITION_LINES", "evaluate_bag", "evaluate_dataframe", "run_files"]

DEFAULT_PARTITION_LINES = 2000
"""Lines of JSON Lines input per partition (``--partition-lines``): about 2.5 MB of patients, a few seconds of work."""

_INSTALL_HINT = 'pip install "ipm-cds[dask]"'
_CACHE_SIZE = 4  # engines kept per process (one per ruleset/profile/backend/parameters/date in use)


@dataclasses.dataclass(frozen=True)
class _Job:
    """The settings of a run, with the key a worker process caches its engine under."""

    key: str
    config: _Config


def _job(
    ruleset: Ruleset | str | os.PathLike[str] | None,
    profile: str | None,
    as_of: date | None,
    backend: BackendChoice,
    parameters: Mapping[str, int | float] | None,
    timestamp: bool,
    decision_log: str | os.PathLike[str] | None = None,
    include_patient_id: bool = False,
) -> _Job:
    # as asked: each worker resolves "auto" itself, the same way (as ipm_cds.serving.batch's workers do);
    # with a decision log, the workers make the entries and this process writes them (the log's path is
    # only checked here: workers never open it)
    config = _config(ruleset, profile, backend, parameters, as_of, timestamp, decision_log, include_patient_id)
    identity = [
        config.ruleset.sha256,
        profile,
        backend,
        sorted(config.parameters.items()),
        config.as_of.isoformat(),
        timestamp,
        config.log_decisions,
        config.include_patient_id,
    ]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return _Job(key, config)


# -- in the worker process --------------------------------------------------------------------------------

_EVALUATORS: dict[str, _Evaluator] = {}
_EVALUATORS_LOCK = threading.Lock()


def _evaluator(job: _Job) -> _Evaluator:
    """This process's evaluator for ``job``: built on first use, then reused by every task that follows."""
    with _EVALUATORS_LOCK:
        evaluator = _EVALUATORS.get(job.key)
        if evaluator is None:
            while len(_EVALUATORS) >= _CACHE_SIZE:
                # dropped, not closed: a task on another thread of this worker may still be using it
                _EVALUATORS.pop(next(iter(_EVALUATORS)))
            evaluator = _EVALUATORS[job.key] = _Evaluator(job.config)
            gc.freeze()  # the ruleset and engine live as long as the process: out of the collector's way
    return evaluator


def _evaluate_partition(documents: Iterable[Any], job: _Job) -> list[BatchResult]:
    evaluator = _evaluator(job)
    return [evaluator.evaluate((i, None, document)) for i, document in enumerate(documents)]


def _renumber(results: list[BatchResult], offset: int) -> list[BatchResult]:
    return [dataclasses.replace(r, index=r.index + offset) for r in results] if offset else results


def _count(results: list[BatchResult], before: int) -> int:
    return before + len(results)


# -- the Python API ---------------------------------------------------------------------------------------


def _need_dask() -> None:
    try:
        import dask.bag  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"ipm_cds.dask needs {exc.name or 'dask'}, which is not installed", hint=_INSTALL_HINT
        ) from None


def evaluate_bag(
    bag: Any,
    *,
    ruleset: Ruleset | str | os.PathLike[str] | None = None,
    profile: str | None = None,
    as_of: date | None = None,
    backend: BackendChoice = "auto",
    parameters: Mapping[str, int | float] | None = None,
    timestamp: bool = True,
) -> Any:
    """A ``dask.bag.Bag`` of :class:`~ipm_cds.serving.batch.BatchResult`, one per document of ``bag``, in its order.

    Lazy, like every Dask collection: ``.compute()`` (on any scheduler) gives the list, record for record
    what ``evaluate_many(documents, ...)`` gives. The settings are those of
    :func:`~ipm_cds.serving.batch.evaluate_many`; bad ones raise :class:`~ipm_cds.errors.ConfigurationError` here.
    ``as_of`` defaults to today, fixed now for the whole bag.
    """
    _need_dask()
    import dask.bag as db
    from dask.delayed import delayed

    job = _job(ruleset, profile, as_of, backend, parameters, timestamp)
    shared = delayed(job, name=f"ipm-cds-job-{job.key}", traverse=False)
    evaluated = bag.map_partitions(_evaluate_partition, shared)
    # Each partition numbers its records from 0; the offset of partition p is the count of those before it,
    # a chain of additions that waits for nothing but the lengths.
    parts = evaluated.to_delayed()
    renumbered = []
    offset: Any = 0
    for part in parts:
        renumbered.append(delayed(_renumber, pure=True)(part, offset))
        offset = delayed(_count, pure=True)(part, offset)
    return db.from_delayed(renumbered)


def evaluate_dataframe(frame: Any, column: str | None = None, **settings: Any) -> Any:
    """:func:`evaluate_bag` over a Dask DataFrame with one patient document per row, in ``column``
    (JSON text or a mapping per cell; by default the frame's only column)."""
    _need_dask()
    columns = [str(c) for c in frame.columns]
    if column is None:
        if len(columns) != 1:
            raise ConfigurationError(
                f"the data frame has {len(columns)} columns ({', '.join(columns[:5])}): which one holds the documents?",
                hint="evaluate_dataframe(frame, column='NAME')",
            )
        column = columns[0]
    elif column not in columns:
        from .ruleset.problems import did_you_mean

        raise ConfigurationError(f"the data frame has no column {column!r}", hint=did_you_mean(column, columns))
    return evaluate_bag(frame[column].to_bag(), **settings)


# -- JSON Lines files, partitioned --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Slice:
    """A run of whole lines of one input file: bytes [start, end), after ``lines_before`` lines of the file."""

    number: int
    path: str
    start: int
    end: int
    lines_before: int
    label: str | None  # written as "file" in every JSON Lines result, when the run reads several files

    def describe(self) -> str:
        return f"{self.path} from line {self.lines_before + 1}"


_BLOCK = 1 << 24
_ROW_GROUP = 8192  # Parquet rows a worker holds before writing them
_LINES_AT_ONCE = 64  # records whose JSON Lines are written at once (their text is held until then)


def _cuts(path: Path, lines_per_slice: int) -> list[tuple[int, int, int]]:
    """(start, end, lines before) of each run of ``lines_per_slice`` lines of the file, by one pass over it."""
    out: list[tuple[int, int, int]] = []
    start = lines_before = 0
    lines = 0  # newlines seen since ``start``
    position = 0  # offset of the block in the file
    with path.open("rb") as stream:
        while block := stream.read(_BLOCK):
            found = block.count(b"\n")
            at = 0
            while lines + found >= lines_per_slice:
                need = lines_per_slice - lines
                for _ in range(need):
                    at = block.index(b"\n", at) + 1
                found -= need
                end = position + at
                out.append((start, end, lines_before))
                lines_before += lines_per_slice
                start, lines = end, 0
            lines += found
            position += len(block)
    if position > start:
        out.append((start, position, lines_before))
    return out


def _expand(patterns: Sequence[str]) -> list[Path]:
    """The input files: each pattern a file or a glob (its matches sorted), in the order given, once each."""
    paths: list[Path] = []
    for pattern in patterns:
        if pattern == "-":
            raise ConfigurationError("--dask reads files, not standard input", hint="give the input as a file")
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputFileError(pattern, "no file matches", hint="give JSON Lines files or globs")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise InputFileError(str(path), "no such file", hint="give JSON Lines files or globs")
            if path not in paths:
                paths.append(path)
    return paths


def _plan(paths: Sequence[Path], lines_per_slice: int) -> list[_Slice]:
    slices: list[_Slice] = []
    several = len(paths) > 1
    for path in paths:
        for start, end, before in _cuts(path, lines_per_slice):
            label = str(path) if several else None
            slices.append(_Slice(len(slices), str(path.resolve()), start, end, before, label))
    return slices


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"record": pa.int64(), "line": pa.int64(), "criteria": pa.list_(pa.string()), "safety": pa.bool_()}
    return pa.schema([(name, types.get(name, pa.string())) for name in ROW_FIELDS])


def _run_slice(piece: _Slice, job: _Job, folder: str, fmt: str) -> tuple[int, int, str, str]:
    """Evaluate one slice and write its results to a part file; return (records, errors, part file, and the
    decision-log lines of its assessments, in input order: empty when the run logs no decisions)."""
    evaluator = _evaluator(job)
    with open(piece.path, "rb") as stream:
        stream.seek(piece.start)
        data = stream.read(piece.end - piece.start)
    reader = _Reader(io.BytesIO(data), first_line=piece.lines_before)
    part = Path(folder) / f"part-{piece.number:08d}.{fmt}"
    # a unique temporary name: a partition run again after a worker died never shares a file with the first run
    partial = part.with_name(f"{part.name}.{os.getpid()}.{threading.get_ident()}.partial")
    records = errors = 0
    decisions: list[str] = []  # (a few hundred bytes per record: returned with the result, not a file)
    if fmt == "jsonl":
        # (several files: each record names its file first)
        label = piece.label
        prefix = b"" if label is None else b'"file": ' + json.dumps(label, ensure_ascii=False).encode() + b", "
        with partial.open("wb") as out:
            for chunk in _chunks(reader, _LINES_AT_ONCE):
                lines = evaluator.lines(chunk, prefix)
                out.write(lines.text)
                records += lines.records
                errors += lines.errors
                decisions.extend(decision_line(dict(d)) for d in lines.decisions)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _arrow_schema()
        rows: list[dict[str, Any]] = []
        with pq.ParquetWriter(partial, schema) as writer:
            for record in reader:
                # the rows straight from the assessment (not from its JSON, parsed back): what
                # conclusion_rows reads of a result line, without writing and reading 20 KB of JSON
                outcome = evaluator.assess(record)
                line: dict[str, Any] = {"line": record[1], "file": piece.label}
                if isinstance(outcome, dict):
                    line["error"] = outcome
                    errors += 1
                else:
                    line["assessment"] = outcome[0].model_dump(mode="json")
                    decision = evaluator.decision(outcome)
                    if decision is not None:
                        decisions.append(decision_line(decision))
                rows.extend(conclusion_rows(line, records))  # numbered within the slice
                records += 1
                if len(rows) >= _ROW_GROUP:  # a row group at a time: the worker's memory stays flat
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    rows = []
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    os.replace(partial, part)
    return records, errors, str(part), "".join(decisions)


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    """Append ``source`` to ``target``, in the kernel where it can (no copy through this process's memory)."""
    target.flush()
    size = os.fstat(source.fileno()).st_size
    done = 0
    try:
        while done < size:
            sent = os.sendfile(target.fileno(), source.fileno(), done, size - done)
            if sent == 0:
                raise EvaluationError(f"a part file of the run ended early ({done} of {size} bytes)")
            done += sent
    except (OSError, AttributeError, io.UnsupportedOperation):
        if done:
            raise  # part of the file went out: going on from here another way would be a guess
        source.seek(0)
        shutil.copyfileobj(source, target, 1 << 20)


class _Output:
    """The run's output, put together from the part files in input order."""

    def __init__(self, out: Path, fmt: str) -> None:
        self.fmt = fmt
        self.records = 0
        self.stream: IO[bytes] | None = None
        self.writer: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(out, _arrow_schema())
        else:
            self.stream = sys.stdout.buffer if str(out) == "-" else out.open("wb")

    def append(self, part: Path, records: int) -> None:
        if self.writer is not None:
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            table = pq.read_table(part, schema=_arrow_schema())
            if self.records:
                table = table.set_column(0, "record", pc.add(table["record"], self.records))
            if table.num_rows:
                self.writer.write_table(table)
        else:
            assert self.stream is not None
            with part.open("rb") as source:
                _copy(source, self.stream)
        self.records += records
        part.unlink()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        elif self.stream is sys.stdout.buffer:
            self.stream.flush()
        elif self.stream is not None:
            self.stream.close()


def run_files(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    client: Any,
    *,
    fmt: str | None = None,
    partition_lines: int = DEFAULT_PARTITION_LINES,
    ruleset: Ruleset | str | os.PathLike[str] | None = None,
    profile: str | None = None,
    as_of: date | None = None,
    backend: BackendChoice = "auto",
    parameters: Mapping[str, int | float] | None = None,
    timestamp: bool = True,
    decision_log: str | os.PathLike[str] | None = None,
    include_patient_id: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    _stopper: _StopHandler | None = None,
) -> tuple[int, int]:
    """Evaluate JSON Lines files (paths or globs) on a ``distributed.Client``; write ``out`` (JSON Lines, or
    Parquet: ``fmt="parquet"`` or a ``.parquet`` suffix; ``"-"``: JSON Lines on stdout); return (records, errors).

    The workers read the inputs and write their part files beside ``out`` by the same paths as this process:
    on a cluster of several machines, inputs and output live on a file system they all share.
    ``on_progress(records, errors)`` is called each time a partition's results have been written.
    ``decision_log``: a file that this process appends one entry per assessment to, in input order, as
    ``ipm-cds batch --decision-log`` does (the workers make the entries; ``include_patient_id`` as there).
    """
    if isinstance(partition_lines, bool) or not isinstance(partition_lines, int) or partition_lines < 1:
        raise ConfigurationError(f"partition_lines must be a positive whole number, got {partition_lines!r}")
    out = Path(out)
    fmt = _format(out, fmt)
    paths = _expand([str(p) for p in inputs])
    for path in paths:
        _refuse_overwriting_the_input(argparse.Namespace(input=path, out=out, decision_log=decision_log))
    job = _job(ruleset, profile, as_of, backend, parameters, timestamp, decision_log, include_patient_id)
    slices = _plan(paths, partition_lines)
    parent = Path.cwd() if str(out) == "-" else out.resolve().parent
    folder = tempfile.mkdtemp(prefix=f".{out.name if str(out) != '-' else 'stdout'}.parts-", dir=parent)
    output: _Output | None = None
    log: DecisionLog | None = None
    futures: list[Any] = []
    finished = False
    try:
        output = _Output(out, fmt)
        log = DecisionLog(decision_log, include_patient_id=include_patient_id) if decision_log is not None else None
        shared = client.scatter(job, broadcast=True, hash=False)
        run = hashlib.sha256(f"{job.key}{folder}".encode()).hexdigest()[:12]
        futures = client.map(
            _run_slice,
            slices,
            job=shared,
            folder=folder,
            fmt=fmt,
            key=[f"ipm-cds-slice-{s.number}-{run}" for s in slices],
            pure=False,
        )
        errors = 0
        for piece, future in zip(slices, futures, strict=True):
            records, bad, part, decisions = _result(piece, future)
            with _stopper.record() if _stopper is not None else contextlib.nullcontext():
                # a stop (SIGINT, SIGTERM) waits for this partition to be written whole, and logged
                output.append(Path(part), records)
                if log is not None:
                    log.write_lines(decisions)
                errors += bad
                if on_progress is not None:
                    on_progress(output.records, errors)
            future.release()
        finished = True
        return output.records, errors
    finally:
        if not finished:
            for future in futures:
                future.cancel()
        if output is not None:
            output.close()
        if log is not None:
            log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _format(out: Path, fmt: str | None) -> str:
    fmt = fmt or ("parquet" if is_parquet(out) else "jsonl")
    if fmt not in ("jsonl", "parquet"):
        raise ConfigurationError(f"unknown output format {fmt!r}", hint="use 'jsonl' or 'parquet'")
    if fmt == "parquet" and str(out) == "-":
        raise ConfigurationError("Parquet output needs a file", hint="give --out FILE.parquet")
    return fmt


def _result(piece: _Slice, future: Any) -> tuple[int, int, str, str]:
    from distributed import KilledWorker

    try:
        records, errors, part, decisions = future.result()
    except KilledWorker as exc:
        raise EvaluationError(
            f"Dask workers died while evaluating the partition of {piece.describe()} (the scheduler gave up "
            f"after its allowed failures); the output holds the results of every record before it, in order",
            hint="look at the workers' logs (memory limit? a crash?), or run that part with ipm-cds batch --workers 1",
        ) from exc
    except (OSError, MemoryError) as exc:
        raise EvaluationError(f"the partition of {piece.describe()} failed on its worker: {exc}") from exc
    return int(records), int(errors), str(part), str(decisions)


# -- ipm-cds batch --dask -----------------------------------------------------------------------------------


@contextmanager
def connect(address: str, workers: int = 1) -> Iterator[Any]:
    """A ``distributed.Client``: ``"local"`` starts a local cluster of ``workers`` processes (one thread each),
    closed on exit; otherwise the address of a running scheduler (``tcp://HOST:PORT``)."""
    _need_dask()
    import logging

    from distributed import Client, LocalCluster

    if address == "local":
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError(f"workers must be a positive whole number, got {workers!r}")
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.CRITICAL,  # a worker racing the cluster's close logs tracebacks otherwise
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot reach a Dask scheduler at {address}: {exc}", hint="start one (dask scheduler), or use --dask local"
        ) from None
    with client:
        yield client
