"""Rule coverage of a patient strategy: which active rules a number of drawn patients fire, per profile.

The draw is deterministic (hypothesis ``derandomize=True``, no example database, generate phase only), so
the same strategy, ruleset and number of draws always give the same report. Each drawn patient is
evaluated once under every profile, with the plain-Python backend (the property tests check that it agrees
with durable-rules). A rule counts as fired when the assessment's trace shows it ``fired`` (not
``blocked``) at least once.

Command line (``benchmarks/rule_coverage.py`` wraps it)::

    python -m ipm_cds.testing.coverage --draws 10000
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ..engine.driver import in_effect
from ..engine.facade import Engine
from ..model.patient import PatientCase
from ..ruleset.loader import Ruleset
from .strategies import DEFAULT_AS_OF, patients


@dataclass
class CoverageReport:
    """What ``draws`` patients fired under one profile."""

    profile: str
    draws: int
    active: tuple[str, ...]  # rule refs (id@version) active under the profile and in effect at as_of
    fired: Counter[str] = field(default_factory=Counter)  # rule ref -> patients whose evaluation fired it
    seconds: float = 0.0

    @property
    def never_fired(self) -> list[str]:
        return sorted(ref for ref in self.active if not self.fired[ref])

    def ratio(self) -> str:
        """``fired/active``, e.g. ``214/214``."""
        return f"{len(self.active) - len(self.never_fired)}/{len(self.active)}"


def rule_coverage(
    ruleset: Ruleset,
    *,
    draws: int = 10_000,
    profiles: Sequence[str] | None = None,
    strategy: st.SearchStrategy[PatientCase] | None = None,
    as_of: date = DEFAULT_AS_OF,
    parameters: Mapping[str, int | float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, CoverageReport]:
    """Draw ``draws`` patients (``patients(ruleset=ruleset)`` by default) and count, per profile, the active
    rules each fires.

    Every drawn patient is evaluated under each profile in ``profiles`` (all the ruleset's profiles by
    default), with the deployment's ``parameters`` (values for parameters without a default make their
    rules active). Returns one :class:`CoverageReport` per profile; ``seconds`` is the time of the whole run.
    """
    chosen = list(profiles or ruleset.manifest.profiles)
    engines = {p: Engine(ruleset, profile=p, backend="python", parameters=parameters) for p in chosen}
    reports = {
        p: CoverageReport(p, 0, tuple(sorted(r.ref for r in engine.program.rules if in_effect(r, as_of))))
        for p, engine in engines.items()
    }
    start = time.perf_counter()

    @settings(
        max_examples=draws,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy if strategy is not None else patients(as_of=as_of, ruleset=ruleset))
    def run(patient: PatientCase) -> None:
        for profile, engine in engines.items():
            report = reports[profile]
            assessment = engine.evaluate(patient, as_of=as_of, timestamp=False)
            report.draws += 1
            report.fired.update({entry.rule for entry in assessment.trace if entry.status == "fired"})
        if progress is not None:
            progress(reports[chosen[0]].draws)

    run()
    elapsed = time.perf_counter() - start
    for report in reports.values():
        report.seconds = elapsed
    return reports


def format_report(reports: dict[str, CoverageReport], *, timing: bool = True) -> str:
    """A plain-text summary: per profile, rules fired out of active rules, and the ones never fired; then
    the wall-clock time of the run (``timing=False`` leaves it out, for output that never changes)."""
    lines = []
    for report in reports.values():
        lines.append(f"{report.profile}: {report.ratio()} active rules fired by {report.draws} patients")
        lines.extend(f"  never fired: {ref}" for ref in report.never_fired)
    if timing and reports:
        lines.append(f"{next(iter(reports.values())).seconds:.1f} s (draws and evaluations under every profile)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from ..ruleset.loader import load_ruleset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--draws", type=int, default=10_000, help="patients to draw (default 10000)")
    parser.add_argument("--ruleset", default=None, help="ruleset folder (default: the bundled ruleset)")
    parser.add_argument("--profile", action="append", help="profile to measure (repeatable; default: all)")
    parser.add_argument("--pathway", help="draw only patients(pathway=PATHWAY)")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a deployment's parameter value"
    )
    parser.add_argument("--counts", action="store_true", help="also print how many patients fired each rule")
    parser.add_argument("--no-time", action="store_true", help="leave the wall-clock time out of the report")
    args = parser.parse_args(argv)
    from pathlib import Path

    ruleset = load_ruleset(Path(args.ruleset) if args.ruleset else None)
    strategy = patients(pathway=args.pathway, ruleset=ruleset) if args.pathway else None
    parameters: dict[str, int | float] = {}
    for item in args.param:
        name, _, value = item.partition("=")
        parameters[name] = float(value) if "." in value else int(value)
    reports = rule_coverage(
        ruleset, draws=args.draws, profiles=args.profile, strategy=strategy, parameters=parameters or None
    )
    print(format_report(reports, timing=not args.no_time))
    if args.counts:
        for report in reports.values():
            print(f"\n{report.profile}: patients firing each active rule")
            for ref in sorted(report.active, key=lambda r: (report.fired[r], r)):
                print(f"  {report.fired[ref]:6d}  {ref}")
    return 1 if any(r.never_fired for r in reports.values()) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
