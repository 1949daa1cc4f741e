"""Data-quality findings as a run lists them."""

from __future__ import annotations

from fhirscreen.quality import DataQuality


def test_findings_are_listed_by_line_number_not_as_text() -> None:
    quality = DataQuality()
    for where in ("a.ndjson:19", "a.ndjson:9", "Patient/p1", "a.ndjson:100"):
        quality.add("error", where, "malformed-json", "line is not valid JSON")
    assert [f.where for f in quality.sorted()] == ["Patient/p1", "a.ndjson:9", "a.ndjson:19", "a.ndjson:100"]
