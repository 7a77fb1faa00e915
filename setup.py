"""Build hook: ship the bundled ruleset inside the installed package.

The canonical rule files live at the repository's top level in ``rules/`` so that rule authors find
them where the design card puts them. A plain (non-editable) ``pip install .`` copies them into
``ipm_cds/bundled/`` inside the built package; an editable install reads them from ``rules/``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithRules(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "rules"
        target = Path(self.build_lib) / "ipm_cds" / "bundled"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithRules})
