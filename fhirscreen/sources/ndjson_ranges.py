"""A large Bulk NDJSON file read on several processes (``--workers``), with the outcome of one.

At hospital scale most lines of an export belong to patients outside the initial population: each is
parsed, checked and counted, then dropped (``Prefilter.drop_line``). That part is spread: the file is
cut into line ranges (``line_ranges``), this process reads the first while forked children read the
others, and a child sends back only what this process must still do, in line order:

- the kept patients' resources it could take all the way (a plain patient reference and id, nothing
  malformed, no number too small for a double: nearly all of them), parsed and compacted, handed on
  as ``Prebuilt`` (the record builder checks and compacts nothing again);
- the other lines it did not drop (anything unusual), raw, to be read here as if they had never left
  (findings included);
- in a range of Conditions, one short entry per line it would drop, with the patient and whether the
  resource is usable. A Condition can add its patient to the kept set (the census), so whether a
  later line of that patient is dropped is decided here, in order: an entry whose patient joined in
  the meantime is read again from the file (by its offset), the others are counted;
- in a range of other types, its counts, added at once. A patient cannot join there, so they are
  valid as long as no patient joined before the range either (else the range is read here).

A child stops where the rest must be read in order here: at the first line of another kind than its
range's first (Conditions against the rest), at a Bundle (it may hold Conditions), at a Patient (every
reader hands them on: a child would only parse and send them back), and once what it sends back
reaches ``MAX_SENT_BACK``. A child that fails costs only time: its range is read here, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from fhirscreen.fhir.codes import ValueSet
from fhirscreen.fhir.compact import Compactor
from fhirscreen.fhir.json_text import may_underflow
from fhirscreen.fhir.resources import Resource, is_usable
from fhirscreen.parallel import Child, fork_call
from fhirscreen.quality import DataQuality
from fhirscreen.record import (
    Dropped,
    Prebuilt,
    malformed_concept,
    malformed_elements,
    malformed_values,
)
from fhirscreen.sources.files import DROPPABLE, LEADING_TYPE, Prefilter, ndjson_lines, plain_patient
from fhirscreen.sources.line_ranges import NumberedLines

log = logging.getLogger("fhirscreen")

# Types a child leaves to this process from their first line on (see the module docstring).
_IN_ORDER_TYPES = frozenset({b"Bundle", b"Patient"})
_CONDITION = b"Condition"
# Bytes of lines (and entries) a child sends back before it stops: the memory they take, twice.
MAX_SENT_BACK = 32 << 20
_ENTRY_BYTES = 64  # about what an entry costs, pickled


# A line sent back raw: (line number, start, end) of its bytes in ``RangeRead.blob``; one blob rather
# than a bytes object a line, which left the main process's heap larger by their size once freed.
# A Condition the child would drop: (line number, offset in the file, patient id, usable).
# A kept patient's resource, parsed, checked and compacted there: (line number, resource).
RawLine = tuple[int, int, int]
DropEntry = tuple[int, int, str, bool]
BuiltLine = tuple[int, Resource]


@dataclass
class RangeRead:
    """What a child that read a range sends back. Lines are numbered from 0 at the range's start (the
    main process knows the number of that line once it has read the ranges before). ``at``/``lineno``
    are where it stopped: the offset and number of the first line it did not look at (the range's end
    when it read it all)."""

    at: int
    lineno: int
    conditions: bool  # a range of Conditions: ``back`` holds entries, there are no counts
    back: list[RawLine | DropEntry | BuiltLine] = field(default_factory=list)
    blob: bytes = b""  # the raw lines, one after the other
    checked: int = 0
    dropped: Dropped | None = None
    passed_over: list[str] = field(default_factory=list)


def read_ranges(
    file: Path,
    ranges: list[tuple[int, int]],
    quality: DataQuality,
    wanted: Collection[str] | None,
    prefilter: Prefilter,
) -> Iterator[tuple[Resource, str]]:
    """The resources of ``file`` as ``ndjson_lines`` gives them, read on ``len(ranges)`` processes."""
    shown = str(file)
    kept_before = len(prefilter.keep)
    children: list[Child[RangeRead] | None] = []
    try:
        for start, end in ranges[1:]:
            children.append(fork_call(partial(_read_range, file, start, end, wanted, prefilter), "reading"))
        with file.open("rb") as fh:
            lines = NumberedLines(fh, *ranges[0], 1)
            yield from ndjson_lines(lines, shown, quality, wanted, prefilter)
            for _start, end in ranges[1:]:
                child = children.pop(0)
                done, problem = child.collect() if child is not None else (None, None)
                if done is not None and not done.conditions and len(prefilter.keep) != kept_before:
                    done = None  # a patient joined since the child looked: its counts may be wrong
                if done is not None:
                    base = lines.lineno  # the number of the range's first line
                    yield from _sent_back(done, prefilter, fh, base, shown, quality, wanted)
                    lines = NumberedLines(fh, done.at, end, base + done.lineno)
                else:
                    if problem is not None:
                        log.warning(
                            "a reading process failed (%s); %s is read from line %d in the main process",
                            problem,
                            shown,
                            lines.lineno,
                        )
                    lines = NumberedLines(fh, lines.at, end, lines.lineno)
                yield from ndjson_lines(lines, shown, quality, wanted, prefilter)
    finally:
        for child in children:  # those not collected: the run is being interrupted
            if child is not None:
                child.stop()


def _sent_back(
    done: RangeRead,
    prefilter: Prefilter,
    fh: IO[bytes],
    base: int,
    shown: str,
    quality: DataQuality,
    wanted: Collection[str] | None,
) -> Iterator[tuple[Resource, str]]:
    """What a child sent back, in line order: raw lines read by ``ndjson_lines`` as if they had never
    left, built resources handed on as they are (counted as read, their Medication noted, as
    ``Prefilter.drops`` does for a kept patient's line)."""
    for lineno, item in _replayed(done, prefilter, fh, base):
        if isinstance(item, bytes):
            yield from ndjson_lines(((lineno, item),), shown, quality, wanted, prefilter)
        else:
            prefilter.drops(item)  # False: its patient is kept
            yield item, Prebuilt(f"{shown}:{lineno}")


def _replayed(
    done: RangeRead, prefilter: Prefilter, fh: IO[bytes], base: int
) -> Iterator[tuple[int, bytes | Resource]]:
    """The lines (or built resources) a child sent back, in order and numbered from ``base``; its drops
    are counted here as they come (a dropped Condition whose patient joined since is read from the file
    instead)."""
    if not done.conditions:
        prefilter.checked += done.checked
        if prefilter.dropped is not None and done.dropped is not None:
            prefilter.dropped.merge(done.dropped)
        if prefilter.population is not None:
            for pid in done.passed_over:
                prefilter.pass_over(pid)
    blob = done.blob
    keep = prefilter.keep
    for entry in done.back:
        if len(entry) == 2:
            yield base + entry[0], entry[1]
            continue
        if len(entry) == 3:
            lineno, start, end = entry
            yield base + lineno, blob[start:end]
            continue
        lineno, offset, pid, usable = entry
        if pid in keep:
            fh.seek(offset)
            yield base + lineno, fh.readline()
        else:
            prefilter.count_drop("Condition", pid, usable)


def _read_range(
    file: Path, start: int, end: int, wanted: Collection[str] | None, prefilter: Prefilter
) -> RangeRead:
    """In a forked child: read the lines from ``start`` to ``end`` (see the module docstring)."""
    wanted_types = None if wanted is None else {name.encode("ascii", "replace") for name in wanted}
    population = prefilter.population
    mine = Prefilter(prefilter.keep, population, dropped=Dropped() if prefilter.dropped is not None else None)
    mine.index = prefilter.index
    done = RangeRead(start, 0, conditions=False)
    compactor = Compactor()
    back = done.back
    blob = bytearray()
    size = 0
    at, lineno = start, 0
    # The leading bytes of the last line's type (``{"resourceType":"Observation"``, the closing quote
    # included): a line that starts with them is of that type, without the regular expression.
    prefix, rtype = b"\0", None
    with file.open("rb") as fh:
        fh.seek(start)
        for line in fh:
            if at >= end:
                break
            if not line.startswith(prefix):
                m = LEADING_TYPE.match(line)
                rtype = m.group(1) if m is not None else None
                prefix = line[: m.end()] if m is not None else b"\0"
            if at == start:
                done.conditions = rtype == _CONDITION
            if rtype is None or rtype in _IN_ORDER_TYPES or (rtype == _CONDITION) != done.conditions:
                break  # this line and the rest are read in the main process
            at += len(line)
            lineno += 1
            if wanted_types is None or rtype in wanted_types:
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError:
                    data = None  # read again there, where its finding is made
                if not done.conditions:
                    if mine.drop_line(data):
                        continue
                    built = _built(data, line, mine.keep, compactor)
                    if built is not None:
                        back.append((lineno - 1, built))
                        size += len(line)  # about what it costs, pickled and unpickled
                        if size >= MAX_SENT_BACK:
                            break
                        continue
                elif (pid := mine.unkept_owner(data)) is not None and not _may_join(data, population):
                    back.append((lineno - 1, at - len(line), pid, is_usable(data)))
                    size += _ENTRY_BYTES
                    continue
            back.append((lineno - 1, len(blob), len(blob) + len(line)))
            blob += line
            size += len(line)
            if size >= MAX_SENT_BACK:
                break
    done.at, done.lineno, done.blob = at, lineno, bytes(blob)
    if not done.conditions:
        done.checked, done.dropped, done.passed_over = mine.checked, mine.dropped, list(mine.passed_over)
    return done


def _built(data: Any, line: bytes, keep: Collection[str], compactor: Compactor) -> Resource | None:
    """A kept patient's resource as the record builder would hold it, when nothing about it needs more
    than the builder's plain path (a plain ``Patient/<id>`` reference and an id; no malformed element;
    no number too small for a double); else None (the line goes back raw)."""
    if data.__class__ is not dict:
        return None
    rtype = data.get("resourceType")
    link = DROPPABLE.get(rtype)  # type: ignore[arg-type]
    if link is None or rtype == "Condition":
        return None
    pid = plain_patient(data.get(link))
    rid = data.get("id")
    if pid is None or pid not in keep or rid.__class__ is not str:
        return None  # (ids that are not FHIR ids the builder skips, with its finding, as ever)
    if may_underflow(line) or malformed_elements(data) or malformed_values(data):
        return None
    return compactor.compact(data)


def _may_join(condition: Resource, population: ValueSet | None) -> bool:
    """True for a Condition the census must see: coded in the population value set, or with a code it
    cannot read (a finding; the census makes it)."""
    if population is None:
        return False
    code = condition.get("code")
    return population.match(code) is not None or malformed_concept(code)
