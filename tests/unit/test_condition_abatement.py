"""An active Condition: active clinicalStatus (or none) and no abatement[x] (criteria-codes.md 0.2)."""

from __future__ import annotations

from datetime import date

import pytest

from fhirscreen.fhir.resources import abated, condition_span, is_active_on
from tests.builders import AS_OF, condition

AGE = {"value": 30, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}


@pytest.mark.parametrize(
    "abatement",
    [
        {"abatementBoolean": True},
        {"abatementString": "in childhood"},
        {"abatementString": "2026-05-28"},
        {"abatementAge": AGE},
        {"abatementRange": {"low": AGE}},
        {"abatementDateTime": "2026-05-28"},
        {"abatementPeriod": {"start": "2026-05-01", "end": "2026-05-28"}},
    ],
)
@pytest.mark.parametrize("clinical", ["active", None])
def test_any_abatement_by_the_screening_date_ends_the_condition(abatement, clinical):
    cond = condition("icd10cm", "J18.9", "2026-05-01", clinical=clinical, **abatement)
    assert abated(cond)
    assert not is_active_on(cond, AS_OF)


@pytest.mark.parametrize("abatement", [{}, {"abatementBoolean": False}, {"abatementString": " "}])
def test_no_abatement_leaves_an_active_condition_active(abatement):
    cond = condition("icd10cm", "J18.9", "2026-05-01", **abatement)
    assert not abated(cond)
    assert is_active_on(cond, AS_OF)


def test_abatement_string_with_a_date_is_that_date():
    cond = condition("icd10cm", "J18.9", "2026-05-01", abatementString="2026-07-01")
    assert condition_span(cond).end == date(2026, 7, 1)
    assert is_active_on(cond, AS_OF)  # abates after screening: still active then


def test_abatement_without_a_day_ends_by_the_recorded_date_else_the_onset():
    recorded = condition("icd10cm", "J18.9", "2026-05-01", abatementBoolean=True, recordedDate="2026-05-10")
    assert condition_span(recorded).end == date(2026, 5, 10)
    unrecorded = condition("icd10cm", "J18.9", "2026-05-01", abatementAge=AGE)
    assert condition_span(unrecorded).end == date(2026, 5, 1)
