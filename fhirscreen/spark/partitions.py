"""What runs in Spark's Python workers: plain functions over one split of an NDJSON file, and over the
resources of one candidate. No pyspark import here, so the logic is testable without a JVM.

Positions: every line is placed by ``(file index, line number, entry)``, ``entry`` being the index of a
resource inside a Bundle written on one NDJSON line (0 otherwise); an ``.ndjson`` file that holds one
JSON document, read whole as file mode reads it, is line ``DOCUMENT`` (0: findings name the file alone).
Positions order the resources of a candidate exactly as file mode feeds them to the record builder, so
that duplicates (the latest version wins, the first on a tie) and every list the evaluators see come
out the same.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import IO, Any

import orjson

from fhirscreen.fhir.json_text import may_underflow
from fhirscreen.fhir.resources import Resource, is_type_name, is_usable, not_a_resource
from fhirscreen.quality import DataQuality, Finding
from fhirscreen.record import (
    KEPT_TYPES,
    SHARED_TYPES,
    PopulationBuilder,
    merge_links,
    patient_id,
    referenced_medication_id,
    referenced_study_ids,
)
from fhirscreen.report.facts import PatientFacts, patient_facts
from fhirscreen.screening import PatientScreen, population_evidence, screen_patient
from fhirscreen.sources.files import (
    DROPPABLE,
    GZIP_MAGIC,
    bundle_resources,
    how_empty,
    loads_damaged,
    not_ndjson,
    read_document,
    read_refused_line,
    starts_as_document,
    too_deep_to_process,
)
from fhirscreen.trial.loader import Trial

Position = tuple[int, int, int]  # (file index, line number from 1, entry in a Bundle line)
Row = tuple[str, Any, Any]  # (kind, key, value); the kinds are listed in ``route_split``
# The line number of a file read as one JSON document (see the module docstring).
DOCUMENT = 0


def origin_of(shown: str, line: int) -> str:
    """Where a resource was read, as findings name it: the file and line, or the document."""
    return shown if line == DOCUMENT else f"{shown}:{line}"

# As sources/files.py: the resourceType as the first member of a line, as every Bulk exporter writes it.
_LEADING_TYPE = re.compile(r'\s*\{\s*"resourceType"\s*:\s*"([A-Z][A-Za-z]{1,63})"')


def leading_type(line: str) -> str | None:
    """The resource type a complete-looking line starts with, or None when the line must be parsed to
    know (no leading resourceType, or a truncated line, which parsing reports as malformed)."""
    m = _LEADING_TYPE.match(line)
    if m is None or not line.rstrip().endswith("}"):
        return None
    return m.group(1)


def loads(text: str) -> Any:
    """A line read again where it is used: orjson, and for what orjson refuses (or may read a number in
    as 0.0: ``may_underflow``) file mode's slow path (``loads_damaged``; its findings were made when the
    line was first read). Raises json.JSONDecodeError or RecursionError for a line that cannot be read."""
    try:
        if not may_underflow(text):
            return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    return loads_damaged(raw_bytes(text), "", DataQuality(), "line")


def raw_bytes(line: str) -> bytes:
    """A line's bytes as stored: a line read in Python (``file_lines``) keeps a byte that is not UTF-8
    as a lone surrogate (``surrogateescape``), so file mode's slow path (``loads_damaged``) sees the
    bytes file mode sees, and says and replaces them as file mode does."""
    return line.encode("utf-8", "surrogateescape")


# A line of Hadoop's text reader with U+FFFD in it may have held bytes that are not UTF-8, which the
# reader replaced without a word: the file is then read again in Python (``file_lines``), as file mode
# reads it (the census says so: ``census_split``).
REPLACED = "\ufffd"


class UnreadableFile(str):
    """Not a line: the end of a file that could not be read further (its text is the reason)."""


class CutLine(str):
    """The last line of a file read in Python (``file_lines``) that has no newline: the file was not
    written or copied in full (``files.damaged_line``)."""


class WholeFile(bytes):
    """Not a line: the bytes (as stored: gzipped or not) of an ``.ndjson`` file that holds one JSON
    document (``files.starts_as_document``), read as one document as file mode reads it."""


def _opened(content: bytes, gzipped: bool) -> IO[bytes]:
    raw = io.BytesIO(content)
    return gzip.GzipFile(fileobj=raw) if gzipped else raw  # type: ignore[return-value]


def file_lines(item: tuple[str, bytes]) -> Iterator[str | WholeFile]:
    """The lines of one file read whole (from ``binaryFiles``), as Hadoop's text reader gives them; a
    last line without a newline as a ``CutLine``. As file mode: a file named ``.gz`` or starting with
    gzip's bytes is decompressed, and one that holds a pretty-printed JSON document is one
    ``WholeFile``. A truncated or corrupt file ends with an ``UnreadableFile``: what was read before it
    is kept and the file is reported, as file mode does, instead of failing the whole Spark job."""
    uri, content = item
    gzipped = uri.lower().endswith(".gz") or content.startswith(GZIP_MAGIC)
    with _opened(content, gzipped) as fh:
        document = starts_as_document(fh)
    if document:
        yield WholeFile(content)
        return
    try:
        with _opened(content, gzipped) as fh:
            for raw in fh:
                # A byte that is not UTF-8 stays, as a lone surrogate, for file mode's slow path to
                # say and replace (``raw_bytes``): it costs at most its value, never the file.
                if not raw.endswith(b"\n"):
                    yield CutLine(raw.decode("utf-8", "surrogateescape"))  # only the last line can lack one
                    continue
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
                yield raw.decode("utf-8", "surrogateescape")
    except (OSError, EOFError) as exc:
        yield UnreadableFile(str(exc))


def unreadable(line: str) -> bool:
    """Whether a line that is not blank cannot be read at all (``loads`` fails): a damaged line."""
    try:
        loads(line)
    except (json.JSONDecodeError, RecursionError):
        return True
    return False


def as_json(resource: Resource) -> str:
    """A resource as JSON text (orjson; the standard library for an integer beyond 64 bits, which file
    mode's slow path keeps)."""
    try:
        return orjson.dumps(resource).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(resource)


def finding_row(finding: Finding) -> Row:
    return ("dq", None, (finding.severity, finding.where, finding.problem, finding.message))


# Lines parsed in the second pass: the kept types, and Bundles (a patient's Bundle on one NDJSON line is
# opened, as file mode opens it, never skipped as one "Bundle").
_OPENED = KEPT_TYPES | frozenset({"Bundle"})


def _resources_on_line(data: Any, origin: str, quality: DataQuality) -> tuple[list[Resource], bool]:
    """The resource(s) of one parsed line: itself, or a Bundle's entries (other types as stubs; True)."""
    if not isinstance(data, dict) or not is_type_name(data.get("resourceType")):
        quality.add("error", origin, "not-fhir", f"{not_a_resource(data)}; skipped")  # as file mode
        return [], False
    if data["resourceType"] == "Bundle":
        return [r for r, _origin in bundle_resources(data, origin, quality, KEPT_TYPES)], True
    return [data], False


def _parsed_lines(
    lines: Iterable[str | WholeFile],
    first_line: int,
    shown: str,
    quality: DataQuality,
    wanted: frozenset[str] | None,
    cut_line: int = 0,
    handed_on: Callable[[Any], bool] | None = None,
) -> Iterator[tuple[int, str, str | None, tuple[list[Resource], bool], str | None]]:
    """(line number, origin, line, (resources, rewritten), skipped type) for each non-blank line;
    ``rewritten``: the resources are not the line's own text (a Bundle's entries, a document's
    resources: the line is then None). With ``wanted``, a line whose leading type is not wanted is not
    parsed: it comes with no resources and its type. A line that cannot be read costs what file mode
    says it costs (``read_refused_line``): the record of the patient it names, or, for the file's last
    line cut short (a ``CutLine``, or line ``cut_line``, which the driver found without a newline), the
    rest of the file. A number too small for a double, which orjson reads as 0.0, is looked for (and
    said) only on the lines ``handed_on`` says file mode hands on (``route_split``)."""
    for offset, line in enumerate(lines):
        if isinstance(line, UnreadableFile):
            quality.add("error", shown, "unreadable-file", f"cannot read file: {line}; skipped")
            quality.lost(shown, "the file (or the rest of it) could not be read")  # as file mode: partial
            return
        if isinstance(line, WholeFile):
            held = _document(line, shown, quality)
            if held is not None:
                yield DOCUMENT, shown, None, (held, True), None
            continue
        lineno = first_line + offset
        origin = f"{shown}:{lineno}"
        if wanted is not None:
            rtype = leading_type(line)
            if rtype is not None and rtype not in wanted:
                yield lineno, origin, line, ([], False), rtype
                continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            if not line.strip():
                continue
            # The line's bytes as file mode reads them: with a newline, unless it is a last line cut short.
            ending = b"" if isinstance(line, CutLine) or lineno == cut_line else b"\n"
            read, data = read_refused_line(raw_bytes(line) + ending, shown, lineno, quality)
            if not read:
                continue
        else:
            if handed_on is not None and may_underflow(line) and handed_on(data):
                data = loads_damaged(raw_bytes(line), origin, quality, "line")
        try:
            resources = _resources_on_line(data, origin, quality)
        except RecursionError:
            # As file mode: a Bundle nested too deeply to take its resources out.
            quality.add("error", origin, "malformed-json", "JSON nested too deeply; line skipped")
            continue
        yield lineno, origin, line, resources, None


def _document(content: WholeFile, shown: str, quality: DataQuality) -> list[Resource] | None:
    """The resources of a file read as one JSON document, with file mode's findings
    (``files.read_document``); None when the file could not be read."""
    not_ndjson(quality, shown)
    read, data = read_document(
        lambda: _opened(content, content.startswith(GZIP_MAGIC)),
        shown,
        quality,
        lambda: how_empty(shown, len(content)),
    )
    if not read:
        return None
    try:
        return _resources_on_line(data, shown, quality)[0]
    except RecursionError:
        too_deep_to_process(quality, shown)
        return None


# ---------------------------------------------------------------------------------------- pass 1


def census_split(
    split: int, lines: Iterable[str | WholeFile], file_index: int, population: Any
) -> Iterator[Row]:
    """The initial population in one split: ``("sle", patient id, (file, split, line))`` for each
    usable Condition coded in the population value set, and ``("lines", (file, split), n)`` (the split's
    line count, from which the driver numbers the lines of later splits), ``("filled", (file, split),
    n)`` (lines that are not blank: a file without any is an empty file, as in file mode),
    ``("resources", (file, split), n)`` and ``("conditions", (file, split), n)`` (how many resources, and
    Conditions, were read: none at all is a finding, as in file mode), and ``("end", (file, split),
    line)`` when the split's last line cannot be read (if it is its file's last, the driver looks at
    whether the file ends with a newline: ``files.damaged_line``), ``("replaced", (file, split), 1)``
    when a line holds U+FFFD (``REPLACED``: the driver reads a file of Hadoop's lines again in Python),
    and ``("link", (file, split, line,
    entry, patient id), other ids)`` for each Patient linked as one person with others (``Patient.link``
    replaced-by / replaces: ``linked_groups``). Lines are numbered from 1 in the split (``DOCUMENT`` for
    a file read as one document). Only Condition lines (and lines without a leading type) are parsed,
    Patient lines that have a ``link``, and the split's last line."""
    count = filled = 0
    read = conditions = 0
    replaced = False
    scratch = DataQuality()  # findings are reported by the second pass
    first: dict[str, int] = {}
    last: str | WholeFile = ""

    def counted() -> Iterator[str | WholeFile]:
        nonlocal count, filled, last, replaced
        for line in lines:
            count += 1
            if line and not line.isspace():  # an UnreadableFile too: file mode reports that instead
                filled += 1
                if not replaced and isinstance(line, str) and REPLACED in line:
                    replaced = True
            last = line
            yield line

    for lineno, _origin, line, (resources, _rewritten), skipped in _parsed_lines(
        counted(), 1, "", scratch, frozenset({"Condition", "Bundle"})
    ):
        read += len(resources) if skipped is None else 1
        if skipped == "Patient" and line is not None and '"link"' in line:
            try:
                resources = [loads(line)]
            except (json.JSONDecodeError, RecursionError):
                continue  # reported by the second pass
        for entry, resource in enumerate(resources):
            if resource.get("resourceType") == "Patient":
                linked = _linked(resource)
                if linked is not None:
                    yield ("link", (file_index, split, lineno, entry, linked[0]), linked[1])
            if resource.get("resourceType") != "Condition":
                continue
            conditions += 1
            if not is_usable(resource):
                continue
            if population.match(resource.get("code")) is None:
                continue
            pid = patient_id(resource)
            if pid is not None and pid not in first:
                first[pid] = lineno
    for pid, number in first.items():
        yield ("sle", pid, (file_index, split, number))
    if type(last) is str and last.strip() and unreadable(last):  # a CutLine says it itself
        yield ("end", (file_index, split), count)
    if replaced:
        yield ("replaced", (file_index, split), 1)
    yield ("lines", (file_index, split), count)
    yield ("filled", (file_index, split), filled)
    yield ("resources", (file_index, split), read)
    yield ("conditions", (file_index, split), conditions)


def _linked(patient: Mapping[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """A Patient's id and the ids it is linked to as one person (``record.merge_links``), as file mode's
    census notes them (``Prefilter._note_links``: not itself); None for a Patient without an id or
    merge links (one linked to itself only has none to note, but its link is still said)."""
    rid = patient.get("id")
    links = merge_links(patient)
    if not isinstance(rid, str) or not rid or not links:
        return None
    return rid, tuple(sorted({other for _kind, other in links if other != rid}))


def linked_groups(
    first: Mapping[str, Position], links: Iterable[tuple[Position, str, tuple[str, ...]]]
) -> tuple[dict[str, str], dict[str, Position], frozenset[str]]:
    """Who is screened together: file mode's census (``Prefilter``) replayed on the driver from what the
    census found, the candidates' first SLE Conditions (``first``) and the Patients' merge links, in
    the order file mode reads them. A candidate keeps every Patient linked to them (transitively:
    ``Prefilter._join_linked``), so that the record builder can merge their records
    (``PopulationBuilder._merge_linked``); a linked id joins where the link, or the candidate, was read.

    Returns each kept id's group (the smallest id of its linked group: its resources are screened
    together), each kept id's position from which file mode kept its resources (those read before are
    read again at the end, so they are fed after: ``screen_group``), and the other ids that links name
    (their Patients' links go to the driver, which says what file mode says of them)."""
    events = sorted(
        [(position, 0, pid, ()) for pid, position in first.items()]
        + [(position, 1, pid, others) for position, pid, others in links]
    )
    graph: dict[str, set[str]] = defaultdict(set)
    joined: dict[str, Position] = {}

    def group(pid: str) -> set[str]:
        found, todo = {pid}, [pid]
        while todo:
            for other in graph.get(todo.pop(), ()):
                if other not in found:
                    found.add(other)
                    todo.append(other)
        return found

    for position, kind, pid, others in events:
        if kind == 0:
            if pid in joined:
                continue
            joined[pid] = position
        else:
            graph.setdefault(pid, set())  # linked, if only to itself (its link is said all the same)
        for other in others:
            graph[pid].add(other)
            graph[other].add(pid)
        if pid in graph:
            members = group(pid)
            if any(member in joined for member in members):
                for member in members:
                    joined.setdefault(member, position)
    keys: dict[str, str] = {}
    for pid in joined:
        if pid not in keys:
            members = group(pid)
            key = min(members)
            keys.update(dict.fromkeys(members, key))
    return keys, joined, frozenset(graph) - joined.keys()


def link_stub(patient: Mapping[str, Any]) -> str:
    """A Patient as the driver needs it to say what file mode says of its links: its id and its merge
    links (ids only), as JSON."""
    links = [{"type": k, "other": {"reference": f"Patient/{other}"}} for k, other in merge_links(patient)]
    return as_json({"resourceType": "Patient", "id": patient["id"], "link": links})


# ---------------------------------------------------------------------------------------- pass 2


def _shared_keys(resource: Mapping[str, Any]) -> Iterator[str]:
    """``Type/id`` of the shared resources (SHARED_TYPES) a resource refers to: the Medication of a
    MedicationX (``referenced_medication_id``), the ResearchStudies a record refers to
    (``referenced_study_ids``: a ResearchSubject's study, a medication record's workflow-researchStudy
    extension)."""
    mid = referenced_medication_id(resource)
    if mid is not None:
        yield f"Medication/{mid}"
    for sid in sorted(referenced_study_ids(resource)):
        yield f"ResearchStudy/{sid}"


def route_split(
    lines: Iterable[str | WholeFile],
    file_index: int,
    first_line: int,
    shown: str,
    candidates: Mapping[str, str],
    cut_line: int = 0,
    linked: Container[str] = frozenset(),
) -> Iterator[Row]:
    """Every line of one split, routed. ``candidates``: the candidates, and the ids linked to them as one
    person, each with their group (``linked_groups``); ``linked``: other ids that merge links name.
    Rows:

    - ``("R", group, (position, json))``: a resource (or the Patient) of a candidate or a linked id;
    - ``("M", "Type/id", (position, json))``: a shared resource (a Medication, a ResearchStudy), joined to
      the candidates that refer to it;
    - ``("ref", "Type/id", group)``: a candidate's resource refers to that shared resource;
    - ``("pid", patient id, 1)``: a Patient (all of them: counted, duplicates reported);
    - ``("P", None, (position, origin, json))``: the id and merge links of a Patient in ``linked``
      (``link_stub``: the driver says what file mode says of its links);
    - ``("use", patient id, n)``: n usable resources of a non-candidate (for missing-Patient warnings);
    - ``("odd", None, (position, origin, json))``: a resource without a Patient subject (few; the driver's
      record builder reports them as file mode does);
    - ``("skip", type, n)``: resources of types screening does not read;
    - ``("dq", None, finding)``: malformed lines (and the records they cost: ``cut_line`` is the file's
      last line when it has no newline), non-FHIR JSON, resources without an id.
    """
    quality = DataQuality()
    skipped: Counter[str] = Counter()
    usable: Counter[str] = Counter()

    def handed_on(data: Any) -> bool:
        """Whether file mode hands a parsed line on (``files.ndjson_lines``): all but a resource it drops
        unread (``Prefilter.drops``), one with an id, of a type it drops, of a patient not kept."""
        rtype = data.get("resourceType") if isinstance(data, dict) else None
        if not isinstance(rtype, str) or rtype not in DROPPABLE:
            return True
        rid = data.get("id")
        pid = patient_id(data)
        return not isinstance(rid, str) or not rid or pid is None or pid in candidates

    for lineno, origin, line, (resources, rewritten), skipped_type in _parsed_lines(
        lines, first_line, shown, quality, _OPENED, cut_line, handed_on
    ):
        if skipped_type is not None:
            skipped[skipped_type] += 1
            continue
        # A resource on its own line travels as that line; Bundle entries (rewritten) as new JSON.
        as_line = None if rewritten else line
        for entry, resource in enumerate(resources):
            text = as_line
            rtype = resource["resourceType"]
            if rtype not in KEPT_TYPES:
                skipped[rtype] += 1
                continue
            rid = resource.get("id")
            if not isinstance(rid, str) or not rid:
                quality.add("warning", origin, "no-id", f"{rtype} without an id was skipped")
                continue
            position = (file_index, lineno, entry)
            if rtype == "Patient":
                yield ("pid", rid, 1)
                group = candidates.get(rid)
                if group is not None:
                    yield ("R", group, (position, text or as_json(resource)))
                elif rid in linked:
                    yield ("P", None, (position, origin, link_stub(resource)))
                continue
            if rtype in SHARED_TYPES:
                yield ("M", f"{rtype}/{rid}", (position, text or as_json(resource)))
                continue
            pid = patient_id(resource)
            if pid is None:
                yield ("odd", None, (position, origin, text or as_json(resource)))
                continue
            group = candidates.get(pid)
            if group is not None:
                yield ("R", group, (position, text or as_json(resource)))
                for key in _shared_keys(resource):
                    yield ("ref", key, group)
            elif is_usable(resource):
                usable[pid] += 1
    for finding in quality.findings:
        yield finding_row(finding)
    for rtype, n in skipped.items():
        yield ("skip", rtype, n)
    for pid, n in usable.items():
        yield ("use", pid, n)


# ------------------------------------------------------------------------------- counts and joins


def summary_pairs(row: Row) -> Iterator[tuple[tuple[str, Any], tuple[int, int]]]:
    """The routed rows that the driver summarises, keyed for one reduceByKey: per patient id
    (Patients, usable resources), per skipped type, and the findings, subject-less resources and other
    linked Patients (unique keys; the same finding twice collapses, as in DataQuality)."""
    kind, key, value = row
    if kind == "pid":
        yield ("p", key), (1, 0)
    elif kind == "use":
        yield ("p", key), (0, value)
    elif kind == "skip":
        yield ("skip", key), (value, 0)
    elif kind in ("dq", "odd", "P"):
        yield (kind, value), (1, 0)


def add_pairs(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def summarise(pairs: Iterable[tuple[tuple[str, Any], tuple[int, int]]]) -> Iterator[Row]:
    """Per partition: how many patients have a Patient resource (``read``), the duplicated Patients,
    the patients whose usable resources have no Patient (``missing``, with the count), and the rest."""
    read = 0
    for (kind, key), (first, second) in pairs:
        if kind != "p":
            yield kind, key, first
            continue
        if first:
            read += 1
            if first > 1:
                yield "dup", key, first
        elif second:
            yield "missing", key, second
    yield "read", None, read


def medications_for(
    joined: tuple[str, tuple[Iterable[str], Iterable[tuple[Position, str]]]],
) -> Iterator[tuple[str, tuple[str, Position, str]]]:
    """A shared resource (every copy of it: a Medication, a ResearchStudy) for each candidate (group:
    ``linked_groups``) that refers to it, once per candidate."""
    _key, (patients, medications) = joined
    copies = list(medications)
    for pid in sorted(set(patients)):
        for position, text in copies:
            yield pid, ("M", position, text)


# ------------------------------------------------------------------------- per candidate (group)


# What a group's screening sends back: each patient screened with their report facts, the findings
# made on the way, and how many Patients were merged into another (not patients of their own any more).
GroupScreen = tuple[list[tuple[PatientScreen, PatientFacts]], list[tuple[str, str, str, str]], int]


def screen_group(
    items: Iterable[tuple[str, Position, str]],
    joined: Mapping[str, Position],
    shown: Sequence[str],
    trial: Trial,
    as_of: date,
) -> GroupScreen:
    """One candidate, or the candidates and Patients linked as one person (``linked_groups``), through
    the existing record builder (which merges linked records: ``PopulationBuilder._merge_linked``) and
    screening core.

    ``items`` are ``("R" | "M", position, json)``. They are fed in file mode's order: each patient's
    resources from where file mode kept them on (``joined``), then those read before it (file mode reads
    those again at the end), then the Medications and ResearchStudies they refer to. Every record with
    a usable SLE Condition after versions, hygiene and merges is screened (one without its Patient on a
    stub, as in file mode), with the patient's facts for the reports (age, sex, evidence described), as
    file mode's pipeline collects them.
    """
    fed: list[tuple[tuple[int, Position], Resource, str]] = []
    for kind, position, text in items:
        resource = loads(text)
        if kind == "M":
            rank = 2
        else:
            owner = resource.get("id") if resource["resourceType"] == "Patient" else patient_id(resource)
            kept_from = joined.get(owner) if isinstance(owner, str) else None
            rank = 1 if kept_from is not None and position < kept_from else 0
        fed.append(((rank, position), resource, origin_of(shown[position[0]], position[1])))
    fed.sort(key=lambda item: item[0])
    quality = DataQuality()
    builder = PopulationBuilder(quality, population=trial.population)
    for _order, resource, origin in fed:
        builder.add(resource, origin)
    patients = {r.get("id") for _order, r, _origin in fed if r["resourceType"] == "Patient"}
    del fed
    population = builder.build()
    screened = []
    for record in population.records.values():
        if record.resources and population_evidence(record, trial):
            screen = screen_patient(record, trial, as_of, quality)
            screened.append((screen, patient_facts(record, screen, as_of)))
    merged = len(patients - population.records.keys())
    return screened, [(f.severity, f.where, f.problem, f.message) for f in quality.findings], merged
