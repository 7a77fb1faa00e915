"""Verdicts on requested procedures, and why-not for every intervention the presentation brings into scope.

A requested procedure (``PatientCase.requested``) yields, from the start of the run, the very ``candidate``
fact that a recommendation of the same intervention and target makes (:meth:`CandidateFacts.requested`:
same content, same key). Every safety rule that matches candidates therefore judges it exactly as it
judges a proposed candidate, whether or not a rule also proposes it: by construction, with no rule
duplicated. Rules that match the ``requested`` fact itself (its approach, levels, guidance, steroid,
planned date) add the checks that only an order can carry.

This module reads the run and the resolved assessment, and adds:

- ``Assessment.requested``: one :class:`RequestedVerdict` per requested procedure: ``appropriate`` (a rule
  proposes it for this target and nothing blocks it), ``not_appropriate`` (a red flag, an absolute
  contraindication or an unmet criterion, with its rule; or no indication rule met, with the first condition
  each fails), or ``cannot_tell`` (the data the indication or a safety rule needs), with every safety
  judgement that applies to it;
- ``Assessment.scope``: each intervention that a scope rule (a rule deriving ``in_scope`` facts, in the
  rule files) brings into scope, as a candidate, an exclusion, not indicated or not decidable yet.

Which rules apply is the rules' business: a rule applies to a requested procedure when it matches its
candidate fact (or its ``requested`` fact), or names its intervention (or every elective one) without
matching a candidate; a red flag applies to every elective procedure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Literal

from ..model.assessment import (
    Assessment,
    Basis,
    Citation,
    MissingData,
    RequestedVerdict,
    SafetyJudgement,
    ScopeEntry,
    Target,
    VerdictReason,
    trusted,
    trusted_basis,
    trusted_copy,
    trusted_scope_entry,
    trusted_verdict_reason,
)
from ..model.facts.normalise import Fact
from ..ruleset import ir
from .driver import CandidateFacts, Firing, Run, in_effect, resolve_value
from .explain import _Explainer
from .program import Program
from .resolve import _RISK, _RISK_UP, BleedingRisk, _codes, _hold_text, _index, _Resolver
from .rule_index import (
    about_candidates,
    active_rules,
    may_block,
    may_concern,
    recommenders,
    statically_concerned,
    unset_rules,
    upstream,
    upstream_all,
)

SCOPE_FACT = "in_scope"
"""The derived fact type that scope rules make: ``family``, ``intervention`` and ``region`` fields."""

_BLOCKING = frozenset({"red_flag", "absolute_contraindication"})
_KIND_ORDER = {
    k: i
    for i, k in enumerate(
        (
            "red_flag",
            "absolute_contraindication",
            "unmet_criterion",
            "relative_contraindication",
            "antithrombotic",
            "caution",
            "alert",
            "referral",
        )
    )
}
JudgementKind = Literal[
    "red_flag",
    "absolute_contraindication",
    "unmet_criterion",
    "relative_contraindication",
    "caution",
    "antithrombotic",
    "alert",
    "referral",
]


@dataclass
class _Indication:
    """What the indication rules of one intervention say about one target region."""

    met_by: str | None = None  # rule ref that proposes it for this target
    met_basis: Basis | None = None
    reasons: list[VerdictReason] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)  # refs of indication rules waiting for data
    has_rules: bool = False


@dataclass
class _Verdicts:
    program: Program
    run: Run
    assessment: Assessment
    unbound: Mapping[str, ir.Rule]

    def __post_init__(self) -> None:
        index = _index(self.program)
        self.resolver = _Resolver(self.program, self.run, index)
        self.explainer = _Explainer(self.program, self.run, self.unbound)
        self.elective: Mapping[str, bool] = index.elective
        self.missing_by_ref: dict[str, list[MissingData]] = {}
        for entry in self.assessment.missing_data:
            for ref in entry.needed_by:
                self.missing_by_ref.setdefault(ref, []).append(entry)
        self.indication_memo: dict[tuple[str, str | None, str | None, bool], _Indication] = {}

    @cached_property
    def live(self) -> list[Firing]:
        """The firings no unless clause blocked, in resolution order (the first judgement of a kind stands)."""
        return sorted(
            (f for f in self.run.firings if not self.run.is_blocked(f)),
            key=lambda f: (f.rule.stratum, f.rule.id, f.signature),
        )

    @cached_property
    def live_by_rule(self) -> dict[str, list[Firing]]:
        """Rule id -> its unblocked firings, in the run's order (what :meth:`indication` makes of them does not
        depend on their order: the regions they target, and whether one targets this one)."""
        out: dict[str, list[Firing]] = {}
        blocked = self.run.blocked  # (Run.is_blocked, inline)
        for firing in self.run.firings:
            if (firing.rule.id, firing.signature) not in blocked:
                made = out.get(firing.rule.id)
                if made is None:
                    out[firing.rule.id] = [firing]
                else:
                    made.append(firing)
        return out

    def basis(self, rule: ir.Rule) -> Basis:
        return self.resolver.basis(rule)

    # -- indication ---------------------------------------------------------------------------------

    def indication(self, code: str, region: str | None, side: str | None, detailed: bool = True) -> _Indication:
        """``detailed``: name the first condition each indication rule fails (the explainer's analysis, for
        a requested procedure); otherwise name the rule and its criteria (``explain`` shows the condition)."""
        key = (code, region, side, detailed)
        memo = self.indication_memo.get(key)
        if memo is not None:
            return memo
        out = _Indication()
        inactive: list[VerdictReason] = []
        messages = self.resolver.messages
        active = active_rules(self.program)
        depends = upstream(self.program)
        as_of = self.assessment.as_of
        for rule, recs in recommenders(self.program).get(code, ()):
            out.has_rules = True
            live = active.get(rule.id)
            if live is None or not in_effect(live, as_of):
                if live is None:
                    text = self._inactive_text(rule)
                else:
                    why = messages["rule.not_in_effect"].render(date=as_of.isoformat())
                    text = messages["reason.inactive"].render(rule=rule.ref, why=why)
                reason = trusted_verdict_reason(text, self._static_basis(rule))
                inactive.append(reason)
                out.reasons.append(reason)
                continue
            regions: set[str] = set()
            for firing in self.live_by_rule.get(live.id, ()):
                for rec in recs:
                    target = {k: resolve_value(v, firing.bindings) for k, v in rec.target}
                    t_region, t_side = target.get("region"), target.get("side")
                    if region is not None and t_region is not None and t_region != region:
                        regions.add(str(t_region))
                        continue
                    if side is not None and t_side is not None and t_side != side:
                        regions.add(f"{t_region or region} ({t_side} side)")  # the other side: said, not skipped
                        continue
                    if out.met_by is None:
                        out.met_by, out.met_basis = live.ref, self.basis(live)
            if out.met_by == live.ref:
                continue
            waiting = [ref for ref in (live.ref, *depends.get(live.id, ())) if ref in self.missing_by_ref]
            if waiting:
                out.waiting.update(waiting)
                continue
            if regions:
                for other in sorted(regions):
                    text = messages["reason.other_target"].render(rule=live.ref, region=other.replace("_", " "))
                    out.reasons.append(trusted_verdict_reason(text, self.basis(live)))
                continue
            if not detailed:
                out.reasons.append(trusted_verdict_reason(self._not_met_text(live), self.basis(live)))
                continue
            analysis = self.explainer.analyse(live)
            check = (
                None
                if analysis.outcome == "blocked"
                else next((c for c in analysis.checks if c.outcome != "missing"), None)
            )
            if check is None and analysis.because:
                check = next((c for b in analysis.because for c in b.checks if c.outcome != "missing"), None)
            if check is not None:
                text = messages["reason.condition"].render(
                    rule=live.ref, condition=check.condition, actual=check.actual
                )
                out.reasons.append(trusted_verdict_reason(text, self.basis(live)))
            elif analysis.outcome == "blocked":
                text = messages["reason.blocked"].render(rule=live.ref, detail="; ".join(analysis.details))
                out.reasons.append(trusted_verdict_reason(text, self.basis(live)))
        if out.met_by is not None:
            out.reasons, out.waiting = [], set()
        elif inactive and len(inactive) < len(out.reasons):
            # the active rules' reasons say why (a reason is about its own rule: none equals another rule's)
            dropped = {id(x) for x in inactive}
            out.reasons = [x for x in out.reasons if id(x) not in dropped]
        self.indication_memo[key] = out
        return out

    def _not_met_text(self, rule: ir.Rule) -> str:
        """That a rule's criteria are not met, naming them (made once per program and rule)."""
        texts = _rule_texts(self.program)
        text = texts.get(("reason.not_met", rule.ref))
        if text is None:
            text = self.resolver.messages["reason.not_met"].render(
                rule=rule.ref, criteria=", ".join(sorted(rule.criteria))
            )
            texts[("reason.not_met", rule.ref)] = text
        return text

    def _inactive_text(self, rule: ir.Rule) -> str:
        """Why a rule that is not part of the program does not run (made once per program and rule)."""
        texts = _rule_texts(self.program)
        text = texts.get(("reason.inactive", rule.ref))
        if text is None:
            why = self.program.disabled.get(rule.ref)
            text = self.resolver.messages["reason.inactive"].render(rule=rule.ref, why=why or "")
            texts[("reason.inactive", rule.ref)] = text
        return text

    def _static_basis(self, rule: ir.Rule) -> Basis:
        """The basis of a rule of the ruleset, whether the program runs it or not."""
        made = _static_bases(self.program).get(rule.ref)
        if made is None:
            sources = self.program.ruleset.sources
            made = (
                tuple(sorted(rule.criteria)),
                tuple(
                    Citation(id=s, citation=sources[s].citation, url=sources[s].url, year=sources[s].year)
                    for s in sorted(rule.sources)
                ),
            )
            _static_bases(self.program)[rule.ref] = made
        return trusted_basis(rule.ref, list(made[0]), list(made[1]))

    # -- safety -------------------------------------------------------------------------------------

    def judgements(self, request: Fact, candidate: Fact) -> tuple[list[SafetyJudgement], set[str]]:
        """Every safety judgement that applies to the requested procedure, and the refs of the safety rules
        that concern it (for the missing data that could change them)."""
        code = str(candidate.values["intervention"])
        region = candidate.values.get("region")
        elective = self.elective.get(code, True)
        r = self.resolver
        out: dict[tuple[object, ...], SafetyJudgement] = {}

        def add(kind: JudgementKind, text: str, rule: ir.Rule, **extra: object) -> None:
            j = trusted(
                SafetyJudgement, kind=kind, blocking=kind in _BLOCKING, text=text, basis=self.basis(rule), **extra
            )
            out.setdefault((kind, text, extra.get("medication"), rule.ref), j)

        for firing in self.live:
            bound = firing.bindings
            cands = [f for f in bound.values() if f.type == "candidate"]
            if cands and all(f.key != candidate.key for f in cands):
                continue  # about another candidate
            requests = [f for f in bound.values() if f.type == "requested"]
            if requests and all(f.key != request.key for f in requests):
                continue  # about another request
            rule = firing.rule
            about_it = bool(cands or requests)
            for c in rule.conclusions:
                if isinstance(c, ir.RedFlag):
                    if elective:
                        add("red_flag", r.messages["red_flag.exclusion"].render(flag=c.code.replace("_", " ")), rule)
                elif isinstance(c, ir.Exclude | ir.Precaution):
                    where = resolve_value(c.region, bound) if c.region is not None else None
                    hit = (elective if c.elective_scope else code in _codes(c.interventions, bound)) and (
                        where is None or where == region
                    )
                    if not hit:
                        continue
                    if isinstance(c, ir.Precaution):
                        add("caution", r.render(c.text, bound), rule)
                    else:
                        kind: JudgementKind = {
                            "absolute": "absolute_contraindication",
                            "unmet": "unmet_criterion",
                            "relative": "relative_contraindication",
                        }[c.severity]  # type: ignore[assignment]
                        add(kind, r.render(c.reason, bound), rule)
                elif isinstance(c, ir.AntithromboticHold):
                    if all(f.key != candidate.key for f in self.run.stands_for(bound[c.candidate], "candidate")):
                        continue
                    hold = self.hold(bound[c.medication], candidate, c.upgrade)
                    if hold is not None:
                        text, medication, risk, approval = hold
                        add(
                            "antithrombotic",
                            text,
                            rule,
                            medication=medication,
                            bleeding_risk=risk,
                            requires_prescriber_approval=approval,
                        )
                elif isinstance(c, ir.Alert) and about_it:
                    add("alert", r.render(c.message, bound), rule)
                elif isinstance(c, ir.Refer) and about_it:
                    add("referral", r.render(c.reason, bound), rule)
        concerned = self.concerned_refs(request, candidate, code, elective)
        judged = sorted(out.values(), key=lambda j: (_KIND_ORDER[j.kind], j.medication or "", j.text, j.basis.rule))
        return judged, concerned

    def hold(self, medication: Fact, candidate: Fact, upgrade: bool) -> tuple[str, str, BleedingRisk, bool] | None:
        entry = self.program.ruleset.medications[str(medication.values["agent"])]
        secondary = medication.values.get("indication") == "secondary_prevention"
        table = entry.secondary_prevention_hold if secondary and entry.secondary_prevention_hold else entry.hold
        if table is None:
            return None
        base = _RISK[str(candidate.values.get("bleeding_risk", "high"))]
        risk: BleedingRisk = _RISK_UP[base] if upgrade else base
        approval = entry.prescriber_approval_always or secondary
        text = _hold_text(
            self.resolver.messages,
            entry.name,
            getattr(table, risk),
            risk,
            entry.restart,
            approval,
            base if upgrade else None,
        )
        return text, entry.code, risk, approval

    def concerned_refs(self, request: Fact, candidate: Fact, code: str, elective: bool) -> set[str]:
        """Safety rules whose missing data could change a judgement on this request."""
        refs = set(statically_concerned(self.program, code, elective))
        about = about_candidates(self.program)
        for ref, undecided in self.run.undecided_candidates.items():
            if ref in about and any(f.key == candidate.key for f in undecided):
                refs.add(ref)
        for (rule_id, _sig), _unknowns in self.run.unknown_blockers.items():
            for firing in self.live:
                if firing.rule.id == rule_id and any(
                    f.key in (candidate.key, request.key) for f in firing.bindings.values()
                ):
                    refs.add(firing.rule.ref)
        return refs

    # -- verdicts -----------------------------------------------------------------------------------

    def verdict(self, request: Fact, candidate_facts: CandidateFacts) -> RequestedVerdict:
        v = request.values
        candidate = candidate_facts.requested(request)
        code = str(v["intervention"])
        item = self.program.ruleset.interventions[code]
        region = str(v["region"]) if "region" in v else None
        side = str(v["side"]) if "side" in v else None
        messages = self.resolver.messages
        safety, concerned = self.judgements(request, candidate)
        target_missing = self._target_missing(request, code)
        indication = self.indication(code, region, side)  # no region: met when met for any target region
        if target_missing and (indication.met_by is not None or indication.waiting):
            # met (or waiting) for some target: whether for this order's, its region or levels must say
            indication = self._undecided(code)
        elif target_missing:
            target_missing = []  # no indication is met at any target: not appropriate, whatever the region
        # Missing data that could block it (a red flag, an exclusion) leaves the verdict open; missing data
        # behind a precaution or an alert is listed without changing it.
        missing_safety = self._missing(r for r in concerned if may_block(self.program, r))
        missing_other = self._missing(r for r in concerned if not may_block(self.program, r))
        missing_indication = self._missing(indication.waiting)
        missing = sorted(
            {
                (m.field, m.item): m for m in [*target_missing, *missing_safety, *missing_indication, *missing_other]
            }.values(),
            key=lambda m: (m.field, m.item),
        )
        blocking = [j for j in safety if j.blocking]
        unmet = [j for j in safety if j.kind == "unmet_criterion"]
        # Rules that cannot run because a threshold they need has no value under the profile: an indication
        # (or a rule it depends on) that cannot run leaves "not indicated" unproven; a safety rule that could
        # block the procedure and cannot run leaves "appropriate" unproven. Both are "cannot tell yet".
        unset_indication, unset_safety = self._unset(code, self.elective.get(code, True))
        reasons: list[VerdictReason] = []
        verdict: Literal["appropriate", "not_appropriate", "cannot_tell"]
        if blocking or unmet:
            verdict = "not_appropriate"
            stands = blocking or unmet
            reasons = [trusted_verdict_reason(j.text, j.basis) for j in stands]
            key = "verdict.blocked" if blocking else "verdict.unmet"
            summary = messages[key].render(rule=stands[0].basis.rule)
        elif (indication.met_by is not None and not missing_safety and unset_safety) or (
            indication.met_by is None and not missing_indication and not target_missing and unset_indication
        ):
            verdict = "cannot_tell"
            unset = unset_safety if indication.met_by is not None else unset_indication
            reasons = [self._unset_reason(rule) for rule in unset]
            summary = self._unset_summary(unset)
        elif indication.met_by is not None and not missing_safety:
            verdict = "appropriate"
            relative = sorted({j.basis.rule for j in safety if j.kind == "relative_contraindication"})
            summary = (
                messages["verdict.conditional"].render(rule=indication.met_by, conditions=", ".join(relative))
                if relative
                else messages["verdict.appropriate"].render(rule=indication.met_by)
            )
        elif (
            (indication.met_by is not None and missing_safety)
            or (indication.met_by is None and missing_indication)
            or target_missing
        ):
            verdict = "cannot_tell"
            waiting = (
                missing_safety
                if indication.met_by is not None
                else [*target_missing, *missing_indication, *missing_safety]
            )
            fields = sorted({m.field for m in waiting})
            summary = messages["verdict.cannot_tell"].render(fields=", ".join(fields))
        else:
            verdict = "not_appropriate"
            reasons = list(indication.reasons)
            key = "verdict.not_indicated" if indication.has_rules else "verdict.no_rule"
            summary = messages[key].render(name=item.name)
        planned = v.get("planned_date")
        dose = v.get("steroid_dose_mg")
        return trusted(
            RequestedVerdict,
            order=_opt(v.get("order")),
            intervention=code,
            name=item.name,
            status=v.get("status", "requested"),
            target=trusted(Target, region=region, side=side, levels=_opt(v.get("levels"))),
            approach=_opt(v.get("approach")),
            guidance=_opt(v.get("guidance")),
            planned_date=date.fromisoformat(str(planned)) if planned is not None else None,
            steroid_agent=_opt(v.get("steroid_agent")),
            steroid_dose_mg=float(dose) if isinstance(dose, int | float) else None,
            bleeding_risk=_RISK[str(candidate.values["bleeding_risk"])],
            verdict=verdict,
            summary=summary,
            proposed=indication.met_by is not None,
            indication=indication.met_basis,
            reasons=reasons,
            safety=safety,
            missing=missing,
        )

    def _target_missing(self, request: Fact, code: str) -> list[MissingData]:
        """The order's own target data that its verdict needs and the order does not carry: the region (an order
        whose code does not fix it), and the levels when the intervention's indications target levels."""
        v = request.values
        needed: list[str] = []
        recs_of_code = recommenders(self.program).get(code, ())
        if v.get("region") is None:
            needed.append("region")
        if v.get("levels") is None and any(
            name == "levels" for _rule, recs in recs_of_code for rec in recs for name, _ in rec.target
        ):
            needed.append("levels")
        if not needed:
            return []
        active = active_rules(self.program)
        rules = [active[rule.id] for rule, _ in recs_of_code if rule.id in active]
        return [
            trusted(
                MissingData,
                field=f"requested.{name}",
                item=request.label,
                needed_by=sorted(r.ref for r in rules),
                criteria=sorted({c for r in rules for c in r.criteria}),
                safety=True,  # the target decides which safety rules (region, bleeding risk) apply
            )
            for name in needed
        ]

    def _unset(self, code: str, elective: bool) -> tuple[list[ir.Rule], list[ir.Rule]]:
        """The rules that do not run because a parameter they read has no value under the profile: those the
        intervention's indication rests on (its indication rules and the rules deriving what they read), and the
        safety rules that could stand against it (a red flag for an elective procedure, an exclusion naming it, or
        one about candidates that does not rule its intervention out)."""
        unset = unset_rules(self.program)
        if not unset:
            return [], []
        by_id = {r.id: r for r in unset}
        indication_ids = {rule.id for rule, _ in recommenders(self.program).get(code, ())}
        indication_ids |= {
            ref.split("@", 1)[0] for rid in set(indication_ids) for ref in upstream_all(self.program).get(rid, ())
        }
        indication = [by_id[i] for i in sorted(indication_ids) if i in by_id]
        safety: list[ir.Rule] = []
        present = {f.type for f in self.run.facts}
        for rule in unset:
            if rule.id in indication_ids:
                continue
            if any(p.fact_type not in present and p.fact_type not in ("candidate", "requested") for p in rule.patterns):
                continue  # it matches something this record does not hold (a stent, a lab): it could not stand
            for c in rule.conclusions:
                if isinstance(c, ir.RedFlag) and elective:
                    safety.append(rule)
                    break
                if isinstance(c, ir.Exclude) and c.severity != "relative" and may_concern(rule, c, code, elective):
                    safety.append(rule)
                    break
        return indication, safety

    def _unset_reason(self, rule: ir.Rule) -> VerdictReason:
        return trusted_verdict_reason(self._inactive_text(rule), self._static_basis(rule))

    def _unset_summary(self, rules: Sequence[ir.Rule]) -> str:
        names = sorted({p for r in rules for p in r.params() if p not in self.program.parameters})
        fields = [f"parameter {n} (no value under profile {self.program.profile})" for n in names]
        return self.resolver.messages["verdict.cannot_tell"].render(fields=", ".join(fields))

    def _undecided(self, code: str) -> _Indication:
        """The indication of an order whose target is not known: not met, waiting for the target."""
        return _Indication(has_rules=code in recommenders(self.program))

    def _missing(self, refs: Iterable[str]) -> list[MissingData]:
        out: dict[tuple[str, str], MissingData] = {}
        for ref in refs:
            for entry in self.missing_by_ref.get(ref, ()):
                out[(entry.field, entry.item)] = entry
        return list(out.values())

    # -- scope --------------------------------------------------------------------------------------

    def scope(self, in_scope: Sequence[Fact]) -> list[ScopeEntry]:
        """``in_scope``: the run's scope facts, in the run's order."""
        entries: dict[tuple[str, str, str | None], ScopeEntry] = {}
        catalogue = self.program.ruleset.interventions
        makers: dict[str, ir.Rule] = {}
        for fact in in_scope:
            for firing in self.run.derived_by.get(fact.key, []):
                makers.setdefault(fact.key, firing.rule)
        for fact in sorted(in_scope, key=lambda f: f.label):
            code = str(fact.values.get("intervention", ""))
            if code not in catalogue or fact.key not in makers:
                continue
            family = str(fact.values.get("family", code))
            region = fact.values.get("region")
            region_s = str(region) if region is not None else None
            key = (family, code, region_s)
            if key in entries:
                continue
            entries[key] = self.scope_entry(family, code, region_s, makers[fact.key])
        return sorted(entries.values(), key=lambda e: (e.family, e.intervention, e.region or ""))

    def scope_entry(self, family: str, code: str, region: str | None, maker: ir.Rule) -> ScopeEntry:
        a = self.assessment
        name = self.program.ruleset.interventions[code].name
        in_scope_by = self.basis(maker)
        if any(c.intervention == code and (region is None or c.target.region == region) for c in a.candidates):
            return trusted_scope_entry(family, code, name, region, "candidate", in_scope_by)
        excluded = [e for e in a.excluded if e.intervention in (code, "all_elective")]
        if excluded:
            reasons = [trusted_verdict_reason(e.reason, e.basis) for e in excluded]
            return trusted_scope_entry(family, code, name, region, "excluded", in_scope_by, reasons=reasons)
        indication = self.indication(code, region, None, detailed=False)
        if indication.waiting:
            fields = sorted({m.field for m in self._missing(indication.waiting)})
            return trusted_scope_entry(family, code, name, region, "not_decidable", in_scope_by, missing=fields)
        return trusted_scope_entry(
            family, code, name, region, "not_indicated", in_scope_by, reasons=list(indication.reasons)
        )


def _rule_texts(program: Program) -> dict[tuple[str, str], str]:
    """(message id, rule ref) -> the message about that rule, the same for every patient: made when first needed
    (bounded by the ruleset's rules), kept with the program."""
    texts = program.cache.get("verdicts.texts")
    if texts is None:
        texts = program.cache["verdicts.texts"] = {}
    assert isinstance(texts, dict)
    return texts


def _static_bases(program: Program) -> dict[str, tuple[tuple[str, ...], tuple[Citation, ...]]]:
    """Rule ref -> its criteria and citations, sorted, for any rule of the ruleset (made when first needed)."""
    bases = program.cache.get("verdicts.static_bases")
    if bases is None:
        bases = program.cache["verdicts.static_bases"] = {}
    assert isinstance(bases, dict)
    return bases


def _opt(value: object) -> str | None:
    return str(value) if value is not None else None


def add_verdicts(program: Program, run: Run, assessment: Assessment, unbound: Mapping[str, ir.Rule]) -> Assessment:
    """The assessment with a verdict per requested procedure and the interventions in scope."""
    requested: list[Fact] = []
    in_scope: list[Fact] = []
    for fact in run.facts:
        if fact.type == "requested":
            requested.append(fact)
        elif fact.type == SCOPE_FACT:
            in_scope.append(fact)
    if not requested and not in_scope:
        return assessment
    v = _Verdicts(program, run, assessment, unbound)
    verdicts: list[RequestedVerdict] = []
    if requested:  # (most records request nothing: they need no candidate facts)
        made = CandidateFacts(program)
        verdicts = [v.verdict(f, made) for f in sorted(requested, key=_request_order)]
    return trusted_copy(assessment, {"requested": verdicts, "scope": v.scope(in_scope) if in_scope else []})


def _request_order(fact: Fact) -> tuple[str, ...]:
    keys = ("intervention", "region", "side", "levels", "order")
    return (*(str(fact.values.get(k, "")) for k in keys), repr(sorted(fact.values.items())))
