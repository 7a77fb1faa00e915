"""Version discipline: a lock file records each rule's content hash at its version.

``ipm-cds lock`` writes ``ruleset.lock.json`` beside the manifest. ``ipm-cds validate`` then fails when a
rule's content changed but its version did not, or when a version went backwards, so that a rule
``id@version`` in an assessment's provenance always names one and the same rule text.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import Problem, SourceLocation
from .loader import Ruleset
from .model import RuleSpec, version_key

LOCK_FILE = "ruleset.lock.json"


def rule_hash(spec: RuleSpec) -> str:
    """sha256 of a rule's content, its version excluded (comments and formatting never count)."""
    content = spec.model_dump(mode="json", exclude={"version"})
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def lock_data(ruleset: Ruleset) -> dict[str, object]:
    return {
        "ruleset": ruleset.id,
        "rules": {
            rid: {"version": spec.version, "sha256": rule_hash(spec)}
            for rid, spec in sorted(ruleset.rule_specs.items())
        },
    }


def write_lock(ruleset: Ruleset) -> Path:
    path = ruleset.path / LOCK_FILE
    path.write_text(json.dumps(lock_data(ruleset), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def check_lock(ruleset: Ruleset) -> list[Problem]:
    """Errors for changed-but-not-bumped and backwards versions; warnings for unlocked and vanished rules."""
    path = ruleset.path / LOCK_FILE
    where = SourceLocation(str(path), 1, 1)
    if not path.is_file():
        return [
            Problem(
                f"no {LOCK_FILE}: rule versions are not checked", where, hint="run ipm-cds lock", severity="warning"
            )
        ]
    try:
        locked = json.loads(path.read_text(encoding="utf-8"))["rules"]
        assert isinstance(locked, dict)
    except (ValueError, KeyError, AssertionError):
        return [Problem(f"{LOCK_FILE} is not a valid lock file", where, hint="run ipm-cds lock")]
    problems: list[Problem] = []
    for rid, spec in sorted(ruleset.rule_specs.items()):
        at = ruleset.version_locations.get(rid)
        entry = locked.get(rid)
        if entry is None:
            problems.append(
                Problem(f"rule {rid} is not in {LOCK_FILE}", at, hint="run ipm-cds lock", severity="warning")
            )
            continue
        old_version, old_hash = str(entry.get("version")), str(entry.get("sha256"))
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
    return problems
