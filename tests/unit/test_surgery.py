"""E9: major surgery within 90 days before screening (Baseline unknown), or planned; minor never counts."""

from __future__ import annotations

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import procedure, record

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
    assert "without a date" in res.reason
    assert res.evidence == ("Procedure/u",)


@pytest.mark.parametrize("status", ["entered-in-error", "not-done"])
def test_major_surgery_dropped_by_hygiene_does_not_count(evaluate, status):
    assert evaluate("E9", record(procedure(*TKR, "2026-05-01", status=status))).outcome is Outcome.PASS
