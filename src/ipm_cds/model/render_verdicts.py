"""Text sections for the verdicts on requested procedures and the interventions in scope (see render.py)."""

from __future__ import annotations

import textwrap

from .assessment import Assessment

_WIDTH = 100
_VERDICT = {"appropriate": "APPROPRIATE NOW", "not_appropriate": "NOT APPROPRIATE", "cannot_tell": "CANNOT TELL YET"}
_SCOPE = {
    "candidate": "candidate",
    "excluded": "excluded",
    "not_indicated": "not indicated",
    "not_decidable": "not decidable yet",
}


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def requested_section(a: Assessment) -> list[str]:
    """The verdict on each requested procedure, with its reasons, safety judgements and missing data."""
    if not a.requested:
        return []
    lines = [f"REQUESTED PROCEDURES ({len(a.requested)})"]
    for v in a.requested:
        target = ", ".join(p for p in (v.target.region, v.target.side, v.target.levels) if p)
        order = f" order {v.order}," if v.order else ""
        when = f", planned {v.planned_date.isoformat()}" if v.planned_date else ""
        where = f" - {target};" if target else ";"  # no region: the verdict names it as missing
        lines.append(f"  # {v.name} [{v.intervention}]{where}{order} {v.status}{when}")
        details = [
            f"approach: {v.approach}" if v.approach else "",
            f"guidance: {v.guidance}" if v.guidance else "",
            f"steroid: {v.steroid_agent}" + (f" {v.steroid_dose_mg:g} mg" if v.steroid_dose_mg is not None else "")
            if v.steroid_agent
            else "",
            f"bleeding risk: {v.bleeding_risk}",
        ]
        lines.append("      " + "; ".join(d for d in details if d))
        lines += _wrap(f"=> {v.summary}", "      ")
        judged = {j.text for j in v.safety}
        for r in v.reasons:
            if r.text in judged:
                continue  # listed below with its kind
            lines += _wrap(f"- Because: {r.text} [{r.basis.rule}; {', '.join(r.basis.criteria)}]", "      ")
        for j in v.safety:
            flag = " (blocking)" if j.blocking else ""
            approval = " (prescriber approval)" if j.requires_prescriber_approval else ""
            lines += _wrap(
                f"- {j.kind.replace('_', ' ').capitalize()}{flag}{approval}: {j.text} [{j.basis.rule}]", "      "
            )
        for m in v.missing:
            lines += _wrap(f"? {m.field} of {m.item}: needed by {', '.join(m.needed_by)}", "      ")
    lines.append("")
    return lines


def scope_section(a: Assessment) -> list[str]:
    """Each intervention the presentation brings into scope, and where it stands (why-not)."""
    if not a.scope:
        return []
    lines = ["", f"IN SCOPE ({len(a.scope)}): candidate, excluded, not indicated or not decidable yet"]
    for s in a.scope:
        where = f" - {s.region}" if s.region else ""
        lines.append(f"  {s.family}: {s.name} [{s.intervention}]{where}: {_SCOPE[s.status]}")
        for r in s.reasons:
            lines += _wrap(f"- {r.text} [{r.basis.rule}]", "      ")
        if s.missing:
            lines += _wrap(f"? needs {', '.join(s.missing)}", "      ")
    return lines
