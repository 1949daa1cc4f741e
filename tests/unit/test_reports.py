"""The report package: attrition maths, worklist, candidates JSON/CSV, MeasureReport and Group, text views."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from pathlib import Path

import pytest
from fhir.resources.R4B.group import Group
from fhir.resources.R4B.measurereport import MeasureReport

from fhirscreen import report
from fhirscreen.criteria.base import CriterionResult, Outcome, result
from fhirscreen.quality import DataQuality
from fhirscreen.record import SCREENED_TYPES
from fhirscreen.report.attrition import attrition_rows, trial_attrition
from fhirscreen.report.candidates import candidates_document, render_json
from fhirscreen.report.csv_out import reasons_text, render_csv
from fhirscreen.report.describe import age_text, describe_resource
from fhirscreen.report.group import group_resource
from fhirscreen.report.html import render_report
from fhirscreen.report.measure import MEASURE_POPULATION, measure_report
from fhirscreen.report.table import why
from fhirscreen.report.worklist import worklist
from fhirscreen.screening import PatientScreen, ScreeningRun, overall_status, rank, screen_patient
from fhirscreen.trial.loader import Trial
from tests.builders import (
    AS_OF,
    appointment,
    care_plan,
    care_plan_activity,
    condition,
    medication_administration,
    medication_dispense,
    medication_request,
    medication_statement,
    observation,
    patient,
    procedure,
    record,
    service_request,
)
from tests.unit.test_research_study import THIS_TRIAL, subject

PROTOCOL_IDS = [f"I{i}" for i in range(1, 9)] + [f"E{i}" for i in range(1, 17)]
P, F, U, M = Outcome.PASS, Outcome.FAIL, Outcome.UNKNOWN, Outcome.MANUAL


def made(o: Outcome, cid: str, pid: str) -> CriterionResult:
    return result(o, f"{cid} is {o.value} for {pid}.", [f"Patient/{pid}"])


def screen(pid: str, outcomes: dict[str, Outcome | CriterionResult]) -> PatientScreen:
    results = {
        cid: o if isinstance(o, CriterionResult) else made(o, cid, pid)
        for cid, o in outcomes.items()
    }
    computable = [r for r in results.values() if r.outcome is not M]
    score = round(sum(r.outcome is P for r in computable) / len(computable), 2) if computable else 0.0
    return PatientScreen(pid, results, overall_status(computable), score, 0.0)


def trial_screen(trial: Trial, pid: str, **overrides: Outcome | CriterionResult) -> PatientScreen:
    """Every criterion of the trial: manual ones manual, the rest pass unless overridden."""
    outcomes: dict[str, Outcome | CriterionResult] = {
        c.id: M if c.definition.computability == "manual" else P for c in trial.criteria
    }
    outcomes.update(overrides)
    return screen(pid, outcomes)


def make_run(trial: Trial, screens: list[PatientScreen], quality: DataQuality | None = None) -> ScreeningRun:
    return ScreeningRun(trial, AS_OF, "tests/data", rank(screens), quality or DataQuality(), len(screens) + 1)


@pytest.fixture
def run(trial: Trial) -> ScreeningRun:
    steps = result(U, "No eGFR in the last 90 days.",
                   next_step="No eGFR in the last 90 days: order a creatinine.")
    return make_run(trial, [
        trial_screen(trial, "elig"),
        trial_screen(trial, "poss", I1=steps),
        trial_screen(trial, "inel", I1=F),
    ])


# ------------------------------------------------------------------------------------------ attrition

CRITERIA = [("I1", "Age"), ("I2", "SLE"), ("I7", "Consent"), ("E1", "Steroids")]
SCREENS = [
    screen("p1", {"I1": P, "I2": P, "I7": M, "E1": P}),  # passes everything
    screen("p2", {"I1": F, "I2": P, "I7": M, "E1": P}),  # excluded by I1 alone
    screen("p3", {"I1": P, "I2": F, "I7": M, "E1": F}),  # excluded by two criteria: no one's gain
    screen("p4", {"I1": P, "I2": U, "I7": M, "E1": P}),  # unknown never excludes
    screen("p5", {"I1": P, "I2": P, "I7": M, "E1": F}),  # excluded by E1 alone
]


def test_attrition_remaining_counts_patients_that_failed_none_so_far():
    rows = attrition_rows(SCREENS, CRITERIA, "SLE population")
    assert [(r.criterion, r.remaining) for r in rows] == [
        ("initial-population", 5), ("I1", 4), ("I2", 3), ("I7", 3), ("E1", 2),
    ]


def test_attrition_gain_counts_patients_excluded_by_that_criterion_alone():
    rows = {r.criterion: r for r in attrition_rows(SCREENS, CRITERIA)}
    assert rows["I1"].gain == 1  # p2
    assert rows["I2"].gain == 0  # p3 also fails E1
    assert rows["E1"].gain == 1  # p5 (p3 fails I2 as well)
    assert rows["I7"].gain == 0
    assert rows["initial-population"].gain is None


def test_attrition_counts_each_outcome_and_manual_criteria_never_exclude():
    rows = {r.criterion: r for r in attrition_rows(SCREENS, CRITERIA)}
    assert (rows["I2"].passed, rows["I2"].failed, rows["I2"].unknown, rows["I2"].manual) == (3, 1, 1, 0)
    assert (rows["I7"].passed, rows["I7"].failed, rows["I7"].manual) == (0, 0, 5)
    assert rows["I7"].remaining == rows["I2"].remaining


def test_attrition_json_rows_have_the_documented_keys(run):
    rows = candidates_document(run)["attrition"]
    assert rows[0]["criterion"] == "initial-population" and rows[0]["remaining"] == 3
    assert list(rows[1]) == ["criterion", "title", "remaining", "gain", "pass", "fail", "unknown", "manual"]
    assert [r["criterion"] for r in rows[1:]] == [c.id for c in run.trial.criteria]
    assert rows[-1]["remaining"] == 2  # eligible + possible


def test_attrition_follows_protocol_order(trial):
    rows = trial_attrition([], trial)
    assert [r.criterion for r in rows[1:]] == [c.id for c in trial.criteria]
    assert all(r.remaining == 0 for r in rows)


# ------------------------------------------------------------------------------------------- worklist


def test_worklist_lists_each_unknown_of_possible_patients_with_its_next_step():
    screens = rank([
        screen("a", {"I4": result(U, "No eGFR.", next_step="order a creatinine"),
                     "I6": result(U, "No SLEDAI-2K."), "I1": P}),
        screen("b", {"I4": U, "E1": F}),  # ineligible: nothing to request
        screen("c", {"I4": P}),
    ])
    work = worklist(screens)
    assert [w.patient for w in work] == ["Patient/a"]
    assert [(i.criterion, i.next_step) for i in work[0].items] == [
        ("I4", "order a creatinine"),
        ("I6", "Review in the chart: No SLEDAI-2K."),  # no next step: the reason says what is missing
    ]


def test_worklist_in_json(run):
    assert candidates_document(run)["worklist"] == [
        {"patient": "Patient/poss",
         "items": [{"criterion": "I1", "next_step": "No eGFR in the last 90 days: order a creatinine."}]},
    ]


# ------------------------------------------------------------------------------------------ JSON


def test_candidates_json_shape(run):
    doc = json.loads(render_json(run))
    assert list(doc) == ["trial", "as_of", "source", "generated_by", "partial", "patients", "attrition",
                         "worklist", "data_quality"]
    assert (doc["trial"], doc["as_of"], doc["partial"]) == ("NCT06737380", "2026-06-01", False)
    assert doc["generated_by"].startswith("fhirscreen ")
    assert [(p["rank"], p["patient"], p["status"]) for p in doc["patients"]] == [
        (1, "Patient/elig", "eligible"), (2, "Patient/poss", "possible"), (3, "Patient/inel", "ineligible"),
    ]
    first = doc["patients"][0]
    assert first["score"] == 1.0
    assert list(first["criteria"]) == [c.id for c in run.trial.criteria]
    assert first["criteria"]["I1"] == {
        "outcome": "pass", "reason": "I1 is pass for elig.", "evidence": ["Patient/elig"],
    }
    assert doc["patients"][1]["criteria"]["I1"]["next_step"].endswith("order a creatinine.")


def test_candidates_json_details_are_plain_sorted_and_text_stays_unicode(trial):
    found = result(F, "Rituximab 2026-04-15: washout ≥ 5 half-lives.", ["MedicationAdministration/r"],
                   washout_ends=date(2026, 10, 12), drugs={"zeta", "alpha"}, b=1, a={"y": 2, "x": 1})
    text = render_json(make_run(trial, [trial_screen(trial, "x", I1=found)]))
    assert "≥" in text and text.endswith("}\n")
    details = json.loads(text)["patients"][0]["criteria"]["I1"]["details"]
    assert details == {
        "a": {"x": 1, "y": 2}, "b": 1, "drugs": ["alpha", "zeta"], "washout_ends": "2026-10-12",
    }
    assert list(details) == ["a", "b", "drugs", "washout_ends"]


def test_candidates_json_is_reproducible_and_lists_data_quality_sorted(trial):
    quality = DataQuality()
    quality.add("warning", "Observation/o2", "unknown-unit", "unit 'furlong' not understood")
    quality.add("error", "data/x.json:3", "malformed-json", "not valid JSON")
    runs = [make_run(trial, [trial_screen(trial, "b"), trial_screen(trial, "a")], quality) for _ in range(2)]
    assert render_json(runs[0]) == render_json(runs[1])
    findings = json.loads(render_json(runs[0]))["data_quality"]
    assert [f["problem"] for f in findings] == ["malformed-json", "unknown-unit"]
    assert findings[0] == {"severity": "error", "where": "data/x.json:3", "problem": "malformed-json",
                           "message": "not valid JSON"}


def test_real_trial_has_all_24_protocol_criteria_in_the_json(trial):
    assert [c.id for c in trial.criteria] == PROTOCOL_IDS
    doc = candidates_document(make_run(trial, [trial_screen(trial, "x")]))
    assert list(doc["patients"][0]["criteria"]) == PROTOCOL_IDS


# ------------------------------------------------------------------------------------------ CSV


def test_csv_has_one_row_per_patient_and_an_outcome_column_per_criterion(run):
    rows = list(csv.reader(io.StringIO(render_csv(run))))
    ids = [c.id for c in run.trial.criteria]
    assert rows[0] == ["rank", "patient", "status", "score", *ids, "reasons"]
    assert [r[:4] for r in rows[1:]] == [
        ["1", "Patient/elig", "eligible", "1.00"],
        ["2", "Patient/poss", "possible", f"{run.patients[1].score:.2f}"],
        ["3", "Patient/inel", "ineligible", f"{run.patients[2].score:.2f}"],
    ]
    assert rows[3][4 + ids.index("I1")] == "fail"
    assert all(len(r) == len(rows[0]) for r in rows)


def test_csv_reasons_list_failures_then_unknowns_without_manual_ones():
    s = screen("x", {"I4": result(U, "No eGFR, none in 90 days."), "I7": M,
                     "E3": result(F, 'Dose "40 mg"; 0.6 mg/kg.'), "I1": P})
    assert reasons_text(s) == 'E3 fail: Dose "40 mg"; 0.6 mg/kg; I4 unknown: No eGFR, none in 90 days'


def test_csv_quotes_commas_and_quotes(trial):
    odd = result(F, 'Dose "40 mg", daily.')
    text = render_csv(make_run(trial, [trial_screen(trial, "x", I1=odd)]))
    row = list(csv.reader(io.StringIO(text)))[1]
    assert row[-1] == 'I1 fail: Dose "40 mg", daily'


# ---------------------------------------------------------------------------------------- FHIR


def _population(mr: dict, code: str) -> dict:
    return next(p for p in mr["group"][0]["population"] if p["code"]["coding"][0]["code"] == code)


def test_measure_report_validates_as_r4_and_counts_match(run):
    mr = measure_report(run)
    model = MeasureReport.model_validate(mr)
    assert (model.type, model.status) == ("subject-list", "complete")
    assert mr["measure"] == run.trial.definition.trial.measure_url
    assert mr["date"] == "2026-06-01" and mr["period"] == {"start": "2026-06-01", "end": "2026-06-01"}
    counts = {p["id"]: p["count"] for p in mr["group"][0]["population"]}
    assert counts == {
        "initial-population": 3, "denominator": 3, "numerator": 1, "possible": 1, "ineligible": 1,
    }
    assert _population(mr, "numerator")["code"]["coding"][0]["system"] == MEASURE_POPULATION
    assert mr["group"][0]["measureScore"] == {"value": round(1 / 3, 4)}


def test_measure_report_subject_lists_are_contained_and_referenced(run):
    mr = measure_report(run)
    contained = {c["id"]: c for c in mr["contained"]}
    for population in mr["group"][0]["population"]:
        target = population["subjectResults"]["reference"]
        assert target.startswith("#") and target[1:] in contained
        assert len(contained[target[1:]].get("entry", [])) == population["count"]
    assert [e["item"]["reference"] for e in contained["numerator"]["entry"]] == ["Patient/elig"]
    assert [e["item"]["reference"] for e in contained["ineligible"]["entry"]] == ["Patient/inel"]


def test_measure_report_and_group_of_an_empty_run_still_validate(trial):
    empty = make_run(trial, [])
    mr = measure_report(empty)
    assert "measureScore" not in mr["group"][0]
    assert all(p["count"] == 0 for p in mr["group"][0]["population"])
    group = group_resource(empty)
    Group.model_validate(group)
    assert group["quantity"] == 0 and "member" not in group


def test_a_partial_run_s_measure_report_is_pending_and_says_why(trial):
    """Data lost after retries: the MeasureReport must not claim to be complete (R4: pending, "results
    are not final and may change"), and its narrative says why, in words and counts only."""
    quality = DataQuality()
    quality.lost("/data/Observation.ndjson", "the file could not be read")
    mr = measure_report(make_run(trial, [trial_screen(trial, "poss")], quality))
    assert MeasureReport.model_validate(mr).status == "pending"
    assert mr["text"]["status"] == "additional"
    assert "Partial run: 1 part(s) of the source (files, pages or searches) were lost" in mr["text"]["div"]
    assert "Observation.ndjson" not in mr["text"]["div"]


def test_a_measure_report_of_nothing_usable_is_an_error_not_an_empty_result(trial):
    quality = DataQuality()
    quality.add("error", "/data", "no-conditions", "no Condition resource among the resources read")
    mr = measure_report(make_run(trial, [], quality))
    assert MeasureReport.model_validate(mr).status == "error"
    assert "Nothing usable was read" in mr["text"]["div"] and "no Condition resource" in mr["text"]["div"]


def test_a_complete_run_s_measure_report_is_complete_without_a_note(run):
    mr = measure_report(run)
    assert mr["status"] == "complete" and "text" not in mr


def test_fhir_ids_are_deterministic(run):
    assert measure_report(run)["id"] == "nct06737380-2026-06-01"
    assert group_resource(run)["id"] == "nct06737380-2026-06-01-candidates"


def test_group_holds_eligible_and_possible_patients_in_rank_order(run):
    group = group_resource(run)
    model = Group.model_validate(group)
    assert (model.type, model.actual) == ("person", True)
    assert [m["entity"]["reference"] for m in group["member"]] == ["Patient/elig", "Patient/poss"]
    assert [m["extension"][0]["valueCode"] for m in group["member"]] == ["eligible", "possible"]
    assert group["quantity"] == 2


# ----------------------------------------------------------------------------------- files


def test_write_outputs_writes_every_file_and_no_temporary_ones(run, tmp_path):
    out = tmp_path / "new" / "dir"
    written = report.write_outputs(run, out)
    assert [p.name for p in written] == [
        "candidates.json", "candidates.csv", "measure-report.json", "group.json", "report.html",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert json.loads((out / "group.json").read_text())["resourceType"] == "Group"
    assert (out / "candidates.csv").read_text() == render_csv(run)


def test_write_outputs_to_a_file_path_names_the_path(run, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    with pytest.raises(report.OutputError, match="taken"):
        report.write_outputs(run, blocker)


# ------------------------------------------------------------------------------------ text views


def test_table_why_names_failing_ids_with_the_first_reason_and_unknown_ids():
    bad = screen("x", {"I1": result(F, "Age 80 on 2026-06-01 is outside 18-75."), "E2": F, "I4": U})
    maybe = screen("y", {"I1": P, "I4": U, "I6": U})
    assert why(bad) == "I1, E2: Age 80 on 2026-06-01 is outside 18-75."
    assert why(maybe) == "unknown: I4, I6"
    assert why(screen("z", {"I1": P})) == ""


def test_a_patient_already_enrolled_in_this_trial_is_said_so_in_every_view(trial, evaluate):
    """E5's note on this trial's own ResearchSubject (already enrolled, in recruitment...) goes with the
    patient whatever the status: the ranked table, the CSV reasons, candidates.json, the explanation's
    header and report.html's summary."""
    enrolled_rec = record(subject("on-study", "ResearchStudy/uc-msc-sle"), THIS_TRIAL)
    enrolled = trial_screen(
        trial, "p1", E5=evaluate("E5", enrolled_rec), E7=evaluate("E7", enrolled_rec)
    )
    recruiting_rec = record(subject("eligible", "ResearchStudy/uc-msc-sle", pid="p2", rid="rs2"), THIS_TRIAL,
                            pid="p2")
    recruiting = trial_screen(trial, "p2", E5=evaluate("E5", recruiting_rec))
    run = make_run(trial, [enrolled, recruiting, trial_screen(trial, "p3")])
    note = "Already enrolled in this trial (ResearchSubject/rs1, on-study from 2026-03-01)"
    assert (enrolled.status, enrolled.notes) == ("possible", (note,))
    assert why(enrolled, 200) == f"{note}; unknown: E7"
    assert recruiting.status == "eligible"
    # Eligible: the note alone (the table says nothing else for an eligible patient).
    assert why(recruiting, 200) == (
        "In recruitment for this trial (ResearchSubject/rs2, eligible from 2026-03-01)"
    )
    assert reasons_text(enrolled).startswith(f"{note}; E7 unknown: ")
    entries = {p["patient"]: p for p in candidates_document(run)["patients"]}
    assert entries["Patient/p1"]["notes"] == [note]
    assert "notes" not in entries["Patient/p3"]
    text = report.render_explanation(enrolled, enrolled_rec, trial, AS_OF, width=200)
    assert f"\nNote: {note}.\n" in text
    page = render_report(candidates_document(run), trial)
    assert f"{note}. To settle: E7 (" in page


def test_render_run_table_has_candidates_attrition_and_worklist(run):
    text = report.render_run(run, "table")
    assert "Patient/elig" in text and "Patient/inel" in text
    assert "Attrition" in text and "start" in text
    assert "Worklist" in text and "order a creatinine" in text


def test_render_summary_counts_statuses_and_names_each_problem(run, tmp_path):
    for i in range(5):
        run.quality.add("warning", f"Observation/o{i}", "unknown-unit", "unit not understood")
    run.quality.add("error", "data/bad.json:1", "malformed-json", "not valid JSON; file skipped")
    text = report.render_summary(run, [tmp_path / "candidates.json"])
    assert "4 patients read, 3 in the initial population; 1 eligible, 1 possible, 1 ineligible" in text
    assert "candidates.json" in text
    assert "unknown-unit: 5" in text and "Observation/o0" in text and "and 2 more" in text
    assert "malformed-json: 1" in text and "data/bad.json:1" in text


def test_describe_resource_never_shows_names_birth_dates_or_identifiers():
    p = patient(birth="1985-03-15", name=[{"family": "Quimby", "given": ["Harriet"]}],
                identifier=[{"value": "MRN-778"}], address=[{"city": "Springfield"}])
    text = describe_resource(p, as_of=AS_OF)
    assert text == "Patient/p1: female, age 41"
    for secret in ("Quimby", "Harriet", "1985", "MRN-778", "Springfield"):
        assert secret not in text


def test_describe_resource_shows_code_date_and_value_with_unit():
    obs = observation("98979-8", "2026-05-20T10:00:00Z", id="egfr1", display="eGFR CKD-EPI 2021", value=55.5,
                      unit="mL/min/{1.73_m2}", comparator=">")
    assert describe_resource(obs) == (
        "Observation/egfr1: eGFR CKD-EPI 2021, 2026-05-20, = >55.5 mL/min/{1.73_m2}"
    )


def test_describe_resource_resolves_a_contained_medication():
    stmt = medication_statement("x", "2025-01-01", id="ms1", medicationReference={"reference": "#m"},
                                contained=[{"resourceType": "Medication", "id": "m",
                                            "code": {"text": "mycophenolate mofetil 500 mg"}}])
    del stmt["medicationCodeableConcept"]
    rec = record(stmt)
    assert describe_resource(stmt, rec) == (
        "MedicationStatement/ms1: mycophenolate mofetil 500 mg, active, 2025-01-01 to ongoing"
    )


def test_describe_resource_shows_a_fill_s_drug_day_dose_and_supply_never_its_note():
    """A MedicationDispense behind E5/E6/E11 was shown as its bare reference."""
    fill = medication_dispense(
        "10180", "2026-05-20", display="sulfamethoxazole / trimethoprim", id="fill", quantity=12,
        note=[{"text": "Mrs Quimby picked up, PJP prophylaxis"}],
        dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
                            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    )
    text = describe_resource(fill, record(fill))
    assert text == (
        "MedicationDispense/fill: sulfamethoxazole / trimethoprim, completed, handed over 2026-05-20, "
        "1 tablet x1 per 1 d, 30-day supply (12 tablet)"
    )
    assert "Quimby" not in text
    prepared = medication_dispense("x", None, days_supply=None, display="rituximab", status="in-progress",
                                   id="f2", whenPrepared="2026-05-01", quantity=2, quantity_unit="vial")
    assert describe_resource(prepared) == (
        "MedicationDispense/f2: rituximab, in-progress, prepared 2026-05-01, quantity 2 vial"
    )


def test_every_resource_type_a_criterion_can_cite_is_described():
    """Each type screening reads (record.SCREENED_TYPES) says what it is, not only its reference."""
    rx = "sulfamethoxazole / trimethoprim"
    examples = {
        "Patient": patient(),
        "Condition": condition("icd10cm", "J18.9", "2026-05-20", display="Pneumonia"),
        "Observation": observation("98979-8", "2026-05-20", display="eGFR", value=55, unit="mL/min"),
        "MedicationStatement": medication_statement("10180", None, display=rx, dateAsserted="2026-05-01"),
        "MedicationRequest": medication_request("10180", "2026-05-01", display=rx),
        "MedicationAdministration": medication_administration("1", "2026-05-01", display="rituximab"),
        "MedicationDispense": medication_dispense("10180", "2026-05-20", display=rx),
        "Procedure": procedure("snomed", "265764009", "2026-05-01", display="Renal dialysis"),
        "ServiceRequest": service_request("snomed", "52734007", "2026-08-01", display="Hip replacement"),
        "CarePlan": care_plan(care_plan_activity("snomed", "52734007")),
        "Appointment": appointment("snomed", "52734007", "2026-08-01"),
        "ResearchSubject": {"resourceType": "ResearchSubject", "id": "rs", "status": "on-study",
                            "study": {"display": "UC-MSC in lupus"}, "period": {"start": "2026-01-01"}},
        "Encounter": {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "AMB"},
                      "period": {"start": "2026-01-01"}},
    }
    assert set(SCREENED_TYPES) <= set(examples)
    for rtype, resource in examples.items():
        text = describe_resource(resource, record(resource) if rtype != "Patient" else None, AS_OF)
        reference, _sep, said = text.partition(": ")
        assert reference.startswith(f"{rtype}/") and said, text
    assert "on UC-MSC in lupus, on-study" in describe_resource(examples["ResearchSubject"])
    assert ", asserted 2026-05-01" in describe_resource(examples["MedicationStatement"])


def test_an_explanation_describes_the_fill_behind_a_criterion(trial):
    order = medication_request("10180", "2026-02-01", display="sulfamethoxazole / trimethoprim", id="rx",
                               note=[{"text": "PJP prophylaxis"}])
    fill = medication_dispense("10180", "2026-05-20", display="sulfamethoxazole / trimethoprim", id="fill",
                               authorizingPrescription=[{"reference": "MedicationRequest/rx"}])
    rec = record(order, fill)
    screened = screen_patient(rec, trial, AS_OF)
    text = report.render_explanation(screened, rec, trial, AS_OF, width=200)
    assert "- MedicationDispense/fill: sulfamethoxazole / trimethoprim, completed, handed over 2026-05-20, " \
           "30-day supply" in text


def test_render_criteria_markdown_json_and_table(trial):
    markdown = report.render_criteria(trial, "markdown")
    lines = markdown.splitlines()
    assert lines[0].startswith("| ID | Type | Title | Protocol text | Computability | Evaluator | How |")
    rows = [line for line in lines if re.match(r"^\| [IE]\d+ \|", line)]
    assert [row.split(" | ")[0][2:] for row in rows] == [c.id for c in trial.criteria]
    assert f"{len(trial.criteria)} criteria:" in markdown
    doc = json.loads(report.render_criteria(trial, "json"))
    assert [c["id"] for c in doc["criteria"]] == [c.id for c in trial.criteria]
    assert set(doc["criteria"][0]) == {"id", "type", "title", "text", "computability", "evaluator", "how"}
    table = report.render_criteria(trial, "table")
    assert all(c.id in table for c in trial.criteria)


def test_unknown_formats_are_refused(run, trial):
    with pytest.raises(ValueError, match="yaml"):
        report.render_run(run, "yaml")
    with pytest.raises(ValueError, match="html"):
        report.render_criteria(trial, "html")


def test_write_outputs_is_atomic_when_a_rename_fails(run, tmp_path, monkeypatch):
    import os

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(report.OutputError, match=r"candidates\.json"):
        report.write_outputs(run, tmp_path)
    assert list(Path(tmp_path).iterdir()) == []


def test_explanation_lists_criteria_in_order_with_evidence_next_steps_and_washouts(trial):
    egfr = observation("98979-8", "2026-05-20", id="egfr1", display="eGFR", value=25, unit="mL/min/{1.73_m2}")
    rec = record(patient(name=[{"family": "Quimby"}], identifier=[{"value": "MRN-778"}]), egfr)
    washouts = [
        {"what": "rituximab last dose 2026-04-15", "outcome": "fail", "washout_ends": "2026-08-08"},
        {"what": "belimumab last dose 2026-05-01", "outcome": "fail", "washout_ends": "2026-07-30"},
    ]
    s = trial_screen(
        trial, "p1",
        I4=result(F, "eGFR 25 on 2026-05-20: below 30.", ["Observation/egfr1", "Observation/gone"]),
        I6=result(U, "No SLEDAI-2K recorded.", next_step="Score SLEDAI-2K at the screening visit."),
        E6=result(F, "Two biologic washouts are running.", washout_ends="2026-08-08", washouts=washouts),
    )
    text = report.render_explanation(s, rec, trial, AS_OF, width=100)
    assert text.startswith("Patient/p1 (female, age 41) is not eligible for NCT06737380 as of 2026-06-01.\n")
    assert "Excluded by I4, E6." in text and "To settle: I6" in text
    _header, *blocks = text.split("\n\n")
    starts = [block.split()[0] for block in blocks]
    assert starts == [c.id for c in trial.criteria]
    assert "I4 eGFR >= 30 (inclusion): FAIL\n    eGFR 25 on 2026-05-20: below 30.\n" in text
    assert "    - Observation/egfr1: eGFR, 2026-05-20, = 25 mL/min/{1.73_m2}" in text
    assert "    - Observation/gone\n" in text  # evidence not in the record is still named
    assert "    Next step: Score SLEDAI-2K at the screening visit." in text
    assert "The washout ends 2026-08-08." in text
    assert "2026-07-30: belimumab last dose 2026-05-01" in text
    assert "Patient/p1: female, age 41" in text
    assert "Details:" not in text and "washout_ends" not in text
    assert max(len(line) for line in text.splitlines()) <= 100
    for secret in ("Quimby", "MRN-778", "1985-03-15"):
        assert secret not in text


@pytest.mark.parametrize("birth", ["1800-01-01", "2026-07-01"])
def test_no_report_shows_an_age_no_one_has_had(birth):
    """A birth date that cannot be real showed "age 226" (or "age -1") on the patient line; I1 says why
    the date is not used, the reports show no age."""
    p = patient(birth=birth)
    assert describe_resource(p, as_of=AS_OF) == "Patient/p1: female"
    assert age_text(p, AS_OF) is None
    assert age_text(patient(birth="1985"), AS_OF) == "40-41"  # a partial date is still a range
