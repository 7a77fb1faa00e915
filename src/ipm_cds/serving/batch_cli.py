"""Evaluate many patients (JSON Lines in, JSON Lines out), in several processes, in input order.

The command ``ipm-cds batch`` over :func:`ipm_cds.serving.batch.evaluate_many`: it reads JSON Lines
records (:class:`_Reader`, also what :mod:`ipm_cds.dask` reads), writes one line per result, draws the
progress and handles the stop signals.

``ipm-cds batch`` refuses an ``--out`` or ``--decision-log`` that is its input file, by whatever path or
redirection, before opening anything (exit code 2); SIGTERM and SIGINT stop it with one line on stderr,
the workers and the forkserver ended, the output holding the results of the first records (exit code
128 + the signal's number). A UTF-8 byte-order mark at the start of the input is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import IO, Any, TypedDict

from ..argtypes import add_backend_option, date_arg, parameter_arg
from ..engine.facade import BackendChoice
from ..errors import ConfigurationError, InputFileError
from ..jsonsrc import UTF8_BOM, strip_bom
from ..ruleset.loader import Ruleset
from .batch import (
    DEFAULT_CHUNK_SIZE,
    MAX_RECORD_BYTES,
    Lines,
    Record,
    _close,
    _evaluate_as_lines,
    _Oversize,
    _prepare,
)


class EngineArguments(TypedDict):
    """What the batch command's engines are built from, as :func:`~ipm_cds.serving.batch.evaluate_many` and
    :func:`ipm_cds.dask.run_files` take it (keyword arguments)."""

    ruleset: Ruleset | str | os.PathLike[str] | None
    profile: str | None
    as_of: date | None
    backend: BackendChoice
    parameters: Mapping[str, int | float] | None


# A large output is kept out of the page cache as it is written: of a regular file, at most about the last
# KEEP_CACHED bytes stay cached. A million assessments are 25.6 GB; left cached, they fill the memory of a 24 GB
# machine, and the kernel then reclaims page cache while the batch writes (44 s more of the driving process's
# kernel time in a million's run: docs/population.md) and evicts whatever else the machine had cached.
KEEP_CACHED = 1 << 30
DROP_EVERY = 256 << 20  # how often (bytes written) the ranges behind are released


class _CacheLimit:
    """Keeps a large output file from filling the page cache (Linux ``posix_fadvise``). Every ``DROP_EVERY``
    bytes: ``POSIX_FADV_DONTNEED`` over the range written since the last time, whose pages are all dirty, which
    only starts their writeback; and over the range older than the last ``KEEP_CACHED`` bytes, whose pages it
    drops (those still being written back stay: 5.1 GB of a million's 25.6 GB at its end). What is written is
    unchanged. An output under ``DROP_EVERY`` bytes is never touched, nor a pipe, a terminal or standard output,
    nor anything where ``posix_fadvise`` does not exist."""

    def __init__(self, out: IO[bytes]) -> None:
        self.fd: int | None = None
        self.written = self.kicked = self.released = 0
        if hasattr(os, "posix_fadvise") and out is not sys.stdout.buffer:
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                fd = out.fileno()
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    self.fd = fd

    def wrote(self, size: int) -> None:
        self.written += size
        if self.fd is None or self.written - self.kicked < DROP_EVERY:
            return
        try:
            os.posix_fadvise(self.fd, self.kicked, self.written - self.kicked, os.POSIX_FADV_DONTNEED)
            self.kicked = self.written
            end = self.written - KEEP_CACHED
            if end > self.released:
                os.posix_fadvise(self.fd, self.released, end - self.released, os.POSIX_FADV_DONTNEED)
                self.released = end
        except OSError:  # advice only: where it is refused, the pages stay cached and nothing else changes
            self.fd = None


def engine_arguments(args: argparse.Namespace) -> EngineArguments:
    """The parsed ``--ruleset``, ``--profile``, ``--as-of``, ``--backend`` and ``--param`` of ``ipm-cds batch``."""
    return EngineArguments(
        ruleset=args.ruleset, profile=args.profile, as_of=args.as_of, backend=args.backend, parameters=dict(args.param)
    )


class _Reader:
    """Reads JSON Lines records as bytes, with their line numbers, and counts the bytes read."""

    def __init__(self, stream: IO[bytes], first_line: int = 0) -> None:
        self.stream = stream
        self.bytes_read = 0
        self.first_line = first_line  # lines before the stream's first (a part of a file, as ipm_cds.dask reads)

    def __iter__(self) -> Iterator[Record]:
        index = 0
        number = self.first_line
        while True:
            # the first line may start with a UTF-8 byte-order mark (some editors write one): read it too
            line = self.stream.readline(MAX_RECORD_BYTES + 1 + (len(UTF8_BOM) if number == 0 else 0))
            if not line:
                return
            number += 1
            self.bytes_read += len(line)
            if number == 1:
                line = strip_bom(line)  # not part of the record, accepted as the service accepts it
            document: Any = line
            if len(line) - line.endswith(b"\n") > MAX_RECORD_BYTES:
                while line and not line.endswith(b"\n"):  # skip the rest of the record, a chunk at a time
                    line = self.stream.readline(MAX_RECORD_BYTES)
                    self.bytes_read += len(line)
                document = _Oversize()
            elif not line.strip():
                continue  # blank lines separate nothing in JSON Lines; they are skipped, not errors
            yield index, number, document
            index += 1


class _Progress:
    """Progress on stderr, drawn by tqdm, only when stderr is a terminal: the share of the input read (when
    its size is known), the rate, and the records and errors so far."""

    def __init__(self, total_bytes: int | None, stream: IO[str] | None = None, min_interval: float = 0.2) -> None:
        from tqdm import tqdm

        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.done = self.errors = 0
        self.bar = tqdm(
            total=total_bytes or None,
            file=self.stream,
            disable=not self.enabled,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            mininterval=min_interval,
            dynamic_ncols=True,
        )

    def update(self, lines: Lines, bytes_read: int) -> None:
        self.done += lines.records
        self.errors += lines.errors
        if self.enabled:
            self.bar.set_postfix_str(f"{self.done:,} records, {self.errors:,} errors", refresh=False)
            self.bar.update(bytes_read - self.bar.n)

    def close(self, bytes_read: int) -> None:
        if self.enabled:
            self.bar.update(bytes_read - self.bar.n)
        self.bar.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path`` (symlinks followed), or None where there is none yet."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _stream_identity(stream: IO[Any]) -> tuple[int, int] | None:
    """The (device, inode) of a regular file behind a standard stream (``< file``, ``>> file``), or None."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _refuse_overwriting_the_input(args: argparse.Namespace) -> None:
    """Refuse an output that is the input file (by any path: symlink, hard link, relative or absolute, or a
    redirection of the standard streams), or two outputs that are one file, before anything is opened."""
    stdin = str(args.input) == "-"
    source = _stream_identity(sys.stdin) if stdin else _identity(args.input)
    source_name = "the standard input's file" if stdin else f"the input file {args.input}"
    outputs: list[tuple[str, tuple[int, int] | None, Path | None]] = []
    if str(args.out) == "-":
        outputs.append(("the standard output", _stream_identity(sys.stdout), None))
    else:
        outputs.append(("--out", _identity(args.out), args.out))
    if args.decision_log is not None:
        outputs.append(("--decision-log", _identity(args.decision_log), args.decision_log))
    for option, identity, path in outputs:
        if source is not None and identity == source:
            shown = f" ({path})" if path is not None else ""
            raise ConfigurationError(
                f"{option}{shown} is {source_name}: writing it would destroy the input",
                hint=f"give {option} another file" if path is not None else "redirect the output to another file",
            )
    out, log = args.out, args.decision_log
    if str(out) != "-" and log is not None:
        same = _identity(out)
        if (same is not None and same == _identity(log)) or os.path.realpath(out) == os.path.realpath(log):
            raise ConfigurationError(
                f"--out and --decision-log name the same file ({out})", hint="give each its own file"
            )


class _Stopped(BaseException):
    """SIGINT or SIGTERM during ``ipm-cds batch``: raised in the main thread, so that every ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StopHandler:
    """The handler of SIGINT and SIGTERM during ``ipm-cds batch``: raises :class:`_Stopped`, except while a
    result is being written and counted; then it is raised once that record is done, so that the count the
    stop reports is exactly the number of lines written."""

    def __init__(self) -> None:
        self.writing = False
        self.pending: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        for other in _STOP_SIGNALS:  # one stop: the clean-up that follows is not interrupted in turn
            signal.signal(other, signal.SIG_IGN)
        if self.writing:
            self.pending = signum
            return
        raise _Stopped(signum)

    @contextlib.contextmanager
    def record(self) -> Iterator[None]:
        self.writing = True
        try:
            yield
        finally:
            self.writing = False
        if self.pending is not None:
            raise _Stopped(self.pending)


def _stop_forkserver() -> None:
    """End the forkserver process now (it would end once this process has), so that none outlives a stop."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        with contextlib.suppress(OSError):  # already gone (and reaped): nothing to stop
            stop()


def run_until_stopped(
    work: Callable[[_StopHandler], None],
    counts: Callable[[], tuple[int, int]],
    on_stop: Callable[[], None] = lambda: None,
) -> int:
    """Run ``ipm-cds batch``'s ``work`` with SIGINT and SIGTERM handled (in the main thread) by the
    :class:`_StopHandler` it is given; report the records and errors of ``counts()`` on stderr. Returns the
    exit code: 0, or 128 + the signal's number after ``on_stop()``."""
    handling = threading.current_thread() is threading.main_thread()
    stopper = _StopHandler()
    previous = {s: signal.signal(s, stopper) for s in _STOP_SIGNALS} if handling else {}
    try:
        work(stopper)
    except _Stopped as stopped:
        on_stop()
        done, errors = counts()
        name = signal.Signals(stopped.signum).name
        print(
            f"ipm-cds batch: stopped by {name} after {done:,} records ({errors:,} with errors); "
            "the output holds their results, in input order",
            file=sys.stderr,
        )
        return 128 + stopped.signum
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
    done, errors = counts()
    print(f"ipm-cds batch: {done:,} records, {errors:,} with errors", file=sys.stderr)
    return 0


def _run_cli(args: argparse.Namespace) -> int:
    _refuse_overwriting_the_input(args)
    total: int | None = None
    if str(args.input) != "-":
        if not args.input.is_file():
            raise InputFileError(str(args.input), "no such file", hint="give a JSON Lines file, or - for stdin")
        total = args.input.stat().st_size
    progress = _Progress(total)
    return run_until_stopped(
        lambda stopper: _run_batch(args, progress, stopper),
        lambda: (progress.done, progress.errors),
        on_stop=_stop_forkserver if args.workers > 1 else lambda: None,
    )


def _run_batch(args: argparse.Namespace, progress: _Progress, stopper: _StopHandler) -> None:
    source: IO[bytes] = sys.stdin.buffer if str(args.input) == "-" else args.input.open("rb")
    reader = _Reader(source)
    try:
        batch = _prepare(
            workers=args.workers,
            **engine_arguments(args),
            chunk_size=args.chunk_size,
            timestamp=True,
            decision_log=args.decision_log,
            include_patient_id=args.log_patient_id,
        )
        results = _evaluate_as_lines(reader, batch)
    except BaseException:
        if source is not sys.stdin.buffer:
            source.close()
        raise
    try:
        out: IO[bytes] = sys.stdout.buffer if str(args.out) == "-" else args.out.open("wb")
    except BaseException:
        _close(results)
        if source is not sys.stdin.buffer:
            source.close()
        raise
    cached = _CacheLimit(out)
    try:
        for lines in results:
            with stopper.record():  # a stop waits for these lines to be written and counted
                out.write(lines.text)
                cached.wrote(len(lines.text))
                progress.update(lines, reader.bytes_read)
    finally:
        _close(results)  # stopped or failed: the workers are stopped before anything else is closed
        progress.close(reader.bytes_read)
        if source is not sys.stdin.buffer:
            source.close()
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()


def register(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``ipm-cds batch`` arguments to ``parser``; return the command's handler."""
    parser.description = (
        "Assess every patient of a JSON Lines file (one patient document per line). Each output line is "
        '{"line": N, "assessment": {...}} or {"line": N, "error": {...}}, in input order; a record that '
        "fails does not stop the batch."
    )
    parser.add_argument("input", type=Path, help="JSON Lines file of patient documents ('-': standard input)")
    parser.add_argument("--out", type=Path, default=Path("-"), help="output JSON Lines file (default: stdout)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--ruleset", type=Path, default=None, help="ruleset folder (default: bundled ipm-core)")
    parser.add_argument("--profile", default=None, help="profile, e.g. cms_lcd or society_consensus")
    parser.add_argument(
        "--as-of", type=date_arg, default=None, help="evaluation date YYYY-MM-DD for every record (default: today)"
    )
    add_backend_option(parser)
    parser.add_argument(
        "--param", type=parameter_arg, action="append", default=[], metavar="NAME=VALUE", help="override a parameter"
    )
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help=argparse.SUPPRESS)
    parser.add_argument(
        "--decision-log", type=Path, default=None, metavar="FILE", help="append one decision entry per assessment"
    )
    parser.add_argument(
        "--log-patient-id", action="store_true", help="write patient ids in the decision log (off by default)"
    )
    return _run_cli
