"""What the draws pick from: the codes, levels, agents and doses of each pathway, the pathways and their
scope, the screening instruments' marks. Codes the ruleset's vocabularies hold are read from the ruleset
(``_Draw.codes``); these are the clinical choices of the draws themselves."""

from __future__ import annotations

from typing import get_args

from ...model import patient as pm

SPINE = ("cervical", "thoracic", "lumbar")
_LATERALITY = tuple(get_args(pm.Laterality))
_CES = (
    "bladder_dysfunction",
    "saddle_anesthesia",
    "bowel_dysfunction",
    "bilateral_leg_neurological_deficit",
    "sexual_dysfunction",
    "bilateral_sciatica",
)
_SIJ_TESTS = (
    "sij_distraction",
    "sij_compression",
    "sij_thigh_thrust",
    "sij_sacral_thrust",
    "sij_gaenslen",
    "sij_faber",
)
_SPINE_SURGERY = ("spinal_fusion", "laminectomy", "discectomy", "other_spine_surgery")
_ESI_KINDS = ("esi_interlaminar", "esi_transforaminal", "esi_caudal")
_COMPRESSIVE = (
    "disc_herniation",
    "nerve_root_compression",
    "foraminal_stenosis",
    "central_canal_stenosis",
    "disc_bulge",
    "spondylolisthesis",
    "synovial_cyst",
)
# Segments (facet joints, discs) and vertebrae by region.
_SEGMENTS = {
    "cervical": ("C5-C6", "C6-C7", "C4-C5", "C3-C4"),
    "thoracic": ("T11-T12", "T10-T11", "T7-T8"),
    "lumbar": ("L4-L5", "L5-S1", "L3-L4", "L2-L3"),
    "sacral": ("L5-S1", "S1", "S1-S2"),
}
_VERTEBRAE = {"cervical": ("C6", "C5", "C7"), "thoracic": ("T12", "T11", "T8"), "lumbar": ("L1", "L2", "L3", "L4")}
_MODIC_LEVELS = ("L4-L5", "L5-S1", "L3-L4", "L4", "L5", "S1", "L3", "L2-L3")  # L2-L3 is outside L3-S1

# Antithrombotics (with NSAIDs, which the catalogue marks antithrombotic) and their usual indications.
_ANTITHROMBOTICS = (
    "aspirin",
    "apixaban",
    "warfarin",
    "clopidogrel",
    "rivaroxaban",
    "ibuprofen",
    "naproxen",
    "dabigatran",
    "enoxaparin_therapeutic",
    "enoxaparin_prophylactic",
    "ticagrelor",
    "prasugrel",
    "edoxaban",
    "heparin_sc",
    "acenocoumarol",
    "fondaparinux",
    "cilostazol",
    "diclofenac",
    "meloxicam",
    "ketorolac",
)
_ANTITHROMBOTIC_INDICATIONS = (None, "secondary_prevention", "primary_prevention", "treatment")
_OTHER_MEDICATIONS = (
    "acetaminophen",
    "gabapentin",
    "duloxetine",
    "sertraline",
    "prednisone",
    "pregabalin",
    "amitriptyline",
    "cyclobenzaprine",
    "escitalopram",
    "fluoxetine",
    "metformin",
    "insulin",
)
_BENZODIAZEPINES = ("alprazolam", "lorazepam", "clonazepam", "diazepam")
# Opioid -> (dose unit of the CDC MME table, daily doses giving MME/day on and around 50 and 90).
_OPIOIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "morphine": ("mg", (30, 49, 50, 51, 89, 90, 91, 120)),
    "oxycodone": ("mg", (20, 30, 40, 60, 80)),
    "hydrocodone": ("mg", (20, 49, 50, 51, 89, 90, 91)),
    "hydromorphone": ("mg", (8, 10, 12, 18, 20)),
    "oxymorphone": ("mg", (10, 20, 30, 40)),
    "fentanyl_transdermal": ("mcg_per_hour", (12, 25, 37.5, 50)),
    "methadone": ("mg", (5, 10, 20, 40)),
    "tramadol": ("mg", (100, 200, 300, 400)),
    "tapentadol": ("mg", (100, 200, 300)),
    "codeine": ("mg", (120, 240, 360)),
    "buprenorphine": ("mg", (2, 8, 16)),  # a partial agonist: never counted toward MME
}
_DISABILITY = {"cervical": "ndi", "thoracic": "odi_pct", "lumbar": "odi_pct", "sacral": "odi_pct"}

PATHWAYS = (
    "general",
    "facet",
    "esi",
    "sij",
    "neuromodulation",
    "crps",
    "pva",
    "bvn",
    "genicular",
    "occipital",
    "neurolysis",
    "tpi",
    "idd",
    "red_flags",
    "opioids",
)
"""The clinical pathways ``patients(pathway=...)`` can draw, simplest first."""

_LIMBS = ("lower_limb", "upper_limb", "knee", "hip", "shoulder")
_TPI_REGIONS = ("lumbar", "cervical", "thoracic", "shoulder", "chest_wall", "abdomen", "upper_limb")
_CANCER_REGIONS = ("thoracic", "lumbar", "abdomen", "pelvis", "chest_wall", "cervical", "hip")
# Regions and characters each pathway can draw (for the region and character knobs).
_PATHWAY_SCOPE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "general": ((), ()),  # any region and character of the ruleset's vocabularies
    "facet": (SPINE, ("axial", "radicular", "neurogenic_claudication")),
    "esi": (SPINE, ("radicular", "neurogenic_claudication", "axial")),
    "sij": (("sacroiliac",), ("axial", "joint")),
    "neuromodulation": ((*SPINE, "lower_limb", "upper_limb"), ("radicular", "neuropathic")),
    "crps": (_LIMBS, ("neuropathic",)),
    "pva": (SPINE, ("axial", "cancer")),
    "bvn": (("lumbar",), ("axial",)),
    "genicular": (("knee",), ("joint", "neuropathic")),
    "occipital": (("head",), ("headache", "neuropathic")),
    "neurolysis": (("abdomen", "pelvis"), ("cancer", "visceral")),
    "tpi": (_TPI_REGIONS, ("myofascial",)),
    "idd": (_CANCER_REGIONS, ("cancer",)),
    "red_flags": ((*SPINE, "sacral"), ("axial", "radicular", "neurogenic_claudication")),
    "opioids": ((*SPINE, "sacral", "hip", "knee", "lower_limb"), ("axial", "radicular", "joint", "neuropathic")),
}


_SCREEN_MARKS: dict[str, tuple[int, ...]] = {
    "phq9": (10, 20),
    "gad7": (10,),
    "pcs": (30,),
    "start_back": (4,),
    "ort": (8,),
    "stop_bang": (3, 5),
    "isi": (15,),
}
_SCREEN_MAX = {"phq9": 27, "gad7": 21, "pcs": 52, "start_back": 9, "ort": 26, "stop_bang": 8, "isi": 28}
# Conditions the background draws, those that safety rules read first (twice as often).
_BACKGROUND_CONDITIONS = (
    "diabetes",
    "immunosuppression",
    "active_systemic_infection",
    "local_infection_at_site",
    "bleeding_disorder",
    "liver_cirrhosis",
    "advanced_renal_disease",
    "pacemaker",
    "mechanical_heart_valve",
    "recent_coronary_stent",
    "recent_vte_or_stroke",
    "osteoporosis",
    "sleep_apnea",
)
"""Drawn beside every condition of the ruleset's vocabulary (so twice as often)."""
