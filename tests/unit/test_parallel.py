"""Screening spread over forked processes (``--workers``) gives exactly what one process gives."""

from __future__ import annotations

import json
import os
import signal
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhirscreen import parallel
from fhirscreen.cli import main
from fhirscreen.paths import sample_data_dir
from fhirscreen.pipeline import evaluate_population, load_population
from fhirscreen.quality import DataQuality
from fhirscreen.record import PatientRecord
from fhirscreen.screening import PatientScreen, ScreeningRun
from fhirscreen.sources.files import FileSource
from fhirscreen.trial.loader import Trial
from tests.conftest import all_reaped

AS_OF = date(2026, 6, 1)
SAMPLES = sample_data_dir()
GOLDEN_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "golden_data"


@pytest.fixture(autouse=True)
def _small_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    """A share of one patient is enough here: the test data are a few dozen patients, not thousands."""
    monkeypatch.setattr(parallel, "MIN_PER_WORKER", 1)


def _screen(trial: Trial, data: Path, workers: int) -> ScreeningRun:
    population = load_population(FileSource(data), trial)
    return evaluate_population(population, trial, AS_OF, str(data), workers)


def _as_data(run: ScreeningRun) -> tuple[list[PatientScreen], list[object]]:
    return run.patients, [f.as_dict() for f in run.quality.findings]


@pytest.mark.parametrize("data", [SAMPLES, GOLDEN_DATA], ids=["samples", "golden"])
@pytest.mark.parametrize("workers", [2, 3, 7])
def test_any_number_of_workers_gives_the_screens_and_findings_of_one(trial, data, workers, forked):
    one = _screen(trial, data, 1)
    assert forked == []
    many = _screen(trial, data, workers)
    assert len(one.patients) >= 3, "the data must give each process something to screen"
    assert _as_data(many) == _as_data(one)
    assert len(forked) == min(workers, len(one.patients)) - 1 and all_reaped(forked)


def _fake_records(n: int) -> list[PatientRecord]:
    return [PatientRecord(patient={"resourceType": "Patient", "id": f"p{i}"}, resources={}) for i in range(n)]


def _fake_screen(parent: int, fail_in_child: str | None = None):
    """Adds one finding per patient (and one every patient shares), like criteria reporting data problems."""

    def screen(record: PatientRecord, quality: DataQuality) -> PatientScreen:
        if fail_in_child and os.getpid() != parent and record.id == "p5":
            if fail_in_child == "raise":
                raise RuntimeError("boom")
            if fail_in_child == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fail_in_child == "exit":
                os._exit(3)
        quality.add("warning", f"Patient/{record.id}", "odd-unit", f"an odd unit for {record.id}")
        quality.add("info", "Observation/shared", "shared", "seen by every patient, said once")
        return PatientScreen(record.id, {}, "possible", 0.5, float(len(record.id)))

    return screen


def test_findings_of_every_share_come_back_in_patient_order():
    records = _fake_records(10)
    quality, expected = DataQuality(), DataQuality()
    screens = parallel.screen_all(records, _fake_screen(os.getpid()), quality, workers=3)
    in_one = [_fake_screen(os.getpid())(r, expected) for r in records]
    assert screens == in_one
    assert quality.findings == expected.findings
    assert [f.where for f in quality.findings][:3] == ["Patient/p0", "Observation/shared", "Patient/p1"]


@pytest.mark.parametrize("failure", ["raise", "kill", "exit"])
def test_a_failed_worker_costs_only_time(failure, caplog, forked):
    records = _fake_records(10)
    quality = DataQuality()
    screens = parallel.screen_all(records, _fake_screen(os.getpid(), failure), quality, workers=3)
    assert [s.patient_id for s in screens] == [f"p{i}" for i in range(10)]
    assert [f.where for f in quality.findings if f.problem == "odd-unit"] == [
        f"Patient/p{i}" for i in range(10)
    ]
    assert "a screening worker failed" in caplog.text and "screened in the main process" in caplog.text
    assert len(forked) == 2 and all_reaped(forked)


def test_a_refused_fork_screens_everything_here(monkeypatch):
    def refuse() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    records = _fake_records(6)
    screens = parallel.screen_all(records, _fake_screen(os.getpid()), DataQuality(), workers=3)
    assert [s.patient_id for s in screens] == [f"p{i}" for i in range(6)]


def test_an_interrupt_leaves_no_worker_behind(forked):
    parent = os.getpid()

    def screen(record: PatientRecord, quality: DataQuality) -> PatientScreen:
        if os.getpid() == parent and record.id == "p1":
            raise KeyboardInterrupt  # Ctrl-C while this process screens its own share
        return PatientScreen(record.id, {}, "possible", 0.5, 0.0)

    with pytest.raises(KeyboardInterrupt):
        parallel.screen_all(_fake_records(9), screen, DataQuality(), workers=3)
    assert len(forked) == 2 and all_reaped(forked)


@pytest.mark.parametrize(("count", "workers"), [(0, 4), (1, 4), (5, 1), (10, 3), (10, 20), (1000, 4)])
def test_shares_cover_every_patient_once_in_order(count, workers, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PER_WORKER", 4)
    parts = parallel.shares(count, workers)
    assert [i for part in parts for i in part] == list(range(count))
    assert 1 <= len(parts) <= max(1, workers)
    assert len(parts) == 1 or all(len(part) >= 4 for part in parts)


def test_cli_output_is_the_same_for_any_number_of_workers():
    def run(*args: str) -> str:
        result = CliRunner().invoke(
            main, ["screen", "--data", str(SAMPLES), "--as-of", str(AS_OF), "--format", "json", *args]
        )
        assert result.exit_code == 0, result.stderr
        return result.stdout

    one = run("--workers", "1")
    assert run("--workers", "4") == one
    assert run() == one  # the default (the cores available)
    assert len(json.loads(one)["patients"]) >= 4


def test_workers_is_refused_with_the_spark_engine():
    result = CliRunner().invoke(
        main, ["screen", "--data", str(SAMPLES), "--engine", "spark", "--workers", "2"]
    )
    assert result.exit_code == 2
    assert "--workers is for --engine file" in result.stderr
