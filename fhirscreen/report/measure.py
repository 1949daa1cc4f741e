"""measure-report.json: a FHIR R4 MeasureReport (subject-list) of the screening, validated with
fhir.resources.R4B (the package's default models are R5).

Population mapping (codes from http://terminology.hl7.org/CodeSystem/measure-population where one fits):

| population         | code                                  | patients                                  |
|--------------------|---------------------------------------|-------------------------------------------|
| initial-population | measure-population#initial-population | SLE diagnosis on record (all screened)    |
| denominator        | measure-population#denominator        | the same patients: the proportion's base  |
| numerator          | measure-population#numerator          | eligible (every computable criterion met) |
| possible           | screening-status#possible (custom)    | no criterion failed, at least one unknown |
| ineligible         | screening-status#ineligible (custom)  | at least one criterion failed             |

``measureScore`` is eligible / initial population. Each population's subjects are a contained List
referenced as ``#id`` from ``subjectResults`` (the R4 subject-list pattern).

``status`` follows the run's exit code (``exitcodes.outcome_code``): ``complete`` for a run that read
its data whole (0); ``pending`` ("results are not final and may change") for a partial run (5: data lost
after retries); ``error`` for a run that read nothing usable (4). The latter two carry a narrative
(``text``, status ``additional``) saying why, in words and counts only (never a patient's data).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from fhir.resources.R4B.measurereport import MeasureReport

from fhirscreen.exitcodes import EXIT_NOTHING_USABLE, EXIT_OK, EXIT_PARTIAL, outcome_code
from fhirscreen.quality import DATA_LOST, NO_CONDITIONS, lost_parts
from fhirscreen.report.fhir_ids import STATUS_SYSTEM, measure_url, run_id
from fhirscreen.screening import PatientScreen, ScreeningRun

MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"

# (population id, code system, code, display, statuses included)
POPULATIONS: tuple[tuple[str, str, str, str, frozenset[str]], ...] = (
    ("initial-population", MEASURE_POPULATION, "initial-population", "Initial Population",
     frozenset({"eligible", "possible", "ineligible"})),
    ("denominator", MEASURE_POPULATION, "denominator", "Denominator",
     frozenset({"eligible", "possible", "ineligible"})),
    ("numerator", MEASURE_POPULATION, "numerator", "Numerator", frozenset({"eligible"})),
    ("possible", STATUS_SYSTEM, "possible", "Possible: no criterion failed, some unknown",
     frozenset({"possible"})),
    ("ineligible", STATUS_SYSTEM, "ineligible", "Ineligible: at least one criterion failed",
     frozenset({"ineligible"})),
)


# MeasureReport.status (R4: complete | pending | error) by the run's exit code.
REPORT_STATUS = {EXIT_OK: "complete", EXIT_PARTIAL: "pending", EXIT_NOTHING_USABLE: "error"}
XHTML = "http://www.w3.org/1999/xhtml"


def report_status(run: ScreeningRun) -> tuple[str, str | None]:
    """The MeasureReport's status, and for a run that is not complete the sentence that says why."""
    code = outcome_code(run.patients_read, run.quality, len(run.patients))
    lost = sum(1 for f in run.quality.findings if f.problem == DATA_LOST)
    if code == EXIT_NOTHING_USABLE:
        missing = next((f.message for f in run.quality.findings if f.problem == NO_CONDITIONS), None)
        why = missing or "no patient was read."
        lead = "Nothing usable was read, so these counts are not a screening result"
        return REPORT_STATUS[code], f"{lead}: {why}"
    if code == EXIT_PARTIAL:
        return REPORT_STATUS[code], (
            f"Partial run: {lost_parts(lost)} (the run's "
            f"'{DATA_LOST}' findings). These counts leave out what they held and may change once "
            "it is read; nobody whose record may be incomplete is counted as eligible."
        )
    return REPORT_STATUS[code], None


def subject_list(list_id: str, title: str, subjects: Sequence[PatientScreen], day: str) -> dict[str, Any]:
    """A contained List of Patient references, in rank order."""
    resource: dict[str, Any] = {
        "resourceType": "List", "id": list_id, "status": "current", "mode": "snapshot", "title": title,
        "date": day,
    }
    if subjects:
        resource["entry"] = [{"item": {"reference": s.ref}} for s in subjects]
    return resource


def measure_report_dict(run: ScreeningRun) -> dict[str, Any]:
    day = run.as_of.isoformat()
    contained: list[dict[str, Any]] = []
    populations: list[dict[str, Any]] = []
    for pop_id, system, code, display, statuses in POPULATIONS:
        subjects = [s for s in run.patients if s.status in statuses]
        # The denominator is the initial population here: one List serves both.
        list_id = "initial-population" if pop_id == "denominator" else pop_id
        if pop_id != "denominator":
            contained.append(subject_list(list_id, display, subjects, day))
        populations.append({
            "id": pop_id,
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "count": len(subjects),
            "subjectResults": {"reference": f"#{list_id}"},
        })
    group: dict[str, Any] = {"id": "eligibility", "population": populations}
    if run.patients:
        eligible = sum(1 for s in run.patients if s.status == "eligible")
        group["measureScore"] = {"value": round(eligible / len(run.patients), 4)}
    status, why = report_status(run)
    report: dict[str, Any] = {"resourceType": "MeasureReport", "id": run_id(run)}
    if why is not None:
        report["text"] = narrative(why)
    return {
        **report,
        "contained": contained,
        "status": status,
        "type": "subject-list",
        "measure": measure_url(run),
        "date": day,  # the as-of date, not the wall clock: outputs are reproducible
        "period": {"start": day, "end": day},
        "group": [group],
    }


def narrative(why: str) -> dict[str, str]:
    """A resource's narrative (``text``, status ``additional``) saying why a run is not complete."""
    return {"status": "additional", "div": f'<div xmlns="{XHTML}"><p>{escape(why, quote=False)}</p></div>'}


def measure_report(run: ScreeningRun) -> dict[str, Any]:
    """The MeasureReport as JSON data, after validating it against the R4 (R4B) model."""
    report = measure_report_dict(run)
    MeasureReport.model_validate(report)
    return report
