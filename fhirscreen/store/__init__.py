"""Incremental nightly reads: a local SQLite store of the initial population's resources
(``sqlite.py``), the pure helpers (``delta.py``) and the source that reads only what changed
(``incremental.py``)."""

from __future__ import annotations

from pathlib import Path

from fhirscreen.sources.base import Source
from fhirscreen.store.sqlite import STORE_FILE, ResourceStore
from fhirscreen.trial.loader import Trial


def with_store(source: Source, out_dir: Path, trial: Trial, *, full: bool = False) -> Source:
    """Wrap a server source so that it keeps ``out_dir/store.sqlite`` and reads only the changes."""
    from fhirscreen.sources.server import ServerSource
    from fhirscreen.store.incremental import IncrementalSource, trial_fingerprint

    if not isinstance(source, ServerSource):
        return source  # files are read whole every time (they are fast)
    return IncrementalSource(
        source, ResourceStore(out_dir / STORE_FILE), trial_fingerprint(trial.path), full=full
    )
