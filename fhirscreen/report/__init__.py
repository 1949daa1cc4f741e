"""Everything fhirscreen writes: terminal tables, candidates.json/.csv, the FHIR MeasureReport and Group,
explanations and the criteria coverage table. Formatting lives here and nowhere else."""

from fhirscreen.report.criteria_doc import render_criteria
from fhirscreen.report.describe import describe_resource
from fhirscreen.report.explain import explanation_json, not_in_population, render_explanation
from fhirscreen.report.jsonio import OutputError
from fhirscreen.report.output import render_outputs, render_run, write_outputs, write_report_page
from fhirscreen.report.summary import render_summary

__all__ = [
    "OutputError",
    "describe_resource",
    "explanation_json",
    "not_in_population",
    "render_criteria",
    "render_explanation",
    "render_outputs",
    "render_run",
    "render_summary",
    "write_outputs",
    "write_report_page",
]
