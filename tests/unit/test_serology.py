"""I3: ANA >= 1:160 or positive anti-dsDNA within 6 calendar months before the screening date."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import concept, observation, record

ANA_TITER = "5048-4"
ANA_PRESENCE = "8061-4"
DSDNA = "5130-0"
DSDNA_IFA = "11013-0"


def ana(when: str = "2026-05-01", **value: Any) -> dict[str, Any]:
    return observation(ANA_TITER, when, id="ana", **value)


def dsdna(when: str = "2026-05-01", **value: Any) -> dict[str, Any]:
    return observation(DSDNA, when, id="dsdna", unit="IU/mL", **value)


@pytest.mark.parametrize(
    "value",
    [
        {"string": "1:320"},
        {"string": "1/320"},
        {"string": "Positive 1:640"},
        {"string": ">1:1280"},
        {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 320}}},
        {"value": 320, "unit": "{titer}"},
        {"value": 160, "unit": None},  # exactly at the threshold
    ],
    ids=["colon", "slash", "positive-text", "lower-bound", "ratio", "quantity-titer", "edge-160"],
)
def test_ana_titer_at_or_above_160_passes_in_every_encoding(evaluate, value):
    res = evaluate("I3", record(ana(**value)))
    assert res.outcome is Outcome.PASS
    assert res.evidence == ("Observation/ana",)
    assert "2026-05-01" in res.reason


@pytest.mark.parametrize(("status", "said"), [("preliminary", "ANA 1:320 (preliminary) on 2026-05-01"),
                                              ("final", "ANA 1:320 on 2026-05-01")])
def test_preliminary_ana_is_used_and_said(evaluate, status, said):
    # criteria-codes.md 0.2: "preliminary -> use but say so".
    res = evaluate("I3", record(ana(string="1:320", status=status)))
    assert res.outcome is Outcome.PASS
    assert said in res.reason


def test_ana_1_80_with_negative_dsdna_fails(evaluate):
    res = evaluate("I3", record(ana(string="1:80"), dsdna(value=12, high=30)))
    assert res.outcome is Outcome.FAIL
    assert "1:80" in res.reason and "negative" in res.reason
    assert set(res.evidence) == {"Observation/ana", "Observation/dsdna"}


def test_ana_1_80_without_dsdna_is_unknown(evaluate):
    res = evaluate("I3", record(ana(string="1:80")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.next_step and "anti-dsDNA" in res.next_step


def test_ana_titer_upper_bound_below_threshold_counts_as_below(evaluate):
    res = evaluate("I3", record(ana(string="Negative <1:80"), dsdna(value=3, high=30)))
    assert res.outcome is Outcome.FAIL


def test_ana_titer_upper_bound_straddling_threshold_is_unknown(evaluate):
    res = evaluate("I3", record(ana(string="<1:320"), dsdna(value=3, high=30)))
    assert res.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    "value",
    [
        {"string": "Negative at 1:160 dilution", "interpretation": "NEG"},
        {"string": "Not detected at 1:160"},
        {"string": "Negative (screened at 1:80)"},
    ],
    ids=["negative-at-dilution", "not-detected-at-dilution", "negative-screen"],
)
def test_a_negative_ana_is_not_read_as_the_dilution_it_was_screened_at(evaluate, value):
    """"Negative at 1:160" says the serum did not react at 1:160: below the threshold, not a 1:160 titer."""
    res = evaluate("I3", record(ana(**value), dsdna(value=3, high=9)))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "(negative)" in res.reason


def test_a_titer_at_the_threshold_the_laboratory_flags_normal_is_unknown(evaluate):
    res = evaluate("I3", record(ana(string="1:160", interpretation="N"), dsdna(value=3, high=9)))
    assert res.outcome is Outcome.UNKNOWN
    assert "flagged normal/negative by the laboratory" in res.reason


@pytest.mark.parametrize("unit", [None, "ratio"], ids=["no-unit", "ratio"])
def test_an_immunoassay_index_is_not_a_titer(evaluate, unit):
    """47383-5 (ANA by immunoassay) 4.2 with a reference limit of 1.0: a positive screen, no titer."""
    index = observation("47383-5", "2026-05-01", id="ana", value=4.2, unit=unit, high=1.0, interpretation="H")
    res = evaluate("I3", record(index, dsdna(value=3, high=9)))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "without a titer" in res.reason


def test_a_titer_sent_as_a_bare_number_on_a_titer_code_is_read(evaluate):
    assert evaluate("I3", record(ana(string="320"))).outcome is Outcome.PASS
    assert evaluate("I3", record(ana(value=320, unit="ratio"))).outcome is Outcome.PASS
    assert evaluate("I3", record(ana(string="80"), dsdna(value=3, high=9))).outcome is Outcome.FAIL


def test_dsdna_against_a_range_sent_only_as_text(evaluate):
    positive = dsdna(value=85)
    positive["referenceRange"] = [{"text": "<30 IU/mL"}]
    assert evaluate("I3", record(positive)).outcome is Outcome.PASS
    negative = dsdna(value=12)
    negative["referenceRange"] = [{"text": "<30 IU/mL"}]
    assert evaluate("I3", record(ana(string="1:80"), negative)).outcome is Outcome.FAIL


def test_ana_presence_only_positive_is_unknown(evaluate):
    obs = observation(ANA_PRESENCE, "2026-05-01", id="ana", coded=concept("snomed", "10828004", "Positive"))
    res = evaluate("I3", record(obs))
    assert res.outcome is Outcome.UNKNOWN
    assert "without a titer" in res.reason
    assert res.next_step and "titer" in res.next_step


def test_ana_presence_positive_with_positive_dsdna_passes(evaluate):
    presence = observation(ANA_PRESENCE, "2026-05-01", string="Positive")
    res = evaluate("I3", record(presence, dsdna(value=85, high=30)))
    assert res.outcome is Outcome.PASS
    assert res.evidence == ("Observation/dsdna",)


def test_ana_negative_presence_and_negative_dsdna_fail(evaluate):
    negative = concept("snomed", "260385009", "Negative")
    presence = observation(ANA_PRESENCE, "2026-05-01", id="ana", coded=negative)
    res = evaluate("I3", record(presence, dsdna(value=5, high=30)))
    assert res.outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("value", "extra", "expected"),
    [
        (31, {"high": 30}, Outcome.PASS),  # above the lab's reference range
        (30, {"high": 30}, Outcome.FAIL),  # at the high limit is within range
        (12, {"interpretation": "H"}, Outcome.PASS),  # the lab's flag, no range
        (12, {"interpretation": "POS"}, Outcome.PASS),
        (90, {"high": 30, "interpretation": "N"}, Outcome.FAIL),  # the lab's verdict outranks the range
        (40, {"high": 30, "interpretation": "IND"}, Outcome.UNKNOWN),
        (40, {}, Outcome.UNKNOWN),  # a number without range or flag is not interpretable
    ],
)
def test_dsdna_positivity_comes_from_the_lab(evaluate, value, extra, expected):
    res = evaluate("I3", record(ana(string="1:40"), dsdna(value=value, **extra)))
    assert res.outcome is expected


def test_dsdna_ifa_titer_uses_the_crithidia_cut_off(evaluate):
    pos = observation(DSDNA_IFA, "2026-05-01", id="ifa", string="1:10")
    assert evaluate("I3", record(pos)).outcome is Outcome.PASS
    neg = observation(DSDNA_IFA, "2026-05-01", string="<1:10")
    assert evaluate("I3", record(ana(string="1:40"), neg)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2025-12-01", Outcome.PASS),  # 6 calendar months before 2026-06-01 (182 days): inside
        ("2025-11-30", Outcome.UNKNOWN),  # 183 days: outside the window
        ("2026-06-01", Outcome.PASS),  # the screening day itself
        ("2026-06-02", Outcome.UNKNOWN),  # after the screening date: ignored
    ],
)
def test_six_calendar_month_window(evaluate, when, expected):
    res = evaluate("I3", record(ana(when=when, string="1:640")), as_of=date(2026, 6, 1))
    assert res.outcome is expected
    if expected is Outcome.UNKNOWN:
        assert "No ANA" in res.reason and "2025-12-01" in res.reason


def test_one_high_titer_in_the_window_is_enough(evaluate):
    older_high = observation(ANA_TITER, "2026-01-10", id="high", string="1:640")
    newer_low = observation(ANA_TITER, "2026-05-10", string="1:80")
    res = evaluate("I3", record(older_high, newer_low))
    assert res.outcome is Outcome.PASS
    assert res.evidence == ("Observation/high",)
    assert res.details["ana"] == "met"
