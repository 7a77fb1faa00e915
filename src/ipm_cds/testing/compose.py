"""Composable patient strategies: a patient built from parts, each part one clinical concern.

:func:`patients` draws a whole coherent patient with knobs; this module gives the same building blocks as
public parts that a test composes for the question it asks::

    from ipm_cds.testing.compose import background, complication, pathway, patient

    @given(patient(pathway("facet"), complication(), background(opioids=True)))
    def test_...(case): ...

A part adds to one patient document drawn in one context, in the order given (a background part sees the
pain a pathway part drew, as a clinician would take a history). The codes every part draws come from the
ruleset the strategy is given (its vocabularies; the bundled ruleset by default), and :func:`patient`
validates each document against that ruleset (``Ruleset.parse_patient``), so a drawn patient is always one
its engine accepts. For both sides of that ruleset's thresholds, wrap the result in
:func:`ipm_cds.testing.strategies.boundary_patients` (``base=patient(...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from hypothesis import strategies as st

from ..model.patient import PatientCase
from ..ruleset.loader import Ruleset
from .strategies import DEFAULT_AS_OF, PATHWAYS, RulesetSource
from .strategies.background import _background, _complication, _finish
from .strategies.draws import _Ctx, _Draw
from .strategies.pathways import _BUILDERS
from .strategies.rulesets import _codes, _ruleset
from .strategies.vocabularies import _ANTITHROMBOTICS, _OPIOIDS

__all__ = ["Part", "background", "complication", "pathway", "patient"]


@dataclass(frozen=True)
class Part:
    """One part of a patient document: a pathway's complaint and history, a safety finding, the background.

    ``name`` says what it draws (it shows in a failing example's repr); parts are combined by :func:`patient`.
    """

    name: str
    draw: Callable[[_Draw, _Ctx], None]

    def __repr__(self) -> str:
        return f"Part({self.name})"


def pathway(name: str) -> Part:
    """The complaint, findings and history of one clinical pathway (``PATHWAYS``: ``facet``, ``esi``, ...)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown pathway {name!r}; choose from {', '.join(PATHWAYS)}")
    return Part(f"pathway {name}", _BUILDERS[name])


def complication() -> Part:
    """One finding that a safety rule reads beside the candidates (pregnancy, infection, an anticoagulant, a
    device, a laboratory value, ...), in the region of the pain already drawn."""
    return Part("complication", _complication)


def background(
    *, red_flags: bool | None = None, anticoagulants: bool | None = None, opioids: bool | None = None
) -> Part:
    """Demographics, screenings, medications, laboratory results, conditions and allergies; ``True`` asks for
    at least one red flag, anticoagulant or opioid, ``False`` for none (kept out of the whole patient)."""

    def draw(d: _Draw, ctx: _Ctx) -> None:
        _background(d, ctx, red_flags, anticoagulants, opioids)
        if anticoagulants is False or opioids is False:
            ctx.doc["medications"] = [
                m
                for m in ctx.doc.get("medications", [])
                if not (anticoagulants is False and m["agent"] in _ANTITHROMBOTICS)
                and not (opioids is False and m["agent"] in _OPIOIDS)
            ]
        if red_flags is False:
            ctx.doc.pop("red_flags", None)

    knobs = {"red_flags": red_flags, "anticoagulants": anticoagulants, "opioids": opioids}
    shown = ", ".join(f"{k}={v}" for k, v in knobs.items() if v is not None)
    return Part(f"background({shown})", draw)


def patient(
    *parts: Part,
    ruleset: RulesetSource | None = None,
    as_of: date = DEFAULT_AS_OF,
    region: str | None = None,
    character: str | None = None,
    prior_procedures: bool | None = None,
    max_pain: int = 2,
) -> st.SearchStrategy[PatientCase]:
    """Patients made of ``parts``, drawn in order into one document, valid under ``ruleset``.

    ``region``/``character`` fix the pain's; ``prior_procedures`` asks for (True) or keeps out (False) a
    history; ``max_pain`` caps the complaints. A ruleset given as a folder or a function is loaded when the
    strategy is first drawn from. Medications outside the ruleset's catalogue are left out.
    """
    if not parts:
        raise ValueError("a patient needs at least one part, e.g. pathway('facet')")
    if max_pain < 1:
        raise ValueError("max_pain must be at least 1")
    if not isinstance(ruleset, Ruleset):
        source = ruleset
        return st.deferred(
            lambda: patient(
                *parts,
                ruleset=_ruleset(source),
                as_of=as_of,
                region=region,
                character=character,
                prior_procedures=prior_procedures,
                max_pain=max_pain,
            )
        )
    loaded = ruleset
    codes = dict(_codes(loaded))
    agents = frozenset(loaded.medications)

    @st.composite
    def build(draw: st.DrawFn) -> PatientCase:
        d = _Draw(draw, as_of, codes)
        ctx = _Ctx(as_of, region, character, prior_procedures, {})
        for part in parts:
            part.draw(d, ctx)
        if not ctx.doc.get("pain"):  # every patient the parts describe has a complaint
            _BUILDERS["general"](d, ctx)
        doc = _finish(d, ctx, max_pain)
        doc["medications"] = [m for m in doc.get("medications", []) if m["agent"] in agents]
        if not doc["medications"]:
            del doc["medications"]
        return loaded.parse_patient(doc)

    return build()
