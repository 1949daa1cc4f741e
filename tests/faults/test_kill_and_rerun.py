"""The project's own fault tests for the nightly job, on real processes (run with the integration tier:
about a minute of subprocesses).

- kill -9 at random points of a run (reading, evaluating, writing, after) leaves ``latest`` and every
  earlier run intact and no partial file outside the hidden in-progress folder, which the next run
  removes;
- ten reruns of the same input are byte-identical (each in a fresh process with its own hash seed),
  and ``source`` is written the same for a relative and an absolute ``--data``.

Each test prints its figures (``-s`` shows them); the README quotes them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-06-01"
RUN_FILES = {
    "candidates.json",
    "candidates.csv",
    "measure-report.json",
    "group.json",
    "report.html",
    "run.json",
    "changes.json",
}
COMPARED = ("candidates.json", "candidates.csv", "measure-report.json", "group.json")
TIMINGS = ("run", "base_run", "started_at", "finished_at", "durations_s")
KILLS = 24


def screen_command(data: Path | str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fhirscreen.cli",
        "screen",
        "--data",
        str(data),
        "--as-of",
        AS_OF,
        "--out",
        str(out),
        "--format",
        "csv",
    ]


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 people (about 18 SLE patients' records among ordinary ones): a run takes a few seconds."""
    folder = tmp_path_factory.mktemp("population") / "pop"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "population.py"),
            "--people",
            "600",
            "--seed",
            "9",
            "--out",
            str(folder),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return folder


def staging(out: Path) -> list[Path]:
    """Run folders being written (not the start-up probe file)."""
    return [p for p in (out / ".in-progress").iterdir() if p.is_dir()]


def assert_complete_run(folder: Path) -> None:
    assert {p.name for p in folder.iterdir()} == RUN_FILES, folder
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".html":
            assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>"), path
        else:
            rows = list(csv.reader(io.StringIO(text)))
            assert rows and rows[0][:2] == ["rank", "patient"]


def assert_intact(out: Path, expected_candidates: bytes) -> None:
    """latest is a complete run with the expected result; every run is complete; no temporary file
    and no partial file outside .in-progress."""
    latest = out / "latest"
    assert latest.is_symlink() and latest.resolve().parent == (out / "runs").resolve()
    assert (latest / "candidates.json").read_bytes() == expected_candidates
    for run in (out / "runs").iterdir():
        assert not run.name.startswith("."), run
        assert_complete_run(run)
    visible = [p for p in out.rglob("*") if ".in-progress" not in p.relative_to(out).parts]
    assert not [p for p in visible if p.name.startswith(".tmp-")]
    for link in out.iterdir():
        if link.is_symlink():
            assert link.exists(), f"dangling {link}"


def test_kill_9_at_random_points_leaves_latest_and_every_run_intact(population, tmp_path):
    out = tmp_path / "out"
    durations = []
    for _ in range(2):
        started = time.monotonic()
        subprocess.run(screen_command(population, out), check=True, capture_output=True)
        durations.append(time.monotonic() - started)
    full = min(durations)
    expected = (out / "latest" / "candidates.json").read_bytes()
    rng = random.Random(20261206)
    # Half the kills at a random time of the run; half just after the run starts writing its folder
    # (found by watching .in-progress), where a kill would leave half-written files.
    plan = [("anytime", rng.uniform(0.05, full * 0.95)) for _ in range(KILLS // 2)]
    plan += [("writing", rng.uniform(0.0, 0.05)) for _ in range(KILLS - KILLS // 2)]
    rng.shuffle(plan)
    landed = {"before writing": 0, "while writing": 0, "after the switch": 0}
    for trigger, delay in plan:
        runs_before = len(list((out / "runs").iterdir()))
        # 10 ms between the files of a run folder: the 50 ms after the folder appears fall inside the
        # write on any machine (on a quiet one the whole write takes a few ms).
        proc = subprocess.Popen(
            screen_command(population, out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "FHIRSCREEN_TEST_WRITE_PAUSE_S": "0.01"},
        )
        if trigger == "writing":
            while not staging(out) and proc.poll() is None:
                time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        runs_after = len(list((out / "runs").iterdir()))
        staged = staging(out)
        if runs_after > runs_before:
            landed["after the switch"] += 1
        elif staged:
            landed["while writing"] += 1
        else:
            landed["before writing"] += 1
        assert_intact(out, expected)
    final = subprocess.run(screen_command(population, out), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert_intact(out, expected)
    assert not list((out / ".in-progress").iterdir()), "the next run cleans up what killed runs left"
    print(
        f"\nkill -9 figure: {KILLS} kills ({KILLS // 2} at 0.05-{full * 0.95:.1f} s of a {full:.1f} s run, "
        f"{KILLS - KILLS // 2} within 50 ms of the run folder appearing): "
        + ", ".join(f"{n} {where}" for where, n in landed.items())
        + f"; latest intact after every kill; {len(list((out / 'runs').iterdir()))} complete runs kept"
    )
    assert sum(landed.values()) == KILLS and landed["before writing"] > 0 and landed["while writing"] > 0


def test_ten_reruns_are_byte_identical_for_relative_and_absolute_paths(tmp_path):
    """The bundled samples (every status, most criteria): five runs with ``--data sample_bundles`` from
    the repository root, five with the absolute path from elsewhere, each with its own hash seed."""
    out = tmp_path / "out"
    samples = ROOT / "sample_bundles"
    for i in range(10):
        data, cwd = ("sample_bundles", ROOT) if i % 2 == 0 else (str(samples), tmp_path)
        env = {**os.environ, "PYTHONHASHSEED": str(1000 + i)}
        proc = subprocess.run(screen_command(data, out), cwd=cwd, env=env, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 10
    first = runs[0]
    differing = []
    for run in runs[1:]:
        for name in COMPARED:
            if (run / name).read_bytes() != (first / name).read_bytes():
                differing.append(f"{run.name}/{name}")
        manifests = [json.loads((r / "run.json").read_text()) for r in (first, run)]
        for m in manifests:
            for key in TIMINGS:
                m.pop(key)
        if manifests[0] != manifests[1]:
            differing.append(f"{run.name}/run.json")
    assert not differing, differing
    sources = {json.loads((r / "candidates.json").read_text())["source"] for r in runs}
    sources |= {json.loads((r / "run.json").read_text())["source"] for r in runs}
    assert sources == {str(samples)}
    print(
        "\nrerun figure: 10 runs (5 relative, 5 absolute --data, 10 hash seeds): the 4 outputs and "
        "run.json (minus timings) byte-identical, source written the same"
    )


def test_a_second_process_on_the_same_directory_exits_at_once_with_the_locked_code(population, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(
        screen_command(population, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    while not (out / ".lock").exists() or not (out / ".lock").read_text():
        assert first.poll() is None, "the first run ended before the second could start"
        time.sleep(0.01)
    started = time.monotonic()
    second = subprocess.run(screen_command(population, out), capture_output=True, text=True)
    waited = time.monotonic() - started
    assert second.returncode == 6, second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert first.wait() == 0
    assert len(list((out / "runs").iterdir())) == 1
    print(f"\nlock figure: the second run exited with 6 after {waited:.1f} s (interpreter start included)")
