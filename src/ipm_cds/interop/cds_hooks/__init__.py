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

The package, by responsibility: :mod:`.cards` (the card itself, its context and text helpers, the missing-data
and not-read cards, the OperationOutcome), :mod:`.patient_view` (the whole assessment as cards),
:mod:`.requested` (order-select / order-sign: draft orders as requested procedures, one evaluation, one card
per order with its verdict) and :mod:`.explained_orders` (order cards from an ``explain`` analysis, the earlier
path, kept for callers that hold one). Every public name is importable from here.
"""

from __future__ import annotations

from .cards import (
    CARD_EXTENSION,
    CDS_HOOKS_VERSION,
    REFERRAL_SYSTEM,
    SUMMARY_MAX,
    TOPIC_RULE,
    TOPIC_RULESET,
    Indicator,
    operation_outcome,
    summary,
)
from .explained_orders import order_cards
from .patient_view import patient_view_cards
from .requested import evaluate_orders, order_answer, order_case, requested_cards

__all__ = [
    "CARD_EXTENSION",
    "CDS_HOOKS_VERSION",
    "REFERRAL_SYSTEM",
    "SUMMARY_MAX",
    "TOPIC_RULE",
    "TOPIC_RULESET",
    "Indicator",
    "evaluate_orders",
    "operation_outcome",
    "order_answer",
    "order_cards",
    "order_case",
    "patient_view_cards",
    "requested_cards",
    "summary",
]
