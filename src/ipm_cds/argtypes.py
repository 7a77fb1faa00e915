"""Argument types shared by the command-line tools (``ipm-cds``, ``ipm-cds batch``, ``ipm-cds serve``)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path


def date_arg(text: str) -> date:
    """``YYYY-MM-DD`` as a date, or a usage error naming the text."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parameter_arg(text: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` with a number (an int when it reads as one, else a float), or a usage error."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"parameter value must be a number: {text!r}")


BACKEND_CHOICES = ("auto", "durable", "python")
BACKEND_HELP = (
    "auto (default): durable-rules where it is installed and importable, the plain-Python backend otherwise "
    "(Python 3.13+, or no C compiler at install); the assessment's provenance names the backend that ran. "
    "durable or python: that backend, or an error"
)


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """The ``--backend`` option every evaluating command shares: auto by default."""
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help=BACKEND_HELP)


def add_engine_options(
    parser: argparse.ArgumentParser,
    *,
    ruleset_help: str,
    as_of_help: str | None = None,
    param_help: str = "override a parameter (repeatable)",
) -> None:
    """What an engine is built from, as every evaluating command takes it: ``--ruleset``, ``--profile``,
    ``--backend`` and ``--param`` (repeatable); with ``as_of_help``, ``--as-of`` too, after ``--ruleset``."""
    parser.add_argument("--ruleset", type=Path, default=None, help=ruleset_help)
    if as_of_help is not None:
        parser.add_argument("--as-of", type=date_arg, default=None, help=as_of_help)
    parser.add_argument("--profile", default=None, help="profile, e.g. cms_lcd or society_consensus")
    add_backend_option(parser)
    parser.add_argument(
        "--param", type=parameter_arg, action="append", default=[], metavar="NAME=VALUE", help=param_help
    )
