"""The criteria of a trial as a terminal table, a Markdown coverage table (for the README) or JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fhirscreen.report.jsonio import dump_json
from fhirscreen.report.text import format_table, shorten, terminal_width, wrap
from fhirscreen.trial.loader import Criterion, Trial


def criterion_dict(c: Criterion) -> dict[str, Any]:
    d = c.definition
    return {
        "id": d.id, "type": d.type, "title": d.title, "text": d.text, "computability": d.computability,
        "evaluator": d.evaluator, "how": " ".join(d.how.split()),
    }


def coverage_line(trial: Trial) -> str:
    counts = Counter(c.definition.computability for c in trial.criteria)
    return (f"{len(trial.criteria)} criteria: {counts['computable']} computable, "
            f"{counts['partial']} partial, {counts['manual']} manual.")


def _cell(text: str) -> str:
    # A Markdown table cell is one line and a literal "|" would end it.
    return " ".join(text.split()).replace("|", "\\|")


def criteria_markdown(trial: Trial) -> str:
    lines = [
        "| ID | Type | Title | Protocol text | Computability | Evaluator | How |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in trial.criteria:
        d = criterion_dict(c)
        evaluator = f"`{d['evaluator']}`"
        cells = [d["id"], d["type"], d["title"], d["text"], d["computability"], evaluator, d["how"]]
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(lines) + f"\n\n{coverage_line(trial)}\n"


def criteria_table(trial: Trial, width: int) -> str:
    headers = ("id", "type", "computability", "evaluator", "title")
    columns = [(c.id, c.definition.type, c.definition.computability, c.definition.evaluator)
               for c in trial.criteria]
    fixed = [max(len(headers[i]), *(len(row[i]) for row in columns)) for i in range(4)]
    title_width = max(width - sum(fixed) - 2 * 4, 16)
    rows = [
        (c.id, c.definition.type, c.definition.computability, c.definition.evaluator,
         shorten(c.definition.title, title_width))
        for c in trial.criteria
    ]
    table = format_table(headers, rows)
    details = [
        "\n".join([
            *wrap(f"{c.id} {c.definition.title}", width),
            *wrap(shorten(c.definition.text, 400), width, " " * 14, first="    Protocol: "),
            *wrap(shorten(c.definition.how, 600), width, " " * 9, first="    How: "),
        ])
        for c in trial.criteria
    ]
    heading = "\n".join(wrap(f"{trial.id}: {trial.definition.trial.title}", width))
    coverage = "\n".join(wrap(coverage_line(trial), width))
    return f"{heading}\n\n{table}\n{coverage}\n\n" + "\n\n".join(details) + "\n"


def render_criteria(trial: Trial, fmt: str, width: int | None = None) -> str:
    if fmt == "markdown":
        return criteria_markdown(trial)
    if fmt == "json":
        return dump_json({"trial": trial.id, "criteria": [criterion_dict(c) for c in trial.criteria]})
    if fmt == "table":
        return criteria_table(trial, terminal_width(width))
    raise ValueError(f"unknown criteria format {fmt!r}; use table, markdown or json")
