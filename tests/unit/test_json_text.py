"""Every output file's JSON text (``report.jsonio.dump_json``): the json module's bytes, however made.

dump_json takes orjson's fast path where it gives the same text and the json module's otherwise; the
golden files pin a few documents, these tests pin the class: numbers of every magnitude, text with
every kind of character, nesting, and what orjson refuses.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from fhirscreen.report.jsonio import dump_json, dump_json_bytes


def json_module_text(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def test_floats_of_every_magnitude_are_written_as_the_json_module_writes_them() -> None:
    rng = random.Random(7)
    values = [0.0, -0.0, 1e-4, 1e-5, 9.99e-5, 2.5e-7, 1e16, 1e22, 1.5e300, 5e-324, 123.456, 60.0]
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 20) for _ in range(2000)]
    document = {"values": values, "one": {"egfr": 59.99999999999999}}
    assert dump_json(document) == json_module_text(document)


def test_text_with_control_quote_backslash_and_non_ascii_characters_is_unchanged() -> None:
    every_control = "".join(chr(c) for c in range(0x20))
    text = f'{every_control} " \\ / é 中 \u2028 \u2029 \x7f 😀 "quoted" \\d'
    document = {"evidence": [text, {text: text}], "empty": {}, "none": [], "nested": [[], [{}], None]}
    assert dump_json(document) == json_module_text(document)


def test_integers_beyond_64_bits_fall_back_to_the_json_module() -> None:
    document = {"big": 2**70, "small": -(2**64), "bool": True}
    assert dump_json(document) == json_module_text(document)


def test_keys_that_are_not_text_fall_back_to_the_json_module() -> None:
    document = {1: "one", 2.5: "two and a half", None: "none", False: "no"}
    assert dump_json(document) == json_module_text(document)


def test_unpaired_surrogates_fall_back_to_the_json_module() -> None:
    document = {"text": "broken \ud800 text"}
    assert dump_json(document) == json_module_text(document)


def test_a_small_float_in_text_only_costs_the_slow_path() -> None:
    document = {"note": "a titer of 1e-5 written as text", "value": 0.00001}
    assert dump_json(document) == json_module_text(document)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_written_as_valid_json(value: float) -> None:
    """The one deliberate difference: the json module writes NaN/Infinity, which no JSON reader
    downstream (a FHIR server, jq, a browser) accepts; these outputs say null."""
    assert json.loads(dump_json({"value": value})) == {"value": None}


@pytest.mark.parametrize(
    "document",
    [
        {"evidence": ["é 中 😀 \u2028", {"k": [1, 2.5, None, True]}]},  # orjson's path
        {"value": 0.00001},  # a small float: the json module's path
        {"big": 2**70},  # refused by orjson: the json module's path
    ],
    ids=["fast", "small-float", "big-integer"],
)
def test_the_bytes_written_to_stdout_are_the_text_encoded(document: dict[str, Any]) -> None:
    """``fhirscreen screen --format json`` writes ``dump_json_bytes`` (no text copy of a large document):
    the same bytes as the text the files hold."""
    assert dump_json_bytes(document) == dump_json(document).encode("utf-8")
    assert dump_json_bytes(document).endswith(b"}\n")
