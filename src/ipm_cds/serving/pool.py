"""Worker processes for batch evaluation: each runs one function over chunk after chunk of records, and the
results come back in input order, however the work was shared out.

:func:`ordered_results` is what :func:`ipm_cds.serving.batch.evaluate_many` and ``ipm-cds batch`` run on. It
holds at most ``workers * IN_FLIGHT_CHUNKS`` chunks at once (read ahead of the output, or waiting in it), so
memory stays flat whatever the input's length.

Why not :class:`concurrent.futures.ProcessPoolExecutor` (what this replaced): a million assessments are 25.6 GB
of JSON Lines, and the executor sends every result back pickled through one pipe, read by a thread of the
driving process that hands it to the main thread by a condition variable: 5.5 % of the run's CPU, on two cores,
was the driving process's. With these workers it is half that (6.7 → 3.6 s per 100,000 records; the workers'
own CPU did not change measurably: docs/population.md). Here:

- Each worker has its own pipes for tasks and results; the driving process has no thread of its own. It sends
  a chunk to the worker with the fewest in flight, and reads each result from the worker that has it, in order.
- Where the platform has ``os.memfd_create`` (Linux), a results area is shared with the workers: one *slot*
  per chunk in flight, owned by that chunk from when it is sent until its result has been consumed. A worker
  writes its result's bytes into the chunk's slot and sends back only their size; the driving process writes
  them out from the slot. A result larger than a slot, or any result where there is no shared area, comes back
  through the pipe whole: the same result, more copies.
- A worker reads its tasks in a thread of its own, so that the driving process's sends never wait for a worker
  that is itself waiting to send a large result (the one deadlock two pipes could have).

A worker that ends without its result (killed, out of memory, a crash in the initializer) is an
:class:`~ipm_cds.errors.EvaluationError` when its result is next needed: no result after the last one given
is certain, none is lost silently. An exception raised by the chunk function is raised again here. Abandoned
(an exception, an interrupt, ``close()``), the workers are terminated at once.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, Generic, TypeVar

from ..errors import EvaluationError

IN_FLIGHT_CHUNKS = 4  # per worker: enough to keep every worker busy, bounded so that memory stays constant
SLOT_SIZE = 2 << 20
"""Bytes of the shared results area per chunk in flight. A chunk of 32 assessments is about 820 KB of JSON."""

_Chunk = TypeVar("_Chunk")
_Sent = TypeVar("_Sent")
_Out = TypeVar("_Out")


@dataclass(frozen=True)
class Work(Generic[_Chunk, _Sent, _Out]):
    """What the workers run. ``initializer(*initargs)`` once in each worker (it builds the engine); then, in a
    worker, ``run(chunk, slot)`` for each chunk: ``slot`` is the chunk's writable share of the results area
    (``None`` where there is none). It returns ``(used, sent)``: ``sent`` is pickled back, and ``used`` is how
    many bytes it wrote at the start of the slot (-1: it did not use the slot). In the driving process,
    ``receive(sent, data)`` makes the result given out, ``data`` being a read-only view of those bytes (or
    ``None``). That view is released when the next result is asked for: a result must not be kept longer than
    that if it holds it (reading a released view raises, it never shows another chunk's bytes)."""

    initializer: Callable[..., None]
    initargs: tuple[Any, ...]
    run: Callable[[_Chunk, memoryview | None], tuple[int, _Sent]]
    receive: Callable[[_Sent, memoryview | None], _Out]


def ordered_results(
    chunks: Iterable[_Chunk],
    work: Work[_Chunk, _Sent, _Out],
    workers: int,
    context: BaseContext,
    *,
    slot_size: int = SLOT_SIZE,
) -> Iterator[_Out]:
    """``work.run`` of each of ``chunks`` in ``workers`` processes started from ``context``, in input order."""
    slots = workers * IN_FLIGHT_CHUNKS
    area = _SharedArea.create(slots, slot_size)
    try:
        pool = _Workers(work, workers, context, area)
    except BaseException:
        if area is not None:
            area.close()
        raise
    free = list(range(slots)) if area is not None else []
    pending: deque[tuple[int, int]] = deque()  # (worker, slot) of each chunk sent, in input order
    in_flight = [0] * workers
    finished = False

    def give() -> Iterator[_Out]:
        worker, slot = pending.popleft()
        used, sent = pool.receive(worker)
        in_flight[worker] -= 1
        data = None
        if used >= 0:
            if area is None or slot < 0:
                raise EvaluationError("a batch worker wrote its result into a slot it was not given (a bug)")
            data = area.data(slot, used)
        try:
            yield work.receive(sent, data)
        finally:
            if data is not None:
                data.release()
            if slot >= 0:
                free.append(slot)

    try:
        for chunk in chunks:
            worker = min(range(workers), key=in_flight.__getitem__)
            slot = free.pop() if free else -1
            pending.append((worker, slot))
            in_flight[worker] += 1
            pool.send(worker, slot, chunk)
            while len(pending) >= slots:
                yield from give()
        while pending:
            yield from give()
        finished = True
    finally:
        pool.close(terminate=not finished)
        if area is not None:
            area.close()


class _SharedArea:
    """The results area: anonymous shared memory (``memfd_create``) that the workers map too. Its descriptor
    travels to each worker inside a :class:`~multiprocessing.connection.Connection` (whose pickling passes its
    file descriptor to the child process, through the forkserver too): there is no file name to leak."""

    def __init__(self, fd: int, slots: int, slot_size: int) -> None:
        self.handle = Connection(fd)  # owns the descriptor: closing it closes fd
        self.slot_size = slot_size
        self.memory = mmap.mmap(fd, slots * slot_size)
        self.view = memoryview(self.memory)

    @classmethod
    def create(cls, slots: int, slot_size: int) -> _SharedArea | None:
        """The area, or None where shared memory cannot be had (no ``memfd_create``, no memory for it): the
        results then come back through the pipes."""
        if not hasattr(os, "memfd_create"):
            return None
        try:
            fd = os.memfd_create("ipm-cds-batch-results", os.MFD_CLOEXEC)
        except OSError:
            return None
        try:
            # reserved now: a full memory is refused here, rather than met later as a SIGBUS in a worker
            os.posix_fallocate(fd, 0, slots * slot_size)
            return cls(fd, slots, slot_size)
        except (OSError, ValueError):
            os.close(fd)
            return None

    def slot(self, index: int) -> memoryview:
        """Slot ``index``, writable (in a worker)."""
        return self.view[index * self.slot_size : (index + 1) * self.slot_size]

    def data(self, index: int, used: int) -> memoryview:
        """The first ``used`` bytes of slot ``index``, read-only (in the driving process)."""
        if not 0 <= used <= self.slot_size:
            raise EvaluationError(f"a batch worker reported {used} bytes in a slot of {self.slot_size} (a bug)")
        start = index * self.slot_size
        return self.view[start : start + used].toreadonly()

    def close(self) -> None:
        self.view.release()
        self.memory.close()
        self.handle.close()


def _map_area(handle: Connection, slot_size: int) -> _SharedArea:
    """In a worker: the results area the driving process created, mapped from the descriptor it sent."""
    fd = handle.fileno()
    return _SharedArea(os.dup(fd), os.fstat(fd).st_size // slot_size, slot_size)


class _Workers:
    """The worker processes and their pipes (driving-process side)."""

    def __init__(self, work: Work[Any, Any, Any], workers: int, context: BaseContext, area: _SharedArea | None) -> None:
        self.processes: list[Any] = []
        self.tasks: list[Connection] = []
        self.results: list[Connection] = []
        try:
            for _ in range(workers):
                task_reader, task_writer = context.Pipe(duplex=False)
                result_reader, result_writer = context.Pipe(duplex=False)
                process = context.Process(  # type: ignore[attr-defined]
                    target=_serve,
                    args=(work, task_reader, result_writer, area and area.handle, area and area.slot_size),
                    name="ipm-cds-batch-worker",
                    daemon=True,
                )
                self.processes.append(process)
                self.tasks.append(task_writer)
                self.results.append(result_reader)
                process.start()
                # the worker's ends are its own now: a worker that ends is an end of file here, not a wait
                task_reader.close()
                result_writer.close()
        except BaseException:
            self.close(terminate=True)
            raise

    def send(self, worker: int, slot: int, chunk: object) -> None:
        try:
            self.tasks[worker].send((slot, chunk))
        except OSError:  # BrokenPipeError: the worker has gone
            raise self._died(worker) from None

    def receive(self, worker: int) -> Any:
        try:
            ok, value = self.results[worker].recv()
        except (EOFError, OSError):
            raise self._died(worker) from None
        if not ok:
            raise value
        return value

    def _died(self, worker: int) -> EvaluationError:
        process = self.processes[worker]
        process.join(1)
        code = process.exitcode
        how = "still running" if code is None else f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return EvaluationError(
            f"a batch worker process ended unexpectedly (pid {process.pid}, {how}); "
            "no result after the last one written is certain",
            hint="run the batch again with --workers 1 to find the record",
        )

    def close(self, *, terminate: bool) -> None:
        """Stop the workers: at once (``terminate``), or once they have read every task (end of file)."""
        for connection in self.tasks:
            connection.close()
        if terminate:
            for process in self.processes:
                if process.is_alive():
                    process.terminate()
        for process in self.processes:
            if process.pid is None:
                continue
            process.join(None if not terminate else 5)
            if process.is_alive():  # pragma: no cover - a worker that outlives SIGTERM
                process.kill()
                process.join()
        for connection in self.results:
            connection.close()


# -- in a worker process ------------------------------------------------------------------------------


def _serve(
    work: Work[Any, Any, Any],
    tasks: Connection,
    results: Connection,
    area_handle: Connection | None,
    slot_size: int | None,
) -> None:
    work.initializer(*work.initargs)
    area = None
    if area_handle is not None and slot_size is not None:
        area = _map_area(area_handle, slot_size)
        area_handle.close()
    inbox: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
    threading.Thread(target=_read_tasks, args=(tasks, inbox), name="tasks", daemon=True).start()
    while (task := inbox.get()) is not None:
        slot, chunk = task
        view = area.slot(slot) if area is not None and slot >= 0 else None
        try:
            reply: tuple[bool, Any] = (True, work.run(chunk, view))  # (used, sent)
        except Exception as exc:  # raised again in the driving process, with where it was raised
            exc.add_note("raised in a batch worker process:\n" + "".join(traceback.format_tb(exc.__traceback__)))
            reply = (False, exc)
        finally:
            if view is not None:
                view.release()
        try:
            results.send(reply)
        except OSError:  # the driving process has gone (or stopped reading): there is no one to answer
            return
        except Exception as exc:  # the result or the exception does not pickle: say so rather than vanish
            results.send((False, EvaluationError(f"a batch worker could not send its result back: {exc!r}")))


def _read_tasks(tasks: Connection, inbox: queue.SimpleQueue[tuple[int, Any] | None]) -> None:
    """Move each task from the pipe to ``inbox`` as it arrives; ``None`` once the driving process is done."""
    try:
        while True:
            inbox.put(tasks.recv())
    except (EOFError, OSError):
        inbox.put(None)
