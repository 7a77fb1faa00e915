"""Write one self-contained HTML page: the assessment, charts of pain, function and MME over time, and the response.

``ipm-cds report PATIENT --as-of DATE --out report.html``. The charts are static SVG drawn by matplotlib
(the ``report`` extra) and written inline with their text as paths: the page needs no network, no script
and no font at view time. Procedures are marked on every chart as dashed vertical lines, medication changes
on the MME chart as points with their change. The response classification is the assessment's own
``outcomes.*`` alerts (the rules in the ruleset decide it; this module only draws).
"""

from __future__ import annotations

import argparse
import html
import io
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.dates as mdates
from matplotlib.figure import Figure

from ..argtypes import add_backend_option, date_arg, parameter_arg
from ..model.assessment import Assessment
from ..model.facts.vocabulary import CodeInfo
from ..model.patient import PatientCase
from ..model.render import render_text

__all__ = ["FUNCTION_INSTRUMENTS", "PAIN_INSTRUMENTS", "charts", "register", "render_report"]

PAIN_INSTRUMENTS = ("nrs", "peg", "promis_pi")
"""Instruments drawn on the pain chart (the others of a series go on the function chart, PGIC and mood apart)."""
FUNCTION_INSTRUMENTS = ("odi", "ndi", "rmdq", "promis_pf")
MOOD_INSTRUMENTS = ("phq9", "gad7", "pgic")

# matplotlib's date helpers are untyped: typed aliases, so that strict typing checks their use here
_date2num: Callable[[date], float] = mdates.date2num
_date_formatter: Callable[[str], Any] = mdates.DateFormatter

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;max-width:1100px;color:#1b1b1b}
h1{font-size:22px} h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}
.chart{margin:8px 0 16px 0} .chart svg{width:100%;height:auto}
pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:12px;border:1px solid #ddd}
.warning{color:#8a4b00} .critical{color:#a00000} .info{color:#1b4f8a} .note{color:#555;font-size:13px}
"""


def _figure() -> tuple[Figure, Any]:
    """A figure without pyplot (no global figure registry, no GUI backend) and its one axes."""
    fig = Figure(figsize=(10, 3.2))
    return fig, fig.subplots()


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    # text as outlines (no font needed where the page is opened); stable element ids (same input, same page)
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "ipm-cds"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _mark_procedures(ax: Any, patient: PatientCase) -> None:
    seen: set[tuple[date, str]] = set()
    for proc in sorted(patient.procedures, key=lambda p: (p.date, p.kind)):
        if (proc.date, proc.kind) in seen:
            continue
        seen.add((proc.date, proc.kind))
        ax.axvline(proc.date, color="#7a7a7a", linestyle="--", linewidth=1)
        ax.annotate(
            proc.kind.replace("_", " "),
            (_date2num(proc.date), 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color="#555555",
        )


def _series_chart(
    patient: PatientCase,
    instruments: Sequence[str],
    labels: Mapping[str, CodeInfo],
    title: str,
    ylabel: str,
) -> str | None:
    points: dict[tuple[str, str | None], list[tuple[date, float]]] = {}
    for m in patient.measurements:
        if m.instrument in instruments:
            points.setdefault((m.instrument, m.region), []).append((m.date, float(m.score)))
    if not points:
        return None
    fig, ax = _figure()
    for (instrument, region), pts in sorted(points.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        pts.sort()
        label = labels[instrument].label if instrument in labels else instrument
        ax.plot(
            [d for d, _ in pts],
            [s for _, s in pts],
            marker="o",
            linewidth=2,
            label=f"{label}" + (f" ({region})" if region else ""),
        )
    ranges = [(labels[i].min, labels[i].max) for i, _ in points if i in labels]
    if ranges and all(lo is not None and hi is not None for lo, hi in ranges):
        ax.set_ylim(min(lo for lo, _ in ranges if lo is not None), max(hi for _, hi in ranges if hi is not None))
    _mark_procedures(ax, patient)
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.xaxis.set_major_formatter(_date_formatter("%Y-%m"))
    return _svg(fig)


def _mme_chart(patient: PatientCase) -> str | None:
    if not patient.mme_history:
        return None
    records = sorted(patient.mme_history, key=lambda r: (r.date, r.mme_per_day))
    fig, ax = _figure()
    days = [r.date for r in records]
    ax.step(days, [r.mme_per_day for r in records], where="post", linewidth=2, color="#b5179e", label="MME/day")
    for r in records:
        if r.change is not None:
            ax.plot([r.date], [r.mme_per_day], marker="D", color="#3a0ca3")
            ax.annotate(r.change.replace("_", " "), (_date2num(r.date), r.mme_per_day), fontsize=7,
                        xytext=(3, 6), textcoords="offset points")  # fmt: skip
    _mark_procedures(ax, patient)
    ax.set_title("Daily opioid dose (MME/day) with medication changes", fontsize=11)
    ax.set_ylabel("MME/day")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(_date_formatter("%Y-%m"))
    return _svg(fig)


def charts(patient: PatientCase, instruments: Mapping[str, CodeInfo]) -> dict[str, str]:
    """The SVG charts of one patient that have data: ``pain``, ``function``, ``mood``, ``mme``, in that order."""
    drawn = {
        "pain": _series_chart(patient, PAIN_INSTRUMENTS, instruments, "Pain over time", "score"),
        "function": _series_chart(patient, FUNCTION_INSTRUMENTS, instruments, "Function over time", "score"),
        "mood": _series_chart(patient, MOOD_INSTRUMENTS, instruments, "Global impression and mood", "score"),
        "mme": _mme_chart(patient),
    }
    return {name: svg for name, svg in drawn.items() if svg is not None}


def render_report(
    patient: PatientCase, assessment: Assessment, instruments: Mapping[str, CodeInfo], as_of: date
) -> str:
    """The report page for one patient and its assessment (a complete HTML document, no external resource)."""
    esc = html.escape
    outcome_alerts = [a for a in assessment.alerts if a.code.startswith("outcomes.")]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ipm-cds report {esc(patient.id or '')} {as_of.isoformat()}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Treatment response report: {esc(patient.id or 'patient')}, as of {as_of.isoformat()}</h1>",
        f'<p class="note">Ruleset {esc(assessment.provenance.ruleset_id)} {esc(assessment.provenance.ruleset_version)}'
        f" (sha256 {esc(assessment.provenance.ruleset_sha256[:12])}), profile {esc(assessment.provenance.profile)}."
        " Decision support for a clinician, not an order.</p>",
        "<h2>Response classification</h2>",
    ]
    if outcome_alerts:
        parts.append("<table><tr><th>Finding</th><th>Severity</th><th>Rule</th></tr>")
        for a in outcome_alerts:
            rule = a.basis.rule
            parts.append(
                f'<tr><td>{esc(a.message)}</td><td class="{a.severity}">{a.severity}</td><td>{esc(rule)}</td></tr>'
            )
        parts.append("</table>")
    else:
        parts.append('<p class="note">No response finding: no dated series, or none the rules classify.</p>')
    parts.append("<h2>Charts</h2>")
    drawn = list(charts(patient, instruments).items())
    if not drawn:
        parts.append('<p class="note">No dated scores or MME history are recorded: nothing to chart.</p>')
    for name, svg in drawn:
        parts.append(f'<div class="chart" id="chart-{name}">{svg}</div>')
    parts.append("<h2>Assessment</h2>")
    parts.append(f"<pre>{esc(render_text(assessment))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def register(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the ``ipm-cds report`` arguments to ``parser``; return the command's handler."""
    parser.add_argument(
        "patient", type=Path, help="patient file, .json or .yaml ('-': read it from the standard input)"
    )
    parser.add_argument("--out", type=Path, required=True, help="HTML file to write")
    parser.add_argument("--ruleset", type=Path, default=None, help="ruleset folder (default: the bundled ipm-core)")
    parser.add_argument("--as-of", type=date_arg, default=None, help="evaluation date YYYY-MM-DD (default: today)")
    parser.add_argument("--profile", default=None, help="profile, e.g. cms_lcd or society_consensus")
    add_backend_option(parser)
    parser.add_argument(
        "--param", type=parameter_arg, action="append", default=[], metavar="NAME=VALUE", help="override a parameter"
    )
    return _run


def _run(args: argparse.Namespace) -> int:
    from ..engine.facade import Engine
    from ..patientfile import read_patient_document
    from ..ruleset.loader import load_ruleset

    ruleset = load_ruleset(args.ruleset, with_tests=False)
    patient = ruleset.parse_patient(read_patient_document(args.patient))
    engine = Engine(ruleset, profile=args.profile, backend=args.backend, parameters=dict(args.param))
    as_of = args.as_of or date.today()
    assessment = engine.evaluate(patient, as_of=as_of)
    page = render_report(patient, assessment, ruleset.code_infos().get("outcome_measure", {}), as_of)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0
