"""Batch evaluation (ipm_cds.serving.batch, ``ipm-cds batch``) and the decision log.

The multi-process comparison runs 2,000 generated patients in CI; ``IPM_CDS_STRESS=full`` runs 100,000.
"""

from __future__ import annotations

import gc
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipm_cds
from ipm_cds.cli import main
from ipm_cds.decision_log import DecisionLog, input_digest
from ipm_cds.errors import ConfigurationError
from ipm_cds.model.patient import PatientCase
from ipm_cds.serving import batch, batch_cli, pool
from ipm_cds.testing.strategies import patients

from .conftest import AS_OF, RFA_PATIENT

FULL = os.environ.get("IPM_CDS_STRESS") == "full"


def generated(count: int) -> list[dict[str, Any]]:
    """``count`` generated patient documents (deterministic), as JSON-ready mappings."""
    out: list[dict[str, Any]] = []

    @settings(
        max_examples=count, database=None, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.one_of(patients(), patients(prior_procedures=True, anticoagulants=True), patients(red_flags=True)))
    def collect(patient: PatientCase) -> None:
        out.append(patient.model_dump(mode="json", exclude_none=True))

    collect()
    while len(out) < count:  # hypothesis stops early once it has seen enough: repeat, in order
        out.append(out[len(out) % max(1, len(out))])
    return out[:count]


@pytest.fixture(scope="module")
def cohort() -> list[dict[str, Any]]:
    return generated(120)


def sequential(engine: ipm_cds.Engine, documents: list[Any]) -> list[str]:
    out = []
    for d in documents:
        try:
            assessment = engine.evaluate(d, as_of=AS_OF, timestamp=False)
            out.append(assessment.to_json(indent=None, timestamp=False, sort_keys=False))
        except ipm_cds.IpmCdsError as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def outcomes(results: Iterator[batch.BatchResult]) -> list[str]:
    return [
        r.assessment_json if r.assessment_json is not None else f"{r.error['type']}: {r.error['message']}"  # type: ignore[index]
        for r in results
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_results_match_sequential_evaluation_in_input_order(
    ipm_engine: ipm_cds.Engine, cohort: list[dict[str, Any]], workers: int
) -> None:
    documents: list[Any] = [*cohort[:40], {"pain": "not a list"}, *cohort[40:], "{not json"]
    expected = sequential(ipm_engine, documents)
    results = list(batch.evaluate_many(documents, workers=workers, as_of=AS_OF, timestamp=False, chunk_size=7))
    assert [r.index for r in results] == list(range(len(documents)))
    assert outcomes(iter(results)) == expected
    assert [r.ok for r in results].count(False) == 2
    assert results[40].error is not None and results[40].error["type"] == "PatientDataError"
    assert results[0].assessment().to_json(indent=None, timestamp=False, sort_keys=False) == expected[0]


@pytest.mark.parametrize("label", [None, "clinic é/patients-1.jsonl"])
def test_lines_are_the_results_json_lines_byte_for_byte(cohort: list[dict[str, Any]], label: str | None) -> None:
    # What ipm-cds batch (and the Dask path) write: each result's to_json_line(), encoded, without a str between
    config = batch._config(None, None, "python", None, AS_OF, False, None, False)
    evaluator = batch._Evaluator(config)
    documents: list[Any] = [*map(json.dumps, cohort[:30]), '{"pain": "not a list"}', "{not json", batch._Oversize()]
    records = [(i, i + 3, d) for i, d in enumerate(documents)] + [(33, None, json.dumps(cohort[30]))]
    prefix = b"" if label is None else b'"file": ' + json.dumps(label, ensure_ascii=False).encode() + b", "
    lines = evaluator.lines(records, prefix)
    expected = [evaluator.evaluate(r).to_json_line() for r in records]
    if label is not None:
        expected = ['{"file": ' + json.dumps(label, ensure_ascii=False) + ", " + e[1:] for e in expected]
    assert lines.text == "".join(e + "\n" for e in expected).encode()
    assert (lines.records, lines.errors, lines.decisions) == (len(records), 3, ())
    assert [json.loads(t).get("line", "none") for t in lines.text.splitlines()] == [*range(3, 36), "none"]
    logged = batch._Evaluator(batch._config(None, None, "python", None, AS_OF, False, "unused.jsonl", False))
    decisions = logged.lines(records).decisions
    expected_codes = [r.assessment().codes() for r in map(evaluator.evaluate, records) if r.ok]
    assert [d["conclusions"] for d in decisions] == expected_codes


def test_python_backend_and_profile_are_passed_to_the_workers(
    ruleset: ipm_cds.Ruleset, cohort: list[dict[str, Any]]
) -> None:
    engine = ipm_cds.Engine(ruleset, profile="society_consensus", backend="python")
    results = batch.evaluate_many(
        cohort[:30],
        workers=2,
        ruleset=ruleset,
        profile="society_consensus",
        backend="python",
        as_of=AS_OF,
        timestamp=False,
    )
    assert outcomes(results) == sequential(engine, cohort[:30])


def test_one_worker_gives_each_record_s_line_as_soon_as_it_is_read(cohort: list[dict[str, Any]]) -> None:
    # ipm-cds batch --workers 1 reading a live stdin answers each record before the next arrives
    config = batch._config(None, None, "python", None, AS_OF, False, None, False)
    read: list[int] = []

    def records() -> Iterator[batch.Record]:
        for i, document in enumerate(cohort[:3]):
            read.append(i)
            yield i, i + 1, json.dumps(document)

    lines = batch._evaluate_lines(records(), config, 1, 32)
    first = next(lines)
    assert (first.records, read) == (1, [0]) and first.text.startswith(b'{"line": 1, "assessment": ')
    assert [one.records for one in lines] == [1, 1]


def _gc_settings(chunk: list[batch.Record], slot: memoryview | None) -> tuple[int, tuple[tuple[int, int, int], int]]:
    return -1, (gc.get_threshold(), gc.get_freeze_count())


def test_a_worker_process_freezes_the_engine_and_collects_young_objects_less_often() -> None:
    config = batch._config(None, None, "python", None, AS_OF, False, None, False)
    ((threshold, frozen),) = batch._pooled([(0, 1, "{}")], config, 1, 8, _gc_settings, batch._received)
    assert threshold[0] == batch.WORKER_GC_THRESHOLD and threshold[1:] == gc.get_threshold()[1:]
    assert frozen > 10_000  # the ruleset and the engine, built before the first record
    assert gc.get_threshold()[0] != batch.WORKER_GC_THRESHOLD  # this process's own settings are not touched


def test_bad_settings_fail_before_any_patient_is_read() -> None:
    def never() -> Iterator[Any]:  # pragma: no cover - must not be consumed
        raise AssertionError("read")
        yield

    for kwargs in ({"workers": 0}, {"profile": "no_such_profile"}, {"parameters": {"nope": 1}}, {"chunk_size": 0}):
        with pytest.raises(ConfigurationError):
            batch.evaluate_many(never(), **kwargs)  # type: ignore[arg-type]


def test_streaming_holds_a_bounded_number_of_records(cohort: list[dict[str, Any]]) -> None:
    """However long the input, only ``workers * IN_FLIGHT_CHUNKS`` chunks are read ahead of the output."""
    read = [0]

    def endless() -> Iterator[dict[str, Any]]:
        while True:
            read[0] += 1
            yield cohort[read[0] % len(cohort)]

    workers, chunk = 2, 5
    results = batch.evaluate_many(endless(), workers=workers, as_of=AS_OF, chunk_size=chunk)
    bound = (workers * pool.IN_FLIGHT_CHUNKS + 1) * chunk
    for n, result in enumerate(results, start=1):
        assert result.ok
        assert read[0] - n <= bound, f"{read[0]} read for {n} written"
        if n == 300:
            break


def write_jsonl(path: Path, documents: list[Any]) -> None:
    with path.open("wb") as f:
        for d in documents:
            f.write(d if isinstance(d, bytes) else json.dumps(d).encode() + b"\n")


def test_cli_batch_reports_errors_by_line_and_goes_on(
    tmp_path: Path, ipm_engine: ipm_cds.Engine, cohort: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    oversize = b'{"id": "' + b"x" * (batch.MAX_RECORD_BYTES + 10) + b'"}\n'
    records: list[Any] = [
        cohort[0],
        b"\n",  # a blank line: skipped, still counted
        b"{broken json\n",
        b'{"pain": [{"region": "lumbar", "character": "axial", "nrs": 11}]}\n',
        b'{"id": "caf\xe9"}\n',  # not UTF-8
        oversize,
        cohort[1],
    ]
    write_jsonl(source, records)
    out = tmp_path / "out.jsonl"
    code = main(["batch", str(source), "--out", str(out), "--workers", "2", "--as-of", "2025-06-02"])
    assert code == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [x["line"] for x in lines] == [1, 3, 4, 5, 6, 7]
    assert [("assessment" in x) for x in lines] == [True, False, False, False, False, True]
    assert "Invalid JSON" in lines[1]["error"]["message"]
    assert lines[2]["error"]["problems"] == ["pain[0].nrs: Input should be less than or equal to 10"]
    assert "longer than" in lines[4]["error"]["message"]
    expected = json.loads(ipm_engine.evaluate(cohort[1], as_of=AS_OF).to_json(timestamp=False))
    lines[5]["assessment"]["provenance"].pop("evaluated_at")
    assert lines[5]["assessment"] == expected
    assert "6 records, 4 with errors" in capsys.readouterr().err


def test_cli_batch_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [{"pain": []}])
    assert main(["batch", str(source), "--workers", "0", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert not (tmp_path / "o.jsonl").exists()  # nothing written for a batch that never started
    assert main(["batch", str(tmp_path / "missing.jsonl")]) == 6  # its own exit code, not invalid patient data
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    lines = batch.Lines(b'{"line": 1, "assessment": {}}\n{"line": 2, "error": {}}\n', records=2, errors=1)
    for stream, shown in ((io.StringIO(), False), (Tty(), True)):
        progress = batch_cli._Progress(1000, stream, min_interval=0)
        progress.update(lines, 500)
        progress.close(1000)
        text = stream.getvalue()
        assert bool(text) is shown
        if shown:
            assert "50%" in text and "100%" in text and "2 records, 1 errors" in text


# -- the decision log ------------------------------------------------------------------------------------------


def test_decision_log_entries_without_identifiers(tmp_path: Path, cohort: list[dict[str, Any]]) -> None:
    log = tmp_path / "decisions.jsonl"
    documents = [{**cohort[0], "id": "patient-123"}, {**cohort[0], "id": "patient-456"}, {"pain": 3}]
    results = list(batch.evaluate_many(documents, workers=1, as_of=AS_OF, decision_log=log))
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(entries) == 2  # one per assessment made; the invalid record made none
    text = log.read_text(encoding="utf-8")
    assert "patient-123" not in text and "patient-456" not in text
    first, second = entries
    assert first["input_sha256"] == second["input_sha256"]  # the digest leaves the id out
    assert first["decision_id"] != second["decision_id"]
    assert first["conclusions"] == results[0].assessment().codes()
    assert first["ruleset"]["sha256"] == results[0].assessment().provenance.ruleset_sha256
    assert first["profile"] == "cms_lcd" and first["as_of"] == "2025-06-02" and first["elapsed_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", first["timestamp"])


def test_decision_log_on_the_engine_with_ids_when_configured(ruleset: ipm_cds.Ruleset, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    with DecisionLog(path, include_patient_id=True) as log:
        engine = ipm_cds.Engine(ruleset, backend="python", decision_log=log)
        assessment = engine.evaluate({"id": "p-1", "pain": [{"region": "knee", "character": "joint"}]}, as_of=AS_OF)
    (entry,) = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert entry["patient_id"] == "p-1" and entry["backend"] == "python"
    assert entry["input_sha256"] == input_digest(
        ipm_cds.parse_patient({"pain": [{"region": "knee", "character": "joint"}]})
    )
    assert entry["conclusions"] == assessment.codes()


def test_decision_log_costs_nothing_when_off(ruleset: ipm_cds.Ruleset) -> None:
    assert ipm_cds.Engine(ruleset).decision_log is None


# -- the multi-process stress comparison ------------------------------------------------------------------------


def test_multiprocess_batch_matches_sequential_record_by_record(ipm_engine: ipm_cds.Engine) -> None:
    """1,000 generated patients in CI (100,000 with IPM_CDS_STRESS=full), 2 worker processes, every record
    compared with the sequential result of one engine in this process."""
    count = 100_000 if FULL else 1_000
    documents = generated(count)
    expected = sequential(ipm_engine, documents)
    got = outcomes(batch.evaluate_many(documents, workers=2, as_of=AS_OF, timestamp=False))
    assert len(got) == count
    mismatches = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    assert mismatches == []


# -- outputs that would destroy the input ----------------------------------------------------------------------


def _same_file_cases(tmp_path: Path, source: Path) -> dict[str, str]:
    (tmp_path / "link.jsonl").symlink_to(source)
    os.link(source, tmp_path / "hard.jsonl")
    return {
        "the same path": str(source),
        "a relative path": os.path.relpath(source),
        "a symlink": str(tmp_path / "link.jsonl"),
        "a hard link": str(tmp_path / "hard.jsonl"),
        "a path through ..": str(tmp_path / "sub" / ".." / source.name),
    }


@pytest.mark.parametrize("option", ["--out", "--decision-log"])
def test_cli_batch_refuses_to_write_over_its_input(
    tmp_path: Path, cohort: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], option: str
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, cohort[:3])
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    for name, target in _same_file_cases(tmp_path, source).items():
        assert main(["batch", str(source), option, target, "--as-of", "2025-06-02"]) == 2, name
        err = capsys.readouterr().err
        assert f"ipm-cds: {option}" in err and "is the input file" in err and "Traceback" not in err, name
        assert source.read_bytes() == before, name  # refused before anything was opened for writing


def test_cli_batch_refuses_the_same_file_for_out_and_decision_log(
    tmp_path: Path, cohort: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, cohort[:3])
    monkeypatch.chdir(tmp_path)
    args = ["batch", str(source), "--as-of", "2025-06-02"]
    assert main([*args, "--out", "o.jsonl", "--decision-log", str(tmp_path / "o.jsonl")]) == 2
    assert "--out and --decision-log name the same file" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_batch_refuses_redirections_that_are_the_input(
    tmp_path: Path, cohort: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, cohort[:3])
    before = source.read_bytes()
    with source.open("rb") as stdin:  # ipm-cds batch - --out in.jsonl < in.jsonl
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(stdin))
        assert main(["batch", "-", "--out", str(source), "--as-of", "2025-06-02"]) == 2
        assert "--out" in capsys.readouterr().err
    with source.open("a", encoding="utf-8") as stdout:  # ipm-cds batch in.jsonl >> in.jsonl
        monkeypatch.setattr("sys.stdout", stdout)
        assert main(["batch", str(source), "--as-of", "2025-06-02"]) == 2
    assert "the standard output is the input file" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_cli_batch_accepts_a_byte_order_mark_at_the_start(
    tmp_path: Path, ipm_engine: ipm_cds.Engine, cohort: list[dict[str, Any]]
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [b"\xef\xbb\xbf" + json.dumps(cohort[0]).encode() + b"\n", cohort[1]])
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--as-of", "2025-06-02"]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [x["line"] for x in lines] == [1, 2] and all("assessment" in x for x in lines)
    expected = json.loads(ipm_engine.evaluate(cohort[0], as_of=AS_OF).to_json(timestamp=False))
    lines[0]["assessment"]["provenance"].pop("evaluated_at")
    assert lines[0]["assessment"] == expected


def test_jsonl_reader_limits_and_byte_order_mark() -> None:
    limit = batch.MAX_RECORD_BYTES
    exact = b'"' + b"x" * (limit - 2) + b'"\n'  # exactly the limit (the newline aside): read
    over = b'"' + b"x" * (limit - 1) + b'"\n'  # one byte over: skipped, reported
    for bom in (b"", b"\xef\xbb\xbf"):
        records = list(batch_cli._Reader(io.BytesIO(bom + exact + over + bom + b"{}\n")))
        assert [(index, line) for index, line, _ in records] == [(0, 1), (1, 2), (2, 3)]
        assert records[0][2] == exact and isinstance(records[1][2], batch._Oversize)
        assert records[2][2] == bom + b"{}\n"  # a mark is part of the input anywhere but at its start
    assert list(batch_cli._Reader(io.BytesIO(b"\xef\xbb\xbf"))) == []


# -- stopping a batch: SIGTERM, Ctrl-C ---------------------------------------------------------------------------


def _session(sid: int) -> dict[int, str]:
    """The live processes of session ``sid`` (pid: state), from /proc; zombies (already ended) left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found[int(entry.name)] = fields[0]
    return found


@pytest.mark.parametrize(
    ("signum", "group"),
    [
        (signal.SIGTERM, False),  # kill PID
        (signal.SIGTERM, True),  # a service manager stopping the job: workers and forkserver die on their own
        (signal.SIGINT, True),  # Ctrl-C on a terminal: every process of the foreground group
    ],
    ids=["SIGTERM to the batch", "SIGTERM to its process group", "SIGINT to its process group (Ctrl-C)"],
)
def test_cli_batch_stops_on_a_signal_with_one_line_and_no_process_left(
    tmp_path: Path, signum: signal.Signals, group: bool
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [RFA_PATIENT] * 50_000)  # far more than is done before the signal
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "ipm_cds", "batch", str(source), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(
        [*command, "--as-of", "2025-06-02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own session and process group, as a shell job has
    )
    try:
        deadline = time.monotonic() + 120
        while not out.exists() or out.stat().st_size == 0:  # the workers are evaluating
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the batch wrote nothing"
            time.sleep(0.05)
        assert len(_session(proc.pid)) >= 4  # the batch, the forkserver, two workers (and a resource tracker)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)  # a worker stopped mid-write must not hang the batch
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the test fails
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum
    text = err.decode()
    assert "Traceback" not in text
    (line,) = text.splitlines()
    done = int(re.fullmatch(rf"ipm-cds batch: stopped by {signum.name} after ([\d,]+) records .*", line)[1])  # type: ignore[index]
    written = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]  # every line whole
    assert [x["line"] for x in written] == list(range(1, done + 1)) and 0 < done < 50_000
    deadline = time.monotonic() + 60
    while _session(proc.pid):  # no worker, forkserver or tracker outlives the batch
        assert time.monotonic() < deadline, f"left running: {_session(proc.pid)}"
        time.sleep(0.05)


def test_cli_batch_reports_hostile_json_records_with_a_position_and_goes_on(
    tmp_path: Path, cohort: list[dict[str, Any]]
) -> None:
    """Records are read by the parser the service uses (pydantic-core's): no recursion, bounded numbers."""
    source = tmp_path / "in.jsonl"
    deep = b'{"pain": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    big = b'{"demographics": {"age_years": ' + b"9" * 5000 + b"}}\n"
    write_jsonl(source, [deep, big, cohort[0]])
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--as-of", "2025-06-02"]) == 0
    first, second, third = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert "recursion limit exceeded at line 1 column" in first["error"]["message"]
    assert "number out of range at line 1 column" in second["error"]["message"]
    assert "set_int_max_str_digits" not in second["error"]["message"] and "assessment" in third


def test_a_large_output_is_released_from_the_page_cache_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DROP_EVERY bytes: the range written since the last time (writeback started) and, once there is more
    than KEEP_CACHED, the range older than the last KEEP_CACHED bytes (dropped), each byte released once."""
    monkeypatch.setattr(batch_cli, "DROP_EVERY", 100)
    monkeypatch.setattr(batch_cli, "KEEP_CACHED", 250)
    calls: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        calls.append((offset, length))
        real(fd, offset, length, advice)  # the real call too: it must accept these ranges

    monkeypatch.setattr(os, "posix_fadvise", advise)
    with (tmp_path / "out.jsonl").open("wb") as out:
        cached = batch_cli._CacheLimit(out)
        for size in (60, 30, 40, 120, 90, 200, 150, 10):
            out.write(b"x" * size)
            cached.wrote(size)
    # written: 60, 90, 130 (writeback 0-130), 250 (writeback 130-250), 340 (nothing: 90 since), 540 (writeback
    # 250-540, drop 0-290), 690 (writeback 540-690, drop 290-440), 700 (nothing)
    assert calls == [(0, 130), (130, 120), (250, 290), (0, 290), (540, 150), (290, 150)]


def test_a_small_output_a_pipe_or_standard_output_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: calls.append(1))
    monkeypatch.setattr(batch_cli, "DROP_EVERY", 100)
    with (tmp_path / "small.jsonl").open("wb") as out:
        cached = batch_cli._CacheLimit(out)
        cached.wrote(99)
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as r, os.fdopen(write_end, "wb") as w:
        assert batch_cli._CacheLimit(w).fd is None
        assert r.readable()
    assert batch_cli._CacheLimit(io.BytesIO()).fd is None  # no file descriptor at all
    assert calls == []


def test_cli_batch_output_is_the_same_with_the_cache_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cohort: list[dict[str, Any]]
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, cohort[:40])
    outputs = []
    for every, keep in ((1 << 40, 1 << 40), (4096, 8192)):  # never released; released every 4 KB behind 8 KB
        monkeypatch.setattr(batch_cli, "DROP_EVERY", every)
        monkeypatch.setattr(batch_cli, "KEEP_CACHED", keep)
        out = tmp_path / f"out-{every}.jsonl"
        assert main(["batch", str(source), "--out", str(out), "--workers", "1", "--as-of", "2025-06-02"]) == 0
        text = out.read_text(encoding="utf-8")
        assert len(text.encode()) > 4 * keep or every > len(text)  # (the second run releases ranges for real)
        # (each line as written, but for the time of its evaluation)
        outputs.append(re.sub(r'"evaluated_at": ?"[^"]*"', '"evaluated_at": ""', text))
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == 40
