"""patient-view: the whole assessment as cards (red flags and alerts, exclusions, precautions, candidates,
referrals, missing data, data not read)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...model.assessment import Alert, Assessment, Candidate, DeferredReferral, Exclusion, Precaution, Referral
from .cards import (
    _card,
    _Context,
    _context,
    _md,
    _missing_card,
    _referral_suggestion,
    _sorted,
    _target,
    _unmapped_card,
)

if TYPE_CHECKING:
    from ...ruleset.loader import Ruleset
    from ..fhir import Unmapped


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


def patient_view_cards(
    assessment: Assessment,
    *,
    ruleset: Ruleset | None = None,
    hook_instance: str | None = None,
    unmapped: Sequence[Unmapped] = (),
    patient_reference: str | None = None,
) -> list[dict[str, Any]]:
    """The whole assessment as cards: red flags and alerts, exclusions, precautions, candidates, referrals,
    the treatment response (:mod:`ipm_cds.interop.response_card`, when the record holds series), missing data,
    and the data that could not be read (``unmapped`` from :mod:`ipm_cds.interop.fhir`)."""
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
    from ..response_card import response_card  # (it builds on this package)

    response = response_card(assessment, label=ctx.label)  # the treatment response, when the record holds series
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
