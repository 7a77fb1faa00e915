"""``ipm-cds report``: the page renders for every example patient, and a headless browser draws its charts.

The screenshot test opens the page in Debian's chromium (installed by .ci/run) with networking off and
counts the pixels of each chart's line colour: the pain line (matplotlib's first colour) and the MME line
must be drawn, and a patient without a series must show neither. When chromium is missing the test fails,
saying how to install it: it never skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ipm_cds
from ipm_cds.cli import main
from ipm_cds.patientfile import read_patient_document
from ipm_cds.tooling.outcome_report import render_report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "patients").glob("*.yaml"))
AS_OF = date(2026, 4, 15)
PAIN_LINE = (0x1F, 0x77, 0xB4)  # matplotlib's first colour (tab:blue): the first series of a chart
MME_LINE = (0xB5, 0x17, 0x9E)


def _page(ruleset: ipm_cds.Ruleset, engine: ipm_cds.Engine, path: Path) -> str:
    patient = ruleset.parse_patient(read_patient_document(path))
    assessment = engine.evaluate(patient, as_of=AS_OF)
    return render_report(patient, assessment, ruleset.code_infos()["outcome_measure"], AS_OF)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_report_renders_for_every_example(path: Path, ruleset: ipm_cds.Ruleset, python_engine: ipm_cds.Engine) -> None:
    page = _page(ruleset, python_engine, path)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # self-contained: no script, no stylesheet or image fetched, no external reference of any kind
    assert "<script" not in page
    assert not re.search(r'(?:src|href)\s*=\s*"(?:https?:)?//', page)
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # only in-page clip paths
    document = read_patient_document(path)
    charts = page.count('<div class="chart"')
    if document.get("measurements") or document.get("mme_history"):
        assert charts >= 1 and "<svg" in page
    else:
        assert charts == 0 and "nothing to chart" in page


def test_report_is_deterministic(ruleset: ipm_cds.Ruleset, python_engine: ipm_cds.Engine) -> None:
    path = ROOT / "examples" / "patients" / "rfa_responder.yaml"
    assert _page(ruleset, python_engine, path) == _page(ruleset, python_engine, path)


def test_report_command_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    args = ["report", str(ROOT / "examples" / "patients" / "esi_non_responder.yaml"), "--as-of", "2026-04-15"]
    assert main([*args, "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "outcomes.response.non_responder@" in page and 'id="chart-pain"' in page


def _screenshot(html_path: Path, png: Path, tmp_path: Path) -> Image.Image:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: apt-get install -y chromium (.ci/run does this)"
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}", "--window-size=1200,4000", html_path.as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return Image.open(png).convert("RGB")


def _count(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """Pixels within ``tolerance`` of ``colour`` on every channel."""
    pixels = np.asarray(image, dtype=np.int16)
    return int((np.abs(pixels - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=2).sum())


def test_headless_browser_draws_the_charts(
    ruleset: ipm_cds.Ruleset, python_engine: ipm_cds.Engine, tmp_path: Path
) -> None:
    shots = {}
    for name in ("rfa_responder", "opioid_taper", "cauda_equina"):
        html_path = tmp_path / f"{name}.html"
        html_path.write_text(
            _page(ruleset, python_engine, ROOT / "examples" / "patients" / f"{name}.yaml"), encoding="utf-8"
        )
        shots[name] = _screenshot(html_path, tmp_path / f"{name}.png", tmp_path)
    # the pain line (and the function line, same colour) of the RFA responder is drawn: thousands of pixels
    assert _count(shots["rfa_responder"], PAIN_LINE) > 2000
    # the taper patient's MME step line is drawn
    assert _count(shots["opioid_taper"], MME_LINE) > 1000
    # a patient with no series: no chart, so neither colour (the check can fail)
    assert _count(shots["cauda_equina"], PAIN_LINE) < 50
    assert _count(shots["cauda_equina"], MME_LINE) < 50
