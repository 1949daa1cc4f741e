"""One patient's full explanation: every criterion in protocol order with its reason and evidence."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from fhirscreen.criteria.base import CriterionResult, Outcome
from fhirscreen.record import PatientRecord
from fhirscreen.report.describe import describe_resource, find_resource
from fhirscreen.report.jsonio import plain
from fhirscreen.report.text import shorten
from fhirscreen.screening import PatientScreen
from fhirscreen.trial.loader import Criterion, Trial

INDENT = "    "


def header(screen: PatientScreen, trial: Trial, as_of: date) -> str:
    counts = ", ".join(f"{screen.count(o)} {o.value}" for o in Outcome)
    return (
        f"{screen.ref}: {trial.id} screening as of {as_of.isoformat()}\n"
        f"Status: {screen.status} (score {screen.score:.2f}; {counts})\n"
    )


def washout_lines(details: Mapping[str, Any]) -> list[str]:
    """When each washout ends, so a coordinator can plan Day 0.

    Evaluators report the date that decides as ``washout_ends`` and, when several agents are involved,
    one entry per agent under ``washouts`` (``{"what", "outcome", "washout_ends"}``).
    """
    facts = plain(details)
    lines = []
    if facts.get("washout_ends"):
        lines.append(f"{INDENT}Washout ends: {facts['washout_ends']}")
    agents = [w for w in facts.get("washouts") or () if isinstance(w, dict)]
    if len(agents) > 1:  # with one agent the reason already says it
        lines += [f"{INDENT}  {w.get('washout_ends') or 'end unknown'}: {w.get('what', '')}".rstrip(": ")
                  for w in agents]
    return lines


def _details_text(details: Mapping[str, Any]) -> str:
    shown = []
    for key, value in plain(details).items():
        if key in ("washout_ends", "washouts", "strength"):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        shown.append(f"{key}={text}")
    return shorten("; ".join(shown), 300)


def evidence_lines(found: CriterionResult, record: PatientRecord, as_of: date) -> list[str]:
    lines = []
    for reference in found.evidence:
        resource = find_resource(record, reference)
        described = describe_resource(resource, record, as_of) if resource is not None else reference
        lines.append(f"{INDENT}  {described}")
    return lines


def criterion_block(criterion: Criterion, found: CriterionResult, record: PatientRecord, as_of: date) -> str:
    d = criterion.definition
    lines = [f"{d.id} {d.title} ({d.type}, {d.computability}): {found.outcome.value.upper()}",
             f"{INDENT}{found.reason}"]
    if found.evidence:
        lines.append(f"{INDENT}Evidence:")
        lines += evidence_lines(found, record, as_of)
    if found.next_step and found.outcome is not Outcome.PASS:
        lines.append(f"{INDENT}Next step: {found.next_step}")
    lines += washout_lines(found.details)
    details = _details_text(found.details)
    if details:
        lines.append(f"{INDENT}Details: {details}")
    return "\n".join(lines) + "\n"


def render_explanation(screen: PatientScreen, record: PatientRecord, trial: Trial, as_of: date) -> str:
    """The header, then each criterion in protocol order. Resource ids only: no names or birth dates."""
    blocks = [header(screen, trial, as_of)]
    for criterion in trial.criteria:
        found = screen.results.get(criterion.id)
        if found is not None:
            blocks.append(criterion_block(criterion, found, record, as_of))
    return "\n".join(blocks)
