"""Feedback on cards: the recent cards by uuid (so that feedback can name each card's rule and kind) and
the JSON Lines feedback log. Free-text override comments are kept only when patient data may be logged."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..interop.cds_hooks import CARD_EXTENSION
from .protocol import FeedbackItem

__all__ = ["CardLog", "FeedbackLog"]


class CardLog:
    """Recent cards by uuid (bounded), so that feedback can name the rule and kind of the card."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._cards: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(
        self, service: str, hook_instance: str, cards: Sequence[Mapping[str, Any]], decision_id: str | None = None
    ) -> None:
        with self._lock:
            for card in cards:
                facts = dict(card.get("extension", {}).get(CARD_EXTENSION, {}))
                facts.update(service=service, hookInstance=hook_instance, indicator=card["indicator"])
                if decision_id is not None:
                    facts["decision_id"] = decision_id  # the decision log's entry for the assessment
                facts["suggestions"] = [s.get("uuid") for s in card.get("suggestions", [])]
                self._cards[card["uuid"]] = facts
                self._cards.move_to_end(card["uuid"])
            while len(self._cards) > self._capacity:
                self._cards.popitem(last=False)

    def get(self, card_uuid: str) -> dict[str, Any] | None:
        with self._lock:
            return self._cards.get(card_uuid)


class FeedbackLog:
    """Turns feedback items into records and appends them, one JSON line each, to ``path`` (if any)."""

    def __init__(self, path: Path | None, cards: CardLog, *, log_patient_data: bool) -> None:
        self.path = path
        self.cards = cards
        self.log_patient_data = log_patient_data
        self._lock = threading.Lock()

    def record(self, service_id: str, items: Sequence[FeedbackItem]) -> list[dict[str, Any]]:
        received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        records = [self._record(service_id, item, self.cards.get(item.card), received) for item in items]
        if self.path is not None:
            lines = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
        return records

    def _record(
        self, service_id: str, item: FeedbackItem, known: Mapping[str, Any] | None, received: str
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "received": received,
            "service": service_id,
            "card": item.card,
            "outcome": item.outcome,
            "outcomeTimestamp": item.outcomeTimestamp.isoformat().replace("+00:00", "Z"),
            "known_card": known is not None,
        }
        if item.acceptedSuggestions:
            record["acceptedSuggestions"] = [s.id for s in item.acceptedSuggestions]
        if item.overrideReason is not None:
            reason: dict[str, Any] = {}
            if item.overrideReason.reason is not None:
                reason["reason"] = item.overrideReason.reason.model_dump(exclude_none=True)
            if item.overrideReason.userComment is not None:
                # free text may name the patient: kept only when patient data may be logged
                if self.log_patient_data:
                    reason["userComment"] = item.overrideReason.userComment
                else:
                    reason["userComment_present"] = True
            record["overrideReason"] = reason
        if known is not None:
            record["card_facts"] = {k: v for k, v in known.items() if k != "suggestions"}
            if item.acceptedSuggestions:
                record["suggestions_known"] = all(s.id in known["suggestions"] for s in item.acceptedSuggestions)
        return record
