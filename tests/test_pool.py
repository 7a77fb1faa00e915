"""The worker processes of batch evaluation (ipm_cds.serving.pool): input order, results through the shared
area and through the pipes, released views, a worker's exception, a killed worker, abandonment, and no deadlock
with large tasks and large results."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ipm_cds.errors import EvaluationError
from ipm_cds.serving import batch, pool

from .conftest import AS_OF

ROOT = Path(__file__).resolve().parents[1]


def _nothing() -> None:
    pass


def _payload(index: int, size: int) -> bytes:
    return (f"<{index}>".encode() * (size // 3 + 1))[:size]


def _echo(chunk: tuple[Any, ...], slot: memoryview | None) -> tuple[int, tuple[int, bytes | None]]:
    """A chunk (index, size, seconds, ...): after ``seconds``, ``size`` bytes, in the slot where they fit."""
    index, size, seconds = chunk[:3]
    if seconds:
        time.sleep(seconds)
    if index < 0:
        raise ValueError(f"chunk {index} refused")
    payload = _payload(index, size)
    if slot is not None and size <= len(slot):
        slot[:size] = payload
        return size, (index, None)
    return -1, (index, payload)


def _copy(sent: tuple[int, bytes | None], data: memoryview | None) -> tuple[int, bytes, bool]:
    index, payload = sent
    return (index, payload, False) if data is None else (index, bytes(data), True)


def _keep(sent: tuple[int, bytes | None], data: memoryview | None) -> tuple[int, memoryview | bytes | None]:
    return sent[0], data if data is not None else sent[1]


def _work(receive: Any = _copy) -> pool.Work[Any, Any, Any]:
    return pool.Work(initializer=_nothing, initargs=(), run=_echo, receive=receive)


def _workers_alive() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "ipm-cds-batch-worker"]


def test_results_come_back_in_input_order_through_the_slots_and_the_pipes() -> None:
    sizes = [(i * 7919) % 5000 for i in range(60)]  # some fit a slot of 2,500 bytes, some do not
    chunks = [(i, size, 0.01 if i % 9 == 0 else 0.0) for i, size in enumerate(sizes)]
    got = list(pool.ordered_results(chunks, _work(), 3, batch._context(), slot_size=2500))
    assert [(i, payload) for i, payload, _ in got] == [(i, _payload(i, s)) for i, s in enumerate(sizes)]
    assert {via_slot for _, payload, via_slot in got if len(payload) <= 2500} == {True}
    assert {via_slot for _, payload, via_slot in got if len(payload) > 2500} == {False}
    assert _workers_alive() == []


def test_without_shared_memory_every_result_comes_through_the_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool._SharedArea, "create", classmethod(lambda cls, slots, slot_size: None))
    chunks = [(i, 100 * i, 0.0) for i in range(20)]
    got = list(pool.ordered_results(chunks, _work(), 2, batch._context()))
    assert got == [(i, _payload(i, 100 * i), False) for i in range(20)]


def test_a_result_s_view_of_the_shared_area_is_released_when_the_next_is_asked_for() -> None:
    results = pool.ordered_results([(i, 50, 0.0) for i in range(4)], _work(_keep), 2, batch._context())
    index, first = next(results)
    assert (index, bytes(first)) == (0, _payload(0, 50))  # type: ignore[arg-type]
    next(results)
    with pytest.raises(ValueError, match="released"):
        bytes(first)  # type: ignore[arg-type]
    results.close()


def test_an_exception_raised_by_a_chunk_is_raised_here_after_the_results_before_it() -> None:
    chunks = [(0, 10, 0.0), (1, 10, 0.0), (-2, 10, 0.0), (3, 10, 0.0)]
    results = pool.ordered_results(chunks, _work(), 2, batch._context())
    assert [next(results)[0], next(results)[0]] == [0, 1]
    with pytest.raises(ValueError, match="chunk -2 refused") as raised:
        next(results)
    (note,) = raised.value.__notes__
    assert note.startswith("raised in a batch worker process:") and 'raise ValueError(f"chunk {index} refused")' in note
    assert _workers_alive() == []  # the pool stopped its workers on the way out


def test_a_killed_worker_is_a_clear_error_never_missing_records() -> None:
    chunks = ((i, 1000, 0.02) for i in range(10_000))
    results = pool.ordered_results(chunks, _work(), 2, batch._context())
    seen = [next(results)[0] for _ in range(5)]
    victim = _workers_alive()[0]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(EvaluationError, match=r"ended unexpectedly \(pid \d+, killed by signal 9\)"):
        for result in results:
            seen.append(result[0])
    assert seen == list(range(len(seen)))  # every result given is the next one: none skipped
    assert _workers_alive() == []


def _unpicklable(chunk: Any, slot: memoryview | None) -> tuple[int, Any]:
    return -1, threading.Lock()


def test_a_result_that_cannot_be_sent_back_is_a_clear_error() -> None:
    work = pool.Work(initializer=_nothing, initargs=(), run=_unpicklable, receive=_copy)
    with pytest.raises(EvaluationError, match="could not send its result back: TypeError"):
        list(pool.ordered_results([1, 2, 3], work, 2, batch._context()))
    assert _workers_alive() == []


def _fail_to_start() -> None:
    raise RuntimeError("no engine today")


def test_a_worker_that_cannot_start_is_a_clear_error() -> None:
    work = pool.Work(initializer=_fail_to_start, initargs=(), run=_echo, receive=_copy)
    with pytest.raises(EvaluationError, match=r"ended unexpectedly \(pid \d+, exit code 1\)"):
        list(pool.ordered_results([(i, 10, 0.0) for i in range(5)], work, 2, batch._context()))
    assert _workers_alive() == []


def test_abandoned_results_stop_the_workers_at_once() -> None:
    results = pool.ordered_results(((i, 10, 0.5) for i in range(1000)), _work(), 2, batch._context())
    next(results)
    assert len(_workers_alive()) == 2
    started = time.monotonic()
    results.close()
    assert _workers_alive() == []
    assert time.monotonic() - started < 30  # terminated, not waited for: 1,000 chunks would take 4 minutes


def _large_tasks_and_results() -> None:
    """Tasks of 300 KB and results of 1 MB, none fitting a slot: pipes full both ways (run in a subprocess)."""
    chunks = [(i, 1 << 20, 0.0, b"x" * 300_000) for i in range(40)]
    got = [i for i, _, _ in pool.ordered_results(chunks, _work(), 2, batch._context(), slot_size=1000)]
    print(json.dumps(got == list(range(40))))


def test_large_tasks_and_large_results_do_not_deadlock() -> None:
    code = "from tests.test_pool import _large_tasks_and_results as run; run()"
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout.strip()) == (0, "true"), done.stderr


def test_batch_lines_are_the_same_through_the_slots_and_the_pipes(cohort_documents: list[str]) -> None:
    config = batch._config(None, None, "python", None, AS_OF, False, None, False)
    records = [(i, i + 1, document) for i, document in enumerate(cohort_documents)]
    expected = batch._Evaluator(config).lines(records).text
    work = pool.Work(batch._init_worker, (config,), batch._run_chunk_lines, batch._received_lines)
    # an assessment is about 25 KB: a chunk of one mostly fits a slot of 40,000 bytes, a chunk of three does not
    kinds = set()
    for slot_size, chunk_size in ((40_000, 1), (40_000, 3), (1 << 20, 5)):
        texts = []
        for lines in pool.ordered_results(
            batch._chunks(records, chunk_size), work, 2, batch._context(), slot_size=slot_size
        ):
            texts.append(bytes(lines.text))
            through_the_slot = isinstance(lines.text, memoryview)
            assert through_the_slot == (len(lines.text) <= slot_size)
            kinds.add(through_the_slot)
        assert b"".join(texts) == expected
    assert kinds == {True, False}


@pytest.fixture(scope="module")
def cohort_documents() -> list[str]:
    from .test_batch import generated

    return [json.dumps(d) for d in generated(24)]
