"""Results of one day are settled the same whatever order the input gives them in (and whatever their ids).

A past note: "two eGFRs on one day with values 20 and 40 gave I4 pass". The pick depended on resource ids
(the latest day, then the larger id) and on time-stamp precision (a timed result "won" over a date-only one
of the same day). Now a stated later time decides (a repeat draw); results no time orders are settled by
value: the worse one is shown, and results on both sides of a threshold make the criterion unknown.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from fhirscreen.criteria.base import CriterionResult, Outcome
from tests.builders import observation, patient, record

EGFR_2021 = "98979-8"
EGFR_2009 = "62238-1"
CREAT = "2160-0"
UCUM_EGFR = "mL/min/{1.73_m2}"
PATIENT = patient(birth="1971-01-01", gender="female")

Evaluate = Callable[..., CriterionResult]


def every_order(evaluate: Evaluate, criterion: str, resources: list[dict[str, Any]]) -> CriterionResult:
    """Evaluate every permutation of the resources: one outcome, reason and evidence set. Then again with
    the ids handed round in reverse (values keep their resources): the same outcome. Returns the first."""
    results = [evaluate(criterion, record(PATIENT, *order)) for order in itertools.permutations(resources)]
    first = results[0]
    for res in results:
        assert (res.outcome, res.reason) == (first.outcome, first.reason)
        assert set(res.evidence) == set(first.evidence)
    ids = [r["id"] for r in resources]
    if len(set(ids)) == len(ids) > 1:
        renamed = [dict(r, id=i) for r, i in zip(resources, reversed(ids), strict=True)]
        for order in itertools.permutations(renamed):
            assert evaluate(criterion, record(PATIENT, *order)).outcome is first.outcome
    return first


# -- I4: eGFR --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when_a", "when_b"),
    [
        ("2026-05-20T09:00:00Z", "2026-05-20T09:00:00Z"),  # the same time
        ("2026-05-20T09:00:00Z", "2026-05-20T11:00:00+02:00"),  # the same instant, other offsets
        ("2026-05-20", "2026-05-20"),  # date only
        ("2026-05-20", "2026-05-20T14:00:00Z"),  # a date-only result cannot be ordered against a timed one
    ],
)
def test_same_day_egfrs_on_both_sides_of_30_are_unknown_in_any_order(
    evaluate: Evaluate, when_a: str, when_b: str
) -> None:
    res = every_order(evaluate, "I4", [
        observation(EGFR_2021, when_a, id="a", value=20, unit=UCUM_EGFR),
        observation(EGFR_2021, when_b, id="b", value=40, unit=UCUM_EGFR),
    ])
    assert res.outcome is Outcome.UNKNOWN
    assert res.reason.startswith("Conflicting kidney results on 2026-05-20, none stated as the later draw")
    assert "eGFR 20 mL/min/1.73 m2" in res.reason and "eGFR 40 mL/min/1.73 m2" in res.reason
    assert set(res.evidence) == {"Observation/a", "Observation/b"}
    assert res.next_step and "which same-day result stands" in res.next_step


@pytest.mark.parametrize(("low", "high", "expected"), [(21, 25, Outcome.FAIL), (35, 60, Outcome.PASS)])
def test_same_day_egfrs_on_one_side_decide_and_show_the_lower(
    evaluate: Evaluate, low: float, high: float, expected: Outcome
) -> None:
    res = every_order(evaluate, "I4", [
        observation(EGFR_2021, "2026-05-20", id="a", value=high, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20", id="b", value=low, unit=UCUM_EGFR),
    ])
    assert res.outcome is expected
    assert f"eGFR {low} mL/min/1.73 m2" in res.reason
    assert res.details["egfr"] == low


def test_a_stated_later_draw_wins_in_any_order(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I4", [
        observation(EGFR_2021, "2026-05-20T08:00:00Z", id="a", value=20, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20T14:00:00Z", id="b", value=40, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20T10:00:00-02:00", id="c", value=22, unit=UCUM_EGFR),  # 12:00Z
    ])
    assert res.outcome is Outcome.PASS and res.details["egfr"] == 40


def test_the_preferred_equation_still_wins_over_another_of_the_same_day(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I4", [
        observation(EGFR_2009, "2026-05-20", id="a", value=40, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20", id="b", value=25, unit=UCUM_EGFR),
    ])
    assert res.outcome is Outcome.FAIL and res.details["egfr"] == 25


def test_two_egfr_components_of_one_panel_on_both_sides_are_unknown(evaluate: Evaluate) -> None:
    panel = observation("24362-6", "2026-05-20", id="panel", display="Renal function panel")
    panel["component"] = [
        {"code": {"coding": [{"system": "http://loinc.org", "code": EGFR_2021}], "text": "eGFR lab A"},
         "valueQuantity": {"value": 20, "unit": UCUM_EGFR}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": EGFR_2021}], "text": "eGFR lab B"},
         "valueQuantity": {"value": 40, "unit": UCUM_EGFR}},
    ]
    res = evaluate("I4", record(PATIENT, panel))
    panel["component"].reverse()
    again = evaluate("I4", record(PATIENT, panel))
    assert res.outcome is again.outcome is Outcome.UNKNOWN
    assert res.reason == again.reason
    assert res.evidence == ("Observation/panel",)


def test_same_day_egfr_and_creatinine_the_egfr_decides_in_any_order(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I4", [
        observation(EGFR_2021, "2026-05-20", id="g", value=25, unit=UCUM_EGFR),
        observation(CREAT, "2026-05-20T10:00:00Z", id="cr", value=0.8, unit="mg/dL"),
    ])
    assert res.outcome is Outcome.FAIL and res.details["computed_from_creatinine"] is False


def test_conflicting_same_day_egfrs_are_not_settled_by_a_creatinine_of_that_day(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I4", [
        observation(EGFR_2021, "2026-05-20", id="a", value=20, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20", id="b", value=40, unit=UCUM_EGFR),
        observation(CREAT, "2026-05-20", id="cr", value=0.8, unit="mg/dL"),
    ])
    assert res.outcome is Outcome.UNKNOWN and "Conflicting" in res.reason


def test_same_day_creatinines_on_both_sides_are_unknown(evaluate: Evaluate) -> None:
    # Female, 55: 0.8 mg/dL gives about 85, 2.6 mg/dL about 21.
    res = every_order(evaluate, "I4", [
        observation(CREAT, "2026-05-20", id="a", value=0.8, unit="mg/dL"),
        observation(CREAT, "2026-05-20", id="b", value=2.6, unit="mg/dL"),
    ])
    assert res.outcome is Outcome.UNKNOWN
    assert "Conflicting kidney results" in res.reason and "creatinine 2.6 mg/dL" in res.reason
    assert set(res.evidence) == {"Observation/a", "Observation/b"}


def test_same_day_creatinines_on_one_side_use_the_higher(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I4", [
        observation(CREAT, "2026-05-20", id="a", value=0.8, unit="mg/dL"),
        observation(CREAT, "2026-05-20", id="b", value=1.0, unit="mg/dL"),
    ])
    assert res.outcome is Outcome.PASS and "creatinine 1 mg/dL" in res.reason


def test_a_newer_creatinine_pair_in_conflict_after_an_older_egfr_is_unknown(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I4", [
        observation(EGFR_2021, "2026-05-01", id="g", value=70, unit=UCUM_EGFR),
        observation(CREAT, "2026-05-20", id="a", value=0.8, unit="mg/dL"),
        observation(CREAT, "2026-05-20", id="b", value=2.6, unit="mg/dL"),
    ])
    assert res.outcome is Outcome.UNKNOWN
    assert res.reason.startswith("eGFR 70 mL/min/1.73 m2 on 2026-05-01") and "Conflicting" in res.reason


# -- I6: recorded SLEDAI-2K totals ---------------------------------------------------------------------


def sledai(value: int, when: str, id: str) -> dict[str, Any]:
    display = "SLEDAI-2K total score"
    return observation("SLEDAI", when, system="urn:local", id=id, value=value, display=display)


def test_same_day_sledai_totals_on_both_sides_of_6_are_unknown(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I6", [sledai(4, "2026-05-20", "a"), sledai(8, "2026-05-20", "b")])
    assert res.outcome is Outcome.UNKNOWN
    assert res.reason.startswith("Conflicting SLEDAI-2K totals recorded on 2026-05-20")
    assert set(res.evidence) == {"Observation/a", "Observation/b"}


def test_same_day_sledai_totals_on_one_side_show_the_lower(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I6", [sledai(10, "2026-05-20", "a"), sledai(6, "2026-05-20", "b")])
    assert res.outcome is Outcome.PASS and res.details["sledai_2k"] == 6


def test_a_later_sledai_total_that_day_wins(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "I6", [
        sledai(4, "2026-05-20T09:00:00Z", "a"), sledai(8, "2026-05-20T15:00:00Z", "b"),
    ])
    assert res.outcome is Outcome.PASS and res.details["sledai_2k"] == 8


# -- E2: a low latest eGFR raises the renal-replacement question -----------------------------------------


def test_e2_same_day_low_and_normal_egfr_asks_in_any_order(evaluate: Evaluate) -> None:
    res = every_order(evaluate, "E2", [
        observation(EGFR_2021, "2026-05-20", id="a", value=40, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20", id="b", value=10, unit=UCUM_EGFR),
    ])
    assert res.outcome is Outcome.UNKNOWN and "Latest eGFR 10" in res.reason


# -- E13: pregnancy evidence of one day ------------------------------------------------------------------


def test_e13_same_day_positive_hcg_and_pregnancy_status_decide_alike_in_any_order(evaluate: Evaluate) -> None:
    # 100 days before the screening date: a positive hCG alone is an open question (older than 30 days),
    # a "pregnant" status still describes today (300 days). The longer-lasting evidence is the one read.
    hcg = observation("2106-3", "2026-02-21", id="hcg", interpretation="POS")
    status = observation(
        "82810-3", "2026-02-21", id="status",
        coded={"coding": [{"system": "http://snomed.info/sct", "code": "77386006", "display": "Pregnant"}]},
    )
    res = every_order(evaluate, "E13", [hcg, status])
    assert res.outcome is Outcome.FAIL


def test_e13_a_positive_and_a_negative_hcg_of_one_day_are_a_conflict(evaluate: Evaluate) -> None:
    positive = observation("2106-3", "2026-05-20", id="hcg-pos", interpretation="POS")
    negative = observation("2106-3", "2026-05-20", id="hcg-neg", interpretation="NEG")
    res = every_order(evaluate, "E13", [positive, negative])
    assert res.outcome is Outcome.UNKNOWN
    assert "conflicting pregnancy results on 2026-05-20" in res.reason
    assert {"Observation/hcg-pos", "Observation/hcg-neg"} <= set(res.evidence)
    assert "Repeat the pregnancy test" in (res.next_step or "")


def test_e13_a_pregnant_and_a_not_pregnant_status_of_one_day_are_a_conflict(evaluate: Evaluate) -> None:
    snomed = "http://snomed.info/sct"
    pregnant = observation(
        "82810-3", "2026-05-20", id="yes", coded={"coding": [{"system": snomed, "code": "77386006"}]}
    )
    not_pregnant = observation(
        "82810-3", "2026-05-20", id="no", coded={"coding": [{"system": snomed, "code": "60001007"}]}
    )
    res = every_order(evaluate, "E13", [pregnant, not_pregnant])
    assert res.outcome is Outcome.UNKNOWN and "conflicting" in res.reason


def test_e13_a_later_timed_result_of_the_day_settles_it_as_a_repeat_would(evaluate: Evaluate) -> None:
    early_positive = observation("2106-3", "2026-05-20T08:00:00Z", id="first", interpretation="POS")
    later_negative = observation("2106-3", "2026-05-20T15:30:00Z", id="repeat", interpretation="NEG")
    res = every_order(evaluate, "E13", [early_positive, later_negative])
    assert res.outcome is Outcome.PASS and "Observation/repeat" in res.evidence
    early_negative = observation("2106-3", "2026-05-20T08:00:00Z", id="first", interpretation="NEG")
    later_positive = observation("2106-3", "2026-05-20T15:30:00Z", id="repeat", interpretation="POS")
    assert every_order(evaluate, "E13", [early_negative, later_positive]).outcome is Outcome.FAIL


def test_e13_a_delivery_on_the_day_of_a_positive_hcg_still_ends_the_pregnancy(evaluate: Evaluate) -> None:
    from tests.builders import condition

    positive = observation("2106-3", "2026-05-20", id="hcg", interpretation="POS")
    negative = observation("2106-3", "2026-05-20", id="hcg-neg", interpretation="NEG")
    delivery = condition("http://snomed.info/sct", "19169002", onset="2026-05-20", id="delivery")
    res = every_order(evaluate, "E13", [positive, negative, delivery])
    assert res.outcome is not Outcome.FAIL and "conflicting" not in res.reason
