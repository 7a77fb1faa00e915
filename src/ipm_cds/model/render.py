"""Render an Assessment as text a clinician reads: candidates first, then exclusions, precautions,
alerts, referrals and missing data."""

from __future__ import annotations

import textwrap

from .assessment import Assessment, Basis, Candidate
from .render_verdicts import requested_section, scope_section

_WIDTH = 100


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def _basis(basis: Basis, indent: str) -> list[str]:
    lines = [f"{indent}Rule {basis.rule}; criteria {', '.join(basis.criteria)}"]
    for src in basis.sources:
        lines += _wrap(f"[{src.id}] {src.citation}" + (f" {src.url}" if src.url else ""), indent + "  ")
    return lines


def _target(c: Candidate) -> str:
    parts = [p for p in (c.target.region, c.target.side, c.target.levels) if p]
    return ", ".join(parts) if parts else "no target recorded"


def render_text(a: Assessment) -> str:
    p = a.provenance
    lines = [
        f"ipm-cds assessment{f' for {a.patient_id}' if a.patient_id else ''} as of {a.as_of.isoformat()}",
        f"Ruleset {p.ruleset_id} {p.ruleset_version} (sha256 {p.ruleset_sha256[:12]}), profile {p.profile}, "
        f"{p.backend} backend{' (auto)' if p.backend_auto else ''}, ipm-cds {p.library_version}",
        "",
    ]
    critical = [al for al in a.alerts if al.severity == "critical"]
    if critical:
        lines.append("!! CRITICAL")
        for al in critical:
            lines += _wrap(f"!! {al.message}", "")
        lines.append("")
    lines += requested_section(a)
    lines.append(f"CANDIDATE INTERVENTIONS ({len(a.candidates)})")
    if not a.candidates:
        lines.append("  none")
    for c in a.candidates:
        lines.append(f"  * {c.name} [{c.intervention}] - {_target(c)}")
        lines += _wrap(c.rationale, "      ")
        lines.append(
            f"      Guidance: {', '.join(c.image_guidance)}; bleeding risk: {c.bleeding_risk}; "
            f"evidence: {c.evidence}; status: {c.evidence_status.replace('_', ' ')}"
        )
        if c.cpt:
            lines.append(f"      CPT: {', '.join(c.cpt)}")
        for pr in c.precautions:
            flag = " (prescriber approval)" if pr.requires_prescriber_approval else ""
            lines += _wrap(f"- Precaution{flag}: {pr.text} [{pr.basis.rule}]", "      ")
        for check in c.unresolved_checks:
            lines += _wrap(f"- Undecided (missing data): {check}", "      ")
        lines += _basis(c.basis, "      ")
    lines.append("")
    lines.append(f"EXCLUDED ({len(a.excluded)})")
    if not a.excluded:
        lines.append("  none")
    for e in a.excluded:
        lines.append(f"  x {e.name} [{e.intervention}] - {e.kind.replace('_', ' ')}")
        lines += _wrap(e.reason, "      ")
        lines.append(f"      Rule {e.basis.rule}; criteria {', '.join(e.basis.criteria)}")
    lines += scope_section(a)
    if a.precautions:
        lines += ["", "PRECAUTIONS"]
        for pr in a.precautions:
            lines += _wrap(f"- {pr.text} [{pr.basis.rule}]", "  ")
    lines += ["", f"ALERTS ({len(a.alerts)})"]
    if not a.alerts:
        lines.append("  none")
    for al in a.alerts:
        lines += _wrap(f"{al.severity.upper()}: {al.message} [{al.basis.rule}]", "  ")
    lines += ["", f"REFERRALS ({len(a.referrals)})"]
    if not a.referrals:
        lines.append("  none")
    for r in a.referrals:
        lines.append(f"  > {r.name} [{r.to}] - {r.urgency.upper()}")
        for reason in r.reason.split("\n"):
            lines += _wrap(reason, "      ")
        lines.append(f"      Rule {r.basis.rule}; criteria {', '.join(r.basis.criteria)}")
    if a.deferred_referrals:
        lines += ["", f"DEFERRED REFERRALS ({len(a.deferred_referrals)}): until the red flag has been assessed"]
        for d in a.deferred_referrals:
            lines.append(f"  ~ {d.referral.name} [{d.referral.to}] - {d.referral.urgency.upper()}, deferred")
            for reason in d.referral.reason.split("\n"):
                lines += _wrap(reason, "      ")
            lines.append(f"      Rule {d.referral.basis.rule}; deferred by {d.basis.rule}")
    if a.missing_data:
        lines += ["", f"MISSING DATA ({len(a.missing_data)})"]
        for m in a.missing_data:
            tag = " [safety]" if m.safety else ""
            lines += _wrap(f"? {m.field} of {m.item}{tag}: needed by {', '.join(m.needed_by)}", "  ")
    if p.rules_inactive:
        lines += ["", "INACTIVE RULES"]
        for ref, why in p.rules_inactive.items():
            lines += _wrap(f"- {ref}: {why}", "  ")
    lines += ["", *_wrap(a.disclaimer, "")]
    return "\n".join(lines) + "\n"
