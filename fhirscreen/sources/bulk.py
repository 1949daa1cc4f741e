"""FHIR Bulk Data export (HL7 Bulk Data Access IG 2.0): kick off, poll, download ndjson, read it.

- Kick-off, for the candidates only (Bulk Data 2.0): ``POST [base]/Patient/$export`` with a
  Parameters body naming each candidate (``patient``), ``_type`` = the screened types (Medication is
  not in the Patient compartment, and HAPI refuses it there: the source fetches the Medications the
  export refers to by id afterwards, and the ResearchStudies its records refer to), and
  ``_typeFilter`` keeping Observations to the trial's LOINC codes (``combo-code`` where the server
  lists it, so that components count) and SLEDAI scores (repeated filters are ORed). A server without
  the ``patient`` parameter (an error answer to the kick-off) gets ``GET [base]/$export`` instead, a
  system-level export of everyone (with Medication in ``_type``), and the log says so. All requests
  carry ``Prefer: respond-async``; ``_since`` is passed on when given.
- Poll the status URL. A 202's ``Retry-After`` is treated as an upper bound: the wait is a quarter of
  the time the job has run so far (at least 1 s, at most 30 s), so a finished export is found at most
  about 25 % late with a few dozen polls even for an hour-long job (doubling waits found a 17 s export
  after 31 s); never longer than the server asked (HAPI always says 120 s and is often done in 3). A
  429 is honoured (capped). ``X-Progress`` goes to the log. A total timeout ends it.
- Download each output with ``Accept: application/fhir+ndjson`` (HAPI answers ``application/fhir+json``
  with a Binary wrapper), into a private temp dir (``*.part`` renamed when complete), with the token only
  when ``requiresAccessToken`` is true and the file is on the server's origin. Error files
  (``error``/``outcome``, OperationOutcomes): an issue of severity error or fatal means data were not
  exported, data lost (for the candidates it names as ``Patient/<id>``, else for everyone); warnings
  and information are notes. The findings carry the issue's codes, never the server's free text.
- A download cut short (the connection dropped, fewer bytes than Content-Length, or, without a
  Content-Length, a last line that is not complete JSON, or fewer non-empty lines than the manifest's
  optional ``count``, counted as the file streams in) failed: the file is fetched again, up to 5
  times. A file that never arrives whole is lost: the run goes on and is marked partial (exit 5). More
  lines than ``count`` are all read, and noted. (HAPI's manifests have no ``count``.) A file that does
  not start with a JSON object (a storage login page, a proxy's error page, served with 200) is "not
  NDJSON (Content-Type ...)": fetched once more only, then lost.
- A file answered 404/410 is gone (the server's files expire): the manifest is fetched once more from
  the status URL, and the file asked for again there (by its type and place); still gone, it is lost
  ("export files expired"): the run goes on, partial (exit 5).
- Read each file with ``fhirscreen.sources.files.read_file``; DELETE the status URL (once the downloads
  are over, files lost or not: fhirscreen never resumes a job; a run that stops on an error leaves the
  job on the server); remove the temp dir.
- The temp dir is ``fhirscreen-bulk-<pid>-*`` (patient data): removed on exit, on SIGTERM/SIGINT (the CLI
  turns them into an exception), and, after a kill -9, by the next server run (``open_server_source``),
  which removes the dirs of processes that are gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from fhirscreen.fhir.resources import Resource, items
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import QueryPlan, SourceError
from fhirscreen.sources.files import read_file
from fhirscreen.sources.http import FHIR_JSON, FHIR_NDJSON, FhirClient, parse_retry_after
from fhirscreen.sources.server import (
    COMBO_CODE,
    COMPONENT_CODE,
    SLEDAI_TEXT,
    Capabilities,
    chunk_values,
    component_param,
    normalise_references,
    search_codes,
)
from fhirscreen.sources.server_text import outcome_text

log = logging.getLogger("fhirscreen.bulk")

POLL_FIRST_S = 1.0
POLL_CAP_S = 30.0
# The wait between polls as a share of the time the job has run: how late a finished export may be found.
POLL_SHARE = 0.25
TOTAL_TIMEOUT_S = 3600.0
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")  # manifest types become file names: no '../'
_CHUNK = 1 << 16
# Types a Patient-level export cannot hold (they are not in the Patient compartment).
OUTSIDE_PATIENT_COMPARTMENT = frozenset({"Medication", "ResearchStudy"})
# Kick-off answers that mean "this server cannot export by patient list": fall back to system level.
_UNSUPPORTED = (400, 404, 405, 422, 501)
WORKDIR_PREFIX = "fhirscreen-bulk-"
_WORKDIR = re.compile(r"^fhirscreen-bulk-(\d+)-")
_TAIL = 1 << 16
_HEAD = 64
_BOM = b"\xef\xbb\xbf"
# Tries in all for a Bulk file that is not NDJSON (an HTML page): one retry, for a proxy's passing page.
NOT_NDJSON_TRIES = 2
# A Bulk file answered with these is gone (the server's files expire): the manifest is fetched again.
GONE_STATUSES = (404, 410)
# A Bulk file refused: an object store answers a signed link that has expired so (the IG lets a client
# fetch the manifest again for new links). The status URL refused too is credentials refused (exit 3).
REFUSED_STATUSES = (401, 403)
FETCHED_AGAIN_STATUSES = GONE_STATUSES + REFUSED_STATUSES
OUTPUT_KEYS = ("output",)
ERROR_KEYS = ("error", "outcome")


def export_types(plan: QueryPlan) -> list[str]:
    return [*dict.fromkeys((*plan.resource_types, "Medication"))]


def type_filters(
    plan: QueryPlan,
    max_codes_chars: int = 1000,
    *,
    caps: Capabilities | None = None,
    sledai_text: str = "code:text",
) -> list[str]:
    """``_typeFilter`` queries (OR'ed): Observations with the trial's LOINC codes or a SLEDAI score.

    As in search mode (server.component_param), the codes are searched with ``combo-code`` where the
    server lists it, and again with ``component-code`` where it lists only that, so that a lab held
    only in ``Observation.component`` is exported too.
    """
    if "Observation" not in plan.resource_types:
        return []
    codes = search_codes(plan.observation_codes)
    if not codes:
        return []
    component = component_param(caps) if caps is not None else None
    by = COMBO_CODE if component == COMBO_CODE else "code"
    filters: list[str] = []
    for chunk in chunk_values(codes, max_codes_chars):
        filters.append(f"Observation?{by}={','.join(chunk)}")
        if component == COMPONENT_CODE:
            filters.append(f"Observation?{COMPONENT_CODE}={','.join(chunk)}")
    filters += [f"Observation?{sledai_text}={SLEDAI_TEXT}", "Observation?category=survey"]
    return filters


def kickoff_query(
    plan: QueryPlan,
    since: str | None = None,
    caps: Capabilities | None = None,
    sledai_text: str = "code:text",
) -> str:
    parts = [f"_type={','.join(export_types(plan))}"]
    parts += [
        f"_typeFilter={quote(f, safe='')}" for f in type_filters(plan, caps=caps, sledai_text=sledai_text)
    ]
    if since:
        parts.append(f"_since={quote(since, safe='')}")
    return "&".join(parts)


def patient_kickoff_parameters(
    plan: QueryPlan,
    patients: Sequence[str],
    since: str | None = None,
    caps: Capabilities | None = None,
    sledai_text: str = "code:text",
) -> dict[str, Any]:
    """The Parameters body of ``POST Patient/$export`` for these patients (types in their compartment)."""
    types = [t for t in plan.resource_types if t not in OUTSIDE_PATIENT_COMPARTMENT]
    parameters: list[dict[str, Any]] = [
        {"name": "_outputFormat", "valueString": FHIR_NDJSON},
        {"name": "_type", "valueString": ",".join(types)},
    ]
    parameters += [
        {"name": "_typeFilter", "valueString": f}
        for f in type_filters(plan, caps=caps, sledai_text=sledai_text)
    ]
    if since:
        parameters.append({"name": "_since", "valueInstant": since})
    parameters += [{"name": "patient", "valueReference": {"reference": f"Patient/{p}"}} for p in patients]
    return {"resourceType": "Parameters", "parameter": parameters}


class BulkExport:
    """One export job on one server; ``read`` yields the exported resources."""

    def __init__(
        self,
        client: FhirClient,
        caps: Any = None,
        *,
        level: str = "system",
        timeout: float = 60.0,
        total_timeout: float = TOTAL_TIMEOUT_S,
        poll_cap: float = POLL_CAP_S,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        patients: Sequence[str] | None = None,
        since: str | None = None,
        sledai_text: str = "code:text",
    ) -> None:
        """``patients``: export only these (``POST Patient/$export``), falling back to a system-level
        export when the server cannot; None: a ``level`` export of everyone. ``sledai_text``: the text
        search parameter of the SLEDAI ``_typeFilter``."""
        self.client = client
        self.patients = list(patients) if patients is not None else None
        self.since = since
        self.caps = caps
        self.sledai_text = sledai_text
        self.level = level
        # True once the server took the patient list (``POST Patient/$export``): the export then holds
        # only those patients' records; False for an export of everyone (or a Group's).
        self.for_patients = False
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.poll_cap = poll_cap
        self._sleep = sleep or client.sleep_fn
        self._clock = clock

    def _caps(self) -> Capabilities | None:
        return self.caps if isinstance(self.caps, Capabilities) else None

    def kickoff_path(self) -> str:
        if self.level == "system":
            return "$export"
        if self.level == "patient":
            return "Patient/$export"
        if self.level.startswith("group:"):
            return f"Group/{quote(self.level.split(':', 1)[1], safe='')}/$export"
        raise ValueError(f"unknown export level {self.level!r}")

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        if (
            self.caps is not None
            and getattr(self.caps, "listed", False)
            and "export" not in self.caps.operations
        ):
            log.warning("the CapabilityStatement does not list $export; trying anyway")
        remove_stale_workdirs()
        status_url = self.kickoff(plan)
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        completed = False
        try:
            manifest = self.wait(status_url)
            files = self.download(manifest, workdir, quality, status_url)
            completed = True
            for file in files:
                # Findings name the file as the export gave it, not its temporary download path.
                for resource, origin in read_file(file, quality, shown=_shown(file)):
                    normalise_references(resource, self.client.base_url)
                    yield resource, origin
        finally:
            if completed:
                self.delete(status_url)
            shutil.rmtree(workdir, ignore_errors=True)

    # -- steps ---------------------------------------------------------------------------------------

    def kickoff(self, plan: QueryPlan) -> str:
        if self.patients is not None:
            response = self._kickoff_for_patients(plan, self.patients)
            if response is not None:
                self.for_patients = True
                return self._status_url(response, f"for {len(self.patients)} candidate(s)")
            self.level = "system"
        path = f"{self.kickoff_path()}?{kickoff_query(plan, self.since, self._caps(), self.sledai_text)}"
        response = self.client.request(
            "GET",
            path,
            headers={"Prefer": "respond-async", "Accept": FHIR_JSON},
            expect=(202,),
            what="Bulk Data kick-off ($export)",
        )
        return self._status_url(response, f"({self.level} level)")

    def _kickoff_for_patients(self, plan: QueryPlan, patients: Sequence[str]) -> Any:
        """``POST Patient/$export`` with the patient list; None when the server cannot do that."""
        response = self.client.request(
            "POST",
            "Patient/$export",
            json_body=patient_kickoff_parameters(plan, patients, self.since, self._caps(), self.sledai_text),
            headers={"Prefer": "respond-async", "Accept": FHIR_JSON, "Content-Type": FHIR_JSON},
            expect=(202, *_UNSUPPORTED),
            idempotent=False,
            what="Bulk Data kick-off (Patient/$export for the candidates)",
        )
        if response.status_code == 202:
            return response
        detail = ""
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, Mapping) and body.get("resourceType") == "OperationOutcome":
                detail = f": {outcome_text(body)}"
        response.close()
        log.warning(
            "the server cannot export a list of patients (HTTP %d on Patient/$export%s); exporting every "
            "patient instead (system-level $export), which takes longer",
            response.status_code,
            detail[:300],
        )
        return None

    def _status_url(self, response: Any, scope: str) -> str:
        location = response.headers.get("Content-Location")
        if not location:
            raise SourceError("Bulk Data kick-off: 202 without a Content-Location (status URL)")
        log.info("bulk export started %s", scope)
        return self.client.resolve(location)

    def wait(self, status_url: str) -> dict[str, Any]:
        """Poll until the manifest is ready; return it."""
        started = self._clock()
        polls = 0
        while True:
            response = self.client.request(
                "GET",
                status_url,
                expect=(200, 202),
                what="Bulk Data status poll",
                headers={"Accept": "application/json"},
            )
            polls += 1
            if response.status_code == 200:
                try:
                    manifest = response.json()
                except ValueError:
                    manifest = None
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise SourceError(
                        "Bulk Data status: the completion manifest is not JSON with an output list"
                    )
                log.info("bulk export ready after %d polls (%.1f s)", polls, self._clock() - started)
                return manifest
            # A job status, not patient data; control characters are dropped, the length bounded.
            progress = "".join(c for c in (response.headers.get("X-Progress") or "") if c.isprintable())
            progress = progress.strip()[:100]
            asked = parse_retry_after(response.headers.get("Retry-After"))
            elapsed = self._clock() - started
            delay = min(max(POLL_FIRST_S, POLL_SHARE * elapsed), self.poll_cap)
            wait = min(delay, asked) if asked is not None else delay
            if elapsed + wait > self.total_timeout:
                raise SourceError(
                    f"Bulk Data export not ready after {self.total_timeout:.0f} s ({polls} polls); "
                    "giving up (the job is left on the server)"
                )
            log.info(
                "bulk export in progress%s; next poll in %.1f s", f" ({progress})" if progress else "", wait
            )
            self._sleep(wait)

    def download(
        self,
        manifest: Mapping[str, Any],
        workdir: Path,
        quality: DataQuality,
        status_url: str | None = None,
    ) -> list[Path]:
        """Download the output files (returned, in manifest order) and the error files (reported).

        A file lost after retries is data lost. A file gone (404/410: the server's files expire) or
        refused (401/403: a signed link that expired) is asked for once more from the manifest fetched
        again from ``status_url`` (the IG lets a client do that), found there by its type and its place
        among the files of that type; still gone or refused: data lost ("export files expired"), and the
        run goes on."""
        token_ok = bool(manifest.get("requiresAccessToken"))
        # ``output`` is a list here: the status poll refuses a manifest without one.
        outputs = _listed(manifest, OUTPUT_KEYS)
        errors = _listed(manifest, ERROR_KEYS)
        files: dict[int, Path] = {}
        error_files: dict[int, Path] = {}
        gone: list[tuple[str, int, int]] = []  # (kind, index, HTTP status)
        for index, item in enumerate(outputs):
            try:
                files[index] = self._download_one(item, index, workdir, token_ok, quality=quality)
            except SourceError as exc:
                if exc.status in FETCHED_AGAIN_STATUSES:
                    gone.append(("output", index, exc.status or 0))
                    continue
                if not exc.transient:
                    raise
                quality.lost(_where("output", index, item), f"could not be downloaded: {exc}")
        for index, item in enumerate(errors):
            try:
                error_files[index] = self._download_one(item, index, workdir, token_ok, prefix="error")
            except SourceError as exc:
                if exc.status in FETCHED_AGAIN_STATUSES:
                    gone.append(("error", index, exc.status or 0))
                    continue
                if not exc.transient:
                    raise
                # What it lists as not exported is unknown: anyone's record may be incomplete.
                quality.lost(
                    _where("error", index, item),
                    f"the export's error file was not downloaded whole, so what the server could not "
                    f"export is unknown: {exc}",
                )
        if gone:
            fresh = self._fetch_gone_again(
                status_url, gone, outputs, errors, files, error_files, workdir, quality
            )
            if fresh is not None and fresh.get("transactionTime") != manifest.get("transactionTime"):
                # The same job's manifest should not change: files from another export may be newer
                # or older than the rest, so a record may mix two moments. Said, not lost.
                quality.add(
                    "warning",
                    "bulk export",
                    "export-changed",
                    "the manifest fetched again for expired files has another transactionTime than the "
                    "first: the files downloaded from it may come from another export than the others",
                )
        for index in sorted(error_files):
            self._report_errors(error_files[index], index, quality)
        log.info("downloaded %d bulk file(s), %d error file(s)", len(files), len(error_files))
        return [files[index] for index in sorted(files)]

    def _fetch_gone_again(
        self,
        status_url: str | None,
        gone: Sequence[tuple[str, int, int]],
        outputs: Sequence[Mapping[str, Any]],
        errors: Sequence[Mapping[str, Any]],
        files: dict[int, Path],
        error_files: dict[int, Path],
        workdir: Path,
        quality: DataQuality,
    ) -> dict[str, Any] | None:
        """The files that were gone (404/410) or refused (401/403), from the manifest fetched once more
        (returned; None if it could not be fetched); else data lost."""
        log.warning(
            "%d export file(s) gone or refused (HTTP %s: expired?); fetching the manifest again",
            len(gone),
            "/".join(str(s) for s in sorted({status for _kind, _index, status in gone})),
        )
        fresh = self._manifest_again(status_url)
        token_ok = bool(fresh.get("requiresAccessToken")) if fresh is not None else False
        for kind, index, status in gone:
            old, into = (outputs, files) if kind == "output" else (errors, error_files)
            item = old[index]
            again = _same_file(old, _listed(fresh, OUTPUT_KEYS if kind == "output" else ERROR_KEYS), index)
            if fresh is None:
                why = "the manifest could not be fetched again"
            elif again is None:
                why = "the manifest fetched again does not list it"
            else:
                try:
                    into[index] = self._download_one(
                        again,
                        index,
                        workdir,
                        token_ok,
                        prefix="" if kind == "output" else "error",
                        quality=quality if kind == "output" else None,
                    )
                except SourceError as exc:
                    if not (exc.transient or exc.status in FETCHED_AGAIN_STATUSES):
                        raise
                    why = (
                        f"the file the manifest fetched again lists is {_gone_or_refused(exc.status)} too "
                        f"(HTTP {exc.status})"
                        if exc.status in FETCHED_AGAIN_STATUSES
                        else f"the file the manifest fetched again lists could not be downloaded: {exc}"
                    )
                else:
                    log.info("%s: downloaded from the manifest fetched again", _where(kind, index, item))
                    continue
            rtype = _type_of(item)
            was = f"was {_gone_or_refused(status)} (HTTP {status})"
            if kind == "output":
                message = (
                    f"export files expired: the {rtype} file {was} and {why}; its {rtype} resources were "
                    "not read"
                )
            else:
                message = (
                    f"export files expired: the export's error file {was} and {why}, so what the server "
                    "could not export is unknown"
                )
            quality.lost(_where(kind, index, item), message)
        return fresh

    def _manifest_again(self, status_url: str | None) -> dict[str, Any] | None:
        """The completion manifest fetched once more from the status URL; None if it is not there."""
        if status_url is None:
            return None
        try:
            response = self.client.request(
                "GET",
                status_url,
                expect=(200,),
                what="Bulk Data status (the manifest fetched again)",
                headers={"Accept": "application/json"},
            )
            manifest = response.json()
        except SourceError as exc:
            if exc.status in REFUSED_STATUSES:
                raise  # the status URL refused: the credentials are refused, not a link expired
            log.warning("the manifest could not be fetched again: %s", exc)
            return None
        except ValueError as exc:
            log.warning("the manifest could not be fetched again: %s", exc)
            return None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
            log.warning("the manifest fetched again is not JSON with an output list")
            return None
        return manifest

    def delete(self, status_url: str) -> None:
        """Tell the server the files can go; a failure here does not spoil the run."""
        try:
            self.client.request(
                "DELETE", status_url, expect=(200, 202, 204, 404), what="Bulk Data cleanup (DELETE)"
            )
        except SourceError as exc:
            log.warning("could not delete the export job on the server: %s", exc)

    # -- helpers -------------------------------------------------------------------------------------

    def _download_one(
        self,
        item: Mapping[str, Any],
        index: int,
        workdir: Path,
        token_ok: bool,
        prefix: str = "",
        quality: DataQuality | None = None,
    ) -> Path:
        rtype = _type_of(item)
        url = item.get("url")
        if not isinstance(url, str) or not url:
            raise SourceError(f"Bulk Data manifest: output {index} has no url")
        url = self.client.resolve(url)
        name = f"{prefix + '.' if prefix else ''}{index:04d}.{rtype}.ndjson"
        target = workdir / name
        expected = _count_of(item)
        checks: list[NdjsonCheck] = []

        def check(headers: Mapping[str, str]) -> NdjsonCheck:
            checks.append(NdjsonCheck(expected, headers.get("Content-Type")))
            return checks[-1]

        # The token goes to the file only when the manifest requires it (and, in the client, only when
        # the file is on the server's own origin).
        self.client.download(
            url,
            target,
            headers={"Accept": FHIR_NDJSON},
            authenticate=token_ok,
            what=f"Bulk Data download ({rtype})",
            check=check,
        )
        lines = checks[-1].lines if checks else 0
        if expected is not None and lines > expected and quality is not None:
            quality.add(
                "warning",
                f"bulk export file {index} ({rtype})",
                "export-count",
                f"the manifest said {expected} resource(s), the file held {lines} line(s); all were read",
            )
        return target

    def _report_errors(self, path: Path, index: int, quality: DataQuality) -> None:
        """The OperationOutcomes of an export error file as findings.

        An issue of severity error or fatal (or none: the file is the server's list of errors) means
        data were not exported: data lost, for the patients the issue names (``Patient/<id>`` in its
        expression, location or text) when they are among the patients exported, else for everyone.
        Warnings and information stay notes. The server's text is not copied into the findings (it may
        name a patient by more than an id); only the issue's severity and codes, and the reference."""
        scratch = DataQuality()
        everyone = f"bulk export error file {index}"
        for resource, _origin in read_file(path, scratch):
            if resource.get("resourceType") != "OperationOutcome":
                continue
            for issue in items(resource.get("issue")):
                if not isinstance(issue, Mapping):
                    continue
                severity = issue.get("severity")
                head = _issue_head(issue)
                if severity in ("warning", "information"):
                    quality.add(
                        "warning" if severity == "warning" else "info",
                        "bulk export",
                        "export-error",
                        f"the server reported a {severity} about the export ({head})",
                    )
                    continue
                named = self._exported_patients(_patients_named(issue))
                if named:
                    for pid in named:
                        quality.lost(
                            f"Patient/{pid}",
                            f"the Bulk export reported that this patient's data were not all exported "
                            f"({head}): the record may be incomplete",
                        )
                else:
                    quality.lost(
                        everyone,
                        f"the Bulk export reported that data were not exported ({head}) without naming "
                        "a patient it exported: anyone's record may be incomplete",
                    )
        if any(f.severity == "error" for f in scratch.findings):
            quality.lost(
                everyone,
                "an entry of the export's error file could not be read, so what the server could not "
                "export is unknown: anyone's record may be incomplete",
            )

    def _exported_patients(self, named: Sequence[str]) -> list[str]:
        """``named``, if each is one of the candidates this export was for (any, for an export of
        everyone); else none: a reference to someone else does not scope the loss (it may be misread)."""
        if self.patients is not None and not set(named) <= set(self.patients):
            return []
        return list(named)


# A patient reference in an OperationOutcome issue (FHIR ids: 1-64 of A-Z a-z 0-9 - .).
_PATIENT_REF = re.compile(r"(?<![A-Za-z])Patient/([A-Za-z0-9.-]{1,64})")


def _patients_named(issue: Mapping[str, Any]) -> list[str]:
    """The patient ids an OperationOutcome issue names (``Patient/<id>`` in its expression, location,
    diagnostics or details.text), in order, once each. An id read with a sentence's full stop at its
    end is taken both with and without it."""
    texts: list[str] = []
    for key in ("expression", "location"):
        texts += [t for t in items(issue.get(key)) if isinstance(t, str)]
    texts += [t for t in (issue.get("diagnostics"),) if isinstance(t, str)]
    details = issue.get("details")
    if isinstance(details, Mapping) and isinstance(details.get("text"), str):
        texts.append(details["text"])
    found: list[str] = []
    for text in texts:
        for m in _PATIENT_REF.finditer(text[:10_000]):
            pid = m.group(1)
            found += [pid, pid.rstrip(".")] if pid.endswith(".") and pid.rstrip(".") else [pid]
    return [*dict.fromkeys(p for p in found if p and p != ".")]


def _issue_head(issue: Mapping[str, Any]) -> str:
    """An issue's severity, code and details codes (code-like tokens only): no server free text."""
    head = outcome_text({"resourceType": "OperationOutcome", "issue": [_codes_only(issue)]}) or ""
    return head if head and head != "(no diagnostics)" else "no severity or code given"


def _codes_only(issue: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: issue[k] for k in ("severity", "code") if k in issue}
    details = issue.get("details")
    if isinstance(details, Mapping) and "coding" in details:
        kept["details"] = {"coding": details["coding"]}
    return kept


def _listed(manifest: Mapping[str, Any] | None, keys: Sequence[str]) -> list[Mapping[str, Any]]:
    """The file items of a manifest under ``keys`` (``output``; or ``error`` and ``outcome``)."""
    if manifest is None:
        return []
    return [o for key in keys for o in items(manifest.get(key)) if isinstance(o, Mapping)]


def _same_file(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], index: int
) -> Mapping[str, Any] | None:
    """The item of ``new`` for ``old[index]``: the same type, at the same place among that type's."""
    rtype = _type_of(old[index])
    place = sum(1 for item in old[:index] if _type_of(item) == rtype)
    same = [item for item in new if _type_of(item) == rtype]
    return same[place] if place < len(same) else None


def _where(kind: str, index: int, item: Mapping[str, Any]) -> str:
    """A finding's where for a manifest file (not a patient: data lost there touches everyone)."""
    if kind == "output":
        return f"bulk export file {index} ({_type_of(item)})"
    return f"bulk export error file {index}"


def _shown(file: Path) -> str:
    """How findings name a downloaded file: "Bulk export file 3 (Observation)" for 0003.Observation.ndjson."""
    number, _, rest = file.name.partition(".")
    rtype = rest.removesuffix(".ndjson")
    return f"Bulk export file {int(number)} ({rtype})" if number.isdigit() and rtype else file.name


def _type_of(item: Mapping[str, Any]) -> str:
    rtype = str(item.get("type") or "")
    return rtype if _TYPE_NAME.match(rtype) else "Unknown"


def _media_type(content_type: str | None) -> str:
    """A Content-Type's media type, safe to show (printable, bounded)."""
    kind = (content_type or "").split(";")[0].strip()
    kind = "".join(c for c in kind if c.isprintable())[:80]
    return kind or "none given"


def _count_of(item: Mapping[str, Any]) -> int | None:
    """A manifest output's ``count`` (optional: the number of resources in the file), if usable."""
    count = item.get("count")
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    if count is not None:
        log.warning(
            "bulk export manifest: a count that is not a whole number (%s); not checked", type(count).__name__
        )
    return None


class NdjsonCheck:
    """One try of a Bulk file download, looked at as it streams in (``FhirClient.download``'s check):
    the non-empty lines are counted (the resources, as ``read_file`` reads them); the file is not whole
    when its last line is cut (``incomplete_ndjson``) or it holds fewer lines than the manifest's
    ``count`` said (a cut exactly at a line end)."""

    def __init__(self, expected: int | None = None, content_type: str | None = None) -> None:
        self.expected = expected
        self.content_type = _media_type(content_type)
        self.complete_lines = 0
        self._open = False  # the current (last) line has something in it
        self._head = b""  # the first bytes of the body

    def feed(self, chunk: bytes) -> None:
        if len(self._head) < _HEAD:
            self._head += chunk[: _HEAD - len(self._head)]
        parts = chunk.split(b"\n")
        for part in parts[:-1]:
            if self._open or part.strip():
                self.complete_lines += 1
            self._open = False
        if parts[-1].strip():
            self._open = True

    @property
    def lines(self) -> int:
        return self.complete_lines + (1 if self._open else 0)

    def problem(self, path: Path) -> tuple[str, int | None] | None:
        start = self._head.removeprefix(_BOM).lstrip()[:1]
        if start and start != b"{":
            # A web page (a storage login, a proxy's error page) or something else, not FHIR resources:
            # fetched once more (a proxy's page may be passing), not the whole retry budget.
            page = ", a web page" if start == b"<" else ""
            return (
                f"not NDJSON (Content-Type {self.content_type}{page}): the file does not start with a "
                "JSON object",
                NOT_NDJSON_TRIES,
            )
        cut = incomplete_ndjson(path)
        if cut is not None:
            return cut, None
        if self.expected is not None and self.lines < self.expected:
            return (
                f"the manifest says {self.expected} resource(s) but the file holds {self.lines} line(s): "
                "incomplete",
                None,
            )
        return None


def incomplete_ndjson(path: Path) -> str | None:
    """Why a downloaded NDJSON file is cut short (its last line is not complete JSON); None if whole.

    Without a Content-Length a connection closed early looks like the end of the file; a cut almost
    always falls inside a line, and this catches it. (A cut exactly at a line end cannot be told apart.)
    """
    size = path.stat().st_size
    block = _TAIL
    with path.open("rb") as fh:
        while True:
            start = max(0, size - block)
            fh.seek(start)
            tail = fh.read().rstrip()
            if not tail:
                return None
            newline = tail.rfind(b"\n")
            if newline >= 0 or start == 0:
                break
            block *= 4
    last = tail[newline + 1 :]
    try:
        parsed = orjson.loads(last)
    except orjson.JSONDecodeError:
        try:
            parsed = json.loads(last.decode("utf-8", errors="replace").removeprefix("\ufeff"))
        except (ValueError, RecursionError):
            return f"the file ends in the middle of a line ({size} bytes received): cut short"
    if not isinstance(parsed, dict):
        return f"the last line is not a JSON object ({size} bytes received): cut short"
    return None


def remove_stale_workdirs(tmp: Path | None = None) -> list[Path]:
    """Remove the temp dirs that earlier runs, killed before they could clean up, left behind: those
    named for a process that is gone and owned by this user. Returns what was removed."""
    root = Path(tmp or tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _WORKDIR.match(entry.name)
        if m is None or not entry.is_dir() or entry.is_symlink():
            continue
        pid = int(m.group(1))
        try:
            if entry.stat().st_uid != os.getuid() or pid == os.getpid() or _alive(pid):
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
        log.info("removed %s, left by an earlier run (process %d is gone)", entry, pid)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _gone_or_refused(status: int | None) -> str:
    return "refused" if status in REFUSED_STATUSES else "gone"
