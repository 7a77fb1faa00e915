"""ipm-cds summarize: counts over a known output, the same from JSON Lines and from Parquet, the HTML page."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ipm_cds.cli import main
from ipm_cds.serving.batch import evaluate_many
from ipm_cds.summarize import (
    ROW_FIELDS,
    ConclusionCount,
    CountItem,
    MissingCount,
    conclusion_rows,
    render_html,
    summarize_file,
    summarize_rows,
)

AS_OF = date(2025, 6, 2)


def _basis(rule: str, *criteria: str) -> dict[str, Any]:
    return {"rule": rule, "criteria": list(criteria), "sources": []}


def _assessment(patient: str | None, profile: str, **lists: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "patient_id": patient,
        "provenance": {"profile": profile},
        "candidates": [],
        "excluded": [],
        "precautions": [],
        "alerts": [],
        "referrals": [],
        "deferred_referrals": [],
        "missing_data": [],
    }
    out.update(lists)
    return out


def _missing(field: str, needed_by: list[str], safety: bool) -> dict[str, Any]:
    return {"field": field, "item": f"{field}[1]", "needed_by": needed_by, "criteria": ["C-1"], "safety": safety}


# Four records: two facet RFA candidates (two regions) in one; an exclusion and an urgent referral;
# an error; an assessment with nothing at all. Missing data: pain.nrs blocks two rules in the first
# record (one of them a safety rule) and one in the second.
KNOWN = [
    {
        "line": 1,
        "assessment": _assessment(
            "p1",
            "cms_lcd",
            candidates=[
                {"intervention": "facet_rfa", "basis": _basis("facet.rfa@1.0.0", "F-1"), "precautions": []},
                {
                    "intervention": "facet_rfa",
                    "basis": _basis("facet.rfa@1.0.0", "F-1"),
                    "precautions": [
                        {"kind": "antithrombotic", "medication": "warfarin", "basis": _basis("asra.hold@1.2.0")}
                    ],
                },
            ],
            alerts=[{"code": "opioid.high_mme", "severity": "warning", "basis": _basis("opioid.mme@1.0.0", "O-1")}],
            missing_data=[_missing("pain.nrs", ["facet.rfa@1.0.0", "redflag.x@1.0.0"], True)],
        ),
    },
    {
        "line": 2,
        "assessment": _assessment(
            "p2",
            "society_consensus",
            excluded=[{"intervention": "facet_rfa", "kind": "red_flag", "basis": _basis("redflag.ces@1.0.0", "R-1")}],
            referrals=[{"to": "emergency", "urgency": "emergency", "basis": _basis("redflag.ces@1.0.0", "R-1")}],
            missing_data=[_missing("pain.nrs", ["facet.rfa@1.0.0"], False)],
        ),
    },
    {"line": 4, "error": {"type": "PatientDataError", "message": "invalid patient data", "problems": ["x"]}},
    {"line": 5, "assessment": _assessment(None, "cms_lcd")},
]


def test_rows_of_a_known_output() -> None:
    rows = [row for i, record in enumerate(KNOWN) for row in conclusion_rows(record, i)]
    assert all(tuple(row) == ROW_FIELDS for row in rows)
    kinds = [(r["record"], r["kind"], r["code"], r["rule"]) for r in rows]
    assert kinds == [
        (0, "candidate", "facet_rfa", "facet.rfa@1.0.0"),
        (0, "candidate", "facet_rfa", "facet.rfa@1.0.0"),
        (0, "precaution", "antithrombotic", "asra.hold@1.2.0"),
        (0, "alert", "opioid.high_mme", "opioid.mme@1.0.0"),
        (0, "missing_data", "pain.nrs", "facet.rfa@1.0.0"),
        (0, "missing_data", "pain.nrs", "redflag.x@1.0.0"),
        (1, "excluded", "facet_rfa", "redflag.ces@1.0.0"),
        (1, "referral", "emergency", "redflag.ces@1.0.0"),
        (1, "missing_data", "pain.nrs", "facet.rfa@1.0.0"),
        (2, "error", "PatientDataError", None),
        (3, "none", None, None),
    ]
    assert rows[2]["detail"] == "warfarin" and rows[3]["severity"] == "warning"
    assert rows[7]["urgency"] == "emergency" and rows[6]["detail"] == "red_flag"
    assert rows[0]["patient"] == "p1" and rows[0]["criteria"] == ["F-1"] and rows[6]["profile"] == "society_consensus"


def test_summary_of_a_known_output(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in KNOWN), encoding="utf-8")
    s = summarize_file(path)
    assert (s.records, s.assessed, s.errors, s.without_conclusion) == (4, 3, 1, 1)
    assert s.errors_by_type == [CountItem(name="PatientDataError", records=1)]
    assert s.profiles == [CountItem(name="cms_lcd", records=2), CountItem(name="society_consensus", records=1)]
    assert s.conclusions == [  # records, not rows: the two facet_rfa candidates of record 0 count once
        ConclusionCount(kind="candidate", code="facet_rfa", records=1),
        ConclusionCount(kind="excluded", code="facet_rfa", records=1),
        ConclusionCount(kind="precaution", code="antithrombotic", records=1),
        ConclusionCount(kind="alert", code="opioid.high_mme", records=1),
        ConclusionCount(kind="referral", code="emergency", records=1),
    ]
    assert s.rules == [
        CountItem(name="asra.hold@1.2.0", records=1),
        CountItem(name="facet.rfa@1.0.0", records=1),
        CountItem(name="opioid.mme@1.0.0", records=1),
        CountItem(name="redflag.ces@1.0.0", records=1),
    ]
    assert s.missing_data == [MissingCount(field="pain.nrs", records=2, blocked_rules=3, safety_records=1)]
    # the same from Parquet rows (what ipm-cds batch --dask writes)
    rows = [row for i, record in enumerate(KNOWN) for row in conclusion_rows(record, i)]
    parquet = tmp_path / "out.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    assert summarize_file(parquet) == s


def test_summary_of_a_real_run_is_the_same_from_json_lines_and_rows(tmp_path: Path) -> None:
    from ipm_cds.patientfile import read_patient_document

    examples = Path(__file__).resolve().parent.parent / "examples" / "patients"
    documents: list[Any] = [read_patient_document(p) for p in sorted(examples.glob("*.yaml"))]
    documents.append("not json")
    path = tmp_path / "out.jsonl"
    # on or after every date of every example (the longitudinal examples run to 2026-03)
    results = list(evaluate_many(documents, as_of=date(2026, 4, 15)))
    path.write_text("".join(r.to_json_line() + "\n" for r in results), encoding="utf-8")
    s = summarize_file(path)
    assert (s.records, s.errors) == (len(documents), 1)
    rows = [row for i, r in enumerate(results) for row in conclusion_rows(json.loads(r.to_json_line()), i)]
    assert summarize_rows(rows) == s
    # each count, recounted from the assessments themselves
    assessments = [r.assessment() for r in results if r.ok]
    for count in s.conclusions:
        if count.kind == "candidate":
            assert count.records == sum(1 for a in assessments if a.candidate(count.code) is not None)
        if count.kind == "referral":
            assert count.records == sum(1 for a in assessments if count.code in a.codes()["referrals"])
    assert {c.code for c in s.conclusions if c.kind == "candidate"} == {
        c.intervention for a in assessments for c in a.candidates
    }
    fields = {m.field for a in assessments for m in a.missing_data}
    assert {m.field for m in s.missing_data} == fields


def test_html_page_is_self_contained_with_a_bar_per_count(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in KNOWN), encoding="utf-8")
    page = render_html(summarize_file(path))
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 5
    assert "<script" not in page and not re.search(r"(src|href)=", page)
    assert re.findall(r"https?://[^\"]+", page) == ["http://www.w3.org/2000/svg"] * 5  # the SVG namespace only
    assert page.count("<rect") == 2 + 5 + 4 + 1 + 1  # profiles, conclusions, rules, missing data, errors
    assert "candidate facet_rfa" in page and "pain.nrs" in page


def test_cli_summarize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in KNOWN), encoding="utf-8")
    html = tmp_path / "summary.html"
    assert main(["summarize", str(path), "--html", str(html), "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("records: 4 (3 assessed, 1 errors, 1 without any conclusion)")
    assert "conclusions (top 2 of 5):" in text and "pain.nrs" in text
    assert html.read_text(encoding="utf-8").count("<rect") == 2 + 2 + 2 + 1 + 1
    assert main(["summarize", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_data"][0]["blocked_rules"] == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"line": 1}\n', encoding="utf-8")
    assert main(["summarize", str(bad)]) == 4
    assert "bad.jsonl:1: not a result of ipm-cds batch" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path / "missing.jsonl")]) == 6
