"""Card assembly shared by every hook: the context of one answer, text helpers, the card itself, and the
cards that any hook may add (missing data, data that could not be read); the FHIR OperationOutcome."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ...model.assessment import Assessment, Basis, Citation, Referral

if TYPE_CHECKING:
    from ...ruleset.loader import Ruleset
    from ..fhir import Unmapped

CDS_HOOKS_VERSION = "2.0"
Indicator = Literal["critical", "warning", "info"]
CARD_EXTENSION = "invalid.ipm-cds.card"
"""Key of the card ``extension`` object with machine-readable facts (kind, rule, intervention)."""

_BASE = "https://ipm-cds.invalid/fhir"
TOPIC_RULE = f"{_BASE}/CodeSystem/rule"
TOPIC_RULESET = f"{_BASE}/CodeSystem/ruleset"
REFERRAL_SYSTEM = f"{_BASE}/CodeSystem/referral-target"
_NAMESPACE = uuid.UUID("6f1c4d0e-3b7a-5c2e-9d41-2a8f0b6e7c13")
_RANK = {"critical": 0, "warning": 1, "info": 2}
_PRIORITY = {"emergency": "stat", "urgent": "asap", "soon": "urgent", "routine": "routine"}
SUMMARY_MAX = 139


@dataclass(frozen=True)
class _Context:
    label: str
    titles: Mapping[str, str]
    patient: str | None
    seed: str
    disclaimer: str
    reasons: Mapping[str, tuple[str, ...]]
    reason_display: Mapping[str, str]
    reason_system: str


def _context(
    assessment: Assessment, ruleset: Ruleset | None, hook_instance: str | None, patient_reference: str | None
) -> _Context:
    from ..maps import load_maps

    p = assessment.provenance
    titles = {r.id: r.title for r in ruleset.rules} if ruleset is not None else {}
    seed = hook_instance or hashlib.sha256(assessment.to_json(timestamp=False).encode()).hexdigest()
    patient = patient_reference or (f"Patient/{assessment.patient_id}" if assessment.patient_id else None)
    reasons = load_maps().override_reasons
    return _Context(
        label=f"ipm-cds · {p.ruleset_id} {p.ruleset_version} ({p.profile})",
        titles=titles,
        patient=patient,
        seed=seed,
        disclaimer=assessment.disclaimer,
        reasons=reasons.cards,
        reason_display=reasons.reasons,
        reason_system=reasons.system,
    )


# -- text helpers ------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: str) -> str:
    """Plain text made safe for GitHub-flavoured markdown (no accidental emphasis, links or HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def summary(text: str) -> str:
    """One line of at most 139 characters (the specification: under 140), cut at a word when needed."""
    line = " ".join(text.split())
    if len(line) <= SUMMARY_MAX:
        return line
    cut = line[: SUMMARY_MAX - 1]
    if " " in cut[SUMMARY_MAX // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:-") + "…"


def _target(region: str | None, side: str | None = None, levels: str | None = None) -> str:
    return ", ".join(x.replace("_", " ") for x in (region, side, levels) if x)


# -- card assembly -----------------------------------------------------------------------------------


def _uid(ctx: _Context, *key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join((ctx.seed, *key))))


def _sources_md(sources: Sequence[Citation]) -> list[str]:
    lines = []
    for i, s in enumerate(sources, 1):
        url = f" <{s.url}>" if s.url else ""
        lines.append(f"{i}. {_md(s.citation)} ({s.year}){url}")
    return lines


def _basis_md(ctx: _Context, basis: Basis) -> list[str]:
    rule_id = basis.rule.split("@", 1)[0]
    title = ctx.titles.get(rule_id)
    lines = [f"**Rule** `{basis.rule}`" + (f" ({_md(title)})" if title else "")]
    if basis.criteria:
        lines.append("**Criteria** " + ", ".join(f"`{c}`" for c in basis.criteria))
    return lines


def _links(sources: Iterable[Citation]) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for s in sources:
        if s.url and s.url not in seen:
            label = " ".join(s.citation.split())
            if len(label) > 100:
                label = label[:99].rsplit(" ", 1)[0].rstrip(" ,;:.") + "…"
            seen[s.url] = {"label": label, "url": s.url, "type": "absolute"}
    return list(seen.values())


def _card(
    ctx: _Context,
    *,
    key: Sequence[str],
    kind: str,
    indicator: Indicator,
    text: str,
    detail: list[str],
    bases: Sequence[Basis],
    facts: Mapping[str, Any],
    suggestions: list[dict[str, Any]] | None = None,
    selection: Literal["at-most-one", "any"] = "any",
    reasons: str | None = None,
    topic: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    sources = [s for b in bases for s in b.sources]
    rule = bases[0].rule if bases else None
    if topic is None and rule is not None:
        rule_id = rule.split("@", 1)[0]
        topic = (TOPIC_RULE, rule, ctx.titles.get(rule_id, rule_id))
    source: dict[str, Any] = {"label": ctx.label}
    first_url = next((s.url for s in sources if s.url), None)
    if first_url:
        source["url"] = first_url
    if topic is not None:
        source["topic"] = {"system": topic[0], "code": topic[1], "display": topic[2]}
    body = [*detail]
    for basis in bases:
        body += ["", *_basis_md(ctx, basis)]
    if sources:
        unique = list({(s.id, s.citation): s for s in sources}.values())
        body += ["", "**Sources**", *_sources_md(unique)]
    body += ["", f"*{_md(ctx.disclaimer)}*"]
    card: dict[str, Any] = {
        "uuid": _uid(ctx, kind, *key),
        "summary": summary(text),
        "indicator": indicator,
        "detail": "\n".join(body).strip() + "\n",
        "source": source,
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = selection
    codes = ctx.reasons.get(reasons or kind, ())
    if codes:
        card["overrideReasons"] = [
            {"system": ctx.reason_system, "code": c, "display": ctx.reason_display[c]} for c in codes
        ]
    links = _links(sources)
    if links:
        card["links"] = links
    card["extension"] = {CARD_EXTENSION: {"kind": kind, **({"rule": rule} if rule else {}), **facts}}
    return card


def _referral_suggestion(ctx: _Context, referral: Referral, key: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "priority": _PRIORITY[referral.urgency],
        "code": {
            "coding": [{"system": REFERRAL_SYSTEM, "code": referral.to, "display": referral.name}],
            "text": referral.name,
        },
        "reasonCode": [{"text": referral.reason[:1000]}],
        "note": [
            {
                "text": f"Proposed by ipm-cds (rule {referral.basis.rule}); urgency {referral.urgency}. "
                "Decision support for a clinician, not an order."
            }
        ],
    }
    if ctx.patient:
        resource["subject"] = {"reference": ctx.patient}
    return {
        "label": summary(f"Refer: {referral.name} ({referral.urgency})"),
        "uuid": _uid(ctx, "suggestion", key, referral.to),
        "isRecommended": True,
        "actions": [
            {
                "type": "create",
                "description": summary(f"Propose a referral ({referral.urgency}): {referral.name}"),
                "resource": resource,
            }
        ],
    }


def _missing_card(ctx: _Context, assessment: Assessment, only_rules: set[str] | None = None) -> dict[str, Any] | None:
    items = [m for m in assessment.missing_data if only_rules is None or set(m.needed_by) & only_rules or m.safety]
    if not items:
        return None
    safety = any(m.safety for m in items)
    fields = sorted({m.field for m in items})
    detail = ["Not recorded, so the rules below could not decide (missing is never read as normal):", ""]
    detail += [
        f"- `{m.field}` ({_md(m.item)}): needed by "
        + ", ".join(f"`{r}`" for r in m.needed_by)
        + (" — **safety check**" if m.safety else "")
        for m in items
    ]
    p = assessment.provenance
    return _card(
        ctx,
        key=tuple(fields),
        kind="missing",
        indicator="warning" if safety else "info",
        text=f"Missing data ({len(fields)}): " + ", ".join(f.split(".")[-1].replace("_", " ") for f in fields),
        detail=detail,
        bases=[],
        facts={"fields": fields},
        topic=(TOPIC_RULESET, f"{p.ruleset_id}@{p.ruleset_version}", "Missing data"),
    )


_SIGNIFICANT = {"unknown_code", "ambiguous_code", "incomplete", "unknown_unit", "partial"}
_GROUPED = {"older_left_out", "duplicate"}  # one line per kind and reason: a long record may leave out hundreds
_GROUP_SHOWN = 5
_CLINICAL = {"Condition", "Observation", "MedicationRequest", "MedicationStatement", "Procedure", "AllergyIntolerance"}


def _unmapped_card(ctx: _Context, assessment: Assessment, unmapped: Sequence[Unmapped]) -> dict[str, Any] | None:
    if not unmapped:
        return None
    significant = [u for u in unmapped if u.kind in _SIGNIFICANT and u.resource.split("/")[0] in _CLINICAL]
    detail = [
        "ipm-cds could not read these parts of the record; the assessment does not take them into account. "
        "Code them with a mapped code (docs/fhir.md) or review them yourself:",
        "",
    ]
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)  # a long record's left-out items, by kind
    for u in unmapped:
        if u.kind in _GROUPED:
            grouped[(u.kind, u.reason)].append(u.resource)
            continue
        code = f" `{_md(u.code)}`" if u.code else ""
        detail.append(f"- `{u.resource}`{code}: {u.kind.replace('_', ' ')}: {_md(u.reason)}")
    for (kind, reason), refs in sorted(grouped.items()):
        shown = ", ".join(f"`{r}`" for r in sorted(refs)[:_GROUP_SHOWN])
        more = f" and {len(refs) - _GROUP_SHOWN} more" if len(refs) > _GROUP_SHOWN else ""
        detail.append(f"- {shown}{more}: {kind.replace('_', ' ')}: {_md(reason)}")
    p = assessment.provenance
    resources = sorted({u.resource for u in (significant or unmapped)})
    text = (
        f"Not read from the record: {len(resources)} resource(s) ({', '.join(resources[:3])}"
        + (", …" if len(resources) > 3 else "")
        + "); review them"
    )
    return _card(
        ctx,
        key=tuple(sorted(str(u) for u in unmapped)),
        kind="unmapped",
        indicator="warning" if significant else "info",
        text=text,
        detail=detail,
        bases=[],
        facts={"resources": sorted({u.resource for u in unmapped})},
        topic=(TOPIC_RULESET, f"{p.ruleset_id}@{p.ruleset_version}", "Data not read"),
    )


def _sorted(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = [
        "red_flag",
        "requested",
        "exclusion",
        "alert",
        "treatment_response",
        "precaution",
        "missing",
        "unmapped",
        "candidate",
        "referral",
    ]
    return sorted(
        cards,
        key=lambda c: (
            _RANK[c["indicator"]],
            order.index(c["extension"][CARD_EXTENSION]["kind"]),
            c["summary"],
            c["uuid"],
        ),
    )


def operation_outcome(
    issues: Iterable[
        tuple[str, str, str] | tuple[str, str, str, str | None] | tuple[str, str, str, str | None, list[str]]
    ],
) -> dict[str, Any]:
    """A FHIR OperationOutcome from (severity, code, text[, diagnostics[, expression]]) tuples."""
    out: list[dict[str, Any]] = []
    for issue in issues:
        severity, code, text = issue[0], issue[1], issue[2]
        item: dict[str, Any] = {"severity": severity, "code": code, "details": {"text": text}}
        if len(issue) > 3 and issue[3]:
            item["diagnostics"] = issue[3]
        if len(issue) > 4 and issue[4]:
            item["expression"] = list(issue[4])
        out.append(item)
    return {"resourceType": "OperationOutcome", "issue": out}
