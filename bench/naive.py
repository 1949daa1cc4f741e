"""The naive baseline: how a first script would read a FHIR server for this screening.

    python3 bench/naive.py --server URL [--as-of 2026-06-01] [--sample 1000 --sample-seed 7]

1. ``GET Patient`` and every ``next`` page (the server's default page size; a first script sets none).
2. For every patient, one search per resource type, serially, following ``next`` links:
   ``Condition?patient=id``, ``Observation?patient=id``, ``MedicationStatement?patient=id``,
   ``MedicationRequest?patient=id``, ``MedicationAdministration?patient=id``, ``Procedure?patient=id``,
   ``ResearchSubject?patient=id``; then ``GET Medication/id`` once for each Medication referenced.
3. The same population dict (``PopulationBuilder``) and the same screening core as ``fhirscreen``;
   candidates.json on stdout, so the benchmark can check it against file mode.

With ``--sample K`` the per-patient step runs for K patients drawn at random (seeded) from the full
patient list; the listing itself is always complete. The benchmark extrapolates the per-patient part
to the whole population (marked as extrapolated). The last line on stderr is a JSON object of counts
and timings.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import date
from typing import Any

import requests

PER_PATIENT_TYPES = (
    "Condition",
    "Observation",
    "MedicationStatement",
    "MedicationRequest",
    "MedicationAdministration",
    "Procedure",
    "ResearchSubject",
)


class Counter:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/fhir+json"})
        self.requests = 0
        self.bytes = 0

    def get(self, url: str) -> dict[str, Any]:
        if not url.startswith("http"):
            url = f"{self.base}/{url}"
        response = self.session.get(url, timeout=120)
        self.requests += 1
        self.bytes += _wire_bytes(response)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def search(self, path: str) -> list[dict[str, Any]]:
        """Every resource of a search, following next links as a first script would."""
        found: list[dict[str, Any]] = []
        url: str | None = path
        while url:
            page = self.get(url)
            found.extend(e["resource"] for e in page.get("entry") or () if "resource" in e)
            url = next((lk["url"] for lk in page.get("link") or () if lk.get("relation") == "next"), None)
        return found


def _wire_bytes(response: requests.Response) -> int:
    try:
        told = int(response.raw.tell())
    except (AttributeError, TypeError, ValueError, OSError):
        told = 0
    return told or len(response.content or b"")


def strip_base(node: Any, prefix: str) -> None:
    """Absolute references to this server become ``Type/id`` (what the screening core expects)."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith(prefix):
            node["reference"] = ref[len(prefix) :]
        for child in node.values():
            strip_base(child, prefix)
    elif isinstance(node, list):
        for child in node:
            strip_base(child, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", required=True)
    parser.add_argument("--as-of", default="2026-06-01", type=date.fromisoformat)
    parser.add_argument(
        "--sample", type=int, default=0, help="per-patient searches for K random patients only"
    )
    parser.add_argument("--sample-seed", type=int, default=7)
    args = parser.parse_args()

    from fhirscreen.quality import DataQuality
    from fhirscreen.record import PopulationBuilder
    from fhirscreen.report import render_run
    from fhirscreen.screening import screen_population
    from fhirscreen.trial.loader import load_trial

    trial = load_trial()
    started = time.perf_counter()
    client = Counter(args.server)
    prefix = client.base + "/"

    patients = client.search("Patient")
    listed = time.perf_counter()
    list_requests, list_bytes = client.requests, client.bytes
    chosen = patients
    if args.sample and args.sample < len(patients):
        chosen = random.Random(args.sample_seed).sample(patients, args.sample)

    builder = PopulationBuilder(DataQuality())
    medications: dict[str, dict[str, Any]] = {}
    for resource in chosen:
        builder.add(resource, "naive")
    for patient in chosen:
        for rtype in PER_PATIENT_TYPES:
            for resource in client.search(f"{rtype}?patient={patient['id']}"):
                strip_base(resource, prefix)
                builder.add(resource, "naive")
                ref = (resource.get("medicationReference") or {}).get("reference", "")
                if ref.startswith("Medication/") and ref not in medications:
                    medications[ref] = client.get(ref)
    for medication in medications.values():
        builder.add(medication, "naive")
    fetched = time.perf_counter()
    run = screen_population(builder.build(), trial, args.as_of, client.base)
    sys.stdout.write(render_run(run, "json"))
    done = time.perf_counter()
    stats = {
        "patients_total": len(patients),
        "patients_fetched": len(chosen),
        "requests": client.requests,
        "bytes": client.bytes,
        "list_requests": list_requests,
        "list_bytes": list_bytes,
        "list_seconds": round(listed - started, 3),
        "per_patient_seconds": round(fetched - listed, 3),
        "screen_seconds": round(done - fetched, 3),
        "seconds": round(done - started, 3),
        "sampled_ids": sorted(p["id"] for p in chosen) if chosen is not patients else None,
    }
    print(json.dumps(stats), file=sys.stderr)


if __name__ == "__main__":
    main()
