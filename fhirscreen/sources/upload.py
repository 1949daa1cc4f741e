"""``fhirscreen load``: stage Bundles and NDJSON on a FHIR server, so that a test server holds the samples.

Every resource is written with ``PUT Type/id`` inside a transaction: the ids on the server are the ids
in the files (``urn:uuid:`` fullUrls become the id, exactly as the file source reads them), so
references line up, results from the server match results from the files, and loading twice changes
nothing. One transaction per Bundle; NDJSON lines are sent in transactions of ``NDJSON_BATCH``.

The load streams: files are read one at a time and at most ``2 x concurrency`` transactions are built
ahead of the server, so memory does not grow with the data (it held every transaction before: 450 MB
for 95,000 resources). Files go in phases, each finished before the next starts (``load_phase``):
what others refer to first (Synthea's hospital and practitioner bundles; Organization, Location,
Practitioner, Medication, ResearchStudy NDJSON), then Patients, then Encounters, then the rest. Within a phase
transactions run in parallel; across phases no two transactions create the same placeholder for a
reference target that does not exist yet, which on HAPI fails one of them with a 409 (HAPI creates
placeholders for missing targets; the later PUT of the real resource replaces it). Failed transactions
are tried once more at the end, one at a time. A failed transaction is reported with the server's
diagnostics and the load goes on.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from fhirscreen.exitcodes import EXIT_NOTHING_USABLE, EXIT_OK, EXIT_PARTIAL
from fhirscreen.fhir.resources import Resource, items
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import SourceError
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.files import (
    EMPTY_FILE,
    FileSource,
    bundle_resources,
    emptiness,
    empty_ndjson_message,
    loads_damaged,
)
from fhirscreen.sources.http import FhirClient
from fhirscreen.sources.server_text import outcome_text

log = logging.getLogger("fhirscreen.upload")

NDJSON_BATCH = 200
# Loaded before everything else: what other files refer to.
_SHARED_FILE_PREFIXES = (
    "hospitalinformation",
    "practitionerinformation",
    "organization",
    "location",
    "practitioner",
)
_SHARED_TYPES = (
    "Organization", "Location", "Practitioner", "PractitionerRole", "Medication", "ResearchStudy", "Patient",
)
# NDJSON files named by type (Bulk Data export style: Patient.ndjson, Patient.001.ndjson) go in this order.
_TYPE_PHASES = {
    "organization": 0,
    "location": 0,
    "practitioner": 0,
    "practitionerrole": 0,
    "medication": 0,
    "researchstudy": 0,
    "patient": 1,
    "encounter": 2,
}
LAST_PHASE = 3


def load_phase(file: Path) -> int:
    """Which phase a file goes in: what other files refer to goes first (see the module docstring)."""
    name = file.name.lower()
    if name.startswith(("hospitalinformation", "practitionerinformation")):
        return 0
    return _TYPE_PHASES.get(name.split(".", 1)[0], LAST_PHASE)


def _open(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _parse(data: bytes, where: str, quality: DataQuality, unit: str) -> Any:
    """As the file source parses: a BOM is accepted, invalid UTF-8 costs only the value it is in."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads_damaged(data, where, quality, unit)


@dataclass
class Unit:
    """One transaction to send: where it came from and the Bundle."""

    label: str
    bundle: dict[str, Any]
    shared: bool = False

    @property
    def size(self) -> int:
        return len(items(self.bundle.get("entry")))


def transaction(resources: Iterable[Resource]) -> dict[str, Any]:
    """A transaction Bundle: PUT Type/id for resources with an id, POST for the rest."""
    entries = []
    for resource in resources:
        rtype, rid = resource["resourceType"], resource.get("id")
        if isinstance(rid, str) and rid:
            request = {"method": "PUT", "url": f"{rtype}/{rid}"}
            entries.append({"fullUrl": f"{rtype}/{rid}", "resource": resource, "request": request})
        else:
            entries.append({"resource": resource, "request": {"method": "POST", "url": rtype}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def units_from_file(file: Path, quality: DataQuality) -> Iterator[Unit]:
    """The transactions for one file: one per Bundle, NDJSON in batches, lone resources one each."""
    shown = str(file)
    shared_name = file.name.lower().startswith(_SHARED_FILE_PREFIXES)
    if file.name.lower().endswith((".ndjson", ".ndjson.gz")):
        yield from _ndjson_units(file, quality)
        return
    try:
        with _open(file) as fh:
            raw = fh.read()
        if not raw or raw.isspace():  # as the screening says it (files.read_file)
            quality.add("error", shown, EMPTY_FILE, f"{emptiness(file)}: not a JSON document; not uploaded")
            return
        data = _parse(raw, shown, quality, "file")
    except (OSError, ValueError, EOFError, RecursionError, zlib.error) as exc:
        quality.add(
            "error", shown, "unreadable-file", f"cannot read file ({type(exc).__name__}); not uploaded"
        )
        return
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        quality.add("error", shown, "not-fhir", "not a FHIR resource; not uploaded")
        return
    if data["resourceType"] == "Bundle":
        resources = [r for r, _origin in bundle_resources(data, shown, quality)]
    else:
        resources = [data]
    if resources:
        # Bundles without a Patient (hospital, practitioner, medication lists) are what others refer to.
        shared = shared_name or not any(r["resourceType"] == "Patient" for r in resources)
        yield Unit(shown, transaction(resources), shared=shared)


def _ndjson_units(file: Path, quality: DataQuality) -> Iterator[Unit]:
    shown = str(file)
    batch: list[Resource] = []
    first_line = 1
    empty = True
    try:
        with _open(file) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                empty = False
                try:
                    resource = _parse(line, f"{shown}:{lineno}", quality, "line")
                except (ValueError, RecursionError):
                    quality.add(
                        "error", f"{shown}:{lineno}", "malformed-json", "line is not JSON; not uploaded"
                    )
                    continue
                if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                    quality.add("error", f"{shown}:{lineno}", "not-fhir", "not a FHIR resource; not uploaded")
                    continue
                if not batch:
                    first_line = lineno
                batch.append(resource)
                if len(batch) >= NDJSON_BATCH:
                    yield _ndjson_unit(shown, first_line, lineno, batch)
                    batch = []
            if batch:
                yield _ndjson_unit(shown, first_line, lineno, batch)
    except (OSError, EOFError, zlib.error) as exc:
        quality.add("error", shown, "unreadable-file", f"cannot read file ({type(exc).__name__})")
        return
    if empty:  # as the screening says it (files._read_ndjson)
        quality.add("warning", shown, EMPTY_FILE, empty_ndjson_message(emptiness(file)))


def _ndjson_unit(shown: str, first: int, last: int, batch: Sequence[Resource]) -> Unit:
    shared = all(r["resourceType"] in _SHARED_TYPES for r in batch)
    return Unit(f"{shown}:{first}-{last}", transaction(batch), shared=shared)


class Uploader:
    def __init__(self, client: FhirClient, concurrency: int) -> None:
        self.client = client
        self.concurrency = max(1, concurrency)
        self.lock = threading.Lock()
        self.sent = 0
        self.resources = 0
        self.done = 0
        self.total = 0
        self.started = time.monotonic()
        self.last_report = self.started

    def send(self, unit: Unit) -> str | None:
        """POST one transaction; None on success, else the reason (already logged)."""
        try:
            response = self.client.request(
                "POST",
                self.client.base_url,
                json_body=unit.bundle,
                headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
                what=f"upload of {unit.label}",
            )
        except SourceError as exc:
            return str(exc)
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
            return f"upload of {unit.label}: {outcome_text(body)}"
        with self.lock:
            self.resources += unit.size
            self.done += 1
            now = time.monotonic()
            if now - self.last_report >= 5:
                elapsed = now - self.started
                log.info(
                    "loaded %d transactions, %d resources (%.0f s, %.0f resources/s)",
                    self.done,
                    self.resources,
                    elapsed,
                    self.resources / elapsed if elapsed > 0 else 0.0,
                )
                self.last_report = now
        return None

    def send_all(self, units: Sequence[Unit], concurrency: int | None = None) -> list[tuple[Unit, str]]:
        if not units:
            return []
        workers = min(concurrency or self.concurrency, len(units))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(self.send, units))
        return [(u, why) for u, why in zip(units, outcomes, strict=True) if why is not None]

    def send_stream(self, phased_units: Iterable[tuple[int, Unit]]) -> list[tuple[Unit, str]]:
        """Send (phase, unit) pairs as they come: at most ``2 x concurrency`` in flight, and every
        transaction of a phase answered before the first of the next phase is sent. Returns the failures
        (only they are kept in memory)."""
        failed: list[tuple[Unit, str]] = []
        in_flight: set[Future[str | None]] = set()
        units: dict[Future[str | None], Unit] = {}

        def settle(done: set[Future[str | None]]) -> None:
            for future in done:
                unit = units.pop(future)
                why = future.result()
                if why is not None:
                    failed.append((unit, why))

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            phase: int | None = None
            for unit_phase, unit in phased_units:
                if phase is not None and unit_phase != phase and in_flight:
                    done, in_flight = wait(in_flight)  # the phase barrier
                    settle(done)
                phase = unit_phase
                if len(in_flight) >= 2 * self.concurrency:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    settle(done)
                with self.lock:
                    self.total += 1
                future = pool.submit(self.send, unit)
                units[future] = unit
                in_flight.add(future)
            done, in_flight = wait(in_flight)
            settle(done)
        return failed


@dataclass(frozen=True)
class UploadResult:
    """What a load did: the summary line and what failed, for the exit code."""

    summary: str
    transactions: int  # sent
    failed: int  # transactions that failed twice
    input_problems: int  # files or lines not uploaded because they could not be read

    @property
    def exit_code(self) -> int:
        """4 when nothing was loaded (every transaction failed, or nothing to send), 5 when some part
        was not (a failed transaction, an unreadable file or line), else 0."""
        if self.transactions == 0 or self.failed == self.transactions:
            return EXIT_NOTHING_USABLE
        if self.failed or self.input_problems:
            return EXIT_PARTIAL
        return EXIT_OK

    @property
    def problem(self) -> str | None:
        """The sentence for a non-zero exit code."""
        code = self.exit_code
        if code == EXIT_NOTHING_USABLE:
            what = "every transaction failed" if self.transactions else "nothing to upload was found"
            return f"nothing was loaded: {what} (see the messages above)"
        if code == EXIT_PARTIAL:
            return (
                f"partial load: {self.failed} of {self.transactions} transaction(s) failed, "
                f"{self.input_problems} input problem(s) (see the messages above)"
            )
        return None


def upload_path(options: SourceOptions, path: Path) -> str:
    """Upload every Bundle / NDJSON under ``path``; return a one-paragraph summary."""
    return upload(options, path).summary


def upload(options: SourceOptions, path: Path) -> UploadResult:
    """Upload every Bundle / NDJSON under ``path``, streaming (see the module docstring)."""
    from fhirscreen.sources.server import make_client

    client = make_client(options, write_types=("*",))
    quality = DataQuality()
    files = sorted(FileSource(path).files(quality), key=load_phase)  # stable: by name within a phase
    uploader = Uploader(client, options.concurrency)
    log.info("uploading %d file(s) to %s", len(files), client.base_url)
    reported: list[object] = []  # findings already logged

    def phased() -> Iterator[tuple[int, Unit]]:
        for file in files:
            phase = load_phase(file)
            for unit in units_from_file(file, quality):
                yield phase, unit
            for finding in quality.findings[len(reported) :]:
                log.warning("%s: %s", finding.where, finding.message)
                reported.append(finding)

    failed = uploader.send_stream(phased())
    if failed:
        # One at a time: parallel transactions that create the same placeholder reference target
        # (an Encounter several files point at) can fail on HAPI with a 409 id-constraint race.
        log.info("trying %d failed transaction(s) once more, one at a time", len(failed))
        failed = uploader.send_all([u for u, _why in failed], concurrency=1)
    for _unit, why in failed:
        log.error("%s", why)
    seconds = time.monotonic() - uploader.started
    stats = client.stats()
    rate = uploader.resources / seconds if seconds > 0 else 0.0
    summary = (
        f"uploaded {uploader.resources} resources in {uploader.done} transactions to {client.base_url} "
        f"in {seconds:.1f} s ({rate:.0f} resources/s; {stats['requests']} requests, "
        f"{stats['retries']} retries)"
    )
    if failed:
        lost = sum(u.size for u, _why in failed)
        summary += f"; {len(failed)} transaction(s) with {lost} resources failed (see the messages above)"
    problems = sum(1 for f in quality.findings if f.severity == "error")
    if problems:
        summary += f"; {problems} input problem(s) skipped"
    return UploadResult(summary, uploader.total, len(failed), problems)
