"""JSON text read by the standard library, for what orjson refuses (a BOM, replaced bytes, a huge
document), with orjson's limits on numbers: NaN, Infinity and numbers beyond a double's range are not
JSON numbers (RFC 8259), and read as they are they would pass as values ("eGFR inf", "weight inf kg").
They are read as null, so the element has no value, and the caller says which were."""

from __future__ import annotations

import json
import math
from typing import Any


def loads_finite(text: str) -> tuple[Any, tuple[str, ...]]:
    """``json.loads(text)`` with non-finite numbers read as None, and the literals that were (in order,
    once each). Raises json.JSONDecodeError or RecursionError as ``json.loads`` does."""
    odd: dict[str, None] = {}

    def constant(name: str) -> None:  # NaN, Infinity, -Infinity
        odd[name] = None

    def number(literal: str) -> float | None:
        value = float(literal)
        if math.isfinite(value):
            return value
        odd[literal[:32]] = None
        return None

    def integer(literal: str) -> int | float | None:
        # An integer a double cannot hold (orjson refuses it, and float() of it would overflow later).
        return int(literal) if len(literal) <= 308 else number(literal)

    data = json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    return data, tuple(odd)


def odd_numbers_message(odd: tuple[str, ...]) -> str:
    """The finding's text for the literals ``loads_finite`` read as null: their kinds, never the digits
    (a field may hold anything)."""
    kinds = dict.fromkeys(o if o in _CONSTANTS else "a number beyond a double's range" for o in odd)
    return f"{', '.join(kinds)}: not a JSON number; read as no value"


_CONSTANTS = frozenset({"NaN", "Infinity", "-Infinity"})
