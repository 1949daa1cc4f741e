"""The Spark driver: two passes over the NDJSON text, one row per candidate back, the usual ScreeningRun.

0. The driver reads the start of each ``.ndjson`` file: one holding gzip bytes or a pretty-printed JSON
   document is read whole in Python as file mode reads it (``reads_whole``); the others as text
   lines, which Hadoop may split. A file read in Python keeps a byte that is not UTF-8 for file
   mode's slow path to say and replace (``partitions.raw_bytes``); Hadoop's text reader replaces it by
   U+FFFD unsaid, so a file of its lines with U+FFFD in one is read again in Python and the census
   taken again (rare: U+FFFD is seldom written).
1. Census (narrow, one job): every split is read as text; only Condition lines (and Patient lines
   with a ``link``) are parsed; usable Conditions in the trial's population value set give the
   candidates and, per candidate, the position of their first SLE Condition. Each split's line count
   comes back too, so the second pass can number lines across splits (findings name file and line, as
   in file mode) without a third read, and whether it ends with a line that cannot be read (the
   driver then reads the file's last byte: a last line cut short loses the rest of its file). The
   Patients' merge links (``Patient.link`` replaced-by / replaces, ids only) come back, and the driver
   replays file mode's census on them (``linked_groups``): the Patients linked to a candidate are
   screened with them, as one person.
2. Route (one pass over the text again, results persisted): each line's leading type is checked
   before parsing (other types are counted, never parsed); a resource of a candidate or of a Patient
   linked to one (the groups are broadcast) travels on as its JSON line, keyed by group; Medications
   and ResearchStudies (outside the Patient compartment) are keyed by ``Type/id`` and joined to the
   candidates that refer to them; Patients and the non-candidates' usable resources are counted by
   patient id (patients read, duplicate Patients, resources whose Patient is missing); the other
   Patients' merge links come to the driver, which says what file mode says of them. A damaged line
   costs the record it names (``files.damaged_line``).
3. Screen: the groups' resources are grouped and each group goes through the existing
   ``PopulationBuilder`` (which merges linked records) and ``screen_patient`` in the Python workers.
   One row per group (the pickled ``PatientScreen``s and the findings) comes back; the driver ranks
   them and the reports are written by the same code as in file mode.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from fhirscreen.pipeline import say_what_the_population_rests_on
from fhirscreen.quality import DataQuality
from fhirscreen.record import PopulationBuilder
from fhirscreen.report.facts import PatientFacts
from fhirscreen.screening import PatientScreen, ScreeningRun, caution, rank
from fhirscreen.sources.base import SourceError
from fhirscreen.sources.files import EMPTY_FILE, empty_ndjson_message, how_empty
from fhirscreen.spark.inputs import Inputs, java_error_summary, last_byte, list_inputs, reads_whole
from fhirscreen.spark.partitions import (
    DOCUMENT,
    Position,
    add_pairs,
    census_split,
    file_lines,
    linked_groups,
    loads,
    medications_for,
    route_split,
    screen_group,
    summarise,
    summary_pairs,
)
from fhirscreen.trial.loader import Trial

log = logging.getLogger("fhirscreen")


class SparkTaskError(RuntimeError):
    """fhirscreen's code failed inside a Spark task."""


def spark_failure(exc: BaseException, data: str) -> Exception | None:
    """What a Spark failure means for the user: fhirscreen's own code failing in a worker is a bug
    (SparkTaskError, exit 1; its traceback may quote resource values, so it is not repeated); any
    other Spark or Hadoop failure is the data source (SourceError, exit 3). None: not from Spark."""
    if not type(exc).__module__.startswith(("py4j", "pyspark")):
        return None
    text = str(exc)
    # PySpark 3.5/4.0 name the JVM's PythonException; 4.3 says "thrown from the Python worker".
    if type(exc).__name__ == "PythonException" or "PythonException" in text or "Python worker" in text:
        return SparkTaskError(
            "a Spark task failed in fhirscreen's code (a bug; please report it). The executor logs "
            "have the traceback; they may quote resource content."
        )
    return SourceError(f"{data}: Spark could not read the data ({java_error_summary(exc)})")


def spark_session() -> Any:
    """The active session, or a new one (``local[*]`` unless spark-submit, PYSPARK_SUBMIT_ARGS or
    spark-defaults say otherwise)."""
    from pyspark.sql import SparkSession

    logging.getLogger("py4j").setLevel(logging.WARNING)  # "Closing down clientserver connection"
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    submit_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    local = "--master" not in submit_args or "--master local" in submit_args
    if "PYSPARK_GATEWAY_PORT" not in os.environ and local:
        # A local session started here: the workers run this interpreter (with fhirscreen installed).
        # Under spark-submit or on a cluster, spark.pyspark.python / PYSPARK_PYTHON decide.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.appName("fhirscreen")
        .config("spark.ui.showConsoleProgress", "false")  # fhirscreen logs its own progress
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("WARN")
    return session


@dataclass
class Read:
    """What the census counted: resources and Conditions in all, lines and lines that are not blank per
    file (by index), and where a split ends with a line that cannot be read (file index, line number)."""

    resources: int = 0
    conditions: int = 0
    lines: Counter[int] = field(default_factory=Counter)
    filled: Counter[int] = field(default_factory=Counter)
    damaged_ends: set[tuple[int, int]] = field(default_factory=set)
    replaced: set[int] = field(default_factory=set)


class SparkScreening:
    """One screening run on Spark over the NDJSON files under ``data``."""

    def __init__(
        self,
        data: str,
        trial: Trial,
        as_of: date,
        spark: Any = None,
        min_partitions: int | None = None,
        exclude: Path | None = None,
    ):
        self.data = data
        self.exclude = exclude
        self.trial = trial
        self.as_of = as_of
        self.spark = spark if spark is not None else spark_session()
        self.sc = self.spark.sparkContext
        self.min_partitions = min_partitions
        self.quality = DataQuality()

    def run(self) -> ScreeningRun:
        try:
            return self._run()
        except SourceError:
            raise
        except Exception as exc:
            failure = spark_failure(exc, self.data)
            if failure is None:
                raise
            raise failure from None

    def _run(self) -> ScreeningRun:
        started = time.monotonic()
        inputs = list_inputs(self.data, self.sc, self.quality, self.exclude)
        self._report_bundles(inputs)
        shown = [f.shown for f in inputs.ndjson]
        # One split per file unless the file system splits it (large uncompressed files); small files
        # are then coalesced into fewer tasks (``_tasks``): a Python task costs a fixed overhead.
        self.whole = [reads_whole(f, self.sc) for f in inputs.ndjson]
        texts = [self._lines(f.uri, whole) for f, whole in zip(inputs.ndjson, self.whole, strict=True)]
        self.tasks = _tasks(inputs, sum(t.getNumPartitions() for t in texts), self.sc.defaultParallelism)
        self.shuffle_partitions = max(2, self.sc.defaultParallelism)
        log.info(
            "spark: %d NDJSON file(s) under %s, %d split(s)",
            len(texts),
            self.data,
            sum(t.getNumPartitions() for t in texts),
        )

        first_lines, first, links, read = self._census(texts)
        # Hadoop's text reader replaces bytes that are not UTF-8 with U+FFFD without a word: a file of its
        # lines with U+FFFD in it is read again in Python, from its bytes, as file mode reads it (its bad
        # bytes said, file:line and byte), and the census is taken again.
        again = self._read_again(inputs, read)
        if again:
            log.info("spark: %d file(s) with U+FFFD read again from their bytes", len(again))
            for index in again:
                self.whole[index] = True
                texts[index] = self._lines(inputs.ndjson[index].uri, True)
            self.tasks = _tasks(inputs, sum(t.getNumPartitions() for t in texts), self.sc.defaultParallelism)
            first_lines, first, links, read = self._census(texts)
        self._report_empty(inputs, read)
        cut_lines = self._cut_lines(inputs, read)
        log.info(
            "spark: census found %d patient(s) with an SLE diagnosis (%.1f s)",
            len(first),
            time.monotonic() - started,
        )
        # The candidates and the Patients linked to them as one person, screened together.
        groups, joined, linked = linked_groups(first, links)

        candidates = self.sc.broadcast((groups, linked))
        routed = self._tasks_of(
            [
                text.mapPartitionsWithIndex(
                    partial(_route, index, first_lines[index], shown[index], candidates, cut_lines[index])
                )
                for index, text in enumerate(texts)
            ]
        ).persist(_memory_and_disk())
        try:
            skipped, patients_read = self._counts(routed, groups)
            screens, facts, merged = self._screen(routed, joined, shown)
        finally:
            routed.unpersist()
            candidates.unpersist()
        patients_read -= merged  # one person, not two, as file mode counts them
        log.info("spark: screened %d patient(s) in %.1f s", len(screens), time.monotonic() - started)
        say_what_the_population_rests_on(
            self.quality,
            self.data,
            read=read.resources > 0,
            conditions=read.conditions > 0,
            patients=patients_read,
            screened=bool(screens),
        )
        return ScreeningRun(
            trial=self.trial,
            as_of=self.as_of,
            source=self.data,
            patients=rank(caution(screens, self.quality)),
            quality=self.quality,
            patients_read=patients_read,
            skipped_types=skipped,
            facts=facts,
        )

    def _lines(self, uri: str, whole: bool) -> Any:
        """A file's lines. A file read ``whole`` (``reads_whole``: gzipped, or one JSON document) is read
        in Python, as file mode reads it (``file_lines``): a gzipped one cannot be split anyway, and a
        truncated one is then a finding (file mode's) rather than a failed job."""
        if whole:
            return self.sc.binaryFiles(uri, 1).flatMap(file_lines)
        return self.sc.textFile(uri, self.min_partitions or 1)

    def _read_again(self, inputs: Inputs, read: Read) -> list[int]:
        """The files of Hadoop's lines with U+FFFD in a line, to be read again from their bytes. One too
        large for that (``binaryFiles`` holds a file in one array) keeps Hadoop's lines, and a warning says
        that a bad byte in it may have been replaced unsaid."""
        again = []
        for index in sorted(read.replaced):
            file = inputs.ndjson[index]
            if self.whole[index]:
                continue
            if file.size < _WHOLE_BYTES:
                again.append(index)
                continue
            self.quality.add(
                "warning",
                file.shown,
                "unchecked-utf8",
                "U+FFFD in the file, which is too large (2 GB or more) to be read again from its bytes: "
                "bytes that are not UTF-8 may have been replaced by U+FFFD without being said; file mode "
                "says where",
            )
        return again

    def _cut_lines(self, inputs: Inputs, read: Read) -> list[int]:
        """Per file, the number of its last line when that line cannot be read and the file does not end
        with a newline (the file was not written or copied in full: the rest of it is lost, as in file
        mode), else 0. Hadoop's lines have no ending, so the driver reads the last byte of such a file;
        a file read in Python says it itself (``CutLine``)."""
        cut = [0] * len(inputs.ndjson)
        for index, line in sorted(read.damaged_ends):
            file = inputs.ndjson[index]
            if (
                line == read.lines[index]
                and not self.whole[index]
                and last_byte(file.uri, file.size, self.sc) != b"\n"
            ):
                cut[index] = line
        return cut

    def _report_empty(self, inputs: Inputs, read: Read) -> None:
        """An NDJSON file without a line that is not blank: file mode's warning."""
        for index, file in enumerate(inputs.ndjson):
            if not read.filled[index]:
                message = empty_ndjson_message(how_empty(file.uri, file.size))
                self.quality.add("warning", file.shown, EMPTY_FILE, message)

    def _report_bundles(self, inputs: Inputs) -> None:
        for bundle in inputs.bundles:
            self.quality.add(
                "error",
                bundle.shown,
                "unsupported-file",
                "--engine spark reads Bulk NDJSON only; convert Bundles to NDJSON (README 'Scaling out') "
                "or screen this file in file mode; skipped",
            )

    def _census(
        self, texts: list[Any]
    ) -> tuple[list[list[int]], dict[str, Position], list[tuple[Position, str, tuple[str, ...]]], Read]:
        """Per file, the first line number of each split; per candidate, their first SLE Condition; the
        Patients' merge links (where read, the Patient's id, the linked ids); how many resources and
        Conditions were read in all."""
        population = self.sc.broadcast(self.trial.population)
        try:
            rows = (
                self._tasks_of(
                    [
                        text.mapPartitionsWithIndex(partial(_census, index, population))
                        for index, text in enumerate(texts)
                    ]
                )
                .map(lambda row: ((row[0], row[1]), row[2]))
                .reduceByKey(min, self.shuffle_partitions)
                .collect()
            )
        finally:
            population.unpersist()
        counts: dict[int, dict[int, int]] = defaultdict(dict)
        first: dict[str, tuple[int, int, int]] = {}
        ends: list[tuple[tuple[int, int], int]] = []
        found_links: list[tuple[tuple[int, int, int, int, str], tuple[str, ...]]] = []
        read = Read()
        for (kind, key), value in rows:
            if kind == "lines":
                counts[key[0]][key[1]] = value
            elif kind == "filled":
                read.filled[key[0]] += value
            elif kind == "end":
                ends.append((key, value))
            elif kind == "link":
                found_links.append((key, value))
            elif kind == "replaced":
                read.replaced.add(key[0])
            elif kind == "resources":
                read.resources += value
            elif kind == "conditions":
                read.conditions += value
            else:
                first[key] = value
        first_lines: list[list[int]] = []
        for index, text in enumerate(texts):
            starts, line = [], 1
            for split in range(text.getNumPartitions()):
                starts.append(line)
                line += counts[index].get(split, 0)
            first_lines.append(starts)
            read.lines[index] = line - 1

        def numbered(file: int, split: int, line: int) -> int:
            """The line number in its file of a split's ``line`` (from 1; ``DOCUMENT`` stays)."""
            return line if line == DOCUMENT else first_lines[file][split] + line - 1

        joined = {pid: (f, numbered(f, split, line), 0) for pid, (f, split, line) in first.items()}
        read.damaged_ends = {(f, numbered(f, split, line)) for (f, split), line in ends}
        links = [
            ((f, numbered(f, split, line), entry), pid, others)
            for (f, split, line, entry, pid), others in found_links
        ]
        return first_lines, joined, links, read

    def _counts(self, routed: Any, candidates: Container[str]) -> tuple[dict[str, int], int]:
        """Findings of the reading, skipped types, patients read (as one for the Patients merged outside
        the ``candidates``), duplicate and missing Patients: one job, whose only shuffle is one small row
        per patient id."""
        rows = (
            routed.flatMap(summary_pairs)
            .reduceByKey(add_pairs, self.shuffle_partitions)
            .mapPartitions(summarise)
            .collect()
        )
        skipped: dict[str, int] = defaultdict(int)
        odd: list[tuple[Position, str, str]] = []
        stubs: list[tuple[Position, str, str]] = []
        duplicates: list[str] = []
        missing: list[tuple[str, int]] = []
        patients_read = 0
        for kind, key, value in rows:
            if kind == "dq":
                self.quality.add(*key)
            elif kind == "skip":
                skipped[key] += value
            elif kind == "odd":
                odd.append(key)
            elif kind == "P":
                stubs.append(key)
            elif kind == "dup":
                duplicates.append(key)
            elif kind == "missing":
                missing.append((key, value))
            else:
                patients_read += value
        # Resources without a Patient subject: the record builder says what file mode says about them.
        builder = PopulationBuilder(self.quality)
        for _position, origin, text in sorted(odd):
            builder.add(loads(text), origin)
        for pid in sorted(duplicates):
            if pid in candidates:
                continue  # the candidate's own record builder says it, in file mode's words
            self.quality.add("info", f"Patient/{pid}", "duplicate", f"Patient/{pid} appears more than once")
        for pid, n in sorted(missing):
            self.quality.add(
                "warning",
                f"Patient/{pid}",
                "missing-patient",
                f"{n} resource(s) refer to Patient/{pid}, which is not in the data",
            )
        return dict(skipped), patients_read - self._merge_others(stubs)

    def _merge_others(self, stubs: list[tuple[Position, str, str]]) -> int:
        """What file mode's record builder says of the merge links of Patients outside the candidates'
        groups (``_merge_linked``: merged, or a ``patient-link`` warning), from their ids and links read
        in file order (``link_stub``); how many of them were merged into another."""
        builder = PopulationBuilder(self.quality, keep_patients=frozenset())  # none kept, as in file mode
        for _position, origin, text in sorted(stubs):
            builder.add(loads(text), origin)
        patients = {loads(text)["id"] for _position, _origin, text in stubs}
        return len(patients) - len(builder.build().records)

    def _screen(
        self, routed: Any, joined: dict[str, Position], shown: list[str]
    ) -> tuple[list[PatientScreen], dict[str, PatientFacts], int]:
        """Group each candidate's resources, with those of the Patients linked to them (and the
        Medications and ResearchStudies they refer to), screen them in the workers; how many Patients
        were merged into another there."""
        resources = routed.filter(lambda row: row[0] == "R").map(lambda row: (row[1], ("R", *row[2])))
        medications = routed.filter(lambda row: row[0] == "M").map(lambda row: (row[1], row[2]))
        references = routed.filter(lambda row: row[0] == "ref").map(lambda row: (row[1], row[2]))
        referenced = references.cogroup(medications, self.shuffle_partitions).flatMap(medications_for)
        context = self.sc.broadcast((joined, shown, self.trial, self.as_of))
        try:
            rows = (
                resources.union(referenced)
                .groupByKey(self.shuffle_partitions)
                .mapPartitions(partial(_screen_groups, context))
                .collect()
            )
        finally:
            context.unpersist()
        screens = []
        facts: dict[str, PatientFacts] = {}
        merged = 0
        for screened, findings, merges in rows:
            for finding in findings:
                self.quality.add(*finding)
            for screen, patient in screened:
                screens.append(screen)
                facts[screen.patient_id] = patient
            merged += merges
        return screens, facts, merged

    def _tasks_of(self, parts: list[Any]) -> Any:
        """The per-file RDDs as one, in at most ``self.tasks`` partitions (a narrow coalesce)."""
        union = self.sc.union(parts)
        return union.coalesce(self.tasks) if union.getNumPartitions() > self.tasks else union


_TASK_BYTES = 128 * 1024 * 1024
# A file read whole in Python (``binaryFiles``) is held in one Java byte array.
_WHOLE_BYTES = 2**31 - 1024


def _tasks(inputs: Inputs, splits: int, parallelism: int) -> int:
    """How many tasks read the text: enough to keep every core busy, and about one per
    128 MB of input, never more than the splits."""
    total = sum(f.size for f in inputs.ndjson)
    return max(1, min(splits, max(parallelism, -(-total // _TASK_BYTES))))


# Module-level functions shipped to the workers (pickled by reference; fhirscreen is installed there).


def _census(index: int, population: Any, split: int, lines: Iterable[str]) -> Iterator[Any]:
    return census_split(split, lines, index, population.value)


def _route(
    index: int,
    first_lines: list[int],
    shown: str,
    candidates: Any,
    cut_line: int,
    split: int,
    lines: Iterable[str],
) -> Iterator[Any]:
    groups, linked = candidates.value
    return route_split(lines, index, first_lines[split], shown, groups, cut_line, linked)


def _screen_groups(context: Any, groups: Iterable[tuple[str, Iterable[Any]]]) -> Iterator[Any]:
    joined, shown, trial, as_of = context.value
    for _group, items in groups:
        yield screen_group(items, joined, shown, trial, as_of)


def _memory_and_disk() -> Any:
    from pyspark import StorageLevel

    return StorageLevel.MEMORY_AND_DISK


def run_spark_screening(
    data: str,
    trial: Trial,
    as_of: date,
    spark: Any = None,
    min_partitions: int | None = None,
    exclude: Path | None = None,
) -> ScreeningRun:
    """Screen the NDJSON under ``data`` (a local path or a Hadoop URI) on Spark; a local folder
    ``exclude`` under it (--out) is not read."""
    return SparkScreening(data, trial, as_of, spark, min_partitions, exclude).run()
