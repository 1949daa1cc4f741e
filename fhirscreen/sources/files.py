"""Read FHIR R4 JSON from files: Bundles of any type and Bulk Data NDJSON, mixed freely.

Speed (file mode must screen >= 50,000 resources/s on one core; ``bench/file_bench.py`` measures it):

- JSON is parsed with orjson, 2-3x faster than the standard library. When orjson refuses a document
  the standard library parses it again, so what is accepted (NaN, lone surrogates, huge integers) and
  the error messages in data-quality findings are exactly those of ``json``. On that slow path only, a
  UTF-8 BOM is dropped (an info finding) and invalid UTF-8 is replaced by U+FFFD (a warning naming the
  byte): a bad byte costs the value it is in, never the line or the file. JSON nested too deeply for
  the parsers (a RecursionError) costs its line, or its file for a JSON document.
- A file that cannot be read (I/O error, a broken gzip, not JSON at all) is lost: besides its finding,
  ``DataQuality.lost`` marks the run partial (exit 5). A bad NDJSON line is only a finding.
- An empty file (0 bytes, nothing once decompressed, or only blank space) is an ``empty-file`` finding
  naming it, whatever its kind; a truncated download is the usual cause. An empty ``.json`` is not a
  JSON document at all, so what it was meant to hold is lost (an error, exit 5, as any file that is not
  JSON); an empty ``.ndjson`` is a valid NDJSON file of no resources (an export may leave a type
  empty), so it is a warning and the run is not partial.
- With a ``QueryPlan``, resources of types screening does not read are not parsed at all. A Bulk NDJSON
  line that starts ``{"resourceType":"Encounter"`` (as every exporter writes it) is passed on as the
  stub ``{"resourceType": "Encounter"}``, so it is still counted as read and skipped; a line of such a
  type that does not end in ``}`` (a truncated line) is parsed in full so that it is still reported as
  malformed. Other damage inside a skipped line goes unreported: nothing of it would be used anyway
  (nor would a second, later "resourceType" member in the same object, which ``json`` would honour).
  Bundle entries of skipped types become the same stubs and are not walked for references.
- References are rewritten only in Bundles that have fullUrl aliases and only in the resources of
  kept patients; other patients' resources get just their patient reference resolved.
- With ``QueryPlan.dropped`` too, an NDJSON line of a patient outside the kept set is parsed and
  dropped here rather than handed on, when all the record builder would do with it is count it
  (``Prefilter.drops``); the count goes into the tally the builder shares. At 50,000 people that is
  most lines, and handing each on cost more than parsing it. Every line is still parsed, so damaged
  lines are reported whoever they belong to.

Memory (the design and its trade-off are in ``fhirscreen.pipeline``): with ``QueryPlan.keep_patients``
and ``population`` the source finds the initial population while reading. Each file's Conditions are
looked at before its other resources; a patient added late is caught up by reading again only the
files that held their earlier resources, and Medications (shared, not tied to a patient) are passed on
only when a kept resource refers to them, from the same Bundle or, last, from a re-read of the files
that held them. With one bundle per patient, or Bulk NDJSON, only the small Condition and Medication
files are ever read twice. ResearchStudies (shared too: what a ResearchSubject is on) are few, and are
all passed on as they are read; the record builder joins them by reference (``PatientRecord.study``).
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import re
import stat
import zlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from fhirscreen.fhir.codes import ValueSet
from fhirscreen.fhir.json_text import loads_finite, may_underflow, odd_numbers_message
from fhirscreen.fhir.resources import (
    PATIENT_LINK,
    Resource,
    entry_problem,
    is_fhir_id,
    is_type_name,
    is_usable,
    items,
    json_kind,
    not_a_resource,
    reference_id,
)
from fhirscreen.quality import DATA_LOST, DataQuality
from fhirscreen.record import (
    KEPT_TYPES,
    MERGE_LINKS,
    Dropped,
    malformed_concept,
    patient_id,
    report_malformed,
)
from fhirscreen.sources.base import NothingUsableError, QueryPlan, SourceError
from fhirscreen.sources.line_ranges import line_ranges

log = logging.getLogger("fhirscreen")

_SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")
# The problem code of an empty input file (see the module docstring).
EMPTY_FILE = "empty-file"
# The problem code of a Bundle entry that deletes a resource (request.method DELETE): see bundle_resources.
DELETED_ENTRY = "deleted-entry"
# The resourceType as the first member of an NDJSON line: how every Bulk Data exporter writes it.
_NOT_PATIENT_IDS = frozenset({"Patient/", "Patient/_history"})
_BOM = b"\xef\xbb\xbf"
# Only a FHIR type name (``is_type_name``): any other leading value is parsed, and reported unquoted.
LEADING_TYPE = re.compile(rb'\s*\{\s*"resourceType"\s*:\s*"([A-Z][A-Za-z]{1,63})"')
_NO_ALIASES: Mapping[str, str] = {}  # an NDJSON line is a resource on its own (never written to)


# What a gzip file starts with: a compressed export saved without ``.gz`` is read decompressed.
GZIP_MAGIC = b"\x1f\x8b"
# The problem code (info) of an ``.ndjson`` file that holds one pretty-printed JSON document.
NOT_NDJSON = "not-ndjson"


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz") or _gzipped(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _gzipped(path: Path) -> bool:
    """Whether a file starts with gzip's magic bytes (a compressed export saved without ``.gz``)."""
    try:
        with path.open("rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False  # the read that follows reports it


def _one_document(path: Path) -> bool:
    """Whether an ``.ndjson`` file holds one pretty-printed JSON document (``starts_as_document``)."""
    try:
        with _open_binary(path) as fh:
            return starts_as_document(fh)
    except OSError:
        return False  # the read that follows reports it


def starts_as_document(lines: Iterable[bytes]) -> bool:
    """Whether the lines of an ``.ndjson`` file hold one pretty-printed JSON document (the first line with
    content is a lone ``{`` or ``[``) rather than one resource per line. False when they cannot be read:
    the read that follows reports it."""
    try:
        for line in lines:
            if not line.isspace():
                return line.strip() in (b"{", b"[")
    except (OSError, EOFError, zlib.error):
        return False
    return False


def not_ndjson(quality: DataQuality, shown: str) -> None:
    """The finding of an ``.ndjson`` file read as one document (``starts_as_document``)."""
    quality.add(
        "info", shown, NOT_NDJSON,
        "one JSON document (pretty-printed), not one resource per line: read as a document",
    )


# Names of exports in a form not read here (JSON Lines, bzip2, zstd, a partial download...): a warning.
_EXPORT_LIKE = re.compile(r"\.(?:nd)?jsonl?(?:\.[a-z0-9]{1,8})*$")
_CHECKSUMS = (".md5", ".sha1", ".sha256", ".sha512")
IGNORED_FILE = "ignored-file"
UNREADABLE_FILE = "unreadable-file"


def discover(root: Path, quality: DataQuality, exclude: Path | None = None) -> list[Path]:
    """The FHIR files at ``root`` (a file, or a folder searched recursively), sorted.

    Links to folders are followed, each folder once (a link back up, or a second way to a folder, is an
    info note); real folders are taken before links, so files are named by their real path when they
    can be. A folder that cannot be listed, and an entry with a FHIR suffix that is not a regular file
    (a dangling link, a FIFO), are lost (``DataQuality.lost``: the run is partial and nobody eligible).
    A file named like an export in a form not read here (``.jsonl``, ``.ndjson.bz2``, ``.json.zst``...)
    and a dangling link of any other name are ``ignored-file`` warnings. The folder ``exclude`` (--out
    inside --data: the run's own outputs) is not searched, with an info note.

    Raises SourceError when ``root`` cannot be reached, listed or read, or when nothing could be found
    because of that; NothingUsableError when there is no FHIR file at all.
    """
    try:
        top = root.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise SourceError(f"{root}: no such file or directory") from None
    except OSError as exc:
        raise SourceError(f"{root}: cannot be reached: {_why(exc)}") from None
    if not stat.S_ISDIR(top.st_mode):
        try:
            with root.open("rb"):
                pass
        except OSError as exc:
            raise SourceError(f"{root}: cannot be read: {_why(exc)}") from None
        return [root]
    excluded: tuple[int, int] | None = None
    if exclude is not None:
        try:
            out = exclude.stat()
            excluded = (out.st_dev, out.st_ino)
        except OSError:
            pass  # not there (yet): nothing of it to read
    try:
        entries = _listing(root)
    except OSError as exc:
        raise SourceError(f"{root}: the folder cannot be listed: {_why(exc)}") from None
    seen: dict[tuple[int, int], Path] = {(top.st_dev, top.st_ino): root}
    found: list[Path] = []
    lost: list[str] = []
    real: list[tuple[Path, list[os.DirEntry[str]]]] = [(root, entries)]
    linked: list[Path] = []  # folders reached through a link: walked once the real ones are done
    while real or linked:
        if real:
            folder, listing = real.pop()
        else:
            folder = linked.pop()
            try:
                listing = _listing(folder)
            except OSError as exc:
                quality.lost(str(folder), f"the folder could not be listed: {_why(exc)}")
                lost.append(str(folder))
                continue
        subfolders: list[Path] = []
        for entry in listing:
            path = Path(entry.path)
            try:
                info: os.stat_result | None = entry.stat()  # through a link
                why = ""
            except FileNotFoundError:
                info, why = None, "a link whose target does not exist"
            except OSError as exc:
                info, why = None, f"cannot be reached: {_why(exc)}"
            if info is not None and stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key == excluded:
                    quality.add(
                        "info", str(path), "out-folder-skipped",
                        "the --out folder is inside --data: its files (the runs' own outputs) are not read",
                    )
                elif key in seen:
                    quality.add(
                        "info", str(path), "folder-read-once",
                        f"the same folder as {seen[key]}, which is read: not read twice",
                    )
                else:
                    seen[key] = path
                    if entry.is_symlink():
                        linked.append(path)
                    else:
                        subfolders.append(path)
                continue
            name = entry.name.lower()
            if name.endswith(_SUFFIXES):
                if info is not None and stat.S_ISREG(info.st_mode):
                    found.append(path)
                    continue
                what = why or f"not a regular file ({_file_kind(info.st_mode) if info else ''})"
                quality.add("error", str(path), UNREADABLE_FILE, f"{what}; skipped")
                quality.lost(str(path), f"the file could not be read: {what}")
                lost.append(str(path))
            elif info is None and entry.is_symlink():
                quality.add(
                    "warning", str(path), IGNORED_FILE,
                    f"{why}: not read; if it led to FHIR files, they were not screened",
                )
            elif _EXPORT_LIKE.search(name) and not name.endswith(_CHECKSUMS):
                quality.add(
                    "warning", str(path), IGNORED_FILE,
                    "named like a FHIR export, but only .json and .ndjson files (optionally .gz) are read: "
                    "not read; convert or rename it if it holds FHIR data",
                )
        for sub in reversed(subfolders):
            try:
                real.append((sub, _listing(sub)))
            except OSError as exc:
                quality.lost(str(sub), f"the folder could not be listed: {_why(exc)}")
                lost.append(str(sub))
        linked.sort(reverse=True)
    if not found:
        if lost:
            raise SourceError(
                f"{root}: no FHIR file could be read; {len(lost)} folder(s) or file(s) could not be "
                f"(first: {min(lost)})"
            )
        raise NothingUsableError(f"{root}: no FHIR .json or .ndjson files found (searched recursively)")
    return sorted(found)


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _why(exc: OSError) -> str:
    """"permission denied", "input/output error"...: the OS's words, without the path."""
    return exc.strerror.lower() if exc.strerror else type(exc).__name__


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def loads_damaged(data: bytes, where: str, quality: DataQuality, unit: str) -> Any:
    """The slow path for what orjson refused: a UTF-8 BOM is dropped (an info finding), invalid UTF-8
    is replaced by U+FFFD (a warning naming the byte), then ``json`` decides. So a bad byte or a BOM
    costs at most the value it is in, never the file. Raises json.JSONDecodeError or RecursionError."""
    if data.startswith(_BOM):
        quality.add("info", where, "utf8-bom", f"UTF-8 BOM at the start of the {unit}: ignored")
        data = data[len(_BOM) :]
        try:
            if not may_underflow(data):
                return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        at = f"at byte {exc.start} (line {line})" if unit == "file" else f"at byte {exc.start} of the line"
        quality.add(
            "warning",
            where,
            "invalid-utf8",
            f"invalid UTF-8 {at}: the bad bytes were replaced by U+FFFD and the rest was read; a code "
            "or value with them in it may not be recognised",
        )
        text = data.decode("utf-8", errors="replace")
    parsed, odd = loads_finite(text)
    if odd:
        quality.add("warning", where, "non-finite-number", odd_numbers_message(odd))
    return parsed


class FileSource:
    """A file, or a directory searched recursively, of ``.json`` / ``.ndjson`` (optionally gzipped)."""

    # Honours QueryPlan.keep_patients / population (the pipeline's memory prefilter).
    prefilters = True
    # Every resource of the input is handed on (other types as stubs) or counted in QueryPlan.dropped:
    # a type absent from what was read is absent from the input (the pipeline says so of Conditions).
    reads_everything = True

    def __init__(
        self, path: str | os.PathLike[str], workers: int = 1, exclude: Path | None = None
    ) -> None:
        self.path = Path(path)
        # A folder under ``path`` that is not input (--out inside --data: the run's own outputs).
        self.exclude = exclude
        # Large Bulk NDJSON files are read on up to this many processes (``ndjson_ranges``).
        self.workers = workers

    def describe(self) -> str:
        return str(self.path)

    def files(self, quality: DataQuality | None = None) -> list[Path]:
        """The FHIR files to read, sorted (see ``discover``). Without ``quality`` (a caller with no
        findings to report them in) a folder or file that cannot be read raises SourceError."""
        report = DataQuality() if quality is None else quality
        found = discover(self.path, report, self.exclude)
        if quality is None and report.partial:
            lost = next(f for f in report.findings if f.problem == DATA_LOST)
            raise SourceError(f"{lost.where}: {lost.message}")
        return found

    def read(self, plan: QueryPlan | None, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        """Every resource; with a plan, resources of types neither the plan nor the record builder
        reads are passed on as ``{"resourceType": T}`` stubs (counted, not parsed).

        With ``plan.keep_patients``, other patients' resources are passed on with only their patient
        reference resolved (the builder checks and drops them). With ``plan.population`` too, the kept
        set is grown here: each file's Conditions are looked at before its other resources, and the
        files that held resources of a patient who joined later are read again for that patient.
        Medications come only when a kept resource refers to them, ResearchStudies always (see the module
        docstring).
        """
        files = self.files(quality)
        # A Bundle is opened wherever it is, an NDJSON line included (some exports write one Bundle per
        # patient per line): its entries are what the plan wants, never one skipped "Bundle".
        wanted = None if plan is None else KEPT_TYPES | frozenset(plan.resource_types) | {"Bundle"}
        keep = None if plan is None else plan.keep_patients
        if keep is None:
            for file in files:
                yield from read_file(file, quality, wanted)
            return
        census = plan.population if plan is not None and isinstance(keep, set) else None
        prefilter = Prefilter(
            keep, census, dropped=plan.dropped if plan is not None else None, quality=quality
        )
        for index, file in enumerate(files):
            prefilter.start_file(index)
            yield from read_file(file, quality, wanted, prefilter, self.workers)
        passed_over = prefilter.passed_over
        late = {pid: prefilter.joined[pid] for pid in passed_over if pid in keep}
        if late:
            yield from self._read_again(files, prefilter, late, wanted or KEPT_TYPES, quality)
        missing = prefilter.referenced - prefilter.delivered
        if missing and prefilter.medication_files:
            yield from self._read_medications(files, prefilter.medication_files, missing)

    def _read_medications(
        self, files: list[Path], indices: list[int], missing: set[str]
    ) -> Iterator[tuple[Resource, str]]:
        """The held-back Medications that kept resources refer to, from the files that held them."""
        log.debug("reading %d file(s) again for %d Medication(s)", len(indices), len(missing))
        scratch = DataQuality()
        only = frozenset({"Medication"})
        for index in indices:
            for resource, origin in read_file(files[index], scratch, only):
                if resource["resourceType"] == "Medication" and resource.get("id") in missing:
                    yield resource, origin

    def _read_again(
        self,
        files: list[Path],
        first: Prefilter,
        late: Mapping[str, tuple[int, int]],
        wanted: Collection[str],
        quality: DataQuality,
    ) -> Iterator[tuple[Resource, str]]:
        """The resources of patients who joined the kept set after some of their files were read: those
        read before the patient joined (at ``late[pid]``, a file index and a position in that file).

        Findings were reported on the first reading, except those it makes only for the lines it hands
        on (a number too small for a double: ``Prefilter.kept_quality``), which are reported now for the
        lines passed on; only the late patients' own resources are passed on (no stubs, no
        Medications), so nothing is counted twice."""
        passed_over = first.passed_over
        indices = sorted({i for pid in late for i in passed_over[pid] if i <= late[pid][0]})
        log.debug("reading %d file(s) again for %d patient(s) found late", len(indices), len(late))
        # Other patients' lines are dropped unseen: only the late patients' own are passed on below.
        prefilter = Prefilter(
            frozenset(late), None, first.referenced, defer_medications=False, drop_others=True
        )
        scratch = DataQuality()
        # The findings the first reading makes only for the lines it hands on (``kept_quality``): it
        # dropped these lines unread, so theirs are made now, for the lines passed on below only.
        kept = prefilter.kept_quality = DataQuality()
        for index in indices:
            prefilter.start_file(index)
            for resource, origin in read_file(files[index], scratch, wanted, prefilter):
                pid = _owner(resource)
                if (
                    pid is not None
                    and pid in late
                    and (index, prefilter.checked - 1) < late[pid]
                    and resource["resourceType"] in wanted  # others were counted as skipped already
                ):
                    if kept.findings:
                        quality.extend(kept)
                    yield resource, origin
                if kept.findings:
                    kept = prefilter.kept_quality = DataQuality()


def _owner(resource: Resource) -> str | None:
    """The patient a kept-type resource belongs to (a Patient owns itself); None for stubs and others."""
    if len(resource) < 2:
        return None  # a stub of a skipped type
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    return patient_id(resource)


class Prefilter:
    """Which patients' resources are worth resolving, and the census that grows that set."""

    def __init__(
        self,
        keep: Collection[str],
        population: ValueSet | None,
        referenced: set[str] | None = None,
        defer_medications: bool = True,
        dropped: Dropped | None = None,
        drop_others: bool = False,
        quality: DataQuality | None = None,
    ) -> None:
        self.keep = keep
        self.population = population
        # Where the census reports a Condition it cannot read (see ``census``).
        self.quality = quality
        # Where ``ndjson_lines`` reports what it checks only in the lines it hands on (a number too
        # small for a double), when not in the reading's own findings: a second reading's (``_read_again``).
        self.kept_quality: DataQuality | None = None
        # Medications are shared, not linked to a patient: only those that kept resources refer to
        # (medicationReference) are passed on, in-bundle at once, the others from a last re-read.
        self.referenced: set[str] = set() if referenced is None else referenced
        self.delivered: set[str] = set()
        self.defer_medications = defer_medications
        self.medication_files: list[int] = []
        # Where the census is: the file index, and how many resources of the file ``wants`` has seen.
        # A patient's resources before the position where they joined were passed over; the
        # resource that made them join and all later ones are kept.
        self.index = 0
        self.checked = 0
        self.joined: dict[str, tuple[int, int]] = {}  # patient id -> (file index, checked) at joining
        # patient id -> indices of the files that held their resources while they were not kept
        self.passed_over: dict[str, list[int]] = defaultdict(list)
        # ``drops``: other patients' resources are counted in ``dropped`` (shared with the record
        # builder) instead of being handed on; with ``drop_others`` alone they are not counted at all
        # (a second reading, whose findings were made the first time).
        self.dropped = dropped
        self.drop_others = drop_others or dropped is not None
        # While the census runs: Patients linked as one person (``Patient.link`` replaced-by / replaces),
        # both ways. When one of them is kept, all are, so the record builder can merge their records
        # (``PopulationBuilder._merge_linked``) on the resources of every id.
        self.links: dict[str, set[str]] = defaultdict(set)

    def start_file(self, index: int) -> None:
        self.index = index
        self.checked = 0

    def census(self, resource: Resource, aliases: Mapping[str, str]) -> None:
        """Add the patient of a usable Condition coded in the population value set to the kept set."""
        if self.population is None or resource.get("resourceType") != "Condition":
            return
        if not is_usable(resource):
            return
        if self.population.match(resource.get("code")) is not None:
            pid = _linked_patient(resource, aliases)
            if pid is not None and pid not in self.keep:
                self.keep.add(pid)  # type: ignore[attr-defined]
                self.joined[pid] = (self.index, self.checked)
                if pid in self.links:
                    self._join_linked(pid, (self.index, self.checked))
        elif self.quality is not None and malformed_concept(resource.get("code")):
            # A diagnosis whose code cannot be read may be the one that would have brought its patient
            # in: said for every patient, not only the kept ones (whose resources the builder checks).
            # Only the code is looked at first: this runs for every Condition of the hospital.
            report_malformed(resource, f"Condition/{resource.get('id')}", self.quality)

    def wants(self, resource: Resource, aliases: Mapping[str, str]) -> bool:
        """False for a resource of a patient outside the kept set (it will only be checked, not kept);
        while the census runs, such a patient's file is noted so that it can be read again."""
        self.checked += 1
        if resource["resourceType"] == "Patient":
            pid = resource.get("id")
            if not isinstance(pid, str) or not pid:
                return True
            if self.population is not None and "link" in resource:
                self._note_links(resource, pid, aliases)
        else:
            pid = _linked_patient(resource, aliases)
            if pid is None:
                return True
        if pid in self.keep:
            self._note_medication(resource, aliases)
            return True
        if self.population is not None:
            self.pass_over(pid)
        return False

    def drops(self, resource: Resource) -> bool:
        """``wants`` for a resource read on its own (an NDJSON line: no bundle aliases), and True when
        it need not be handed on at all: it belongs to a patient outside the kept set and all the
        record builder would do with it is drop it (``PopulationBuilder._add_unkept``), which is done
        here, counts included. At 50,000 people that is most lines, and handing each on cost more
        than parsing it. A Patient, or a resource without an id, or of a type the builder does not
        keep (findings, counts of skipped types) is handed on as before."""
        link = DROPPABLE.get(resource["resourceType"]) if self.drop_others else None
        if link is None:
            self.wants(resource, _NO_ALIASES)
            return False
        # ``wants`` inlined (it runs for every line): the plain ``Patient/<id>`` reference first.
        self.checked += 1
        plain = plain_patient(resource.get(link))
        if plain is not None:
            pid: str = plain
        else:
            linked = patient_id(resource)
            if linked is None:
                return False
            pid = linked
        if pid in self.keep:
            self._note_medication(resource, _NO_ALIASES)
            return False
        if self.population is not None:
            self.pass_over(pid)
        rid = resource.get("id")
        if not isinstance(rid, str) or not rid:
            return False  # the builder reports it (no-id)
        if self.dropped is not None:
            self.dropped.count(resource["resourceType"], pid, is_usable(resource))
        return True

    def drop_line(self, data: Any) -> bool:
        """``drops`` for its commonest case, kept fast (it runs for most lines of a large export): a
        resource with a plain ``Patient/<id>`` reference, of a patient already known to be outside
        the kept set, with an id, is counted and dropped (True). Anything else is left to the general
        way (False, nothing counted). Conditions always are: the census may add their patient.
        ``unkept_owner`` and ``count_drop``, inlined: this runs for most lines."""
        if data.__class__ is not dict:
            return False
        rtype: str = data.get("resourceType")  # type: ignore[assignment]  # a str when droppable
        link = DROPPABLE.get(rtype)
        if link is None or rtype == "Condition":
            return False
        pid = plain_patient(data.get(link))
        if pid is None or pid in self.keep:
            return False
        rid = data.get("id")
        if rid.__class__ is not str or not rid:
            return False
        self.checked += 1
        if self.population is not None:
            held = self.passed_over[pid]
            if not held or held[-1] != self.index:
                held.append(self.index)
        if self.dropped is not None:
            self.dropped.count(rtype, pid, is_usable(data))
        return True

    def unkept_owner(self, data: Any) -> str | None:
        """The patient of a resource ``drop_line`` could drop (a Condition too), else None."""
        if data.__class__ is not dict:
            return None
        link = DROPPABLE.get(data.get("resourceType"))  # type: ignore[arg-type]
        if link is None:
            return None
        pid = plain_patient(data.get(link))
        if pid is None or pid in self.keep:
            return None
        rid = data.get("id")
        return pid if rid.__class__ is str and rid else None

    def _note_links(self, patient: Resource, pid: str, aliases: Mapping[str, str]) -> None:
        """Note a Patient's replaced-by / replaces links; when any of the linked ids is kept, all join
        the kept set here (their resources read before are read again, as for any late joiner)."""
        for link in items(patient.get("link")):
            if link.__class__ is not dict or link.get("type") not in MERGE_LINKS:
                continue
            other = link.get("other")
            value = other.get("reference") if other.__class__ is dict else None
            if isinstance(value, str):
                oid = reference_id({"reference": aliases.get(value, value)}, "Patient")
                if oid and oid != pid:
                    self.links[pid].add(oid)
                    self.links[oid].add(pid)
        if pid in self.links:
            # the position of this Patient: it is kept now (``wants`` has counted it)
            self._join_linked(pid, (self.index, self.checked - 1))

    def _join_linked(self, pid: str, at: tuple[int, int]) -> None:
        """When ``pid`` or any Patient linked to it (transitively) is kept, the others join at ``at``."""
        group = {pid}
        todo = [pid]
        while todo:
            for other in self.links.get(todo.pop(), ()):
                if other not in group:
                    group.add(other)
                    todo.append(other)
        if not any(member in self.keep for member in group):
            return
        for member in sorted(group):
            if member not in self.keep:
                self.keep.add(member)  # type: ignore[attr-defined]
                self.joined[member] = at

    def pass_over(self, pid: str) -> None:
        """Note that the current file holds resources of ``pid`` while they are not kept (the census
        runs: they may join later, and the file is then read again for them)."""
        held = self.passed_over[pid]
        if not held or held[-1] != self.index:
            held.append(self.index)

    def count_drop(self, resource_type: str, pid: str, usable: bool) -> None:
        """Count a dropped resource of a patient outside the kept set, as ``drops`` does."""
        self.checked += 1
        if self.population is not None:
            self.pass_over(pid)
        if self.dropped is not None:
            self.dropped.count(resource_type, pid, usable)

    def _note_medication(self, resource: Resource, aliases: Mapping[str, str]) -> None:
        holder = resource.get("medicationReference")
        if isinstance(holder, dict):
            value = holder.get("reference")
            if isinstance(value, str):
                mid = reference_id({"reference": aliases.get(value, value)}, "Medication")
                if mid:
                    self.referenced.add(mid)

    def defer(self, medication: Resource) -> bool:
        """True for a Medication no kept resource refers to yet: it is held back (its file noted)."""
        if not self.defer_medications:
            return False
        mid = medication.get("id")
        if not isinstance(mid, str) or not mid or mid in self.referenced:
            if isinstance(mid, str):
                self.delivered.add(mid)
            return False  # passed on now (one without an id, for the builder to report)
        if not self.medication_files or self.medication_files[-1] != self.index:
            self.medication_files.append(self.index)
        self.checked += 1  # counted as ``wants`` would have: positions must match on re-reading
        return True


def plain_patient(holder: object) -> str | None:
    """The id of a plain ``{"reference": "Patient/<id>"}``: what ``patient_id`` would return, without its
    general cases (absolute, versioned or contained references, which give None here)."""
    value = holder.get("reference") if holder.__class__ is dict else None
    if (
        value.__class__ is str
        and value.startswith("Patient/")
        and value.find("/", 8) < 0
        and value not in _NOT_PATIENT_IDS
    ):
        return value[8:]
    return None


def _linked_patient(resource: Resource, aliases: Mapping[str, str]) -> str | None:
    """The patient id of a resource, resolving its patient reference through the bundle's aliases
    (the reference itself is rewritten, as the full rewrite would have done)."""
    link = PATIENT_LINK.get(resource["resourceType"])
    if link is None:
        return None
    holder = resource.get(link)
    if isinstance(holder, dict):
        value = holder.get("reference")
        if isinstance(value, str):
            if value in aliases:
                value = holder["reference"] = aliases[value]
            plain = plain_patient(holder)
            if plain is not None:
                return plain
    return patient_id(resource)


def read_file(
    file: Path,
    quality: DataQuality,
    wanted: Collection[str] | None = None,
    prefilter: Prefilter | None = None,
    workers: int = 1,
    shown: str | None = None,
) -> Iterator[tuple[Resource, str]]:
    """The resources in one file; with ``wanted``, other types come as ``{"resourceType": T}`` stubs.
    A large NDJSON file read with a dropping prefilter is read on up to ``workers`` processes.
    ``shown``: how findings name the file (its path by default; a downloaded Bulk file, whose temporary
    path means nothing once it is gone, by what it was)."""
    shown = shown or str(file)
    if file.name.lower().endswith((".ndjson", ".ndjson.gz")):
        if not _one_document(file):
            try:
                yield from _read_ndjson(file, quality, wanted, prefilter, workers, shown)
            except _FILE_FAILURES as exc:
                file_failed(exc, shown, quality)
            return
        not_ndjson(quality, shown)
    read, data = read_document(lambda: _open_binary(file), shown, quality, lambda: emptiness(file))
    if not read:
        return
    try:
        yield from _resources_in(data, shown, quality, wanted, prefilter)
    except RecursionError:
        too_deep_to_process(quality, shown)


def read_document(
    opened: Callable[[], IO[bytes]], shown: str, quality: DataQuality, emptiness: Callable[[], str]
) -> tuple[bool, Any]:
    """A file read as one JSON document: (True, the parsed JSON), or (False, None) once the findings of
    a file that cannot be (it is then lost). ``opened`` opens the file's bytes (decompressed);
    ``emptiness`` says how an empty file is empty."""
    try:
        with opened() as fh:
            raw = fh.read()
        if not raw or raw.isspace():
            quality.add(
                "error",
                shown,
                EMPTY_FILE,
                f"{emptiness()}: not a JSON document, so nothing was read from it (a truncated "
                "download or an interrupted copy is the usual cause); file skipped",
            )
            quality.lost(shown, "the whole file was skipped: it is empty")
            return False, None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = loads_damaged(raw, shown, quality, "file")
        else:
            if may_underflow(raw):  # orjson read a nonzero number too small for a double as 0.0
                data = loads_damaged(raw, shown, quality, "file")
        del raw
    except _FILE_FAILURES as exc:
        file_failed(exc, shown, quality)
        return False, None
    return True, data


# What reading a file may raise: its findings are ``file_failed``'s.
_FILE_FAILURES = (json.JSONDecodeError, RecursionError, OSError, EOFError, zlib.error)


def file_failed(exc: BaseException, shown: str, quality: DataQuality) -> None:
    """The findings of a file whose reading raised ``exc`` (one of ``_FILE_FAILURES``): what could not be
    read of it is lost."""
    if isinstance(exc, json.JSONDecodeError):
        quality.add(
            "error", f"{shown}:{exc.lineno}", "malformed-json", f"not valid JSON ({exc.msg}); file skipped"
        )
        quality.lost(shown, "the whole file was skipped: it is not valid JSON")
    elif isinstance(exc, RecursionError):
        quality.add("error", shown, "malformed-json", "JSON nested too deeply to read; file skipped")
        quality.lost(shown, "the whole file was skipped: its JSON is nested too deeply")
    else:
        quality.add("error", shown, UNREADABLE_FILE, f"cannot read file: {exc}; skipped")
        quality.lost(shown, "the file (or the rest of it) could not be read")


def too_deep_to_process(quality: DataQuality, shown: str) -> None:
    """A document read, whose JSON was nested too deeply to take its resources out: the rest is lost."""
    quality.add("error", shown, "malformed-json", "JSON nested too deeply to process; rest of file skipped")
    quality.lost(shown, "the rest of the file was skipped: its JSON is nested too deeply")


# Types whose NDJSON lines ``_read_ndjson`` hands on directly (not Bundles, not Medications).
_PLAIN = frozenset(PATIENT_LINK) | {"Patient"}
# Of those, the types whose resources of other patients ``Prefilter.drops`` may drop: kept by the
# record builder (others are counted as skipped there) and linked by one element (so not Patient).
DROPPABLE = {rtype: link for rtype, link in PATIENT_LINK.items() if rtype in KEPT_TYPES}


def _read_ndjson(
    file: Path,
    quality: DataQuality,
    wanted: Collection[str] | None,
    prefilter: Prefilter | None,
    workers: int = 1,
    shown: str | None = None,
) -> Iterator[tuple[Resource, str]]:
    plain = file.suffix.lower() == ".ndjson" and not _gzipped(file)  # byte ranges need the bytes as lines
    if workers > 1 and prefilter is not None and prefilter.drop_others and plain:
        ranges = line_ranges(file, workers)
        if len(ranges) > 1:
            from fhirscreen.sources.ndjson_ranges import read_ranges  # it builds on this module

            yield from read_ranges(file, ranges, quality, wanted, prefilter)
            return
    with _open_binary(file) as fh:
        # Blank lines before the first line with content are taken here: none at all is an empty file.
        leading: list[bytes] = []
        for line in fh:
            leading.append(line)
            if not line.isspace():
                break
        else:
            quality.add("warning", shown or str(file), EMPTY_FILE, empty_ndjson_message(emptiness(file)))
            return
        numbered = enumerate(itertools.chain(leading, fh), start=1)
        yield from ndjson_lines(numbered, shown or str(file), quality, wanted, prefilter)


def emptiness(file: Path) -> str:
    """How an empty file is empty, to start its finding with."""
    try:
        size = file.stat().st_size
    except OSError:
        size = -1
    return how_empty(file.name, size)


def how_empty(name: str, size: int) -> str:
    """``emptiness`` from a file's name and size in bytes (as stored: compressed for .gz)."""
    if size == 0:
        return "the file is empty (0 bytes)"
    if name.lower().endswith(".gz"):
        return "the file is empty once decompressed"
    return "the file holds only blank space"


def empty_ndjson_message(how: str) -> str:
    return (
        f"{how}: no resources were read from it; an export may leave a type empty, but if this file "
        "should hold resources, its download or copy was cut short"
    )


def ndjson_lines(
    numbered: Iterable[tuple[int, bytes]],
    shown: str,
    quality: DataQuality,
    wanted: Collection[str] | None,
    prefilter: Prefilter | None,
) -> Iterator[tuple[Resource, str]]:
    """The resources of numbered NDJSON lines of the file ``shown``."""
    stubs: dict[bytes, Resource] = {}
    drop_others = prefilter is not None and prefilter.drop_others
    # The leading bytes of the last wanted type seen (``{"resourceType":"Observation"``, the closing
    # quote included): a line that starts with them is of a wanted type, without the regular expression.
    wanted_prefix = b"\0"
    for lineno, line in numbered:
        if wanted is not None and not line.startswith(wanted_prefix):
            m = LEADING_TYPE.match(line)
            if m is not None and (line.endswith(b"}\n") or line.rstrip().endswith(b"}")):
                rtype = m.group(1)
                if rtype not in stubs:
                    name = rtype.decode("ascii")
                    stubs[rtype] = {"resourceType": name} if name not in wanted else {}
                stub = stubs[rtype]
                if stub:
                    yield dict(stub), f"{shown}:{lineno}"
                    continue
                wanted_prefix = line[: m.end()]
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            if not line.strip():
                continue
            read, data = read_refused_line(line, shown, lineno, quality)
            if not read:
                continue
        if drop_others and prefilter.drop_line(data):  # type: ignore[union-attr]
            continue
        if prefilter is None or data.__class__ is not dict or data.get("resourceType") not in _PLAIN:
            try:
                if may_underflow(line):
                    data = loads_damaged(line, f"{shown}:{lineno}", quality, "line")
                yield from _resources_in(data, f"{shown}:{lineno}", quality, wanted, prefilter)
            except RecursionError:
                quality.add(
                    "error", f"{shown}:{lineno}", "malformed-json", "JSON nested too deeply; line skipped"
                )
            continue
        # What ``_resources_in`` does for a patient's resource, without a generator per line, and
        # other patients' resources dropped here rather than handed on (``Prefilter.drops``).
        try:
            if data["resourceType"] == "Condition":
                prefilter.census(data, _NO_ALIASES)
            if prefilter.drops(data):
                continue
        except RecursionError:
            quality.add(
                "error", f"{shown}:{lineno}", "malformed-json", "JSON nested too deeply; line skipped"
            )
            continue
        # orjson reads a nonzero number too small for a double as 0.0: the text is looked at only for
        # the lines handed on (most lines of an export, other patients', were dropped above unread).
        if may_underflow(line):
            kept = prefilter.kept_quality
            data = loads_damaged(line, f"{shown}:{lineno}", quality if kept is None else kept, "line")
        yield data, f"{shown}:{lineno}"


# Whose record a line that cannot be read held, from its bytes: the patient it refers to, or the Patient
# it is. Ids only (FHIR ids), so nothing else of the line is ever kept.
_PATIENT_REFERENCE = re.compile(rb'"reference"\s*:\s*"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})["/]')
_PATIENT_LINE = re.compile(rb'"resourceType"\s*:\s*"Patient"')
_ID = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"')


def read_refused_line(line: bytes, shown: str, lineno: int, quality: DataQuality) -> tuple[bool, Any]:
    """An NDJSON line orjson refused, read the slow way (``loads_damaged``): (True, the parsed JSON), or
    (False, None) once the findings of a line that cannot be read and what it costs (``damaged_line``).
    ``line``: its bytes as read, with its newline if it has one."""
    where = f"{shown}:{lineno}"
    try:
        return True, loads_damaged(line, where, quality, "line")
    except json.JSONDecodeError as exc:
        quality.add("error", where, "malformed-json", f"line is not valid JSON ({exc.msg}); skipped")
    except RecursionError:
        quality.add("error", where, "malformed-json", "JSON nested too deeply; line skipped")
    damaged_line(line, shown, lineno, quality)
    return False, None


def damaged_line(line: bytes, shown: str, lineno: int, quality: DataQuality) -> None:
    """What a line that cannot be read costs: the record it held is lost. A last line cut short (no
    newline: the file was not written or copied whole) loses the rest of the file, which may hold
    anyone's records; a damaged line that names its patient loses that patient's record (not offered as
    eligible). A damaged line whose patient cannot be told stays a finding only: it may be anyone's,
    and one unreadable line must not stop every patient of a hospital from being offered."""
    where = f"{shown}:{lineno}"
    if not line.endswith(b"\n"):
        cut = f"its last line ({where}) is cut short: the file was not written or copied in full"
        quality.lost(shown, cut)
        return
    owners = set(_PATIENT_REFERENCE.findall(line))
    if _PATIENT_LINE.search(line):
        owners.update(_ID.findall(line)[:1])
    for owner in sorted(owners):
        patient = f"Patient/{owner.decode('ascii')}"
        quality.lost(patient, f"a line of their record ({where}) could not be read")


def _resources_in(
    data: Any,
    origin: str,
    quality: DataQuality,
    wanted: Collection[str] | None = None,
    prefilter: Prefilter | None = None,
) -> Iterator[tuple[Resource, str]]:
    if not isinstance(data, dict) or not is_type_name(data.get("resourceType")):
        quality.add("error", origin, "not-fhir", f"{not_a_resource(data)}; skipped")
        return
    if data["resourceType"] == "Bundle":
        yield from bundle_resources(data, origin, quality, wanted, prefilter)
    else:
        if prefilter is not None:
            rtype = data["resourceType"]
            if rtype == "Condition":
                prefilter.census(data, {})
            elif rtype == "Medication" and prefilter.defer(data):
                return
            prefilter.wants(data, {})
        yield data, origin


def bundle_resources(
    bundle: Mapping[str, Any],
    origin: str,
    quality: DataQuality,
    wanted: Collection[str] | None = None,
    prefilter: Prefilter | None = None,
) -> Iterator[tuple[Resource, str]]:
    """The resources of a Bundle with ``urn:uuid:`` and absolute fullUrl references rewritten to ``Type/id``.

    Transaction entries often have no id (the server would assign one); the id is then taken from the
    fullUrl so that references inside the bundle still line up. With ``wanted``, entries of other types
    (nested Bundles excepted) come as ``{"resourceType": T}`` stubs and are not rewritten. With a
    ``prefilter``, the bundle's Conditions go through its census first, and resources of patients it
    does not keep get only their patient reference rewritten.

    A DELETE entry (``request.method``) of a history Bundle, which lists the newest versions first,
    removes the older versions of the resource listed after it (an info ``deleted-entry`` finding); a
    deletion with nothing to remove there, or in another kind of Bundle (a transaction applies its
    DELETEs before its other entries), is not applied, which a ``deleted-entry`` warning says: a copy
    read elsewhere in the run still counts.
    """
    listed = bundle.get("entry")
    if listed is not None and not isinstance(listed, list):
        # Like a file that is not JSON: its content is lost to the run, which says so (exit 5).
        quality.lost(origin, f"the bundle was skipped: its entry is not a list (it is {json_kind(listed)})")
        return
    aliases: dict[str, str] = {}
    resources: list[Resource] = []
    history = bundle.get("type") == "history"
    # A history Bundle's DELETE entries (newest versions first, as FHIR orders history): the resource
    # they name -> [the entry's index, whether an older version of it was found below and not read].
    deleted: dict[str, list[Any]] = {}
    # Every entry is counted, whatever it is: "entry 3" is Bundle.entry[3] in the file.
    for index, entry in enumerate(items(listed)):
        if entry.__class__ is dict and _method(entry) == "DELETE":
            target = deleted_target(entry)
            if target is not None and history:
                deleted.setdefault(target, [index, False])
            else:
                _deletion_not_applied(quality, f"{origin} entry {index}", target, history)
            continue
        problem = entry_problem(entry)
        if problem is not None:
            quality.add("warning", f"{origin} entry {index}", "not-fhir", f"{problem}; skipped")
            continue
        resource = entry["resource"]
        rtype = resource["resourceType"]
        if rtype == "OperationOutcome":
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            rid = resource.get("id")
            if not rid:
                rid = resource["id"] = full_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
            if rid:
                aliases[full_url] = f"{rtype}/{rid}"
        if deleted:
            gone = deleted.get(f"{rtype}/{resource.get('id')}")
            if gone is not None:
                gone[1] = True  # a version older than the deletion: not read
                continue
        resources.append(resource)
    for target, (index, applied) in deleted.items():
        if applied:
            quality.add(
                "info", f"{origin} entry {index}", DELETED_ENTRY,
                f"{target} was deleted (a DELETE in this history Bundle): its older versions here were "
                "not read",
            )
        else:
            _deletion_not_applied(quality, f"{origin} entry {index}", target, history)
    if prefilter is not None and prefilter.population is not None:
        for resource in resources:
            if resource["resourceType"] == "Condition":
                prefilter.census(resource, aliases)
    medications: list[Resource] = []
    for resource in resources:
        rtype = resource["resourceType"]
        if wanted is not None and rtype not in wanted and rtype != "Bundle":
            yield {"resourceType": rtype}, origin
            continue
        if rtype == "Medication" and prefilter is not None and prefilter.defer_medications:
            medications.append(resource)  # after the resources that may refer to them
            continue
        if rtype == "Bundle":
            if aliases:
                _rewrite_references(resource, aliases)
            yield from bundle_resources(resource, origin, quality, wanted, prefilter)
            continue
        if prefilter is None:
            if aliases:
                _rewrite_references(resource, aliases)
        elif prefilter.wants(resource, aliases) and aliases:
            _rewrite_references(resource, aliases)
        yield resource, origin
    for medication in medications:
        assert prefilter is not None
        if not prefilter.defer(medication):
            prefilter.wants(medication, aliases)
            if aliases:
                _rewrite_references(medication, aliases)
            yield medication, origin


def _method(entry: Mapping[str, Any]) -> object:
    request = entry.get("request")
    return request.get("method") if request.__class__ is dict else None


def deleted_target(entry: Mapping[str, Any]) -> str | None:
    """``Type/id`` of the resource a DELETE entry deletes (its ``request.url``, relative or absolute), or
    None when that is not a plain ``Type/id`` (a conditional delete, a value that is no FHIR name or id)."""
    request = entry.get("request")
    url = request.get("url") if isinstance(request, Mapping) else None
    if not isinstance(url, str) or "?" in url:
        return None
    parts = url.rstrip("/").split("/")
    if len(parts) < 2 or not is_type_name(parts[-2]) or not is_fhir_id(parts[-1]):
        return None
    return f"{parts[-2]}/{parts[-1]}"


def _deletion_not_applied(quality: DataQuality, where: str, target: str | None, history: bool) -> None:
    """The ``deleted-entry`` warning of a deletion that was not applied (see ``bundle_resources``)."""
    what = target or "a resource (its request.url is not Type/id)"
    why = (
        "no older version of it is in this history Bundle"
        if history
        else "a DELETE is applied only within a history Bundle"
    )
    quality.add(
        "warning", where, DELETED_ENTRY,
        f"{what} is deleted here (request.method DELETE) but the deletion was not applied ({why}): a "
        "copy read from another Bundle or file still counts (a deleted exclusion keeps its patient out); "
        "check the source",
    )


def _rewrite_references(node: dict[str, Any] | list[Any], aliases: Mapping[str, str]) -> None:
    """Replace ``reference`` values that are fullUrls of the bundle, in place, at any depth."""
    if isinstance(node, dict):
        value = node.get("reference")
        if isinstance(value, str) and value in aliases:
            node["reference"] = aliases[value]
        children: Any = node.values()
    else:
        children = node
    for child in children:
        cls = child.__class__
        if cls is dict or cls is list or isinstance(child, (dict, list)):  # exact types tested first: faster
            _rewrite_references(child, aliases)
