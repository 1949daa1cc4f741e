"""Partial dates ("2026-03", "2026") are read over every day they can mean (criteria/_partial_dates.py)."""

from __future__ import annotations

from datetime import date

from fhirscreen.criteria._partial_dates import latest_known, partial_dates, read_at
from fhirscreen.criteria.base import Outcome
from fhirscreen.fhir.dates import parse_date
from tests.builders import (
    AS_OF,
    concept,
    condition,
    medication_request,
    patient,
    procedure,
    record,
    service_request,
)

TKR = ("snomed", "609588000")  # Total knee replacement (major surgery, E9)


def test_a_partial_date_is_the_range_of_days_it_can_mean():
    march = parse_date("2026-03")
    assert march is not None and (march.earliest, march.latest) == (date(2026, 3, 1), date(2026, 3, 31))
    year = parse_date("2026")
    assert year is not None and (year.earliest, year.latest) == (date(2026, 1, 1), date(2026, 12, 31))
    assert not march.exact and parse_date("2026-03-31T10:00:00Z").exact  # type: ignore[union-attr]


def test_latest_known_day_stops_at_the_screening_date_unless_the_whole_range_is_after_it():
    read = latest_known(AS_OF)
    assert read(parse_date("2026-02")) == date(2026, 2, 28)  # type: ignore[arg-type]
    assert read(parse_date("2026")) == AS_OF  # type: ignore[arg-type]
    assert read(parse_date("2026-08")) == date(2026, 8, 31)  # type: ignore[arg-type]


def test_partial_dates_are_found_only_in_date_elements():
    # An RxNorm code "5521" or a year-like text is not a date; a Period start, a Timing event and a
    # performedString are.
    req = medication_request("5521", "2026-03", id="hcq")
    req["dosageInstruction"] = [{"text": "2026", "timing": {"event": ["2025"], "repeat": {
        "boundsPeriod": {"start": "2025-11"}}}}]
    surgery = procedure(*TKR, None, id="knee", performedString="2026-04")
    rec = record(patient(birth="1985"), req, surgery, condition("snomed", "55464009", "2015-01-01T00:00:00Z"))
    found = {(p.ref, p.when.text) for p in partial_dates(rec)}
    assert found == {
        ("MedicationRequest/hcq", "2026-03"), ("MedicationRequest/hcq", "2025"),
        ("MedicationRequest/hcq", "2025-11"), ("Procedure/knee", "2026-04"),
    }  # the Patient's birth date is the age criterion's own range


def test_reading_rewrites_only_partial_dates_and_shares_the_rest():
    rec = record(procedure(*TKR, "2026-03", id="knee"), procedure(*TKR, "2026-01-05", id="old"))
    read = read_at(rec, latest_known(AS_OF))
    held = {p["id"]: p for p in rec.of_type("Procedure")}
    rewritten = {p["id"]: p for p in read.of_type("Procedure")}
    assert rewritten["knee"]["performedDateTime"] == "2026-03-31"
    assert rewritten["knee"]["code"] is held["knee"]["code"]
    assert rewritten["old"] is held["old"]
    assert held["knee"]["performedDateTime"] == "2026-03"  # the record itself is unchanged
    assert read.patient is rec.patient


def test_a_record_with_complete_dates_is_screened_as_written(screen, evaluate):
    rec = record(procedure(*TKR, "2026-03-15", id="knee"))
    assert screen("E9", rec) == evaluate("E9", rec)


def test_unknown_names_the_partial_date_and_what_each_reading_gives(screen):
    res = screen("E9", record(procedure(*TKR, "2026-03", id="knee")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.reason.startswith(
        "Partial date 2026-03 (Procedure/knee), any day from 2026-03-01 to 2026-03-31: "
        "the outcome depends on the day."
    )
    assert "Read as 2026-03-01: pass." in res.reason and "Read as 2026-03-31: fail." in res.reason
    assert res.next_step == "Confirm the exact date of 2026-03 (Procedure/knee)."
    assert res.evidence == ("Procedure/knee",)
    assert res.details["partial_dates"] == [
        {"reference": "Procedure/knee", "date": "2026-03", "earliest": "2026-03-01", "latest": "2026-03-31"}
    ]


def test_a_range_that_decides_keeps_its_outcome_and_says_which_day_the_dates_are(screen):
    res = screen("E9", record(procedure(*TKR, "2025-10", id="knee")))
    assert res.outcome is Outcome.PASS
    assert res.reason.endswith(
        "(Partial date 2025-10 (Procedure/knee), any day from 2025-10-01 to 2025-10-31: read above as "
        "2025-10-31; every day it can mean gives the same outcome.)"
    )


def test_a_partial_date_the_criterion_does_not_cite_leaves_its_reason_alone(screen, evaluate):
    rec = record(procedure(*TKR, "2026-01-05", id="knee"), condition("snomed", "38341003", "2019"))
    assert screen("E9", rec).reason == evaluate("E9", rec).reason


def test_a_plan_dated_by_year_may_be_before_or_after_the_screening_date(screen):
    res = screen("E9", record(service_request(*TKR, "2026", id="plan")))
    assert res.outcome is Outcome.UNKNOWN
    assert "Read as 2026-01-01: pass." in res.reason and "Read as 2026-06-01: fail." in res.reason


def test_a_code_or_text_like_a_year_is_not_read_as_a_date():
    req = medication_request("2026", "2026-03-01", id="x", note=[{"text": "2026"}])
    req["medicationCodeableConcept"] = concept("rxnorm", "2026", text="2026")
    assert partial_dates(record(req)) == ()
