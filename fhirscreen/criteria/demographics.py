"""I1: age on the screening date from Patient.birthDate (deceased patients are never candidates)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from fhirscreen.criteria._labs import report_impossible
from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, evaluator, result
from fhirscreen.fhir.dates import PartialDate, age_in_years, day, parse_date
from fhirscreen.record import PatientRecord


class AgeParams(Params):
    min_years: int
    max_years: int  # inclusive, in completed years (criteria-codes.md Appendix A #1)
    # A birth date giving an older age is an entry error, not an age (the trial file says why).
    oldest_possible_years: int = 125


def impossible_birth(birth: PartialDate, as_of: date, oldest: int) -> str | None:
    """Why a birth date cannot be real on the screening date ("after the screening date 2026-06-01",
    "an age of 226 on 2026-06-01, over 125"), or None. Never the birth date itself: it identifies."""
    if birth.earliest > as_of:
        return f"after the screening date {as_of.isoformat()}"
    youngest = age_in_years(birth.latest, as_of)
    if youngest > oldest:
        return f"an age of {youngest} on {as_of.isoformat()}, over {oldest}"
    return None


def report_impossible_birth(ctx: Context, record: PatientRecord, why: str) -> None:
    """The ``implausible-value`` finding of a birth date that cannot be real (one per patient, whichever
    criterion finds it first)."""
    report_impossible(ctx, record.ref, "the birth date", why)


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
    impossible = impossible_birth(birth, ctx.as_of, params.oldest_possible_years)
    if impossible is not None:
        report_impossible_birth(ctx, record, impossible)
        return result(
            Outcome.UNKNOWN,
            f"The birth date on record is impossible ({impossible}): an entry error, so the age is not "
            "known.",
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
