"""Order cards from an assessment and its ``explain`` analysis (:func:`order_cards`): the path the order hooks
took before requested procedures had verdicts. The hooks now answer from the verdicts in one evaluation
(:func:`ipm_cds.interop.cds_hooks.evaluate_orders`); this stays for callers that already hold an explanation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...model.assessment import Assessment, Exclusion
from .cards import (
    CARD_EXTENSION,
    TOPIC_RULESET,
    _card,
    _Context,
    _context,
    _md,
    _missing_card,
    _sorted,
    _target,
    _uid,
    _unmapped_card,
    summary,
)
from .patient_view import _alert_card, _candidate_card, _deferred, _precaution_cards

if TYPE_CHECKING:
    from ...model.explanation import WhyNot
    from ...ruleset.loader import Ruleset
    from ..fhir import OrderedIntervention, Unmapped


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
