"""Procedure: prior interventions by CPT or the local procedure-kind code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import _ReaderBase
from .common import UnmappedKind, _code_text, _codings, _day_text, _Proc, _to_date


class _ProcedureReader(_ReaderBase):
    # ---- Procedure

    def _procedure(self, ref: str, model: Any) -> None:
        codings = _codings(model.code)
        code_text = _code_text(codings)
        if self._coronary_stent(ref, model, codings, code_text):
            return
        kinds, why = self.kinds(codings, "procedure-kind", "procedure_kinds")
        if not kinds:
            kind: UnmappedKind = "unknown_code" if why is None else "ambiguous_code"
            if why is not None or not self._not_read(ref, codings, code_text):
                self._skip(ref, kind, why or "no mapped CPT or local code", code_text)
            return
        status = str(model.status)
        if status != "completed":
            self._skip(ref, "not_current", f"status {status}", code_text)
            return
        when = _day_text(model.performedDateTime) or (  # a partial date (YYYY, YYYY-MM) is kept partial
            _day_text(model.performedPeriod.start) if model.performedPeriod is not None else None
        )
        region = self._region(model.bodySite)
        if when is None or region is None:
            missing = " and ".join(n for n, v in (("a date", when), ("a body-region bodySite", region)) if v is None)
            self._skip(ref, "incomplete", f"a prior procedure needs {missing}", code_text)
            return
        doc: dict[str, Any] = {"kind": kinds[0], "region": region, "date": when}
        levels = [str(e.valueString) for e in self._ext(model, "spinal-level") if e.valueString]
        if levels:
            doc["levels"] = levels
        side = self._laterality(model, model.bodySite)
        if side:
            doc["side"] = side
        for e in self._ext(model, "procedure-purpose"):
            if e.valueCode:
                doc["purpose"] = str(e.valueCode)
        self.procs[ref] = _Proc(ref, doc)

    def _coronary_stent(self, ref: str, model: Any, codings: Sequence[tuple[str, str]], code_text: str | None) -> bool:
        """A completed coronary stent placement (maps/procedures.yaml ``coronary_stent_cpt``, or a local stent-type
        code): a coronary stent on its performed date, its type from the local coronary-stent-type code (else
        missing). True when the Procedure is one (read or reported)."""
        cpt_uri = self.maps.uri("cpt")
        types = self._local(codings, "coronary-stent-type")
        if not types and not any(s == cpt_uri and c in self.maps.coronary_stent_cpt for s, c in codings):
            return False
        if str(model.status) != "completed":
            self._skip(ref, "not_current", f"status {model.status}", code_text)
            return True
        if len(types) > 1:
            self._skip(ref, "ambiguous_code", f"more than one stent type: {', '.join(types)}", code_text)
            return True
        doc: dict[str, Any] = {"type": types[0]} if types else {}
        when = _to_date(model.performedDateTime) or (
            _to_date(model.performedPeriod.start) if model.performedPeriod is not None else None
        )
        if when is not None:
            doc["date"] = when.isoformat()
        self.lists["coronary_stents"].append((ref, doc, {}))
        return True

    def kinds(self, codings: Sequence[tuple[str, str]], local_key: str, cpt_field: str) -> tuple[list[str], str | None]:
        """The patient-model kinds (or catalogue interventions) a set of codings names, and why not when ambiguous."""
        local = self._local(codings, local_key)
        procedure_systems = {self.maps.uri("cpt"), self.maps.uri("hcpcs")}  # CPT and HCPCS Level II
        from_cpt: set[str] = set()
        cpts = [code for system, code in codings if system in procedure_systems and code in self.maps.cpt]
        for code in cpts:
            from_cpt |= set(getattr(self.maps.cpt[code], cpt_field))
        if len(local) > 1:
            return [], f"more than one local code: {', '.join(local)}"
        if local:
            if cpts and local[0] not in from_cpt:
                return [], f"local code {local[0]} disagrees with CPT {', '.join(cpts)}"
            return local, None
        if len(from_cpt) == 1:
            return sorted(from_cpt), None
        if from_cpt:
            return [], (
                f"CPT {', '.join(cpts)} is used for {' and '.join(sorted(from_cpt))}; "
                f"add a {self.maps.uri(local_key)} coding to say which"
            )
        return [], None
