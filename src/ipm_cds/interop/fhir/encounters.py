"""Encounter: whether the patient is in hospital now (the patient model's ``hospitalised``, PVA-IND-02).

An Encounter is read from its JSON, not validated as a whole: the reader needs only its ``class``, ``status``,
``period`` and ``subject``, and an Encounter that lacks what R4 requires (``class``) is reported and left out,
never a reason to refuse the request. Only an inpatient class (maps/qualifiers.yaml ``encounter_class``: v3
ActCode IMP, ACUTE, NONAC) with status ``in-progress`` says something: the patient is hospitalised. Nothing here
says the patient is *not* in hospital (an ambulatory visit does not), so ``hospitalised`` is otherwise left not
recorded, and the rules that need it ask.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import _ReaderBase
from .common import _to_date, _Value


def _class_codings(value: Any) -> list[tuple[str, str]]:
    """(system, code) of Encounter.class: a Coding in R4; a list of CodeableConcepts (R5) is read too."""
    codings: list[Any] = []
    if isinstance(value, Mapping):
        codings = [value]
    elif isinstance(value, list):
        for concept in value:
            if isinstance(concept, Mapping) and isinstance(concept.get("coding"), list):
                codings.extend(concept["coding"])
    out = []
    for c in codings:
        if isinstance(c, Mapping) and isinstance(c.get("code"), str):
            out.append((str(c.get("system") or ""), str(c["code"])))
    return out


def _start(period: Any) -> Any:
    if isinstance(period, Mapping):
        start = period.get("start")
        if isinstance(start, str) and re.match(r"\d{4}-\d{2}-\d{2}", start):
            return _to_date(start[:10])
    return None


class _EncounterReader(_ReaderBase):
    def _encounters(self) -> None:
        for ref, raw in self.encounters:
            self._encounter(ref, raw)

    def _encounter(self, ref: str, raw: Mapping[str, Any]) -> None:
        subject = raw.get("subject")
        target = self.resolve(subject.get("reference")) if isinstance(subject, Mapping) else None
        if target is not None and self.patient_ref is not None and target != self.patient_ref:
            self._skip(ref, "incomplete", f"the subject is {target}, not the patient ({self.patient_ref})")
            return
        codings = _class_codings(raw.get("class"))
        text = ", ".join(f"{s}|{c}" for s, c in codings) or None
        if not codings:
            self._skip(ref, "incomplete", "no class: whether it is an inpatient admission is not said (not read)")
            return
        inpatient = any((s, c) in self.maps.encounter_class_by_code for s, c in codings)
        if not inpatient:
            why = "not an inpatient class: hospitalisation is not read from it (hospitalised stays not recorded)"
            self._skip(ref, "not_read", why, text)
            return
        status = raw.get("status")
        if status != "in-progress":
            self._skip(ref, "not_current", f"an inpatient encounter with status {status!r}, not in-progress", text)
            return
        self.hospitalised.append(_Value(True, _start(raw.get("period")), ref))
