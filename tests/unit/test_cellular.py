"""E7 (MSC therapy within 52 weeks) and E8 (any other cellular therapy, ever; HSCT unknown)."""

from __future__ import annotations

from datetime import date

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import (
    condition,
    medication_administration,
    medication_dispense,
    medication_request,
    medication_statement,
    procedure,
    record,
)

LOCAL = "http://hospital.example/procedures"  # a site's own code system: only the text can match


def msc_dose(when: str | None, **kw):
    return medication_administration("local-1", when, system=LOCAL, display="Remestemcel-L infusion", **kw)


# --- E7 -------------------------------------------------------------------------------------------------

def test_no_msc_on_record_passes_and_says_it_is_rarely_coded(evaluate):
    res = evaluate("E7", record())
    assert res.outcome is Outcome.PASS
    assert "rarely coded" in res.reason


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2025-06-02", Outcome.FAIL),  # 364 days before 2026-06-01: inside 52 weeks
        ("2025-06-01", Outcome.PASS),  # 365 days
        ("2026-06-01", Outcome.FAIL),  # on the screening date
        ("2026-06-02", Outcome.PASS),  # after screening: not known at screening
    ],
)
def test_52_week_window_edges(evaluate, when, expected):
    assert evaluate("E7", record(msc_dose(when))).outcome is expected


def test_msc_in_the_window_reports_when_the_washout_ends(evaluate):
    res = evaluate("E7", record(msc_dose("2025-06-02", id="m1")))
    assert res.outcome is Outcome.FAIL
    assert res.details["washout_ends"] == "2026-06-01"
    assert res.details["eligible_from"] == "2026-06-02"
    assert "2026-06-01" in res.reason and "Day 0 from 2026-06-02" in res.reason
    assert res.evidence == ("MedicationAdministration/m1",)


def test_older_msc_passes_with_the_date_of_the_last_dose(evaluate):
    res = evaluate("E7", record(msc_dose("2024-01-10", id="old")))
    assert res.outcome is Outcome.PASS
    assert "2024-01-10" in res.reason and "more than 52 weeks" in res.reason
    assert res.details["washout_ends"] == "2025-01-08"  # + 364 days (2024 is a leap year)
    assert res.evidence == ("MedicationAdministration/old",)


@pytest.mark.parametrize(
    "text",
    ["Infusion of umbilical cord mesenchymal stromal cells", "UC-MSC infusion", "hUC-MSCs, single dose",
     "Allogeneic mesenchymal stem cell therapy", "Wharton's jelly derived cells",
     "Bone marrow mesenchymal-stem cells"],
)
def test_msc_procedure_text_variants_fail(evaluate, text):
    assert evaluate("E7", record(procedure(LOCAL, "x1", "2026-01-05", text=text))).outcome is Outcome.FAIL


def test_msc_named_in_a_contained_medication_fails(evaluate):
    req = medication_request("x", "2026-02-01", id="r1")
    del req["medicationCodeableConcept"]
    med = {"resourceType": "Medication", "id": "med", "code": {"text": "Ryoncil (remestemcel-L)"}}
    req["contained"] = [med]
    req["medicationReference"] = {"reference": "#med"}
    res = evaluate("E7", record(req))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("MedicationRequest/r1",)


def test_msc_statement_period_ending_in_the_window_fails(evaluate):
    stmt = medication_statement("x", "2025-01-01", "2025-07-01", system=LOCAL, display="MSC therapy")
    assert evaluate("E7", record(stmt)).outcome is Outcome.FAIL


def test_mesenchymal_tumour_diagnosis_is_not_msc_therapy(evaluate):
    cond = condition("snomed", "404037004", "2026-01-01", display="Mesenchymal chondrosarcoma")
    assert evaluate("E7", record(cond)).outcome is Outcome.PASS


def test_undated_msc_is_unknown(evaluate):
    res = evaluate("E7", record(medication_statement("x", None, system=LOCAL, display="MSC infusion")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.next_step and "date" in res.next_step


def test_unspecified_cellular_therapy_history_recorded_in_the_window_is_unknown(evaluate):
    res = evaluate("E7", record(condition("icd10cm", "Z92.858", "2026-01-01", id="h")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.evidence == ("Condition/h",)


def test_unspecified_cellular_therapy_history_recorded_long_ago_passes(evaluate):
    assert evaluate("E7", record(condition("icd10cm", "Z92.858", "2020-01-01"))).outcome is Outcome.PASS


def test_entered_in_error_msc_record_is_ignored(evaluate):
    assert evaluate("E7", record(msc_dose("2026-01-01", status="entered-in-error"))).outcome is Outcome.PASS


@pytest.mark.parametrize("status", ["preparation", "on-hold"])
def test_msc_procedure_not_yet_given_is_not_msc_therapy_and_is_named(evaluate, status):
    # R4 EventStatus: preparation/on-hold is not done; E2 and E9 read the status the same way.
    proc = procedure(LOCAL, "x", "2026-05-20", text="UC-MSC infusion", status=status, id="p")
    res = evaluate("E7", record(proc))
    assert res.outcome is Outcome.PASS, res.reason
    said = f"Recorded as not yet given (not counted): UC-MSC infusion (2026-05-20), status {status}."
    assert said in res.reason
    assert res.evidence == ("Procedure/p",)


def test_msc_procedure_of_status_unknown_in_the_window_is_a_question(evaluate):
    proc = procedure(LOCAL, "x", "2026-03-01", text="UC-MSC infusion", status="unknown", id="p")
    res = evaluate("E7", record(proc))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.reason.startswith("MSC therapy recorded with status unknown: UC-MSC infusion (2026-03-01)")
    assert res.evidence == ("Procedure/p",)
    assert res.next_step and "was given" in res.next_step


def test_msc_procedure_of_status_unknown_before_the_window_passes(evaluate):
    proc = procedure(LOCAL, "x", "2024-03-01", text="UC-MSC infusion", status="unknown")
    assert evaluate("E7", record(proc)).outcome is Outcome.PASS


def msc_order(**kw):
    return medication_request("x", "2026-03-01", system=LOCAL, display="Remestemcel-L infusion", **kw)


@pytest.mark.parametrize(
    "resource",
    [
        msc_order(intent="proposal"),
        msc_order(intent="plan"),
        msc_order(intent="option"),
        msc_order(doNotPerform=True),
        medication_statement("x", "2026-03-01", system=LOCAL, display="Remestemcel-L", status="intended"),
        medication_dispense("x", None, system=LOCAL, display="Remestemcel-L", status="preparation"),
    ],
    ids=["proposal", "plan", "option", "do-not-perform", "statement-intended", "fill-not-handed-over"],
)
def test_msc_planned_refused_or_not_handed_over_is_not_msc_therapy(evaluate, resource):
    # The same rule the medication criteria apply (README "Resource hygiene everywhere").
    res = evaluate("E7", record(resource))
    assert res.outcome is Outcome.PASS, res.reason
    assert "No MSC therapy on record in the last 52 weeks" in res.reason


def test_msc_fill_handed_over_in_the_window_fails(evaluate):
    fill = medication_dispense("x", "2026-03-01", days_supply=1, system=LOCAL, display="Remestemcel-L",
                               id="f")
    res = evaluate("E7", record(fill))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "MSC therapy within 52 weeks before screening: Remestemcel-L (2026-03-01)" in res.reason
    assert res.evidence == ("MedicationDispense/f",)


# --- E8 -------------------------------------------------------------------------------------------------

def test_no_cellular_therapy_passes(evaluate):
    res = evaluate("E8", record())
    assert res.outcome is Outcome.PASS
    assert "No cellular therapy" in res.reason


@pytest.mark.parametrize(
    "resource",
    [
        condition("icd10cm", "Z92.850", "2019-01-01"),
        medication_administration("1986438", "2015-03-01"),  # tisagenlecleucel, RxNorm
        procedure("cpt", "0540T", "2021-05-01"),
        procedure("cpt", "38228", "2025-05-01"),
        procedure("hcpcs", "Q2054", "2025-05-01"),
        procedure("icd10pcs", "XW033C3", "2022-05-01"),
        procedure(LOCAL, "x", "2024-01-01", text="CD19 CAR-T cell infusion"),
        procedure(LOCAL, "x", "2024-01-01", text="Autologous polyclonal Treg infusion"),
        medication_request("x", "2024-01-01", system=LOCAL, display="Carvykti"),
        procedure(LOCAL, "x", "2010-01-01", text="Tumor-infiltrating lymphocyte therapy"),
    ],
)
def test_any_non_msc_cellular_therapy_fails_at_any_time(evaluate, resource):
    res = evaluate("E8", record(resource))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == (f"{resource['resourceType']}/{resource['id']}",)


@pytest.mark.parametrize(
    "text",
    [
        "CART19 infusion",
        "CAR-T19 cells",
        "car-t infusion",
        "CD19 CAR-NK cell infusion",
        "BCMA CAR T cells",
        "Allogeneic NK cell infusion",
        "Infusion of haploidentical natural killer cells",
        "Cytokine-induced killer cell therapy",
        "Dendritic cell vaccine",
        "Virus-specific T cells (VST) infusion",
        "EBV-specific CTL infusion",
        "Donor lymphocyte infusion",
        "TIL therapy",
        "TCR-T cell therapy",
        "Adoptive cell transfer",
        "Regulatory T cells infusion",
    ],
)
def test_the_class_of_cellular_therapies_by_name_fails(evaluate, text):
    res = evaluate("E8", record(procedure(LOCAL, "x", "2022-01-01", text=text, id="cell")))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "Previous cellular therapy on record" in res.reason and text in res.reason
    assert res.evidence == ("Procedure/cell",)


@pytest.mark.parametrize(
    "text",
    [
        "Crash cart check",
        "NK cell count",
        "Lymphocyte subsets: NK cells (CD16+CD56+)",
        "T-SPOT.TB Mycobacterium tuberculosis-specific T cell response",
        "CMV-specific T cell immunity assay",
        "Blastic plasmacytoid dendritic cell neoplasm",
        "Car accident",
        "T cell lymphoma",
    ],
)
def test_tests_diagnoses_and_words_near_the_cellular_names_are_not_cellular_therapy(evaluate, text):
    res = evaluate("E8", record(procedure(LOCAL, "x", "2022-01-01", text=text)))
    assert res.outcome is Outcome.PASS, res.reason


@pytest.mark.parametrize(
    "text", ["UC-MSC infusion", "Infusion of umbilical cord-derived mesenchymal-stromal cells"]
)
def test_msc_infusions_are_excepted_from_the_wider_class(evaluate, text):
    res = evaluate("E8", record(procedure(LOCAL, "x", "2022-01-01", text=text)))
    assert res.outcome is Outcome.PASS
    assert "excepted" in res.reason


def test_undated_car_t_still_fails(evaluate):
    assert evaluate("E8", record(procedure("cpt", "0540T", None))).outcome is Outcome.FAIL


@pytest.mark.parametrize("status", ["preparation", "on-hold"])
def test_car_t_procedure_not_yet_given_is_not_previous_therapy_and_is_named(evaluate, status):
    res = evaluate("E8", record(procedure("cpt", "38228", "2026-05-20", status=status, id="p")))
    assert res.outcome is Outcome.PASS, res.reason
    assert "Recorded as not yet given (not counted)" in res.reason and f"status {status}" in res.reason
    assert res.evidence == ("Procedure/p",)


def test_car_t_procedure_of_status_unknown_is_a_question(evaluate):
    res = evaluate("E8", record(procedure("cpt", "38228", "2024-01-01", status="unknown", id="p")))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.reason.startswith("Cellular therapy recorded with status unknown:")
    assert "whether it was given is a question" in res.reason
    assert res.evidence == ("Procedure/p",)
    assert res.next_step == "Confirm whether the cellular therapy recorded with status unknown was given."


def test_stem_cell_transplant_of_status_unknown_is_still_unknown(evaluate):
    proc = procedure("cpt", "38241", "2019-05-02", status="unknown")
    res = evaluate("E8", record(proc))
    assert res.outcome is Outcome.UNKNOWN
    assert "Haematopoietic stem-cell transplant" in res.reason


def test_msc_procedure_of_status_unknown_is_excepted_from_the_wider_class(evaluate):
    proc = procedure(LOCAL, "x", "2022-01-01", text="UC-MSC infusion", status="unknown")
    assert evaluate("E8", record(proc)).outcome is Outcome.PASS


def car_t_order(**kw):
    return medication_request("x", "2024-01-01", system=LOCAL, display="Carvykti", **kw)


@pytest.mark.parametrize(
    "resource",
    [
        car_t_order(intent="proposal"),
        car_t_order(intent="plan"),
        car_t_order(intent="directive"),
        car_t_order(doNotPerform=True),
        medication_statement("x", "2024-01-01", system=LOCAL, display="Carvykti", status="intended"),
        medication_dispense("x", None, system=LOCAL, display="Carvykti", status="on-hold"),
    ],
    ids=["proposal", "plan", "directive", "do-not-perform", "statement-intended", "fill-not-handed-over"],
)
def test_car_t_planned_refused_or_not_handed_over_is_not_previous_therapy(evaluate, resource):
    res = evaluate("E8", record(resource))
    assert res.outcome is Outcome.PASS, res.reason
    assert res.reason == "No cellular therapy (CAR-T, Tregs or other) on record."


def test_car_t_fill_handed_over_fails(evaluate):
    fill = medication_dispense("x", "2024-01-01", system=LOCAL, display="Carvykti", id="f")
    res = evaluate("E8", record(fill))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "Previous cellular therapy on record: Carvykti" in res.reason
    assert res.evidence == ("MedicationDispense/f",)


@pytest.mark.parametrize(
    "resource",
    [
        procedure("snomed", "58776007", "2019-05-02", display="Autologous bone marrow transplant"),  # Synthea
        condition("icd10cm", "Z94.84", "2019-05-02"),
        condition("snomed", "153351000119102", "2019-05-02"),  # Synthea history of PBSC transplant
        procedure("cpt", "38241", "2019-05-02"),
        procedure("icd10pcs", "30243Y0", "2019-05-02"),
    ],
)
def test_haematopoietic_stem_cell_transplant_is_unknown(evaluate, resource):
    res = evaluate("E8", record(resource))
    assert res.outcome is Outcome.UNKNOWN
    assert "Haematopoietic stem-cell transplant" in res.reason
    assert res.details["hsct"] is True and res.next_step


def test_unspecified_cellular_therapy_is_unknown(evaluate):
    res = evaluate("E8", record(condition("icd10cm", "Z92.859", "2022-01-01")))
    assert res.outcome is Outcome.UNKNOWN
    assert "unstated type" in res.reason


def test_previous_msc_is_excepted(evaluate):
    res = evaluate("E8", record(msc_dose("2020-01-01", id="m")))
    assert res.outcome is Outcome.PASS
    assert "excepted" in res.reason
    assert res.evidence == ("MedicationAdministration/m",)


def test_car_t_alongside_msc_still_fails(evaluate):
    rec = record(msc_dose("2020-01-01"), procedure("cpt", "38228", "2023-01-01", id="car"))
    res = evaluate("E8", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Procedure/car",)


@pytest.mark.parametrize(
    "text",
    ["Cartilage repair", "Anti-T cell therapy (antithymocyte globulin)", "Carotid ultrasound",
     "Treatment until resolution"],
)
def test_ordinary_words_do_not_look_like_cellular_therapy(evaluate, text):
    assert evaluate("E8", record(procedure(LOCAL, "x", "2026-01-01", text=text))).outcome is Outcome.PASS


def test_car_t_after_the_screening_date_is_ignored(evaluate):
    assert evaluate("E8", record(procedure("cpt", "38228", "2026-06-02"))).outcome is Outcome.PASS


def test_entered_in_error_car_t_history_is_ignored(evaluate):
    cond = condition("icd10cm", "Z92.850", "2019-01-01", verification="entered-in-error")
    assert evaluate("E8", record(cond)).outcome is Outcome.PASS


def test_msc_dated_by_a_year_that_may_be_in_the_washout_is_unknown(screen):
    res = screen("E7", record(msc_dose("2025", id="msc")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.next_step == "Confirm the exact date of 2025 (MedicationAdministration/msc)."


# --- E8: a combined therapy is not excepted as MSC ------------------------------------------------------

COMBINED = "MSC and regulatory T cell co-infusion"


@pytest.mark.parametrize(
    "resource",
    [
        procedure(LOCAL, "x", "2022-01-01", text=COMBINED, id="c"),
        medication_administration("x", "2022-01-01", system=LOCAL, display=COMBINED, id="c"),
        medication_statement("x", "2022-01-01", system=LOCAL, display="UC-MSC plus CAR-T cells", id="c"),
    ],
    ids=["procedure", "administration", "statement"],
)
def test_a_combined_msc_and_other_cellular_therapy_is_not_excepted(evaluate, resource):
    """A record naming MSC and another cellular therapy as firmly is a therapy that includes the other:
    it fails as that therapy does, not excepted as MSC (E7 still counts it as MSC therapy)."""
    res = evaluate("E8", record(resource))
    assert res.outcome is Outcome.FAIL, res.reason
    assert res.evidence == (f"{resource['resourceType']}/c",)
    assert evaluate("E7", record(resource), as_of=date(2022, 6, 1)).outcome is Outcome.FAIL


def test_a_combined_therapy_of_status_unknown_or_not_yet_given_is_said(evaluate):
    unsure = procedure(LOCAL, "x", "2022-01-01", text=COMBINED, status="unknown", id="c")
    res = evaluate("E8", record(unsure))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.reason.startswith("Cellular therapy recorded with status unknown:")
    planned = procedure(LOCAL, "x", "2026-05-20", text=COMBINED, status="preparation", id="c")
    res = evaluate("E8", record(planned))
    assert res.outcome is Outcome.PASS, res.reason
    assert "Recorded as not yet given (not counted)" in res.reason and res.evidence == ("Procedure/c",)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("on-study", Outcome.FAIL), ("pending-on-study", Outcome.UNKNOWN), ("candidate", Outcome.PASS)],
)
def test_a_study_whose_title_names_msc_and_another_cellular_therapy_is_not_excepted(
    evaluate, status, outcome
):
    """As E8 reads a plain CAR-T or Treg study: given when the subject was on it, a question when that is
    not clear; a study naming both in its description alone is read the same way."""
    from tests.unit.test_research_study import study, subject

    titled = study(title="MSC and regulatory T cell co-infusion in refractory SLE")
    described = study(
        title="Study XYZ-003 in refractory SLE",
        description="Participants receive UC-MSCs and regulatory T cells on Day 0.",
    )
    for combined in (titled, described):
        res = evaluate("E8", record(subject(status), combined))
        assert res.outcome is outcome, (combined.get("description"), res.reason)
        if outcome is not Outcome.PASS:
            assert "ResearchStudy/abc" in res.evidence


def test_an_msc_study_whose_description_mentions_tregs_is_still_excepted(evaluate):
    """A study named by its title as MSC, whose description mentions another cellular therapy in plain
    words, names MSC more firmly: excepted, as before."""
    from tests.unit.test_research_study import study, subject

    msc = study(
        title="Umbilical cord mesenchymal stem cell infusion in refractory lupus",
        description="MSCs are thought to expand regulatory T cells.",
    )
    res = evaluate("E8", record(subject(), msc))
    assert res.outcome is Outcome.PASS, res.reason
    assert "excepted" in res.reason


def test_an_msc_transplant_is_still_not_a_haematopoietic_transplant(evaluate):
    proc = procedure(LOCAL, "x", "2022-01-01", text="Mesenchymal stem cell transplant")
    res = evaluate("E8", record(proc))
    assert res.outcome is Outcome.PASS, res.reason
