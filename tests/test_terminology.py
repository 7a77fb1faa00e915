"""The generated terminology tables: reproducible from their sources, consistent with the ruleset, and
giving the CDC 2022 MME for every opioid product class when a record is coded as an EHR sends it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ipm_cds
from ipm_cds.interop.fhir import FhirMapping, read_bundle
from ipm_cds.interop.maps import load_maps

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "terminology" / "generate.py"
TABLES = ROOT / "src" / "ipm_cds" / "interop" / "terminology"
EXAMPLES = ROOT / "examples" / "fhir"
AS_OF = date(2025, 6, 2)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOCAL_MEDICATION = "https://ipm-cds.invalid/fhir/CodeSystem/medication"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"

# CDC 2022 Clinical Practice Guideline, Table (MME conversion factors), written out here by hand so that the
# test checks the ruleset's catalogue and the reader against the published numbers, not against themselves.
CDC_2022 = {
    "codeine": 0.15,
    "fentanyl_transdermal": 2.4,  # per mcg/h
    "hydrocodone": 1.0,
    "hydromorphone": 5.0,
    "methadone": 4.7,
    "morphine": 1.0,
    "oxycodone": 1.5,
    "oxymorphone": 3.0,
    "tapentadol": 0.4,
    "tramadol": 0.2,
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("terminology_generate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _products() -> list[dict[str, Any]]:
    return list(json.loads((TABLES / "rxnorm.json").read_text(encoding="utf-8"))["products"])


# -- the tables and their sources ------------------------------------------------------------------------


def test_the_script_regenerates_the_committed_tables_byte_for_byte() -> None:
    tables = _generator().build()
    assert set(tables) == {p.name for p in TABLES.glob("*.json")}
    for name, text in tables.items():
        assert (TABLES / name).read_text(encoding="utf-8") == text, f"{name} is stale: run {SCRIPT.name}"


def test_the_script_refuses_a_source_that_is_not_the_one_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _generator()
    copy = tmp_path / "sources"
    shutil.copytree(gen.SOURCES, copy)
    tsv = copy / "omtk-drug-ingredients.tsv"
    tsv.write_text(tsv.read_text(encoding="utf-8").replace("\t5 MG\t", "\t50 MG\t", 1), encoding="utf-8")
    monkeypatch.setattr(gen, "SOURCES", copy)
    with pytest.raises(gen.SourceError, match=r"omtk-drug-ingredients\.tsv: sha256"):
        gen.build()


def test_the_omtk_extract_is_the_upstream_rows_unchanged(tmp_path: Path) -> None:
    """extract-omtk reads a CQL DrugIngredients list into the TSV the build reads (two rows, one quoted)."""
    gen = _generator()
    cql = tmp_path / "OMTKData.cql"
    cql.write_text(
        "library OMTKData version '3.0.0'\ndefine DrugIngredients:\n{\n"
        "  { drugCode: 1, drugName: 'a 5 MG Oral Tablet', doseFormCode: 2, doseFormName: 'Oral Tablet', "
        "ingredientCode: 3, ingredientName: 'A', strength: '5 MG', strengthValue: 5.0, strengthUnit: 'MG' },\n"
        "  { drugCode: 4, drugName: 'b''s 1 MG/ML Oral Solution', doseFormCode: 5, doseFormName: 'Oral Solution', "
        "ingredientCode: 6, ingredientName: 'B', strength: '1 MG/ML', strengthValue: 1.0, strengthUnit: 'MG/ML' }\n}\n",
        encoding="utf-8",
    )
    rows = gen.extract_omtk(cql).splitlines()
    assert rows[0].split("\t") == list(gen.OMTK_FIELDS)
    assert rows[1:] == [
        "1\ta 5 MG Oral Tablet\t2\tOral Tablet\t3\tA\t5 MG\t5.0\tMG",
        "4\tb's 1 MG/ML Oral Solution\t5\tOral Solution\t6\tB\t1 MG/ML\t1.0\tMG/ML",
    ]


def test_the_gps_extract_keeps_the_diagnoses_and_findings_of_the_valueset(tmp_path: Path) -> None:
    """extract-gps keeps the concepts tagged disorder, finding or situation, code and FSN unchanged."""
    gen = _generator()
    xml = tmp_path / "valueset-snomed-intl-gps.xml"
    concepts = [
        ("1", "A thing (disorder)"),
        ("2", "A bug (organism)"),
        ("3", "A sign (finding)"),
        ("4", "X (situation)"),
    ]
    body = "".join(f'<concept><code value="{c}"/><display value="{d}"/></concept>' for c, d in concepts)
    xml.write_text(
        f'<ValueSet xmlns="http://hl7.org/fhir"><compose><include>{body}</include></compose></ValueSet>',
        encoding="utf-8",
    )
    rows = gen.extract_gps(xml).splitlines()
    assert rows == ["code\tfsn", "1\tA thing (disorder)", "3\tA sign (finding)", "4\tX (situation)"]


def test_a_gps_concept_is_chosen_by_a_name_the_source_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fully specified name the GPS does not hold is an error: no code is ever typed or guessed."""
    gen = _generator()
    mapping = gen.yaml.safe_load((gen.HERE / "mapping.yaml").read_text(encoding="utf-8"))
    mapping["snomed_gps"]["conditions"]["Lumbar radiculopathy"] = "crps"  # no semantic tag: not the FSN
    with pytest.raises(gen.SourceError, match="is not a concept of"):
        gen.condition_entries(mapping)
    mapping = gen.yaml.safe_load((gen.HERE / "mapping.yaml").read_text(encoding="utf-8"))
    mapping["snomed_gps"]["conditions"]["Lumbar radiculopathy (disorder)"] = "crps"  # also read as a pain
    with pytest.raises(gen.SourceError, match="read it differently"):
        gen.condition_entries(mapping)


def test_an_instrument_code_is_chosen_by_the_name_its_sources_give_it() -> None:
    """The LOINC codes of outcome instruments are looked up by name in the CQL and value sets: a name a source
    lacks, or a name two sources code differently, stops the script; no code is typed."""
    gen = _generator()
    mapping = gen.yaml.safe_load((gen.HERE / "mapping.yaml").read_text(encoding="utf-8"))
    chosen = {e["code"]: (e["instrument"], e["source"]) for e in gen.instrument_entries(mapping)}
    assert chosen["71959-1"] == ("promis_pf", "cms90-functional-status-heart-failure")
    assert chosen["44261-6"] == ("phq9", "phq9-tools, ahrq-pain-management-summary")  # both sources agree
    mapping["instruments"]["PROMIS-29 Physical function score"] = {  # the raw score: not in the CQL
        "instrument": "promis_pf",
        "from": ["cms90-functional-status-heart-failure"],
    }
    with pytest.raises(gen.SourceError, match="is 0 LOINC codes of cms90"):
        gen.instrument_entries(mapping)
    mapping = gen.yaml.safe_load((gen.HERE / "mapping.yaml").read_text(encoding="utf-8"))
    mapping["instruments"]["Mean score [PEG]"]["from"].append("phq9-tools")  # the PHQ-9 value set has no PEG
    with pytest.raises(gen.SourceError, match="is 0 LOINC codes of phq9-tools"):
        gen.instrument_entries(mapping)


def test_cql_code_declarations_are_read_with_their_code_system(tmp_path: Path) -> None:
    gen = _generator()
    cql = tmp_path / "x.cql"
    cql.write_text(
        "library X\ncodesystem \"LOINC\": 'http://loinc.org'\n"
        'code "A score":\n  \'1-1\' from "LOINC" display \'A score [X]\'\ncode "B": \'2-2\' from "LOINC"\n',
        encoding="utf-8",
    )
    assert gen.cql_codes(cql) == [
        {"system": "http://loinc.org", "code": "1-1", "display": "A score [X]"},
        {"system": "http://loinc.org", "code": "2-2", "display": "B"},
    ]
    cql.write_text('code "C": \'3-3\' from "SNOMED"\n', encoding="utf-8")
    with pytest.raises(gen.SourceError, match="undeclared code system"):
        gen.cql_codes(cql)


def test_every_table_names_its_sources_with_licence_and_checksums() -> None:
    for path in TABLES.glob("*.json"):
        provenance = json.loads(path.read_text(encoding="utf-8"))["provenance"]
        assert provenance["sources"], path.name
        for source in provenance["sources"].values():
            assert source["commit"] and source["licence"] and source["repository"].startswith("https://github.com/")
        for entry in provenance["files"].values():
            assert len(entry["sha256"]) == 64


def test_every_agent_is_in_the_catalogue_and_of_the_class_the_value_set_says(ruleset: ipm_cds.Ruleset) -> None:
    classes = {
        "opioid": {"opioid", "opioid_partial_agonist"},
        "benzodiazepine": {"benzodiazepine"},
        "naloxone": {"opioid_antagonist"},
        "moud_buprenorphine": {"opioid_partial_agonist"},
        "moud_methadone": {"opioid"},
        "anticoagulant": {"anticoagulant"},
        "antiplatelet": {"antiplatelet"},
        "nsaid": {"nsaid"},
        "corticosteroid": {"corticosteroid"},
        "antithrombotic": {"anticoagulant", "antiplatelet"},
        "cns_depressant": {"gabapentinoid", "benzodiazepine"},
        "muscle_relaxant": {"muscle_relaxant"},
        "immunosuppressant": set(),
    }
    for product in _products():
        if product["agent"] is None:
            continue
        info = ruleset.medications[product["agent"]]
        assert info.drug_class in classes[product["class"]], product


def test_opioid_products_carry_ingredient_strength_unit_and_dose_form() -> None:
    opioids = [p for p in _products() if p["source"] == "omtk"]
    assert len(opioids) == 910  # every drug of OMTKData 3.0.0 (912 rows: two drugs hold two salts of one opioid)
    assert {p["tty"] for p in opioids} == {"SCD", "SBD", "GPCK", "BPCK"}
    for p in opioids:
        assert p["dose_form"] and p["route"] and p["ingredients"], p
        assert all(
            i["strength"] > 0 and i["unit"] in ("mg", "mg/mL", "mcg/h", "mg/actuation") for i in p["ingredients"]
        )
    by_code = {p["rxcui"]: p for p in opioids}
    # spot checks against RxNorm's names
    assert by_code["856999"]["agent"] == "hydrocodone" and by_code["856999"]["ingredients"][0]["strength"] == 10
    assert by_code["197696"]["ingredients"][0] == {"rxcui": "4337", "name": "fentanyl", "strength": 75, "unit": "mcg/h"}
    assert by_code["1010606"]["agent"] == "buprenorphine" and by_code["1010606"]["route"] == "oromucosal"
    # fentanyl other than the transdermal system has no agent in the catalogue
    assert all(
        p["agent"] is None for p in opioids if p["ingredients"][0]["name"] == "fentanyl" and p["route"] != "transdermal"
    )


def test_buprenorphine_naloxone_is_never_read_as_rescue_naloxone() -> None:
    maps = load_maps()
    for product in maps.product_by_rxcui.values():
        name = product.name.lower()
        if "buprenorphine" in name:
            assert product.agent in ("buprenorphine", None), product.name
        if product.agent != "naloxone":
            assert "naloxone" not in product.also and "naltrexone" not in product.also, product.name


def test_a_combination_product_records_each_catalogue_agent(ruleset: ipm_cds.Ruleset) -> None:
    percodan = load_maps().product_by_rxcui["848768"]  # aspirin 325 MG / oxycodone hydrochloride 4.84 MG Oral Tablet
    assert (percodan.agent, percodan.also) == ("oxycodone", ("aspirin",))
    m = _read(_order(percodan.rxcui, _dose(_q(1, "{tbl}"), _every(6))), ruleset=ruleset)
    read = sorted((x.agent, x.daily_dose) for x in m.patient.medications)
    assert read == [("aspirin", None), ("oxycodone", pytest.approx(4.84 * 4))]
    assert m.unmapped == ()


def test_antithrombotics_and_corticosteroids_from_the_pddi_value_sets() -> None:
    products = load_maps().product_by_rxcui
    assert products["855332"].agent == "warfarin"  # warfarin sodium 5 MG Oral Tablet
    assert products["834022"].agent == "ketorolac" and products["834022"].route == "oral"
    assert products["312617"].agent == "prednisone"  # prednisone 5 MG Oral Tablet
    assert "860103" not in products  # ketorolac ophthalmic solution: not systemic, not read
    assert "11289" not in products  # the ingredient is in maps/medications.yaml, not in the product table
    aggrenox = next(p for p in products.values() if "Dipyridamole 200 MG" in p.name)
    assert (aggrenox.agent, aggrenox.also) == ("aspirin", ("dipyridamole",))  # both antiplatelets are read


def test_doacs_heparins_antiplatelets_gabapentinoids_from_the_vsac_value_sets() -> None:
    products = load_maps().product_by_rxcui
    expected = {
        "1364445": "apixaban",  # apixaban 5 MG Oral Tablet
        "1232086": "rivaroxaban",  # rivaroxaban 20 MG Oral Tablet
        "1037045": "dabigatran",  # dabigatran etexilate 150 MG Oral Capsule
        "1599555": "edoxaban",  # edoxaban 60 MG Oral Tablet
    }
    for code, agent in expected.items():
        assert products[code].agent == agent, products[code]
    by_agent = {p.agent for p in products.values()}
    assert {"clopidogrel", "ticagrelor", "prasugrel", "dipyridamole", "dalteparin", "fondaparinux"} <= by_agent
    assert {"gabapentin", "pregabalin", "cyclobenzaprine"} <= by_agent
    heparins = [p for p in products.values() if "heparin sodium" in p.name.lower()]
    assert heparins and all(p.agent is None and p.note for p in heparins)  # the route decides the agent
    enoxaparin = [p for p in products.values() if "enoxaparin" in p.name.lower()]
    assert enoxaparin and all(  # no code tells the dose class: read fail closed, a local code may choose
        p.agent == "enoxaparin_therapeutic" and p.local_choices == ("enoxaparin_prophylactic",) and p.note
        for p in enoxaparin
    )


def test_laboratory_loinc_codes_take_the_unit_rules_of_their_confirmed_code(ruleset: ipm_cds.Ruleset) -> None:
    maps = load_maps()
    loinc = "http://loinc.org"
    assert maps.observation_by_code[(loinc, "14749-6")].target == "lab.glucose"  # glucose [Moles/volume]
    assert (loinc, "40858-3") not in maps.observation_by_code  # a timed specimen ("--baseline") is not read
    assert (loinc, "34167-7") not in maps.observation_by_code  # large platelets [presence]: not a count
    glucose = {
        "resourceType": "Observation",
        "id": "glu",
        "status": "final",
        "code": {"coding": [{"system": loinc, "code": "14749-6"}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2025-05-01",
        "valueQuantity": {"value": 5.5, "system": UCUM, "code": "mmol/L"},
    }
    m = _read(glucose, ruleset=ruleset)
    (lab,) = m.patient.labs
    assert (lab.test, lab.value) == ("glucose", pytest.approx(5.5 * 18.016))  # mmol/L -> mg/dL (molar mass)
    assert m.unmapped == ()


@pytest.mark.parametrize(("route", "agent"), [("34206005", "heparin_sc"), ("47625008", "heparin_iv"), (None, None)])
def test_heparin_is_read_by_its_route(route: str | None, agent: str | None, ruleset: ipm_cds.Ruleset) -> None:
    dosage = _dose({"value": 5000, "system": UCUM, "code": "[iU]"}, _every(12))
    if route is not None:
        dosage["route"] = {"coding": [{"system": SNOMED, "code": route}]}
    m = _read(_order("1361615", dosage), ruleset=ruleset)  # heparin sodium, porcine 5000 UNT/ML Injectable Solution
    if agent is None:
        assert m.patient.medications == []
        (item,) = m.unmapped
        assert item.kind == "unknown_code" and "dosageInstruction.route" in item.reason
    else:
        (med,) = m.patient.medications
        assert (med.agent, med.daily_dose, med.dose_unit) == (agent, 10000.0, "units")
        assert m.unmapped == ()


def test_snomed_conditions_map_and_recognised_codes_are_reported() -> None:
    maps = load_maps()
    assert maps.condition_by_code[(SNOMED, "75544000")].condition == "opioid_use_disorder"  # opioid dependence
    assert maps.condition_by_code[(SNOMED, "295166005")].condition == "prior_overdose"  # buprenorphine overdose
    assert maps.condition_by_code[(SNOMED, "127040003")].condition == "sickle_cell_disease"  # sickle cell anaemia
    assert maps.condition_by_code[(SNOMED, "170935008")].condition == "palliative_care"  # full care by hospice
    assert (SNOMED, "306237005") not in maps.condition_by_code  # referral to palliative care: a plan, not care
    assert (SNOMED, "77721001") not in maps.condition_by_code  # opioid intoxication: not a use disorder
    assert (SNOMED, "87132004") not in maps.condition_by_code  # opioid withdrawal: follows prescribed use too
    assert maps.condition_by_code[(SNOMED, "78275009")].condition == "sleep_apnea"  # obstructive sleep apnea
    assert (SNOMED, "443760008") not in maps.condition_by_code  # sleep hypoventilation: not apnoea
    assert maps.condition_by_code[(SNOMED, "363518003")].condition == "cancer"  # malignant tumour of kidney
    assert maps.condition_by_code[(SNOMED, "1481000119100")].condition == "diabetes"
    assert maps.condition_by_code[(SNOMED, "49436004")].condition == "atrial_fibrillation"
    assert maps.recognised_by_code[(SNOMED, "5370000")].recognised == "atrial fibrillation or flutter"  # flutter


@pytest.mark.parametrize(
    ("system", "code"), [(ICD, "I48.91"), (ICD, "I4891"), (ICD, "I48.0"), (ICD, "I48.21"), (SNOMED, "49436004")]
)
def test_atrial_fibrillation_is_read_from_icd10cm_and_snomed(system: str, code: str, ruleset: ipm_cds.Ruleset) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "af",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p"},
    }
    m = _read(condition, ruleset=ruleset)
    assert [(c.code, c.active) for c in m.patient.conditions] == [("atrial_fibrillation", True)]
    assert m.unmapped == ()


@pytest.mark.parametrize(
    ("system", "code"), [(ICD, "I48.92"), (ICD, "I48.3"), (SNOMED, "5370000"), (SNOMED, "312442005")]
)
def test_atrial_flutter_and_a_history_of_fibrillation_are_recognised_not_read(
    system: str, code: str, ruleset: ipm_cds.Ruleset
) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "flutter",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p"},
    }
    m = _read(condition, ruleset=ruleset)
    assert m.patient.conditions == []
    (item,) = m.unmapped
    assert item.kind == "not_read" and "atrial fibrillation or flutter" in item.reason


def test_a_fhir_atrial_fibrillation_on_apixaban_reaches_the_prescriber_approval_alert(ruleset: ipm_cds.Ruleset) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1951-03-02"}},
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "af",
                    "code": {"coding": [{"system": ICD, "code": "I48.91"}]},
                    "subject": {"reference": "Patient/p"},
                }
            },
            {
                "resource": {
                    "resourceType": "MedicationStatement",
                    "id": "apx",
                    "status": "active",
                    "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1364445"}]},
                    "subject": {"reference": "Patient/p"},
                }
            },
        ],
    }
    m = read_bundle(bundle, ruleset=ruleset)
    assert [c.code for c in m.patient.conditions] == ["atrial_fibrillation"]
    assert [med.agent for med in m.patient.medications] == ["apixaban"]
    assessment = ipm_cds.Engine(ruleset).evaluate(m.patient, as_of=AS_OF)
    fired = {a.basis.rule.split("@")[0] for a in assessment.alerts if a.code == "antithrombotic.prescriber_approval"}
    assert fired == {"asra.no_stop.atrial_fibrillation"}


@pytest.mark.parametrize("code", ["D57.00", "D5700", "D57.1"])
def test_sickle_cell_disease_in_icd10cm_is_read_with_or_without_dot(code: str, ruleset: ipm_cds.Ruleset) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "scd",
        "code": {"coding": [{"system": ICD, "code": code}]},
        "subject": {"reference": "Patient/p"},
    }
    m = _read(condition, ruleset=ruleset)
    assert [(c.code, c.active) for c in m.patient.conditions] == [("sickle_cell_disease", True)]
    assert m.unmapped == ()


@pytest.mark.parametrize("code", ["D57.3", "D57"])  # sickle-cell trait; the whole block (trait included)
def test_sickle_cell_trait_is_not_read_as_the_disease(code: str, ruleset: ipm_cds.Ruleset) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "trait",
        "code": {"coding": [{"system": ICD, "code": code}]},
        "subject": {"reference": "Patient/p"},
    }
    m = _read(condition, ruleset=ruleset)
    assert m.patient.conditions == []
    (item,) = m.unmapped
    assert item.kind == "unknown_code"


def _condition(coding: dict[str, str], region: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "id": "c",
        "code": {"coding": [coding]},
        "subject": {"reference": "Patient/p"},
    }
    if region is not None:
        out["bodySite"] = [
            {"coding": [{"system": "https://ipm-cds.invalid/fhir/CodeSystem/body-region", "code": region}]}
        ]
    return out


def _table(display: str) -> dict[str, str]:
    """The coding of a SNOMED CT concept of the generated table, by its display (no code typed in a test)."""
    (entry,) = [c for c in load_maps().conditions_table.conditions if c.system == "snomed" and c.display == display]
    return {"system": SNOMED, "code": entry.code}


@pytest.mark.parametrize(
    ("display", "pain"),
    [
        ("Lumbar radiculopathy (disorder)", ("lumbar", "radicular")),
        ("Cervical radiculopathy (disorder)", ("cervical", "radicular")),
        ("Neurogenic claudication (finding)", ("lumbar", "neurogenic_claudication")),
        ("Osteoarthritis of knee (disorder)", ("knee", "joint")),
        ("Chronic low back pain (finding)", ("lumbar", "axial")),
    ],
)
def test_snomed_pain_diagnoses_read_as_the_icd10cm_map_reads_them(
    display: str, pain: tuple[str, str], ruleset: ipm_cds.Ruleset
) -> None:
    m = _read(_condition(_table(display)), ruleset=ruleset)
    assert [(p.region, p.character) for p in m.patient.pain] == [pain]
    assert m.unmapped == ()


def test_a_pain_diagnosis_without_a_region_takes_the_body_site_or_is_reported(ruleset: ipm_cds.Ruleset) -> None:
    cancer_pain = _table("Chronic pain due to malignant neoplastic disease (finding)")
    m = _read(_condition(cancer_pain, region="thoracic"), ruleset=ruleset)
    assert [(p.region, p.character) for p in m.patient.pain] == [("thoracic", "cancer")]
    m = _read(_condition(cancer_pain), ruleset=ruleset)
    assert m.patient.pain == []
    (item,) = m.unmapped
    assert item.kind == "incomplete" and "bodySite" in item.reason
    m = _read(_condition({"system": ICD, "code": "G89.3"}, region="abdomen"), ruleset=ruleset)  # neoplasm related pain
    assert [(p.region, p.character) for p in m.patient.pain] == [("abdomen", "cancer")]


def test_a_pain_coded_twice_as_an_ehr_sends_it_is_one_complaint(ruleset: ipm_cds.Ruleset) -> None:
    both = _condition(_table("Facet joint pain (finding)"))  # no region of its own
    both["code"]["coding"].append({"system": ICD, "code": "M54.50"})  # low back pain: lumbar, axial
    m = _read(both, ruleset=ruleset)
    assert [(p.region, p.character) for p in m.patient.pain] == [("lumbar", "axial")]
    assert m.unmapped == ()
    clash = _condition(_table("Lumbar radiculopathy (disorder)"))
    clash["code"]["coding"].append({"system": ICD, "code": "M54.50"})  # radicular and axial: which one?
    m = _read(clash, ruleset=ruleset)
    assert m.patient.pain == [] and [u.kind for u in m.unmapped] == ["ambiguous_code"]


@pytest.mark.parametrize(
    ("display", "condition"),
    [
        ("Complex regional pain syndrome type I (disorder)", "crps"),
        ("End-stage renal disease (disorder)", "advanced_renal_disease"),
        ("Osteoporotic fracture of lumbar vertebra (disorder)", "osteoporosis"),
        ("Ankylosing spondylitis (disorder)", "spondyloarthritis"),
        ("Cirrhosis of liver (disorder)", "liver_cirrhosis"),
        ("Palliative care (regime/therapy)", "palliative_care"),
        ("Chronic painful diabetic neuropathy (disorder)", "painful_diabetic_neuropathy"),
    ],
)
def test_snomed_comorbidities_the_rules_read(display: str, condition: str, ruleset: ipm_cds.Ruleset) -> None:
    m = _read(_condition(_table(display)), ruleset=ruleset)
    assert [c.code for c in m.patient.conditions] == [condition]


@pytest.mark.parametrize(("unit", "read"), [("%", 36), ("{score}", None)])
def test_odi_by_loinc_is_read_in_percent_only(unit: str, read: int | None, ruleset: ipm_cds.Ruleset) -> None:
    pain = _condition(_table("Low back pain (finding)"))
    odi = {
        "resourceType": "Observation",
        "id": "odi",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "97909-6"}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2025-05-01",
        "valueQuantity": {"value": 36, "system": "http://unitsofmeasure.org", "code": unit},
    }
    m = _read(pain, odi, ruleset=ruleset)
    assert m.patient.pain[0].odi_pct == read
    if read is None:  # a raw 0-50 sum is never read as a percent
        (item,) = m.unmapped
        assert item.kind == "unknown_unit"


def test_start_back_total_and_distress_subscore_by_loinc(ruleset: ipm_cds.Ruleset) -> None:
    def obs(rid: str, code: str, value: int) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": rid,
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/p"},
            "effectiveDateTime": "2025-05-01",
            "valueInteger": value,
        }

    m = _read(obs("total", "91351-7", 6), obs("distress", "91350-9", 4), ruleset=ruleset)
    (screening,) = m.patient.screenings
    assert (screening.instrument, screening.score, screening.distress_subscore) == ("start_back", 6, 4)
    assert m.unmapped == ()


def test_the_opioid_risk_tool_total_by_loinc(ruleset: ipm_cds.Ruleset) -> None:
    """ORT 91392-1, as the AHRQ Pain Management Summary CQL declares it; STOP-Bang has no LOINC code read."""
    ort = {
        "resourceType": "Observation",
        "id": "ort",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "91392-1"}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2025-05-01",
        "valueInteger": 9,
    }
    m = _read(ort, ruleset=ruleset)
    (screening,) = m.patient.screenings
    assert (screening.instrument, screening.score) == ("ort", 9)
    assert m.unmapped == ()
    cql = (ROOT / "scripts/terminology/sources/ahrq-pms/FactorsToConsiderInManagingChronicPainFHIRv401.cql").read_text()
    assert 'code "Total score ORT": \'91392-1\' from "LOINC"' in cql
    loinc = {code for (system, code) in load_maps().observation_by_code if system == "http://loinc.org"}
    assert not {o.target for o in load_maps().observations.observations if o.code in loinc} & {"screening.stop_bang"}


def test_a_urine_drug_test_is_recognised_and_reported_as_not_read(ruleset: ipm_cds.Ruleset) -> None:
    udt = {
        "resourceType": "Observation",
        "id": "udt",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "101162-6"}]},
        "subject": {"reference": "Patient/p"},
        "valueBoolean": False,
    }
    m = _read(udt, ruleset=ruleset)
    (item,) = m.unmapped
    assert (item.resource, item.kind) == ("Observation/udt", "not_read") and "urine drug test" in item.reason


# -- doses as prescribed ------------------------------------------------------------------------------------


def _order(rxcui: str, dosage: Any = None, rid: str = "m") -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxcui}]},
        "subject": {"reference": "Patient/p"},
    }
    if dosage is not None:
        out["dosageInstruction"] = dosage if isinstance(dosage, list) else [dosage]
    return out


def _read(*resources: dict[str, Any], ruleset: ipm_cds.Ruleset) -> FhirMapping:
    entries = [{"resource": {"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}}]
    return read_bundle(
        {"resourceType": "Bundle", "type": "collection", "entry": entries + [{"resource": r} for r in resources]},
        ruleset=ruleset,
    )


def _q(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "system": UCUM, "code": code}


def _every(hours: float, **repeat: Any) -> dict[str, Any]:
    return {"repeat": {"frequency": 1, "period": hours, "periodUnit": "h", **repeat}}


def _dose(quantity: dict[str, Any], timing: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"doseAndRate": [{"doseQuantity": quantity}], **extra}
    if timing is not None:
        out["timing"] = timing
    return out


_TAPER = [_dose(_q(2, "{tbl}"), _every(6), sequence=1), _dose(_q(1, "{tbl}"), _every(6), sequence=2)]
_RANGE_PRN = {
    "asNeededBoolean": True,
    "timing": _every(4, periodMax=6),
    "doseAndRate": [{"doseRange": {"low": _q(1, "{tbl}"), "high": _q(2, "{tbl}")}}],
}
_MAX_PER_DAY = {"numerator": _q(6, "{tbl}"), "denominator": _q(1, "d")}
_BID = {"code": {"coding": [{"code": "BID"}]}}
_THREE_A_DAY = {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}


@pytest.mark.parametrize(
    ("rxcui", "dosage", "expected"),
    [
        # oxycodone 5 mg tablet, 2 tablets every 4 hours: 2 x 5 x 6 = 60 mg
        ("1049621", _dose(_q(2, "{tbl}"), _every(4)), (60.0, "mg")),
        # as needed, 1-2 tablets every 4-6 hours: the maximum, 2 tablets every 4 hours
        ("1049621", _RANGE_PRN, (60.0, "mg")),
        # as needed with a maximum per period: at most 6 tablets a day = 30 mg
        ("1049621", _dose(_q(1, "{tbl}"), asNeededBoolean=True, maxDosePerPeriod=_MAX_PER_DAY), (30.0, "mg")),
        # timing code BID, 12 HR oxycodone 20 mg ER tablet
        ("1049563", _dose(_q(1, "{tbl}"), _BID), (40.0, "mg")),
        # morphine 20 mg/mL solution, 0.25 mL every 4 hours: 0.25 x 20 x 6 = 30 mg
        ("892625", _dose(_q(0.25, "mL"), _every(4)), (30.0, "mg")),
        # a dose in mg needs no strength
        ("1049621", _dose(_q(10, "mg"), _THREE_A_DAY), (30.0, "mg")),
        # fentanyl 25 mcg/h, two patches every 72 hours: 50 mcg/h
        ("245134", _dose(_q(2, "{patch}"), _every(72)), (50.0, "mcg_per_hour")),
        # fentanyl 25 mcg/h without a dosage: one patch at a time
        ("245134", None, (25.0, "mcg_per_hour")),
        # 1 tablet in the morning and 2 at night, two instructions taken together: 3 x 5 = 15 mg
        ("1049621", [_dose(_q(1, "{tbl}"), _every(24)), _dose(_q(2, "{tbl}"), _every(24))], (15.0, "mg")),
    ],
)
def test_daily_dose_as_prescribed(
    rxcui: str, dosage: Any, expected: tuple[float, str], ruleset: ipm_cds.Ruleset
) -> None:
    m = _read(_order(rxcui, dosage), ruleset=ruleset)
    (med,) = m.patient.medications
    assert (med.daily_dose, med.dose_unit) == expected
    assert m.unmapped == ()


@pytest.mark.parametrize(
    ("rxcui", "dosage", "why"),
    [
        ("1049621", _dose(_q(1, "{tbl}")), "timing not readable"),
        ("1049621", {"asNeededBoolean": True}, "no dose quantity"),
        ("7804", _dose(_q(1, "{tbl}"), _every(6)), "needs the product's strength"),  # ingredient code only
        ("1049621", _dose(_q(5, "mL"), _every(6)), "concentration"),  # mL of a tablet
        ("897745", _dose(_q(1, "mg"), _every(4)), "parenteral"),  # hydromorphone injection
        # a taper: two instructions in sequence
        ("1049621", _TAPER, "in sequence"),
    ],
)
def test_a_dose_that_cannot_be_computed_is_reported_not_guessed(
    rxcui: str, dosage: Any, why: str, ruleset: ipm_cds.Ruleset
) -> None:
    m = _read(_order(rxcui, dosage), ruleset=ruleset)
    (med,) = m.patient.medications
    assert med.daily_dose is None
    (item,) = m.unmapped
    assert item.kind == "partial" and why in item.reason


def test_unknown_resource_types_are_skipped_and_a_bundle_without_type_is_read(ruleset: ipm_cds.Ruleset) -> None:
    qid = {"code": {"coding": [{"code": "QID"}]}}
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}},
            {"resource": {"resourceType": "Encounter", "id": "e", "status": "finished"}},  # no `class`: invalid R4
            {"resource": {"resourceType": "Practitioner", "id": "dr", "name": "not a list"}},
            {"resource": _order("1049621", _dose(_q(1, "{tbl}"), qid))},
        ],
    }
    m = read_bundle(bundle, ruleset=ruleset)
    assert [(x.agent, x.daily_dose) for x in m.patient.medications] == [("oxycodone", 20.0)]
    assert {u.resource: u.kind for u in m.unmapped} == {
        "Encounter/e": "incomplete",  # read for its class, which it lacks: reported, never refused
        "Practitioner/dr": "unsupported_resource",
    }
    assert m.patient.hospitalised is None


# -- the coded examples: MME of each product class by hand, on both backends ---------------------------------

# (example, {agent: (daily dose, CDC factor)}, the alerts the ruleset must raise and must not raise)
HAND = {
    "coded_oxycodone_er": ({"oxycodone": (2 * 20, 1.5)}, {"opioid.mme.caution", "opioid.naloxone"}, set()),
    "coded_hydrocodone_apap": ({"hydrocodone": (2 * 10 * 6, 1.0)}, {"opioid.mme.high"}, set()),
    "coded_fentanyl_patch": ({"fentanyl_transdermal": (25, 2.4)}, {"opioid.mme.caution"}, set()),
    "coded_morphine_solution": ({"morphine": (0.5 * 20 * 6, 1.0)}, {"opioid.mme.caution"}, set()),
    "coded_methadone": ({"methadone": (3 * 10, 4.7)}, {"opioid.mme.high"}, set()),
    "coded_tramadol_tapentadol": ({"tramadol": (4 * 50, 0.2), "tapentadol": (4 * 50, 0.4)}, {"opioid.mme.high"}, set()),
    "coded_codeine_solution": ({"codeine": (12.5 * 2.4 * 4, 0.15)}, set(), {"opioid.mme.caution", "opioid.naloxone"}),
    "coded_benzodiazepine": ({"oxycodone": (4 * 5, 1.5)}, {"opioid.benzodiazepine"}, {"opioid.mme.caution"}),
    "coded_naloxone": ({"oxycodone": (2 * 20, 1.5)}, {"opioid.mme.caution"}, {"opioid.naloxone"}),
    "coded_moud_icd": ({}, {"opioid.naloxone"}, {"opioid.mme.caution", "opioid.mme.high"}),
    "coded_oud_snomed": ({"oxycodone": (4 * 5, 1.5), "methadone": (10, 4.7)}, {"opioid.mme.caution"}, set()),
    # sickle-cell disease in SNOMED CT: outside the CDC 2022 dosage guidance too
    "coded_sickle_cell": (
        {"oxycodone": (2 * 20, 1.5)},
        {"opioid.mme.out_of_scope", "opioid.naloxone"},
        {"opioid.mme.caution"},
    ),
    # hospice care: outside the CDC 2022 dosage guidance (the dosage is shown, no caution alert); naloxone still
    "coded_end_of_life": (
        {"morphine": (0.5 * 20 * 6, 1.0)},
        {"opioid.mme.out_of_scope", "opioid.naloxone"},
        {"opioid.mme.caution"},
    ),
}


def test_there_are_coded_examples_for_every_product_class() -> None:
    names = {p.stem for p in EXAMPLES.glob("coded_*.json")}
    assert set(HAND) | {"coded_hydromorphone"} <= names
    assert len(names) >= 12


def test_the_catalogue_holds_the_cdc_2022_factors(ruleset: ipm_cds.Ruleset) -> None:
    for agent, factor in CDC_2022.items():
        assert ruleset.medications[agent].mme_factor == factor, agent
    assert ruleset.medications["buprenorphine"].mme_excluded  # named, not counted


@pytest.mark.parametrize("name", sorted(HAND))
def test_mme_of_each_coded_example_by_hand_on_both_backends(
    name: str, ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine, python_engine: ipm_cds.Engine
) -> None:
    doses, fires, silent = HAND[name]
    m = read_bundle((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"), ruleset=ruleset)
    read = {x.agent: x.daily_dose for x in m.patient.medications if x.agent in CDC_2022}
    assert read == {agent: pytest.approx(dose) for agent, (dose, _) in doses.items()}
    for agent, (_, factor) in doses.items():
        assert factor == CDC_2022[agent]
    expected_mme = sum(dose * factor for dose, factor in doses.values())
    results = []
    for engine in (durable, python_engine):
        assessment = engine.evaluate(m.patient, as_of=AS_OF)
        alerts = set(assessment.codes()["alerts"])
        assert fires <= alerts, (engine, alerts)
        assert not silent & alerts, (engine, alerts)
        results.append(assessment.codes())
    assert results[0] == results[1]
    if doses:
        from ipm_cds.model.facts.normalise import normalise

        facts = normalise(m.patient, AS_OF, ruleset.normalise_context())
        (summary,) = [f for f in facts if f.type == "opioid_summary"]
        assert summary.get("total_mme_per_day") == pytest.approx(expected_mme)


# -- the coded examples of the other families: SNOMED CT pain, LOINC instrument, HCPCS procedure, enoxaparin --


def _mapped_from(m: FhirMapping, path: str) -> str:
    return m.sources[path]


# (example, {patient-model path: the resource it must come from}, candidates, excluded)
FAMILIES = {
    # lumbar facet joint pain (SNOMED CT GPS), ODI by LOINC 97909-6, enoxaparin SCD with the prophylactic local code
    "coded_facet_snomed": (
        {"pain[0]": "Condition/coded-facet-snomed-cond-1", "pain[0].odi_pct": "Observation/coded-facet-snomed-obs-2"},
        {"facet_rfa"},
        set(),
    ),
    # knee osteoarthritis (SNOMED CT GPS), genicular block and RFA by CPT, the outcome series by LOINC (NRS, PROMIS-29
    # physical function and pain interference T-scores), cilostazol by its RxNorm ingredient
    "coded_genicular_promis": (
        {
            "pain[0]": "Condition/coded-genicular-promis-cond-1",
            "procedures[1]": "Procedure/coded-genicular-promis-proc-2",
            "medications[0]": "MedicationStatement/coded-genicular-promis-med-1",
        },
        set(),
        {"genicular_rfa"},
    ),
    # sacroiliac joint pain (SNOMED CT GPS), a diagnostic injection by HCPCS G0260 with 80% relief
    "coded_sij_hcpcs": (
        {"pain[0]": "Condition/coded-sij-hcpcs-cond-1", "procedures[0]": "Procedure/coded-sij-hcpcs-proc-1"},
        {"sij_injection_therapeutic"},
        {"sij_rfa"},
    ),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_coded_examples_of_the_other_families_map_and_assess_alike_on_both_backends(
    name: str, ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine, python_engine: ipm_cds.Engine
) -> None:
    sources, candidates, excluded = FAMILIES[name]
    m = read_bundle((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"), ruleset=ruleset)
    assert m.unmapped == ()
    for path, resource in sources.items():
        assert _mapped_from(m, path) == resource, path
    results = [engine.evaluate(m.patient, as_of=AS_OF).codes() for engine in (durable, python_engine)]
    assert results[0] == results[1]
    assert set(results[0]["candidates"]) == candidates and set(results[0]["excluded"]) == excluded


def test_the_coded_examples_read_each_family_from_its_standard_code(ruleset: ipm_cds.Ruleset) -> None:
    maps = load_maps()
    facet = read_bundle((EXAMPLES / "coded_facet_snomed.json").read_text(encoding="utf-8"), ruleset=ruleset)
    (pain,) = facet.patient.pain
    assert (pain.region, pain.character, pain.laterality, pain.odi_pct) == ("lumbar", "axial", "bilateral", 42)
    coded = json.loads((EXAMPLES / "coded_facet_snomed.json").read_text(encoding="utf-8"))
    systems = {c["system"] for e in coded["entry"] for c in (e["resource"].get("code") or {}).get("coding", [])}
    assert {
        SNOMED,
        "http://loinc.org",
    } <= systems and "https://ipm-cds.invalid/fhir/CodeSystem/pain-character" not in systems
    enox = [x for x in facet.patient.medications if x.agent.startswith("enoxaparin")]
    assert [(x.agent, x.daily_dose, x.dose_unit) for x in enox] == [("enoxaparin_prophylactic", 40.0, "mg")]
    sij = read_bundle((EXAMPLES / "coded_sij_hcpcs.json").read_text(encoding="utf-8"), ruleset=ruleset)
    (proc,) = sij.patient.procedures
    assert (proc.kind, proc.relief_pct) == ("sij_injection", 80)
    assert maps.cpt["G0260"].procedure_kinds == maps.cpt["27096"].procedure_kinds  # the facility code of 27096


def test_the_genicular_example_reads_its_outcome_series_by_loinc(
    ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine, python_engine: ipm_cds.Engine
) -> None:
    """PROMIS-29 T-scores (71959-1, 71961-7) and NRS by LOINC become the series the outcome rules read: pain better,
    physical function worse by more than the MID, flagged on both backends."""
    m = read_bundle((EXAMPLES / "coded_genicular_promis.json").read_text(encoding="utf-8"), ruleset=ruleset)
    series = sorted((x.instrument, x.date.isoformat(), x.score) for x in m.patient.measurements)
    assert series == [
        ("nrs", "2024-05-25", 8.0),
        ("nrs", "2024-07-01", 3.0),
        ("promis_pf", "2024-05-25", 42.5),
        ("promis_pf", "2024-07-01", 36.0),
        ("promis_pi", "2024-05-25", 63.1),
        ("promis_pi", "2024-07-01", 55.2),
    ]
    assert {x.region for x in m.patient.measurements} == {"knee"}
    assert [x.agent for x in m.patient.medications] == ["cilostazol"]
    for engine in (durable, python_engine):
        alerts = set(engine.evaluate(m.patient, as_of=AS_OF).codes()["alerts"])
        assert {"outcomes.response.responder", "outcomes.function.worse_while_pain_better"} <= alerts


def test_cilostazol_by_its_rxnorm_ingredient_is_held_two_days_before_a_high_risk_procedure(
    ruleset: ipm_cds.Ruleset, durable: ipm_cds.Engine, python_engine: ipm_cds.Engine
) -> None:
    """RxNorm 21107 (US Core allergy-substance value set) is the catalogue's cilostazol: ASRA 2018 (criteria 6.2)
    holds it 2 days before a high-bleeding-risk procedure, the SCS trial of scs.json."""
    coded = json.loads((EXAMPLES / "scs.json").read_text(encoding="utf-8"))
    (patient,) = [e["resource"]["id"] for e in coded["entry"] if e["resource"]["resourceType"] == "Patient"]
    cilostazol = {
        "resourceType": "MedicationStatement",
        "id": "cilostazol",
        "status": "active",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "21107", "display": "cilostazol"}]},
    }
    coded["entry"].append({"resource": cilostazol})
    m = read_bundle(coded, ruleset=ruleset)
    assert m.unmapped == () and [x.agent for x in m.patient.medications] == ["cilostazol"]
    assert load_maps().medication_by_rxcui["21107"].agent == "cilostazol"
    for engine in (durable, python_engine):
        assessment = json.loads(engine.evaluate(m.patient, as_of=AS_OF).to_json(timestamp=False))
        (candidate,) = assessment["candidates"]
        (hold,) = [p for p in candidate["precautions"] if p["kind"] == "antithrombotic"]
        assert (candidate["intervention"], hold["medication"]) == ("scs_trial", "cilostazol")
        assert "hold 2 days" in hold["text"]


def _enoxaparin_hold(m: FhirMapping, engine: ipm_cds.Engine) -> tuple[str, str]:
    assessment = json.loads(engine.evaluate(m.patient, as_of=AS_OF).to_json(timestamp=False))
    (candidate,) = assessment["candidates"]
    (hold,) = [p for p in candidate["precautions"] if p["kind"] == "antithrombotic"]
    return hold["medication"], hold["text"].split(":")[1].split(" before")[0].strip()


@pytest.mark.parametrize(
    ("local", "agent", "hold"),
    [
        ("enoxaparin_prophylactic", "enoxaparin_prophylactic", "hold 12 h"),
        (None, "enoxaparin_therapeutic", "hold 24 h"),
    ],
)
def test_enoxaparin_by_dose_class_and_fail_closed_without_one_on_both_backends(
    local: str | None,
    agent: str,
    hold: str,
    ruleset: ipm_cds.Ruleset,
    durable: ipm_cds.Engine,
    python_engine: ipm_cds.Engine,
) -> None:
    coded = json.loads((EXAMPLES / "coded_facet_snomed.json").read_text(encoding="utf-8"))
    (med,) = [e["resource"] for e in coded["entry"] if e["resource"]["id"] == "coded-facet-snomed-med-1"]
    codings = med["medicationCodeableConcept"]["coding"]
    med["medicationCodeableConcept"]["coding"] = [c for c in codings if c["system"] == RXNORM]
    if local is not None:
        med["medicationCodeableConcept"]["coding"].append({"system": LOCAL_MEDICATION, "code": local})
    m = read_bundle(coded, ruleset=ruleset)
    for engine in (durable, python_engine):
        assert _enoxaparin_hold(m, engine) == (agent, hold)
    if local is None:  # read as the longer hold, and said
        (item,) = m.unmapped
        assert item.kind == "partial" and "read as enoxaparin_therapeutic" in item.reason
    else:
        assert m.unmapped == ()


# -- the coverage report ------------------------------------------------------------------------------------


def test_fhir_coverage_lists_what_mapped_and_what_did_not(capsys: pytest.CaptureFixture[str]) -> None:
    from ipm_cds.cli import main

    path = EXAMPLES / "coded_hydromorphone.json"
    assert main(["fhir", str(path), "--coverage", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    status = {r["resource"]: r["status"] for r in report["resources"]}
    assert status == {
        "Patient/coded-hydromorphone": "mapped",
        "Condition/coded-hydromorphone-back-pain": "mapped",
        "MedicationRequest/coded-hydromorphone-hm-tab": "mapped",
        "MedicationRequest/coded-hydromorphone-hm-inj": "partial",
    }
    assert report["clinical_gaps"] == 1
    assert main(["fhir", str(path), "--coverage"]) == 0
    text = capsys.readouterr().out
    assert "hm-inj: partial -> medications[" in text and "daily dose not computed" in text


def test_coverage_of_a_record_with_types_ipm_cds_does_not_read(ruleset: ipm_cds.Ruleset) -> None:
    from ipm_cds.interop.fhir.coverage import coverage

    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01"}},
            {"resource": {"resourceType": "Practitioner", "id": "dr"}},
            {"resource": _order("245134")},
        ],
    }
    result = coverage(bundle, ruleset=ruleset)
    assert [(r.resource, r.status) for r in result.resources] == [
        ("Patient/p", "mapped"),
        ("Practitioner/dr", "not mapped"),
        ("MedicationRequest/m", "mapped"),
    ]
    assert result.clinical_gaps == ()


def test_a_coded_requested_procedure_names_its_intervention(ruleset: ipm_cds.Ruleset) -> None:
    from ipm_cds.interop.fhir import ordered_interventions

    request = json.loads((EXAMPLES / "requests" / "coded_benzodiazepine.order-select.json").read_text(encoding="utf-8"))
    found, other = ordered_interventions(request["context"]["draftOrders"], ruleset, request["context"]["selections"])
    assert [(o.reference, o.interventions, o.region) for o in found] == [
        ("ServiceRequest/tfesi-1", ("esi_transforaminal",), "lumbar")
    ]
    assert other == []


@pytest.mark.parametrize("kind", ["drg_trial", "drg_implant", "idd_trial"])
def test_drg_and_intrathecal_trials_have_no_cpt_code_and_read_from_the_local_code(
    kind: str, ruleset: ipm_cds.Ruleset
) -> None:
    """No published coding source gives DRG stimulation or an intrathecal trial a CPT code of its own: no CPT code
    is read as them (never guessed from the SCS or injection codes); the local codes are read, and a Procedure
    coded with SCS's 63650 and a local DRG code is reported, not read as either."""
    maps = load_maps()
    assert all(kind not in e.procedure_kinds and kind not in e.interventions for e in maps.procedures.cpt)
    assert any(kind in item.get("kinds", []) for item in maps.procedures.not_included)
    local = "https://ipm-cds.invalid/fhir/CodeSystem/"
    order = {
        "resourceType": "ServiceRequest",
        "id": "order",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": local + "intervention", "code": kind}]},
    }
    m = _read(order, ruleset=ruleset)
    assert [r.intervention for r in m.patient.requested] == [kind] and m.unmapped == ()
    if kind.startswith("drg"):
        cpt = {"system": "http://www.ama-assn.org/go/cpt", "code": "63650"}
        done = {
            "resourceType": "Procedure",
            "id": "done",
            "status": "completed",
            "subject": {"reference": "Patient/p"},
            "performedDateTime": "2025-01-06",
            "code": {"coding": [cpt, {"system": local + "procedure-kind", "code": kind}]},
            "bodySite": [{"coding": [{"system": local + "body-region", "code": "lumbar"}]}],
        }
        m = _read(done, ruleset=ruleset)
        assert m.patient.procedures == []
        (item,) = m.unmapped
        assert item.kind == "ambiguous_code" and "disagrees with CPT 63650" in item.reason
