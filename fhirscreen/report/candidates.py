"""candidates.json: every screened patient with every criterion, the attrition table, the worklist and
the data-quality findings. Reproducible byte for byte for a fixed as-of date and input."""

from __future__ import annotations

from typing import Any

from fhirscreen import __version__
from fhirscreen.criteria.base import CriterionResult
from fhirscreen.report.attrition import trial_attrition
from fhirscreen.report.facts import PatientFacts
from fhirscreen.report.jsonio import dump_json, dump_json_bytes, plain
from fhirscreen.report.worklist import worklist
from fhirscreen.screening import PatientScreen, ScreeningRun


def criterion_entry(found: CriterionResult) -> dict[str, Any]:
    """outcome, reason, evidence; next_step and details only when the evaluator gave them."""
    entry: dict[str, Any] = {
        "outcome": found.outcome.value,
        "reason": found.reason,
        "evidence": list(found.evidence),
    }
    if found.next_step:
        entry["next_step"] = found.next_step
    if found.details:
        entry["details"] = plain(found.details)
    return entry


def patient_entry(screen: PatientScreen, facts: PatientFacts | None = None) -> dict[str, Any]:
    # Criteria stay in protocol order (the order a reader checks them in), not sorted.
    entry: dict[str, Any] = {
        "rank": screen.rank,
        "patient": screen.ref,
        "status": screen.status,
        "score": screen.score,
    }
    if screen.caveat:
        entry["caveat"] = screen.caveat
    if screen.notes:  # already enrolled in this trial...: shown with the patient whatever the status
        entry["notes"] = list(screen.notes)
    if facts is not None:  # age and sex only: names and identifiers never go into candidates.json
        entry["sex"] = facts.sex
        entry["age"] = facts.age
    entry["criteria"] = {cid: criterion_entry(found) for cid, found in screen.results.items()}
    if facts is not None:
        # One line per evidence resource (what, when, value), so report.html can be rebuilt from here.
        entry["resources"] = facts.resources
    return entry


def candidates_document(run: ScreeningRun) -> dict[str, Any]:
    return {
        "trial": run.trial.id,
        "as_of": run.as_of.isoformat(),
        "source": run.source,
        "generated_by": f"fhirscreen {__version__}",
        # Data was lost after retries (the data-lost findings): these lists leave out what it held.
        "partial": run.quality.partial,
        "patients": [patient_entry(s, run.facts.get(s.patient_id)) for s in run.patients],
        "attrition": [row.as_dict() for row in trial_attrition(run.patients, run.trial)],
        "worklist": [w.as_dict() for w in worklist(run.patients)],
        "data_quality": [f.as_dict() for f in run.quality.sorted()],
    }


def render_json(run: ScreeningRun) -> str:
    return dump_json(candidates_document(run))


def render_json_bytes(run: ScreeningRun) -> bytes:
    return dump_json_bytes(candidates_document(run))
