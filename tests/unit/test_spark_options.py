"""--engine spark: option checks that need no Spark (usage errors, PySpark missing, URIs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhirscreen.cli import main
from fhirscreen.spark.inputs import data_argument


def screen(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["screen", "--engine", "spark", "--as-of", "2026-06-01", *args])
    return result.exit_code, result.output


def test_without_pyspark_exits_2_and_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now raises ImportError
    code, output = screen("--data", str(tmp_path))
    assert code == 2
    assert "pip install 'fhirscreen[spark]'" in output
    assert "Traceback" not in output


def test_needs_data_and_refuses_a_server() -> None:
    code, output = screen()
    assert code == 2 and "--engine spark needs --data" in output
    code, output = screen("--server", "http://127.0.0.1:9/fhir")
    assert code == 2 and "not a FHIR server" in output


def test_credentials_in_the_uri_are_refused_and_not_echoed() -> None:
    code, output = screen("--data", "s3a://AKIAEXAMPLE:s3cr3t@bucket/export/")
    assert code == 2
    assert "s3cr3t" not in output and "credential" in output


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("s3a://bucket/export/2026-06-01", "s3a://bucket/export/2026-06-01"),
        ("hdfs://namenode:8020/fhir", "hdfs://namenode:8020/fhir"),
        ("file:///srv/export", "file:///srv/export"),
        ("exports/2026", "exports/2026"),
        ("/srv/export", "/srv/export"),
    ],
)
def test_data_uri_survives_the_cli_path_type(typed: str, expected: str) -> None:
    assert data_argument(Path(typed)) == expected
