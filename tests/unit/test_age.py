from __future__ import annotations

from datetime import date

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import patient, record


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("2008-06-01", Outcome.PASS),  # 18th birthday on the screening date
        ("2008-06-02", Outcome.FAIL),  # one day short of 18
        ("1950-06-02", Outcome.PASS),  # 75 and 364 days: still 75 in completed years
        ("1950-06-01", Outcome.FAIL),  # 76th birthday on the screening date
        ("1990", Outcome.PASS),  # partial date far from the limits decides
        ("2008", Outcome.UNKNOWN),  # could be 17 or 18
        (None, Outcome.UNKNOWN),
    ],
)
def test_age_limits_are_inclusive_in_completed_years(evaluate, birth, expected):
    res = evaluate("I1", record(patient(birth=birth)), as_of=date(2026, 6, 1))
    assert res.outcome is expected
    assert res.evidence == ("Patient/p1",)


def test_deceased_patient_is_never_a_candidate(evaluate):
    res = evaluate("I1", record(patient(deceasedDateTime="2026-01-02")))
    assert res.outcome is Outcome.FAIL
    assert "deceased" in res.reason


@pytest.mark.parametrize("death", [{"deceasedDateTime": "2026-02-30"}, {"deceasedBoolean": "true"}])
def test_a_death_recorded_in_a_form_that_cannot_be_read_is_not_alive(evaluate, death):
    """It was read as no death: "Age 38 ... within 18-75", and the patient was offered as eligible."""
    res = evaluate("I1", record(patient(**death)))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "death is recorded" in res.reason and "cannot be read" in res.reason
    assert res.next_step and "alive" in res.next_step


def test_a_death_recorded_by_year_is_named_as_written(evaluate):
    res = evaluate("I1", record(patient(deceasedDateTime="2026")))
    assert res.outcome is Outcome.FAIL
    assert res.reason == "Patient is recorded as deceased in 2026."
