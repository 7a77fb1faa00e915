"""Conclusions of a rule: each body validated by its kind's model, then checked against the ruleset.

The models (:data:`~ipm_cds.ruleset.model.CONCLUSIONS`) say what a conclusion may say; this module checks
what needs the ruleset and the rule (catalogue codes, bound aliases, fact fields, templates) and builds the
IR conclusion. It works on the rule compiler of :mod:`ipm_cds.ruleset.compile`, which calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..model.facts.schema import SIDES, FieldSpec
from . import ir
from .model import (
    CONCLUSIONS,
    AlertBody,
    AntithromboticHoldBody,
    DeriveBody,
    ExcludeBody,
    PrecautionBody,
    RecommendBody,
    RedFlagBody,
    ReferBody,
)
from .problems import did_you_mean, pydantic_problems
from .yamlsrc import Path_

if TYPE_CHECKING:
    from .compile import _RuleCompiler

CONCLUSION_KINDS = tuple(CONCLUSIONS)


def compile_conclusion(c: _RuleCompiler, item: Any, path: Path_) -> ir.Conclusion | None:
    """One conclusion: its body validated by its kind's model (model.CONCLUSIONS), then what needs the
    ruleset (catalogue codes, bound aliases, fact fields, templates)."""
    if not isinstance(item, dict) or len(item) != 1:
        c.error(path, "each conclusion is a mapping with one key", f"one of: {', '.join(CONCLUSION_KINDS)}")
        return None
    kind, raw = next(iter(item.items()))
    cpath = (*path, kind)
    model = CONCLUSIONS.get(kind)
    if model is None:
        c.error(cpath, f"unknown conclusion {kind!r}", did_you_mean(kind, CONCLUSION_KINDS), key=True)
        return None
    if not isinstance(raw, dict):
        c.error(cpath, f"{kind} takes a mapping", f"its fields: {', '.join(model.model_fields)}")
        return None
    try:
        body = model.model_validate(raw)
    except ValidationError as exc:
        c.problems.extend(pydantic_problems(exc, c.pos, cpath, model))
        return None
    if isinstance(body, RecommendBody):
        return _recommend(c, body, cpath)
    if isinstance(body, ExcludeBody | PrecautionBody):
        return _exclude_or_precaution(c, body, raw, cpath)
    if isinstance(body, AlertBody):
        message = c.template(body.message, (*cpath, "message"))
        return ir.Alert(body.code, body.severity, message) if message else None
    if isinstance(body, ReferBody):
        if body.to not in c.ctx.referrals:
            c.error((*cpath, "to"), f"unknown referral target {body.to!r}", did_you_mean(body.to, c.ctx.referrals))
            return None
        reason = c.template(body.reason, (*cpath, "reason"))
        return ir.Refer(body.to, body.urgency, reason) if reason else None
    if isinstance(body, RedFlagBody):
        message = c.template(body.message, (*cpath, "message"))
        return ir.RedFlag(body.code, message) if message else None
    if isinstance(body, AntithromboticHoldBody):
        return _hold(c, body, cpath)
    assert isinstance(body, DeriveBody)
    return _derive(c, body, cpath)


def _recommend(c: _RuleCompiler, body: RecommendBody, cpath: Path_) -> ir.Conclusion | None:
    if body.intervention not in c.ctx.interventions:
        c.error(
            (*cpath, "intervention"),
            f"unknown intervention {body.intervention!r}",
            did_you_mean(body.intervention, c.ctx.interventions),
        )
        return None
    target: list[tuple[str, ir.Value]] = []
    regions = c.ctx.fact_types["pain"].fields["region"].values
    for key, vocabulary in (("region", regions), ("side", SIDES), ("levels", None)):
        raw = getattr(body.target, key)
        if raw is None:
            continue
        expected = FieldSpec("str", f"target {key}", vocabulary) if vocabulary else None
        val = c.value(raw, (*cpath, "target", key), expected)
        if val is not None:
            target.append((key, val))
    rationale = c.template(body.rationale, (*cpath, "rationale"))
    return ir.Recommend(body.intervention, tuple(target), rationale) if rationale else None


def _exclude_or_precaution(
    c: _RuleCompiler, body: ExcludeBody | PrecautionBody, raw: dict[str, Any], cpath: Path_
) -> ir.Conclusion | None:
    kind = "exclude" if isinstance(body, ExcludeBody) else "precaution"
    codes = c.codes(raw, cpath, c.ctx.interventions, kind)
    text_key = "reason" if isinstance(body, ExcludeBody) else "text"
    text = c.template(getattr(body, text_key), (*cpath, text_key))
    region: ir.Value | None = None
    if body.region is not None:
        region = c.value(body.region, (*cpath, "region"), c.ctx.fact_types["pain"].fields["region"])
        if region is None:
            return None
    if codes is None or text is None:
        return None
    if isinstance(body, PrecautionBody):
        return ir.Precaution(codes[0], codes[1], region, text)
    return ir.Exclude(codes[0], codes[1], region, body.severity, text)


def _hold(c: _RuleCompiler, body: AntithromboticHoldBody, cpath: Path_) -> ir.Conclusion | None:
    if body.medication in c.unresolved or body.candidate in c.unresolved:
        return None  # the alias's own pattern is reported; this reference is not reported again
    bound = c.aliases.get(body.medication)
    aggregate = c.aggregates.get(bound or "")
    # a medication fact, or a count of medications by agent (the advice reads the agent and the indication)
    by_agent = (
        aggregate is not None
        and aggregate.function == "count"
        and aggregate.source_type == "medication"
        and "agent" in aggregate.by
    )
    if bound != "medication" and not by_agent:
        c.error(
            (*cpath, "medication"),
            "medication names an alias bound to a medication fact or to a count of medications by agent",
            "e.g. medication: {count_of: {type: medication, antithrombotic: true}, by: [agent, indication]}",
        )
        return None
    bound_candidate = c.aliases.get(body.candidate)
    counted = c.aggregates.get(bound_candidate or "")
    # a candidate, or a count of candidates: the advice is then given for each candidate counted
    if bound_candidate != "candidate" and not (
        counted is not None and counted.function == "count" and counted.source_type == "candidate"
    ):
        c.error(
            (*cpath, "candidate"),
            "candidate names an alias bound to a candidate fact or to a count of candidates",
            "e.g. candidate: {count_of: {type: candidate}, count: {gte: 1}}",
        )
        return None
    return ir.AntithromboticHold(body.medication, body.candidate, body.upgrade)


def _derive(c: _RuleCompiler, body: DeriveBody, cpath: Path_) -> ir.Conclusion | None:
    if body.fact not in c.ctx.fact_types:
        c.error((*cpath, "fact"), f"cannot derive {body.fact!r}")
        return None
    out: list[tuple[str, ir.Value]] = []
    for key, raw in body.set.items():
        val = c.value(raw, (*cpath, "set", key), None)
        if val is not None:
            out.append((key, val))
    return ir.Derive(body.fact, tuple(sorted(out, key=lambda kv: kv[0])))
