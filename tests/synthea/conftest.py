"""The Synthea test tier: a seeded population from bench/synthea.sh (all of Synthea's modules plus the
project's SLE module and Flexporter mapping), screened in file mode over bundles and over NDJSON.

The population is generated once into bench/work/ (gitignored) and reused while a stamp file says it
was made with the same seed, size and generator inputs (module JSON, Flexporter mapping, scripts).
Generating it takes about 2.5 minutes on 2 cores (bench/SYNTHEA_NOTES.md); only one Synthea JVM runs
at a time (a lock file serialises parallel sessions). Synthea needs Java 17 and the jars Maven fetched
into bench/synthea/target/lib (bench/synthea.sh fetches them on first use).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SEED = 20260601
PEOPLE = 150
AS_OF = "2026-06-01"
POPULATION = BENCH / "work" / f"synthea-tier-{SEED}-{PEOPLE}"
STAMP = POPULATION / "stamp.json"

# Everything that changes the generated records; a change regenerates the population.
GENERATOR_INPUTS = (
    BENCH / "synthea.sh",
    BENCH / "bundles_to_ndjson.py",
    BENCH / "synthea" / "flexporter.yaml",
    BENCH / "synthea" / "pom.xml",
    *sorted((BENCH / "synthea" / "modules").rglob("*.json")),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/synthea/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.synthea)


def generator_hash() -> str:
    digest = hashlib.sha256()
    for path in GENERATOR_INPUTS:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp_matches(expected: dict[str, Any]) -> bool:
    if not STAMP.exists() or not (POPULATION / "ndjson" / "Patient.ndjson").exists():
        return False
    stamp = json.loads(STAMP.read_text())
    return all(stamp.get(k) == v for k, v in expected.items())


def ensure_population() -> Path:
    expected = {"seed": SEED, "people": PEOPLE, "generator": generator_hash()}
    if _stamp_matches(expected):
        return POPULATION
    if shutil.which("java") is None:
        pytest.fail("The Synthea tier needs Java 17 (java on PATH) to generate its population.")
    lock_path = BENCH / "work" / ".synthea-tier.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be generating the same population
        if _stamp_matches(expected):
            return POPULATION
        started = time.monotonic()
        subprocess.run(
            ["bash", str(BENCH / "synthea.sh"), "-p", str(PEOPLE), "-s", str(SEED), "-o", str(POPULATION)],
            check=True,
        )
        seconds = round(time.monotonic() - started)
        STAMP.write_text(json.dumps({**expected, "seconds": seconds}, indent=1) + "\n")
    return POPULATION


def screen(data: Path, out: Path) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "fhirscreen.cli", "screen", "--data", str(data), "--as-of", AS_OF,
         "--out", str(out), "--format", "json"],
        check=True, stdout=subprocess.DEVNULL,
    )
    candidates: dict[str, Any] = json.loads((out / "candidates.json").read_text())
    return candidates


@pytest.fixture(scope="session")
def population() -> Path:
    return ensure_population()


@pytest.fixture(scope="session")
def screened_ndjson(population: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return screen(population / "ndjson", tmp_path_factory.mktemp("ndjson"))


@pytest.fixture(scope="session")
def screened_bundles(population: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return screen(population / "bundles", tmp_path_factory.mktemp("bundles"))


def ndjson_rows(population: Path, resource_type: str) -> Iterator[dict[str, Any]]:
    path = population / "ndjson" / f"{resource_type}.ndjson"
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
