"""E5 (investigational agent) and E6 (immunomodulatory biologic) washouts, with the dates they end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fhirscreen.criteria.base import Outcome
from fhirscreen.criteria.washout import washout_days
from tests.builders import (
    AS_OF,
    concept,
    condition,
    medication_administration,
    medication_request,
    medication_statement,
    procedure,
    record,
)

BELIMUMAB = "1092437"
RITUXIMAB = "121191"


def ago(days: int) -> str:
    return (AS_OF - timedelta(days=days)).isoformat()


def after(days: int) -> str:
    return (AS_OF + timedelta(days=days)).isoformat()


# ------------------------------------------------------------------------------------------- E6


def test_washout_days_is_max_of_floor_and_five_half_lives_without_float_noise():
    assert washout_days(19.4, 5, 90) == 97
    assert washout_days(23, 5, 90) == 115
    assert washout_days(4.25, 5, 90) == 90


@pytest.mark.parametrize(("days_ago", "expected"), [(96, Outcome.FAIL), (97, Outcome.PASS)])
def test_e6_belimumab_five_half_lives_is_97_days(evaluate, days_ago, expected):
    ma = medication_administration(BELIMUMAB, ago(days_ago), display="belimumab 400 MG Injection", id="bel")
    res = evaluate("E6", record(ma))
    assert res.outcome is expected
    ends = (AS_OF + timedelta(days=97 - days_ago)).isoformat()
    assert res.details["washout_ends"] == ends
    assert ends in res.reason
    assert res.evidence == ("MedicationAdministration/bel",)


def test_e6_rituximab_uses_115_days(evaluate):
    res = evaluate("E6", record(medication_administration(RITUXIMAB, ago(100), display="rituximab")))
    assert res.outcome is Outcome.FAIL
    assert res.details["washout_ends"] == after(15)
    assert "115 days" in res.reason


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [(80, Outcome.FAIL), (100, Outcome.UNKNOWN), (179, Outcome.UNKNOWN), (181, Outcome.PASS)],
)
def test_e6_unknown_half_life_zones(evaluate, days_ago, expected):
    given = medication_administration(
        "0", ago(days_ago), system="http://example.org/drugs", display="Saphnelo 300 mg IV"
    )
    res = evaluate("E6", record(given))
    assert res.outcome is expected
    assert "washout_ends" in res.details


@pytest.mark.parametrize("status", ["stopped", "completed", "on-hold"])
def test_e6_order_ended_without_an_end_date_may_have_run_into_the_washout(evaluate, status):
    order = medication_request(
        BELIMUMAB, ago(300), status=status, display="belimumab 10 MG/KG IV monthly", id="bel"
    )
    res = evaluate("E6", record(order))
    assert res.outcome is Outcome.UNKNOWN
    assert (f"belimumab (belimumab 10 MG/KG IV monthly) on {ago(300)} is {status} with no end date "
            f"(MedicationRequest/bel): the last dose date is not recorded and may be as late as "
            f"{AS_OF.isoformat()}; the 97-day washout would then end {after(97)}") in res.reason
    assert res.evidence == ("MedicationRequest/bel",)


def test_e6_order_without_an_end_date_long_enough_ago_is_washed_out_however_long_it_ran(evaluate):
    # Up to a year after the order (the unstated course length), plus 97 days, is before screening.
    order = medication_request(BELIMUMAB, ago(366 + 97), status="stopped", display="belimumab")
    assert evaluate("E6", record(order)).outcome is Outcome.PASS


def test_e6_order_without_an_end_date_followed_by_a_later_dose_is_bounded_by_it(evaluate):
    order = medication_request(BELIMUMAB, ago(300), status="stopped", display="belimumab")
    later = medication_administration(BELIMUMAB, ago(200), display="belimumab")
    res = evaluate("E6", record(order, later))
    assert res.outcome is Outcome.PASS
    assert f"last dose {ago(200)}" in res.reason


def test_e6_order_without_an_end_date_and_a_recent_dose_still_fails(evaluate):
    order = medication_request(BELIMUMAB, ago(300), status="stopped", display="belimumab")
    recent = medication_administration(BELIMUMAB, ago(30), display="belimumab")
    assert evaluate("E6", record(order, recent)).outcome is Outcome.FAIL


def test_e6_active_order_without_end_is_ongoing(evaluate):
    res = evaluate("E6", record(medication_request(BELIMUMAB, ago(300), display="belimumab")))
    assert res.outcome is Outcome.FAIL
    assert "ongoing" in res.reason


def test_e6_statement_end_is_the_last_dose(evaluate):
    ms = medication_statement(RITUXIMAB, "2025-01-01", ago(120), status="completed", display="rituximab-abbs")
    res = evaluate("E6", record(ms))
    assert res.outcome is Outcome.PASS
    assert res.details["washout_ends"] == ago(5)


def test_e6_latest_dose_of_the_same_drug_decides(evaluate):
    rec = record(
        medication_administration(BELIMUMAB, ago(200)), medication_administration(BELIMUMAB, ago(30))
    )
    res = evaluate("E6", rec)
    assert res.outcome is Outcome.FAIL
    assert res.details["washout_ends"] == after(67)


def test_e6_reports_the_latest_washout_end_over_several_biologics(evaluate):
    rec = record(medication_administration(BELIMUMAB, ago(50)), medication_administration(RITUXIMAB, ago(50)))
    res = evaluate("E6", rec)
    assert res.details["washout_ends"] == after(65)
    assert len(res.details["washouts"]) == 2


def test_e6_separate_medication_reference(evaluate):
    med = {
        "resourceType": "Medication",
        "id": "rtx",
        "code": concept("rxnorm", "1000000", "Truxima 500 MG/50ML"),
    }
    ma = medication_administration("0", ago(10))
    del ma["medicationCodeableConcept"]
    ma["medicationReference"] = {"reference": "Medication/rtx"}
    assert evaluate("E6", record(med, ma)).outcome is Outcome.FAIL


def test_e6_infusion_billed_as_a_procedure_with_the_biologics_j_code_is_a_dose(evaluate):
    billed = procedure("hcpcs", "J9312", ago(60), display="Injection, rituximab, 10 mg", id="rtx")
    res = evaluate("E6", record(billed))
    assert res.outcome is Outcome.FAIL
    assert f"rituximab (Injection, rituximab, 10 mg) last dose {ago(60)}" in res.reason
    assert "115 days ends" in res.reason and res.evidence == ("Procedure/rtx",)


def test_e6_undated_j_code_procedure_is_unknown_and_a_planned_one_is_not_a_dose(evaluate):
    undated = procedure("hcpcs", "J0490", None, display="Injection, belimumab, 10 mg", id="bel")
    res = evaluate("E6", record(undated))
    assert res.outcome is Outcome.UNKNOWN and "without a date" in res.reason
    planned = procedure(
        "hcpcs", "J0490", ago(10), status="preparation", display="Injection, belimumab, 10 mg"
    )
    assert evaluate("E6", record(planned)).outcome is Outcome.PASS


def test_e6_no_biologic_passes(evaluate):
    res = evaluate("E6", record(medication_request("5521", ago(300))))
    assert res.outcome is Outcome.PASS
    assert "No immunomodulatory biologic" in res.reason


def test_e6_denosumab_is_reported_not_counted(evaluate):
    res = evaluate("E6", record(medication_administration("0", ago(10), display="Prolia 60 MG/ML")))
    assert res.outcome is Outcome.PASS
    assert "Not counted" in res.reason


LOCAL = "http://example.org/drugs"


@pytest.mark.parametrize(
    ("display", "system", "code"),
    [
        ("Thymoglobulin 25 MG Injection", LOCAL, "0"),
        ("anti-thymocyte globulin (rabbit) 1.5 mg/kg IV", LOCAL, "0"),
        # equine ATG's name holds "immune globulin": a biologic counted, not immune globulin reported
        ("lymphocyte immune globulin, anti-thymocyte globulin (equine) 50 MG/ML", LOCAL, "0"),
        ("", "http://www.whocc.no/atc", "L04AA04"),
    ],
)
@pytest.mark.parametrize(
    ("days_ago", "expected"), [(30, Outcome.FAIL), (120, Outcome.UNKNOWN), (200, Outcome.PASS)]
)
def test_e6_anti_thymocyte_globulin_is_a_biologic_without_a_stated_half_life(
    evaluate, display, system, code, days_ago, expected
):
    """ATG (a transplant induction or rejection drug a lupus nephritis patient may have had) is a commercially
    available biologic that depletes lymphocytes: the unknown-half-life rule (labels state none that the
    washout could use), never a pass within 90 days."""
    given = medication_administration(code, ago(days_ago), system=system, display=display, id="atg")
    res = evaluate("E6", record(given))
    assert res.outcome is expected, res.reason
    assert res.evidence == ("MedicationAdministration/atg",)
    assert "Not counted" not in res.reason


def test_e6_doses_after_screening_are_ignored(evaluate):
    assert evaluate("E6", record(medication_administration(BELIMUMAB, after(3)))).outcome is Outcome.PASS


# ------------------------------------------------------------------------------------------- E5


def research_subject(
    status: str,
    study: str = "ResearchStudy/NCT01234567",
    start: str | None = "2025-01-01",
    end: str | None = None,
    rid: str = "rs1",
):
    rs = {
        "resourceType": "ResearchSubject",
        "id": rid,
        "status": status,
        "study": {"reference": study},
        "individual": {"reference": "Patient/p1"},
    }
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        rs["period"] = period
    return rs


def test_e5_on_another_study_fails(evaluate):
    res = evaluate("E5", record(research_subject("on-study")))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("ResearchSubject/rs1",)
    assert "may be longer" in res.reason


def test_e5_this_study_is_not_another_study(evaluate):
    res = evaluate("E5", record(research_subject("on-study", study="ResearchStudy/NCT06737380")))
    assert res.outcome is Outcome.PASS


@pytest.mark.parametrize(("end_ago", "expected"), [(89, Outcome.FAIL), (90, Outcome.PASS)])
def test_e5_dosing_study_ended_within_90_days(evaluate, end_ago, expected):
    res = evaluate("E5", record(research_subject("on-study-intervention", end=ago(end_ago))))
    assert res.outcome is expected
    assert res.details["washout_ends"] == (AS_OF + timedelta(days=90 - end_ago)).isoformat()


def test_e5_follow_up_without_dates_is_unknown(evaluate):
    res = evaluate("E5", record(research_subject("follow-up")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.next_step


def test_e5_off_study_long_ago_passes(evaluate):
    res = evaluate("E5", record(research_subject("off-study", end=ago(200))))
    assert res.outcome is Outcome.PASS
    assert res.details["washout_ends"] == ago(110)


def test_e5_candidate_was_not_dosed(evaluate):
    res = evaluate("E5", record(research_subject("candidate")))
    assert res.outcome is Outcome.PASS
    assert "not dosed" in res.reason


def test_e5_investigational_product_by_name(evaluate):
    ma = medication_administration(
        "0", ago(30), system="http://example.org/drugs", display="Study drug ABC-1234 or placebo", id="ip"
    )
    res = evaluate("E5", record(ma))
    assert res.outcome is Outcome.FAIL
    assert res.details["washout_ends"] == after(60)
    assert after(60) in res.reason


def test_e5_study_drug_order_stopped_without_an_end_date_is_unknown(evaluate):
    order = medication_request(
        "0", ago(200), status="stopped", system="http://example.org/drugs",
        display="Study drug ABC-1234 or placebo", id="ip",
    )
    res = evaluate("E5", record(order))
    assert res.outcome is Outcome.UNKNOWN
    assert (f"is stopped with no end date (MedicationRequest/ip): the last dose date is not recorded and may "
            f"be as late as {AS_OF.isoformat()}; the washout would then end {after(90)}") in res.reason


def test_e5_research_study_extension_on_a_medication_record(evaluate):
    ext = [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy",
            "valueReference": {"reference": "ResearchStudy/other"},
        }
    ]
    ms = medication_statement("5521", "2025-01-01", ago(10), status="completed", extension=ext)
    assert evaluate("E5", record(ms)).outcome is Outcome.FAIL


def test_e5_trial_participant_code_alone_is_unknown(evaluate):
    rec = record(condition("snomed", "428024001", ago(40), id="ctp"))
    res = evaluate("E5", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert res.evidence == ("Condition/ctp",)


@pytest.mark.parametrize(
    "display",
    [
        "predniSONE 20 MG Oral Tablet",
        "24 HR tacrolimus 1 MG Extended Release Oral Capsule",
        "hydroxychloroquine sulfate 200 MG Oral Tablet",
        "Influenza, seasonal, injectable, preservative free",
    ],
)
def test_e5_ordinary_drugs_are_not_investigational(evaluate, display):
    res = evaluate("E5", record(medication_request("1", ago(10), display=display)))
    assert res.outcome is Outcome.PASS
    assert "No investigational agent" in res.reason


def test_e5_rxnorm_fda_application_names_are_not_investigational_codes(evaluate):
    # Synthea (RxNorm) names approved products after their application: "NDA020503 200 ACTUAT Albuterol
    # ...", "BLA..."; the development-code pattern must not take them for an investigational product.
    name = "NDA020503 200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"
    albuterol = medication_request("2123111", "2026-05-20", id="alb", display=name)
    res = evaluate("E5", record(albuterol))
    assert res.outcome is Outcome.PASS
    assert "Investigational product" not in res.reason
    local = "http://hospital.example.org/formulary"
    coded = medication_request("9", "2026-05-20", id="abc", system=local, display="ABC-1234 100 MG Tablet")
    assert evaluate("E5", record(coded)).outcome is Outcome.FAIL


# --- partial dates (read over their range by screening: criteria/_partial_dates.py) -----------------


@pytest.mark.parametrize("when", ["2026-02", "2026"])
def test_e6_dose_dated_by_month_or_year_that_may_be_in_the_washout_is_unknown(screen, when):
    # 2026-02-01 + 115 days is before screening, 2026-02-28 + 115 days after it.
    res = screen("E6", record(medication_administration(RITUXIMAB, when, id="rtx")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.reason.startswith(f"Partial date {when} (MedicationAdministration/rtx)")
    assert res.next_step == f"Confirm the exact date of {when} (MedicationAdministration/rtx)."


def test_e6_dose_dated_by_a_month_washed_out_on_every_day_of_it_passes(screen):
    res = screen("E6", record(medication_administration(RITUXIMAB, "2025-06", id="rtx")))
    assert res.outcome is Outcome.PASS
    assert "last dose 2025-06-30" in res.reason and "read above as 2025-06-30" in res.reason


@pytest.mark.parametrize(
    "why",
    [
        "withdrew after 3 doses; not treated further",
        "Withdrawn following the first infusion",
        "received two doses, then withdrew consent",
        "not dosed again after week 4",
    ],
)
def test_e5_a_withdrawal_whose_note_states_doses_given_is_dosing(evaluate, why):
    """'Not treated further' follows a dose: not 'withdrawn before any intervention'. Doses given: after
    dosing (the last dose date is not recorded: unknown)."""
    rs = {**research_subject("withdrawn", start=ago(60)), "note": [{"text": why}]}
    res = evaluate("E5", record(rs))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "before any intervention" not in res.reason
    if "again" not in why:
        assert "withdrawn after dosing" in res.reason


@pytest.mark.parametrize(
    "why",
    ["withdrawn before randomization", "Screen failure", "never dosed", "not treated", "withdrew; not dosed"],
)
def test_e5_a_withdrawal_before_any_intervention_is_not_dosing(evaluate, why):
    rs = {**research_subject("withdrawn", start=ago(60)), "note": [{"text": why}]}
    res = evaluate("E5", record(rs))
    assert res.outcome is Outcome.PASS, res.reason
    assert "withdrawn before any intervention" in res.reason


@pytest.mark.parametrize("status", ["on-study", "on-study-intervention", "pending-on-study"])
def test_e5_another_study_starting_after_the_screening_date_is_a_question(evaluate, status):
    """Enrolled in another interventional study from a later day: its agent may come before Day 0."""
    res = evaluate("E5", record(research_subject(status, start=after(9))))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.next_step
    assert evaluate("E5", record(research_subject("candidate", start=after(9)))).outcome is Outcome.PASS
