"""Evaluate many patients (JSON Lines in, JSON Lines out), in several processes, in input order.

:func:`evaluate_many` takes any iterable of patient documents (mappings, :class:`~ipm_cds.PatientCase`
objects, or JSON text) and yields one :class:`BatchResult` per document, in input order, as soon as it
and every result before it are ready. It streams: however long the input, at most
``workers * IN_FLIGHT_CHUNKS`` chunks of ``chunk_size`` documents are held at once. With ``workers > 1``
each worker process builds one engine and evaluates chunk after chunk (durable-rules never releases the
GIL, so processes are the way to use several cores: :mod:`ipm_cds.serving.pool`); with ``workers=1``
everything runs in this process.

A document that cannot be assessed (invalid patient data, an evaluation error) becomes a result that
carries the error instead of an assessment; the batch goes on. ``ipm-cds batch`` writes each result as
one line: ``{"line": N, "assessment": {...}}`` or ``{"line": N, "error": {"type": ..., "message": ...}}``.
Results abandoned before the end (an exception, an interrupt, ``close()``) terminate the workers at once.

The command ``ipm-cds batch`` (JSON Lines in and out) is :mod:`ipm_cds.serving.batch_cli`.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from ..decision_log import DecisionLog, decision_entry
from ..engine.facade import BackendChoice, Engine, choose_backend
from ..errors import ConfigurationError, EvaluationError, IpmCdsError, PatientDataError, Problem
from ..ruleset.loader import Ruleset, load_ruleset
from .pool import Work, ordered_results

DEFAULT_CHUNK_SIZE = 32
WORKER_GC_THRESHOLD = 10_000  # a batch worker's first-generation threshold (gc.set_threshold)
MAX_RECORD_BYTES = 4 * 1024 * 1024
"""A JSON Lines record longer than this is reported as an error without being read into memory whole."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome for one input document: an assessment (as JSON) or an error, never both."""

    index: int  # 0-based position in the input
    line: int | None  # 1-based line number, when the input was read from JSON Lines
    assessment_json: str | None  # compact JSON, fields in model order: to_json(indent=None, sort_keys=False)
    error: Mapping[str, Any] | None  # {"type", "message"} and, where known, "problems" or "rule"
    decision: Mapping[str, Any] | None = None  # the decision-log entry, when decisions are logged

    @property
    def ok(self) -> bool:
        return self.error is None

    def assessment(self) -> Any:
        """The :class:`~ipm_cds.Assessment` (parsed from JSON on demand); raises if this result is an error."""
        from ..model.assessment import Assessment

        if self.assessment_json is None:
            raise ValueError(f"record {self.line or self.index + 1} has no assessment: {self.error}")
        return Assessment.model_validate_json(self.assessment_json)

    def to_json_line(self) -> str:
        """One JSON Lines record (without the newline)."""
        if self.assessment_json is not None:
            return "{" + _position(self.index, self.line) + ', "assessment": ' + self.assessment_json + "}"
        return "{" + _position(self.index, self.line) + ', "error": ' + _error_json(self.error) + "}"


def _position(index: int, line: int | None) -> str:
    return f'"line": {line}' if line is not None else f'"index": {index}'


def _error_json(error: Mapping[str, Any] | None) -> str:
    return json.dumps(error, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Lines:
    """The results of consecutive records as ``ipm-cds batch`` writes them: ``text`` is their JSON Lines
    records, UTF-8, each ended by a newline (byte for byte ``(result.to_json_line() + "\n").encode()`` of
    each :class:`BatchResult`); ``records`` and ``errors`` count them, ``decisions`` holds the decision-log
    entries of the assessments among them, in input order (empty when decisions are not logged).

    From worker processes, ``text`` is a read-only view of the memory the worker wrote it to
    (:mod:`ipm_cds.serving.pool`), valid until the next chunk's results are asked for: write it out at once."""

    text: bytes | memoryview
    records: int
    errors: int
    decisions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class _Config:
    ruleset: Ruleset
    profile: str | None
    backend: BackendChoice  # as asked: each worker's engine resolves "auto" itself (the same way)
    parameters: Mapping[str, int | float]
    as_of: date
    timestamp: bool
    log_decisions: bool
    include_patient_id: bool


Record = tuple[int, int | None, Any]  # (index, line, document)
_Sent = TypeVar("_Sent")
_Out = TypeVar("_Out")


def _error(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, PatientDataError):
        out["problems"] = [str(p) for p in exc.problems]
    elif isinstance(exc, EvaluationError) and exc.rule:
        out["rule"] = exc.rule
    elif not isinstance(exc, IpmCdsError):
        out["message"] = f"unexpected error (a bug in ipm-cds, please report it): {exc}"
    return out


class _Evaluator:
    """One engine and the batch settings; evaluates records into results."""

    def __init__(self, config: _Config) -> None:
        self.config = config
        self.engine = Engine(
            config.ruleset, profile=config.profile, backend=config.backend, parameters=config.parameters
        )

    def assess(self, record: Record) -> tuple[Any, Any, float] | dict[str, Any]:
        """(assessment, patient case, seconds) for one record, or its error as :class:`BatchResult` carries it."""
        from ..model.patient import parse_patient

        document = record[2]
        started = time.perf_counter()
        try:
            if isinstance(document, _Oversize):
                raise PatientDataError([Problem(f"record is longer than {MAX_RECORD_BYTES} bytes")])
            case = parse_patient(document)
            assessment = self.engine.evaluate(case, as_of=self.config.as_of, timestamp=self.config.timestamp)
        except Exception as exc:  # every failure is this record's, reported in its place; the batch goes on
            return _error(exc)
        return assessment, case, time.perf_counter() - started

    def evaluate(self, record: Record) -> BatchResult:
        index, line, _ = record
        config = self.config
        outcome = self.assess(record)
        if isinstance(outcome, dict):
            return BatchResult(index, line, None, outcome)
        assessment = outcome[0]
        decision = self.decision(outcome)
        text = assessment.to_json(indent=None, timestamp=config.timestamp, sort_keys=False)
        return BatchResult(index, line, text, None, decision)

    def lines(self, records: Iterable[Record], prefix: bytes = b"") -> Lines:
        """The results of ``records`` as JSON Lines text (:class:`Lines`), without their text ever being a
        ``str``: each assessment goes from pydantic's serializer to the output as the UTF-8 bytes it writes
        (what :meth:`evaluate` then :meth:`BatchResult.to_json_line` give, encoded, about 20 µs sooner a
        record). ``prefix``: the bytes each record starts with after its ``{`` (a ``"file": ...,`` member)."""
        parts, count, errors, decisions = self.parts(records, prefix)
        return Lines(b"".join(parts), count, errors, decisions)

    def parts(
        self, records: Iterable[Record], prefix: bytes = b""
    ) -> tuple[list[bytes], int, int, tuple[Mapping[str, Any], ...]]:
        """What :meth:`lines` gives, its text still in pieces (to be joined, or copied where it goes)."""
        parts: list[bytes] = []
        decisions: list[Mapping[str, Any]] = []
        count = errors = 0
        exclude = None if self.config.timestamp else {"provenance": {"evaluated_at"}}
        for record in records:
            count += 1
            index, line, _ = record
            outcome = self.assess(record)
            # (the pieces of a record, joined once with the chunk's: an assessment is 20 to 30 KB)
            parts += (b"{", prefix, _position(index, line).encode())
            if isinstance(outcome, dict):
                errors += 1
                parts += (b', "error": ', _error_json(outcome).encode(), b"}\n")
                continue
            # (model_dump_json is this serializer's output decoded: the same text, as bytes)
            body = outcome[0].__pydantic_serializer__.to_json(outcome[0], exclude=exclude)
            parts += (b', "assessment": ', body, b"}\n")
            decision = self.decision(outcome)
            if decision is not None:
                decisions.append(decision)
        return parts, count, errors, tuple(decisions)

    def decision(self, outcome: tuple[Any, Any, float]) -> dict[str, Any] | None:
        """The decision-log entry of an assessment :meth:`assess` made, when this run logs decisions."""
        if not self.config.log_decisions:
            return None
        assessment, case, elapsed = outcome
        return decision_entry(
            assessment,
            case,
            elapsed_seconds=elapsed,
            backend=self.engine.backend_name,
            include_patient_id=self.config.include_patient_id,
        )


class _Oversize:
    """Stands in for a JSON Lines record too long to read (its text is skipped, never held)."""


# -- worker processes ---------------------------------------------------------------------------------

_WORKER: dict[str, _Evaluator] = {}  # in a worker process: its one evaluator (one engine)


def _init_worker(config: _Config) -> None:
    # Ctrl-C on a terminal reaches every process of the group: the parent alone decides what to do (it stops
    # the workers), so that a worker does not die with a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["evaluator"] = _Evaluator(config)
    # A worker process is ours: what it holds now (the ruleset, the engine) lives as long as it does, so the
    # collector need not walk it on every full collection (docs/performance.md: a p99 of GC pauses).
    gc.freeze()
    # An evaluation makes thousands of short-lived containers and almost no cycles: collecting the youngest
    # generation every 700 of them (Python's default) walks the same live objects over and over, about 1 % of
    # a worker's instructions; every 10,000, almost none. Memory stays flat (what a cycle holds is still freed).
    gc.set_threshold(WORKER_GC_THRESHOLD, *gc.get_threshold()[1:])


def _run_chunk(chunk: list[Record], slot: memoryview | None) -> tuple[int, list[BatchResult]]:
    evaluator = _WORKER["evaluator"]
    return -1, [evaluator.evaluate(record) for record in chunk]


def _run_chunk_lines(chunk: list[Record], slot: memoryview | None) -> tuple[int, Lines]:
    """A chunk's :class:`Lines`, its text written into ``slot`` when it fits (only the counts and decisions
    then travel back through the pipe)."""
    parts, count, errors, decisions = _WORKER["evaluator"].parts(chunk)
    if slot is not None:
        size = sum(map(len, parts))
        if size <= len(slot):
            at = 0
            for part in parts:
                end = at + len(part)
                slot[at:end] = part
                at = end
            return size, Lines(b"", count, errors, decisions)
    return -1, Lines(b"".join(parts), count, errors, decisions)


def _received(sent: _Out, data: memoryview | None) -> _Out:
    return sent


def _received_lines(sent: Lines, data: memoryview | None) -> Lines:
    return sent if data is None else Lines(data, sent.records, sent.errors, sent.decisions)


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _context() -> multiprocessing.context.BaseContext:
    # forkserver: workers start from a clean process, not a copy of one that may hold locks or live engine
    # states (fork copies both); spawn where forkserver does not exist.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _evaluate_records(
    records: Iterable[Record], config: _Config, workers: int, chunk_size: int
) -> Iterator[BatchResult]:
    if workers == 1:
        evaluator = _Evaluator(config)
        for record in records:
            yield evaluator.evaluate(record)
        return
    for results in _pooled(records, config, workers, chunk_size, _run_chunk, _received):
        yield from results


def _evaluate_lines(records: Iterable[Record], config: _Config, workers: int, chunk_size: int) -> Iterator[Lines]:
    """The results as :class:`Lines`, a chunk at a time, in input order (what ``ipm-cds batch`` writes)."""
    if workers == 1:  # each record's line as soon as it is made, as evaluate_many gives it (stdin read live)
        evaluator = _Evaluator(config)
        for record in records:
            yield evaluator.lines((record,))
        return
    yield from _pooled(records, config, workers, chunk_size, _run_chunk_lines, _received_lines)


def _pooled(
    records: Iterable[Record],
    config: _Config,
    workers: int,
    chunk_size: int,
    run_chunk: Callable[[list[Record], memoryview | None], tuple[int, _Sent]],
    receive: Callable[[_Sent, memoryview | None], _Out],
) -> Iterator[_Out]:
    """``run_chunk`` of each chunk of ``records``, run in ``workers`` worker processes, in input order
    (:func:`ipm_cds.serving.pool.ordered_results`); ``receive`` makes each result in this process."""
    work = Work(initializer=_init_worker, initargs=(config,), run=run_chunk, receive=receive)
    return ordered_results(_chunks(records, chunk_size), work, workers, _context())


def _config(
    ruleset: Ruleset | str | os.PathLike[str] | None,
    profile: str | None,
    backend: BackendChoice,
    parameters: Mapping[str, int | float] | None,
    as_of: date | None,
    timestamp: bool,
    decision_log: object,
    include_patient_id: bool,
) -> _Config:
    """What every worker builds its engine from (here and in :mod:`ipm_cds.dask`), checked once, here: the
    backend, the ruleset (loaded), the profile and parameters, the decision log."""
    from ..engine.facade import check_arguments, evaluation_date
    from ..engine.program import build_program

    choose_backend(backend)  # an unknown name, or durable where it cannot run, fails here, once
    if ruleset is not None and not isinstance(ruleset, Ruleset | str | os.PathLike):
        raise ConfigurationError(
            f"ruleset must be a Ruleset or a folder path, not {type(ruleset).__name__}",
            hint="ipm_cds.load_ruleset(path), a path, or None for the bundled ruleset",
        )
    loaded = (
        ruleset
        if isinstance(ruleset, Ruleset)
        else load_ruleset(None if ruleset is None else Path(ruleset), with_tests=False)
    )
    check_arguments(loaded, profile, parameters, 1, None)
    build_program(loaded, profile, parameters)  # an unknown profile or a bad parameter fails here, once
    if decision_log is not None and not isinstance(decision_log, DecisionLog | str | os.PathLike):
        raise ConfigurationError(
            f"decision_log must be a path or a DecisionLog, not {type(decision_log).__name__}",
        )
    return _Config(
        ruleset=loaded,
        profile=profile,
        backend=backend,
        parameters=dict(parameters or {}),
        as_of=evaluation_date(as_of),  # one date for the whole batch, even across midnight
        timestamp=timestamp,
        log_decisions=decision_log is not None,
        include_patient_id=include_patient_id,
    )


def evaluate_many(
    patients: Iterable[Any],
    workers: int = 1,
    *,
    ruleset: Ruleset | str | os.PathLike[str] | None = None,
    profile: str | None = None,
    as_of: date | None = None,
    backend: BackendChoice = "auto",
    parameters: Mapping[str, int | float] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timestamp: bool = True,
    decision_log: str | os.PathLike[str] | DecisionLog | None = None,
    include_patient_id: bool = False,
) -> Iterator[BatchResult]:
    """Assess every patient; return an iterator of results in input order, streaming.

    ``ruleset`` is a loaded :class:`~ipm_cds.Ruleset` or a folder (the bundled ruleset by default);
    ``as_of`` defaults to today, fixed once for the whole batch. ``decision_log`` is a path or a
    :class:`~ipm_cds.decision_log.DecisionLog`: each assessment made is recorded there, in input order.
    Bad settings raise :class:`~ipm_cds.errors.ConfigurationError` (or ``RulesetError``) here, before
    any patient is read.

    This is the way to use several cores: ``workers=N`` starts N worker processes, each with its own engine
    (an engine's evaluations hold the GIL, so threads add no throughput). ``backend="auto"`` (the
    default) is resolved in each worker the same way as here.
    """
    try:
        documents = iter(patients)
    except TypeError:
        raise ConfigurationError(
            f"patients must be an iterable of patient documents, not {type(patients).__name__}",
            hint="a list of mappings, PatientCase objects or JSON texts, or a generator of them",
        ) from None
    batch = _prepare(
        workers=workers,
        ruleset=ruleset,
        profile=profile,
        as_of=as_of,
        backend=backend,
        parameters=parameters,
        chunk_size=chunk_size,
        timestamp=timestamp,
        decision_log=decision_log,
        include_patient_id=include_patient_id,
    )
    return _evaluate(((i, None, p) for i, p in enumerate(documents)), batch)


@dataclass(frozen=True)
class _Batch:
    """A batch's settings, checked (:func:`_prepare`): what every worker builds its engine from, how many
    workers evaluate chunks of how many records, and the decision log (``owned``: this batch opened it)."""

    config: _Config
    workers: int
    chunk_size: int
    log: DecisionLog | None
    owned: bool


def _prepare(
    *,
    workers: int,
    ruleset: Ruleset | str | os.PathLike[str] | None,
    profile: str | None,
    as_of: date | None,
    backend: BackendChoice,
    parameters: Mapping[str, int | float] | None,
    chunk_size: int,
    timestamp: bool,
    decision_log: str | os.PathLike[str] | DecisionLog | None,
    include_patient_id: bool,
) -> _Batch:
    """The settings checked, before any record is read (what :func:`evaluate_many` and ``ipm-cds batch`` take)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"workers must be a positive whole number, got {workers!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be a positive whole number, got {chunk_size!r}")
    config = _config(ruleset, profile, backend, parameters, as_of, timestamp, decision_log, include_patient_id)
    if isinstance(decision_log, DecisionLog):
        return _Batch(config, workers, chunk_size, decision_log, False)
    if decision_log is not None:
        log = DecisionLog(decision_log, include_patient_id=include_patient_id)
        return _Batch(config, workers, chunk_size, log, True)
    return _Batch(config, workers, chunk_size, None, False)


def _evaluate(records: Iterable[Record], batch: _Batch) -> Iterator[BatchResult]:
    results = _evaluate_records(records, batch.config, batch.workers, batch.chunk_size)
    return results if batch.log is None else _logged(results, batch.log, batch.owned, _decision_of)


def _evaluate_as_lines(records: Iterable[Record], batch: _Batch) -> Iterator[Lines]:
    """What :func:`_evaluate` yields, a chunk of records at a time, as the JSON Lines text ``ipm-cds batch``
    writes (:class:`Lines`): the same bytes, with less work in the workers and in this process."""
    lines = _evaluate_lines(records, batch.config, batch.workers, batch.chunk_size)
    return lines if batch.log is None else _logged(lines, batch.log, batch.owned, _decisions_of)


def _decision_of(result: BatchResult) -> Iterable[Mapping[str, Any]]:
    return () if result.decision is None else (result.decision,)


def _decisions_of(lines: Lines) -> Iterable[Mapping[str, Any]]:
    return lines.decisions


def _logged(
    results: Iterator[_Out], log: DecisionLog, owned: bool, decisions: Callable[[_Out], Iterable[Mapping[str, Any]]]
) -> Iterator[_Out]:
    try:
        for result in results:
            for decision in decisions(result):
                log.write(dict(decision))
            yield result
    finally:
        _close(results)  # abandoned: the workers stop before the log is closed
        if owned:
            log.close()


def _close(results: Iterator[Any]) -> None:
    close = getattr(results, "close", None)
    if close is not None:
        close()
