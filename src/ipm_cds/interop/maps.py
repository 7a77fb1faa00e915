"""The code maps of :mod:`ipm_cds.interop`: data files in ``maps/*.yaml``, loaded and checked once.

Each file names its sources; each entry names its code system (a key of ``systems.yaml``) and the
source that confirmed it. Codes that could not be confirmed are listed under ``not_included`` and
are not read. Loading validates every file against the models of :mod:`.map_files` (unknown keys are
errors) and checks every target against the patient model's vocabularies, so a typo fails at import, not
at a patient's bedside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigurationError
from ..model import patient as pm
from .map_files import (
    RULESET_VOCABULARIES,
    VOCABULARIES,
    AllergiesFile,
    AllergyMapEntry,
    AmbiguousCode,
    Answer,
    ConditionMapEntry,
    ConditionsFile,
    ConditionsTable,
    CoronaryStentEntry,
    CptEntry,
    InstrumentCode,
    MedicationMapEntry,
    MedicationsFile,
    ObservationEntry,
    ObservationsFile,
    ObservationsTable,
    OverrideReasonsFile,
    PainMapEntry,
    ProceduresFile,
    ProductEntry,
    QualifiersFile,
    RxNormTable,
    SystemsFile,
    TableCondition,
)

# The file models other modules read from here (they live in map_files) are re-exported.
__all__ = [
    "RULESET_VOCABULARIES",
    "VOCABULARIES",
    "InstrumentCode",
    "Maps",
    "MedicationMapEntry",
    "ObservationEntry",
    "ProductEntry",
    "load_maps",
    "normalise_icd10",
]


def normalise_icd10(code: str) -> str:
    """ICD-10-CM code without the dot, upper case: ``m54.50`` -> ``M5450``."""
    return code.replace(".", "").strip().upper()


_Key = tuple[str, str]  # (system URI, code)
_T = TypeVar("_T", bound=BaseModel)


@dataclass(frozen=True)
class Maps:
    """Every code map, indexed for lookup by (system URI, code)."""

    systems: SystemsFile
    observations: ObservationsFile
    conditions: ConditionsFile
    medications: MedicationsFile
    procedures: ProceduresFile
    allergies: AllergiesFile
    qualifiers: QualifiersFile
    override_reasons: OverrideReasonsFile
    observation_by_code: Mapping[_Key, ObservationEntry]
    answer_by_code: Mapping[tuple[int, str, str], Answer]  # (id(entry), system URI, code)
    condition_by_code: Mapping[_Key, ConditionMapEntry]
    condition_prefixes: tuple[tuple[str, str, ConditionMapEntry], ...]  # (system URI, normalised prefix, entry)
    pain_by_code: Mapping[_Key, PainMapEntry]
    pain_prefixes: tuple[tuple[str, str, PainMapEntry], ...]
    medication_by_rxcui: Mapping[str, MedicationMapEntry]
    product_by_rxcui: Mapping[str, ProductEntry]
    recognised_by_code: Mapping[_Key, TableCondition]  # conditions the rules do not read
    route_by_code: Mapping[_Key, str]  # route of administration (dosage.route) -> intravenous, subcutaneous
    rxnorm_table: RxNormTable
    conditions_table: ConditionsTable
    ambiguous_rxcui: Mapping[str, AmbiguousCode]
    cpt: Mapping[str, CptEntry]
    coronary_stent_cpt: Mapping[str, CoronaryStentEntry]
    allergy_by_code: Mapping[_Key, AllergyMapEntry]
    laterality_by_code: Mapping[_Key, str]
    modality_by_code: Mapping[_Key, str]
    instrument_by_code: Mapping[_Key, InstrumentCode]  # outcome instruments (measurements) by code
    encounter_class_by_code: Mapping[_Key, str]  # Encounter.class -> "inpatient"
    lab_flag_by_code: Mapping[_Key, str]  # Observation.interpretation -> high, normal, low
    vocabulary_uses: tuple[tuple[str, str, str, str], ...] = ()  # (ruleset vocabulary, code, map file, entry)

    def codes_outside(self, vocabularies: Mapping[str, Collection[str]]) -> list[str]:
        """Map targets that are not codes of a ruleset's vocabularies, as ``file: entry: code`` lines."""
        return [
            f"{name}: {what}: {code!r} is not a {vocabulary} code"
            for vocabulary, code, name, what in self.vocabulary_uses
            if code not in vocabularies.get(vocabulary, ())
        ]

    def uri(self, key: str) -> str:
        """The URI of a standard system (``loinc``) or a local one (``red-flag``)."""
        if key in self.systems.standard:
            return self.systems.standard[key].uri
        return self.systems.local[key].uri

    def extension(self, key: str) -> str:
        return self.systems.extensions[key]

    def local_key(self, uri: str) -> str | None:
        """The key of the local system with this URI, if it is one."""
        for key, system in self.systems.local.items():
            if system.uri == uri:
                return key
        return None

    def answer(self, entry: ObservationEntry, system: str, code: str) -> Answer | None:
        return self.answer_by_code.get((id(entry), system, code))

    def local_observation_codes(self) -> tuple[str, ...]:
        local = self.uri("observation")
        return tuple(code for (system, code) in self.observation_by_code if system == local)


TERMINOLOGY_TABLES = ("rxnorm", "conditions", "observations")


def _read_table(name: str) -> Any:
    text = resources.files("ipm_cds.interop").joinpath("terminology", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def _validate_table(model: type[_T], name: str) -> _T:
    try:
        return model.model_validate(_read_table(name))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"terminology/{name}.json: {where}: {first['msg']}") from None


def _read(name: str) -> Any:
    text = resources.files("ipm_cds.interop").joinpath("maps", f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _validate(model: type[_T], name: str) -> _T:
    try:
        return model.model_validate(_read(name))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"maps/{name}.yaml: {where}: {first['msg']}") from None


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigurationError(f"maps/{name}.yaml: {message}")


_ICD = re.compile(r"^[A-Z][0-9A-Z.]*$")


@lru_cache(maxsize=1)
def load_maps() -> Maps:
    """Load, validate and index the map files (cached: they are package data)."""
    systems = _validate(SystemsFile, "systems")
    observations = _validate(ObservationsFile, "observations")
    conditions = _validate(ConditionsFile, "conditions")
    medications = _validate(MedicationsFile, "medications")
    procedures = _validate(ProceduresFile, "procedures")
    allergies = _validate(AllergiesFile, "allergies")
    qualifiers = _validate(QualifiersFile, "qualifiers")
    override_reasons = _validate(OverrideReasonsFile, "override_reasons")

    known = set(systems.standard) | set(systems.local)
    for key, local in systems.local.items():
        _check(local.vocabulary in VOCABULARIES, "systems", f"local.{key}: unknown vocabulary {local.vocabulary!r}")

    def uri(key: str, name: str) -> str:
        _check(key in known, name, f"unknown code system {key!r}")
        return systems.standard[key].uri if key in systems.standard else systems.local[key].uri

    uses: list[tuple[str, str, str, str]] = []

    def vocab(value: str, vocabulary: str, name: str, what: str) -> None:
        if vocabulary in RULESET_VOCABULARIES:
            uses.append((RULESET_VOCABULARIES[vocabulary], value, name, what))
        allowed = VOCABULARIES[vocabulary]
        _check(allowed is None or value in allowed, name, f"{what}: {value!r} is not a {vocabulary} code")

    observation_by_code: dict[_Key, ObservationEntry] = {}
    answer_by_code: dict[tuple[int, str, str], Answer] = {}
    for o in observations.observations:
        _check(o.source in observations.sources, "observations", f"{o.code}: unknown source {o.source!r}")
        obs_key = (uri(o.system, "observations"), o.code)
        _check(obs_key not in observation_by_code, "observations", f"{o.code}: listed twice")
        observation_by_code[obs_key] = o
        _check((o.value == "coded") <= (o.answers is not None), "observations", f"{o.code}: coded needs answers")
        for a in o.answers or ():
            answer_by_code[(id(o), uri(a.system, "observations"), a.code)] = a
        for u in o.units or ():
            _check(u.source is None or u.source in observations.sources, "observations", f"{o.code}: unit source")

    observations_table = _validate_table(ObservationsTable, "observations")
    loinc = uri("loinc", "observations")
    for to in observations_table.observations:
        like = observation_by_code.get((loinc, to.like))
        where = f"terminology/observations.json {to.code}"
        same = like is not None and like.target == to.target and like.answers is None
        _check(same, "observations", f"{where}: like {to.like} is not a {to.target} without coded answers")
        in_map = observation_by_code.get((loinc, to.code))
        if in_map is not None:
            _check(in_map.target == to.target, "observations", f"{where}: the table and the map disagree")
            continue
        assert like is not None
        observation_by_code[(loinc, to.code)] = like.model_copy(
            update={"code": to.code, "display": to.display, "source": to.source}
        )

    # Outcome instruments (measurements): the map's scores that are instruments too (ODI in %, the local scores),
    # then the generated table's LOINC codes (NRS, PHQ-9, GAD-7, PEG, PROMIS T-scores).
    instrument_by_code: dict[_Key, InstrumentCode] = {}
    for obs_code, o in observation_by_code.items():
        if o.instrument is not None:
            vocab(o.instrument, "OutcomeMeasure", "observations", o.code)
            units = None if o.units is None else tuple(u.unit for u in o.units)
            _check(all(u.factor == 1 and u.offset == 0 for u in o.units or ()), "observations", f"{o.code}: unit")
            instrument_by_code[obs_code] = InstrumentCode(instrument=o.instrument, units=units, source=o.source)
    for ti in observations_table.instruments:
        where = f"terminology/observations.json instrument {ti.code}"
        vocab(ti.instrument, "OutcomeMeasure", "observations", where)
        held = instrument_by_code.get((loinc, ti.code))
        _check(held is None or held.instrument == ti.instrument, "observations", f"{where}: the map reads it otherwise")
        if held is None:
            dimensionless = ti.units == "dimensionless"
            instrument_by_code[(loinc, ti.code)] = InstrumentCode(
                instrument=ti.instrument, dimensionless=dimensionless, source=ti.source
            )

    condition_by_code: dict[_Key, ConditionMapEntry] = {}
    condition_prefixes: list[tuple[str, str, ConditionMapEntry]] = []
    for c in conditions.conditions:
        _check(c.source in conditions.sources, "conditions", f"{c.display}: unknown source {c.source!r}")
        vocab(c.condition, "ConditionCode", "conditions", c.display)
        system = uri(c.system, "conditions")
        if c.prefix is not None:
            _check(c.system == "icd10cm" and bool(_ICD.match(c.prefix)), "conditions", f"bad prefix {c.prefix!r}")
            condition_prefixes.append((system, normalise_icd10(c.prefix), c))
        else:
            condition_by_code[(system, str(c.code))] = c
    pain_by_code: dict[_Key, PainMapEntry] = {}
    pain_prefixes: list[tuple[str, str, PainMapEntry]] = []
    for p in conditions.pain:
        _check(p.source in conditions.sources, "conditions", f"{p.display}: unknown source {p.source!r}")
        if p.region is not None:
            vocab(p.region, "BodyRegion", "conditions", p.display)
        vocab(p.character, "PainCharacter", "conditions", p.display)
        _check(p.laterality in (None, *get_args(pm.Laterality)), "conditions", f"{p.display}: laterality")
        system = uri(p.system, "conditions")
        if p.prefix is not None:
            pain_prefixes.append((system, normalise_icd10(p.prefix), p))
        else:
            pain_by_code[(system, str(p.code))] = p
    # Longest prefix first: the most specific entry wins.
    condition_prefixes.sort(key=lambda t: -len(t[1]))
    pain_prefixes.sort(key=lambda t: -len(t[1]))

    medication_by_rxcui: dict[str, MedicationMapEntry] = {}
    for m in medications.medications:
        _check(m.source in medications.sources, "medications", f"{m.code}: unknown source {m.source!r}")
        _check(m.code not in medication_by_rxcui, "medications", f"{m.code}: listed twice")
        medication_by_rxcui[m.code] = m
    ambiguous = {a.code: a for a in medications.ambiguous}
    _check(not set(ambiguous) & set(medication_by_rxcui), "medications", "a code is both mapped and ambiguous")

    # The generated tables (scripts/terminology/generate.py): clinical and branded drugs, and conditions.
    rxnorm_table = _validate_table(RxNormTable, "rxnorm")
    product_by_rxcui: dict[str, ProductEntry] = {}
    for prod in rxnorm_table.products:
        where = f"terminology/rxnorm.json {prod.rxcui}"
        _check(prod.rxcui not in product_by_rxcui, "medications", f"{where}: listed twice")
        _check(prod.rxcui not in medication_by_rxcui, "medications", f"{where}: also in medications.yaml")
        product_by_rxcui[prod.rxcui] = prod
        routes = {r.route for r in rxnorm_table.routes}
        _check(set(prod.agent_by_route or {}) <= routes, "medications", f"{where}: unknown route")
    route_by_code = {(uri(r.system, "medications"), r.code): r.route for r in rxnorm_table.routes}
    conditions_table = _validate_table(ConditionsTable, "conditions")
    recognised: dict[_Key, TableCondition] = {}
    for tc in conditions_table.conditions:
        tkey = (uri(tc.system, "conditions"), tc.code)
        if tc.recognised is not None:  # ICD-10-CM keyed without the dot, as the reader looks it up
            recognised[(tkey[0], normalise_icd10(tc.code)) if tc.system == "icd10cm" else tkey] = tc
            continue
        where = f"terminology/conditions.json {tc.code}"
        keys = [tkey, (tkey[0], normalise_icd10(tc.code))] if tc.system == "icd10cm" else [tkey]  # dot or not
        if tc.pain is not None:
            if tc.pain.region is not None:
                vocab(tc.pain.region, "BodyRegion", "conditions", where)
            vocab(tc.pain.character, "PainCharacter", "conditions", where)
            pain = PainMapEntry(system=tc.system, code=tc.code, display=tc.display, source=tc.source, **dict(tc.pain))
            pain_by_code.update(dict.fromkeys(keys, pain))
            continue
        vocab(str(tc.condition), "ConditionCode", "conditions", where)
        listed = condition_by_code.get(tkey)
        if listed is not None:
            _check(listed.condition == tc.condition, "conditions", f"{tc.code}: the table and the map disagree")
            continue
        entry = ConditionMapEntry(
            system=tc.system, code=tc.code, display=tc.display, condition=str(tc.condition), source=tc.source
        )
        condition_by_code.update(dict.fromkeys(keys, entry))

    cpt: dict[str, CptEntry] = {}
    for e in procedures.cpt:
        _check(e.source in procedures.sources, "procedures", f"{e.code}: unknown source {e.source!r}")
        _check(e.code not in cpt, "procedures", f"{e.code}: listed twice")
        for kind in e.procedure_kinds:
            vocab(kind, "ProcedureKind", "procedures", e.code)
        for region in e.regions:
            vocab(region, "BodyRegion", "procedures", e.code)
        cpt[e.code] = e
    stent_cpt: dict[str, CoronaryStentEntry] = {}
    for st in procedures.coronary_stent_cpt:
        _check(st.source in procedures.sources, "procedures", f"{st.code}: unknown source {st.source!r}")
        _check(st.code not in cpt and st.code not in stent_cpt, "procedures", f"{st.code}: listed twice")
        stent_cpt[st.code] = st

    allergy_by_code: dict[_Key, AllergyMapEntry] = {}
    for al in allergies.allergies:
        _check(al.source in allergies.sources, "allergies", f"{al.code}: unknown source {al.source!r}")
        vocab(al.substance, "AllergySubstance", "allergies", al.code)
        allergy_by_code[(uri(al.system, "allergies"), al.code)] = al

    laterality: dict[_Key, str] = {}
    for q in qualifiers.laterality:
        _check(q.value in get_args(pm.Laterality), "qualifiers", f"{q.code}: laterality {q.value!r}")
        laterality[(uri(q.system, "qualifiers"), q.code)] = q.value
    modality: dict[_Key, str] = {}
    for q in qualifiers.modality:
        vocab(q.value, "ImagingModality", "qualifiers", q.code)
        modality[(uri(q.system, "qualifiers"), q.code)] = q.value
    lab_flag: dict[_Key, str] = {}
    for q in qualifiers.lab_flag:
        _check(q.value in ("high", "normal", "low"), "qualifiers", f"{q.code}: lab flag {q.value!r}")
        _check(q.source in qualifiers.sources, "qualifiers", f"{q.code}: unknown source {q.source!r}")
        lab_flag[(uri(q.system, "qualifiers"), q.code)] = q.value
    encounter_class: dict[_Key, str] = {}
    for q in qualifiers.encounter_class:
        _check(q.value == "inpatient", "qualifiers", f"{q.code}: encounter class {q.value!r} (only 'inpatient')")
        _check(q.source in qualifiers.sources, "qualifiers", f"{q.code}: unknown source {q.source!r}")
        encounter_class[(uri(q.system, "qualifiers"), q.code)] = q.value

    for kind, codes in override_reasons.cards.items():
        for code in codes:
            _check(code in override_reasons.reasons, "override_reasons", f"cards.{kind}: unknown reason {code!r}")

    return Maps(
        systems=systems,
        observations=observations,
        conditions=conditions,
        medications=medications,
        procedures=procedures,
        allergies=allergies,
        qualifiers=qualifiers,
        override_reasons=override_reasons,
        observation_by_code=observation_by_code,
        answer_by_code=answer_by_code,
        condition_by_code=condition_by_code,
        condition_prefixes=tuple(condition_prefixes),
        pain_by_code=pain_by_code,
        pain_prefixes=tuple(pain_prefixes),
        medication_by_rxcui=medication_by_rxcui,
        product_by_rxcui=product_by_rxcui,
        recognised_by_code=recognised,
        route_by_code=route_by_code,
        rxnorm_table=rxnorm_table,
        conditions_table=conditions_table,
        ambiguous_rxcui=ambiguous,
        cpt=cpt,
        coronary_stent_cpt=stent_cpt,
        allergy_by_code=allergy_by_code,
        laterality_by_code=laterality,
        modality_by_code=modality,
        instrument_by_code=instrument_by_code,
        encounter_class_by_code=encounter_class,
        lab_flag_by_code=lab_flag,
        vocabulary_uses=tuple(uses),
    )
