"""Write the four output files of a run, and choose the stdout rendering."""

from __future__ import annotations

from pathlib import Path

from fhirscreen.report.candidates import render_json
from fhirscreen.report.csv_out import render_csv
from fhirscreen.report.group import group_resource
from fhirscreen.report.jsonio import OutputError, dump_json, write_atomic
from fhirscreen.report.measure import measure_report
from fhirscreen.report.table import render_table
from fhirscreen.screening import ScreeningRun

OUTPUT_FILES = ("candidates.json", "candidates.csv", "measure-report.json", "group.json")


def render_outputs(run: ScreeningRun) -> dict[str, str]:
    """Every output's text, keyed by file name (rendered before anything is written)."""
    return {
        "candidates.json": render_json(run),
        "candidates.csv": render_csv(run),
        "measure-report.json": dump_json(measure_report(run)),
        "group.json": dump_json(group_resource(run)),
    }


def write_outputs(run: ScreeningRun, out_dir: Path) -> list[Path]:
    """Create ``out_dir`` if needed and write the four files atomically; returns the paths written."""
    texts = render_outputs(run)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create output directory: {exc.strerror or exc}") from None
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir}: not a directory")
    written = []
    for name in OUTPUT_FILES:
        path = out_dir / name
        write_atomic(path, texts[name])
        written.append(path)
    return written


def render_run(run: ScreeningRun, fmt: str) -> str:
    """stdout: the ranked table with attrition and worklist, or candidates.json / candidates.csv content."""
    if fmt == "json":
        return render_json(run)
    if fmt == "csv":
        return render_csv(run)
    if fmt == "table":
        return render_table(run)
    raise ValueError(f"unknown output format {fmt!r}; use table, json or csv")
