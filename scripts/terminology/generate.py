"""Generate the terminology tables of ipm_cds.interop from the published source files in ``sources/``.

    python scripts/terminology/generate.py            # write src/ipm_cds/interop/terminology/*.json
    python scripts/terminology/generate.py --check    # exit 1 if a committed table differs from what the sources give
    python scripts/terminology/generate.py extract-omtk OMTKData.cql   # refresh sources/omtk-drug-ingredients.tsv
    python scripts/terminology/generate.py extract-gps valueset-snomed-intl-gps.xml   # refresh sources/snomed-gps/

The build never reaches the network: the maintainer fetches a new release of a source, replaces the file in
``sources/``, updates its entry (commit, date, sha256) in ``sources/SOURCES.yaml`` and runs the script. Every
source file is checked against the sha256 that SOURCES.yaml names before it is read. The output is a pure
function of the source files and ``mapping.yaml`` (our decisions on top of them): same input, same bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
REPO = HERE.parent.parent
OUT = REPO / "src" / "ipm_cds" / "interop" / "terminology"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"

OMTK_TSV = "omtk-drug-ingredients.tsv"
OMTK_FIELDS = (
    "drugCode",
    "drugName",
    "doseFormCode",
    "doseFormName",
    "ingredientCode",
    "ingredientName",
    "strength",
    "strengthValue",
    "strengthUnit",
)
_OMTK_ROW = re.compile(
    r"\{ drugCode: (\d+), drugName: '((?:[^']|'')*)', doseFormCode: (\d+), doseFormName: '([^']*)', "
    r"ingredientCode: (\d+), ingredientName: '([^']*)', strength: '([^']*)', strengthValue: ([0-9.]+), "
    r"strengthUnit: '([^']*)' \}"
)
GPS_TSV = "snomed-gps/gps-20190731-disorders-findings.tsv"
GPS_TAGS = ("disorder", "finding", "situation")
"""The semantic tags of the GPS concepts carried (diagnoses and findings a Condition can hold)."""
# OMTK strength unit -> (our unit, factor)
_UNITS = {"MG": ("mg", Decimal(1)), "MG/ML": ("mg/mL", Decimal(1)), "MG/HR": ("mcg/h", Decimal(1000))}
_UNITS["MG/ACTUAT"] = ("mg/actuation", Decimal(1))


class SourceError(Exception):
    pass


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_sources() -> dict[str, Any]:
    """SOURCES.yaml, with every file's checksum verified."""
    listing = yaml.safe_load((SOURCES / "SOURCES.yaml").read_text(encoding="utf-8"))
    for name, entry in listing["files"].items():
        path = SOURCES / name
        if not path.is_file():
            raise SourceError(f"sources/{name}: missing (SOURCES.yaml names it)")
        if sha256(path) != entry["sha256"]:
            raise SourceError(f"sources/{name}: sha256 {sha256(path)} is not the {entry['sha256']} SOURCES.yaml names")
    return dict(listing)


def tty_of(name: str) -> str:
    """RxNorm term type from the normal form of the name: packs in braces, brand names in brackets."""
    if name.startswith("{"):
        return "BPCK" if name.rstrip().endswith("]") else "GPCK"
    return "SBD" if name.rstrip().endswith("]") else "SCD"


def number(value: Decimal) -> int | float:
    value = value.normalize()
    return int(value) if value == value.to_integral_value() else float(value)


# -- opioids (OMTK) ------------------------------------------------------------------------------------


def extract_omtk(cql: Path) -> str:
    """The rows of OMTKData's ``DrugIngredients`` as tab-separated text, fields and order unchanged."""
    text = cql.read_text(encoding="utf-8")
    start = text.index("define DrugIngredients:")
    body = text[start:]
    rows = _OMTK_ROW.findall(body)
    declared = body.count("{ drugCode:")
    if len(rows) != declared:
        raise SourceError(f"{cql}: read {len(rows)} of {declared} DrugIngredients rows")
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(OMTK_FIELDS)
    for row in rows:
        writer.writerow([row[0], row[1].replace("''", "'"), *row[2:]])
    return out.getvalue()


def extract_gps(xml: Path) -> str:
    """The (code, fully specified name) rows of the GPS ValueSet whose semantic tag is one of GPS_TAGS."""
    import xml.etree.ElementTree as ET

    ns = {"f": "http://hl7.org/fhir"}
    root = ET.parse(xml).getroot()  # noqa: S314 (a file the maintainer fetched)
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(("code", "fsn"))
    for concept in root.iter("{http://hl7.org/fhir}concept"):
        code = str(concept.find("f:code", ns).get("value"))  # type: ignore[union-attr]
        fsn = str(concept.find("f:display", ns).get("value"))  # type: ignore[union-attr]
        tag = re.search(r"\(([^()]+)\)$", fsn)
        if tag is not None and tag.group(1) in GPS_TAGS:
            writer.writerow((code, fsn))
    return out.getvalue()


def opioid_products(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    with (SOURCES / OMTK_TSV).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    by_drug: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_drug.setdefault(row["drugCode"], []).append(row)
    agents = mapping["opioid_agents"]
    fentanyl = mapping["fentanyl_transdermal"]
    routes = mapping["route_of_dose_form"]
    products = []
    for code, parts in by_drug.items():
        first = parts[0]
        form = first["doseFormName"]
        if form not in routes:
            raise SourceError(f"OMTK {code}: dose form {form!r} has no route class in mapping.yaml")
        ingredients = []
        for part in sorted(parts, key=lambda p: int(p["ingredientCode"])):
            unit, factor = _UNITS[part["strengthUnit"]]
            ingredients.append(
                {
                    "rxcui": part["ingredientCode"],
                    "name": part["ingredientName"].lower(),
                    "strength": number(Decimal(part["strengthValue"]) * factor),
                    "unit": unit,
                }
            )
        named = set()
        for ing in ingredients:
            if ing["name"] == fentanyl["ingredient"] and form in fentanyl["dose_forms"]:
                named.add(fentanyl["agent"])
            elif ing["name"] in agents:
                named.add(agents[ing["name"]])
        product: dict[str, Any] = {
            "rxcui": code,
            "name": first["drugName"],
            "tty": tty_of(first["drugName"]),
            "dose_form": form,
            "dose_form_rxcui": first["doseFormCode"],
            "route": routes[form],
            "class": "opioid",
            "agent": named.pop() if len(named) == 1 else None,
            "ingredients": ingredients,
            "source": "omtk",
        }
        if len(named) > 1:
            product["note"] = "opioid ingredients of more than one agent"
        elif len(ingredients) > 1:
            product["note"] = "the same opioid in two salts: the strengths add"
        opioid_agents = set(agents.values()) | {fentanyl["agent"]}
        others = [a for a in also(words(first["drugName"]), product["agent"], mapping) if a not in opioid_agents]
        if others:
            product["also"] = others
        products.append(product)
    return products


# -- medication value sets (CDC opioid CDS) --------------------------------------------------------------


def expansion(name: str, folder: str = "opioid-cds-r4") -> tuple[dict[str, Any], list[dict[str, str]]]:
    data = json.loads((SOURCES / folder / f"{name}.json").read_text(encoding="utf-8"))
    return data, [dict(c) for c in data.get("expansion", {}).get("contains", [])]


def words(display: str) -> set[str]:
    return set(re.findall(r"[a-z]+", display.lower()))


# A single-ingredient clinical drug name: "[24 HR ]alprazolam 0.5 MG Extended Release Oral Tablet[ [Xanax]]"
_SINGLE = re.compile(
    r"^(?:\d+(?:\.\d+)? (?:HR|ML) )?(?P<ingredient>[A-Za-z][A-Za-z ,-]*?) (?P<value>\d+(?:\.\d+)?) "
    r"(?P<unit>MG|MCG|MG/ML|MG/ACTUAT|MG/HR) (?P<form>[A-Za-z][A-Za-z -]*?)(?: \[[^\]]+\])?$"
)
_NAME_UNITS = {**_UNITS, "MCG": ("mg", Decimal("0.001"))}


def strength_from_name(name: str, routes: dict[str, str]) -> dict[str, Any]:
    """Dose form and strength read from a single-ingredient SCD/SBD name (RxNorm's normal form), or nothing."""
    match = _SINGLE.match(name)
    if match is None or match["form"] not in routes:
        return {}
    unit, factor = _NAME_UNITS[match["unit"]]
    return {
        "dose_form": match["form"],
        "route": routes[match["form"]],
        "ingredients": [
            {"name": match["ingredient"].lower(), "strength": number(Decimal(match["value"]) * factor), "unit": unit}
        ],
    }


def agent_of_ingredient(mapping: dict[str, Any]) -> dict[str, str]:
    """Every ingredient that names a catalogue agent, with that agent (for the other ingredients of a combination)."""
    found = {i: i for i in mapping["pddi_other_catalogue_ingredients"]}
    for group in ("medication_value_sets", "pddi_value_sets", "ecqm_value_sets"):
        for spec in mapping[group].values():
            found.update(spec["agents"])
    found.update(mapping["opioid_agents"])
    return found


def also(present: set[str], primary: str | None, mapping: dict[str, Any]) -> list[str]:
    """The catalogue agents a combination product holds beside its primary agent (aspirin in Percodan)."""
    if primary is None:
        return []
    table = agent_of_ingredient(mapping)
    return sorted({table[i] for i in present if i in table} - {primary} - set(mapping["never_also"]))


def value_set_products(
    mapping: dict[str, Any], known: set[str], group: str = "medication_value_sets", folder: str = "opioid-cds-r4"
) -> list[dict[str, Any]]:
    """Clinical drugs of FHIR ValueSet expansions, each read as the agent its ingredient names."""
    products: dict[str, dict[str, Any]] = {}
    for name, spec in mapping[group].items():
        _, contains = expansion(spec.get("file", name), folder)
        for concept in contains:
            if concept["system"] != RXNORM:
                raise SourceError(f"{name}: {concept['code']} is not RxNorm")
            code, display = concept["code"], concept["display"]
            if code in known or code in products:
                continue  # OMTK (with strengths) or an earlier value set already holds it
            present = words(display)
            if present & set(spec.get("exclude_ingredients", ())):
                continue
            agents = sorted({agent for ingredient, agent in spec["agents"].items() if ingredient in present})
            no_agent = [why for ingredient, why in spec.get("no_agent", {}).items() if ingredient in present]
            agent = agents[0] if len(agents) == 1 and not no_agent else None
            closed = [fc for i, fc in mapping.get("fail_closed_agent", {}).items() if i in present]
            if agent is None and not agents and not no_agent and len(closed) == 1:
                agent = closed[0]["agent"]  # no code tells the agent: read as the safer one, and say so
            products[code] = {
                "rxcui": code,
                "name": display,
                "tty": tty_of(display),
                "class": spec["class"],
                "agent": agent,
                **strength_from_name(display, mapping["route_of_dose_form"]),
                "source": name,
            }
            others = also(present, agent, mapping)
            if agent is not None and closed and not agents:
                products[code]["note"] = " ".join(closed[0]["note"].split())
                products[code]["local_choices"] = closed[0]["choices"]
            if no_agent:
                products[code]["note"] = no_agent[0]
                by_route = [mapping["agent_by_route"][i] for i in sorted(present) if i in mapping["agent_by_route"]]
                if len(by_route) == 1:
                    products[code]["agent_by_route"] = by_route[0]
            elif len(agents) > 1:
                products[code]["note"] = f"agents of one class ({', '.join(agents)}): code each ingredient"
            elif others:
                products[code]["also"] = others
    return list(products.values())


_CLINICAL_DRUG_END = re.compile(
    r"(Tablet|Capsule|Solution|Suspension|Injection|Syringe|Cartridge|Suppository|Injector|Pack|Gum|Powder|Granules)"
    r"( \[[^\]]+\])?$"
)


def pddi_products(mapping: dict[str, Any], known: set[str]) -> list[dict[str, Any]]:
    """Systemic clinical drugs of the HL7 PDDI CDS value sets (warfarin, aspirin, NSAIDs, prednisone)."""
    import xml.etree.ElementTree as ET

    ns = {"f": "http://hl7.org/fhir"}
    root = ET.parse(SOURCES / "pddi-cds" / "valueset-bundle-warfarin-nsaids.xml").getroot()  # noqa: S314 (our file)
    specs = mapping["pddi_value_sets"]
    systemic = re.compile(mapping["systemic_dose_form"])
    not_systemic = re.compile(mapping["not_systemic"])
    products: dict[str, dict[str, Any]] = {}
    for vs in root.iter("{http://hl7.org/fhir}ValueSet"):
        name = str(vs.find("f:url", ns).get("value")).rsplit("/", 1)[-1]  # type: ignore[union-attr]
        if name not in specs:
            continue
        spec = specs[name]
        for include in vs.findall("f:compose/f:include", ns):
            if str(include.find("f:system", ns).get("value")).strip() != RXNORM:  # type: ignore[union-attr]
                raise SourceError(f"{name}: not RxNorm")
            for concept in include.findall("f:concept", ns):
                code = str(concept.find("f:code", ns).get("value"))  # type: ignore[union-attr]
                display = " ".join(str(concept.find("f:display", ns).get("value")).split())  # type: ignore[union-attr]
                if code in known or code in products:
                    continue
                if not re.search(r"\d", display) or not systemic.search(display) or not_systemic.search(display):
                    continue  # an ingredient, brand, component or form concept, or not for systemic use
                if not _CLINICAL_DRUG_END.search(display):
                    continue  # a clinical drug component (no dose form)
                present = words(display)
                agents = sorted({spec["agents"][i] for i in present & set(spec["agents"])})
                lower = display[0].lower() + display[1:] if not display.startswith("{") else display
                product: dict[str, Any] = {
                    "rxcui": code,
                    "name": display,
                    "tty": tty_of(display),
                    "class": spec["class"],
                    "agent": agents[0] if len(agents) == 1 else None,
                    **strength_from_name(lower, mapping["route_of_dose_form"]),
                    "source": name,
                }
                others = also(present, product["agent"], mapping)
                if others:
                    product["also"] = others
                products[code] = product
    return list(products.values())


# -- conditions ------------------------------------------------------------------------------------------


def _where(name: str, spec: Any) -> tuple[str, str]:
    """(file name, folder) of a value set: opioid-cds-r4/<name>.json unless the spec says otherwise."""
    if isinstance(spec, dict):
        return spec.get("file", name), spec.get("folder", "opioid-cds-r4")
    return name, "opioid-cds-r4"


_SYSTEMS = {SNOMED: "snomed", ICD10CM: "icd10cm", LOINC: "loinc"}


def _target(rule: dict[str, Any]) -> dict[str, Any] | None:
    """What a mapping rule reads a concept as: a condition, a pain complaint, or nothing (left out)."""
    if rule.get("pain") is not None:
        return {"pain": {k: v for k, v in rule["pain"].items() if v is not None}}
    if rule.get("condition") is not None:
        return {"condition": rule["condition"]}
    return None


def _add(entries: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str], entry: dict[str, Any]) -> None:
    """Add an entry; a code two sources read differently is an error, never a silent choice."""
    held = entries.get(key)
    if held is None:
        entries[key] = entry
        return
    targets = ("condition", "pain", "recognised")
    if any(held.get(t) != entry.get(t) for t in targets) and held.get("recognised") is None:
        raise SourceError(f"{key[1]}: {held['source']} and {entry['source']} read it differently")


def gps_concepts() -> dict[str, str]:
    """Fully specified name -> code of the GPS extract (a name twice is an error: names must pick one code)."""
    with (SOURCES / GPS_TSV).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    by_name: dict[str, str] = {}
    for row in rows:
        if row["fsn"] in by_name:
            raise SourceError(f"{GPS_TSV}: {row['fsn']!r} names two concepts")
        by_name[row["fsn"]] = row["code"]
    return by_name


def condition_entries(mapping: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    excluded: list[dict[str, Any]] = []
    for name, spec in mapping["condition_value_sets"].items():
        rules = spec["rules"] if isinstance(spec, dict) else spec
        systems = spec.get("systems", ["snomed"]) if isinstance(spec, dict) else ["snomed"]
        _, contains = expansion(*_where(name, spec))
        for concept in contains:
            system = _SYSTEMS.get(concept["system"])
            if system not in systems:
                continue  # ICD-10-CM: read by category prefix (maps/conditions.yaml) unless the spec names it
            key = (concept["system"], concept["code"])
            if key in entries and "recognised" not in entries[key]:
                continue
            rule = next((r for r in rules if re.search(r["match"], concept["display"], re.IGNORECASE)), None)
            target = None if rule is None else _target(rule)
            if target is None:
                excluded.append(
                    {"system": system, "code": concept["code"], "display": concept["display"], "source": name}
                )
                continue
            entries[key] = {
                "system": system,
                "code": concept["code"],
                "display": concept["display"],
                **target,
                "source": name,
            }
    # Concepts of the SNOMED CT Global Patient Set, chosen by fully specified name (the code is looked up).
    gps = gps_concepts()
    for group in ("conditions", "pain"):
        for fsn, what in mapping["snomed_gps"][group].items():
            if fsn not in gps:
                raise SourceError(f"mapping.yaml snomed_gps.{group}: {fsn!r} is not a concept of {GPS_TSV}")
            target = _target({"condition": what} if group == "conditions" else {"pain": what})
            assert target is not None
            code = gps[fsn]
            entry = {"system": "snomed", "code": code, "display": fsn, **target, "source": "snomed-gps"}
            _add(entries, (SNOMED, code), entry)
    for name, spec in mapping["recognised_value_sets"].items():
        label = spec["label"] if isinstance(spec, dict) else spec
        _, contains = expansion(*_where(name, spec))
        for concept in contains:
            system = _SYSTEMS.get(concept["system"])
            key = (concept["system"], concept["code"])
            if system is None or key in entries:  # another code system (HCPCS): not read here
                continue
            entries[key] = {
                "system": system,
                "code": concept["code"],
                "display": concept["display"],
                "recognised": label,
                "source": name,
            }
    ordered = sorted(entries.values(), key=lambda e: (e["system"], e["code"]))
    return ordered, sorted(excluded, key=lambda e: (e["code"], e["source"]))


def route_entries(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    """SNOMED CT route codes of the VSAC route value sets, with our name for the route."""
    entries: dict[str, dict[str, Any]] = {}
    for name, spec in mapping["route_value_sets"].items():
        _, contains = expansion(spec["file"], "ecqm-qicore-2024")
        for concept in contains:
            if concept["system"] != SNOMED:
                raise SourceError(f"{name}: {concept['code']} is not SNOMED CT")
            entries[concept["code"]] = {
                "system": "snomed",
                "code": concept["code"],
                "display": concept["display"],
                "route": spec["route"],
                "source": name,
            }
    return sorted(entries.values(), key=lambda e: e["code"])


def observation_entries(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    """LOINC laboratory codes of the VSAC value sets, each with the target and the unit rules of ``like``."""
    entries: dict[str, dict[str, Any]] = {}
    for name, spec in mapping["observation_value_sets"].items():
        _, contains = expansion(spec["file"], "ecqm-qicore-2024")
        include, exclude = re.compile(spec["include"]), re.compile(spec["exclude"])
        for concept in contains:
            if concept["system"] != LOINC:
                raise SourceError(f"{name}: {concept['code']} is not LOINC")
            display = concept["display"]
            if concept["code"] in entries or not include.search(display) or exclude.search(display):
                continue
            entries[concept["code"]] = {
                "system": "loinc",
                "code": concept["code"],
                "display": display,
                "target": spec["target"],
                "like": spec["like"],
                "source": name,
            }
    return sorted(entries.values(), key=lambda e: e["code"])


_CQL_SYSTEM = re.compile(r"^codesystem \"([^\"]+)\": '([^']+)'", re.MULTILINE)
_CQL_CODE = re.compile(r"^code \"([^\"]+)\":\s*'([^']+)' from \"([^\"]+)\"(?: display '([^']*)')?", re.MULTILINE)


def cql_codes(path: Path) -> list[dict[str, str]]:
    """The ``code`` declarations of a CQL library: (system URI, code, display), the display falling back to the name."""
    text = path.read_text(encoding="utf-8")
    systems = dict(_CQL_SYSTEM.findall(text))
    out = []
    for name, code, system, display in _CQL_CODE.findall(text):
        if system not in systems:
            raise SourceError(f"{path.name}: code {name!r} names an undeclared code system {system!r}")
        out.append({"system": systems[system], "code": code, "display": display or name})
    return out


def instrument_entries(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    """LOINC codes of outcome instruments, each chosen by the name its sources give it (never a typed code)."""
    concepts: dict[str, list[dict[str, str]]] = {}
    for name, spec in mapping["instrument_sources"].items():
        path = SOURCES / spec["file"]
        if spec["kind"] == "cql":
            concepts[name] = cql_codes(path)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            concepts[name] = [dict(c) for c in data.get("expansion", {}).get("contains", [])]
    entries: dict[str, dict[str, Any]] = {}
    for display, spec in mapping["instruments"].items():
        codes = set()
        for source in spec["from"]:
            found = {c["code"] for c in concepts[source] if c["system"] == LOINC and c["display"] == display}
            if len(found) != 1:
                raise SourceError(f"mapping.yaml instruments: {display!r} is {len(found)} LOINC codes of {source}")
            codes |= found
        if len(codes) != 1:
            raise SourceError(f"mapping.yaml instruments: {display!r} has different codes in {spec['from']}")
        code = codes.pop()
        if code in entries:
            raise SourceError(f"mapping.yaml instruments: {code} is chosen twice")
        entry: dict[str, Any] = {"system": "loinc", "code": code, "display": display, "instrument": spec["instrument"]}
        if spec.get("units") is not None:
            entry["units"] = spec["units"]
        entries[code] = entry | {"source": ", ".join(spec["from"])}
    return sorted(entries.values(), key=lambda e: e["code"])


# -- output ----------------------------------------------------------------------------------------------


def provenance(listing: dict[str, Any], used: list[str]) -> dict[str, Any]:
    return {
        "generated_by": "scripts/terminology/generate.py",
        "sources": {key: listing["sources"][key] for key in sorted(used)},
        "files": {name: entry for name, entry in sorted(listing["files"].items()) if entry["source"] in used},
    }


def dump(data: dict[str, Any]) -> str:
    """JSON with one list item per line: small, and a change to one code is a one-line diff."""
    parts = []
    for key, value in data.items():
        if isinstance(value, list):
            items = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in value)
            parts.append(f" {json.dumps(key)}: [\n{items}\n ]" if value else f" {json.dumps(key)}: []")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False, indent=1)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def build() -> dict[str, str]:
    """File name -> text of every generated table."""
    listing = load_sources()
    mapping = yaml.safe_load((HERE / "mapping.yaml").read_text(encoding="utf-8"))
    opioids = opioid_products(mapping)
    others = value_set_products(mapping, {p["rxcui"] for p in opioids})
    pddi = pddi_products(mapping, {p["rxcui"] for p in opioids + others})
    known = {p["rxcui"] for p in opioids + others + pddi}
    ecqm = value_set_products(mapping, known, "ecqm_value_sets", "ecqm-qicore-2024")
    products = sorted(opioids + others + pddi + ecqm, key=lambda p: int(p["rxcui"]))
    conditions, excluded = condition_entries(mapping)
    return {
        "rxnorm.json": dump(
            {
                "provenance": provenance(listing, ["omtk", "opioid_cds", "pddi_cds", "ecqm_2024"]),
                "mapping": "scripts/terminology/mapping.yaml",
                "routes": route_entries(mapping),
                "products": products,
            }
        ),
        "observations.json": dump(
            {
                "provenance": provenance(listing, ["ecqm_2024", "ecqm_2024_cql", "ahrq_pms"]),
                "mapping": "scripts/terminology/mapping.yaml",
                "observations": observation_entries(mapping),
                "instruments": instrument_entries(mapping),
            }
        ),
        "conditions.json": dump(
            {
                "provenance": provenance(listing, ["opioid_cds", "ecqm_2024", "snomed_gps"]),
                "mapping": "scripts/terminology/mapping.yaml",
                "conditions": conditions,
                "excluded": excluded,
            }
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed tables, write nothing")
    sub = parser.add_subparsers(dest="command")
    extract = sub.add_parser("extract-omtk", help="rewrite sources/omtk-drug-ingredients.tsv from OMTKData.cql")
    extract.add_argument("cql", type=Path)
    gps = sub.add_parser("extract-gps", help=f"rewrite sources/{GPS_TSV} from the GPS ValueSet (XML)")
    gps.add_argument("xml", type=Path)
    args = parser.parse_args(argv)
    if args.command == "extract-gps":
        (SOURCES / GPS_TSV).parent.mkdir(exist_ok=True)
        (SOURCES / GPS_TSV).write_text(extract_gps(args.xml), encoding="utf-8")
        here, upstream = sha256(SOURCES / GPS_TSV), sha256(args.xml)
        print(f"sources/{GPS_TSV}: sha256 {here} (upstream {upstream}); update SOURCES.yaml")
        return 0
    if args.command == "extract-omtk":
        text = extract_omtk(args.cql)
        (SOURCES / OMTK_TSV).write_text(text, encoding="utf-8")
        here, upstream = sha256(SOURCES / OMTK_TSV), sha256(args.cql)
        print(f"sources/{OMTK_TSV}: sha256 {here} (upstream {upstream}); update SOURCES.yaml")
        return 0
    tables = build()
    stale = []
    for name, text in tables.items():
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)} (run scripts/terminology/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
