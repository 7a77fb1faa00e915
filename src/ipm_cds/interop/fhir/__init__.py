"""FHIR R4 in: a Bundle, or a CDS Hooks prefetch dictionary, to a :class:`~ipm_cds.PatientCase`.

Every resource is validated with the ``fhir.resources`` R4B models (FHIR 4.3, wire-compatible with R4
for every resource read here) before anything is read from it: a resource that is not valid FHIR is a
:class:`FhirInputError` naming the entry, the resource and the element. The codes are looked up in the
data files of ``maps/`` (:mod:`ipm_cds.interop.maps`); what cannot be mapped is reported in
:attr:`FhirMapping.unmapped` (resource, code and reason), never dropped silently. The patient document
that results is validated like any other (:func:`ipm_cds.parse_patient`); a value the patient model
refuses (an NRS of 11) is a :class:`FhirInputError` naming the resource it came from.

What is read, and how (docs/fhir.md has the full table):

- ``Patient``: ``birthDate`` (a full date), ``gender``.
- ``Condition``: ICD-10-CM / SNOMED CT / local codes to ``conditions``; pain diagnoses (M54.5x ...) or
  the local pain-character code with a body-region ``bodySite`` to ``pain``; local red-flag codes to
  ``red_flags``. ``clinicalStatus`` gives ``active``; refuted or entered-in-error conditions are skipped.
- ``Observation`` by code (LOINC where confirmed, else the local observation system): pain scores
  (linked to their pain Condition by ``focus``), BMI, smoking and pregnancy status, PHQ-9 (item 9 as a
  component, a linked member or a same-day Observation), GAD-7 and the other instruments, labs with
  UCUM unit conversion, conservative care, psychological evaluation, procedure relief (linked to its
  Procedure by ``partOf`` or ``focus``), examination findings, imaging findings (modality from the
  ImagingStudy or DiagnosticReport they belong to) and red flags.
- ``MedicationRequest`` / ``MedicationStatement`` (active or on hold) by RxNorm or the local medication
  code, with the daily dose from the ``daily-dose`` extension or computed from one dosage (dose x
  frequency per day; a transdermal rate in ug/h).
- ``Procedure`` (completed) by CPT or the local procedure-kind code, with date, region, levels, side
  and purpose.
- ``AllergyIntolerance`` (not refuted, not resolved) by RxNorm or the local allergy-substance code.
- ``DiagnosticReport`` and ``ImagingStudy`` as the context of the imaging findings they hold.

A long record is read, not refused: beyond the patient model's cap on a list, the most recent labs,
procedures, screenings, examination and imaging findings of each kind are kept and the older ones
reported (``older_left_out``, see :data:`KEEP_RECENT`); conditions, red flags and allergies collapse to
distinct entries (``duplicate``).

The package is split by resource family: :mod:`.common` (result types, limits, helpers), :mod:`.base`
(collection, references, patient), :mod:`.conditions`, :mod:`.observations`, :mod:`.medications`,
:mod:`.procedures`, :mod:`.reader` (assembly and the entry points), :mod:`.orders` and :mod:`.prefetch`.
"""

from __future__ import annotations

from .common import KEEP_RECENT as KEEP_RECENT
from .common import MAX_RESOURCES as MAX_RESOURCES
from .common import FhirInputError, FhirMapping, Unmapped
from .common import UnmappedKind as UnmappedKind
from .common import _shares as _shares
from .orders import OrderedIntervention, draft_order_bundle, ordered_interventions
from .prefetch import COMBINED_PREFETCH_KEYS as COMBINED_PREFETCH_KEYS
from .prefetch import prefetch_from_bundle, prefetch_templates
from .prefetch import prefetch_provided as prefetch_provided
from .reader import read_bundle, read_fhir, read_prefetch

__all__ = [
    "FhirInputError",
    "FhirMapping",
    "OrderedIntervention",
    "Unmapped",
    "draft_order_bundle",
    "ordered_interventions",
    "prefetch_from_bundle",
    "prefetch_templates",
    "read_bundle",
    "read_fhir",
    "read_prefetch",
]
