from __future__ import annotations

from typing import Any

import pytest

from fhirscreen.fhir.values import (
    Quantity,
    is_below_range,
    parse_quantity,
    polarity,
    quantity_of,
    range_of_text,
    reference_range,
    titer_of,
    titer_quantity,
)
from tests.builders import concept, observation


def ratio(num: float, den: float, **den_extra: Any) -> dict[str, Any]:
    return {"numerator": {"value": num}, "denominator": {"value": den, **den_extra}}


# ------------------------------------------------------------------------------------------ quantities


def test_value_quantity_keeps_comparator_and_unit():
    q = quantity_of(observation("33914-3", value=60, unit="mL/min/{1.73_m2}", comparator=">"))
    assert q == Quantity(60.0, ">", "mL/min/{1.73_m2}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (">60", Quantity(60.0, ">", "")),
        ("<0.2", Quantity(0.2, "<", "")),
        ("1,234", Quantity(1234.0, None, "")),
        ("≥ 90 mL/min/1.73m2", Quantity(90.0, ">=", "mL/min/1.73m2")),
        ("<=5", Quantity(5.0, "<=", "")),
        ("42", Quantity(42.0, None, "")),
        ("1:320", None),  # a titer, not the number 1
        ("1/320", None),
        ("Positive", None),
        ("3+", None),  # dipstick grade
        ("", None),
    ],
)
def test_numeric_strings(text, expected):
    assert parse_quantity(text) == expected
    assert quantity_of(observation("x", string=text)) == expected


def test_no_value_is_none():
    assert quantity_of(observation("x")) is None
    assert quantity_of({"valueQuantity": {"unit": "mg"}}) is None


@pytest.mark.parametrize(
    ("q", "threshold", "at_least"),
    [
        (Quantity(30, None, ""), 30, True),
        (Quantity(29.9, None, ""), 30, False),
        (Quantity(60, ">", ""), 30, True),
        (Quantity(30, ">=", ""), 30, True),
        (Quantity(20, ">", ""), 30, None),  # >20 may be 25 or 40
        (Quantity(30, "<", ""), 30, False),
        (Quantity(15, "<", ""), 30, False),
        (Quantity(60, "<", ""), 30, None),  # <60 may be 25 or 45
        (Quantity(30, "<=", ""), 30, None),  # could be exactly 30
        (Quantity(29, "<=", ""), 30, False),
    ],
)
def test_comparators_decide_only_when_the_bound_settles_the_threshold(q, threshold, at_least):
    assert q.at_least(threshold) is at_least


def test_strictly_above_with_bounds():
    assert Quantity(10, ">", "").above(10) is True
    assert Quantity(10, ">=", "").above(10) is None
    assert Quantity(10, None, "").above(10) is False
    assert Quantity(10, "<=", "").above(10) is False


# -------------------------------------------------------------------------------------------- titers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:320", 320),
        ("1/320", 320),
        ("1 : 320", 320),
        ("Positive 1:640", 640),
        ("POS 1:160 speckled", 160),
        ("1:160 and 1:640", 640),
        (">1:1280", 1280),
        ("<1:40", None),  # an upper bound is not a titer
        ("Negative", None),
        ("12.5 U/mL", None),
    ],
)
def test_titer_strings(text, expected):
    assert titer_of(observation("5048-4", string=text)) == expected


def test_titer_upper_bound_keeps_its_comparator():
    assert titer_quantity(observation("5048-4", string="Negative <1:80")) == Quantity(80.0, "<", "{titer}")


def test_titer_from_value_ratio():
    assert titer_of(observation("5048-4", valueRatio=ratio(1, 320))) == 320
    q = titer_quantity(observation("5048-4", valueRatio=ratio(1, 1280, comparator=">")))
    assert q == Quantity(1280.0, ">", "{titer}")


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (320, "{titer}", 320),
        (160, None, 160),
        (80, "titer", 80),
        (0.00625, "{titer}", 160),  # the fraction 1/160
        (2.5, "Index", None),  # immunoassay index, not a dilution
        (45, "U/mL", None),
    ],
)
def test_titer_from_value_quantity(value, unit, expected):
    assert titer_of(observation("5048-4", value=value, unit=unit)) == expected


# ------------------------------------------------------------------------------------------- polarity


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("10828004", "positive"),
        ("260373001", "positive"),
        ("260385009", "negative"),
        ("260415000", "negative"),
        ("82334004", "indeterminate"),
    ],
)
def test_polarity_from_snomed_value(code, expected):
    assert polarity(observation("8061-4", coded=concept("snomed", code))) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Positive", "positive"),
        ("Reactive", "positive"),
        ("Detected", "positive"),
        ("Positive 1:640", "positive"),
        ("Negative", "negative"),
        ("Non-reactive", "negative"),
        ("Nonreactive", "negative"),
        ("Not detected", "negative"),
        ("Negative <1:80", "negative"),
        ("Indeterminate", "indeterminate"),
        ("Equivocal", "indeterminate"),
        ("Borderline", "indeterminate"),
        ("see comment", None),
    ],
)
def test_polarity_from_strings(text, expected):
    assert polarity(observation("8061-4", string=text)) == expected


def test_polarity_from_coded_text_without_known_code():
    coded = {"coding": [{"system": "http://example.org/local", "code": "x1", "display": "Non-Reactive"}]}
    assert polarity(observation("5196-1", coded=coded)) == "negative"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("POS", "positive"), ("DET", "positive"), ("H", "positive"), ("HH", "positive"), ("A", "positive"),
        ("AA", "positive"), ("NEG", "negative"), ("ND", "negative"), ("N", "negative"),
        ("IND", "indeterminate"), ("E", "indeterminate"), ("L", None),
    ],
)
def test_polarity_from_interpretation(code, expected):
    assert polarity(observation("5130-0", value=50, unit="IU/mL", interpretation=code)) == expected


def test_interpretation_outranks_number_against_range():
    # The lab says equivocal although the number is above the high limit: the lab's verdict stands.
    obs = observation("5130-0", value=50, unit="IU/mL", high=30, interpretation="IND")
    assert polarity(obs) == "indeterminate"


@pytest.mark.parametrize(
    ("value", "comparator", "expected"),
    [
        (31, None, "positive"),
        (30, None, "negative"),  # at the high limit is within range
        (4, "<", "negative"),
        (200, ">", "positive"),
        (50, "<", None),  # "<50" against high 30 cannot decide
    ],
)
def test_polarity_from_number_against_reference_high(value, comparator, expected):
    obs = observation("5130-0", value=value, unit="IU/mL", comparator=comparator, high=30)
    assert polarity(obs) == expected


def test_number_in_a_borderline_band_is_indeterminate():
    obs = observation("5130-0", value=50, unit="IU/mL", high=30)
    obs["referenceRange"][0]["text"] = "<30 negative; 30-75 borderline; >75 positive"
    assert polarity(obs) == "indeterminate"


def test_number_without_range_or_flag_has_no_polarity():
    assert polarity(observation("5130-0", value=50, unit="IU/mL")) is None


# ----------------------------------------------------------------------------------- reference ranges


def test_reference_range_prefers_the_general_range():
    obs = observation("4485-9", value=80, unit="mg/dL")
    obs["referenceRange"] = [
        {"low": {"value": 70}, "high": {"value": 150}, "appliesTo": [concept("snomed", "248153007")]},
        {"low": {"value": 90}, "high": {"value": 180}},
    ]
    assert reference_range(obs) == (90.0, 180.0)


def test_reference_range_absent():
    assert reference_range(observation("4485-9", value=80)) == (None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<30 IU/mL", (None, 30.0)),
        ("<= 9", (None, 9.0)),
        ("90-180 mg/dL", (90.0, 180.0)),
        ("Adult: 0.6 to 1.2 mg/dL", (0.6, 1.2)),
        (">60", (60.0, None)),
        ("Negative <20; Equivocal 20-25; Positive >25", (None, 20.0)),  # the first band is normal
        ("See comment", (None, None)),
        ("1:40", (None, None)),  # a titer is not a range of numbers
        ("<1:40", (None, None)),
    ],
)
def test_a_range_written_as_text_is_read(text, expected):
    assert range_of_text(text) == expected
    obs = observation("4485-9", value=80, unit="mg/dL")
    obs["referenceRange"] = [{"text": text}]
    assert reference_range(obs) == expected


def test_a_range_with_numbers_is_not_read_from_its_text():
    obs = observation("4485-9", value=80, unit="mg/dL", low=90, high=180)
    obs["referenceRange"][0]["text"] = "<30"
    assert reference_range(obs) == (90.0, 180.0)


def test_below_range_from_low_limit_or_flag():
    assert is_below_range(observation("4485-9", value=80, unit="mg/dL", low=90, high=180)) is True
    assert is_below_range(observation("4485-9", value=90, unit="mg/dL", low=90, high=180)) is False
    assert is_below_range(observation("4485-9", value=80, unit="mg/dL", interpretation="L")) is True
    assert is_below_range(observation("4485-9", value=80, unit="mg/dL")) is None
