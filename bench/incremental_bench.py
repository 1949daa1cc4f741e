"""Incremental reads against full reads on a benchmark population in a local HAPI FHIR server.

    python3 bench/incremental_bench.py --people 1000 [--observations codes|all] [--seed 42]

1. The population (bench/population.py) is generated and loaded once into its own HAPI database
   (``bench/work/incremental-<population>/``, H2 on file; ``HAPI_BASE_URL`` uses a running server
   instead). It is not the database ``bench/benchmark.py`` uses, because this benchmark changes it.
2. A first run reads in full and writes the store.
3. A night's changes go to the server: for 1 % of the SLE patients (at least one each) the latest eGFR
   drops to 20 (I4 fails), a dialysis Procedure is added (E2), a MedicationRequest is deleted; one SLE
   Condition is deleted; one new SLE patient is created and one non-SLE person is given an SLE Condition.
4. The incremental run, then a full read into a fresh store (``--full``), and the two candidates.json
   documents are compared patient by patient and criterion by criterion. Then an incremental run with
   nothing changed.

Runs are in-process (``IncrementalSource`` and ``run_screening``, what ``fhirscreen screen --server
--out`` runs) with the overlap margin shortened to 5 s, so that the load itself, minutes earlier, is not
read again as a change. Prints a Markdown table; ``--write`` adds it to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import population  # noqa: E402
from benchmark import ensure_loaded, ensure_population, log, machine_facts, start_server  # noqa: E402

from fhirscreen.pipeline import run_screening  # noqa: E402
from fhirscreen.report.candidates import render_json  # noqa: E402
from fhirscreen.sources.factory import SourceOptions  # noqa: E402
from fhirscreen.sources.server import ServerSource, make_client  # noqa: E402
from fhirscreen.store.incremental import IncrementalSource, trial_fingerprint  # noqa: E402
from fhirscreen.store.sqlite import ResourceStore  # noqa: E402
from fhirscreen.trial.loader import load_trial  # noqa: E402

HEADERS = {
    "Content-Type": "application/fhir+json",
    "Accept": "application/fhir+json",
    "Cache-Control": "no-cache",
}
DIALYSIS = ("http://snomed.info/sct", "265764009", "Renal dialysis")
SLE = ("http://snomed.info/sct", "55464009", "Systemic lupus erythematosus")


def screen(base: str, store: Path, observations: str, *, full: bool = False) -> dict[str, Any]:
    trial = load_trial()
    options = SourceOptions(server=base, concurrency=4, timeout=600.0, observations=observations)
    source = IncrementalSource(
        ServerSource(options, make_client(options)),
        ResourceStore(store),
        trial_fingerprint(trial.path),
        full=full,
        overlap=timedelta(seconds=5),
    )
    started = time.perf_counter()
    run = run_screening(source, trial, population.AS_OF)
    wall = time.perf_counter() - started
    stats = source.stats()
    document = json.loads(render_json(run))
    document.pop("source", None)
    return {
        "wall": round(wall, 2),
        "requests": int(stats["requests"]),
        "mbytes": round(float(stats["bytes"]) / 1e6, 2),
        "resources": int(stats["resources"]),
        "summary": source.read_summary(),
        "document": document,
        "patients": len(run.patients),
    }


def night(base: str, pop_dir: Path, people: int, seed: int) -> list[str]:
    """Change, add and delete resources on the server as a day in a hospital would; returns what it did."""
    tag = time.strftime("%H%M%S")
    rng = random.Random(f"{seed}-{tag}")
    sle_ids = (pop_dir / "sle_ids.txt").read_text().split()
    k = max(1, len(sle_ids) // 100)
    chosen = rng.sample(sle_ids, 3 * k + 1)
    done: list[str] = []
    for pid in chosen[:k]:
        lab = requests.get(f"{base}/Observation/{pid}-v3-egfr", headers=HEADERS, timeout=60).json()
        lab["valueQuantity"]["value"] = 20
        put(base, lab)
    done.append(f"{k} eGFR updated")
    for pid in chosen[k : 2 * k]:
        put(
            base,
            population.procedure(
                f"{pid}-dialysis-{tag}", pid, DIALYSIS, population.AS_OF - timedelta(days=9)
            ),
        )
    done.append(f"{k} Procedures added")
    deleted = 0
    for pid in chosen[2 * k : 3 * k]:
        found = requests.get(f"{base}/MedicationRequest?patient={pid}", headers=HEADERS, timeout=60).json()
        for entry in (found.get("entry") or [])[:1]:
            delete(base, f"MedicationRequest/{entry['resource']['id']}")
            deleted += 1
            break
    done.append(f"{deleted} MedicationRequests deleted")
    delete(base, f"Condition/{chosen[-1]}-sle")
    done.append("1 SLE Condition deleted")
    newcomer = f"b{seed}-night-{tag}"
    for resource in population.sle_person(newcomer, rng):
        put(base, resource)
    width = len(str(people - 1))
    ordinary = next(
        f"b{seed}-{i:0{width}d}"
        for i in rng.sample(range(people), people)
        if f"b{seed}-{i:0{width}d}" not in sle_ids
    )
    put(
        base,
        population.condition(f"{ordinary}-sle-{tag}", ordinary, SLE, population.AS_OF - timedelta(days=20)),
    )
    done.append("2 new SLE patients")
    return done


def put(base: str, resource: dict[str, Any]) -> None:
    url = f"{base}/{resource['resourceType']}/{resource['id']}"
    requests.put(url, json=resource, headers=HEADERS, timeout=120).raise_for_status()


def delete(base: str, what: str) -> None:
    response = requests.delete(f"{base}/{what}", headers=HEADERS, timeout=120)
    if response.status_code not in (200, 204):
        raise RuntimeError(f"DELETE {what}: {response.status_code} {response.text[:300]}")


def differences(full: dict[str, Any], incremental: dict[str, Any]) -> str:
    want = {p["patient"]: p for p in full["document"]["patients"]}
    got = {p["patient"]: p for p in incremental["document"]["patients"]}
    if sorted(want) != sorted(got):
        return f"different patients: {sorted(set(want) ^ set(got))[:5]}"
    for patient, entry in want.items():
        for criterion, result in entry["criteria"].items():
            if got[patient]["criteria"].get(criterion) != result:
                return f"{patient} {criterion} differs"
    return "same" if full["document"] == incremental["document"] else "documents differ outside patients"


def measure(base: str, args: argparse.Namespace, pop_dir: Path, observations: str) -> tuple[str, bool]:
    """One night on the server, screened full and incremental; a Markdown section and whether they agree."""
    stores = args.work / f"incremental-stores-{observations}-{int(time.time())}"
    log(f"--observations {observations}: first run (full read, writes the store)")
    first = screen(base, stores / "nightly.sqlite", observations)
    time.sleep(6)
    done = night(base, pop_dir, args.people, args.seed)
    log(f"night's changes: {', '.join(done)}")
    time.sleep(6)  # so that the quiet run below starts after the changes, overlap included
    log("incremental run")
    incremental = screen(base, stores / "nightly.sqlite", observations)
    log("full read for comparison (--full, fresh store)")
    full = screen(base, stores / "fresh.sqlite", observations, full=True)
    time.sleep(6)
    log("incremental run with nothing changed")
    quiet = screen(base, stores / "nightly.sqlite", observations)
    check = differences(full, incremental)
    rows = [
        ("first run: full read, store written", first),
        ("full read (`--full`)", full),
        ("incremental after the night's changes", incremental),
        ("incremental, nothing changed", quiet),
    ]
    lines = [
        f"#### `--observations {observations}`",
        "",
        f"Night's changes: {', '.join(done)}. Incremental result against the full read: **{check}** "
        f"({full['patients']} patients screened).",
        "",
        "| run | wall s | requests | MB received | resources screened | store says |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in rows:
        said = str(row["summary"]).split(" (/")[0]  # no local paths in the table
        lines.append(
            f"| {name} | {row['wall']:.2f} | {row['requests']} | {row['mbytes']:.2f} | {row['resources']} | "
            f"{said} |"
        )
    return "\n".join([*lines, ""]), check == "same"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sle-share", type=float, default=0.03)
    parser.add_argument("--observations", default="codes,all", help="codes, all, or both (codes,all)")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--xmx", default="2g")
    parser.add_argument("--write", type=Path, default=None, help="append the result to this Markdown file")
    args = parser.parse_args()

    pop_dir, manifest = ensure_population(args.work, args.people, args.seed, args.sle_share)
    db_dir = args.work / f"incremental-{pop_dir.name}"
    external = os.environ.get("HAPI_BASE_URL")
    server = start_server(db_dir, args.xmx) if not external else None
    base = server.base_url if server is not None else str(external)
    sections: list[str] = []
    agree = True
    try:
        if server is not None:
            ensure_loaded(server, db_dir, pop_dir, manifest, concurrency=2)
        else:
            from fhirscreen.sources.upload import upload_path

            upload_path(SourceOptions(server=base, concurrency=2, timeout=600.0), pop_dir / "ndjson")
        time.sleep(6)  # past the shortened overlap
        load = os.getloadavg()
        for observations in args.observations.split(","):
            section, same = measure(base, args, pop_dir, observations)
            sections.append(section)
            agree = agree and same
        load_after = os.getloadavg()
    finally:
        if server is not None:
            server.stop()
    facts = machine_facts()
    text = "\n".join(
        [
            f"### {args.people:,} people ({manifest['sle_patients']} with SLE), {date.today().isoformat()}",
            "",
            f"Machine: {facts['cores']} cores ({facts['cpu']}), {facts['memory']}; {facts['hapi']}; "
            f"fhirscreen {facts['fhirscreen']}. Load average (1 min) {load[0]:.1f} before, "
            f"{load_after[0]:.1f} after (the machine is shared).",
            "",
            *sections,
        ]
    )
    print(text)
    if args.write is not None:
        with args.write.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
