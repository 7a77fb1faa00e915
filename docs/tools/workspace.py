"""The throw-away workspace that the documentation's examples run in.

Every command and program runs with its working directory set to ``<tmp>/root``, a folder that links
each top-level entry of the repository (``examples``, ``rules``, ``src``, …) and holds a real
``fixtures/`` folder: the static files of ``docs/tools/fixtures/`` plus the altered rulesets made
below. The docs therefore show stable relative paths (``examples/…``, ``rules/ipm-core``,
``fixtures/…``) whatever the temporary directory is called, and nothing is ever written into the
repository.

``ipm-cds`` and ``python`` resolve to the environment of the interpreter running the builder (normally
the README's ``.venv``), through two small shims in ``<tmp>/bin``. The rest of the environment is pinned
(locale, time zone, terminal width, no ``PYTHONPATH``) so that two runs, on any machine, print the same.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent.parent
STATIC_FIXTURES = TOOLS / "fixtures"
BROKEN_FIXTURES = ROOT / "tests" / "fixtures" / "broken"  # the test suite's broken rule files, reused as they are
FIXTURES = "fixtures"  # the fixtures folder, relative to the working directory, as the docs show it

# Variables that would make the output depend on the caller's shell rather than on the repository.
_DROPPED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONWARNINGS",
    "PYTHONINSPECT",
    "LANGUAGE",
    # CI runners set these; pytest then stops truncating its summary and hypothesis prints reproduce blobs,
    # so the examples would print differently in CI than on a developer's machine.
    "CI",
    "BUILD_NUMBER",
    "GITHUB_ACTIONS",
    "HYPOTHESIS_PROFILE",
)
_PINNED = {
    "COLUMNS": "100",
    "LC_ALL": "C",  # byte-order `sort`, untranslated messages; Python switches to UTF-8 mode under C
    "LANG": "C",
    "PYTHONUTF8": "1",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "TZ": "UTC",
    "TERM": "dumb",
    "NO_COLOR": "1",
}


class FixtureError(RuntimeError):
    """A fixture could not be made (usually: the rule file it edits has changed)."""


@dataclass(frozen=True)
class Workspace:
    """Where and how the examples run."""

    base: Path  # the temporary directory; removed afterwards
    cwd: Path  # working directory of every example
    env: dict[str, str]

    def machine_paths(self) -> list[str]:
        """Absolute paths that must never appear in a generated page."""
        paths = {str(self.base), os.path.realpath(self.base), str(ROOT), os.path.realpath(ROOT)}
        return sorted((p for p in paths if len(p) > 1), key=len, reverse=True)


@contextmanager
def open_workspace() -> Iterator[Workspace]:
    """Create the workspace (links, fixtures, shims, environment); remove it on exit."""
    with tempfile.TemporaryDirectory(prefix="ipm-cds-docs-") as tmp:
        # Resolved: ipm-cds names a ruleset file relative to the folder's parent only if "$PWD/…" has no symlink.
        base = Path(tmp).resolve()
        cwd = base / "root"
        cwd.mkdir()
        for entry in sorted(ROOT.iterdir()):
            if not entry.name.startswith(".") and entry.name != FIXTURES:
                (cwd / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        make_fixtures(cwd / FIXTURES)
        bin_dir = base / "bin"
        bin_dir.mkdir()
        _write_shims(bin_dir)
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED and not k.startswith("LC_")}
        env.update(_PINNED)
        env["PWD"] = str(cwd)
        env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", os.defpath)])
        yield Workspace(base=base, cwd=cwd, env=env)


def _write_shims(bin_dir: Path) -> None:
    """``ipm-cds`` and ``python`` of the running interpreter's environment, whatever PATH says."""
    script = Path(sysconfig.get_path("scripts")) / "ipm-cds"
    ipm_cds = [str(script)] if script.is_file() else [sys.executable, "-m", "ipm_cds"]
    for name, argv in (("ipm-cds", ipm_cds), ("python", [sys.executable])):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n', encoding="utf-8")
        shim.chmod(0o755)


# -- fixtures ----------------------------------------------------------------------------------------


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if text.count(old) != 1:
        raise FixtureError(
            f"{path.name}: expected exactly one occurrence of {old!r}, found {text.count(old)}; "
            "the rule file changed, update docs/tools/workspace.py"
        )
    path.write_text(text.replace(old, new), encoding="utf-8")


def _replace_in_entry(path: Path, head: str, old: str, new: str) -> None:
    """``_replace_once`` within one entry of a top-level list, from its ``head`` line (``  - id: x``) to the next."""
    text = path.read_text(encoding="utf-8")
    if text.count(f"{head}\n") != 1:
        raise FixtureError(f"{path.name}: no {head.strip()!r}; the file changed, update docs/tools/workspace.py")
    start = text.index(f"{head}\n")
    end = text.find("\n  - ", start + len(head))
    end = len(text) if end < 0 else end + 1
    entry = text[start:end]
    if entry.count(old) != 1:
        raise FixtureError(
            f"{path.name}: expected exactly one occurrence of {old!r} under {head.strip()!r}, found "
            f"{entry.count(old)}; the file changed, update docs/tools/workspace.py"
        )
    path.write_text(text[:start] + entry.replace(old, new) + text[end:], encoding="utf-8")


def _copy_ruleset(fixtures: Path, name: str) -> Path:
    target = fixtures / name
    shutil.copytree(ROOT / "rules" / "ipm-core", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _append(path: Path, fragment: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write((STATIC_FIXTURES / fragment).read_text(encoding="utf-8"))


def _add_broken(ruleset: Path, *names: str) -> None:
    """Copy ``tests/fixtures/broken/NAME.yaml`` into the ruleset as ``rules/zz-NAME.yaml`` (``rules/*.yaml``)."""
    for name in names:
        source = BROKEN_FIXTURES / f"{name}.yaml"
        if not source.is_file():
            raise FixtureError(f"tests/fixtures/broken/{name}.yaml does not exist; update docs/tools/workspace.py")
        shutil.copyfile(source, ruleset / "rules" / f"zz-{name}.yaml")


def _only_tests(ruleset: Path, fragment: str) -> None:
    """Make ``fragment`` the ruleset's only test file, ``tests/facet.yaml``."""
    for test_file in (ruleset / "tests").iterdir():
        test_file.unlink()
    shutil.copyfile(STATIC_FIXTURES / fragment, ruleset / "tests" / "facet.yaml")
    manifest = ruleset / "ruleset.yaml"
    text, count = re.subn(
        r"^tests:\n(?:  - .*\n)+", "tests:\n  - tests/facet.yaml\n", manifest.read_text("utf-8"), flags=re.M
    )
    if count != 1:
        raise FixtureError("ruleset.yaml: no `tests:` list to replace; update docs/tools/workspace.py")
    manifest.write_text(text, encoding="utf-8")


def make_fixtures(fixtures: Path) -> None:
    """Copy the static fixtures and make the altered copies of the bundled ruleset."""
    fixtures.mkdir()
    for src in sorted(STATIC_FIXTURES.iterdir()):
        if src.is_file():
            shutil.copyfile(src, fixtures / src.name)

    # broken-ruleset: four mistakes in rules/facet.yaml
    facet = _copy_ruleset(fixtures, "broken-ruleset") / "rules" / "facet.yaml"
    _replace_once(
        facet,
        "duration_weeks: {gte: {param: chronic_pain_min_weeks}}",
        "duration_week: {gte: {param: chronic_pain_min_weeks}}",
    )
    _replace_once(
        facet,
        "relief_pct: {gte: {param: facet_block_relief_pct}}\n        same_scale",
        "relief_pct: {gte: {param: facet_block_relief}}\n        same_scale",
    )
    _replace_once(facet, "        conservative_care_failed: true\n", "        conservative_care_failed: {gte: 1}\n")
    text = facet.read_text(encoding="utf-8")
    start = text.index("  - id: facet.rfa.initial")
    at = text.index("intervention: facet_rfa", start)
    facet.write_text(
        text[:at] + "intervention: facet_rf" + text[at + len("intervention: facet_rfa") :], encoding="utf-8"
    )

    # broken-rule: a rule with pattern and reference mistakes
    _append(_copy_ruleset(fixtures, "broken-rule") / "rules" / "referrals.yaml", "broken_rule.yaml.txt")

    # broken-template: template and shape mistakes
    _append(_copy_ruleset(fixtures, "broken-template") / "rules" / "referrals.yaml", "broken_template.yaml.txt")

    # broken-yaml: a duplicate key
    _replace_once(
        _copy_ruleset(fixtures, "broken-yaml") / "rules" / "red_flags.yaml",
        "    status: active\n    title: Suspected cauda equina syndrome\n",
        "    status: active\n    status: draft\n    title: Suspected cauda equina syndrome\n",
    )

    # no-or-absent: facet.block.positive without or_absent
    _replace_once(
        _copy_ruleset(fixtures, "no-or-absent") / "rules" / "facet.yaml",
        "        same_scale: {neq: false, or_absent: true}\n"
        "        duration_consistent_with_agent: {neq: false, or_absent: true}\n",
        "        same_scale: {neq: false}\n        duration_consistent_with_agent: {neq: false}\n",
    )

    # with-tests: a ruleset whose only test file is cases.yaml.txt, one case deliberately wrong
    _only_tests(_copy_ruleset(fixtures, "with-tests"), "cases.yaml.txt")

    # bad-test-patient: one good case, and one whose patient has a misspelt region (test.md, schema.md)
    _only_tests(_copy_ruleset(fixtures, "bad-test-patient"), "cases_bad_patient.yaml.txt")

    # validate-load: broken rule files from the test suite, each refused when the ruleset loads (validate.md)
    _add_broken(
        _copy_ruleset(fixtures, "validate-load"),
        "01-misspelt-field",
        "03-wrong-type",
        "04-dangling-intervention",
        "15-red-flag-without-referral",
        "16-limit-exceeded",
        "17-bad-version",
    )

    # validate-semantic: rules that load but that the semantic checks refuse or warn about (validate.md)
    semantic = _copy_ruleset(fixtures, "validate-semantic")
    _add_broken(semantic, "09-unsatisfiable", "10-unsatisfiable-under-one-profile", "11-recommend-and-exclude")
    shutil.copyfile(STATIC_FIXTURES / "never_fires.yaml.txt", semantic / "rules" / "zz-never-fires.yaml")
    # (the manifest includes catalogues/parameters*.yaml)
    shutil.copyfile(STATIC_FIXTURES / "unused_parameter.yaml.txt", semantic / "catalogues" / "parameters-zz.yaml")

    # validate-limits: a rule that loads but crosses a limit of durable-rules (validate.md)
    _add_broken(_copy_ruleset(fixtures, "validate-limits"), "22-any-of-true-at-once")

    # lock-unbumped: referral.physical_therapy changed (urgency routine -> soon), its version left at 1.1.0
    pt, routine, soon = "  - id: referral.physical_therapy", "urgency: routine\n", "urgency: soon\n"
    _replace_in_entry(_copy_ruleset(fixtures, "lock-unbumped") / "rules" / "referrals.yaml", pt, routine, soon)

    # lock-bumped: the same change with the version bumped to 1.2.0, ruleset.lock.json not yet rewritten
    referrals = _copy_ruleset(fixtures, "lock-bumped") / "rules" / "referrals.yaml"
    _replace_in_entry(referrals, pt, routine, soon)
    _replace_in_entry(referrals, pt, "    version: 1.1.0\n", "    version: 1.2.0\n")

    # lock-backwards: asra.bleeding_risk.concurrent_agents (locked at 1.1.0) back at 1.0.0, content unchanged
    _replace_in_entry(
        _copy_ruleset(fixtures, "lock-backwards") / "rules" / "antithrombotic.yaml",
        "  - id: asra.bleeding_risk.concurrent_agents",
        "    version: 1.1.0\n",
        "    version: 1.0.0\n",
    )

    # relief-50: facet_block_relief_pct lowered from 80 to 50 under cms_lcd (diff.md)
    _replace_in_entry(
        _copy_ruleset(fixtures, "relief-50") / "catalogues" / "parameters.yaml",
        "  - name: facet_block_relief_pct",
        "      cms_lcd: 80\n",
        "      cms_lcd: 50\n",
    )


def main(argv: list[str] | None = None) -> int:
    """``python docs/tools/workspace.py fixtures [DIR]``: make the ``fixtures/`` folder that the pages' examples
    use (default ``./fixtures``, which .gitignore leaves out), so a reader can run them in a checkout."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "fixtures" or len(args) > 2:
        print("usage: python docs/tools/workspace.py fixtures [DIR]", file=sys.stderr)
        return 2
    target = Path(args[1] if len(args) == 2 else "fixtures")
    if target.exists():
        print(f"{target} exists: remove it first, or name another folder", file=sys.stderr)
        return 1
    make_fixtures(target)
    print(f"made {target}: {', '.join(sorted(p.name for p in target.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
