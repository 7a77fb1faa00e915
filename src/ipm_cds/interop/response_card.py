"""One CDS Hooks ``patient-view`` card summarising the treatment response (issue 16).

:func:`ipm_cds.interop.cds_hooks.patient_view_cards` makes a card per alert, the ``outcomes.*`` alerts
among them, and adds this one (from the same assessment) when the record holds series. This card gathers
them: the summary line names the most important finding, the detail carries the whole response
classification as a markdown table (rule and text of each finding, in the ruleset's own words), and, when
the service publishes the HTML report (``ipm-cds report``), a link to it.
Nothing here classifies: the rules did (rules/ipm-core/rules/outcomes.yaml).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from ..model.assessment import Alert, Assessment
from .cds_hooks import CARD_EXTENSION, TOPIC_RULESET, Indicator, summary

__all__ = ["OUTCOME_PREFIX", "response_card"]

OUTCOME_PREFIX = "outcomes."
"""Alert codes of the response rules."""

_NAMESPACE = uuid.UUID("0b5e7f62-2c1d-5a8e-8f43-6d2c9a1e4b70")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
_RANK = {"critical": 0, "warning": 1, "info": 2}


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _order(alert: Alert) -> tuple[int, str, str]:
    return _RANK[alert.severity], alert.code, alert.message


def response_card(
    assessment: Assessment, *, report_url: str | None = None, label: str = "ipm-cds"
) -> dict[str, Any] | None:
    """The response summary card, or None when the assessment holds no response finding.

    ``report_url``: where the service serves this patient's HTML report (an ``absolute`` link is added).
    The card's indicator is the most severe finding's; its uuid is stable for the same findings.
    """
    findings = sorted((a for a in assessment.alerts if a.code.startswith(OUTCOME_PREFIX)), key=_order)
    if not findings:
        return None
    top = findings[0]
    indicator: Indicator = top.severity
    rows = [
        "| Severity | Finding | Rule |",
        "|---|---|---|",
        *(f"| {a.severity} | {_md(a.message)} | `{a.basis.rule}` |" for a in findings),
    ]
    prov = assessment.provenance
    detail = [
        f"**Treatment response** as of {prov.as_of.isoformat()} ({len(findings)} findings)",
        "",
        *rows,
        "",
        f"Ruleset {_md(prov.ruleset_id)} {_md(prov.ruleset_version)}, profile {_md(prov.profile)}.",
        "",
        f"*{_md(assessment.disclaimer)}*",
    ]
    key = "|".join([prov.ruleset_sha256, prov.as_of.isoformat(), *(f"{a.code}:{a.message}" for a in findings)])
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid5(_NAMESPACE, key)),
        "summary": summary(f"Treatment response: {top.message}"),
        "indicator": indicator,
        "detail": "\n".join(detail) + "\n",
        "source": {
            "label": label,
            "topic": {
                "system": TOPIC_RULESET,
                "code": f"{prov.ruleset_id}@{prov.ruleset_version}",
                "display": "Treatment response",
            },
        },
        "extension": {CARD_EXTENSION: {"kind": "treatment_response", "findings": [a.code for a in findings]}},
    }
    if report_url is not None:
        card["links"] = [{"label": "Treatment response report (charts)", "url": report_url, "type": "absolute"}]
    return card
