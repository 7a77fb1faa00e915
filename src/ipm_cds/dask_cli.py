"""``ipm-cds batch --dask``: the Dask path of the batch command (:mod:`ipm_cds.dask` does the work).

:func:`extend_batch` adds ``--dask``, ``--format``, ``--partition-lines`` and more input files to
``ipm-cds batch`` (:mod:`ipm_cds.serving.batch_cli`); with ``--dask`` the command runs
:func:`ipm_cds.dask.run_files` on a local cluster or a running scheduler, stopped by SIGINT and SIGTERM as
the command is without it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .dask import DEFAULT_PARTITION_LINES, _expand, _format, connect, run_files
from .errors import ConfigurationError
from .serving.batch_cli import _refuse_overwriting_the_input, _StopHandler, engine_arguments, run_until_stopped
from .summarize import is_parquet


def extend_batch(
    parser: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """Add ``--dask``, ``--format`` and ``--partition-lines`` (and more input files) to ``ipm-cds batch``;
    return its handler, which runs the Dask path when ``--dask`` is given and ``handler`` otherwise."""
    parser.add_argument(
        "more_inputs", nargs="*", metavar="INPUT", help="more JSON Lines files or globs (with --dask)", type=str
    )
    parser.add_argument(
        "--dask",
        default=None,
        metavar="local|tcp://HOST:PORT",
        help="evaluate on Dask: 'local' starts a local cluster of --workers processes; else a scheduler's address",
    )
    parser.add_argument(
        "--format",
        choices=["jsonl", "parquet"],
        default=None,
        help="output format with --dask (default: parquet for an --out ending in .parquet, else jsonl)",
    )
    parser.add_argument(
        "--partition-lines",
        type=int,
        default=DEFAULT_PARTITION_LINES,
        metavar="N",
        help=f"with --dask: input lines per partition (default {DEFAULT_PARTITION_LINES})",
    )

    def run(args: argparse.Namespace) -> int:
        if args.dask is None:
            if args.more_inputs:
                raise ConfigurationError("several input files need --dask", hint="add --dask local")
            if args.format == "parquet" or is_parquet(args.out):
                raise ConfigurationError("Parquet output is written by the Dask path", hint="add --dask local")
            return handler(args)
        return _run_cli(args)

    return run


def _run_cli(args: argparse.Namespace) -> int:
    if args.partition_lines < 1:
        raise ConfigurationError(f"--partition-lines must be a positive whole number, got {args.partition_lines}")
    inputs = [str(args.input), *args.more_inputs]
    _format(args.out, args.format)  # a bad input or output fails before a cluster is started
    for path in _expand(inputs):
        _refuse_overwriting_the_input(argparse.Namespace(input=path, out=args.out, decision_log=args.decision_log))
    done = [0, 0]

    def progress(records: int, errors: int) -> None:
        done[:] = [records, errors]

    def run(stopper: _StopHandler) -> None:
        # SIGINT and SIGTERM stop the run as they stop ipm-cds batch: after the partition being written, the
        # cluster closed (a local one: its workers ended), the output whole, one line on stderr, 128 + signal
        with connect(args.dask, args.workers) as client:
            run_files(
                inputs,
                args.out,
                client,
                fmt=args.format,
                partition_lines=args.partition_lines,
                **engine_arguments(args),
                decision_log=args.decision_log,
                include_patient_id=args.log_patient_id,
                on_progress=progress,
                _stopper=stopper,
            )

    return run_until_stopped(run, lambda: (done[0], done[1]))
