"""I1: age on the screening date from Patient.birthDate (deceased patients are never candidates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, evaluator, result
from fhirscreen.fhir.dates import age_in_years, day, parse_date
from fhirscreen.record import PatientRecord


class AgeParams(Params):
    min_years: int
    max_years: int  # inclusive, in completed years (criteria-codes.md Appendix A #1)


@evaluator("age", AgeParams)
def age(record: PatientRecord, ctx: Context, params: AgeParams) -> CriterionResult:
    """Age in completed years on the screening date, inclusive bounds."""
    patient = record.patient
    evidence = [record.ref]
    deceased_on = day(patient.get("deceasedDateTime"))
    if patient.get("deceasedBoolean") is True or (deceased_on is not None and deceased_on <= ctx.as_of):
        died = parse_date(patient.get("deceasedDateTime"))
        when = ""
        if died is not None:
            when = f" on {died.earliest.isoformat()}" if died.exact else f" in {died.text}"
        return result(Outcome.FAIL, f"Patient is recorded as deceased{when}.", evidence)
    unreadable = _unreadable_death(patient)
    if unreadable is not None:
        return result(
            Outcome.UNKNOWN,
            f"A death is recorded ({unreadable}) in a form that cannot be read.",
            evidence,
            next_step="Check in the chart whether the patient is alive.",
        )
    birth = parse_date(patient.get("birthDate"))
    if birth is None:
        return result(
            Outcome.UNKNOWN,
            "No usable birth date on record.",
            evidence,
            next_step="Confirm the date of birth.",
        )
    youngest = age_in_years(birth.latest, ctx.as_of)
    oldest = age_in_years(birth.earliest, ctx.as_of)
    span = f"{params.min_years}-{params.max_years}"
    if youngest >= params.min_years and oldest <= params.max_years:
        return result(
            Outcome.PASS, f"Age {oldest} on {ctx.as_of.isoformat()} is within {span}.", evidence, age=oldest
        )
    if oldest < params.min_years or youngest > params.max_years:
        return result(
            Outcome.FAIL, f"Age {oldest} on {ctx.as_of.isoformat()} is outside {span}.", evidence, age=oldest
        )
    return result(
        Outcome.UNKNOWN,
        f"The birth date on record is partial: age could be {youngest}-{oldest}, "
        f"which straddles the {span} limit.",
        evidence,
        next_step="Confirm the full date of birth.",
    )


def _unreadable_death(patient: Mapping[str, Any]) -> str | None:
    """The element of a death recorded in a form that cannot be read ("2026-13-45", "true" as text):
    such a patient is not known to be alive."""
    recorded = patient.get("deceasedDateTime")
    if recorded is not None and day(recorded) is None:
        return "deceasedDateTime"
    flag = patient.get("deceasedBoolean")
    if flag is not None and flag.__class__ is not bool:
        return "deceasedBoolean"
    return None
