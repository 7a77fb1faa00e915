"""Rule coverage of ``ipm_cds.testing.strategies.patients``: the active rules N drawn patients never fire.

    .venv/bin/python benchmarks/rule_coverage.py                  # 10,000 draws, every profile
    .venv/bin/python benchmarks/rule_coverage.py --draws 2000 --counts
    .venv/bin/python benchmarks/rule_coverage.py --pathway sij --profile cms_lcd --draws 500 --counts

The draw is deterministic (hypothesis ``derandomize=True``, no example database, generate phase only):
the same code, ruleset and hypothesis version give the same numbers on every run. Each patient is
evaluated under every profile of the ruleset (plain-Python backend). A rule counts as fired when an
assessment's trace shows it ``fired`` (not ``blocked``); active means active under that profile with the
parameter values it sets (rules that read a parameter without a value never run, and are not counted).
Exit status 1 when some active rule was never fired. The work is ``ipm_cds.testing.coverage``.
"""

from __future__ import annotations

import sys

from ipm_cds.testing.coverage import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
