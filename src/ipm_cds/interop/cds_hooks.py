"""CDS Hooks out: an :class:`~ipm_cds.Assessment` as CDS Hooks cards.

Cards follow the CDS Hooks specification (2.0, the current release; nothing here is changed by the 3.0
ballot): a ``summary`` under 140 characters, an ``indicator``, ``detail`` in GitHub-flavoured markdown
with the rationale, criteria and citations, a ``source`` whose ``topic`` names the rule ``id@version``,
``links`` to the cited sources, ``suggestions`` with a ``selectionBehavior``, ``overrideReasons`` with
stable codes (``maps/override_reasons.yaml``) and a ``uuid`` on every card and suggestion.

Indicators: ``critical`` for red flags and absolute contraindications (and critical alerts),
``warning`` for precautions, warning alerts, safety-relevant missing data and data that could not be
read, ``info`` for candidates, referrals and unmet criteria. A referral that the rule of a critical
alert raised (the emergency referral of a red flag) is a suggestion on that critical card, not a
separate info card.

Card uuids are version-5 uuids of the hook instance and the card's content key: the same hook
instance always gives the same uuids (reproducible audit), different hook instances never collide.
No dependencies: plain dictionaries, ready for ``json.dumps``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..model.assessment import (
    Alert,
    Assessment,
    Basis,
    Candidate,
    Citation,
    DeferredReferral,
    Exclusion,
    Precaution,
    Referral,
    RequestedVerdict,
)

if TYPE_CHECKING:
    from datetime import date

    from ..engine.facade import Engine
    from ..model.explanation import WhyNot
    from ..model.patient import PatientCase
    from ..ruleset.loader import Ruleset
    from .fhir import OrderedIntervention, Unmapped

__all__ = [
    "CARD_EXTENSION",
    "CDS_HOOKS_VERSION",
    "Indicator",
    "evaluate_orders",
    "operation_outcome",
    "order_cards",
    "patient_view_cards",
    "requested_cards",
]

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
    from .maps import load_maps

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


def _alert_card(
    ctx: _Context,
    alert: Alert,
    referrals: list[Referral],
    suppressed: list[Exclusion],
    deferred: Sequence[DeferredReferral] = (),
) -> dict[str, Any]:
    red_flag = alert.code.startswith("red_flag")
    detail = [_md(alert.message)]
    if suppressed:
        detail += ["", "**Suppressed until assessed**"]
        detail += [f"- {_md(e.name)} (`{e.intervention}`)" for e in suppressed]
    if deferred:  # listed, never suggested: acting on them waits for the red flag
        detail += ["", "**Referrals deferred until assessed**"]
        detail += [f"- {_md(d.referral.name)}: {_md(d.referral.reason)}" for d in deferred]
    if referrals:
        detail += ["", "**Referral**"]
        detail += [f"- {_md(r.name)}, {r.urgency}: {_md(r.reason)}" for r in referrals]
    key = (alert.code, alert.basis.rule, alert.message)
    suggestions = [_referral_suggestion(ctx, r, "|".join(key)) for r in referrals]
    return _card(
        ctx,
        key=key,
        kind="red_flag" if red_flag else "alert",
        indicator=alert.severity,
        text=("Red flag: " if red_flag and "red flag" not in alert.message.lower() else "") + alert.message,
        detail=detail,
        bases=[alert.basis],
        facts={"code": alert.code},
        suggestions=suggestions,
        selection="any",
    )


def _deferred(assessment: Assessment, alert: Alert, shown: set[str]) -> list[DeferredReferral]:
    """The referrals the alert's red-flag rule deferred, for the first card of that rule only."""
    if alert.basis.rule in shown:
        return []
    shown.add(alert.basis.rule)
    return [d for d in assessment.deferred_referrals if d.basis.rule == alert.basis.rule]


def _exclusion_card(ctx: _Context, group: list[Exclusion]) -> dict[str, Any]:
    first = group[0]
    names = [e.name for e in group]
    critical = first.kind in ("red_flag", "absolute_contraindication")
    label = {
        "red_flag": "red flag",
        "absolute_contraindication": "contraindicated",
        "unmet_criterion": "criteria not met",
    }
    head = names[0] if len(names) == 1 else f"{len(names)} interventions"
    detail = [f"**{_md(label[first.kind].capitalize())}**: {_md(first.reason)}", ""]
    detail += [f"- {_md(e.name)} (`{e.intervention}`)" for e in group]
    return _card(
        ctx,
        key=(first.basis.rule, first.kind, first.reason, *sorted(e.intervention for e in group)),
        kind="exclusion",
        indicator="critical" if critical else "info",
        text=f"Not appropriate now ({label[first.kind]}): {head}. {first.reason}"
        if critical
        else f"Not supported by the criteria now: {head}. {first.reason}",
        detail=detail,
        bases=[first.basis],
        facts={"interventions": sorted(e.intervention for e in group), "exclusion_kind": first.kind},
    )


def _precaution_card(ctx: _Context, precaution: Precaution, interventions: list[str]) -> dict[str, Any]:
    detail = [_md(precaution.text)]
    if interventions:
        detail += ["", "**Applies to** " + ", ".join(f"`{i}`" for i in interventions)]
    if precaution.medication:
        risk = f" at {precaution.bleeding_risk} bleeding risk (ASRA 2018)" if precaution.bleeding_risk else ""
        detail += ["", f"**Medication** `{precaution.medication}`{risk}"]
    if precaution.requires_prescriber_approval:
        detail += ["", "**Any change needs the prescriber's approval.**"]
    return _card(
        ctx,
        key=(precaution.basis.rule, precaution.kind, precaution.text, *interventions),
        kind="precaution",
        indicator="warning",
        text=precaution.text,
        detail=detail,
        bases=[precaution.basis],
        facts={
            "precaution_kind": precaution.kind,
            "interventions": interventions,
            **({"medication": precaution.medication} if precaution.medication else {}),
        },
    )


def _candidate_card(ctx: _Context, c: Candidate, headline: str | None = None) -> dict[str, Any]:
    target = _target(c.target.region, c.target.side, c.target.levels)
    detail = [
        _md(c.rationale),
        "",
        f"- **Target** {_md(target) or 'not specified'}",
        f"- **Kind** {c.kind}; evidence status {c.evidence_status}; {_md(c.evidence)}",
        f"- **Image guidance** {', '.join(c.image_guidance) or 'none'}",
        f"- **ASRA 2018 bleeding risk** {c.bleeding_risk}",
    ]
    if c.cpt:
        detail.append(f"- **CPT** {', '.join(c.cpt)}")
    if c.precautions:
        detail += ["", "**Precautions**"] + [f"- {_md(p.text)}" for p in c.precautions]
    if c.unresolved_checks:
        detail += ["", "**Safety checks left undecided by missing data**"]
        detail += [f"- {_md(u)}" for u in c.unresolved_checks]
    text = headline or f"Candidate: {c.name}" + (f" ({target})" if target else "") + " — criteria met"
    return _card(
        ctx,
        key=(c.basis.rule, c.intervention, target),
        kind="candidate",
        indicator="info",
        text=text,
        detail=detail,
        bases=[c.basis],
        facts={"intervention": c.intervention, "region": c.target.region},
    )


def _referral_card(ctx: _Context, r: Referral) -> dict[str, Any]:
    key = (r.basis.rule, r.to, r.urgency)
    return _card(
        ctx,
        key=key,
        kind="referral",
        indicator="info",
        text=f"Refer: {r.name} ({r.urgency}). {r.reason}",
        detail=[_md(r.reason), "", f"**Urgency** {r.urgency}"],
        bases=[r.basis],
        facts={"to": r.to, "urgency": r.urgency},
        suggestions=[_referral_suggestion(ctx, r, "|".join(key))],
        selection="at-most-one",
    )


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


# -- public API --------------------------------------------------------------------------------------


def patient_view_cards(
    assessment: Assessment,
    *,
    ruleset: Ruleset | None = None,
    hook_instance: str | None = None,
    unmapped: Sequence[Unmapped] = (),
    patient_reference: str | None = None,
) -> list[dict[str, Any]]:
    """The whole assessment as cards: red flags and alerts, exclusions, precautions, candidates, referrals,
    the treatment response (:mod:`.response_card`, when the record holds series), missing data, and the data
    that could not be read (``unmapped`` from :mod:`ipm_cds.interop.fhir`)."""
    ctx = _context(assessment, ruleset, hook_instance, patient_reference)
    cards: list[dict[str, Any]] = []
    red_rules = {a.basis.rule for a in assessment.alerts if a.code.startswith("red_flag")}
    # a referral raised by the rule of a critical alert (a red flag, a suicide risk) is a suggestion on that card
    alert_rules = {a.basis.rule for a in assessment.alerts if a.severity == "critical"}
    by_rule: dict[str, list[Referral]] = defaultdict(list)
    for r in assessment.referrals:
        by_rule[r.basis.rule].append(r)
    deferred_shown: set[str] = set()
    for alert in assessment.alerts:
        critical = alert.severity == "critical"
        suppressed = [e for e in assessment.excluded if e.kind == "red_flag" and e.basis.rule == alert.basis.rule]
        referrals = by_rule.get(alert.basis.rule, []) if critical else []
        cards.append(_alert_card(ctx, alert, referrals, suppressed, _deferred(assessment, alert, deferred_shown)))
    groups: dict[tuple[str, str, str], list[Exclusion]] = defaultdict(list)
    for e in assessment.excluded:
        if e.kind == "red_flag" and e.basis.rule in red_rules:
            continue  # on the red flag's own card
        groups[(e.basis.rule, e.kind, e.reason)].append(e)
    cards += [_exclusion_card(ctx, g) for g in groups.values()]
    cards += _precaution_cards(ctx, assessment, None)
    cards += [_candidate_card(ctx, c) for c in assessment.candidates]
    cards += [_referral_card(ctx, r) for r in assessment.referrals if r.basis.rule not in alert_rules]
    from .response_card import response_card  # (it builds on this module)

    response = response_card(
        assessment, label=ctx.label
    )  # the treatment response, when the record holds series (issue 16)
    for extra in (response, _missing_card(ctx, assessment), _unmapped_card(ctx, assessment, unmapped)):
        if extra is not None:
            cards.append(extra)
    return _sorted(cards)


def _precaution_cards(ctx: _Context, assessment: Assessment, intervention: str | None) -> list[dict[str, Any]]:
    """Patient-level precautions, and those attached to candidates (of one intervention, when given)."""
    found: dict[tuple[str, str, str], tuple[Precaution, set[str]]] = {}
    for p in assessment.precautions:
        if intervention is None or p.intervention in (None, intervention):
            found.setdefault((p.basis.rule, p.kind, p.text), (p, set()))
    for c in assessment.candidates:
        if intervention is not None and c.intervention != intervention:
            continue
        for p in c.precautions:
            entry = found.setdefault((p.basis.rule, p.kind, p.text), (p, set()))
            entry[1].add(c.intervention)
    return [_precaution_card(ctx, p, sorted(ivs)) for p, ivs in found.values()]


def order_cards(
    assessment: Assessment,
    order: OrderedIntervention,
    *,
    why_not: Sequence[WhyNot] = (),
    ruleset: Ruleset | None = None,
    hook_instance: str | None = None,
    unmapped: Sequence[Unmapped] = (),
    patient_reference: str | None = None,
) -> list[dict[str, Any]]:
    """Cards for one ordered intervention (order-select / order-sign): is it appropriate now, what
    precautions apply, what is missing. Red-flag alerts are always included: they block every elective
    intervention. ``why_not`` (from :meth:`ipm_cds.Engine.explain`) explains an intervention no rule proposed.
    """
    ctx = _context(assessment, ruleset, hook_instance, patient_reference)
    cards: list[dict[str, Any]] = []
    deferred_shown: set[str] = set()
    for alert in assessment.alerts:
        if alert.severity == "critical":
            suppressed = [e for e in assessment.excluded if e.kind == "red_flag" and e.basis.rule == alert.basis.rule]
            referrals = [r for r in assessment.referrals if r.basis.rule == alert.basis.rule]
            cards.append(_alert_card(ctx, alert, referrals, suppressed, _deferred(assessment, alert, deferred_shown)))
    names = {w.intervention: w.name for w in why_not}
    for intervention in order.interventions:
        candidates = [
            c
            for c in assessment.candidates
            if c.intervention == intervention and (order.region is None or c.target.region == order.region)
        ]
        exclusions = [e for e in assessment.excluded if e.intervention == intervention]
        note = [f"_{_md(order.note)}_", ""] if order.note else []
        if candidates:
            for c in candidates:
                target = _target(c.target.region, c.target.side, c.target.levels)
                card = _candidate_card(
                    ctx, c, headline=f"{c.name}: criteria met now" + (f" ({target})" if target else "")
                )
                card["detail"] = "\n".join(note) + ("\n" if note else "") + card["detail"]
                card["extension"][CARD_EXTENSION]["order"] = order.reference
                cards.append(card)
            cards += _precaution_cards(ctx, assessment, intervention)
        elif exclusions:
            for e in exclusions:  # a red flag also has its own card; the order gets one to act on
                critical = e.kind in ("red_flag", "absolute_contraindication")
                cards.append(_order_exclusion_card(ctx, e, order, note, critical))
        else:
            name = names.get(intervention, intervention)
            cards.append(_not_proposed_card(ctx, assessment, order, intervention, name, why_not, note))
        rules = {r.rule for w in why_not if w.intervention == intervention for r in w.rules}
        missing = _missing_card(ctx, assessment, rules)
        if missing is not None:
            missing["extension"][CARD_EXTENSION]["order"] = order.reference
            cards.append(missing)
    unmapped_card = _unmapped_card(ctx, assessment, unmapped)
    if unmapped_card is not None:
        cards.append(unmapped_card)
    unique = {c["uuid"]: c for c in cards}
    return _sorted(list(unique.values()))


def _remove_order(ctx: _Context, order: OrderedIntervention, name: str) -> dict[str, Any]:
    return {
        "label": summary(f"Remove the draft order for {name}"),
        "uuid": _uid(ctx, "suggestion", "remove", order.reference),
        "actions": [
            {
                "type": "delete",
                "description": summary(f"Remove the draft order {order.reference} ({name})"),
                "resourceId": order.reference,
            }
        ],
    }


def _order_exclusion_card(
    ctx: _Context, e: Exclusion, order: OrderedIntervention, note: list[str], critical: bool
) -> dict[str, Any]:
    label = {
        "red_flag": "red flag",
        "absolute_contraindication": "contraindicated",
        "unmet_criterion": "criteria not met",
    }
    return _card(
        ctx,
        key=(order.reference, e.basis.rule, e.intervention, e.kind),
        kind="exclusion",
        indicator="critical" if critical else "warning",
        text=f"{e.name}: not appropriate now ({label[e.kind]}). {e.reason}",
        detail=[*note, f"**{label[e.kind].capitalize()}**: {_md(e.reason)}"],
        bases=[e.basis],
        facts={"intervention": e.intervention, "exclusion_kind": e.kind, "order": order.reference},
        suggestions=[_remove_order(ctx, order, e.name)],
        selection="at-most-one",
    )


def _not_proposed_card(
    ctx: _Context,
    assessment: Assessment,
    order: OrderedIntervention,
    intervention: str,
    name: str,
    why_not: Sequence[WhyNot],
    note: list[str],
) -> dict[str, Any]:
    detail = [
        *note,
        "No rule of the ruleset supports this intervention for this patient now. Why not, rule by rule:",
        "",
    ]
    missing: list[str] = []

    def leaves(analysis: Any, depth: int = 0) -> list[str]:
        """The failing conditions behind a rule, following absent derived facts to the rules that derive them."""
        found = [f"{c.condition} (recorded: {c.actual})" for c in analysis.checks if c.outcome == "failed"]
        missing.extend(c.condition for c in analysis.checks if c.outcome == "missing")
        if depth < 3:
            for because in analysis.because:
                found += leaves(because, depth + 1)
        return found

    for w in why_not:
        if w.intervention != intervention:
            continue
        for r in w.rules:
            if r.outcome == "inactive":
                continue
            reasons = sorted(set(leaves(r)))
            line = f"- `{r.rule}`: {r.outcome}"
            if reasons:
                line += ": " + "; ".join(_md(x) for x in reasons[:4]) + (" …" if len(reasons) > 4 else "")
            elif r.details:
                line += ": " + _md("; ".join(r.details[:2]))
            detail.append(line)
    if missing:
        detail += ["", "**What is missing**"] + [f"- {_md(m)}" for m in sorted(set(missing))]
    p = assessment.provenance
    return _card(
        ctx,
        key=(order.reference, intervention, "not-proposed"),
        kind="exclusion",
        indicator="warning",
        text=f"{name}: the criteria are not shown to be met now" + (" (data missing)" if missing else ""),
        detail=detail,
        bases=[],
        facts={"intervention": intervention, "exclusion_kind": "not_proposed", "order": order.reference},
        suggestions=[_remove_order(ctx, order, name)],
        selection="at-most-one",
        topic=(TOPIC_RULESET, f"{p.ruleset_id}@{p.ruleset_version}", f"No rule supports {intervention}"),
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


# -- requested procedures (order-select / order-sign, issue 13) -------------------------------------------

_VERDICT_LABEL = {
    "appropriate": "appropriate now",
    "not_appropriate": "not appropriate now",
    "cannot_tell": "cannot tell yet (data missing)",
}
_JUDGEMENT_LABEL = {
    "red_flag": "Red flag",
    "absolute_contraindication": "Contraindication",
    "unmet_criterion": "Criterion not met",
    "relative_contraindication": "Relative contraindication",
    "caution": "Precaution",
    "antithrombotic": "Antithrombotic",
    "alert": "Alert",
    "referral": "Referral",
}


def _requested_card(ctx: _Context, v: RequestedVerdict) -> dict[str, Any]:
    """One card for one requested procedure: its verdict, why, every safety judgement, what is missing."""
    target = _target(v.target.region, v.target.side, v.target.levels)
    blocking = any(j.blocking for j in v.safety)
    indicator: Indicator = (
        "critical"
        if blocking
        else "warning"
        if v.verdict != "appropriate"
        or any(j.kind in ("antithrombotic", "relative_contraindication") for j in v.safety)
        else "info"
    )
    detail = [f"**{_md(v.summary)}**", ""]
    judged = {j.text for j in v.safety}
    reasons = [r for r in v.reasons if r.text not in judged]
    if reasons:
        detail += ["**Why**", *[f"- {_md(r.text)} (`{r.basis.rule}`)" for r in reasons], ""]
    if v.safety:
        detail.append("**Safety judgements**")
        for j in v.safety:
            approval = " (prescriber approval)" if j.requires_prescriber_approval else ""
            detail.append(f"- **{_JUDGEMENT_LABEL[j.kind]}**{approval}: {_md(j.text)} (`{j.basis.rule}`)")
        detail.append("")
    if v.missing:
        detail.append("**What is missing**")
        detail += [f"- {_md(m.field)} of {_md(m.item)} (needed by {', '.join(m.needed_by)})" for m in v.missing]
    order = f"ServiceRequest/{v.order}" if v.order else None
    suggestions = []
    if v.verdict == "not_appropriate" and order is not None:
        suggestions.append(
            {
                "label": summary(f"Remove the draft order for {v.name}"),
                "uuid": _uid(ctx, "suggestion", "remove", order, v.intervention),
                "actions": [
                    {
                        "type": "delete",
                        "description": summary(f"Remove the draft order {order} ({v.name})"),
                        "resourceId": order,
                    }
                ],
            }
        )
    bases = [r.basis for r in v.reasons[:1]] or [j.basis for j in v.safety if j.blocking][:1]
    if v.indication is not None and not bases:
        bases = [v.indication]
    p = ctx.label
    return _card(
        ctx,
        key=(order or "", v.intervention, target),
        kind="requested",
        indicator=indicator,
        text=f"{v.name}" + (f" ({target})" if target else "") + f": {_VERDICT_LABEL[v.verdict]}",
        detail=detail,
        bases=bases,
        facts={
            "intervention": v.intervention,
            "verdict": v.verdict,
            **({"order": order} if order else {}),
            "blocking": blocking,
        },
        suggestions=suggestions or None,
        selection="at-most-one",
        reasons="exclusion" if v.verdict == "not_appropriate" else None,
        topic=None if bases else (TOPIC_RULESET, p, f"Requested {v.intervention}"),
    )


def requested_cards(
    assessment: Assessment,
    *,
    ruleset: Ruleset | None = None,
    hook_instance: str | None = None,
    unmapped: Sequence[Unmapped] = (),
    patient_reference: str | None = None,
) -> list[dict[str, Any]]:
    """Cards for the requested procedures of an assessment: one per requested order, with its verdict; the
    critical alerts (red flags block every elective procedure); data that could not be read."""
    ctx = _context(assessment, ruleset, hook_instance, patient_reference)
    cards: list[dict[str, Any]] = []
    deferred_shown: set[str] = set()
    for alert in assessment.alerts:
        if alert.severity == "critical":
            suppressed = [e for e in assessment.excluded if e.kind == "red_flag" and e.basis.rule == alert.basis.rule]
            referrals = [r for r in assessment.referrals if r.basis.rule == alert.basis.rule]
            cards.append(_alert_card(ctx, alert, referrals, suppressed, _deferred(assessment, alert, deferred_shown)))
    cards += [_requested_card(ctx, v) for v in assessment.requested]
    unmapped_card = _unmapped_card(ctx, assessment, unmapped)
    if unmapped_card is not None:
        cards.append(unmapped_card)
    return _sorted(list({c["uuid"]: c for c in cards}.values()))


def evaluate_orders(
    engine: Engine,
    patient: PatientCase,
    draft_orders: Mapping[str, Any],
    *,
    as_of: date | None = None,
    selections: Sequence[str] | None = None,
    hook_instance: str | None = None,
    unmapped: Sequence[Unmapped] = (),
    patient_reference: str | None = None,
) -> tuple[Assessment, list[dict[str, Any]]]:
    """order-select / order-sign in ONE evaluation: the draft ServiceRequests become the patient's requested
    procedures (:mod:`ipm_cds.interop.service_requests`), the engine evaluates once, and each requested order
    gets one card with its verdict (the verdict carries its why-not: no second, explaining run).

    ServiceRequests that are not procedures of the ruleset are listed with the unread data."""
    from .fhir import Unmapped as _Unmapped
    from .service_requests import requested_from_bundle

    mapped = requested_from_bundle(draft_orders, engine.ruleset, selections)
    documents = [*(r.model_dump(mode="json", exclude_none=True) for r in patient.requested), *mapped.requested]
    case = engine.ruleset.parse_patient({**patient.model_dump(mode="json", exclude_none=True), "requested": documents})
    assessment = engine.evaluate(case, as_of=as_of)
    extra = [*unmapped, *(_Unmapped(ref, "unknown_code", why) for ref, why in mapped.unmapped)]
    cards = requested_cards(
        assessment,
        ruleset=engine.ruleset,
        hook_instance=hook_instance,
        unmapped=extra,
        patient_reference=patient_reference,
    )
    return assessment, cards
