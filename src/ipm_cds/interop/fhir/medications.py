"""MedicationRequest and MedicationStatement: the agent from its code, the daily dose as prescribed."""

from __future__ import annotations

from typing import Any

from .base import _ReaderBase
from .common import _code_text, _codings, _ref_key

_MEDICATION_CURRENT = {"active", "on-hold"}
_DOSE_UNITS: dict[str, tuple[str, float]] = {
    "mg": ("mg", 1.0),
    "g": ("mg", 1000.0),
    "ug": ("mcg", 1.0),
    "mcg": ("mcg", 1.0),
    "ug/h": ("mcg_per_hour", 1.0),
    "[iU]": ("units", 1.0),
    "[IU]": ("units", 1.0),
    "U": ("units", 1.0),
}
_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0}
_PATCH_UNITS = {None, "", "{patch}", "patch", "{transdermal system}", "1"}


class _MedicationReader(_ReaderBase):
    # ---- MedicationRequest / MedicationStatement

    def _medication(self, ref: str, model: Any) -> None:
        rtype = model.get_resource_type()
        concept = model.medicationCodeableConcept
        if concept is None and model.medicationReference is not None:
            key = self.resolve(_ref_key(model.medicationReference), owner=ref)
            medication = self.by_ref.get(key) if key else None
            if medication is None:
                self._skip(ref, "incomplete", "medicationReference not found in the input")
                return
            if key:
                self.used_as_context.add(key)
            concept = medication.code
        codings = _codings(concept)
        code_text = _code_text(codings)
        status = str(model.status)
        if status not in _MEDICATION_CURRENT:
            self._skip(ref, "not_current", f"status {status}", code_text)
            return
        agents: dict[str, Any] = {}
        ambiguous: list[str] = []
        rxnorm, local = self.maps.uri("rxnorm"), self.maps.uri("medication")
        for system, code in codings:
            if system == local:
                agents[code] = None
            elif system == rxnorm and code in self.maps.medication_by_rxcui:
                entry = self.maps.medication_by_rxcui[code]
                agents[entry.agent] = entry
            elif system == rxnorm and code in self.maps.ambiguous_rxcui:
                ambiguous.append(self.maps.ambiguous_rxcui[code].reason)
        if not agents:
            if ambiguous:
                self._skip(ref, "ambiguous_code", ambiguous[0], code_text)
            else:
                self._skip(ref, "unknown_code", "no mapped RxNorm or local medication code", code_text)
            return
        if len(agents) > 1:
            self._skip(ref, "ambiguous_code", f"codes for {', '.join(sorted(agents))}", code_text)
            return
        agent, entry = next(iter(agents.items()))
        if self.ruleset is not None and agent not in self.ruleset.medications:
            self._skip(ref, "unknown_code", f"{agent!r} is not in the ruleset's medication catalogue", code_text)
            return
        doc: dict[str, Any] = {"agent": agent}
        dose = self._daily_dose(ref, model, rtype, entry, code_text)
        if dose is not None:
            doc["daily_dose"], doc["dose_unit"] = dose
        indications = self._local(
            [c for concept in (model.reasonCode or []) for c in _codings(concept)], "medication-indication"
        )
        if len(indications) == 1:
            doc["indication"] = indications[0]
        self.lists["medications"].append((ref, doc, {}))

    def _daily_dose(
        self, ref: str, model: Any, rtype: str, entry: Any, code_text: str | None
    ) -> tuple[float, str] | None:
        for ext in self._ext(model, "daily-dose"):
            q = ext.valueQuantity
            unit = str(q.code or q.unit or "") if q is not None else ""
            if q is None or q.value is None or unit not in _DOSE_UNITS:
                self._skip(ref, "partial", f"daily-dose extension in unit {unit!r} not read", code_text)
                return None
            target, factor = _DOSE_UNITS[unit]
            return round(float(q.value) * factor, 6), target
        dosages = list(model.dosageInstruction or []) if rtype == "MedicationRequest" else list(model.dosage or [])
        strength = getattr(entry, "strength_mcg_per_hour", None)
        if not dosages:
            # a transdermal system's code carries its rate: one patch at a time unless a dose says otherwise
            return (float(strength), "mcg_per_hour") if strength is not None else None
        if len(dosages) > 1:
            self._skip(ref, "partial", "several dosage instructions: daily dose not computed", code_text)
            return None
        dosage = dosages[0]
        if dosage.asNeededBoolean:
            self._skip(ref, "partial", "as-needed dosage: daily dose not computed", code_text)
            return None
        dose_and_rate = (dosage.doseAndRate or [None])[0]
        rate = dose_and_rate.rateQuantity if dose_and_rate is not None else None
        if rate is not None and rate.value is not None:
            unit = str(rate.code or rate.unit or "")
            if _DOSE_UNITS.get(unit, ("", 0))[0] == "mcg_per_hour":
                return round(float(rate.value), 6), "mcg_per_hour"
        quantity = dose_and_rate.doseQuantity if dose_and_rate is not None else None
        if strength is not None:
            patch_unit = quantity.code or quantity.unit if quantity is not None else None
            if quantity is None or (str(patch_unit) if patch_unit else None) in _PATCH_UNITS:
                count = float(quantity.value) if quantity is not None and quantity.value is not None else 1.0
                return round(strength * count, 6), "mcg_per_hour"
        if quantity is None or quantity.value is None:
            return None
        unit = str(quantity.code or quantity.unit or "")
        if unit not in _DOSE_UNITS or _DOSE_UNITS[unit][0] == "mcg_per_hour":
            self._skip(ref, "partial", f"dose in {unit or 'no unit'}: daily dose not computed", code_text)
            return None
        per_day = self._per_day(dosage.timing)
        if per_day is None:
            why = "dosage timing not readable (frequency/period): daily dose not computed"
            self._skip(ref, "partial", why, code_text)
            return None
        target, factor = _DOSE_UNITS[unit]
        return round(float(quantity.value) * factor * per_day, 6), target

    @staticmethod
    def _per_day(timing: Any) -> float | None:
        repeat = timing.repeat if timing is not None else None
        if repeat is None or repeat.period is None or repeat.periodUnit not in _PERIOD_DAYS:
            return None
        frequency = int(repeat.frequency) if repeat.frequency is not None else 1
        return frequency / (float(repeat.period) * _PERIOD_DAYS[str(repeat.periodUnit)])
