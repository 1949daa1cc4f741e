"""report.html of the seeded Synthea population in headless Chromium: a larger, messier run than the
samples (every Synthea module), opened offline, numbers checked against candidates.json."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.chromium import chromium, open_page
from tests.synthea.conftest import AS_OF

pytestmark = [pytest.mark.synthea, pytest.mark.browser]


def test_synthea_report_opens_offline_and_matches_candidates(population: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "fhirscreen.cli", "screen", "--data", str(population / "ndjson"),
                    "--as-of", AS_OF, "--out", str(out)], check=True, capture_output=True)
    document = json.loads((out / "candidates.json").read_text())
    assert document["patients"], "the Synthea tier must yield SLE patients"
    with chromium() as browser, open_page(browser, out / "report.html") as session:
        page = session.page
        started = time.monotonic()
        rows = page.locator("#ranked-table tbody tr")
        assert rows.count() == len(document["patients"])
        for i, patient in enumerate(document["patients"]):
            cells = rows.nth(i).locator("td").all_inner_texts()
            assert (cells[1], cells[3].strip(), cells[4]) == (
                patient["patient"].removeprefix("Patient/"), patient["status"], f"{patient['score']:.2f}")
        tiles = dict(zip(page.locator(".tiles .badge").all_inner_texts(),
                         page.locator(".tiles .n").all_inner_texts(), strict=True))
        for status in ("eligible", "possible", "ineligible"):
            assert int(tiles[status]) == sum(1 for p in document["patients"] if p["status"] == status)
        quality = len(document["data_quality"])
        assert page.locator("#quality tbody tr").count() == quality
        page.get_by_label("ineligible").uncheck()
        shown = page.locator("#ranked-table tbody tr:visible").count()
        assert shown == sum(1 for p in document["patients"] if p["status"] != "ineligible")
        assert session.console_errors == [] and session.blocked == []
        size = (out / "report.html").stat().st_size / 1e3
        print(f"synthea report: {len(document['patients'])} patients, {size:.0f} kB, "
              f"checked in {time.monotonic() - started:.1f} s")
