"""MedicationRequest and MedicationStatement: the agent from its code, the daily dose as prescribed.

The agent comes from an RxNorm ingredient code (``maps/medications.yaml``), an RxNorm clinical or
branded drug of the generated table (``terminology/rxnorm.json``: ingredient, strength, unit and dose
form), or the local medication code. The daily dose is the ``daily-dose`` extension when there is one,
else it is computed from the one dosage instruction, and only for the shapes below; anything else is
reported (``partial``), never guessed:

- dose x frequency per period: ``doseQuantity`` (or the high end of ``doseRange``) in mg, g, mcg or
  units, or in tablets, capsules, films, mL, patches, actuations ... times the product's strength;
  ``timing.repeat`` frequency (``frequencyMax`` when given) per ``period`` (the shorter end of "every 4 to
  6 hours"), or a timing code (BID, TID, QID, QD, QOD, Q4H ...);
- several instructions taken together (no `sequence`, or the same one) add up; instructions in sequence
  (a taper) are reported;
- "as needed" uses the maximum: ``maxDosePerPeriod`` when given, else the largest dose at the largest
  frequency the instruction allows;
- a transdermal system: its rate (``rateQuantity`` in ug/h), else its strength times the patches worn
  (one when the dose does not say);
- a combination product holding other catalogue agents (oxycodone / aspirin, hydrocodone / ibuprofen)
  records each of them too, without a dose; the naloxone of buprenorphine / naloxone is not one of them;
- an opioid in a parenteral, rectal or nasal form: the agent is read, the daily dose is not (the CDC 2022
  conversion factors are for oral forms and transdermal fentanyl).
"""

from __future__ import annotations

from typing import Any

from ..maps import MedicationMapEntry, ProductEntry
from .base import _ReaderBase
from .common import _code_text, _codings, _ref_key

_MEDICATION_CURRENT = {"active", "on-hold"}
# UCUM / plain mass and rate units -> (patient-model dose unit, factor)
_DOSE_UNITS: dict[str, tuple[str, float]] = {
    "mg": ("mg", 1.0),
    "g": ("mg", 1000.0),
    "ug": ("mcg", 1.0),
    "mcg": ("mcg", 1.0),
    "ug/h": ("mcg_per_hour", 1.0),
    "mcg/h": ("mcg_per_hour", 1.0),
    "ug/hr": ("mcg_per_hour", 1.0),
    "[iU]": ("units", 1.0),
    "[IU]": ("units", 1.0),
    "U": ("units", 1.0),
}
_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0}
# Timing codes (HL7 timing abbreviations) -> administrations per day.
_TIMING_CODES = {
    "QD": 1.0,
    "AM": 1.0,
    "PM": 1.0,
    "BED": 1.0,
    "BID": 2.0,
    "TID": 3.0,
    "QID": 4.0,
    "QOD": 0.5,
    "Q1H": 24.0,
    "Q2H": 12.0,
    "Q3H": 8.0,
    "Q4H": 6.0,
    "Q6H": 4.0,
    "Q8H": 3.0,
    "WK": 1 / 7,
}
# Units that count dose units (tablets, capsules, films, patches, actuations): the strength gives the amount.
_COUNT_UNITS = {
    "",
    "1",
    "{tbl}",
    "{tablet}",
    "{tablets}",
    "tablet",
    "tablets",
    "tab",
    "TAB",
    "{capsule}",
    "{capsules}",
    "capsule",
    "capsules",
    "cap",
    "CAP",
    "{film}",
    "film",
    "{patch}",
    "patch",
    "{transdermal system}",
    "{lozenge}",
    "{actuation}",
    "{puff}",
    "{spray}",
    "{suppository}",
    "{each}",
    "ea",
}
_VOLUME_UNITS = {"mL": 1.0, "ml": 1.0, "L": 1000.0}
_Dose = tuple[float, str]
_COMPUTED_ROUTES = {"oral", "oromucosal", "transdermal", None}


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
        recognised: list[str] = []
        rxnorm, local = self.maps.uri("rxnorm"), self.maps.uri("medication")
        for system, code in codings:
            if system == local:
                agents.setdefault(code, None)
            elif system == rxnorm and code in self.maps.product_by_rxcui:
                product = self.maps.product_by_rxcui[code]
                by_route = self._agent_by_route(model, rtype, product)
                if by_route is not None:
                    agents[by_route] = product
                elif product.agent is None:
                    recognised.append(
                        f"{product.name} ({product.drug_class}): no agent in the medication catalogue"
                        + (f" ({product.note})" if product.note else "")
                    )
                else:
                    agents[product.agent] = product  # a product (with its strength) wins over an ingredient
            elif system == rxnorm and code in self.maps.medication_by_rxcui:
                entry = self.maps.medication_by_rxcui[code]
                if not isinstance(agents.get(entry.agent), ProductEntry):
                    agents[entry.agent] = entry
            elif system == rxnorm and code in self.maps.ambiguous_rxcui:
                ambiguous.append(self.maps.ambiguous_rxcui[code].reason)
        # a local code beside a product that leaves the choice to it (enoxaparin's dose class), else the safer agent
        chooser = next((p for p in agents.values() if isinstance(p, ProductEntry) and p.local_choices), None)
        if chooser is not None:
            picked = [a for a, v in agents.items() if v is None and a in {chooser.agent, *chooser.local_choices}]
            if len(picked) == 1:
                agents = {picked[0]: chooser}
            elif not picked and len(agents) == 1:
                self._skip(ref, "partial", f"read as {chooser.agent}: {chooser.note}", code_text)
        if not agents:
            if ambiguous:
                self._skip(ref, "ambiguous_code", ambiguous[0], code_text)
            elif recognised:
                self._skip(ref, "unknown_code", recognised[0], code_text)
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
        # the other catalogue agents of a combination product (the aspirin of oxycodone / aspirin), undosed
        for extra in entry.also if isinstance(entry, ProductEntry) else ():
            if self.ruleset is not None and extra not in self.ruleset.medications:
                why = f"also holds {extra!r}, not in the ruleset's medication catalogue"
                self._skip(ref, "partial", why, code_text)
            else:
                self.lists["medications"].append((ref, {"agent": extra}, {}))

    def _agent_by_route(self, model: Any, rtype: str, product: ProductEntry) -> str | None:
        """The agent a product's route of administration decides (heparin: IV or SC), when the dosage says."""
        if not product.agent_by_route:
            return None
        dosages = list(model.dosageInstruction or []) if rtype == "MedicationRequest" else list(model.dosage or [])
        routes = {
            route
            for dosage in dosages
            for key in _codings(dosage.route)
            if (route := self.maps.route_by_code.get(key)) is not None
        }
        agents = {product.agent_by_route[r] for r in routes if r in product.agent_by_route}
        return agents.pop() if len(agents) == 1 else None

    def _daily_dose(
        self, ref: str, model: Any, rtype: str, entry: ProductEntry | MedicationMapEntry | None, code_text: str | None
    ) -> tuple[float, str] | None:
        for ext in self._ext(model, "daily-dose"):
            q = ext.valueQuantity
            unit = str(q.code or q.unit or "") if q is not None else ""
            if q is None or q.value is None or unit not in _DOSE_UNITS:
                self._skip(ref, "partial", f"daily-dose extension in unit {unit!r} not read", code_text)
                return None
            target, factor = _DOSE_UNITS[unit]
            return round(float(q.value) * factor, 6), target
        product = entry if isinstance(entry, ProductEntry) else None
        strength = product.strength() if product is not None else None
        dosages = list(model.dosageInstruction or []) if rtype == "MedicationRequest" else list(model.dosage or [])
        if product is not None and product.drug_class == "opioid" and product.route not in _COMPUTED_ROUTES:
            why = (
                f"{product.dose_form} ({product.route}): daily dose not computed; the CDC 2022 conversion "
                "factors are for oral forms and transdermal fentanyl"
            )
            self._skip(ref, "partial", why, code_text)
            return None
        if not dosages:
            # a transdermal system's code carries its rate: one patch at a time unless a dose says otherwise
            if strength is not None and strength[1] == "mcg/h":
                return strength[0], "mcg_per_hour"
            return None
        if len({d.sequence for d in dosages}) > 1:
            why = "dosage instructions in sequence (a taper or a titration): daily dose not computed"
            self._skip(ref, "partial", why, code_text)
            return None
        # One instruction, or several taken together (1 tablet in the morning and 2 at night): their sum.
        total: float = 0.0
        units: set[str] = set()
        for dosage in dosages:
            dose, why = self._dose_per_day(dosage, strength)
            if dose is None:
                self._skip(ref, "partial", f"{why}: daily dose not computed", code_text)
                return None
            total += dose[0]
            units.add(dose[1])
        if len(units) != 1:
            self._skip(ref, "partial", "dosage instructions in different units: daily dose not computed", code_text)
            return None
        return round(total, 6), units.pop()

    def _dose_per_day(self, dosage: Any, strength: tuple[float, str] | None) -> tuple[_Dose | None, str]:
        """(daily dose, unit) or (None, why not)."""
        dose_and_rate = (dosage.doseAndRate or [None])[0]
        rate = dose_and_rate.rateQuantity if dose_and_rate is not None else None
        if rate is not None and rate.value is not None:
            unit = str(rate.code or rate.unit or "")
            if _DOSE_UNITS.get(unit, ("", 0.0))[0] == "mcg_per_hour":
                return (round(float(rate.value), 6), "mcg_per_hour"), ""
            return None, f"rate in {unit or 'no unit'}"
        quantity = None
        if dose_and_rate is not None:
            quantity = dose_and_rate.doseQuantity
            if quantity is None and dose_and_rate.doseRange is not None:
                quantity = dose_and_rate.doseRange.high  # a range uses its maximum
        if strength is not None and strength[1] == "mcg/h":
            unit = str(quantity.code or quantity.unit or "") if quantity is not None else ""
            if quantity is None or quantity.value is None or unit in _COUNT_UNITS:
                count = float(quantity.value) if quantity is not None and quantity.value is not None else 1.0
                return (round(strength[0] * count, 6), "mcg_per_hour"), ""
            return None, f"a transdermal dose in {unit}"
        as_needed = bool(dosage.asNeededBoolean) or dosage.asNeededCodeableConcept is not None
        if as_needed and dosage.maxDosePerPeriod is not None:
            return self._max_per_period(dosage.maxDosePerPeriod, strength)
        if quantity is None or quantity.value is None:
            return None, "no dose quantity" + (" in an as-needed dosage without maxDosePerPeriod" if as_needed else "")
        amount, why = self._amount(quantity, strength)
        if amount is None:
            return None, why
        per_day = self._per_day(dosage.timing)
        if per_day is None:
            return None, "dosage timing not readable (frequency/period or timing code)"
        return (round(amount[0] * per_day, 6), amount[1]), ""

    @staticmethod
    def _amount(quantity: Any, strength: tuple[float, str] | None) -> tuple[_Dose | None, str]:
        """One dose as (amount, patient-model unit), or (None, why not)."""
        unit = str(quantity.code or quantity.unit or "")
        value = float(quantity.value)
        if unit in _DOSE_UNITS:
            target, factor = _DOSE_UNITS[unit]
            if target == "mcg_per_hour":
                return None, "a rate as a dose quantity"
            return (value * factor, target), ""
        if unit in _COUNT_UNITS:
            if strength is None or strength[1] not in ("mg", "mg/actuation"):
                what = unit or "units of the product"
                return None, f"a dose in {what} needs the product's strength (send its SCD code)"
            return (value * strength[0], "mg"), ""
        if unit in _VOLUME_UNITS:
            if strength is None or strength[1] != "mg/mL":
                return None, f"a dose in {unit} needs the product's concentration (mg/mL; send its SCD code)"
            return (value * _VOLUME_UNITS[unit] * strength[0], "mg"), ""
        return None, f"dose in {unit}"

    def _max_per_period(self, ratio: Any, strength: tuple[float, str] | None) -> tuple[_Dose | None, str]:
        numerator, denominator = ratio.numerator, ratio.denominator
        if numerator is None or numerator.value is None or denominator is None or denominator.value is None:
            return None, "maxDosePerPeriod incomplete"
        period = str(denominator.code or denominator.unit or "")
        if period not in _PERIOD_DAYS or float(denominator.value) <= 0:
            return None, f"maxDosePerPeriod per {denominator.value} {period}"
        amount, why = self._amount(numerator, strength)
        if amount is None:
            return None, why
        days = float(denominator.value) * _PERIOD_DAYS[period]
        return (round(amount[0] / days, 6), amount[1]), ""

    @staticmethod
    def _per_day(timing: Any) -> float | None:
        if timing is None:
            return None
        repeat = timing.repeat
        if repeat is not None and repeat.period is not None and repeat.periodUnit in _PERIOD_DAYS:
            frequency = repeat.frequencyMax or repeat.frequency or 1
            # the largest frequency over the shortest period: "every 4 to 6 hours" is every 4 hours
            period = float(repeat.period)
            if period <= 0:
                return None
            return int(frequency) / (period * _PERIOD_DAYS[str(repeat.periodUnit)])
        codes = [c for _, c in _codings(timing.code)]
        for code in codes:
            if code in _TIMING_CODES:
                return _TIMING_CODES[code]
        return None
