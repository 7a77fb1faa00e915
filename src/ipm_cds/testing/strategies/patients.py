"""The public patient strategies: :func:`patients` (a pathway, its complications, the background) and
:func:`boundary_patients` (one value on or beside a threshold of a ruleset)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from ...errors import PatientDataError
from ...model.patient import PatientCase
from ...ruleset.loader import Ruleset
from .background import _background, _complication, _finish
from .draws import DEFAULT_AS_OF, _choice, _Ctx, _Draw, _int
from .pathways import _BUILDERS, _WEIGHTS
from .rulesets import RulesetSource, _bundled, _codes, _ruleset
from .vocabularies import _ANTITHROMBOTICS, _OPIOIDS, _PATHWAY_SCOPE, PATHWAYS

if TYPE_CHECKING:
    from ..boundaries import Threshold


def patients(
    *,
    as_of: date = DEFAULT_AS_OF,
    pathway: str | None = None,
    region: str | None = None,
    character: str | None = None,
    red_flags: bool | None = None,
    anticoagulants: bool | None = None,
    opioids: bool | None = None,
    prior_procedures: bool | None = None,
    max_pain: int = 2,
    ruleset: RulesetSource | None = None,
) -> st.SearchStrategy[PatientCase]:
    """Valid, clinically coherent patients (the package docstring describes the pathways and the knobs).

    ``ruleset``: draw only medications of its catalogue (a ruleset with a smaller catalogue than the
    bundled one would refuse the others). The same knobs give the same strategy object (strategies are
    built once, so that drawing stays cheap).
    """
    if ruleset is not None and not isinstance(ruleset, Ruleset):
        source = ruleset
        return st.deferred(
            lambda: patients(
                as_of=as_of,
                pathway=pathway,
                region=region,
                character=character,
                red_flags=red_flags,
                anticoagulants=anticoagulants,
                opioids=opioids,
                prior_procedures=prior_procedures,
                max_pain=max_pain,
                ruleset=_ruleset(source),
            )
        )
    agents = frozenset(ruleset.medications) if ruleset is not None else None
    codes = _codes(ruleset if ruleset is not None else _bundled())
    return _patients(
        as_of, pathway, region, character, red_flags, anticoagulants, opioids, prior_procedures, max_pain, agents, codes
    )


@functools.cache
def _patients(
    as_of: date,
    pathway: str | None,
    region: str | None,
    character: str | None,
    red_flags: bool | None,
    anticoagulants: bool | None,
    opioids: bool | None,
    prior_procedures: bool | None,
    max_pain: int,
    agents: frozenset[str] | None,
    vocabularies: tuple[tuple[str, tuple[str, ...]], ...],
) -> st.SearchStrategy[PatientCase]:
    codes = dict(vocabularies)
    regions, characters = codes["body_region"], codes["pain_character"]
    if pathway is not None and pathway not in _BUILDERS:
        raise ValueError(f"unknown pathway {pathway!r}; choose from {', '.join(PATHWAYS)}")
    if region is not None and region not in regions:
        raise ValueError(f"unknown region {region!r}; choose from {', '.join(regions)}")
    if character is not None and character not in characters:
        raise ValueError(f"unknown pain character {character!r}; choose from {', '.join(characters)}")
    if max_pain < 1:
        raise ValueError("max_pain must be at least 1")
    if pathway is not None:
        eligible: tuple[str, ...] = (pathway,)
    else:
        eligible = tuple(
            name
            for name, (scope_regions, scope_characters) in _PATHWAY_SCOPE.items()
            if (region is None or region in (scope_regions or regions))
            and (character is None or character in (scope_characters or characters))
        ) or ("general",)
    # simplest first (shrinking goes there), each pathway as often as its weight says
    weighted = tuple(name for name in eligible for _ in range(_WEIGHTS[name]))

    @st.composite
    def build(draw: st.DrawFn) -> PatientCase:
        d = _Draw(draw, as_of, codes)
        ctx = _Ctx(as_of, region, character, prior_procedures, {})
        first = d.pick(weighted)
        _BUILDERS[first](d, ctx)
        if pathway is None and max_pain > 1 and d.chance(65):  # a second complaint on another pathway
            second = d.pick(weighted)
            if second not in (first, "red_flags"):
                _BUILDERS[second](d, ctx)
        if first not in ("general", "red_flags", "opioids"):
            for _ in range(d.pick((0, 0, 1, 1, 1, 2))):
                _complication(d, ctx)
        _background(d, ctx, red_flags, anticoagulants, opioids)
        doc = _finish(d, ctx, max_pain)
        if anticoagulants is False or opioids is False or agents is not None:
            doc["medications"] = [
                m
                for m in doc.get("medications", [])
                if not (anticoagulants is False and m["agent"] in _ANTITHROMBOTICS)
                and not (opioids is False and m["agent"] in _OPIOIDS)
                and (agents is None or m["agent"] in agents)
            ]
        return PatientCase.model_validate(doc)

    return build()


def boundary_patients(
    ruleset: RulesetSource | None = None,
    *,
    profile: str | None = None,
    as_of: date = DEFAULT_AS_OF,
    targets: Sequence[Threshold] | None = None,
    base: st.SearchStrategy[PatientCase] | None = None,
) -> st.SearchStrategy[PatientCase]:
    """Patients with one value just below, on or just above one numeric threshold of ``ruleset`` (the bundled
    one when None; a folder or a function is loaded when the strategy is first drawn from).

    Every threshold a rule compares (a literal, or a parameter resolved under ``profile``) is a target,
    or only ``targets`` (from :func:`ipm_cds.testing.boundaries.thresholds`); each (threshold, probe value)
    pair is equally likely. The rest of the patient is drawn by ``base`` (:func:`patients` by default), so
    the threshold meets varied surroundings. Probes that cannot be recorded (a negative count, a score
    outside its instrument's range) are rejected, never drawn.
    """
    if not isinstance(ruleset, Ruleset):  # loaded when first drawn from (a strategy built at import time)
        source = ruleset
        return st.deferred(
            lambda: boundary_patients(_ruleset(source), profile=profile, as_of=as_of, targets=targets, base=base)
        )
    from hypothesis import assume

    from ..boundaries import set_fact_field, thresholds

    found = list(targets) if targets is not None else thresholds(ruleset, profile)
    if not found:
        raise ValueError("the ruleset compares no numeric threshold")
    probes = tuple((t, value) for t in found for value in t.probes())
    surroundings = base if base is not None else patients(as_of=as_of)

    @st.composite
    def draw(draw: st.DrawFn) -> PatientCase:
        target, value = draw(_choice(probes))
        doc = draw(surroundings).model_dump(mode="json", exclude_none=True)
        where = draw(_int(0, 5))
        probed = set_fact_field(doc, target.fact_type, target.field, value, as_of, target.selectors, where, ruleset)
        assume(probed is not None)
        try:  # the ruleset's own check: codes, and each value within its test's or instrument's range
            return ruleset.parse_patient(probed)
        except PatientDataError:
            assume(False)
            raise  # unreachable: assume(False) stops the draw

    return draw()
