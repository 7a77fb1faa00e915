"""Every clinical value is governed: catalogue entries are locked at the ruleset's version, like messages.

An edited bleeding-risk category, parameter default or vocabulary passes every rule test; only the lock
sees it, names the entry and where it is written, and asks for a new ruleset version.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipm_cds import load_ruleset
from ipm_cds.cli import EXIT_OK, main
from ipm_cds.ruleset.lock import check_lock

from .test_ruleset_errors import bundled_version, col_of, edit, line_of

VERSION, CORRECTION, MINOR = bundled_version()

SPINE = "catalogues/interventions-spine.yaml"
PARAMS = "catalogues/parameters-spine.yaml"
VOCAB = "catalogues/vocabularies.yaml"


def lock_problems(root: Path) -> list[str]:
    return [f"{p.severity}: {p}" for p in check_lock(load_ruleset(root))]


@pytest.mark.parametrize(
    ("relative", "old", "new", "what", "anchor"),
    [
        (
            SPINE,
            "default: intermediate        # ASRA 2018: interlaminar",
            "default: low        # ASRA 2018: interlaminar",
            "intervention esi_interlaminar",
            "code: esi_interlaminar",
        ),
        (
            PARAMS,
            "    default: 4\n    min: 0\n    max: 520\n    source: cms_lcd_esi",
            "    default: 3\n    min: 0\n    max: 520\n    source: cms_lcd_esi",
            "parameter esi_min_pain_weeks",
            "name: esi_min_pain_weeks",
        ),
        (
            VOCAB,
            '      - {code: inr, label: "INR", unit: "ratio", min: 0.5, max: 20}',
            '      - {code: inr, label: "INR", unit: "ratio", min: 0.5, max: 10}',
            "vocabulary lab_test",
            "name: lab_test",
        ),
    ],
)
def test_an_edited_clinical_value_needs_a_new_ruleset_version(
    copy: Path, relative: str, old: str, new: str, what: str, anchor: str
) -> None:
    edit(copy, relative, old, new)
    load_ruleset(copy)  # still a valid ruleset: nothing but the lock can tell
    line, col = line_of(copy, relative, anchor), col_of(copy, relative, anchor.split(":")[1].strip())
    assert lock_problems(copy) == [
        f"error: ipm-core/{relative}:{line}:{col}: {what} changed but the ruleset's version is still {VERSION} "
        f"(bump the manifest's version (e.g. {CORRECTION} for a correction, {MINOR} for a new clinical value) and run "
        "ipm-cds lock)"
    ]
    before = (copy / "ruleset.lock.json").read_text()
    assert main(["lock", str(copy)]) != EXIT_OK  # lock refuses to bless it
    assert (copy / "ruleset.lock.json").read_text() == before
    edit(copy, "ruleset.yaml", f"\nversion: {VERSION}\n", f"\nversion: {MINOR}\n")
    assert main(["lock", str(copy)]) == EXIT_OK
    assert lock_problems(copy) == []
    kind, name = what.split(maxsplit=1)
    catalogue = {"intervention": "interventions", "parameter": "parameters", "vocabulary": "vocabularies"}[kind]
    entry = json.loads((copy / "ruleset.lock.json").read_text())["catalogues"][catalogue][name]
    assert entry["ruleset_version"] == MINOR


def test_a_comment_or_reformatting_is_not_a_change(copy: Path) -> None:
    edit(copy, SPINE, "# Bleeding-risk categories from ASRA 2018", "# Bleeding-risk categories (ASRA 2018)")
    edit(
        copy,
        VOCAB,
        '      - {code: inr, label: "INR", unit: "ratio", min: 0.5, max: 20}',
        '      - code: inr\n        label: "INR"\n        unit: "ratio"\n        min: 0.5\n        max: 20',
    )
    assert lock_problems(copy) == []


def test_a_lock_without_catalogues_warns_for_each_entry(copy: Path) -> None:
    lock = copy / "ruleset.lock.json"
    data = json.loads(lock.read_text())
    del data["catalogues"]
    lock.write_text(json.dumps(data))
    found = lock_problems(copy)
    assert len(found) == len(load_ruleset(copy).catalogue_entries)
    assert all(p.startswith("warning: ") and "is not in ruleset.lock.json (run ipm-cds lock)" in p for p in found)


def test_a_removed_entry_is_reported(copy: Path) -> None:
    lock = copy / "ruleset.lock.json"
    data = json.loads(lock.read_text())
    data["catalogues"]["parameters"]["retired_threshold"] = {"ruleset_version": "0.1.0", "sha256": "0" * 64}
    lock.write_text(json.dumps(data))
    assert lock_problems(copy) == [
        "warning: ipm-core/ruleset.lock.json:1:1: locked parameter retired_threshold is no longer in the ruleset "
        "(run ipm-cds lock to record its removal)"
    ]
