"""Run history for the nightly job: one folder per run, ``latest`` switched last, atomic writes, a lock,
run.json, pruning, and the ``history`` / ``diff`` commands (see layout.py for the directory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhirscreen import lazy
from fhirscreen.runs.changes import compute_changes
from fhirscreen.runs.layout import LATEST, OutputDir, RunInfo, latest_name, list_runs
from fhirscreen.runs.lock import LockedError
from fhirscreen.runs.observe import ObservedSource, canonical_source, observe

if TYPE_CHECKING:
    from fhirscreen.runs.job import RunOutput, load_candidates
    from fhirscreen.runs.query import RunNotFound, choose_pair, diff_runs
else:  # these load the HTML report (and with it the criteria): only runs with --out and diff need them
    __getattr__ = lazy.exports(
        __name__,
        {
            "RunOutput": "job",
            "load_candidates": "job",
            "RunNotFound": "query",
            "choose_pair": "query",
            "diff_runs": "query",
        },
    )

__all__ = [
    "LATEST",
    "LockedError",
    "ObservedSource",
    "OutputDir",
    "RunInfo",
    "RunNotFound",
    "RunOutput",
    "canonical_source",
    "choose_pair",
    "compute_changes",
    "diff_runs",
    "latest_name",
    "list_runs",
    "load_candidates",
    "observe",
]
