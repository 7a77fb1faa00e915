"""Hypothesis strategies for patients.

``patients()`` draws valid, clinically coherent :class:`~ipm_cds.PatientCase` objects. Each draw follows
one clinical **pathway** (facet, epidural, sacroiliac, neuromodulation, CRPS, vertebral augmentation,
basivertebral nerve ablation, genicular, occipital, neurolysis, trigger points, intrathecal drug delivery,
red flags, opioids, or a general pain complaint): a pain complaint in the right region with the right
character, the imaging, examination and prior procedures that pathway reads, with numbers on and around
the thresholds of the bundled ruleset so that both sides of each are reached. Around it, a background of
demographics, conservative care, screenings, medications, laboratory results, conditions, allergies and
red flags makes the safety rules meet every pathway.

Coherence: every date is on or before ``as_of``; a procedure's relief never lasts longer than the time
since it; a pain began before the procedures done for it; relief is 0–100 %, scores stay in their
instruments' ranges, laboratory values in their units' ranges, opioid doses are daily doses in the unit
the CDC MME table uses (``fentanyl_transdermal`` in ``mcg_per_hour``, the others in ``mg``); only a
female patient is pregnant. Draws are cheap (every strategy is built once, draws are plain choices) and
shrink towards the simplest patient: the general pathway, one complaint, no optional section.

Keyword knobs steer the draw; ``None`` leaves the choice to hypothesis:

- ``pathway``: one of :data:`PATHWAYS`;
- ``region``, ``character``: of every pain complaint (and the pathway's procedures); pathways that cannot
  have them are not drawn;
- ``red_flags``, ``anticoagulants`` (any antithrombotic, NSAIDs included), ``opioids``,
  ``prior_procedures``: ``True`` for at least one, ``False`` for none;
- ``max_pain``: at most this many pain complaints (at least one is always drawn);
- ``ruleset``: draw only the medications of that ruleset's catalogue.

The numbers cluster around the thresholds of the bundled ruleset (``rules/ipm-core``). For another
ruleset's own thresholds, draw from :func:`boundary_patients` as well.

A ``ruleset`` argument (here and in :func:`boundary_patients`) is a loaded :class:`~ipm_cds.Ruleset`, or, for
a strategy built at import time (a ``@given`` decorator) while the ruleset comes later, a folder path, a
function returning the ruleset, or ``None`` for the bundled one (``boundary_patients`` only): the strategy
then loads it when it is first drawn from, once per folder. Inside a test that has the ruleset as a fixture,
``data.draw(boundary_patients(ipm_ruleset))`` with ``@given(data=st.data())`` works as well.

The package, one module a concern: :mod:`.vocabularies` (what the draws pick from), :mod:`.draws` (cheap
labelled choices, the document being built), :mod:`.rulesets` (where a strategy's ruleset comes from),
:mod:`.blocks` (a pain, a procedure, imaging, ...), :mod:`.spine`, :mod:`.peripheral` and :mod:`.pathways`
(the pathways and their registry), :mod:`.background`, :mod:`.patients` (:func:`patients`,
:func:`boundary_patients`), :mod:`.hostile` (:func:`raw_patient_documents`) and :mod:`.additions`
(:func:`with_requested`, :func:`with_series`).
"""

from .additions import with_requested, with_series
from .draws import DEFAULT_AS_OF
from .hostile import raw_patient_documents
from .patients import boundary_patients, patients
from .rulesets import RulesetSource
from .vocabularies import PATHWAYS, SPINE

__all__ = [
    "DEFAULT_AS_OF",
    "PATHWAYS",
    "SPINE",
    "RulesetSource",
    "boundary_patients",
    "patients",
    "raw_patient_documents",
    "with_requested",
    "with_series",
]
