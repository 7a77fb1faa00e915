"""The version of ipm-cds, read from the installed package's metadata (pyproject.toml is the one place it is
written). A source tree run without installing (``PYTHONPATH=src``) reports ``0+unknown``."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ipm-cds")
except PackageNotFoundError:  # pragma: no cover - only in a source tree that was never installed
    __version__ = "0+unknown"
