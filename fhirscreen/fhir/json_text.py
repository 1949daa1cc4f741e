"""JSON text read by the standard library, for what orjson refuses (a BOM, replaced bytes, a huge
document), with orjson's limits on numbers: NaN, Infinity and numbers beyond a double's range are not
JSON numbers (RFC 8259), and read as they are they would pass as values ("eGFR inf", "weight inf kg").
They are read as null, so the element has no value, and the caller says which were. So is a nonzero
number too small for a double ("1e-400"): read as it is it would be 0.0, an eGFR of 0 that decides a
criterion. orjson reads such a number as 0.0 without complaint, so a reader that parsed text with
orjson asks ``may_underflow`` (a quick look at the text) whether to read it again with ``loads_finite``."""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A number whose exponent is -100 or lower, or with 100 zeros after its point: the only numbers that may
# be too small for a double. Looked for only when the quick byte tests in ``may_underflow`` find a hint.
_TINY = re.compile(rb"\d[eE]-0*[1-9]\d{2}|\.0{100}")
_TINY_TEXT = re.compile(_TINY.pattern.decode())
# The kind a nonzero literal that a double reads as 0 is said as (never its digits).
TOO_SMALL = "a nonzero number too small for a double (it would read as 0)"


def loads_finite(text: str) -> tuple[Any, tuple[str, ...]]:
    """``json.loads(text)`` with non-finite numbers read as None, and the literals that were (in order,
    once each). Raises json.JSONDecodeError or RecursionError as ``json.loads`` does."""
    odd: dict[str, None] = {}

    def constant(name: str) -> None:  # NaN, Infinity, -Infinity
        odd[name] = None

    def number(literal: str) -> float | None:
        value = float(literal)
        if math.isfinite(value):
            if value or not _nonzero(literal):
                return value
            odd[TOO_SMALL] = None  # underflowed: 1e-400 is not 0
            return None
        odd[literal[:32]] = None
        return None

    def integer(literal: str) -> int | float | None:
        # An integer a double cannot hold (orjson refuses it, and float() of it would overflow later).
        return int(literal) if len(literal) <= 308 else number(literal)

    data = json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    return data, tuple(odd)


def _nonzero(literal: str) -> bool:
    """Whether a JSON number literal has a nonzero digit before its exponent."""
    mantissa = literal.partition("e")[0].partition("E")[0]
    return any(c in "123456789" for c in mantissa)


def may_underflow(text: bytes | str) -> bool:
    """Whether JSON text may hold a nonzero number too small for a double (see the module docstring):
    False for nearly all text after two or three substring tests; True sends it to ``loads_finite``."""
    if isinstance(text, str):
        if "e-" in text or "E-" in text or ".0000000000" in text:
            return _TINY_TEXT.search(text) is not None
        return False
    # An exponent needs a digit before its "e-": words ("creatinine-based" in every eGFR's display) do
    # not send the line to the regular expression, which costs a few microseconds a line.
    for mark in (b"e-", b"E-"):
        at = text.find(mark)
        while at > 0:
            if 48 <= text[at - 1] <= 57:  # an ASCII digit
                return _TINY.search(text) is not None
            at = text.find(mark, at + 2)
    if b".0000000000" in text:
        return _TINY.search(text) is not None
    return False


def odd_numbers_message(odd: tuple[str, ...]) -> str:
    """The finding's text for the literals ``loads_finite`` read as null: their kinds, never the digits
    (a field may hold anything)."""
    kinds = dict.fromkeys(
        o if o in _CONSTANTS or o == TOO_SMALL else "a number beyond a double's range" for o in odd
    )
    what = "not a JSON number a double can hold" if TOO_SMALL in kinds else "not a JSON number"
    return f"{', '.join(kinds)}: {what}; read as no value"


_CONSTANTS = frozenset({"NaN", "Infinity", "-Infinity"})
