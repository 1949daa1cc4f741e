"""report.html: the coordinator's page for a run, one self-contained file (inline CSS, SVG and a small
script; nothing is loaded from the network), rendered from the run folder's files."""

from fhirscreen.report.html.render import render_report, render_run_folder

__all__ = ["render_report", "render_run_folder"]
