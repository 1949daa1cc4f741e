"""Write the output files of a run, and choose the stdout rendering."""

from __future__ import annotations

from pathlib import Path

from fhirscreen.report.candidates import candidates_document, render_json, render_json_bytes
from fhirscreen.report.csv_out import render_csv
from fhirscreen.report.html import render_report
from fhirscreen.report.html.render import IDENTITIES_FILE
from fhirscreen.report.jsonio import OutputError, dump_json, write_atomic
from fhirscreen.report.table import render_table
from fhirscreen.screening import ScreeningRun

OUTPUT_FILES = ("candidates.json", "candidates.csv", "measure-report.json", "group.json", "report.html")


def render_outputs(run: ScreeningRun, show_names: bool = False, page: bool = True) -> dict[str, str]:
    """Every output's text, keyed by file name (rendered before anything is written).

    report.html is rendered from candidates.json's content, as ``fhirscreen report RUN_DIR`` does, so
    both give the same bytes. With ``show_names`` the page shows names and MRNs, and identities.json
    (the only file holding them) is added so that ``report --show-names`` can render it again. Without
    ``page``, report.html is left to the caller (a run folder's page also shows changes and run.json).
    """
    # The FHIR models behind these two (fhir.resources, ~70 ms to import) are loaded only by runs that
    # write them (--out), not by every screening run's start-up.
    from fhirscreen.report.group import group_resource
    from fhirscreen.report.measure import measure_report

    document = candidates_document(run)
    identities = identities_document(run) if show_names else None
    texts = {
        "candidates.json": dump_json(document),
        "candidates.csv": render_csv(run),
        "measure-report.json": dump_json(measure_report(run)),
        "group.json": dump_json(group_resource(run)),
    }
    if page:
        texts["report.html"] = render_report(document, run.trial, identities=identities)
    if identities is not None:
        texts[IDENTITIES_FILE] = dump_json(identities)
    return texts


def identities_document(run: ScreeningRun) -> dict[str, dict[str, str]]:
    """Name and MRN per screened patient (PHI: written only with --show-names)."""
    return {s.ref: run.facts[s.patient_id].identity for s in run.patients if s.patient_id in run.facts}


def write_outputs(run: ScreeningRun, out_dir: Path, show_names: bool = False) -> list[Path]:
    """Create ``out_dir`` if needed and write the files atomically; returns the paths written."""
    texts = render_outputs(run, show_names)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create output directory: {exc.strerror or exc}") from None
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir}: not a directory")
    written = []
    for name in texts:
        path = out_dir / name
        write_atomic(path, texts[name])
        if show_names and name in (IDENTITIES_FILE, "report.html"):
            path.chmod(0o600)  # names and MRNs: the owner only, whatever the umask
        written.append(path)
    return written


def render_run(run: ScreeningRun, fmt: str, width: int | None = None) -> str:
    """stdout: the ranked table with attrition and worklist, or candidates.json / candidates.csv content."""
    if fmt == "json":
        return render_json(run)
    if fmt == "csv":
        return render_csv(run)
    if fmt == "table":
        return render_table(run, width)
    raise ValueError(f"unknown output format {fmt!r}; use table, json or csv")


def render_stdout(run: ScreeningRun, fmt: str, width: int | None = None) -> str | bytes:
    """``render_run`` for the terminal or a pipe: JSON as the encoder's bytes (no text copy of a large
    document), the other formats as text (so that styles are dropped where the output is no terminal)."""
    return render_json_bytes(run) if fmt == "json" else render_run(run, fmt, width)


def write_report_page(path: Path, page: str, show_names: bool) -> None:
    """report.html, written atomically (``fhirscreen report RUN_DIR``)."""
    write_atomic(path, page)
    if show_names:
        path.chmod(0o600)
