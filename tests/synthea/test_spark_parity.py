"""The Spark engine on the seeded Synthea population (all of Synthea's modules plus the SLE module):
reports byte-identical to file mode on the same NDJSON. Markers: synthea (this folder) and spark."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhirscreen import report
from fhirscreen.pipeline import run_screening
from fhirscreen.sources.files import FileSource
from fhirscreen.trial.loader import Trial
from tests.spark_session import spark  # noqa: F401  (the session-scoped fixture)
from tests.synthea.conftest import AS_OF

pytestmark = pytest.mark.spark


def test_spark_reports_are_byte_identical_to_file_mode(
    population: Path, spark: Any, trial: Trial, tmp_path: Path  # noqa: F811
) -> None:
    from fhirscreen.spark.engine import run_spark_screening

    data = population / "ndjson"
    as_of = date.fromisoformat(AS_OF)
    file_run = run_screening(FileSource(data), trial, as_of)
    spark_run = run_spark_screening(str(data), trial, as_of, spark)
    assert len(file_run.patients) > 0
    expected = {p.name: p.read_bytes() for p in report.write_outputs(file_run, tmp_path / "file")}
    actual = {p.name: p.read_bytes() for p in report.write_outputs(spark_run, tmp_path / "spark")}
    assert actual == expected
