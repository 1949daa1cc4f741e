"""Everything fhirscreen writes: terminal tables, candidates.json/.csv, the FHIR MeasureReport and Group,
explanations and the criteria coverage table. Formatting lives here and nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhirscreen import lazy

if TYPE_CHECKING:
    from fhirscreen.report.criteria_doc import render_criteria
    from fhirscreen.report.describe import describe_resource
    from fhirscreen.report.explain import explanation_json, not_in_population, render_explanation
    from fhirscreen.report.jsonio import OutputError
    from fhirscreen.report.output import (
        render_outputs,
        render_run,
        render_stdout,
        write_outputs,
        write_report_page,
    )
    from fhirscreen.report.summary import render_summary
else:
    __getattr__ = lazy.exports(
        __name__,
        {
            "render_criteria": "criteria_doc",
            "describe_resource": "describe",
            "explanation_json": "explain",
            "not_in_population": "explain",
            "render_explanation": "explain",
            "OutputError": "jsonio",
            "render_outputs": "output",
            "render_run": "output",
            "render_stdout": "output",
            "write_outputs": "output",
            "write_report_page": "output",
            "render_summary": "summary",
        },
    )

__all__ = [
    "OutputError",
    "describe_resource",
    "explanation_json",
    "not_in_population",
    "render_criteria",
    "render_explanation",
    "render_outputs",
    "render_run",
    "render_stdout",
    "render_summary",
    "write_outputs",
    "write_report_page",
]
