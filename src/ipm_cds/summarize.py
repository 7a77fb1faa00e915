"""Summarise a population run: counts per conclusion, rule and profile, the missing data most often in the way.

``ipm-cds summarize OUTPUT`` reads the output of ``ipm-cds batch`` (JSON Lines, one result per line) or its
Parquet output (``--out x.parquet``: one row per patient and conclusion) and prints, per conclusion (kind and
code), per rule and per profile, how many records have it; the missing-data items that most often kept a
rule from deciding; and the errors by type. ``--format json`` prints the same as JSON, ``--html FILE``
writes a self-contained page with bar charts (inline SVG; nothing is fetched when it is viewed).

A *record* is one result of the run (one input line). Counts are of records, not of rows: a record with two
facet RFA candidates (two regions) counts once for ``candidate facet_rfa``. The rows themselves, the unit
of the Parquet output, come from :func:`conclusion_rows`.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigurationError, InputFileError, PatientDataError, Problem

__all__ = [
    "ROW_FIELDS",
    "ConclusionCount",
    "CountItem",
    "MissingCount",
    "Summary",
    "conclusion_rows",
    "read_rows",
    "render_html",
    "render_text",
    "summarize_file",
    "summarize_rows",
]

ROW_FIELDS: tuple[str, ...] = (
    "record",  # 0-based position of the result in the run's output
    "line",  # 1-based input line, where the input was JSON Lines
    "file",  # the input file, where the run read several
    "patient",  # the patient's id, where the document has one
    "profile",  # the profile the record was assessed under (None for an error)
    "kind",  # candidate, excluded, precaution, alert, referral, deferred_referral, missing_data, error, none
    "code",  # the intervention, alert code, referral target, precaution kind, missing field, or error type
    "rule",  # id@version of the rule behind it (for missing data: one row per rule kept from deciding)
    "urgency",  # referrals
    "severity",  # alerts
    "criteria",  # criterion ids
    "safety",  # missing data: a safety rule was waiting for it
    "detail",  # exclusion kind, precaution's intervention or drug, missing item, or error message
)
"""The columns of a conclusion row, in order (the Parquet output's schema)."""

KINDS: tuple[str, ...] = (
    "candidate",
    "excluded",
    "precaution",
    "alert",
    "referral",
    "deferred_referral",
    "missing_data",
    "error",
    "none",
)

Row = dict[str, Any]


def _row(
    record: int, line: int | None, file: str | None, patient: str | None, profile: str | None, **values: Any
) -> Row:
    row: Row = dict.fromkeys(ROW_FIELDS)
    row.update(record=record, line=line, file=file, patient=patient, profile=profile, criteria=[])
    row.update(values)
    return row


def conclusion_rows(result: Mapping[str, Any], record: int) -> list[Row]:
    """The rows of one output record (``{"line": N, "assessment": {...}}`` or ``{..., "error": {...}}``, parsed).

    One row per candidate, exclusion, precaution (the patient's and each candidate's), alert, referral,
    deferred referral, and per missing-data item and rule it kept from deciding; one ``error`` row for a
    record that could not be assessed; one ``none`` row for an assessment without any of these.
    """
    line = result.get("line")
    file = result.get("file")
    error = result.get("error")
    assessment = result.get("assessment")
    if not isinstance(assessment, Mapping):
        err = error if isinstance(error, Mapping) else {}
        return [
            _row(
                record,
                line,
                file,
                None,
                None,
                kind="error",
                code=str(err.get("type", "unknown")),
                detail=str(err.get("message", "")),
            )
        ]
    base = (record, line, file, assessment.get("patient_id"), assessment.get("provenance", {}).get("profile"))
    rows: list[Row] = []

    def basis(item: Mapping[str, Any]) -> dict[str, Any]:
        b = item.get("basis") or {}
        return {"rule": b.get("rule"), "criteria": list(b.get("criteria", []))}

    for c in assessment.get("candidates", []):
        rows.append(_row(*base, kind="candidate", code=c["intervention"], **basis(c)))
    for e in assessment.get("excluded", []):
        rows.append(_row(*base, kind="excluded", code=e["intervention"], detail=e.get("kind"), **basis(e)))
    precautions = list(assessment.get("precautions", []))
    for c in assessment.get("candidates", []):
        precautions.extend(c.get("precautions", []))
    for p in precautions:
        detail = p.get("medication") or p.get("intervention")
        rows.append(_row(*base, kind="precaution", code=p["kind"], detail=detail, **basis(p)))
    for a in assessment.get("alerts", []):
        rows.append(_row(*base, kind="alert", code=a["code"], severity=a.get("severity"), **basis(a)))
    for r in assessment.get("referrals", []):
        rows.append(_row(*base, kind="referral", code=r["to"], urgency=r.get("urgency"), **basis(r)))
    for d in assessment.get("deferred_referrals", []):
        ref = d.get("referral", {})
        rows.append(_row(*base, kind="deferred_referral", code=ref.get("to"), urgency=ref.get("urgency"), **basis(d)))
    for m in assessment.get("missing_data", []):
        for rule in m.get("needed_by", []) or [None]:
            rows.append(
                _row(
                    *base,
                    kind="missing_data",
                    code=m["field"],
                    rule=rule,
                    criteria=list(m.get("criteria", [])),
                    safety=bool(m.get("safety")),
                    detail=m.get("item"),
                )
            )
    return rows or [_row(*base, kind="none")]


# -- the summary ------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CountItem(_Model):
    name: str
    records: int


class ConclusionCount(_Model):
    kind: str
    code: str
    records: int


class MissingCount(_Model):
    field: str = Field(description="The patient field that was missing, e.g. 'pain.duration_weeks'.")
    records: int = Field(description="Records in which it kept at least one rule from deciding.")
    blocked_rules: int = Field(description="Rule decisions it held back, summed over the records.")
    safety_records: int = Field(description="Records in which a safety rule was among those waiting for it.")


class Summary(_Model):
    """What a population run concluded, counted in records (one per input record)."""

    records: int
    assessed: int
    errors: int
    without_conclusion: int = Field(description="Assessed records without any conclusion or missing data.")
    errors_by_type: list[CountItem]
    profiles: list[CountItem]
    conclusions: list[ConclusionCount] = Field(description="Records per conclusion (kind and code), most first.")
    rules: list[CountItem] = Field(description="Records in which each rule drew a conclusion, most first.")
    missing_data: list[MissingCount] = Field(description="Missing-data items, most often in the way first.")


class _Tally:
    def __init__(self) -> None:
        self.records = self.errors = self.none = 0
        self.error_types: Counter[str] = Counter()
        self.profiles: Counter[str] = Counter()
        self.conclusions: Counter[tuple[str, str]] = Counter()
        self.rules: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()
        self.blocked: Counter[str] = Counter()
        self.safety: Counter[str] = Counter()

    def add(self, rows: Sequence[Row]) -> None:
        """The rows of one record."""
        self.records += 1
        first = rows[0]
        if first["kind"] == "error":
            self.errors += 1
            self.error_types[str(first["code"])] += 1
            return
        self.profiles[str(first["profile"])] += 1
        if first["kind"] == "none":
            self.none += 1
            return
        conclusions: set[tuple[str, str]] = set()
        rules: set[str] = set()
        missing: set[str] = set()
        safety: set[str] = set()
        for row in rows:
            code = str(row["code"])
            if row["kind"] == "missing_data":
                missing.add(code)
                self.blocked[code] += 1
                if row["safety"]:
                    safety.add(code)
                continue
            conclusions.add((str(row["kind"]), code))
            if row["rule"]:
                rules.add(str(row["rule"]))
        self.conclusions.update(conclusions)
        self.rules.update(rules)
        self.missing.update(missing)
        self.safety.update(safety)

    def summary(self) -> Summary:
        def items(counter: Counter[str]) -> list[CountItem]:
            return [CountItem(name=k, records=v) for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]

        return Summary(
            records=self.records,
            assessed=self.records - self.errors,
            errors=self.errors,
            without_conclusion=self.none,
            errors_by_type=items(self.error_types),
            profiles=items(self.profiles),
            conclusions=[
                ConclusionCount(kind=k, code=c, records=v)
                for (k, c), v in sorted(
                    self.conclusions.items(), key=lambda kv: (-kv[1], KINDS.index(kv[0][0]), kv[0][1])
                )
            ],
            rules=items(self.rules),
            missing_data=[
                MissingCount(field=f, records=v, blocked_rules=self.blocked[f], safety_records=self.safety[f])
                for f, v in sorted(self.missing.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
        )


def _by_record(rows: Iterable[Row]) -> Iterator[list[Row]]:
    """Rows grouped by record (the rows of a record are consecutive in every output ipm-cds writes)."""
    group: list[Row] = []
    for row in rows:
        if group and row["record"] != group[0]["record"]:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def summarize_rows(rows: Iterable[Row]) -> Summary:
    """The summary of conclusion rows (as :func:`conclusion_rows` or the Parquet output give them)."""
    tally = _Tally()
    for group in _by_record(rows):
        tally.add(group)
    return tally.summary()


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as stream:
        record = 0
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                result = json.loads(line)
            except ValueError as exc:
                raise PatientDataError([Problem(f"{path}:{number}: not a result of ipm-cds batch ({exc})")]) from None
            if not isinstance(result, dict) or ("assessment" not in result and "error" not in result):
                raise PatientDataError(
                    [Problem(f"{path}:{number}: not a result of ipm-cds batch (no 'assessment' or 'error')")]
                )
            yield from conclusion_rows(result, record)
            record += 1


def _parquet_rows(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError(
            "reading Parquet needs pyarrow, which is not installed", hint='pip install "ipm-cds[dask]"'
        ) from None
    parquet = pq.ParquetFile(path)
    missing = [name for name in ROW_FIELDS if name not in parquet.schema_arrow.names]
    if missing:
        raise PatientDataError([Problem(f"{path}: not an output of ipm-cds batch (no column {', '.join(missing)})")])
    for batch in parquet.iter_batches(batch_size=65536, columns=list(ROW_FIELDS)):
        yield from batch.to_pylist()


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def read_rows(path: str | Path) -> Iterator[Row]:
    """The conclusion rows of a run's output: JSON Lines, or Parquet (by its suffix, ``.parquet``)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(str(path), "no such file", hint="give the output of ipm-cds batch (.jsonl or .parquet)")
    return _parquet_rows(path) if is_parquet(path) else _jsonl_rows(path)


def summarize_file(path: str | Path) -> Summary:
    """The summary of a run's output file (JSON Lines or Parquet)."""
    return summarize_rows(read_rows(path))


# -- rendering ----------------------------------------------------------------------------------------------


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render_text(summary: Summary, top: int = 20) -> str:
    """The summary as plain text; ``top`` lines at most per list."""
    s = summary
    out = [
        f"records: {s.records:,} ({s.assessed:,} assessed, {s.errors:,} errors, "
        f"{s.without_conclusion:,} without any conclusion)",
    ]

    def block(title: str, rows: Sequence[tuple[str, int]], extra: Sequence[str] | None = None) -> None:
        out.append("")
        out.append(f"{title}{f' (top {top} of {len(rows)})' if len(rows) > top else ''}:")
        if not rows:
            out.append("  (none)")
        width = max((len(name) for name, _ in rows[:top]), default=0)
        for i, (name, count) in enumerate(rows[:top]):
            tail = f"  {extra[i]}" if extra else ""
            out.append(f"  {name:<{width}}  {count:>9,}  {_pct(count, s.records):>6}{tail}")

    block("profiles", [(p.name, p.records) for p in s.profiles])
    block("conclusions", [(f"{c.kind} {c.code}", c.records) for c in s.conclusions])
    block("rules", [(r.name, r.records) for r in s.rules])
    block(
        "missing data most often blocking a decision",
        [(m.field, m.records) for m in s.missing_data],
        [
            f"{m.blocked_rules:,} rule decisions held back, safety rule waiting in {m.safety_records:,}"
            for m in s.missing_data
        ],
    )
    block("errors", [(e.name, e.records) for e in s.errors_by_type])
    return "\n".join(out) + "\n"


_BAR_HEIGHT = 18
_LABEL_WIDTH = 340
_BAR_WIDTH = 420


def _svg_bars(title: str, rows: Sequence[tuple[str, int]], total: int, colour: str) -> str:
    """A horizontal bar chart as inline SVG: one bar per row, labelled with the name and the count."""
    if not rows:
        return f"<h2>{html.escape(title)}</h2><p>(none)</p>"
    biggest = max(count for _, count in rows) or 1
    height = _BAR_HEIGHT * len(rows) + 4
    width = _LABEL_WIDTH + _BAR_WIDTH + 120
    parts = [
        f"<h2>{html.escape(title)}</h2>",
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title, quote=True)}">',
    ]
    for i, (name, count) in enumerate(rows):
        y = i * _BAR_HEIGHT + 2
        length = max(1.0, _BAR_WIDTH * count / biggest)
        label = html.escape(name if len(name) <= 52 else name[:51] + "…")
        parts.append(
            f"<g><title>{html.escape(name)}: {count:,} ({_pct(count, total)})</title>"
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end">{label}</text>'
            f'<rect x="{_LABEL_WIDTH}" y="{y + 2}" width="{length:.1f}" height="{_BAR_HEIGHT - 5}" fill="{colour}"/>'
            f'<text x="{_LABEL_WIDTH + length + 6:.1f}" y="{y + 13}">{count:,} ({_pct(count, total)})</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(summary: Summary, top: int = 25, title: str = "ipm-cds population summary") -> str:
    """A self-contained HTML page (no script, no external resource) with a bar chart per count."""
    s = summary
    charts = [
        _svg_bars("Profiles", [(p.name, p.records) for p in s.profiles[:top]], s.records, "#4e79a7"),
        _svg_bars(
            "Conclusions (records)",
            [(f"{c.kind} {c.code}", c.records) for c in s.conclusions[:top]],
            s.records,
            "#59a14f",
        ),
        _svg_bars(
            "Rules that drew a conclusion (records)", [(r.name, r.records) for r in s.rules[:top]], s.records, "#f28e2b"
        ),
        _svg_bars(
            "Missing data most often blocking a decision (records)",
            [(m.field, m.records) for m in s.missing_data[:top]],
            s.records,
            "#e15759",
        ),
        _svg_bars(
            "Errors by type (records)", [(e.name, e.records) for e in s.errors_by_type[:top]], s.records, "#76b7b2"
        ),
    ]
    overview = (
        f"<p>{s.records:,} records: {s.assessed:,} assessed, {s.errors:,} errors, {s.without_conclusion:,} without any "
        f"conclusion. Lists show the first {top} entries at most. Decision support, never an order.</p>"
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}svg{font-size:12px;display:block}"
        "svg text{fill:#222}h2{font-size:1.1em;margin-top:1.6em}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{overview}"
        + "\n".join(charts)
        + "</body></html>\n"
    )


# -- ipm-cds summarize ------------------------------------------------------------------------------------


def _run_cli(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ConfigurationError(f"--top must be a positive whole number, got {args.top}")
    summary = summarize_file(args.output)
    if args.format == "json":
        sys.stdout.write(json.dumps(summary.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_text(summary, top=args.top))
    if args.html is not None:
        args.html.write_text(render_html(summary, top=args.top), encoding="utf-8")
    return 0


def register(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``ipm-cds summarize`` arguments to ``parser``; return the command's handler."""
    parser.description = (
        "Counts over the output of ipm-cds batch (JSON Lines, or Parquet by its .parquet suffix): records per "
        "conclusion, rule and profile, the missing data most often blocking a decision, errors by type."
    )
    parser.add_argument("output", type=Path, help="the output of ipm-cds batch (.jsonl, or .parquet)")
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="text (default), or every count as JSON on stdout"
    )
    parser.add_argument(
        "--html", type=Path, default=None, metavar="FILE", help="also write an HTML page with bar charts"
    )
    parser.add_argument(
        "--top", type=int, default=20, metavar="N", help="entries per list in text and HTML (default 20)"
    )
    return _run_cli
