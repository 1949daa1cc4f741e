"""The normalised medication view: spans, daily doses, drug concepts and reasons of three resource types."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from fhirscreen.criteria._medications import Interval, daily_mg, exposures, merge, reason_concepts
from tests.builders import (
    AS_OF,
    concept,
    condition,
    medication_administration,
    medication_request,
    medication_statement,
    record,
)

HCQ = "5521"
PRED_20_TAB = "312615"


def only(rec):
    (exp,) = exposures(rec)
    return exp


def test_active_request_without_end_runs_through_the_screening_date():
    exp = only(record(medication_request(HCQ, "2025-01-10")))
    assert exp.start == date(2025, 1, 10)
    assert exp.ongoing and exp.covers(AS_OF)
    assert exp.last_day(AS_OF) == AS_OF


def test_active_request_ended_by_its_dosage_bounds_is_over():
    exp = only(
        record(medication_request(HCQ, "2026-01-01", bounds_start="2026-01-02", bounds_end="2026-02-01"))
    )
    assert (exp.start, exp.end, exp.end_stated) == (date(2026, 1, 2), date(2026, 2, 1), True)
    assert not exp.covers(AS_OF)


def test_completed_request_lasts_supply_times_fills():
    dispense = {
        "expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"},
        "numberOfRepeatsAllowed": 2,
    }
    exp = only(record(medication_request(HCQ, "2026-01-01", status="completed", dispenseRequest=dispense)))
    assert exp.end == date(2026, 1, 1) + timedelta(days=89)
    assert exp.end_stated


def test_bounds_duration_counts_from_the_first_day():
    req = medication_request(PRED_20_TAB, "2026-05-01", status="completed")
    req["dosageInstruction"] = [{"timing": {"repeat": {"boundsDuration": {"value": 2, "code": "wk"}}}}]
    exp = only(record(req))
    assert exp.end == date(2026, 5, 14)


def test_stopped_request_without_dates_ends_at_the_last_known_date_but_may_have_lasted_longer():
    exp = only(record(medication_request(HCQ, "2026-05-01", status="stopped")))
    assert (exp.end, exp.end_stated, exp.ongoing) == (date(2026, 5, 1), False, False)
    assert exp.possible_last_day(AS_OF, 30) == date(2026, 5, 30)  # 30 days: May 1 to May 30
    assert exp.possible_last_day(AS_OF, 300) == AS_OF  # never beyond the screening date


def test_on_hold_request_is_not_ongoing():
    exp = only(record(medication_request(HCQ, "2025-01-01", status="on-hold")))
    assert not exp.ongoing and not exp.end_stated


@pytest.mark.parametrize(
    ("start", "end", "status", "ongoing", "end_day"),
    [
        ("2025-01-01", "2025-06-30", "completed", False, date(2025, 6, 30)),
        ("2025-01-01", None, "active", True, None),
        ("2025-01-01", None, "completed", False, date(2025, 1, 1)),
    ],
)
def test_statement_spans(start, end, status, ongoing, end_day):
    exp = only(record(medication_statement(HCQ, start, end, status=status)))
    assert exp.ongoing is ongoing
    assert exp.end == end_day


def test_statement_with_effective_datetime_while_active_is_ongoing():
    ms = medication_statement(HCQ, None, status="active", effectiveDateTime="2025-03-01")
    exp = only(record(ms))
    assert exp.start == date(2025, 3, 1) and exp.ongoing


def test_intended_statement_is_a_plan_not_exposure():
    assert exposures(record(medication_statement(HCQ, "2026-07-01", status="intended"))) == ()


@pytest.mark.parametrize("status", ["not-taken", "entered-in-error"])
def test_hygiene_drops_not_taken_and_entered_in_error(status):
    assert exposures(record(medication_statement(HCQ, status=status))) == ()


def test_administration_only_record_is_its_day_with_the_given_dose():
    ma = medication_administration("121191", "2026-02-01", dosage={"dose": {"value": 1000, "unit": "mg"}})
    exp = only(record(ma))
    assert (exp.start, exp.end, exp.end_stated) == (date(2026, 2, 1), date(2026, 2, 1), True)
    assert daily_mg(exp) == (1000.0, 1000.0)


def test_contained_medication_reference_is_resolved():
    req = medication_request(HCQ, "2025-01-01")
    del req["medicationCodeableConcept"]
    req["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": concept("rxnorm", "979092", "hydroxychloroquine sulfate 200 MG Oral Tablet"),
        }
    ]
    req["medicationReference"] = {"reference": "#m1"}
    exp = only(record(req))
    assert exp.label == "hydroxychloroquine sulfate 200 MG Oral Tablet"


def test_separate_medication_reference_and_its_ingredients_are_read():
    med = {
        "resourceType": "Medication",
        "id": "med9",
        "code": {"text": "Lupus pack"},
        "ingredient": [{"itemCodeableConcept": concept("rxnorm", "68149", "mycophenolate mofetil")}],
    }
    req = medication_request(HCQ, "2025-01-01")
    del req["medicationCodeableConcept"]
    req["medicationReference"] = {"reference": "Medication/med9"}
    exp = only(record(med, req))
    assert exp.concepts[0].get("text") == "Lupus pack"
    assert any(cd.get("code") == "68149" for c in exp.concepts for cd in c.get("coding", []))


@pytest.mark.parametrize(
    ("dose", "unit", "frequency", "period", "period_unit", "display", "expected"),
    [
        (20, "mg", 2, 1, "d", "prednisone", 40.0),
        (5, "mg", 1, 8, "h", "prednisone", 15.0),
        (15, "mg", 1, 1, "wk", "methotrexate", 15 / 7),
        (30, "mg", 1, 1, "mo", "prednisone", 1.0),
        (0.5, "g", 1, 1, "d", "prednisone", 500.0),
        (2, "{tbl}", 1, 1, "d", "predniSONE 20 MG Oral Tablet", 40.0),
        (4, "mL", 1, 1, "d", "prednisone 5 MG/ML Oral Solution", 20.0),
    ],
)
def test_daily_dose_in_mg(dose, unit, frequency, period, period_unit, display, expected):
    req = medication_request(
        "8640",
        "2026-05-01",
        display=display,
        dose=dose,
        dose_unit=unit,
        frequency=frequency,
        period=period,
        period_unit=period_unit,
    )
    assert daily_mg(only(record(req))) == pytest.approx((expected, expected))


def test_synthea_unitless_dose_counts_tablets_of_the_strength_in_the_name():
    req = medication_request(
        PRED_20_TAB, "2026-05-01", display="predniSONE 20 MG Oral Tablet", dose=1, frequency=2
    )
    req["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 1.0}
    assert daily_mg(only(record(req))) == (40.0, 40.0)


def test_unitless_dose_of_a_solution_is_not_guessed():
    req = medication_request("8640", "2026-05-01", display="prednisone 5 MG/ML Oral Solution", dose=1)
    req["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 1.0}
    assert daily_mg(only(record(req))) is None


def test_timing_code_and_dose_range():
    req = medication_request("8640", "2026-05-01", display="prednisone")
    req["dosageInstruction"] = [
        {
            "timing": {"code": {"coding": [{"code": "BID"}]}},
            "doseAndRate": [
                {"doseRange": {"low": {"value": 5, "unit": "mg"}, "high": {"value": 10, "unit": "mg"}}}
            ],
        }
    ]
    assert daily_mg(only(record(req))) == (10.0, 20.0)


def test_taper_steps_give_the_lowest_and_highest_step():
    req = medication_request("8640", "2026-05-01", display="prednisone")
    req["dosageInstruction"] = [
        {
            "sequence": 1,
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mg"}}],
        },
        {
            "sequence": 2,
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg"}}],
        },
    ]
    assert daily_mg(only(record(req))) == (10.0, 40.0)


def test_no_dosage_means_no_dose():
    assert daily_mg(only(record(medication_request(PRED_20_TAB, "2026-05-01")))) is None


def test_reason_reference_is_resolved_to_the_condition_code():
    asthma = condition("icd10cm", "J45.909", id="c-asthma")
    req = medication_request(
        "8640",
        "2026-05-01",
        reasonReference=[{"reference": "Condition/c-asthma"}, {"reference": "Condition/gone"}],
    )
    rec = record(asthma, req)
    concepts, unresolved = reason_concepts(rec, only_request(rec))
    assert concepts[0]["coding"][0]["code"] == "J45.909"
    assert unresolved == ["Condition/gone"]


def only_request(rec):
    return next(e for e in exposures(rec) if e.resource_type == "MedicationRequest")


def test_route_and_dose_form_make_a_record_local(trial):
    local = trial.value_sets["med_non_systemic_forms"]
    topical = medication_request("42316", display="tacrolimus 1 MG/ML Topical Ointment")
    by_route = medication_request("8640", display="prednisone")
    by_route["dosageInstruction"] = [{"route": concept("snomed", "54485002", "Ophthalmic route")}]
    oral = medication_request("8640", display="predniSONE 20 MG Oral Tablet")
    rec = record(topical, by_route, oral)
    flags = {e.ref: e.is_local(local) for e in exposures(rec)}
    assert flags == {
        f"MedicationRequest/{topical['id']}": True,
        f"MedicationRequest/{by_route['id']}": True,
        f"MedicationRequest/{oral['id']}": False,
    }


def test_exposure_view_is_computed_once_per_record():
    rec = record(medication_request(HCQ))
    assert exposures(rec) is exposures(rec)


def test_merge_joins_gaps_up_to_the_limit():
    a = Interval(date(2026, 1, 1), date(2026, 1, 31))
    b = Interval(date(2026, 3, 3), date(2026, 3, 31))  # 30 days of gap (Feb 1 - Mar 2)
    assert merge([a, b], 30) == [Interval(date(2026, 1, 1), date(2026, 3, 31))]
    assert len(merge([a, b], 29)) == 2
