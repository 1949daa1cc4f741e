"""run.json: what one run read, did and found, for whoever monitors the nightly job. No PHI: counts,
resource types, finding kinds, file paths and URLs without credentials; never a name or a value."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fhirscreen import __version__
from fhirscreen.exitcodes import EXIT_CODES, outcome_code
from fhirscreen.quality import DATA_LOST
from fhirscreen.runs.observe import ObservedSource, canonical_source
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.factory import SourceOptions

# Fields that differ between two runs of the same input (everything else is reproducible).
TIMING_FIELDS = ("run", "base_run", "started_at", "finished_at", "durations_s")


def exit_status(run: ScreeningRun) -> int:
    """The run's exit code: nothing usable (no patient, or no Condition at all), partial (data lost after
    retries), or 0; the process exits with it (``exitcodes.outcome_code``)."""
    return outcome_code(run.patients_read, run.quality, len(run.patients))


def trial_sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def recorded_options(
    options: SourceOptions, keep: int | None, more: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The options that shape a run; secrets and what could be one (a token variable's name may be a
    pasted token) are reduced to how the run authenticated."""
    if options.smart_client_id or options.smart_key_file:
        auth = "smart-backend-services"
    elif options.token_env:
        auth = "bearer-token"
    else:
        auth = "none"
    recorded: dict[str, Any] = {"mode": "files"}
    if options.server:
        recorded = {
            "mode": "bulk" if options.bulk else "search",
            "auth": auth,
            "observations": options.observations,
            "page_size": options.page_size,
            "concurrency": options.concurrency,
            "timeout_s": options.timeout,
            "tls_verify": not options.insecure,
            "ca_bundle": options.ca_bundle is not None,
        }
    recorded["keep"] = keep
    recorded.update(more or {})
    return recorded


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def run_manifest(
    *,
    run_id: str,
    base_run: str | None,
    run: ScreeningRun,
    source: ObservedSource,
    options: SourceOptions,
    keep: int | None,
    more_options: Mapping[str, Any] | None = None,
    started_at: datetime,
    finished_at: datetime,
    durations: dict[str, float],
) -> dict[str, Any]:
    counts = Counter(p.status for p in run.patients)
    status = exit_status(run)
    lost = sorted({f.where for f in run.quality.findings if f.problem == DATA_LOST})
    return {
        "run": run_id,
        "base_run": base_run,
        "fhirscreen_version": __version__,
        "trial": {
            "id": run.trial.id,
            "file": str(Path(run.trial.path).resolve()),
            "sha256": trial_sha256(run.trial.path),
        },
        "as_of": run.as_of.isoformat(),
        "source": canonical_source(run.source),
        "options": recorded_options(options, keep, more_options),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "durations_s": {k: round(v, 2) for k, v in durations.items()},
        "patients_read": run.patients_read,
        "initial_population": len(run.patients),
        "counts": {s: counts.get(s, 0) for s in ("eligible", "possible", "ineligible")},
        "resources_read": dict(sorted(source.resources.items())),
        "server": source.server_stats(),
        "findings": dict(sorted(run.quality.counts().items())),
        "partial": run.quality.partial,
        "lost": lost,
        "exit_status": status,
        "exit_meaning": EXIT_CODES[status],
    }
