"""E2: dialysis within 12 calendar months, or renal replacement therapy expected after enrolment."""

from __future__ import annotations

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import (
    appointment,
    care_plan,
    care_plan_activity,
    condition,
    observation,
    procedure,
    record,
    service_request,
)

DIALYSIS = ("snomed", "265764009")  # Synthea's "Renal dialysis (procedure)"


def test_no_kidney_data_passes_with_the_window_in_the_reason(evaluate):
    res = evaluate("E2", record())
    assert res.outcome is Outcome.PASS
    assert "No dialysis on record in the last 12 months (since 2025-06-01)" in res.reason
    assert res.details["expected_rrt"] is False


def test_synthea_renal_dialysis_in_the_window_fails(evaluate):
    proc = procedure(*DIALYSIS, "2026-03-01T10:00:00Z", id="dx1", display="Renal dialysis")
    res = evaluate("E2", record(proc))
    assert res.outcome is Outcome.FAIL
    assert "Renal dialysis (2026-03-01)" in res.reason
    assert res.evidence == ("Procedure/dx1",)
    assert res.details["last_dialysis"] == "2026-03-01"


@pytest.mark.parametrize(
    ("performed", "expected"),
    [
        ("2025-06-01", Outcome.FAIL),  # exactly 12 calendar months before 2026-06-01
        ("2025-05-31", Outcome.PASS),  # one day more
        ("2026-06-01", Outcome.FAIL),  # on the screening date
        ("2026-06-02", Outcome.PASS),  # after the screening date: not known at screening
    ],
)
def test_twelve_calendar_month_window_edges(evaluate, performed, expected):
    res = evaluate("E2", record(procedure(*DIALYSIS, performed)))
    assert res.outcome is expected


def test_older_dialysis_is_named_in_the_pass_reason(evaluate):
    res = evaluate("E2", record(procedure(*DIALYSIS, "2025-05-31", id="old")))
    assert res.outcome is Outcome.PASS
    assert "Last dialysis on record 2025-05-31, more than 12 months" in res.reason
    assert res.evidence == ("Procedure/old",)


def test_a_dialysis_session_spanning_the_window_start_counts(evaluate):
    period = {"start": "2025-05-31T22:00:00Z", "end": "2025-06-01T02:00:00Z"}
    proc = procedure(*DIALYSIS, None, performedPeriod=period)
    assert evaluate("E2", record(proc)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("cpt", "90935"),
        ("cpt", "90960"),
        ("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "G0257"),  # http alias of HCPCS
        ("icd10pcs", "5A1D70Z"),
        ("snomed", "302497006"),
        ("urn:oid:2.16.840.1.113883.6.96", "71192002"),  # SNOMED by OID: peritoneal dialysis
    ],
)
def test_dialysis_in_each_code_system_fails(evaluate, system, code):
    assert evaluate("E2", record(procedure(system, code, "2026-01-15"))).outcome is Outcome.FAIL


def test_dialysis_only_observation_in_the_window_fails(evaluate):
    res = evaluate("E2", record(observation("74006-8", "2026-02-01", id="w1", value=2.1, unit="kg")))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Observation/w1",)


def test_active_dialysis_dependence_fails(evaluate):
    res = evaluate("E2", record(condition("icd10cm", "Z992", "2018-01-01", id="z")))  # dotless ICD-10-CM
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/z",)


def test_dialysis_dependence_abated_in_the_window_fails_and_before_it_passes(evaluate):
    recent = condition("snomed", "105502003", "2018-01-01", clinical="resolved", abatement="2025-08-01")
    old = condition("snomed", "105502003", "2018-01-01", clinical="resolved", abatement="2024-01-01")
    assert evaluate("E2", record(recent)).outcome is Outcome.FAIL
    assert evaluate("E2", record(old)).outcome is Outcome.PASS


@pytest.mark.parametrize(("system", "code"), [("snomed", "46177005"), ("icd10cm", "N18.6")])
def test_active_esrd_means_renal_replacement_is_expected(evaluate, system, code):
    res = evaluate("E2", record(condition(system, code, "2024-01-01", id="esrd")))
    assert res.outcome is Outcome.FAIL
    assert "renal replacement therapy" in res.reason
    assert res.details["expected_rrt"] is True
    assert res.evidence == ("Condition/esrd",)


def test_resolved_or_refuted_esrd_does_not_exclude(evaluate):
    resolved = condition("snomed", "46177005", "2019-01-01", clinical="resolved", abatement="2021-01-01")
    refuted = condition("snomed", "46177005", "2019-01-01", verification="refuted")
    assert evaluate("E2", record(resolved)).outcome is Outcome.PASS
    assert evaluate("E2", record(refuted)).outcome is Outcome.PASS


def test_awaiting_transplant_status_fails(evaluate):
    assert evaluate("E2", record(condition("icd10cm", "Z76.82", "2026-01-01"))).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("status", "performed"),
    [("preparation", "2026-08-01"), ("in-progress", "2026-07-01"), ("on-hold", "2026-09-01")],
)
def test_planned_kidney_transplant_fails(evaluate, status, performed):
    res = evaluate("E2", record(procedure("snomed", "70536003", performed, status=status, id="tx")))
    assert res.outcome is Outcome.FAIL
    assert "planned" in res.reason and status in res.reason
    assert res.evidence == ("Procedure/tx",)


@pytest.mark.parametrize(
    ("code", "status", "performed", "shown"),
    [
        (("snomed", "70536003"), "preparation", None, "undated"),
        (("snomed", "70536003"), "on-hold", "2026-05-20", "2026-05-20"),
        (DIALYSIS, "preparation", "2026-05-20", "2026-05-20"),
        (DIALYSIS, "preparation", "2026-06-01", "2026-06-01"),  # on the screening date: not later
    ],
)
def test_planned_rrt_without_a_later_date_is_a_question(evaluate, code, status, performed, shown):
    # As in E9: a Procedure not yet done is a plan when dated after screening; otherwise it may have lapsed
    # or been done since.
    res = evaluate("E2", record(procedure(*code, performed, status=status, id="p")))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.reason.startswith("Planned renal replacement therapy without a later date: ")
    assert f"({shown}), status {status}." in res.reason
    assert res.evidence == ("Procedure/p",)
    assert res.details["expected_rrt"] is False
    assert res.next_step and "investigator" in res.next_step.lower()


def test_planned_dialysis_start_fails(evaluate):
    res = evaluate("E2", record(procedure(*DIALYSIS, "2026-07-01", status="preparation")))
    assert res.outcome is Outcome.FAIL
    assert "planned" in res.reason


def test_ckd_stage_5_without_dialysis_is_left_to_the_investigator(evaluate):
    res = evaluate("E2", record(condition("icd10cm", "N18.5", "2025-10-01", id="ckd5")))
    assert res.outcome is Outcome.UNKNOWN
    assert "prognosis for the investigator" in res.reason
    assert res.next_step and "investigator" in res.next_step.lower()
    assert res.evidence == ("Condition/ckd5",)


def test_ckd_stage_5_with_recent_dialysis_fails(evaluate):
    rec = record(condition("snomed", "433146000", "2025-10-01"), procedure(*DIALYSIS, "2026-05-01"))
    assert evaluate("E2", rec).outcome is Outcome.FAIL


def test_resolved_ckd_stage_5_passes(evaluate):
    cond = condition("icd10cm", "N18.5", "2020-01-01", clinical="resolved", abatement="2022-01-01")
    assert evaluate("E2", record(cond)).outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"value": 12, "unit": "mL/min/{1.73_m2}"}, Outcome.UNKNOWN),
        ({"value": 15, "unit": "mL/min/{1.73_m2}", "comparator": "<"}, Outcome.UNKNOWN),
        ({"value": 10, "unit": "mL/min", "comparator": ">"}, Outcome.PASS),  # cannot say it is below 15
        ({"value": 15, "unit": "mL/min/{1.73_m2}"}, Outcome.PASS),
        ({"string": "<10"}, Outcome.UNKNOWN),
        # SI units (mL/s/1.73 m2), as I4 reads them: 0.5 mL/s is 30 mL/min, 0.2 mL/s is 12.
        ({"value": 0.5, "unit": "mL/s/{1.73_m2}"}, Outcome.PASS),
        ({"value": 0.2, "unit": "mL/s/{1.73_m2}"}, Outcome.UNKNOWN),
        ({"string": "0.5 mL/s/1.73m2"}, Outcome.PASS),
    ],
)
def test_latest_egfr_below_15_is_unknown(evaluate, kwargs, expected):
    res = evaluate("E2", record(observation("33914-3", "2026-05-20", **kwargs)))
    assert res.outcome is expected


def test_only_the_latest_egfr_in_the_lookback_counts(evaluate):
    low_earlier = observation("62238-1", "2026-04-01", value=12)
    rec = record(low_earlier, observation("62238-1", "2026-05-20", value=35))
    assert evaluate("E2", rec).outcome is Outcome.PASS
    stale = record(observation("62238-1", "2026-02-01", value=12))  # 120 days before screening
    assert evaluate("E2", stale).outcome is Outcome.PASS


def test_preliminary_low_egfr_is_used_and_said(evaluate):
    obs = observation("98979-8", "2026-05-01", value=10, unit="mL/min/{1.73_m2}", status="preliminary")
    res = evaluate("E2", record(obs))
    assert res.outcome is Outcome.UNKNOWN
    assert "Latest eGFR 10 (preliminary) on 2026-05-01 is below 15" in res.reason


def test_kidney_transplant_history_alone_passes_and_is_reported(evaluate):
    res = evaluate("E2", record(condition("icd10cm", "Z94.0", "2015-01-01", id="ktx")))
    assert res.outcome is Outcome.PASS
    assert "Kidney transplant history" in res.reason
    assert res.details["kidney_transplant_history"] is True
    assert res.evidence == ("Condition/ktx",)


def test_completed_kidney_transplant_is_history_not_planned(evaluate):
    res = evaluate("E2", record(procedure("snomed", "70536003", "2016-03-01")))
    assert res.outcome is Outcome.PASS
    assert "Kidney transplant history" in res.reason


@pytest.mark.parametrize("status", ["entered-in-error", "not-done"])
def test_dialysis_records_dropped_by_hygiene_do_not_count(evaluate, status):
    assert evaluate("E2", record(procedure(*DIALYSIS, "2026-05-01", status=status))).outcome is Outcome.PASS


def test_undated_dialysis_is_unknown(evaluate):
    res = evaluate("E2", record(procedure(*DIALYSIS, None, id="nd")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.next_step and "last dialysed" in res.next_step


def test_many_sessions_cite_only_the_most_recent(evaluate):
    sessions = [procedure(*DIALYSIS, f"2026-05-{d:02d}", id=f"s{d}") for d in range(1, 21)]
    res = evaluate("E2", record(*sessions))
    assert res.outcome is Outcome.FAIL
    assert res.evidence[0] == "Procedure/s20" and len(res.evidence) == 5
    assert "(+17 more)" in res.reason


# -- transplant or dialysis planned as an order, a care-plan activity or an appointment (issue 8 s.4) ---

KIDNEY_TX = ("snomed", "70536003")  # Transplant of kidney


def test_ordered_kidney_transplant_fails(evaluate):
    order = service_request(*KIDNEY_TX, "2026-09-01", id="tx", display="Transplant of kidney")
    res = evaluate("E2", record(order))
    assert res.outcome is Outcome.FAIL
    planned = "Transplant of kidney (ServiceRequest order, active; 2026-09-01)"
    assert f"Renal replacement therapy is planned: {planned}" in res.reason
    assert res.evidence == ("ServiceRequest/tx",)
    assert res.details["expected_rrt"] is True


def test_standing_dialysis_order_without_an_end_fails(evaluate):
    repeat = {"frequency": 3, "period": 1, "periodUnit": "wk", "boundsPeriod": {"start": "2026-05-20"}}
    timing = {"repeat": repeat}
    order = service_request("cpt", "90935", None, occurrenceTiming=timing, id="hd")
    res = evaluate("E2", record(order))
    assert res.outcome is Outcome.FAIL
    assert "from 2026-05-20, open-ended" in res.reason


@pytest.mark.parametrize(
    "plan",
    [
        service_request(*KIDNEY_TX, "2026-09-01", intent="proposal"),
        service_request(*KIDNEY_TX, "2026-09-01", status="on-hold"),
        service_request(*KIDNEY_TX, None),  # ordered, no date
        appointment(*KIDNEY_TX, status="waitlist"),
        care_plan(care_plan_activity(*KIDNEY_TX, "2026-09-01", status="on-hold")),
    ],
)
def test_transplant_proposed_on_hold_or_undated_is_for_the_investigator(evaluate, plan):
    res = evaluate("E2", record(plan))
    assert res.outcome is Outcome.UNKNOWN
    assert "proposed, on hold or without a date" in res.reason
    assert res.next_step and "Investigator" in res.next_step


@pytest.mark.parametrize(
    "plan",
    [
        care_plan(care_plan_activity(*KIDNEY_TX, "2026-09-01")),
        appointment(*KIDNEY_TX, "2026-07-01T08:00:00Z", element="reasonCode"),
        appointment(*DIALYSIS, "2026-06-03T08:00:00Z"),
    ],
)
def test_transplant_or_dialysis_in_a_care_plan_or_booked_fails(evaluate, plan):
    assert evaluate("E2", record(plan)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    "plan",
    [
        service_request(*KIDNEY_TX, "2025-09-01", status="completed"),  # the Procedure is the transplant
        service_request(*KIDNEY_TX, "2026-09-01", doNotPerform=True),
        service_request(*KIDNEY_TX, "2026-09-01", status="revoked"),
        appointment(*KIDNEY_TX, status="cancelled"),
        appointment(*DIALYSIS, "2026-05-01T08:00:00Z", status="fulfilled"),
        service_request(*DIALYSIS, "2025-01-10"),  # an order for a day long past
        care_plan(care_plan_activity(*KIDNEY_TX, "2026-09-01"), status="completed"),
    ],
)
def test_plans_that_are_not_expected_renal_replacement_pass(evaluate, plan):
    assert evaluate("E2", record(plan)).outcome is Outcome.PASS


def test_synthea_post_transplant_care_plan_regime_is_not_a_planned_transplant(evaluate):
    # Synthea kidney_transplant.json: an open-ended care plan whose activity is the transplant *regime*.
    activity = care_plan_activity("snomed", "711446003", None, status="in-progress")
    activity["detail"]["code"]["coding"][0]["display"] = "Transplantation of kidney regime (regime/therapy)"
    plan = care_plan(activity, period={"start": "2024-01-01"})
    assert evaluate("E2", record(plan)).outcome is Outcome.PASS
    assert evaluate("E9", record(plan)).outcome is Outcome.PASS


def test_dialysis_recorded_with_status_unknown_is_a_question(evaluate):
    res = evaluate("E2", record(procedure(*DIALYSIS, "2026-03-01", status="unknown", id="u")))
    assert res.outcome is Outcome.UNKNOWN
    assert "status unknown" in res.reason and res.evidence == ("Procedure/u",)


def test_dialysis_coded_in_icd10pcs_under_the_hl7_style_uri_counts(evaluate):
    proc = procedure("http://hl7.org/fhir/sid/icd-10-pcs", "5A1D70Z", "2026-03-01")
    assert evaluate("E2", record(proc)).outcome is Outcome.FAIL


def test_dialysis_dated_by_a_performed_string_counts(evaluate):
    res = evaluate("E2", record(procedure(*DIALYSIS, None, performedString="2026-02-14", id="s")))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Procedure/s",)


def test_dialysis_dated_by_a_year_that_may_be_in_the_window_is_unknown(screen):
    res = screen("E2", record(procedure(*DIALYSIS, "2025", id="dx1")))
    assert res.outcome is Outcome.UNKNOWN
    assert "Read as 2025-01-01: pass." in res.reason and "Read as 2025-12-31: fail." in res.reason


def test_end_stage_kidney_disease_with_an_abatement_is_not_active(evaluate):
    cond = condition("icd10cm", "N18.6", "2025-01-01", clinical=None, abatementBoolean=True)
    res = evaluate("E2", record(cond))
    assert res.outcome is Outcome.PASS
    assert "End stage" not in res.reason


def test_end_stage_kidney_disease_without_a_clinical_status_says_it_was_taken_as_active(evaluate):
    res = evaluate("E2", record(condition("icd10cm", "N18.6", "2025-01-01", clinical=None)))
    assert res.outcome is Outcome.FAIL
    assert "no clinical status (taken as active)" in res.reason
