"""Progress on long runs: a live line on a terminal, a short line every so often in a log file, and
the counts the run.json reports, taken from what the source yields."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

from fhirscreen.progress import Progress
from fhirscreen.quality import DataQuality
from fhirscreen.runs.observe import ObservedSource
from fhirscreen.sources.base import QueryPlan


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_in_a_log_file_one_line_every_interval_not_one_per_resource():
    clock, stream = Clock(), io.StringIO()
    progress = Progress(stream, interactive=False, interval=30.0, clock=clock, requests=lambda: 12)
    for second in range(0, 95):
        clock.now = float(second)
        for _ in range(100):
            progress.resource("Observation")
        if second % 10 == 0:
            progress.resource("Patient")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # at 30, 60 and 90 s
    assert lines[0] == "fhirscreen: progress: reading: 3,004 resources, 3 patients, 12 requests, 0:30"
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_the_line_is_redrawn_in_place_and_cleared_before_log_records():
    clock, stream = Clock(), io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        progress = Progress(stream, interactive=True, clock=clock).attach()
        clock.now = 1.0
        progress.resource("Patient")
        assert stream.getvalue().endswith("\r\x1b[Kreading: 1 resources, 1 patients, 0:01")
        logging.getLogger("fhirscreen").warning("Observation/o1: a warning")
        assert stream.getvalue().endswith("\r\x1b[KObservation/o1: a warning\n")  # never mixed with the line
        progress.stage("evaluating the criteria")
        assert stream.getvalue().endswith("\r\x1b[Kevaluating the criteria: 1 resources, 1 patients, 0:01")
        progress.close()
        assert stream.getvalue().endswith("\r\x1b[K")
        assert all(len(line) <= 80 for line in stream.getvalue().split("\r"))
    finally:
        root.removeHandler(handler)


class ListSource:
    def __init__(self, resources: list[dict[str, str]]) -> None:
        self.resources = resources
        self.prefilters = True

    def describe(self) -> str:
        return "data"

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[dict[str, str], str]]:
        for r in self.resources:
            yield r, "file.ndjson"


def test_the_observed_source_counts_by_type_and_passes_everything_on_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resources = [{"resourceType": "Patient", "id": "a"}, {"resourceType": "Observation", "id": "o"}] * 3
    source = ObservedSource(ListSource(resources), Progress(io.StringIO(), interactive=False))
    plan = QueryPlan(population_codes=(), observation_codes=())
    assert [r for r, _ in source.read(plan, DataQuality())] == resources
    assert dict(source.resources) == {"Patient": 3, "Observation": 3}
    assert source.progress is not None and source.progress.doing == "evaluating the criteria"
    assert source.prefilters is True  # the pipeline's prefilter hint still reaches the wrapped source
    assert source.describe() == str(tmp_path / "data")
    assert source.server_stats() is None


def test_a_source_still_waiting_for_its_first_resource_is_not_silent():
    stream = io.StringIO()
    progress = Progress(stream, interactive=False, interval=0.15, requests=lambda: 7).start()
    started = time.monotonic()
    try:
        time.sleep(0.4)
    finally:
        progress.close()
    elapsed = time.monotonic() - started
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("fhirscreen: progress: reading: 0 resources") for line in lines)
    assert "7 requests" in lines[0] and len(lines) <= elapsed / 0.15 + 1  # one per interval, no more
