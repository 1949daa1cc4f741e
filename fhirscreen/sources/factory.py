"""Choose a source from the command-line options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fhirscreen.paths import sample_data_dir
from fhirscreen.sources.base import Source
from fhirscreen.sources.files import FileSource


@dataclass(frozen=True)
class SourceOptions:
    data: Path | None = None
    server: str | None = None
    bulk: bool = False
    token_env: str | None = None
    smart_client_id: str | None = None
    smart_key_file: Path | None = None
    smart_token_url: str | None = None
    smart_key_id: str | None = None
    smart_scope: str | None = None
    ca_bundle: Path | None = None
    insecure: bool = False
    concurrency: int = 4
    page_size: int = 200
    # "codes": Observations by the trial's LOINC codes; "all": every Observation of the candidates,
    # filtered here (much faster on servers that scan all coded Observations, e.g. HAPI on H2);
    # "auto": the first batch runs both and the run keeps the faster (sources/observation_plan.py).
    observations: str = "auto"
    timeout: float = 60.0
    deadline: float | None = None  # overall seconds per request; None: 10 x timeout
    verbose: bool = False
    # Processes for file mode: large Bulk NDJSON files are read on as many (screening uses them too).
    workers: int = 1
    # A folder under --data that is not input: --out (the run's own outputs), not searched.
    exclude: Path | None = None


def open_source(options: SourceOptions) -> Source:
    """A server source when --server is given, else files (the bundled samples by default)."""
    if options.server:
        from fhirscreen.sources.server import open_server_source

        return open_server_source(options)
    # Absolute, so that outputs and findings name the same files whatever the working directory.
    path = options.data if options.data is not None else sample_data_dir()
    return FileSource(path.resolve(), options.workers, options.exclude)
