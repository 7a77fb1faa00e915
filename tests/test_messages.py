"""The message catalogue: clinician-facing sentences the code composes come from the ruleset."""

from __future__ import annotations

import inspect
import json
from datetime import date
from pathlib import Path

import pytest
import yaml

import ipm_cds.engine.resolve
from ipm_cds import Engine, load_ruleset
from ipm_cds.ruleset.messages import SLOTS, parse_template
from ipm_cds.ruleset.model import Message

from .test_ruleset_errors import edit, problems

MESSAGES = "catalogues/messages.yaml"
EXAMPLES = Path(__file__).parent.parent / "examples" / "patients"


def at(root: Path, relative: str, fragment: str) -> str:
    """file:line:col of the value (after the first ': ') on the line holding ``fragment``."""
    lines = (root / relative).read_text().splitlines()
    n, line = next((i, x) for i, x in enumerate(lines, 1) if fragment in x)
    col = line.index(": ") + 3
    return f"ipm-core/{relative}:{n}:{col}"


# -- rendering -----------------------------------------------------------------------------------------


def test_optional_segments_drop_out_when_their_value_is_missing() -> None:
    t = parse_template(
        Message(id="hold.hold", text="{agent}: hold {duration}[[ ({condition})]][[; restart {restart} after]].")
    )[0]
    assert t is not None
    assert t.render(agent="Warfarin", duration="5 days", condition="normal INR", restart="24 h") == (
        "Warfarin: hold 5 days (normal INR); restart 24 h after."
    )
    assert t.render(agent="Warfarin", duration="5 days", condition=None, restart="24 h") == (
        "Warfarin: hold 5 days; restart 24 h after."
    )
    assert t.render(agent="Warfarin", duration="5 days", condition="", restart=None) == "Warfarin: hold 5 days."
    assert t.render(agent="Warfarin", duration="5 days") == "Warfarin: hold 5 days."


def test_a_required_placeholder_without_a_value_is_a_programming_error() -> None:
    t = parse_template(Message(id="hold.hold", text="{agent}: hold {duration}."))[0]
    assert t is not None
    with pytest.raises(ValueError, match=r"no value for the required placeholder \{duration\}"):
        t.render(agent="Warfarin", duration=None)
    with pytest.raises(ValueError, match="no placeholder slot"):
        t.render(agent="Warfarin", duration="5 days", colour="red")


def test_criterion_is_filled_from_the_messages_criteria() -> None:
    t = parse_template(
        Message(id="hold.upgrade", text="Raised from {from_risk} to {to_risk} ({criterion}).", criteria=["AC-A-01"])
    )[0]
    assert t is not None
    assert t.render(from_risk="low", to_risk="intermediate") == "Raised from low to intermediate (AC-A-01)."


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a [[b {flag} [[c]] d]]", "optional segments do not nest"),
        ("a [[b {flag}", "'[[' is never closed by ']]'"),
        ("a {flag}]]", "']]' closes no optional segment"),
        ("a[[ b]] {flag}", "has no placeholder, so it never drops out"),
        ("a {Flag}", "'{Flag}' is not a placeholder"),
        ("a {flag", "unmatched '{'"),
        ("a flag}", "unmatched '}'"),
    ],
)
def test_malformed_templates(text: str, problem: str) -> None:
    parsed, errors = parse_template(Message(id="red_flag.exclusion", text=text))
    assert parsed is None
    assert any(problem in e for e in errors), errors


# -- loading -------------------------------------------------------------------------------------------


def test_the_bundled_catalogue_has_every_message_the_code_needs() -> None:
    ruleset = load_ruleset()
    assert set(ruleset.messages) == set(SLOTS)
    assert ruleset.messages["hold.upgrade"].criteria == ("AC-UPGRADE-01",)


def test_misspelt_placeholder(copy: Path) -> None:
    edit(
        copy,
        MESSAGES,
        '  - id: hold.hold\n    text: "{agent}: hold {duration}',
        '  - id: hold.hold\n    text: "{agnet}: hold {duration}',
    )
    assert problems(copy) == [
        f"{at(copy, MESSAGES, '{agnet}')}: message hold.hold: unknown placeholder {{agnet}} (did you mean 'agent'?)"
    ]


def test_placeholder_the_code_does_not_supply(copy: Path) -> None:
    edit(copy, MESSAGES, "red flag stands ({flags})", "red flag stands ({flags}, since {onset_date})")
    assert problems(copy) == [
        f"{at(copy, MESSAGES, '{onset_date}')}: message red_flag.deferral: unknown placeholder {{onset_date}} "
        "(red_flag.deferral fills {flags})"
    ]


def test_missing_message(copy: Path) -> None:
    edit(copy, MESSAGES, '  - id: value.yes\n    text: "yes"\n', "")
    assert problems(copy) == [
        f"{at(copy, 'ruleset.yaml', 'messages: catalogues/messages.yaml')}: the message catalogue has no message "
        "'value.yes', which the code needs (add it to the message catalogue; its placeholders: none)"
    ]


def test_misspelt_message_id(copy: Path) -> None:
    edit(copy, MESSAGES, "  - id: hold.table\n", "  - id: hold.tabel\n")
    assert problems(copy) == [
        f"{at(copy, MESSAGES, 'id: hold.tabel')}: unknown message 'hold.tabel': the code uses no such message "
        "(did you mean 'hold.table'?)",
        f"{at(copy, 'ruleset.yaml', 'messages: catalogues/messages.yaml')}: the message catalogue has no message "
        "'hold.table', which the code needs (add it to the message catalogue; its placeholders: {verification})",
    ]


def test_unknown_criterion(copy: Path) -> None:
    edit(copy, MESSAGES, "criteria: [AC-UPGRADE-01]", "criteria: [AC-UPGRADE-02]")
    lines = (copy / MESSAGES).read_text().splitlines()
    n, line = next((i, x) for i, x in enumerate(lines, 1) if "AC-UPGRADE-02" in x)
    assert problems(copy) == [
        f"ipm-core/{MESSAGES}:{n}:{line.index('AC-') + 1}: unknown criterion 'AC-UPGRADE-02' "
        "(did you mean 'AC-UPGRADE-01'?)"
    ]


def test_criterion_placeholder_needs_criteria(copy: Path) -> None:
    edit(copy, MESSAGES, "    criteria: [AC-UPGRADE-01]\n", "")
    found = problems(copy)
    assert len(found) == 1
    assert "message hold.upgrade uses {criterion} but names no criteria" in found[0]


def test_the_manifest_must_declare_the_message_catalogue(copy: Path) -> None:
    edit(copy, "ruleset.yaml", "  messages: catalogues/messages.yaml\n", "")
    assert any("missing required field 'messages'" in p for p in problems(copy))


# -- the content hash and the assessment ---------------------------------------------------------------


def test_editing_a_message_changes_the_ruleset_hash(copy: Path) -> None:
    before = load_ruleset(copy).sha256
    assert before == load_ruleset().sha256
    edit(copy, MESSAGES, "# Clinician-facing sentences", "# Clinician-facing sentences (a comment changes nothing)")
    assert load_ruleset(copy).sha256 == before
    edit(
        copy,
        MESSAGES,
        'until the red flag has been assessed."\n  - id: red_flag.deferral',
        'until the red flag is assessed."\n  - id: red_flag.deferral',
    )
    assert load_ruleset(copy).sha256 != before


def test_assessments_read_the_catalogue(copy: Path) -> None:
    patient = yaml.safe_load((EXAMPLES / "cauda_equina.yaml").read_text())
    as_of = date(2025, 6, 2)
    original = Engine(load_ruleset(copy), backend="python").evaluate(patient, as_of=as_of)
    reasons = {e.reason for e in original.excluded if e.kind == "red_flag"}
    assert any(r.startswith("Red flag (") for r in reasons)
    edit(copy, MESSAGES, 'text: "Red flag ({flag}): every', 'text: "Reworded ({flag}): every')
    reworded = Engine(load_ruleset(copy), backend="python").evaluate(patient, as_of=as_of)
    assert {e.reason for e in reworded.excluded if e.kind == "red_flag"} == {
        r.replace("Red flag (", "Reworded (", 1) for r in reasons
    }
    assert reworded.provenance.ruleset_sha256 != original.provenance.ruleset_sha256


def test_resolve_holds_no_clinical_sentence() -> None:
    source = inspect.getsource(ipm_cds.engine.resolve)
    for phrase in ("AC-UPGRADE-01", "ASRA 2018 table", "prescriber's approval", "Red flag (", "Deferred while"):
        assert phrase not in source


# -- the lock ------------------------------------------------------------------------------------------


def lock_problems(root: Path) -> list[str]:
    from ipm_cds.ruleset.lock import check_lock

    return [f"{p.severity}: {p}" for p in check_lock(load_ruleset(root))]


def test_a_reworded_message_needs_a_new_ruleset_version(copy: Path) -> None:
    from ipm_cds.cli import EXIT_OK, main

    from .test_ruleset_errors import bundled_version

    version, correction, minor = bundled_version()
    edit(
        copy,
        MESSAGES,
        'until the red flag has been assessed."\n  - id: red_flag.deferral',
        'until the red flag is assessed."\n  - id: red_flag.deferral',
    )
    assert lock_problems(copy) == [
        f"error: {at(copy, MESSAGES, 'until the red flag is assessed.')}: message red_flag.exclusion changed "
        f"but the ruleset's version is still {version} (bump the manifest's version (e.g. {correction} for a "
        f"correction, {minor} for a new clinical value) and run ipm-cds lock)"
    ]
    before = (copy / "ruleset.lock.json").read_text()
    assert main(["lock", str(copy)]) != EXIT_OK  # lock refuses to bless the rewording
    assert (copy / "ruleset.lock.json").read_text() == before
    edit(copy, "ruleset.yaml", f"\nversion: {version}\n", f"\nversion: {correction}\n")
    assert lock_problems(copy) == []
    assert main(["lock", str(copy)]) == EXIT_OK
    assert lock_problems(copy) == []
    edit(copy, "ruleset.yaml", f"\nversion: {correction}\n", f"\nversion: {version}\n")
    assert lock_problems(copy)[0].endswith(
        f"message candidate.evidence is locked at ruleset version {correction}, above the ruleset's {version} "
        "(versions only go up)"
    )


def test_a_lock_without_messages_is_still_valid(copy: Path) -> None:
    lock = copy / "ruleset.lock.json"
    data = json.loads(lock.read_text())
    del data["messages"]
    lock.write_text(json.dumps(data))
    found = lock_problems(copy)
    assert len(found) == len(SLOTS)
    assert all(p.startswith("warning: ") and "is not in ruleset.lock.json (run ipm-cds lock)" in p for p in found)


def test_diff_lists_a_reworded_message(copy: Path) -> None:
    from ipm_cds.tooling.diff import _structure

    edit(copy, MESSAGES, "patient at high bleeding risk ({criterion})", "high bleeding risk ({criterion})")
    assert _structure(load_ruleset(), load_ruleset(copy))["catalogue"] == ["message changed: hold.upgrade"]
