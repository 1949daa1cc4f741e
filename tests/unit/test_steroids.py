"""E1 (non-SLE corticosteroids > 14 days in 12 weeks) and E3 (prednisone-equivalent > 0.5 mg/kg/day)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import (
    AS_OF,
    concept,
    condition,
    medication_administration,
    medication_dispense,
    medication_request,
    observation,
    record,
)

PRED = "8640"
ASTHMA = concept("icd10cm", "J45.909", "Unspecified asthma, uncomplicated")
SLE = concept("snomed", "55464009", "Systemic lupus erythematosus")


def ago(days: int) -> str:
    return (AS_OF - timedelta(days=days)).isoformat()


def course(
    first_day_ago: int,
    days: int,
    *,
    code: str = PRED,
    display: str = "predniSONE 20 MG Oral Tablet",
    reason=None,
    dose: float | None = None,
    **extra,
):
    """A completed steroid course of ``days`` days starting ``first_day_ago`` days before screening."""
    return medication_request(
        code,
        ago(first_day_ago),
        status="completed",
        display=display,
        reason=reason,
        dose=dose,
        bounds_start=ago(first_day_ago),
        bounds_end=ago(first_day_ago - days + 1),
        **extra,
    )


def weight(kg: float, unit: str = "kg", when_ago: int = 10):
    return observation("29463-7", ago(when_ago), value=kg, unit=unit, id="wt")


# ------------------------------------------------------------------------------------------- E1


@pytest.mark.parametrize(("days", "expected"), [(14, Outcome.PASS), (15, Outcome.FAIL)])
def test_e1_non_sle_course_of_14_vs_15_days(evaluate, days, expected):
    res = evaluate("E1", record(course(40, days, reason=ASTHMA, id="c1")))
    assert res.outcome is expected
    assert res.details["non_sle_days"] == days
    assert "MedicationRequest/c1" in res.evidence
    if expected is Outcome.FAIL:
        assert "asthma" in res.reason.lower()


def test_e1_non_sle_days_add_up_over_courses(evaluate):
    rec = record(course(60, 8, reason=ASTHMA), course(30, 7, reason=ASTHMA))
    res = evaluate("E1", rec)
    assert res.outcome is Outcome.FAIL
    assert res.details["non_sle_days"] == 15


def test_e1_only_days_inside_the_12_week_window_count(evaluate):
    # 20 days (93 to 74 days ago), of which 11 fall on or after as-of - 84 days
    res = evaluate("E1", record(course(93, 20, reason=ASTHMA)))
    assert res.outcome is Outcome.PASS
    assert res.details["non_sle_days"] == 11


def test_e1_course_without_reason_counts_as_sle_treatment_and_says_so(evaluate):
    res = evaluate("E1", record(course(40, 30)))
    assert res.outcome is Outcome.PASS
    assert "without a recorded reason, counted as SLE treatment" in res.reason


def test_e1_reasonless_course_with_active_steroid_responsive_condition_is_unknown(evaluate):
    rec = record(course(40, 30), condition("icd10cm", "J45.909", "2020-01-01", id="asthma"))
    res = evaluate("E1", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "Condition/asthma" in res.evidence


def test_e1_course_for_sle_by_reason_reference(evaluate):
    rec = record(
        condition("snomed", "55464009", id="sle"),
        course(40, 30, reasonReference=[{"reference": "Condition/sle"}]),
    )
    res = evaluate("E1", rec)
    assert res.outcome is Outcome.PASS
    assert "for SLE" in res.reason


def test_e1_sle_reason_code(evaluate):
    assert evaluate("E1", record(course(40, 30, reason=SLE))).outcome is Outcome.PASS


def test_e1_unresolvable_reason_reference_that_could_exceed_is_unknown(evaluate):
    rec = record(course(40, 30, reasonReference=[{"reference": "Condition/missing"}]))
    assert evaluate("E1", rec).outcome is Outcome.UNKNOWN


def test_e1_a_fill_whose_own_reason_is_not_in_the_record_reads_its_order(evaluate):
    """A reference the record does not hold is read as if it were not there: the order's reason counts."""
    order = course(40, 30, reason=SLE, id="rx")
    fill = medication_dispense(
        PRED, ago(40), display="predniSONE 20 MG Oral Tablet", id="fill", days_supply=30,
        authorizingPrescription=[{"reference": "MedicationRequest/rx"}],
        reasonReference=[{"reference": "Condition/missing"}],
    )
    res = evaluate("E1", record(order, fill))
    assert res.outcome is Outcome.PASS, res.reason
    # A display alone is not read as the reason (the SLE value sets are codes): still a question.
    sle = [{"reference": "Condition/missing", "display": "Systemic lupus erythematosus"}]
    assert evaluate("E1", record(course(40, 30, reasonReference=sle))).outcome is Outcome.UNKNOWN


def test_e1_order_without_duration_that_could_exceed_14_days_is_unknown(evaluate):
    req = medication_request(PRED, ago(20), status="stopped", reason=ASTHMA, display="prednisone")
    res = evaluate("E1", record(req))
    assert res.outcome is Outcome.UNKNOWN
    assert res.details["non_sle_days"] == 1


def test_e1_local_steroids_never_count(evaluate):
    inhaled = course(
        60, 60, code="19831", display="budesonide 0.5 MG/ML Inhalation Suspension", reason=ASTHMA
    )
    cream = course(60, 60, code="5492", display="hydrocortisone 1 % Topical Cream", reason=ASTHMA)
    res = evaluate("E1", record(inhaled, cream))
    assert res.outcome is Outcome.PASS
    assert "No systemic corticosteroid" in res.reason


def test_e1_active_order_counts_through_the_screening_date(evaluate):
    req = medication_request(PRED, ago(20), reason=ASTHMA)  # active, no end: 21 days to as-of
    res = evaluate("E1", record(req))
    assert res.outcome is Outcome.FAIL
    assert res.details["non_sle_days"] == 21


def test_e1_physiological_hydrocortisone_replacement_is_not_counted(evaluate):
    adrenal = concept("icd10cm", "E27.1", "Primary adrenocortical insufficiency")
    req = course(
        60,
        60,
        code="197782",
        display="hydrocortisone 10 MG Oral Tablet",
        reason=adrenal,
        dose=10,
        frequency=2,
    )
    res = evaluate("E1", record(req))
    assert res.outcome is Outcome.PASS
    assert "replacement" in res.reason


# ------------------------------------------------------------------------------------------- E3


@pytest.mark.parametrize(("mg", "expected"), [(40, Outcome.FAIL), (35, Outcome.PASS), (30, Outcome.PASS)])
def test_e3_threshold_is_strictly_above_half_a_mg_per_kg(evaluate, mg, expected):
    rec = record(course(20, 10, display="prednisone", dose=mg), weight(70))
    res = evaluate("E3", rec)
    assert res.outcome is expected  # 35 mg / 70 kg is exactly 0.5: not above
    assert "Observation/wt" in res.evidence


def test_e3_concurrent_distinct_therapies_are_summed(evaluate):
    rec = record(
        course(20, 10, display="prednisone", dose=20),
        course(15, 10, code="6902", display="methylprednisolone", dose=16),  # = 20 mg prednisone
        weight(70),
    )
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.FAIL
    assert res.details["max_prednisone_eq_mg_day"] == 40


def test_e3_orders_that_do_not_overlap_are_not_summed(evaluate):
    rec = record(
        course(25, 5, display="prednisone", dose=30), course(15, 5, display="prednisone", dose=30), weight(70)
    )
    assert evaluate("E3", rec).outcome is Outcome.PASS


@pytest.mark.parametrize(("mg", "expected"), [(6, Outcome.FAIL), (4, Outcome.PASS)])
def test_e3_dexamethasone_is_converted(evaluate, mg, expected):
    rec = record(course(20, 10, code="3264", display="dexamethasone", dose=mg), weight(70))
    res = evaluate("E3", rec)
    assert res.outcome is expected
    assert res.details["max_prednisone_eq_mg_day"] == pytest.approx(mg * 6.67)


def test_e3_weight_in_pounds(evaluate):
    # 154 lb = 69.85 kg: 35 mg/day is just above 0.5 mg/kg/day
    rec = record(course(20, 10, display="prednisone", dose=35), weight(154, "[lb_av]"))
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.FAIL
    assert res.details["weight_kg"] == pytest.approx(69.9, abs=0.1)


def test_e3_missing_weight_is_unknown(evaluate):
    res = evaluate("E3", record(course(20, 10, display="prednisone", dose=40)))
    assert res.outcome is Outcome.UNKNOWN
    assert "no body weight" in res.reason and res.next_step


def test_e3_very_high_dose_fails_without_weight(evaluate):
    pulse = medication_administration(
        "6902",
        ago(10),
        display="methylprednisolone 500 MG Injection",
        dosage={"dose": {"value": 500, "unit": "mg"}},
    )
    res = evaluate("E3", record(pulse))
    assert res.outcome is Outcome.FAIL
    assert res.details["max_prednisone_eq_mg_day"] == 625


def test_e3_stale_weight_is_not_used(evaluate):
    rec = record(course(20, 10, display="prednisone", dose=40), weight(70, when_ago=500))
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "over 12 months old" in res.reason


def test_e3_missing_dose_is_unknown(evaluate):
    # Synthea's prednisone order without structured dose
    rec = record(medication_request("312615", ago(10), display="predniSONE 20 MG Oral Tablet"), weight(70))
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "dose is not recorded" in res.reason


def test_e3_synthea_tablet_count_dose(evaluate):
    req = medication_request("312615", ago(10), display="predniSONE 20 MG Oral Tablet", dose=1, frequency=2)
    req["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 1.0}
    res = evaluate("E3", record(req, weight(70)))
    assert res.outcome is Outcome.FAIL
    assert res.details["max_prednisone_eq_mg_day"] == 40


def test_e3_course_that_ended_before_the_window_passes(evaluate):
    res = evaluate("E3", record(course(60, 20, display="prednisone", dose=60)))
    assert res.outcome is Outcome.PASS
    assert "No systemic corticosteroid" in res.reason
