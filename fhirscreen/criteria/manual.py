"""Criteria that structured EHR data can never decide (consent, investigator judgement)."""

from __future__ import annotations

from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, evaluator, result
from fhirscreen.record import PatientRecord


class ManualParams(Params):
    # Who decides and when, shown to the coordinator (criteria-codes.md Appendix B).
    note: str


@evaluator("manual", ManualParams)
def manual(record: PatientRecord, ctx: Context, params: ManualParams) -> CriterionResult:
    """Not computable from structured data; listed for the study team."""
    return result(Outcome.MANUAL, params.note)
