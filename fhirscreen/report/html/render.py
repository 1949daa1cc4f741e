"""Render report.html from the run's documents with the package's Jinja2 templates."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhirscreen.report.html.charts import funnel_svg, timeline_svg
from fhirscreen.report.html.model import anchor, build_view
from fhirscreen.trial.loader import Trial

if TYPE_CHECKING:
    import jinja2

REPORT_FILE = "report.html"
IDENTITIES_FILE = "identities.json"


class ReportInputError(Exception):
    """A run folder whose files cannot be rendered; the message names the file."""


@cache
def _environment() -> jinja2.Environment:
    # Imported here, not at the top: a run that writes no report.html (every run without --out) does
    # not pay for Jinja2's import (~30 ms of a screening run's start-up).
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fhirscreen.report.html", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters["anchor"] = anchor
    return env


def trial_criteria(trial: Trial) -> list[tuple[str, str, str]]:
    return [(c.id, c.definition.title, c.definition.type) for c in trial.criteria]


def render_report(
    document: Mapping[str, Any],
    trial: Trial,
    changes: Mapping[str, Any] | None = None,
    run_info: Mapping[str, Any] | None = None,
    identities: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The page for one run. ``document`` is candidates.json's content; ``identities`` (patient ref ->
    name, mrn) is given only with --show-names. The same inputs give the same bytes."""
    return "".join(report_pieces(document, trial, changes, run_info, identities))


def report_pieces(
    document: Mapping[str, Any],
    trial: Trial,
    changes: Mapping[str, Any] | None = None,
    run_info: Mapping[str, Any] | None = None,
    identities: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[str]:
    """``render_report``'s text in pieces, as the template makes it: a run folder writes them as they
    come (the whole page is 18 MB at 1,500 patients, twice that as Python text)."""
    criteria = trial_criteria(trial) if trial.id == document.get("trial") else []
    view = build_view(document, criteria, trial.definition.trial.title if criteria else "",
                      changes, run_info, identities)
    as_of = date.fromisoformat(view.as_of)
    template = _environment().get_template("report.html.j2")
    return template.generate(
        v=view,
        as_of_date=as_of,
        funnel=funnel_svg(view.attrition),
        timeline=timeline_svg(view.washouts, as_of),
    )


def _read_json(path: Path, required: bool) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ReportInputError(f"{path}: not found (is this a run folder written by "
                                   "'fhirscreen screen --out'?)") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def render_run_folder(run_dir: Path, trial: Trial, show_names: bool = False) -> str:
    """report.html again from a run folder: candidates.json, plus changes.json, run.json and (with
    ``show_names``) identities.json when present."""
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: not a directory")
    document = _read_json(run_dir / "candidates.json", required=True)
    if not isinstance(document, dict) or not isinstance(document.get("patients"), list):
        raise ReportInputError(f"{run_dir / 'candidates.json'}: not a fhirscreen candidates document")
    changes = _read_json(run_dir / "changes.json", required=False)
    run_info = _read_json(run_dir / "run.json", required=False)
    identities = None
    if show_names:
        identities = _read_json(run_dir / IDENTITIES_FILE, required=False)
        if identities is None:
            raise ReportInputError(
                f"{run_dir / IDENTITIES_FILE}: not found; names are recorded only by a run made with "
                "'screen --show-names'")
    return render_report(document, trial,
                         changes if isinstance(changes, dict) else None,
                         run_info if isinstance(run_info, dict) else None,
                         identities)
