"""Pick the runs a ``diff`` compares: by name, or latest against the usable run before it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhirscreen.report.jsonio import OutputError
from fhirscreen.runs.changes import compute_changes
from fhirscreen.runs.job import load_candidates
from fhirscreen.runs.layout import RunInfo, latest_name, list_runs


class RunNotFound(OutputError):
    """A run name that is not in the directory, or too few runs to compare (a usage error)."""


def choose_pair(root: Path, first: str | None, second: str | None) -> tuple[RunInfo, RunInfo]:
    """(older, newer). Names may be given as run ids or paths ending in one; ``latest`` is accepted."""
    runs = list_runs(root)
    if not runs:
        raise RunNotFound(f"{root}: no runs here (a run folder is made by `fhirscreen screen --out {root}`)")
    by_name = {r.name: r for r in runs}
    current = latest_name(root)

    def find(name: str) -> RunInfo:
        key = current if name == "latest" else Path(name.rstrip("/")).name
        if key not in by_name:
            shown = ", ".join(r.name for r in runs[-5:])
            raise RunNotFound(f"{root}: no run named {name!r} (the newest: {shown})")
        return by_name[key]

    if first is not None and second is not None:
        return find(first), find(second)
    if first is not None:
        raise RunNotFound("give two runs to compare, or none for latest against the run before it")
    if current is None:
        raise RunNotFound(f"{root}: no latest run yet")
    newer = by_name[current]
    usable_before = [r for r in runs if r.order < newer.order and r.usable]
    if not usable_before:
        raise RunNotFound(f"{root}: only one run ({newer.name}); nothing to compare with yet")
    return usable_before[-1], newer


def diff_runs(older: RunInfo, newer: RunInfo) -> tuple[dict[str, Any], list[str]]:
    """The changes from ``older`` to ``newer``, and what the reader should know before trusting them."""
    before, after = load_candidates(older), load_candidates(newer)
    if after is None or before is None:
        broken = newer if after is None else older
        raise RunNotFound(f"{broken.path}: no readable candidates.json")
    warnings = [
        f"run {r.name} is partial (data lost after retries: {', '.join(r.manifest.get('lost', [])[:3])}); "
        "patients may seem to leave or change because of it"
        for r in (older, newer)
        if r.manifest.get("partial")
    ]
    trial_a, trial_b = older.manifest.get("trial") or {}, newer.manifest.get("trial") or {}
    if trial_a.get("sha256") != trial_b.get("sha256"):
        warnings.append("the trial file changed between the two runs; criteria may differ because of it")
    if older.manifest.get("source") != newer.manifest.get("source"):
        warnings.append("the two runs read different sources")
    return compute_changes(newer.name, older.name, after, before), warnings
