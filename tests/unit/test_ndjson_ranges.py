"""Large Bulk NDJSON files read on several processes (``--workers``) give exactly what one process gives.

The files here are small, so the minimum range size is lowered: every file is then cut into as many
ranges as there are workers, and every kind of line lands in a child's range somewhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhirscreen import runs
from fhirscreen.cli import main
from fhirscreen.pipeline import load_population
from fhirscreen.quality import DataQuality
from fhirscreen.record import Dropped, Population
from fhirscreen.sources import line_ranges as ranges_module
from fhirscreen.sources import ndjson_ranges
from fhirscreen.sources.base import QueryPlan
from fhirscreen.sources.files import FileSource
from fhirscreen.sources.line_ranges import NumberedLines, line_ranges
from fhirscreen.trial.loader import Trial
from tests import builders as b
from tests.conftest import all_reaped

SLE = ("snomed", "55464009")
OTHER_CONDITIONS = [("snomed", "38341003"), ("snomed", "44054006"), ("snomed", "195967001")]


@pytest.fixture(autouse=True)
def _small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranges_module, "MIN_RANGE_BYTES", 256)


def _line(resource: Any) -> str:
    return json.dumps(resource, separators=(",", ":"))


def _population(seed: int, people: int = 80) -> dict[str, list[str]]:
    """NDJSON lines per file name: a shuffled export where SLE diagnoses fall before and after their
    patients' other resources, plus a mixed file of every awkward kind of line."""
    rng = random.Random(seed)
    names = ("Condition", "Observation", "MedicationRequest", "Patient")
    files: dict[str, list[str]] = {name: [] for name in names}
    for i in range(people):
        pid = f"s{seed}-{i}"
        files["Patient"].append(_line(b.patient(pid)))
        for _ in range(rng.randint(0, 3)):
            files["Condition"].append(_line(b.condition(*rng.choice(OTHER_CONDITIONS), pid=pid)))
        if rng.random() < 0.25:
            verification = rng.choice(["confirmed", "confirmed", "entered-in-error"])
            files["Condition"].append(_line(b.condition(*SLE, pid=pid, verification=verification)))
        for _ in range(rng.randint(1, 6)):
            status = rng.choice(["final", "final", "final", "entered-in-error"])
            obs = b.observation("2160-0", pid=pid, value=rng.uniform(0.5, 2), unit="mg/dL", status=status)
            files["Observation"].append(_line(obs))
        if rng.random() < 0.5:
            files["MedicationRequest"].append(_line(b.medication_request("5521", pid=pid)))
    for lines in files.values():
        rng.shuffle(lines)
    some = [f"s{seed}-{i}" for i in range(people)]
    mixed = [
        _line(b.condition(*SLE, pid=some[1])),
        _line({"resourceType": "Encounter", "id": "e1", "subject": {"reference": f"Patient/{some[2]}"}}),
        _line(b.observation("2160-0", pid=some[1], value=1.0, unit="mg/dL")),
        "",
        '{"resourceType":"Observation","id":"broken",',
        _line(
            {
                "id": "o-first",
                "resourceType": "Observation",
                "status": "final",
                "subject": {"reference": f"Patient/{some[3]}"},
                "code": b.concept("loinc", "2160-0"),
            }
        ),
        _line({"resourceType": "Medication", "id": "m1", "code": b.concept("rxnorm", "5521")}),
        _line(b.observation("2160-0", pid=some[4], id="o-urn", subject={"reference": "urn:uuid:x"})),
        _line({**b.observation("2160-0", pid=some[5]), "id": None}),  # no id
        _line({**b.condition("snomed", "38341003", pid=some[6]), "code": {"coding": "not a list"}}),
        _line(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": b.condition(*SLE, pid=some[7])}],
            }
        ),
        _line(b.observation("2160-0", pid=some[7], value=0.9, unit="mg/dL")),
        _line(b.patient(some[8])),
        _line(b.observation("2160-0", pid="nobody", value=0.9, unit="mg/dL")),
    ]
    files["mixed"] = mixed + [line for line in files["Observation"][:40]]
    # Another type first: a patient joins mid-range through a Bundle (the census), after which a
    # child must not have dropped their lines; a Medication and a Patient in between.
    joiner = "joins-late"
    later = [_line(b.observation("2160-0", pid=joiner, value=1.1, unit="mg/dL")) for _ in range(6)]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": b.patient(joiner)}, {"resource": b.condition(*SLE, pid=joiner)}],
    }
    # A kept patient's lines that a child cannot take all the way (built and compacted there) among
    # ones it can: each must come out as the one reading process gives it, findings included.
    kept = "kept-odd"
    files["Patient"].append(_line(b.patient(kept)))
    files["Condition"].append(_line(b.condition(*SLE, pid=kept)))
    plain = [_line(b.observation("2160-0", pid=kept, value=1.0 + i / 10, unit="mg/dL")) for i in range(12)]
    dated = {**b.observation("2160-0", pid=kept, id="o-versioned"), "meta": {"versionId": "1"}}
    tiny = b.observation("2160-0", pid=kept, id="o-tiny", value=0.5, unit="mg/dL")
    absolute = {"reference": f"https://x.org/fhir/Patient/{kept}"}
    by_reference = {"medicationReference": {"reference": "Medication/m3"}}
    odd = [
        _line({**b.observation("2160-0", pid=kept, id="o-bad-date"), "effectiveDateTime": "yesterday"}),
        _line(tiny).replace("0.5", "1e-400"),
        _line({**b.observation("2160-0", pid=kept), "id": "not an id"}),
        _line(b.observation("2160-0", pid=kept, id="o-url", subject=absolute)),
        _line(dated),
        _line({**dated, "meta": {"versionId": "2"}, "status": "entered-in-error"}),
        _line(b.observation("2160-0", pid=kept, id="o-same")),
        _line(b.observation("2160-0", pid=kept, id="o-same")),
        _line({**b.medication_request("5521", pid=kept), **by_reference}),
    ]
    files["Observation-kept"] = plain + odd  # the odd ones late: in a child's range
    files["Observation-kept"].append(
        _line({"resourceType": "Medication", "id": "m3", "code": b.concept("rxnorm", "5521")})
    )
    files["mixed-others"] = [
        *files["Observation"][40:60],
        _line({"resourceType": "Medication", "id": "m2", "code": b.concept("rxnorm", "5521")}),
        _line(bundle),
        *files["Observation"][60:70],
        *later[:3],
        _line(b.patient("p-between")),
        *files["Observation"][70:90],
        *later[3:],
    ]
    return files


def _write(folder: Path, files: dict[str, list[str]], bad_bytes: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        encoded = [line.encode() for line in lines]
        if bad_bytes and name in ("Observation", "Condition"):
            # Damage near the end too, in a range a child reads: findings name the line's number.
            for at in (1, len(encoded) * 2 // 3, len(encoded) - 2):
                encoded[at] = (
                    encoded[at].replace(b'"final"', b'"fin\xffal"').replace(b'"active"', b'"act\xffive"')
                )
            encoded.insert(len(encoded) * 3 // 4, b'{"resourceType":"%s","id":"cut-short",' % name.encode())
        (folder / f"{name}.ndjson").write_bytes(b"\n".join(encoded) + b"\n")
    return folder


def _read(folder: Path, trial: Trial, workers: int) -> tuple[Population, dict[str, int]]:
    source = runs.observe(FileSource(folder, workers))
    population = load_population(source, trial)  # type: ignore[arg-type]
    return population, dict(source.resources)


def _as_data(population: Population) -> tuple[object, ...]:
    records = [(pid, r.patient, r.resources) for pid, r in population.records.items()]
    return records, [f.as_dict() for f in population.quality.findings], population.skipped


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("workers", [2, 3, 8])
def test_any_number_of_reading_processes_reads_what_one_reads(tmp_path, trial, seed, workers, forked):
    folder = _write(tmp_path / "data", _population(seed))
    one, counted_one = _read(folder, trial, 1)
    assert forked == []
    many, counted_many = _read(folder, trial, workers)
    assert _as_data(many) == _as_data(one)
    assert counted_many == counted_one  # every resource read is counted once (run.json, progress)
    assert forked and all_reaped(forked)
    # the data exercise what they are meant to: kept patients, late joiners, findings of every kind
    sle = {pid for pid, r in one.records.items() if r.resources.get("Condition")}
    assert len(sle) >= 5 and len(one.records["joins-late"].resources["Observation"]) == 6
    odd = one.records["kept-odd"].resources
    ids = {o["id"] for o in odd["Observation"]}
    # the latest version of o-versioned is entered-in-error (dropped); "not an id" is skipped
    assert {"o-bad-date", "o-tiny", "o-url", "o-same"} <= ids and len(ids) == 16
    assert len(odd["MedicationRequest"]) == 1 and "m3" in one.records["kept-odd"].medications
    problems = {f.problem for f in one.quality.findings}
    assert {"malformed-json", "invalid-utf8", "no-id", "missing-patient", "malformed-element"} <= problems


@pytest.mark.parametrize("cap", [1, 700, 5_000])
def test_a_child_that_has_sent_back_enough_stops_and_the_rest_is_read_here(tmp_path, trial, cap, monkeypatch):
    """``MAX_SENT_BACK`` bounds what a child holds; past it the main process reads the rest of the range."""
    folder = _write(tmp_path / "data", _population(9, people=150))
    one, counted_one = _read(folder, trial, 1)
    monkeypatch.setattr(ndjson_ranges, "MAX_SENT_BACK", cap)
    ends: dict[str, set[int]] = {}
    stopped: list[str] = []
    real_ranges, real_replayed = ndjson_ranges.read_ranges, ndjson_ranges._replayed

    def read_ranges(file, ranges, *args):  # type: ignore[no-untyped-def]
        ends[file.name] = {end for _start, end in ranges}
        return real_ranges(file, ranges, *args)

    def replayed(done, prefilter, fh, base):  # type: ignore[no-untyped-def]
        if done.at not in ends[Path(fh.name).name]:  # stopped before its range's end
            stopped.append(Path(fh.name).name)
        return real_replayed(done, prefilter, fh, base)

    monkeypatch.setattr(ndjson_ranges, "read_ranges", read_ranges)
    monkeypatch.setattr(ndjson_ranges, "_replayed", replayed)
    many, counted_many = _read(folder, trial, 3)
    assert _as_data(many) == _as_data(one) and counted_many == counted_one
    assert "Observation.ndjson" in stopped  # one type, no Bundle or Patient: only the cap stops it


def test_children_send_back_conditions_in_order_and_count_the_other_types(tmp_path, trial, monkeypatch):
    """What the design rests on: a range of Conditions comes back as entries the main process decides
    in order, a range of another type as counts; neither child stops before its range's end."""
    folder = _write(tmp_path / "data", _population(4, people=200), bad_bytes=False)
    seen: dict[str, ndjson_ranges.RangeRead] = {}
    real = ndjson_ranges._replayed

    def replayed(done, prefilter, fh, base):  # type: ignore[no-untyped-def]
        seen[Path(fh.name).stem] = done
        return real(done, prefilter, fh, base)

    monkeypatch.setattr(ndjson_ranges, "_replayed", replayed)
    _read(folder, trial, 2)
    conditions, observations, patients = seen["Condition"], seen["Observation"], seen["Patient"]
    assert conditions.conditions and not observations.conditions
    assert any(len(entry) == 4 for entry in conditions.back)  # dropped Conditions, decided here
    assert any(len(entry) == 3 for entry in conditions.back)  # SLE diagnoses, read here
    assert observations.dropped is not None and observations.dropped.resources == observations.checked > 0
    size = {path.stem: path.stat().st_size for path in folder.iterdir()}
    assert conditions.at == size["Condition"] and observations.at == size["Observation"]
    assert patients.lineno == 0 and not patients.back  # Patients: all read here


def _fail_in_child(how: str):  # type: ignore[no-untyped-def]
    real = ndjson_ranges._read_range
    parent = os.getpid()

    def read_range(*args):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            if how == "raise":
                raise RuntimeError("boom")
            if how == "exit":
                os._exit(3)
        return real(*args)

    return read_range


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_failed_reading_process_costs_only_time(tmp_path, trial, monkeypatch, caplog, forked, how):
    folder = _write(tmp_path / "data", _population(5))
    one, _ = _read(folder, trial, 1)
    monkeypatch.setattr(ndjson_ranges, "_read_range", _fail_in_child(how))
    many, _ = _read(folder, trial, 3)
    assert _as_data(many) == _as_data(one)
    assert "a reading process failed" in caplog.text and "in the main process" in caplog.text
    assert all_reaped(forked)


def test_an_interrupt_leaves_no_reading_process_behind(tmp_path, trial, forked):
    folder = _write(tmp_path / "data", _population(7))
    source = FileSource(folder, 4)
    plan = dataclasses.replace(
        QueryPlan.for_trial(trial), keep_patients=set(), population=trial.population, dropped=Dropped()
    )
    reading = source.read(plan, DataQuality())
    next(reading)  # the main process is reading its first range; the children are at work
    assert forked
    reading.close()  # what Ctrl-C does to the generator
    assert all_reaped(forked)


@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 50])
def test_line_ranges_cover_every_line_once_and_number_them_as_a_plain_read(tmp_path, parts, trailing_newline):
    lines = [f'{{"n":{i},"pad":"{"x" * (i * 37 % 300)}"}}' for i in range(120)]
    path = tmp_path / "f.ndjson"
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))
    ranges = line_ranges(path, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert 1 <= len(ranges) <= parts
    read: list[tuple[int, bytes]] = []
    with path.open("rb") as fh:
        lineno = 1
        for start, end in ranges:
            numbered = NumberedLines(fh, start, end, lineno)
            read += list(numbered)
            assert numbered.at == end
            lineno = numbered.lineno
    with path.open("rb") as fh:
        assert read == list(enumerate(fh, start=1))


def test_a_small_file_is_one_range(tmp_path, monkeypatch):
    monkeypatch.setattr(ranges_module, "MIN_RANGE_BYTES", 4 << 20)
    path = tmp_path / "f.ndjson"
    path.write_text('{"resourceType":"Patient","id":"a"}\n' * 1000)
    assert line_ranges(path, 4) == [(0, path.stat().st_size)]


def test_cli_output_is_the_same_for_any_number_of_reading_processes(tmp_path):
    folder = _write(tmp_path / "data", _population(8, people=120))

    def run(*args: str) -> str:
        result = CliRunner().invoke(
            main, ["screen", "--data", str(folder), "--as-of", "2026-06-01", "--format", "json", *args]
        )
        assert result.exit_code in (0, 5), result.stderr
        return result.stdout

    one = run("--workers", "1")
    assert run("--workers", "3") == one
    assert len(json.loads(one)["patients"]) >= 5


@pytest.mark.parametrize("diagnosis_first", [True, False])
def test_a_late_joiners_numbers_too_small_for_a_double_are_reported_whatever_the_processes(
    tmp_path, trial, diagnosis_first, forked
):
    """A line with a number too small for a double, of a patient whose diagnosis comes after it (in a
    file read later), is dropped unread in whichever range it falls, and read again once the patient has
    joined: its finding is made then, as when the diagnosis comes first, with one process or several."""
    tiny = b.observation("2160-0", pid="late", value=1.0, unit="mg/dL")
    lines = []
    for i in range(60):
        lines.append(_line(b.observation("2160-0", pid=f"other-{i}", value=1.0, unit="mg/dL")))
        if i % 20 == 10:
            lines.append(_line({**tiny, "id": f"o-tiny-{i}"}).replace('"value":1.0', '"value":1e-400'))
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "b-Observation.ndjson").write_text("\n".join(lines) + "\n")
    name = "a-Condition.ndjson" if diagnosis_first else "c-Condition.ndjson"
    (folder / name).write_text(_line(b.condition(*SLE, pid="late")) + "\n")
    (folder / "p-Patient.ndjson").write_text(_line(b.patient("late")) + "\n")
    assert len(line_ranges(folder / "b-Observation.ndjson", 2)) == 2
    for workers in (1, 2):
        population, _counted = _read(folder, trial, workers)
        tiny_lines = sorted(
            f.where.rsplit(":", 1)[1] for f in population.quality.findings if f.problem == "non-finite-number"
        )
        assert tiny_lines == ["12", "33", "54"], workers
        assert len(population.records["late"].resources["Observation"]) == 3
    assert forked and all_reaped(forked)
