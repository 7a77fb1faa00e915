"""Explanations as data: why each conclusion stands, and why each other intervention is not a candidate.

What ``Engine.explain`` returns (:class:`Explanation`); :mod:`ipm_cds.engine.explain` builds it from an
evaluation's run.
"""

from __future__ import annotations

from pydantic import Field

from .assessment import Assessment, _Out

__all__ = ["Check", "ConclusionExplanation", "Derivation", "Explanation", "MatchedFact", "RuleAnalysis", "WhyNot"]


class MatchedFact(_Out):
    """A fact a rule matched, with its values, and how it came to be when a rule derived it."""

    alias: str = Field(description="The rule's name for the fact in its `when` clause.")
    fact: str = Field(description="The fact's label, e.g. 'pain[region=lumbar, character=axial]'.")
    values: dict[str, str | int | float | bool] = Field(description="The fact's attributes, as the rule read them.")
    derived_by: list[Derivation] = Field(default_factory=list, description="How a derived fact came to be.")
    aggregated_from: list[str] = Field(
        default_factory=list, description="The facts an aggregate (latest, earliest, count_of) was computed from."
    )


class Derivation(_Out):
    """The rule that derived a fact, and the facts it matched to do so (recursively)."""

    rule: str = Field(description="The deriving rule, as id@version.")
    matched: list[MatchedFact] = Field(description="The facts it matched.")


class ConclusionExplanation(_Out):
    """Why one conclusion of the assessment stands: its rule and the facts that rule matched."""

    conclusion: str = Field(description="What was concluded, e.g. 'candidate facet_rfa (lumbar)'.")
    rule: str = Field(description="The rule that drew it, as id@version.")
    matched: list[MatchedFact] = Field(description="The facts the rule matched, with their derivation trees.")


class Check(_Out):
    """One condition of a rule, checked against one fact."""

    pattern: str = Field(description="The rule's alias for the fact, and its type.")
    fact: str | None = Field(description="The fact examined; None when no fact of the type exists.")
    condition: str = Field(description="The condition, with the parameter behind a threshold named.")
    actual: str = Field(description="The patient's value (or 'missing').")
    outcome: str = Field(description="'failed', 'missing' or 'no such fact'.")


class RuleAnalysis(_Out):
    """Why one rule that could have proposed an intervention did not (or did)."""

    rule: str = Field(description="The rule, as id@version.")
    outcome: str = Field(description="inactive | blocked | overridden | missing data | condition failed | fired")
    details: list[str] = Field(default_factory=list, description="What the outcome rests on, in words.")
    checks: list[Check] = Field(default_factory=list, description="The conditions that failed or lacked data.")
    because: list[RuleAnalysis] = Field(default_factory=list, description="Why a needed derived fact is absent.")


class WhyNot(_Out):
    """Why an intervention of the catalogue is not a candidate: every rule that could have proposed it."""

    intervention: str = Field(description="The intervention's code in the ruleset's catalogue.")
    name: str = Field(description="The intervention's display name.")
    status: str = Field(description="'excluded' or 'not proposed'.")
    rules: list[RuleAnalysis] = Field(description="Each rule that could have proposed it, analysed.")


class Explanation(_Out):
    """An assessment with its reasons: why each conclusion stands, and why not each other intervention.

    What ``Engine.explain`` returns. Immutable and hashable.
    """

    assessment: Assessment = Field(description="The assessment explained.")
    conclusions: list[ConclusionExplanation] = Field(description="Each conclusion, its rule and matched facts.")
    why_not: list[WhyNot] = Field(description="Each intervention that is not a candidate, and why.")


MatchedFact.model_rebuild()
