"""order-select / order-sign: the draft orders become requested procedures, the engine evaluates ONCE, and each
order gets one card with its verdict (appropriate now / not appropriate, with the criterion and rule / cannot
tell yet, with the missing data) and every safety judgement on it (antithrombotic hold and restart, deferrals,
red flags, cautions). The verdict carries its own why-not: no second, explaining run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...model.assessment import Assessment, RequestedVerdict
from .cards import (
    TOPIC_RULESET,
    Indicator,
    _card,
    _Context,
    _context,
    _md,
    _sorted,
    _target,
    _uid,
    _unmapped_card,
    summary,
)
from .patient_view import _alert_card, _deferred

if TYPE_CHECKING:
    from datetime import date

    from ...engine.facade import Engine
    from ...model.patient import PatientCase
    from ...ruleset.loader import Ruleset
    from ..fhir import Unmapped

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
        detail += [
            f"- `{m.field}` of {_md(m.item)}" + (f" (needed by {', '.join(m.needed_by)})" if m.needed_by else "")
            for m in v.missing
        ]
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
    missing = sorted({m.field for m in v.missing})
    head = f"{v.name}" + (f" ({target})" if target else "") + ": "
    # cannot tell: the verdict's own summary names the data it waits for
    head += v.summary[:1].lower() + v.summary[1:] if v.verdict == "cannot_tell" else _VERDICT_LABEL[v.verdict]
    return _card(
        ctx,
        key=(order or "", v.intervention, target),
        kind="requested",
        indicator=indicator,
        text=head,
        detail=detail,
        bases=bases,
        facts={
            "intervention": v.intervention,
            "verdict": v.verdict,
            **({"order": order} if order else {}),
            "blocking": blocking,
            **({"missing": missing} if missing else {}),
        },
        suggestions=suggestions or None,
        selection="at-most-one",
        reasons="exclusion" if v.verdict == "not_appropriate" else None,
        topic=None if bases else (TOPIC_RULESET, ctx.label, f"Requested {v.intervention}"),
    )


def requested_cards(
    assessment: Assessment,
    *,
    ruleset: Ruleset | None = None,
    hook_instance: str | None = None,
    unmapped: Sequence[Unmapped] = (),
    patient_reference: str | None = None,
    orders: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Cards for the requested procedures of an assessment: one per requested order, with its verdict; the
    critical alerts (red flags block every elective procedure); data that could not be read.

    ``orders``: only the requests with these order ids get a card (the hook's draft orders); all when None."""
    ctx = _context(assessment, ruleset, hook_instance, patient_reference)
    cards: list[dict[str, Any]] = []
    deferred_shown: set[str] = set()
    for alert in assessment.alerts:
        if alert.severity == "critical":
            suppressed = [e for e in assessment.excluded if e.kind == "red_flag" and e.basis.rule == alert.basis.rule]
            referrals = [r for r in assessment.referrals if r.basis.rule == alert.basis.rule]
            cards.append(_alert_card(ctx, alert, referrals, suppressed, _deferred(assessment, alert, deferred_shown)))
    wanted = set(orders) if orders is not None else None
    cards += [_requested_card(ctx, v) for v in assessment.requested if wanted is None or v.order in wanted]
    unmapped_card = _unmapped_card(ctx, assessment, unmapped)
    if unmapped_card is not None:
        cards.append(unmapped_card)
    return _sorted(list({c["uuid"]: c for c in cards}.values()))


def order_case(
    patient: PatientCase, draft_orders: Mapping[str, Any], ruleset: Ruleset, selections: Sequence[str] | None = None
) -> tuple[PatientCase, list[str], list[tuple[str, str]]]:
    """The patient with the draft orders as requested procedures, the order ids that became requests, and the
    ServiceRequests of the ruleset's procedures that could not be read (reference, why).

    The hook's orders replace a request of the record with the same id (the prefetch may hold the draft too);
    orders for anything that is not one of the ruleset's interventions (a lab test) are not ipm-cds's business
    and are left out silently."""
    from ..service_requests import NOT_AN_INTERVENTION, requested_from_bundle

    mapped = requested_from_bundle(draft_orders, ruleset, selections)
    ids = sorted({str(r["id"]) for r in mapped.requested if r.get("id") is not None})
    kept = [r.model_dump(mode="json", exclude_none=True) for r in patient.requested if r.id not in ids]
    case = ruleset.parse_patient(
        {**patient.model_dump(mode="json", exclude_none=True), "requested": [*kept, *mapped.requested]}
    )
    unread = [(ref, why) for ref, why in mapped.unmapped if why != NOT_AN_INTERVENTION]
    return case, ids, unread


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
    """order-select / order-sign in ONE evaluation: the draft ServiceRequests (all of them, or the
    ``selections``) become the patient's requested procedures (:mod:`ipm_cds.interop.service_requests`: the
    region from bodySite, the levels, or a code that fixes it; else the verdict names it missing), the engine
    evaluates once, and each order gets one card with its verdict.

    No card when none of the orders is one of the ruleset's interventions. ServiceRequests of the ruleset's
    procedures that could not be read (a status not under consideration) are listed with the unread data."""
    case, ids, unread = order_case(patient, draft_orders, engine.ruleset, selections)
    assessment = engine.evaluate(case, as_of=as_of)
    cards = order_answer(
        assessment,
        ids,
        unread,
        ruleset=engine.ruleset,
        hook_instance=hook_instance,
        unmapped=unmapped,
        patient_reference=patient_reference,
    )
    return assessment, cards


def order_answer(
    assessment: Assessment,
    orders: Sequence[str],
    unread: Sequence[tuple[str, str]],
    *,
    ruleset: Ruleset | None = None,
    hook_instance: str | None = None,
    unmapped: Sequence[Unmapped] = (),
    patient_reference: str | None = None,
) -> list[dict[str, Any]]:
    """The cards of an order hook from the assessment of :func:`order_case`'s patient: one per order (``orders``)
    with its verdict, the critical alerts, and what could not be read (``unread`` orders, ``unmapped`` data).
    No card when no order is one of the ruleset's interventions."""
    from ..fhir import Unmapped as _Unmapped

    if not orders and not unread:
        return []
    extra = [*unmapped, *(_Unmapped(ref, "not_current", why) for ref, why in unread)]
    return requested_cards(
        assessment,
        ruleset=ruleset,
        hook_instance=hook_instance,
        unmapped=extra,
        patient_reference=patient_reference,
        orders=orders,
    )
