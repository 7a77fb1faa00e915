"""Argument types shared by the command-line tools (``ipm-cds``, ``ipm-cds batch``, ``ipm-cds serve``)."""

from __future__ import annotations

import argparse
from datetime import date


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
