"""Observation: scores, screenings, labs, findings, and the values that belong to a pain complaint,
a procedure or a screening total (placed once every resource is read)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from ..maps import ObservationEntry
from .base import _ReaderBase
from .common import (
    _OBSERVATION_USABLE,
    _PAIN_FIELDS,
    _code_text,
    _codings,
    _number,
    _Pending,
    _ref_key,
    _Screen,
    _to_date,
    _Value,
)


class _ObservationReader(_ReaderBase):
    # ---- Observation

    def _observation(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        status = str(model.status)
        when = self._effective(model)
        entries = {id(e): e for s, c in codings if (e := self.maps.observation_by_code.get((s, c))) is not None}
        exams = self._local(codings, "exam-finding")
        findings = self._local(codings, "imaging-finding")
        red_flags = self._local(codings, "red-flag")
        kinds = len(entries) + len(exams) + len(findings) + len(red_flags)
        if kinds == 0:
            if not self._not_read(ref, codings, code_text):
                self._skip(ref, "unknown_code", "no mapped code (LOINC or local)", code_text)
            return
        if kinds > 1:
            self._skip(ref, "ambiguous_code", "the codes map to more than one patient-model field", code_text)
            return
        if status not in _OBSERVATION_USABLE:
            self._skip(ref, "not_current", f"status {status}", code_text)
            return
        related = [*(model.focus or []), *(model.partOf or []), *(model.derivedFrom or [])]
        links = {k for r in related if (k := self.resolve(_ref_key(r)))}
        if exams:
            positive = model.valueBoolean
            if positive is None:
                self._skip(ref, "incomplete", "an examination finding needs valueBoolean (positive)", code_text)
                return
            doc: dict[str, Any] = {"test": exams[0], "positive": bool(positive)}
            region, side = self._region(model.bodySite), self._laterality(model, model.bodySite)
            if region:
                doc["region"] = region
            if side:
                doc["side"] = side
            if when:
                doc["date"] = when.isoformat()
            self.lists["exam"].append((ref, doc, {}))
            return
        if findings:
            self._imaging(ref, model, findings[0], when, code_text)
            return
        if red_flags:
            if model.valueBoolean is False:
                self._skip(ref, "not_current", "red flag recorded as absent", code_text)
                return
            doc = {"code": red_flags[0]}
            deteriorating = self._ext_bool(model, "deteriorating")
            if deteriorating is not None:
                doc["deteriorating"] = deteriorating
            self.lists["red_flags"].append((ref, doc, {}))
            return
        entry = next(iter(entries.values()))
        value = self._value(ref, model, entry, code_text)
        if value is None:
            return
        if entry.target == "screening.phq9":
            # item 9 as a component of the total
            for component in model.component or []:
                for s, c in _codings(component.code):
                    item = self.maps.observation_by_code.get((s, c))
                    if item is not None and item.target == "screening.phq9.item9":
                        item_value = self._value(ref, component, item, code_text)
                        if item_value is not None:
                            links.add(f"{ref}#item9")
                            self.pending.append(_Pending(ref, item.target, item_value, when, {ref}, code_text))
        self._route(ref, entry, value, when, links, code_text, model)

    def _effective(self, model: Any) -> date | None:
        for value in (model.effectiveDateTime, model.effectiveInstant):
            if value is not None:
                return _to_date(value)
        if model.effectivePeriod is not None:
            return _to_date(model.effectivePeriod.start)
        return _to_date(model.issued) if model.issued is not None else None

    def _value(self, ref: str, model: Any, entry: ObservationEntry, code_text: str | None) -> Any:
        """The observation's value as the patient model wants it, or None (reported)."""
        quantity = getattr(model, "valueQuantity", None)
        concept = getattr(model, "valueCodeableConcept", None)
        if entry.answers and concept is not None:
            for system, code in _codings(concept):
                answer = self.maps.answer(entry, system, code)
                if answer is not None:
                    return answer.value
            self._skip(ref, "unknown_code", f"answer not in the map for {entry.code}", _code_text(_codings(concept)))
            return None
        if entry.value == "boolean":
            if getattr(model, "valueBoolean", None) is None:
                self._skip(ref, "incomplete", f"{entry.code} needs valueBoolean", code_text)
                return None
            return bool(model.valueBoolean)
        if entry.value in ("integer", "number"):
            if getattr(model, "valueInteger", None) is not None:
                return int(model.valueInteger)
            if quantity is not None and quantity.value is not None:
                converted = self._convert(ref, entry, quantity, code_text)
                if converted is None:
                    return None
                return _number(converted) if entry.value == "integer" else float(converted)
        self._skip(ref, "incomplete", f"no usable value for {entry.code}", code_text)
        return None

    def _lab_range(self, ref: str, entry: ObservationEntry, model: Any, code_text: str | None) -> dict[str, Any]:
        """The laboratory's own reading of a result: ``flag`` from Observation.interpretation (maps/qualifiers.yaml
        lab_flag), ``reference_low`` / ``reference_high`` from the first referenceRange that is the normal range
        (no type, or type normal), in the result's canonical unit. What cannot be read is reported, never guessed."""
        out: dict[str, Any] = {}
        flags = {
            self.maps.lab_flag_by_code[key]
            for concept in getattr(model, "interpretation", None) or []
            for key in _codings(concept)
            if key in self.maps.lab_flag_by_code
        }
        if len(flags) == 1:
            out["flag"] = flags.pop()
        elif flags:
            self._skip(ref, "partial", f"interpretation says {' and '.join(sorted(flags))}: flag not read", code_text)
        elif getattr(model, "interpretation", None):
            self._skip(ref, "partial", "interpretation has no high, low or normal code: flag not read", code_text)
        for rng in getattr(model, "referenceRange", None) or []:
            meaning = {c for _, c in _codings(rng.type)} if rng.type is not None else set()
            if meaning and "normal" not in meaning:
                continue
            for end, name in ((rng.low, "reference_low"), (rng.high, "reference_high")):
                if end is not None and end.value is not None:
                    converted = self._convert(ref, entry, end, code_text)
                    if converted is not None:
                        out[name] = converted
            break
        if "reference_low" in out and "reference_high" in out and out["reference_low"] > out["reference_high"]:
            self._skip(ref, "partial", "referenceRange low is above high: range not read", code_text)
            out.pop("reference_low")
            out.pop("reference_high")
        return out

    def _convert(self, ref: str, entry: ObservationEntry, quantity: Any, code_text: str | None) -> float | None:
        value = float(quantity.value)
        if entry.units is None:
            return value
        given = [str(u) for u in (quantity.code, quantity.unit) if u is not None]
        for rule in entry.units:
            if rule.unit in given or (not given and rule.unit == ""):
                return round(value * rule.factor + rule.offset, 6)
        units = " / ".join(given) or "(none)"
        self._skip(ref, "unknown_unit", f"unit {units} not accepted for {entry.code}", code_text)
        return None

    def _route(
        self,
        ref: str,
        entry: ObservationEntry,
        value: Any,
        when: date | None,
        links: set[str],
        code_text: str | None,
        model: Any,
    ) -> None:
        target = entry.target
        group, _, name = target.partition(".")
        if group == "demographics":
            self.demographics[name].append(_Value(value, when, ref))
        elif group == "conservative_care":
            self.care[name].append(_Value(value, when, ref))
        elif group == "psychological_evaluation":
            self.psych[name].append(_Value(value, when, ref))
        elif group == "lab":
            if when is None:
                self._skip(ref, "incomplete", "a laboratory result needs a date (effective[x] or issued)", code_text)
                return
            lab: dict[str, Any] = {"test": name, "value": value, "date": when.isoformat()}
            lab.update(self._lab_range(ref, entry, model, code_text))
            self.lists["labs"].append((ref, lab, {}))
        elif target == "screening.start_back.category":  # the risk category alone, as a screen of its own
            member_links = {k for r in model.hasMember or [] if (k := self.resolve(_ref_key(r)))}
            self.screens.append(_Screen(ref, "start_back", None, when, links | member_links, category=str(value)))
        elif target in ("screening.phq9.item9", "screening.start_back.distress"):
            self.pending.append(_Pending(ref, target, value, when, links, code_text))
        elif group == "screening":
            member_links = {k for r in model.hasMember or [] if (k := self.resolve(_ref_key(r)))}
            self.screens.append(_Screen(ref, name, value, when, links | member_links))
        else:  # pain.* and procedure.*: they belong to another resource
            self.pending.append(_Pending(ref, target, value, when, links, code_text))

    def _imaging(self, ref: str, model: Any, finding: str, when: date | None, code_text: str | None) -> None:
        region = self._region(model.bodySite)
        if not region:
            self._skip(ref, "incomplete", "an imaging finding needs a body-region bodySite", code_text)
            return
        modality, context_date = self._modality(ref, model)
        if modality is None:
            why = "imaging modality not found (method, ImagingStudy or DiagnosticReport)"
            self._skip(ref, "incomplete", why, code_text)
            return
        doc: dict[str, Any] = {"modality": modality, "finding": finding, "region": region}
        levels = [str(e.valueString) for e in self._ext(model, "spinal-level") if e.valueString]
        if levels:
            doc["level"] = levels[0]
        side = self._laterality(model, model.bodySite)
        if side:
            doc["side"] = side
        day = when or context_date
        if day:
            doc["date"] = day.isoformat()
        concordant = self._ext_bool(model, "concordant")
        if concordant is not None:
            doc["concordant"] = concordant
        height_loss = [e.valueInteger for e in self._ext(model, "height-loss-pct") if e.valueInteger is not None]
        if height_loss:
            doc["height_loss_pct"] = int(height_loss[0])
        self.lists["imaging"].append((ref, doc, {}))

    def _modality(self, ref: str, model: Any) -> tuple[str | None, date | None]:
        local = self.maps.uri("imaging-modality")

        def from_codings(codings: Sequence[tuple[str, str]]) -> str | None:
            for system, code in codings:
                if system == local:
                    return code
                value = self.maps.modality_by_code.get((system, code))
                if value:
                    return value
            return None

        found = from_codings(_codings(model.method))
        studies: list[str] = []
        context_date: date | None = None
        for r in [*(model.derivedFrom or []), *(model.partOf or [])]:
            key = self.resolve(_ref_key(r))
            if key and key.startswith("ImagingStudy/"):
                studies.append(key)
        for key in self.reports_of.get(ref, []):
            report = self.by_ref[key]
            self.used_as_context.add(key)
            found = found or from_codings(_codings(report.code))
            if report.effectiveDateTime is not None:
                context_date = context_date or _to_date(report.effectiveDateTime)
            elif report.effectivePeriod is not None:
                context_date = context_date or _to_date(report.effectivePeriod.start)
            studies += [k for r in report.imagingStudy or [] if (k := self.resolve(_ref_key(r)))]
        for key in studies:
            study = self.by_ref.get(key)
            if study is None:
                continue
            self.used_as_context.add(key)
            found = found or from_codings(_codings(list(study.modality or [])))
            context_date = context_date or (_to_date(study.started) if study.started is not None else None)
        return found, context_date

    def _place_pending(self) -> None:
        """Attach pain scores, relief and screening items to the pain, procedure or screen they belong to."""
        pains = self.pains
        index = [p for p in pains.values() if p.is_index]
        for item in self.pending:
            if item.target.startswith("pain."):
                owners = [pains[k] for k in item.links if k in pains]
                if not owners and not item.links:
                    owners = list(pains.values()) if len(pains) == 1 else index
                if len(owners) != 1:
                    why = "more than one pain complaint" if owners else "no pain complaint (Condition) it belongs to"
                    self._skip(item.ref, "incomplete", f"{why}; link it with Observation.focus", item.code)
                    continue
                owners[0].fields[_PAIN_FIELDS[item.target]].append(_Value(item.value, item.when, item.ref))
            elif item.target.startswith("procedure."):
                procs = [self.procs[k] for k in item.links if k in self.procs]
                if len(procs) != 1:
                    self._skip(item.ref, "incomplete", "relief must name one Procedure in partOf or focus", item.code)
                    continue
                procs[0].fields[item.target.split(".", 1)[1]].append(_Value(item.value, item.when, item.ref))
            else:
                instrument = "phq9" if item.target == "screening.phq9.item9" else "start_back"
                screens = [s for s in self.screens if s.instrument == instrument]
                linked = [s for s in screens if s.ref in item.links or item.ref in s.links]
                if not linked:
                    linked = [s for s in screens if s.when is not None and s.when == item.when]
                if len(linked) != 1:
                    self._skip(item.ref, "incomplete", f"no single {instrument} total it belongs to", item.code)
                    continue
                slot = "item9" if instrument == "phq9" else "distress"
                if getattr(linked[0], slot) is not None and getattr(linked[0], slot).ref != item.ref:
                    self._skip(item.ref, "superseded", f"{instrument} already has a {slot}", item.code)
                    continue
                setattr(linked[0], slot, _Value(item.value, item.when, item.ref))
