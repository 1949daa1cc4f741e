"""The terminal view of a run: ranked candidates, the attrition table and the worklist."""

from __future__ import annotations

from fhirscreen.criteria.base import Outcome
from fhirscreen.report.attrition import trial_attrition
from fhirscreen.report.text import format_table, shorten
from fhirscreen.report.worklist import worklist
from fhirscreen.screening import PatientScreen, ScreeningRun

WHY_WIDTH = 90


def why(screen: PatientScreen) -> str:
    """Ineligible: the failing ids and the first reason; possible: the unknown ids; eligible: nothing."""
    if screen.status == "ineligible":
        failed = [(cid, r) for cid, r in screen.results.items() if r.outcome is Outcome.FAIL]
        return shorten(f"{', '.join(cid for cid, _ in failed)}: {failed[0][1].reason}", WHY_WIDTH)
    if screen.status == "possible":
        unknown = [cid for cid, r in screen.results.items() if r.outcome is Outcome.UNKNOWN]
        return shorten(f"unknown: {', '.join(unknown)}", WHY_WIDTH)
    return ""


def candidates_table(run: ScreeningRun) -> str:
    if not run.patients:
        return f"No patient of the {run.patients_read} read has an SLE diagnosis on record.\n"
    rows = [
        (s.rank, s.ref, s.status, f"{s.score:.2f}", s.count(Outcome.PASS), s.count(Outcome.FAIL),
         s.count(Outcome.UNKNOWN), why(s))
        for s in run.patients
    ]
    headers = ("rank", "patient", "status", "score", "pass", "fail", "unknown", "why")
    return format_table(headers, rows, right=(0, 3, 4, 5, 6))


def attrition_table(run: ScreeningRun) -> str:
    rows = [
        (r.criterion, shorten(r.title, 40), r.remaining, r.gain, r.passed, r.failed, r.unknown, r.manual)
        for r in trial_attrition(run.patients, run.trial)
    ]
    headers = ("criterion", "title", "remaining", "gain", "pass", "fail", "unknown", "manual")
    return format_table(headers, rows, right=(2, 3, 4, 5, 6, 7))


def worklist_text(run: ScreeningRun) -> str:
    work = worklist(run.patients)
    if not work:
        return "No possible patients: nothing to request.\n"
    lines = []
    for entry in work:
        lines.append(entry.patient)
        lines += [f"  {item.criterion}: {item.next_step}" for item in entry.items]
    return "\n".join(lines) + "\n"


def render_table(run: ScreeningRun) -> str:
    title = f"{run.trial.id} screening as of {run.as_of.isoformat()}"
    return "\n".join([
        f"{title}\n\n{candidates_table(run)}",
        f"Attrition (criteria applied in protocol order; gain = excluded by this criterion alone)\n\n"
        f"{attrition_table(run)}",
        "Worklist (what would settle each unknown criterion of the possible patients)\n\n"
        f"{worklist_text(run)}",
    ])
