"""E12: history of cancer, except adequately treated skin BCC/SCC and cervical carcinoma in situ.

"History" means at any time, so a resolved or in-remission cancer still excludes. Whether an excepted
cancer was "adequately treated" is not in the data; a resolved entry is taken as treated and an
active one is left to the investigator (criteria-codes.md Appendix A #23).

A condition can carry several codings (SNOMED and ICD-10-CM); the roles are tried in a fixed order so
that the specific exception wins over a generic malignancy code: excepted, uncertain, cancer, and last a
text hint for malignancy codes the trial file does not list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fhirscreen.criteria.base import Context, CriterionResult, Outcome, Params, ValueSetRef, evaluator, result
from fhirscreen.fhir.resources import (
    Resource,
    alive_until,
    clinical_status,
    condition_span,
    is_active_on,
    ref,
    tentative,
)
from fhirscreen.record import PatientRecord


class CancerHistoryParams(Params):
    cancer: ValueSetRef  # malignant and in-situ neoplasms, personal history of them
    excepted: ValueSetRef  # skin BCC/SCC (incl. in situ), cervical carcinoma in situ
    excepted_history: ValueSetRef  # "personal history of" the excepted ones: treated by definition
    uncertain: ValueSetRef  # unspecified skin malignancy, MDS/myeloid neoplasms of uncertain behaviour
    text_malignant: ValueSetRef | None = None  # text-only: a clearly malignant name on an unlisted code
    text_hint: ValueSetRef | None = None  # text-only patterns: malignancy words on an unlisted code


@dataclass(frozen=True)
class Hit:
    role: str
    cond: Resource
    label: str

    @property
    def when(self) -> str:
        span = condition_span(self.cond)
        status = clinical_status(self.cond) or "no status"
        since = f"onset {span.start.isoformat()}" if span.start else "no onset date"
        return f"{self.label} ({since}, {status}; {ref(self.cond)})"


def _classify(cond: Resource, ctx: Context, params: CancerHistoryParams) -> Hit | None:
    code = cond.get("code")
    roles = [
        ("excepted_history", params.excepted_history),
        ("excepted", params.excepted),
        ("uncertain", params.uncertain),
        ("cancer", params.cancer),
    ]
    for role, name in roles:
        label = ctx.vs(name).match(code)
        if label is not None:
            return Hit(role, cond, label)
    if params.text_malignant is not None:
        label = ctx.vs(params.text_malignant).match(code)
        if label is not None:
            return Hit("cancer", cond, label)
    if params.text_hint is not None:
        label = ctx.vs(params.text_hint).match(code)
        if label is not None:
            return Hit("text_hint", cond, label)
    return None


def _hits(record: PatientRecord, ctx: Context, params: CancerHistoryParams, as_of: date) -> list[Hit]:
    hits = []
    for cond in record.of_type("Condition"):
        start = condition_span(cond).start
        if start is not None and start > as_of:
            continue  # diagnosed after the screening date
        hit = _classify(cond, ctx, params)
        if hit is not None:
            hits.append(hit)
    return hits


@evaluator("cancer_history", CancerHistoryParams)
def cancer_history(record: PatientRecord, ctx: Context, params: CancerHistoryParams) -> CriterionResult:
    """Any cancer ever (active or resolved), except treated skin BCC/SCC and cervical carcinoma in situ."""
    as_of = alive_until(record.patient, ctx.as_of)  # a diagnosis dated after death is a record error
    hits = _hits(record, ctx, params, as_of)
    by_role: dict[str, list[Hit]] = {}
    for hit in hits:
        by_role.setdefault(hit.role, []).append(hit)
    evidence = [ref(h.cond) for h in hits]

    cancers = [h for h in by_role.get("cancer", []) if tentative(h.cond) is None]
    suspected_cancers = [h for h in by_role.get("cancer", []) if tentative(h.cond) is not None]
    if cancers:
        listed = "; ".join(h.when for h in cancers)
        return result(Outcome.FAIL, f"History of cancer: {listed}.", [ref(h.cond) for h in cancers])

    excepted = by_role.get("excepted", [])
    untreated = [h for h in excepted if is_active_on(h.cond, as_of)]
    uncertain = by_role.get("uncertain", []) + by_role.get("text_hint", [])
    if uncertain or untreated or suspected_cancers:
        questions, steps = [], []
        if suspected_cancers:
            questions.append("suspected, not confirmed: " + "; ".join(
                f"{h.when.rstrip(')')}, {tentative(h.cond)})" for h in suspected_cancers))
            steps.append("Confirm or rule out the suspected cancer (histology).")
        if uncertain:
            questions.append("malignancy of unstated type: " + "; ".join(h.when for h in uncertain))
            steps.append("Check the histology: only skin BCC/SCC and cervical carcinoma in situ are allowed.")
        if untreated:
            questions.append("allowed cancer still active: " + "; ".join(h.when for h in untreated))
            steps.append("Confirm the skin BCC/SCC or cervical carcinoma in situ was adequately treated.")
        return result(
            Outcome.UNKNOWN, "Cannot rule out excluding cancer history: " + "; ".join(questions) + ".",
            evidence, next_step=" ".join(steps),
        )

    allowed = excepted + by_role.get("excepted_history", [])
    if allowed:
        listed = "; ".join(h.when for h in allowed)
        return result(Outcome.PASS, f"Only allowed, treated cancers on record: {listed}.", evidence)
    return result(Outcome.PASS, "No cancer history on record.")
