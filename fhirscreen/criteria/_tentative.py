"""A diagnosis that is provisional, differential or unconfirmed is not a diagnosis (issue 8 section 2).

Evaluators that read Conditions say so in their own words ("suspected tuberculosis, confirm"). This is
the backstop for every exclusion, whichever evaluator it uses: an exclusion that fails only on
Conditions whose ``verificationStatus`` is tentative becomes unknown, with the question for the
coordinator. A fail that also rests on a confirmed diagnosis, a procedure, a medication or a lab stays.
"""

from __future__ import annotations

from fhirscreen.criteria.base import CriterionResult, Outcome, result
from fhirscreen.fhir.codes import concept_label
from fhirscreen.fhir.resources import ref, tentative
from fhirscreen.record import PatientRecord


def unconfirmed_only(res: CriterionResult, record: PatientRecord) -> CriterionResult:
    """``res`` unchanged, or unknown when its fail rests only on tentative diagnoses."""
    if res.outcome is not Outcome.FAIL or not res.evidence:
        return res
    conditions = {ref(c): c for c in record.of_type("Condition")}
    held = [conditions.get(e) for e in res.evidence]
    if any(c is None or tentative(c) is None for c in held):
        return res
    named = "; ".join(
        f"suspected {concept_label(c.get('code'))} ({tentative(c)}, {ref(c)})" for c in held if c is not None
    )
    return result(
        Outcome.UNKNOWN,
        f"Only an unconfirmed diagnosis on record: {named}. It would exclude if confirmed ({res.reason})",
        res.evidence,
        next_step="Confirm or rule out the suspected diagnosis and update its verification status.",
        **dict(res.details),
    )
