"""Version discipline: a lock file records each rule's content hash at its version.

``ipm-cds lock`` writes ``ruleset.lock.json`` beside the manifest. ``ipm-cds validate`` then fails when a
rule's content changed but its version did not, or when a version went backwards, so that a rule
``id@version`` in an assessment's provenance always names one and the same rule text.

Catalogue entries (interventions with their bleeding risk, parameters with their defaults, referral
targets with their urgency, medications with their hold tables and MME factors, criteria, sources,
vocabularies) and messages (the message catalogue's sentences) have no version of their own: the lock
records each at the ruleset's version, and changing one needs a new ruleset version, so that
``ruleset_id@ruleset_version`` in provenance always names one set of clinical values and one wording.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import Problem, RulesetError, SourceLocation
from .loader import Ruleset
from .model import SEMVER, Message, RuleSpec, version_key

LOCK_FILE = "ruleset.lock.json"


def rule_hash(spec: RuleSpec) -> str:
    """sha256 of a rule's content, its version excluded (comments and formatting never count)."""
    content = spec.model_dump(mode="json", exclude={"version"})
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def message_hash(message: Message) -> str:
    """sha256 of what a message says (its text and criteria; its description is documentation)."""
    content = message.model_dump(mode="json", include={"text", "criteria"})
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def entry_hash(entry: BaseModel) -> str:
    """sha256 of a catalogue entry's content, as validated (comments and formatting never count)."""
    content = entry.model_dump(mode="json")
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def lock_data(ruleset: Ruleset) -> dict[str, object]:
    return {
        "ruleset": ruleset.id,
        "rules": {
            rid: {"version": spec.version, "sha256": rule_hash(spec)}
            for rid, spec in sorted(ruleset.rule_specs.items())
        },
        "messages": {
            mid: {"ruleset_version": ruleset.version, "sha256": message_hash(message)}
            for mid, message in sorted(ruleset.message_specs.items())
        },
        "catalogues": _catalogue_lock(ruleset),
    }


def _catalogue_lock(ruleset: Ruleset) -> dict[str, dict[str, dict[str, str]]]:
    out: dict[str, dict[str, dict[str, str]]] = {}
    for (catalogue, key), (entry, _) in sorted(ruleset.catalogue_entries.items()):
        out.setdefault(catalogue, {})[key] = {"ruleset_version": ruleset.version, "sha256": entry_hash(entry)}
    return out


def write_lock(ruleset: Ruleset, *, force: bool = False) -> Path:
    """Record every rule's hash at its version. Refuses (RulesetError) when a rule changed without a version
    bump or a version went backwards: re-hashing would bless the change. ``force`` writes anyway (a new or
    broken lock file)."""
    if not force:
        errors = [p for p in check_lock(ruleset) if p.severity == "error" and "not a valid lock file" not in p.message]
        if errors:
            raise RulesetError(errors)
    path = ruleset.path / LOCK_FILE
    path.write_text(json.dumps(lock_data(ruleset), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


class LockEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    version: str = Field(pattern=SEMVER.pattern)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class MessageLockEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ruleset_version: str = Field(pattern=SEMVER.pattern)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class LockFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ruleset: str
    rules: dict[str, LockEntry]
    messages: dict[str, MessageLockEntry] = Field(default_factory=dict)  # absent in a lock written before them
    catalogues: dict[str, dict[str, MessageLockEntry]] = Field(default_factory=dict)  # likewise


def _display(ruleset: Ruleset) -> str:
    """The lock file's name as problems show files: relative to the ruleset folder's parent."""
    root = ruleset.path.resolve()
    return (root / LOCK_FILE).relative_to(root.parent).as_posix()


def check_lock(ruleset: Ruleset) -> list[Problem]:
    """Errors for changed-but-not-bumped and backwards versions; warnings for unlocked and vanished rules."""
    path = ruleset.path / LOCK_FILE
    where = SourceLocation(_display(ruleset), 1, 1)
    if not path.is_file():
        return [
            Problem(
                f"no {LOCK_FILE}: rule versions are not checked", where, hint="run ipm-cds lock", severity="warning"
            )
        ]
    try:
        lock_file = LockFile.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(x) for x in first["loc"])
        message = first["msg"] if not field else f"{field}: {first['msg']}"
        return [
            Problem(
                f"{LOCK_FILE} is not a valid lock file: {message}",
                where,
                hint="run ipm-cds lock --force to write it anew",
            )
        ]
    locked = lock_file.rules
    problems: list[Problem] = []
    for rid, spec in sorted(ruleset.rule_specs.items()):
        at = ruleset.version_locations.get(rid)
        entry = locked.get(rid)
        if entry is None:
            problems.append(
                Problem(f"rule {rid} is not in {LOCK_FILE}", at, hint="run ipm-cds lock", severity="warning")
            )
            continue
        old_version, old_hash = entry.version, entry.sha256
        if version_key(spec.version) < version_key(old_version):
            problems.append(
                Problem(
                    f"rule {rid} version {spec.version} is lower than the locked {old_version}",
                    at,
                    hint="versions only go up",
                )
            )
        elif spec.version == old_version and rule_hash(spec) != old_hash:
            major, minor, patch = version_key(spec.version)
            problems.append(
                Problem(
                    f"rule {rid} changed but its version is still {spec.version}",
                    at,
                    hint=f"bump it (e.g. {major}.{minor}.{patch + 1} for a fix, {major}.{minor + 1}.0 for new logic) "
                    "and run ipm-cds lock",
                )
            )
    for rid in sorted(set(locked) - set(ruleset.rule_specs)):
        problems.append(
            Problem(
                f"locked rule {rid} is no longer in the ruleset",
                where,
                hint="run ipm-cds lock to record its removal",
                severity="warning",
            )
        )
    problems += _message_problems(ruleset, lock_file.messages, where)
    problems += _catalogue_problems(ruleset, lock_file.catalogues, where)
    return problems


def _message_problems(ruleset: Ruleset, locked: dict[str, MessageLockEntry], where: SourceLocation) -> list[Problem]:
    """A message reworded at the locked ruleset version is an error; an unlocked one a warning."""
    current = {mid: (message_hash(m), ruleset.message_locations.get(mid)) for mid, m in ruleset.message_specs.items()}
    return _versioned_by_ruleset(ruleset.version, "message", current, locked, where)


def _catalogue_problems(
    ruleset: Ruleset, locked: Mapping[str, dict[str, MessageLockEntry]], where: SourceLocation
) -> list[Problem]:
    """A catalogue entry changed at the locked ruleset version is an error; an unlocked one a warning."""
    by_catalogue: dict[str, dict[str, tuple[str, SourceLocation | None]]] = {}
    for (catalogue, key), (entry, at) in ruleset.catalogue_entries.items():
        by_catalogue.setdefault(catalogue, {})[key] = (entry_hash(entry), at)
    problems: list[Problem] = []
    for catalogue in sorted(set(by_catalogue) | set(locked)):
        what = _ENTRY_NAMES.get(catalogue, catalogue)
        problems += _versioned_by_ruleset(
            ruleset.version, what, by_catalogue.get(catalogue, {}), locked.get(catalogue, {}), where
        )
    return problems


_ENTRY_NAMES = {
    "interventions": "intervention",
    "referrals": "referral target",
    "parameters": "parameter",
    "medications": "medication",
    "sources": "source",
    "criteria": "criterion",
    "vocabularies": "vocabulary",
}


def _versioned_by_ruleset(
    version: str,
    what: str,
    current: Mapping[str, tuple[str, SourceLocation | None]],
    locked: Mapping[str, MessageLockEntry],
    where: SourceLocation,
) -> list[Problem]:
    """Problems of entries that carry no version of their own: the ruleset's version stands for them."""
    problems: list[Problem] = []
    for key, (digest, at) in sorted(current.items()):
        entry = locked.get(key)
        if entry is None:
            problems.append(
                Problem(f"{what} {key} is not in {LOCK_FILE}", at, hint="run ipm-cds lock", severity="warning")
            )
        elif version_key(version) < version_key(entry.ruleset_version):
            problems.append(
                Problem(
                    f"{what} {key} is locked at ruleset version {entry.ruleset_version}, above the ruleset's {version}",
                    at,
                    hint="versions only go up",
                )
            )
        elif version == entry.ruleset_version and digest != entry.sha256:
            major, minor, patch = version_key(version)
            problems.append(
                Problem(
                    f"{what} {key} changed but the ruleset's version is still {version}",
                    at,
                    hint=f"bump the manifest's version (e.g. {major}.{minor}.{patch + 1} for a correction, "
                    f"{major}.{minor + 1}.0 for a new clinical value) and run ipm-cds lock",
                )
            )
    for key in sorted(set(locked) - set(current)):
        problems.append(
            Problem(
                f"locked {what} {key} is no longer in the ruleset",
                where,
                hint="run ipm-cds lock to record its removal",
                severity="warning",
            )
        )
    return problems
