"""Text (80 columns), JSON and CSV for the ``history`` and ``diff`` commands."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from typing import Any

from fhirscreen.runs.layout import RunInfo

WIDTH = 80


def _counts(info: RunInfo) -> dict[str, Any]:
    counts = info.manifest.get("counts") or {}
    return {
        "run": info.name,
        "as_of": info.manifest.get("as_of"),
        "started_at": info.manifest.get("started_at"),
        "exit_status": info.manifest.get("exit_status"),
        "partial": info.manifest.get("partial"),
        "initial_population": info.manifest.get("initial_population"),
        "eligible": counts.get("eligible"),
        "possible": counts.get("possible"),
        "ineligible": counts.get("ineligible"),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_history(root: str, runs: list[RunInfo], latest: str | None, fmt: str) -> str:
    rows = [{**_counts(r), "latest": r.name == latest} for r in runs]
    if fmt == "json":
        return json.dumps({"directory": root, "latest": latest, "runs": rows}, indent=2) + "\n"
    if fmt == "csv":
        return _csv(list(rows[0]) if rows else ["run"], rows)
    if not runs:
        return f"No runs in {root} yet.\n"
    header = "  run                  as of      exit  partial eligible possible inelig."
    lines = [f"{len(runs)} run(s) in {root}, oldest first; * = latest", header]
    for row in rows:
        lines.append(
            f"{'* ' if row['latest'] else '  '}{row['run']:<21}{_cell(row['as_of']):<11}"
            f"{_cell(row['exit_status']):>4}  {_cell(row['partial']):<8}{_cell(row['eligible']):>8}"
            f"{_cell(row['possible']):>9}{_cell(row['ineligible']):>8}"
        )
    return "\n".join(line[:WIDTH] for line in lines) + "\n"


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=True,
        break_on_hyphens=False,
    )


def _refs(evidence: list[str]) -> str:
    shown = ", ".join(evidence[:3])
    more = f" (+{len(evidence) - 3} more)" if len(evidence) > 3 else ""
    return shown + more if evidence else "no resource named"


def render_changes(changes: dict[str, Any], fmt: str, warnings: list[str] | None = None) -> str:
    if fmt == "json":
        return json.dumps({**changes, "warnings": warnings or []}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _changes_csv(changes)
    lines: list[str] = []
    for warning in warnings or []:
        lines += _wrap(f"warning: {warning}", "")
    base = changes["base_run"]
    lines += _wrap(
        f"Run {changes['run']} against {base}"
        if base
        else f"Run {changes['run']}: first run, nothing to compare with",
        "",
    )
    new = changes["new_candidates"]
    lines.append(f"\nNew candidates ({len(new)})")
    lines += [f"  #{c['rank']:<4} {c['status']:<9} {c['patient']}"[:WIDTH] for c in new]
    status = changes["status_changes"]
    lines.append(f"\nStatus changes ({len(status)})")
    for s in status:
        lines += _wrap(f"{s['patient']}: {s['from']} -> {s['to']}", "  ")
        for c in s["criteria"]:
            lines += _wrap(f"{c['id']} {c['from']} -> {c['to']}: {_refs(c['evidence'])}", "    ")
    left = changes["left_population"]
    lines.append(f"\nLeft the population ({len(left)})")
    lines += _wrap("; ".join(f"{x['patient']} (was {x['last_status']})" for x in left), "  ") if left else []
    settled = changes["settled_unknowns"]
    lines.append(f"\nSettled unknowns ({len(settled)})")
    for u in settled:
        lines += _wrap(f"{u['patient']} {u['criterion']} -> {u['to']}: {_refs(u['evidence'])}", "  ")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = [
    "change",
    "patient",
    "rank",
    "from",
    "to",
    "criterion",
    "criterion_from",
    "criterion_to",
    "evidence",
]


def _changes_csv(changes: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = []
    for c in changes["new_candidates"]:
        rows.append(
            {"change": "new-candidate", "patient": c["patient"], "rank": c["rank"], "to": c["status"]}
        )
    for s in changes["status_changes"]:
        base = {"change": "status-change", "patient": s["patient"], "from": s["from"], "to": s["to"]}
        rows += [
            {
                **base,
                "criterion": c["id"],
                "criterion_from": c["from"],
                "criterion_to": c["to"],
                "evidence": " ".join(c["evidence"]),
            }
            for c in s["criteria"]
        ] or [base]
    for x in changes["left_population"]:
        rows.append({"change": "left-population", "patient": x["patient"], "from": x["last_status"]})
    for u in changes["settled_unknowns"]:
        rows.append(
            {
                "change": "settled-unknown",
                "patient": u["patient"],
                "criterion": u["criterion"],
                "criterion_from": "unknown",
                "criterion_to": u["to"],
                "evidence": " ".join(u["evidence"]),
            }
        )
    return _csv(CSV_COLUMNS, rows)


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buffer.getvalue()
