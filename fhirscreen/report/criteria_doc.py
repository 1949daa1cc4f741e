"""The criteria of a trial as a terminal table, a Markdown coverage table (for the README) or JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fhirscreen.report.jsonio import dump_json
from fhirscreen.report.text import format_table, shorten
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


def criteria_table(trial: Trial) -> str:
    rows = [
        (c.id, c.definition.type, c.definition.computability, c.definition.evaluator, c.definition.title)
        for c in trial.criteria
    ]
    table = format_table(("id", "type", "computability", "evaluator", "title"), rows)
    details = [
        f"{c.id} {c.definition.title}\n    Protocol: {shorten(c.definition.text, 400)}\n"
        f"    How: {shorten(c.definition.how, 600)}"
        for c in trial.criteria
    ]
    return f"{trial.id}: {trial.definition.trial.title}\n\n{table}\n{coverage_line(trial)}\n\n" + "\n\n".join(
        details) + "\n"


def render_criteria(trial: Trial, fmt: str) -> str:
    if fmt == "markdown":
        return criteria_markdown(trial)
    if fmt == "json":
        return dump_json({"trial": trial.id, "criteria": [criterion_dict(c) for c in trial.criteria]})
    if fmt == "table":
        return criteria_table(trial)
    raise ValueError(f"unknown criteria format {fmt!r}; use table, markdown or json")
