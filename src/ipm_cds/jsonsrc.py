"""Read JSON sent by others (a request body, a token's parts) with errors that speak to the sender.

One parser for every JSON input: pydantic-core's, which :func:`ipm_cds.parse_patient` also uses for JSON
text (and so ``ipm-cds batch``, record by record). Unlike :func:`json.loads` it never recurses in Python
(JSON nested past its limit of about 200 levels is an error with a position, not a ``RecursionError``),
it refuses a number of more than 4,300 digits with a position (not with Python's advice about
``sys.set_int_max_str_digits``), and it refuses lone surrogates (``"\\ud800"``), which no UTF-8 text can
carry on. A UTF-8 byte-order mark at the start is accepted and skipped.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

__all__ = ["UTF8_BOM", "JsonInputError", "parse_json", "strip_bom"]

UTF8_BOM = b"\xef\xbb\xbf"

_LIMITS = {  # the parser's words for its limits, and ours for the sender
    "number out of range": "number too large",
    "recursion limit exceeded": "nested too deeply",
}


class JsonInputError(ValueError):
    """Input that is not JSON (``limit`` False), or JSON past the parser's limits (``limit`` True).

    The message names the line and column, e.g. ``number too large at line 1 column 4302``.
    """

    def __init__(self, message: str, *, limit: bool) -> None:
        super().__init__(message)
        self.limit = limit


def strip_bom(data: bytes) -> bytes:
    """``data`` without a UTF-8 byte-order mark at its start."""
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


def parse_json(data: bytes | str) -> Any:
    """The value of the JSON text ``data``; raises :class:`JsonInputError` with a message for the sender."""
    data = data.removeprefix("\ufeff") if isinstance(data, str) else strip_bom(data)
    try:
        return from_json(data)
    except ValueError as exc:
        message = str(exc)
        for words, ours in _LIMITS.items():
            if message.startswith(words):
                raise JsonInputError(ours + message[len(words) :], limit=True) from None
        raise JsonInputError(message, limit=False) from None
