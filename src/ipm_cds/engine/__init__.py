"""Evaluation: programs, backends, the driver and the Engine facade."""

from .facade import Engine

__all__ = ["Engine"]
