"""``dosing`` remembers what it read per distinct dosage content: look-alike contents (1, 1.0 and True;
-0.0 and 0.0; a tuple where JSON has a list) must never share an answer, whatever order they come in."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from datetime import date
from typing import Any

import pytest

from fhirscreen.criteria import _dosing
from fhirscreen.criteria._dosing import _read_dosing, dosing


def _line(value: Any, frequency: Any = 2) -> dict[str, Any]:
    return {
        "timing": {"repeat": {"frequency": frequency, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": value, "unit": "mg"}}],
    }


LOOK_ALIKES: list[list[Any]] = [
    [_line(1)],
    [_line(1.0)],
    [_line(True)],
    [_line(0.0)],
    [_line(-0.0)],
    [_line(math.nan)],
    [_line(5, frequency=True)],
    [_line(5, frequency=1)],
    [{**_line(5), "doseAndRate": tuple(_line(5)["doseAndRate"])}],  # not JSON: never cached
    [OrderedDict(_line(5))],
]


def _same(a: _dosing.Dosing, b: _dosing.Dosing) -> bool:
    return repr(a) == repr(b)  # NaN doses compare unequal to themselves


@pytest.mark.parametrize("order", [0, 1])
def test_look_alike_dosages_never_share_an_answer(order: int) -> None:
    _dosing._READ.clear()
    cases = LOOK_ALIKES if order == 0 else LOOK_ALIKES[::-1]
    for dosages, administration, anchor in itertools.product(cases, (False, True), (None, date(2026, 1, 5))):
        expected = _read_dosing(dosages, administration=administration, anchor=anchor)
        assert _same(dosing(dosages, administration=administration, anchor=anchor), expected)
        assert _same(dosing(dosages, administration=administration, anchor=anchor), expected)


def test_a_dosage_changed_after_it_was_read_is_read_again() -> None:
    dosages = [_line(10)]
    first = dosing(dosages, administration=False, anchor=None)
    dosages[0]["doseAndRate"][0]["doseQuantity"]["value"] = 20
    second = dosing(dosages, administration=False, anchor=None)
    assert first.dose is not None and second.dose is not None
    assert (first.dose.high, second.dose.high) == (20.0, 40.0)


def test_absurdly_deep_json_is_read_uncached() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    dosages = [{**_line(10), "extension": deep}]
    expected = _read_dosing(dosages, administration=False, anchor=None)
    assert _same(dosing(dosages, administration=False, anchor=None), expected)
