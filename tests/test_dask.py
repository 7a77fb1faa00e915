"""ipm_cds.dask: Dask bags, data frames and JSON Lines files, on a LocalCluster of two worker processes,
record for record against evaluate_many; a worker killed mid-run is retried, or fails the run clearly."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dask
import dask.bag as db
import dask.dataframe as dd
import pandas as pd
import pyarrow.parquet as pq
import pytest
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin

from ipm_cds import dask as ipm_dask
from ipm_cds.cli import main
from ipm_cds.errors import ConfigurationError, EvaluationError
from ipm_cds.serving.batch import evaluate_many
from ipm_cds.summarize import conclusion_rows

AS_OF = date(2025, 6, 2)


def _cohort(size: int) -> list[Any]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ipm_cds.testing.strategies import patients

    out: list[Any] = []

    @settings(
        max_examples=size, database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.one_of(patients(), patients(prior_procedures=True), patients(anticoagulants=True, prior_procedures=True)))
    def collect(patient: Any) -> None:
        if len(out) < size:
            out.append(patient.model_dump(mode="json", exclude_none=True))

    collect()
    return out


@pytest.fixture(scope="module")
def documents() -> list[Any]:
    """Generated patients with invalid records among them (each error must come back in its place)."""
    docs: list[Any] = _cohort(160)
    docs.insert(3, {"pain": [{"region": "lumbar", "nrs": 11}]})  # invalid patient data
    docs.insert(50, "not json")
    docs.insert(51, json.dumps(docs[10]))  # JSON text is a document too
    docs.insert(120, {"unknown_field": 1})
    return docs


@pytest.fixture(scope="module")
def expected(documents: list[Any]) -> list[Any]:
    return list(evaluate_many(documents, as_of=AS_OF, timestamp=False))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_a_bag_on_two_worker_processes_gives_evaluate_manys_results_record_for_record(
    client: Client, documents: list[Any], expected: list[Any]
) -> None:
    bag = db.from_sequence(documents, npartitions=9)
    results = ipm_dask.evaluate_bag(bag, as_of=AS_OF, timestamp=False).compute()
    assert len(results) == len(documents)
    assert [r.index for r in results] == list(range(len(documents)))
    for got, want in zip(results, expected, strict=True):
        assert got == want  # the same assessment JSON, or the same error mapping
    errors = [r for r in results if not r.ok]
    assert [r.index for r in errors] == [3, 50, 120]
    assert errors[0].error is not None and errors[0].error["type"] == "PatientDataError"
    assert "problems" in errors[0].error
    # both workers did the work, each with one engine built once and kept for the run that follows
    builds = client.run(lambda: sorted((k, id(v)) for k, v in ipm_dask._EVALUATORS.items()))
    assert len(builds) == 2 and all(len(b) == 1 for b in builds.values())
    ipm_dask.evaluate_bag(bag, as_of=AS_OF, timestamp=False).compute()
    assert client.run(lambda: sorted((k, id(v)) for k, v in ipm_dask._EVALUATORS.items())) == builds


def test_other_settings_and_other_schedulers(documents: list[Any]) -> None:
    few = documents[:40]
    settings: dict[str, Any] = {"as_of": AS_OF, "timestamp": False, "backend": "python", "profile": "society_consensus"}
    want = list(evaluate_many(few, **settings))
    bag = db.from_sequence(few, npartitions=4)
    for scheduler in ("sync", "threads"):
        assert ipm_dask.evaluate_bag(bag, **settings).compute(scheduler=scheduler) == want
    assert want[0].assessment().provenance.profile == "society_consensus"


def test_a_dataframe_with_one_document_per_row(client: Client, documents: list[Any], expected: list[Any]) -> None:
    texts = [d if isinstance(d, str) else json.dumps(d) for d in documents[:60]]
    frame = dd.from_pandas(pd.DataFrame({"document": texts}), npartitions=4)
    got = ipm_dask.evaluate_dataframe(frame, as_of=AS_OF, timestamp=False).compute()
    assert got == list(evaluate_many(texts, as_of=AS_OF, timestamp=False))
    two = dd.from_pandas(pd.DataFrame({"document": texts, "other": range(60)}), npartitions=2)
    with pytest.raises(ConfigurationError, match="2 columns"):
        ipm_dask.evaluate_dataframe(two)
    with pytest.raises(ConfigurationError, match="no column 'documents'"):
        ipm_dask.evaluate_dataframe(two, column="documents")
    assert ipm_dask.evaluate_dataframe(two, column="document", as_of=AS_OF, timestamp=False).compute() == got


def test_bad_settings_fail_before_anything_runs() -> None:
    bag = db.from_sequence([{}])
    with pytest.raises(ConfigurationError, match="unknown backend"):
        ipm_dask.evaluate_bag(bag, backend="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ipm_dask.evaluate_bag(bag, profile="no_such_profile")


# -- JSON Lines files -------------------------------------------------------------------------------------


def _write_jsonl(path: Path, documents: list[Any], bom: bool = False) -> None:
    lines = [d if isinstance(d, str) else json.dumps(d) for d in documents]
    lines.insert(7, "")  # a blank line: skipped, and the line numbers still count it
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(lines) + "\n").encode())


def _without_time(line: str) -> dict[str, Any]:
    record = json.loads(line)
    if "assessment" in record:
        record["assessment"]["provenance"].pop("evaluated_at")
    return record


def _batch(*argv: str) -> list[str]:
    return ["batch", *argv, "--as-of", AS_OF.isoformat()]


def test_ipm_cds_batch_dask_writes_what_ipm_cds_batch_writes(
    client: Client, documents: list[Any], tmp_path: Path
) -> None:
    source = tmp_path / "patients.jsonl"
    _write_jsonl(source, documents, bom=True)
    assert main(_batch(str(source), "--out", str(tmp_path / "seq.jsonl"))) == 0
    sequential = (tmp_path / "seq.jsonl").read_text(encoding="utf-8").splitlines()
    for lines in (13, 1000):  # many partitions, and one
        out = tmp_path / f"dask-{lines}.jsonl"
        records, errors = ipm_dask.run_files([source], out, client, partition_lines=lines, as_of=AS_OF)
        assert (records, errors) == (len(documents), 3)
        got = out.read_text(encoding="utf-8").splitlines()
        assert [_without_time(x) for x in got] == [_without_time(x) for x in sequential]
    assert not [p for p in tmp_path.iterdir() if ".parts-" in p.name]  # the part files are gone


def test_several_files_and_globs_carry_their_file_and_line(
    client: Client, documents: list[Any], tmp_path: Path
) -> None:
    first, second = documents[:30], documents[30:55]
    _write_jsonl(tmp_path / "patients-1.jsonl", first)
    _write_jsonl(tmp_path / "patients-2.jsonl", second)
    out = tmp_path / "out.jsonl"
    records, _ = ipm_dask.run_files([str(tmp_path / "patients-*.jsonl")], out, client, partition_lines=8, as_of=AS_OF)
    assert records == 55
    got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["file"] for r in got] == [str(tmp_path / "patients-1.jsonl")] * 30 + [
        str(tmp_path / "patients-2.jsonl")
    ] * 25
    want_lines = [n for n in range(1, 32) if n != 8]  # line 8 is the blank one
    assert [r["line"] for r in got] == want_lines + want_lines[:25]
    want = list(evaluate_many(first + second, as_of=AS_OF, timestamp=False))
    for record, result in zip(got, want, strict=True):
        if result.ok:
            record["assessment"]["provenance"].pop("evaluated_at")
            assert record["assessment"] == json.loads(result.assessment_json or "")
        else:
            assert record["error"] == result.error


def test_parquet_output_has_a_row_per_patient_and_conclusion(
    client: Client, documents: list[Any], expected: list[Any], tmp_path: Path
) -> None:
    source = tmp_path / "patients.jsonl"
    _write_jsonl(source, documents)
    out = tmp_path / "out.parquet"
    assert (
        main(_batch(str(source), "--out", str(out), "--dask", client.scheduler.address, "--partition-lines", "17")) == 0
    )
    table = pq.read_table(out)
    assert table.column_names[:6] == ["record", "line", "file", "patient", "profile", "kind"]
    rows = table.to_pylist()
    want: list[dict[str, Any]] = []
    for position, result in enumerate(expected):
        line = position + 1 + (position >= 7)  # the blank line 8
        parsed: dict[str, Any] = {"line": line}
        if result.ok:
            parsed["assessment"] = json.loads(result.assessment_json)
        else:
            parsed["error"] = result.error
        want.extend(conclusion_rows(parsed, position))
    assert rows == want
    assert {r["kind"] for r in rows} >= {"candidate", "excluded", "referral", "missing_data", "error"}


def _decisions(path: Path) -> list[dict[str, Any]]:
    """The log's entries without what differs from run to run (the decision id, its time, the time it took)."""
    entries = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    for entry in entries:
        assert entry.pop("decision_id") and entry.pop("timestamp") and entry.pop("elapsed_ms") >= 0
    return entries


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_the_dask_path_logs_the_decisions_ipm_cds_batch_logs(
    client: Client, documents: list[Any], tmp_path: Path, fmt: str
) -> None:
    source = tmp_path / "patients.jsonl"
    _write_jsonl(source, documents)
    assert (
        main(_batch(str(source), "--out", str(tmp_path / "seq.jsonl"), "--decision-log", str(tmp_path / "seq.log")))
        == 0
    )
    sequential = _decisions(tmp_path / "seq.log")
    assert len(sequential) == len(documents) - 3  # one entry per assessment: the three bad records have none
    log = tmp_path / f"dask-{fmt}.log"
    argv = _batch(str(source), "--out", str(tmp_path / f"dask.{fmt}"), "--dask", client.scheduler.address)
    assert main([*argv, "--partition-lines", "9", "--decision-log", str(log), "--log-patient-id"]) == 0
    logged = _decisions(log)
    ids = [json.loads(r.assessment_json or "")["patient_id"] for r in evaluate_many(documents, as_of=AS_OF) if r.ok]
    assert [e.pop("patient_id") for e in logged] == ids  # --log-patient-id reaches the workers
    assert logged == sequential  # in input order, entry for entry
    assert main([*argv, "--decision-log", str(source)]) == 2  # the log may not be the input either


def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "p.jsonl"
    source.write_text("{}\n", encoding="utf-8")
    assert main(_batch(str(source), "--out", str(tmp_path / "o.parquet"))) == 2
    assert "add --dask local" in capsys.readouterr().err
    assert main(_batch(str(source), str(source), "--out", str(tmp_path / "o.jsonl"))) == 2
    assert main(_batch(str(source), "--out", str(source), "--dask", "local")) == 2
    assert "destroy the input" in capsys.readouterr().err
    assert main(_batch(str(tmp_path / "none-*.jsonl"), "--out", str(tmp_path / "o.jsonl"), "--dask", "local")) == 6
    assert main(_batch(str(source), "--out", "-", "--format", "parquet", "--dask", "local")) == 2


# -- a worker killed mid-run ------------------------------------------------------------------------------


class _KillOnce(WorkerPlugin):
    """Kills its worker process (SIGKILL) when the task ``match`` starts executing, the first time only."""

    def __init__(self, marker: str, match: str, partition: int | None = None) -> None:
        self.marker, self.match, self.partition = marker, match, partition

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or self.match not in str(key) or os.path.exists(self.marker):
            return
        if self.partition is not None and not (isinstance(key, tuple) and key[1] == self.partition):
            return
        Path(self.marker).write_text(str(os.getpid()), encoding="utf-8")
        os.kill(os.getpid(), signal.SIGKILL)


def _cluster(allowed_failures: int) -> tuple[LocalCluster, Client]:
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    return cluster, Client(cluster)


def test_a_worker_killed_mid_run_is_retried_and_no_record_is_missing(
    documents: list[Any], expected: list[Any], tmp_path: Path
) -> None:
    cluster, client = _cluster(allowed_failures=3)
    with cluster, client:
        marker = tmp_path / "killed-bag"
        client.register_plugin(_KillOnce(str(marker), "_evaluate_partition", partition=4))
        results = ipm_dask.evaluate_bag(
            db.from_sequence(documents, npartitions=9), as_of=AS_OF, timestamp=False
        ).compute()
        assert marker.exists()  # a worker was killed while evaluating partition 4 ...
        assert results == expected  # ... which ran again: every record, in order


def test_a_worker_killed_mid_file_run_is_retried_and_no_record_is_missing(documents: list[Any], tmp_path: Path) -> None:
    cluster, client = _cluster(allowed_failures=3)  # a cluster of its own: no worker restarted by another test
    with cluster, client:
        source = tmp_path / "p.jsonl"
        _write_jsonl(source, documents)
        marker = tmp_path / "killed-files"
        client.register_plugin(_KillOnce(str(marker), "ipm-cds-slice-5-"), name="kill-slice")
        out = tmp_path / "out.jsonl"
        assert ipm_dask.run_files([source], out, client, partition_lines=16, as_of=AS_OF) == (len(documents), 3)
        assert marker.exists()
        got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert [r.get("line") for r in got] == [n for n in range(1, len(documents) + 2) if n != 8]


def test_a_partition_that_kills_its_workers_fails_the_run_clearly(documents: list[Any], tmp_path: Path) -> None:
    cluster, client = _cluster(allowed_failures=0)
    with cluster, client:
        client.register_plugin(_KillOnce(str(tmp_path / "k1"), "_evaluate_partition", partition=4))
        with pytest.raises(KilledWorker):
            ipm_dask.evaluate_bag(db.from_sequence(documents, npartitions=9), as_of=AS_OF).compute()
        source = tmp_path / "p.jsonl"
        _write_jsonl(source, documents)
        client.register_plugin(_KillOnce(str(tmp_path / "k2"), "ipm-cds-slice-5-"), name="kill-slice")
        out = tmp_path / "out.jsonl"
        with pytest.raises(EvaluationError, match=r"Dask workers died while evaluating the partition of .*p\.jsonl"):
            ipm_dask.run_files([source], out, client, partition_lines=16, as_of=AS_OF)
        # the output holds whole partitions of results, the first ones, in order, and nothing after the failure
        got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert 0 < len(got) <= 5 * 16
        assert [r["line"] for r in got] == [n for n in range(1, len(got) + 2) if n != 8][: len(got)]
        assert not [p for p in tmp_path.iterdir() if ".parts-" in p.name]


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_cli_batch_dask_stops_on_sigterm_with_whole_partitions_and_no_process_left(
    documents: list[Any], tmp_path: Path
) -> None:
    import subprocess
    import sys
    import time

    import psutil

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(documents[i % 40]) + "\n" for i in range(40_000)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "ipm_cds", "batch", str(source), "--out", str(out), "--dask", "local"]
    proc = subprocess.Popen(
        [*command, "--workers", "2", "--partition-lines", "40", "--as-of", "2025-06-02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not out.exists() or out.stat().st_size == 0:  # the workers are evaluating
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run wrote nothing"
            time.sleep(0.05)
        children = _tree(proc.pid)
        assert len(children) >= 2  # the nannies and their workers
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the test fails
            for pid in [*_tree(proc.pid), proc.pid]:
                os.kill(pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    text = err.decode()
    assert "Traceback" not in text, text
    line = text.strip().splitlines()[-1]
    match = re.fullmatch(r"ipm-cds batch: stopped by SIGTERM after ([\d,]+) records \(([\d,]+) with errors\); .*", line)
    assert match is not None, text
    done = int(match[1].replace(",", ""))
    assert int(match[2].replace(",", "")) == done // 40  # one invalid document in every 40
    written = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]  # every line whole
    assert [x["line"] for x in written] == list(range(1, done + 1)) and 0 < done < 40_000 and done % 40 == 0
    assert not [p for p in tmp_path.iterdir() if ".parts-" in p.name]
    deadline = time.monotonic() + 60
    while alive := [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]:
        assert time.monotonic() < deadline, f"left running: {alive}"
        time.sleep(0.1)
