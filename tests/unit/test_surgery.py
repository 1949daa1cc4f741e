"""E9: major surgery within 90 days before screening (Baseline unknown), or planned; minor never counts."""

from __future__ import annotations

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import appointment, care_plan, care_plan_activity, procedure, record, service_request

LOCAL = "http://hospital.example/procedures"
TKR = ("snomed", "609588000")  # Total knee replacement (VSAC Major Surgical Procedure)


def test_no_procedures_passes(evaluate):
    res = evaluate("E9", record())
    assert res.outcome is Outcome.PASS
    assert "No major surgery on record in the last 90 days (since 2026-03-03)" in res.reason


@pytest.mark.parametrize(
    ("performed", "expected"),
    [
        ("2026-03-03", Outcome.FAIL),  # 90 days before 2026-06-01
        ("2026-03-02", Outcome.PASS),  # 91 days
        ("2026-06-01T08:00:00Z", Outcome.FAIL),  # on the screening date
        ("2026-06-02", Outcome.PASS),  # done after screening: not known at screening
    ],
)
def test_90_day_window_edges(evaluate, performed, expected):
    assert evaluate("E9", record(procedure(*TKR, performed))).outcome is expected


def test_major_surgery_reports_when_the_washout_ends(evaluate):
    res = evaluate("E9", record(procedure(*TKR, "2026-03-03", id="knee", display="Total knee replacement")))
    assert res.outcome is Outcome.FAIL
    assert res.details["washout_ends"] == "2026-06-01"
    assert res.details["eligible_from"] == "2026-06-02"
    assert "Total knee replacement (2026-03-03)" in res.reason and "runs to 2026-06-01" in res.reason
    assert res.evidence == ("Procedure/knee",)


def test_older_major_surgery_passes_and_is_named(evaluate):
    res = evaluate("E9", record(procedure(*TKR, "2026-03-02", id="old", display="Total knee replacement")))
    assert res.outcome is Outcome.PASS
    assert "Last major surgery on record: Total knee replacement on 2026-03-02" in res.reason
    assert res.evidence == ("Procedure/old",)


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("snomed", "80146002"),  # Synthea appendicitis.json: Excision of appendix
        ("snomed", "70536003"),  # kidney transplant (included list)
        ("cpt", "27447"),
        ("icd10pcs", "0TY00Z0"),
        ("snomed", "11466000"),  # caesarean section: not in the VSAC list, added deliberately
    ],
)
def test_major_codes_in_each_system_fail(evaluate, system, code):
    assert evaluate("E9", record(procedure(system, code, "2026-05-01"))).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    "proc",
    [
        procedure("cpt", "50200", "2026-05-31"),  # percutaneous renal biopsy yesterday
        procedure("snomed", "10334009", "2026-05-31", display="Biopsy of kidney (surgical procedure)"),
        procedure(LOCAL, "kb", "2026-05-31", text="Percutaneous needle biopsy of kidney (surgical)"),
        procedure("snomed", "73761001", "2026-05-20", display="Colonoscopy with polypectomy"),
        procedure(LOCAL, "d", "2026-05-20", text="Surgical extraction of wisdom tooth"),
        procedure(LOCAL, "i", "2026-05-20", text="Injection of surgical site with local anaesthetic"),
    ],
)
def test_minor_procedures_never_exclude(evaluate, proc):
    assert evaluate("E9", record(proc)).outcome is Outcome.PASS


@pytest.mark.parametrize(
    "display",
    ["Medication reconciliation (procedure)", "Referral to transplant surgeon (procedure)",
     "Depression screening (procedure)", "Postoperative care (regime/therapy)", "Phlebotomy"],
)
def test_everyday_synthea_procedures_are_not_surgery(evaluate, display):
    proc = procedure("snomed", "1", "2026-05-20", display=display)
    assert evaluate("E9", record(proc)).outcome is Outcome.PASS


def test_unlisted_procedure_named_like_surgery_in_the_window_is_unknown(evaluate):
    proc = procedure(LOCAL, "x", "2026-05-01", id="sg", text="Laparoscopic sleeve gastrectomy")
    res = evaluate("E9", record(proc))
    assert res.outcome is Outcome.UNKNOWN
    assert res.evidence == ("Procedure/sg",)
    assert res.details["washout_ends"] == "2026-07-30"
    assert res.next_step and "major surgery" in res.next_step


def test_unlisted_surgery_outside_the_window_passes(evaluate):
    proc = procedure(LOCAL, "x", "2026-01-01", text="Laparoscopic sleeve gastrectomy")
    assert evaluate("E9", record(proc)).outcome is Outcome.PASS


def test_general_anaesthesia_alone_is_unknown(evaluate):
    res = evaluate("E9", record(procedure("snomed", "50697003", "2026-05-10", id="ga")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.evidence == ("Procedure/ga",)


def test_anaesthesia_cpt_range_is_unknown_but_lab_codes_starting_with_zero_are_not(evaluate):
    assert evaluate("E9", record(procedure("cpt", "00840", "2026-05-10"))).outcome is Outcome.UNKNOWN
    assert evaluate("E9", record(procedure("cpt", "0001U", "2026-05-10"))).outcome is Outcome.PASS


def test_anaesthesia_on_the_day_of_a_minor_procedure_is_for_that_procedure(evaluate):
    rec = record(
        procedure("snomed", "50697003", "2026-05-10T09:00:00Z"),
        procedure("snomed", "73761001", "2026-05-10T09:30:00Z", display="Colonoscopy"),
    )
    assert evaluate("E9", rec).outcome is Outcome.PASS


def test_major_surgery_wins_over_an_unknown_procedure(evaluate):
    rec = record(procedure("snomed", "50697003", "2026-05-10"), procedure(*TKR, "2026-05-10", id="k"))
    res = evaluate("E9", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Procedure/k",)


@pytest.mark.parametrize(
    ("status", "performed"),
    [("preparation", "2026-09-01"), ("in-progress", "2026-07-01"), ("on-hold", "2026-12-01")],
)
def test_planned_major_surgery_fails(evaluate, status, performed):
    res = evaluate("E9", record(procedure(*TKR, performed, status=status, id="plan")))
    assert res.outcome is Outcome.FAIL
    assert "planned" in res.reason and performed in res.reason
    assert res.evidence == ("Procedure/plan",)


def test_planned_major_surgery_without_a_date_is_unknown(evaluate):
    res = evaluate("E9", record(procedure(*TKR, None, status="preparation")))
    assert res.outcome is Outcome.UNKNOWN
    assert "Planned" in res.reason


def test_planned_minor_procedure_is_ignored(evaluate):
    proc = procedure("cpt", "50200", "2026-07-01", status="preparation")
    assert evaluate("E9", record(proc)).outcome is Outcome.PASS


def test_in_progress_surgery_that_started_before_screening_counts_as_performed(evaluate):
    proc = procedure(*TKR, None, status="in-progress", performedPeriod={"start": "2026-05-31"})
    res = evaluate("E9", record(proc))
    assert res.outcome is Outcome.FAIL
    assert res.details["last_major_surgery"] == "2026-06-01"  # still under way on the screening date


def test_undated_major_surgery_is_reported_not_counted(evaluate):
    res = evaluate("E9", record(procedure(*TKR, None, id="u", display="Total knee replacement")))
    assert res.outcome is Outcome.PASS
    assert "Major surgery without a date is on record, not counted: Total knee replacement" in res.reason
    assert res.evidence == ("Procedure/u",)


@pytest.mark.parametrize("status", ["entered-in-error", "not-done"])
def test_major_surgery_dropped_by_hygiene_does_not_count(evaluate, status):
    assert evaluate("E9", record(procedure(*TKR, "2026-05-01", status=status))).outcome is Outcome.PASS


# -- planned surgery recorded as orders, care-plan activities and appointments (issue 8 section 4) ------

THR = ("snomed", "52734007")  # Total replacement of hip


def test_ordered_hip_replacement_for_after_screening_fails(evaluate):
    order = service_request(*THR, "2026-08-01", id="thr", display="Total replacement of hip")
    res = evaluate("E9", record(order))
    assert res.outcome is Outcome.FAIL
    assert res.reason == (
        "Major surgery planned after screening: Total replacement of hip "
        "(ServiceRequest order, active; 2026-08-01)."
    )
    assert res.evidence == ("ServiceRequest/thr",)
    assert res.details["planned_major_surgery"] == ["2026-08-01"]


@pytest.mark.parametrize(
    "occurrence",
    [
        {"occurrencePeriod": {"start": "2026-07-01", "end": "2026-07-31"}},
        {"occurrencePeriod": {"start": "2026-05-01"}},  # open-ended: still to be done
        {"occurrenceTiming": {"event": ["2026-09-15T08:00:00Z"]}},
        {"occurrenceTiming": {"repeat": {"boundsPeriod": {"start": "2026-07-01", "end": "2026-07-02"}}}},
        {"occurrenceDateTime": "2026-06-01T07:30:00Z"},  # on the screening day
    ],
)
def test_every_occurrence_encoding_of_a_future_order_fails(evaluate, occurrence):
    order = service_request(*THR, None, **occurrence)
    assert evaluate("E9", record(order)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("intent", "status"),
    [
        ("proposal", "active"),  # a suggestion, not a decision
        ("order", "draft"),  # not signed
        ("order", "on-hold"),  # suspended
        ("order", "unknown"),
    ],
)
def test_surgery_proposed_or_not_yet_a_firm_order_is_unknown(evaluate, intent, status):
    order = service_request(*THR, "2026-08-01", intent=intent, status=status, id="q")
    res = evaluate("E9", record(order))
    assert res.outcome is Outcome.UNKNOWN
    assert f"ServiceRequest {intent}, {status}" in res.reason and "not yet a firm order" in res.reason
    assert res.evidence == ("ServiceRequest/q",)
    assert res.next_step and "major surgery" in res.next_step


@pytest.mark.parametrize(
    "order",
    [
        service_request(*THR, "2026-05-01", status="completed"),  # the Procedure is the surgery
        service_request(*THR, "2026-08-01", status="revoked"),
        service_request(*THR, "2026-08-01", status="entered-in-error"),
        service_request(*THR, "2026-08-01", doNotPerform=True),
        service_request(*THR, "2026-01-10"),  # ordered for a day before the 90-day window
        service_request("cpt", "50200", "2026-08-01"),  # a planned kidney biopsy is minor
    ],
)
def test_orders_that_are_not_planned_major_surgery_pass(evaluate, order):
    assert evaluate("E9", record(order)).outcome is Outcome.PASS


def test_undated_order_for_major_surgery_is_unknown(evaluate):
    res = evaluate("E9", record(service_request(*THR, None)))
    assert res.outcome is Outcome.UNKNOWN
    assert "ordered without a date" in res.reason


def test_order_for_a_day_in_the_window_without_a_procedure_is_unknown(evaluate):
    res = evaluate("E9", record(service_request(*THR, "2026-04-20")))
    assert res.outcome is Outcome.UNKNOWN
    assert "no Procedure" in res.reason


def test_hip_fracture_fixation_is_major_in_every_coding_system(evaluate):
    for system, code in [("cpt", "27236"), ("cpt", "27245"), ("icd10pcs", "0QS604Z"), ("hcpcs", "G0415"),
                         ("snomed", "386649003")]:
        res = evaluate("E9", record(procedure(system, code, "2026-05-01")))
        assert res.outcome is Outcome.FAIL, (system, code)


def test_fracture_fixation_named_but_coded_elsewhere_is_unknown_not_pass(evaluate):
    proc = procedure(LOCAL, "orif", "2026-05-01", text="ORIF left intertrochanteric femur fracture")
    assert evaluate("E9", record(proc)).outcome is Outcome.UNKNOWN


def test_care_plan_activity_for_major_surgery_fails(evaluate):
    plan = care_plan(care_plan_activity(*THR, "2026-09-01"), id="cp")
    res = evaluate("E9", record(plan))
    assert res.outcome is Outcome.FAIL
    assert "CarePlan plan, active, activity scheduled; 2026-09-01" in res.reason
    assert res.evidence == ("CarePlan/cp",)


@pytest.mark.parametrize(
    "scheduled",
    [
        {"scheduledTiming": {"event": ["2026-09-01"]}},
        {"scheduledPeriod": {"start": "2026-09-01"}},
    ],
)
def test_care_plan_activity_schedules_in_each_encoding(evaluate, scheduled):
    plan = care_plan(care_plan_activity(*THR, None, **scheduled))
    assert evaluate("E9", record(plan)).outcome is Outcome.FAIL


def test_care_plan_activity_without_a_schedule_uses_the_plan_period(evaluate):
    plan = care_plan(care_plan_activity(*THR, None, status="not-started"), period={"start": "2026-05-01"})
    assert evaluate("E9", record(plan)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("plan_kwargs", "activity_status", "expected"),
    [
        ({"status": "completed"}, "scheduled", Outcome.PASS),
        ({"status": "revoked"}, "scheduled", Outcome.PASS),
        ({}, "cancelled", Outcome.PASS),
        ({}, "completed", Outcome.PASS),
        ({}, "on-hold", Outcome.UNKNOWN),
        ({"intent": "proposal"}, "scheduled", Outcome.UNKNOWN),
        ({"status": "draft"}, "scheduled", Outcome.UNKNOWN),
    ],
)
def test_care_plan_and_activity_status(evaluate, plan_kwargs, activity_status, expected):
    plan = care_plan(care_plan_activity(*THR, "2026-09-01", status=activity_status), **plan_kwargs)
    assert evaluate("E9", record(plan)).outcome is expected


def test_care_plan_activity_not_to_be_done_is_nothing(evaluate):
    plan = care_plan(care_plan_activity(*THR, "2026-09-01", doNotPerform=True))
    assert evaluate("E9", record(plan)).outcome is Outcome.PASS


def test_care_plan_reference_to_a_contained_order_counts(evaluate):
    order = service_request(*THR, "2026-09-01", id="inner")
    del order["subject"]
    plan = care_plan({"reference": {"reference": "#inner"}}, contained=[order], id="cp2")
    res = evaluate("E9", record(plan))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("CarePlan/cp2",)


def test_care_plan_reference_to_a_separate_order_counts_once(evaluate):
    order = service_request(*THR, "2026-09-01", id="sep")
    plan = care_plan({"reference": {"reference": "ServiceRequest/sep"}}, id="cp3")
    res = evaluate("E9", record(order, plan))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("ServiceRequest/sep",)


@pytest.mark.parametrize("element", ["serviceType", "reasonCode", "specialty"])
def test_booked_appointment_for_major_surgery_fails(evaluate, element):
    visit = appointment(*THR, "2026-07-15T08:00:00Z", element=element, id="ap")
    res = evaluate("E9", record(visit))
    assert res.outcome is Outcome.FAIL
    assert "Appointment booked; 2026-07-15" in res.reason
    assert res.evidence == ("Appointment/ap",)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("cancelled", Outcome.PASS),  # a cancelled appointment is nothing
        ("noshow", Outcome.PASS),
        ("entered-in-error", Outcome.PASS),
        ("fulfilled", Outcome.PASS),  # done: the Procedure is the record of the operation
        ("proposed", Outcome.UNKNOWN),
        ("pending", Outcome.UNKNOWN),
        ("waitlist", Outcome.UNKNOWN),
        ("arrived", Outcome.FAIL),
    ],
)
def test_appointment_status(evaluate, status, expected):
    assert evaluate("E9", record(appointment(*THR, status=status))).outcome is expected


def test_appointment_requested_period_counts_when_not_yet_booked(evaluate):
    requested = [{"start": "2026-07-01", "end": "2026-07-31"}]
    visit = appointment(*THR, None, status="proposed", requestedPeriod=requested)
    res = evaluate("E9", record(visit))
    assert res.outcome is Outcome.UNKNOWN
    assert "2026-07-01 to 2026-07-31" in res.reason


def test_appointment_the_patient_declined_is_nothing(evaluate):
    visit = appointment(*THR)
    visit["participant"][0]["status"] = "declined"
    assert evaluate("E9", record(visit)).outcome is Outcome.PASS


def test_booked_surgical_clinic_visit_is_a_question_not_an_exclusion(evaluate):
    visit = appointment("http://hospital.example/services", "gs", element="specialty")
    visit["specialty"][0]["text"] = "General surgery"
    assert evaluate("E9", record(visit)).outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(("status", "expected"), [("unknown", Outcome.UNKNOWN), ("stopped", Outcome.FAIL)])
def test_procedure_status_unknown_is_a_question_and_stopped_was_an_operation(evaluate, status, expected):
    assert evaluate("E9", record(procedure(*TKR, "2026-05-01", status=status))).outcome is expected


def test_explain_describes_plans_by_code_status_and_date():
    from fhirscreen.report.describe import describe_resource

    order = service_request(*THR, "2026-08-01", id="o", display="Total replacement of hip")
    assert describe_resource(order) == "ServiceRequest/o: Total replacement of hip, order active, 2026-08-01"
    visit = appointment(*THR, id="a")
    visit["serviceType"][0]["coding"][0]["display"] = "Total replacement of hip"
    assert describe_resource(visit) == "Appointment/a: Total replacement of hip, booked, 2026-08-01"
    plan = care_plan(care_plan_activity("snomed", "302497006"), id="c", period={"start": "2026-05-01"},
                     description="free text the coordinator does not need")
    plan["activity"][0]["detail"]["code"]["coding"][0]["display"] = "Hemodialysis"
    shown = describe_resource(plan)
    assert shown == "CarePlan/c: care plan (Hemodialysis), plan active, 2026-05-01 to ongoing"


def test_surgery_planned_with_intent_plan_is_planned(evaluate):
    # RequestIntent "plan": an intention to ensure it occurs - what "major surgery planned" means (E9),
    # unlike a medication, where only an order is exposure.
    res = evaluate("E9", record(service_request(*THR, "2026-08-01", intent="plan", id="p")))
    assert res.outcome is Outcome.FAIL
    assert "ServiceRequest plan, active" in res.reason


@pytest.mark.parametrize(
    ("performed", "expected"),
    [
        ({"performedString": "2026-05-01"}, Outcome.FAIL),  # a date written as a string
        ({"performedString": "2026-04"}, Outcome.FAIL),  # a month
        ({"performedString": "2025"}, Outcome.PASS),  # a year long before the window
        ({"performedString": "in childhood"}, Outcome.PASS),  # no date: reported, not counted
        ({"performedAge": {"value": 40, "unit": "a"}}, Outcome.PASS),  # too coarse: reported, not counted
    ],
)
def test_performed_string_and_age_encodings(evaluate, performed, expected):
    res = evaluate("E9", record(procedure(*TKR, None, **performed)))
    assert res.outcome is expected
    if "performedAge" in performed or "childhood" in str(performed):
        assert "without a date" in res.reason


def test_undated_order_only_named_like_surgery_is_not_a_question(evaluate):
    lab = service_request(LOCAL, "sp", None, text="Surgical pathology, tissue exam")
    assert evaluate("E9", record(lab)).outcome is Outcome.PASS
    dated = service_request(LOCAL, "sg", "2026-07-01", text="Laparoscopic sleeve gastrectomy", id="g")
    res = evaluate("E9", record(dated))
    assert res.outcome is Outcome.UNKNOWN and "may be major surgery" in res.reason


# --- partial dates (read over their range by screening: criteria/_partial_dates.py) -----------------


@pytest.mark.parametrize("when", ["2026-03", "2026"])
@pytest.mark.parametrize("element", ["performedDateTime", "performedString"])
def test_surgery_dated_by_month_or_year_that_may_be_in_the_window_is_unknown(screen, when, element):
    res = screen("E9", record(procedure(*TKR, None, id="knee", **{element: when})))
    assert res.outcome is Outcome.UNKNOWN
    assert res.reason.startswith(f"Partial date {when} (Procedure/knee)")


def test_surgery_dated_by_a_month_before_the_window_passes(screen):
    assert screen("E9", record(procedure(*TKR, None, performedString="2026-02"))).outcome is Outcome.PASS
