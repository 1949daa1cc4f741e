"""candidates.csv: one row per patient in rank order, one outcome column per criterion, readable reasons."""

from __future__ import annotations

import csv
import io

from fhirscreen.criteria.base import Outcome
from fhirscreen.screening import PatientScreen, ScreeningRun


def reasons_text(screen: PatientScreen) -> str:
    """The caveat and the patient's notes, then failed criteria, then unknown ones, each in protocol order:
    "E3 fail: ...; I4 unknown: ...".

    Manual criteria are left out: their reason is the same for every patient.
    """
    parts = ([screen.caveat] if screen.caveat else []) + list(screen.notes)
    for outcome in (Outcome.FAIL, Outcome.UNKNOWN):
        parts += [
            # Reasons are sentences; their final full stop would sit before the "; " separator.
            f"{cid} {outcome.value}: {r.reason.rstrip().removesuffix('.')}"
            for cid, r in screen.results.items() if r.outcome is outcome
        ]
    return "; ".join(parts)


def render_csv(run: ScreeningRun) -> str:
    ids = [c.id for c in run.trial.criteria]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "patient", "status", "score", *ids, "reasons"])
    for screen in run.patients:
        outcomes = [screen.results[cid].outcome.value if cid in screen.results else "" for cid in ids]
        writer.writerow([screen.rank, screen.ref, screen.status, f"{screen.score:.2f}", *outcomes,
                         reasons_text(screen)])
    return buffer.getvalue()
