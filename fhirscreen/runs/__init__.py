"""Run history for the nightly job: one folder per run, ``latest`` switched last, atomic writes, a lock,
run.json, pruning, and the ``history`` / ``diff`` commands (see layout.py for the directory)."""

from fhirscreen.runs.changes import compute_changes
from fhirscreen.runs.job import RunOutput, load_candidates
from fhirscreen.runs.layout import LATEST, OutputDir, RunInfo, latest_name, list_runs
from fhirscreen.runs.lock import LockedError
from fhirscreen.runs.observe import ObservedSource, canonical_source, observe
from fhirscreen.runs.query import RunNotFound, choose_pair, diff_runs

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
