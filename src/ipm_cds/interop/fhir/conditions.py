"""Condition (diagnoses, pain complaints, red flags) and AllergyIntolerance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..maps import normalise_icd10
from .base import _ReaderBase
from .common import _CONDITION_INACTIVE, UnmappedKind, _code_text, _codings, _Pain, _to_date


class _ConditionReader(_ReaderBase):
    # ---- Condition

    def _condition(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        verification = {c for _, c in _codings(model.verificationStatus)}
        if verification & {"refuted", "entered-in-error"}:
            self._skip(ref, "not_current", f"verificationStatus {'/'.join(sorted(verification))}", code_text)
            return
        clinical = {c for _, c in _codings(model.clinicalStatus)}
        active = not (clinical & _CONDITION_INACTIVE) if clinical else True

        red_flags = self._local(codings, "red-flag")
        pain_chars = self._local(codings, "pain-character")
        conditions = self._conditions_for(codings)
        pains = self._pains_for(codings)
        if pains and pain_chars and {p.character for p in pains} != set(pain_chars):
            pain_chars = [*pain_chars, "(disagrees with the diagnosis code)"]
        targets = len(red_flags) + len(conditions) + (len(pains) or (1 if pain_chars else 0))
        if targets == 0:
            if not self._not_read(ref, codings, code_text):
                self._skip(ref, "unknown_code", "no mapped code (ICD-10-CM, SNOMED CT or local)", code_text)
            return
        if targets > 1 or len(pain_chars) > 1:
            self._skip(ref, "ambiguous_code", "the codes map to more than one patient-model entry", code_text)
            return
        if red_flags:
            if not active:
                self._skip(ref, "not_current", "red flag no longer active", code_text)
                return
            doc: dict[str, Any] = {"code": red_flags[0]}
            onset = _to_date(model.onsetDateTime) or (
                _to_date(model.onsetPeriod.start) if model.onsetPeriod is not None else None
            )
            if onset:
                doc["onset_date"] = onset.isoformat()
            deteriorating = self._ext_bool(model, "deteriorating")
            if deteriorating is not None:
                doc["deteriorating"] = deteriorating
            self.lists["red_flags"].append((ref, doc, {}))
            return
        if conditions:
            entry = conditions[0]
            doc = {"code": entry.condition, "active": entry.active if entry.active is not None else active}
            region = self._region(model.bodySite)
            if region:
                doc["region"] = region
            self.lists["conditions"].append((ref, doc, {}))
            return
        # a pain complaint
        if not active:
            self._skip(ref, "not_current", "pain complaint no longer active", code_text)
            return
        if pains:  # a diagnosis that names no region (cancer pain, facet joint pain) takes the bodySite's
            region = pains[0].region or self._region(model.bodySite) or ""
            character, laterality = pains[0].character, pains[0].laterality
        else:
            region, character, laterality = self._region(model.bodySite) or "", pain_chars[0], None
        if not region:
            self._skip(ref, "incomplete", "pain complaint without a body-region bodySite", code_text)
            return
        onset = _to_date(model.onsetDateTime) or (
            _to_date(model.onsetPeriod.start) if model.onsetPeriod is not None else None
        )
        self.pains[ref] = _Pain(
            ref=ref,
            region=region,
            character=character,
            laterality=laterality or self._laterality(model, model.bodySite),
            onset=onset,
            is_index=bool(self._ext_bool(model, "index-pain")),
        )

    def _conditions_for(self, codings: Sequence[tuple[str, str]]) -> list[Any]:
        found: dict[str, Any] = {}
        icd = self.maps.uri("icd10cm")
        local = self.maps.uri("condition")
        local_codes = set(self._local(codings, "condition"))
        for system, code in codings:
            if system == local:
                if code in local_codes:
                    found[code] = _LocalCondition(code)
                continue
            entry = self.maps.condition_by_code.get((system, code))
            if entry is None and system == icd:
                norm = normalise_icd10(code)
                prefixes = self.maps.condition_prefixes
                entry = next((e for s, p, e in prefixes if s == system and norm.startswith(p)), None)
            if entry is not None:
                found[entry.condition] = entry
        return list(found.values())

    def _pains_for(self, codings: Sequence[tuple[str, str]]) -> list[Any]:
        found: dict[tuple[str | None, str, str | None], Any] = {}
        icd = self.maps.uri("icd10cm")
        for system, code in codings:
            entry = self.maps.pain_by_code.get((system, code))
            if entry is None and system == icd:
                norm = normalise_icd10(code)
                entry = next((e for s, p, e in self.maps.pain_prefixes if s == system and norm.startswith(p)), None)
            if entry is not None:
                found[(entry.region, entry.character, entry.laterality)] = entry
        # a code that names no region (facet joint pain) beside one that does (M54.50): the same complaint
        placed = {(e.character, e.laterality) for e in found.values() if e.region is not None}
        return [e for e in found.values() if e.region is not None or (e.character, e.laterality) not in placed]

    # ---- AllergyIntolerance

    def _allergy(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        verification = {c for _, c in _codings(model.verificationStatus)}
        clinical = {c for _, c in _codings(model.clinicalStatus)}
        if verification & {"refuted", "entered-in-error"} or clinical & {"inactive", "resolved"}:
            self._skip(ref, "not_current", "refuted, entered in error, inactive or resolved", code_text)
            return
        substances = set(self._local(codings, "allergy-substance"))
        for system, code in codings:
            entry = self.maps.allergy_by_code.get((system, code))
            if entry is not None:
                substances.add(entry.substance)
        if len(substances) != 1:
            kind: UnmappedKind = "ambiguous_code" if substances else "unknown_code"
            self._skip(ref, kind, "no single mapped substance (RxNorm or local allergy-substance)", code_text)
            return
        doc: dict[str, Any] = {"substance": substances.pop()}
        reaction = (model.reaction or [None])[0]
        if reaction is not None:
            text = reaction.description or next(
                (m.text for m in reaction.manifestation or [] if getattr(m, "text", None)), None
            )
            if text:
                doc["reaction"] = str(text)[:500]
        self.lists["allergies"].append((ref, doc, {}))


@dataclass(frozen=True)
class _LocalCondition:
    condition: str
    active: bool | None = None
