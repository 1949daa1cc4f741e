"""One patient's full explanation for a coordinator: every criterion in protocol order, as sentences,
with the evidence resources behind it; fitted to the terminal's width. ``--format json`` gives the
machine details (the evaluators' ``details``) instead."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from fhirscreen.criteria.base import CriterionResult, Outcome
from fhirscreen.record import PatientRecord
from fhirscreen.report.candidates import patient_entry
from fhirscreen.report.describe import describe_resource, find_resource
from fhirscreen.report.facts import patient_facts
from fhirscreen.report.jsonio import dump_json, plain
from fhirscreen.report.text import terminal_width, wrap
from fhirscreen.screening import PatientScreen
from fhirscreen.trial.loader import Criterion, Trial

INDENT = "    "
OUTCOME_WORDS = {
    Outcome.PASS: "pass",
    Outcome.FAIL: "FAIL",
    Outcome.UNKNOWN: "UNKNOWN",
    Outcome.MANUAL: "check by hand",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def header(screen: PatientScreen, record: PatientRecord, trial: Trial, as_of: date, width: int) -> list[str]:
    facts = patient_facts(record, screen, as_of)
    who = ", ".join(x for x in (facts.sex or "sex not recorded",
                                f"age {facts.age}" if facts.age else "age unknown") if x)
    verdict = {"eligible": "is eligible for", "possible": "is a possible candidate for",
               "ineligible": "is not eligible for"}[screen.status]
    lines = wrap(f"{screen.ref} ({who}) {verdict} {trial.id} as of {as_of.isoformat()}.", width)
    for note in screen.notes:
        lines += wrap(f"Note: {note}.", width)
    counts = (f"Of the {len(screen.results)} criteria, {screen.count(Outcome.PASS)} pass, "
              f"{screen.count(Outcome.FAIL)} fail, {screen.count(Outcome.UNKNOWN)} are unknown and "
              f"{screen.count(Outcome.MANUAL)} are to be checked by hand; score {screen.score:.2f} "
              "(the share of the computable criteria that pass).")
    lines += wrap(counts, width)
    failed = [cid for cid, r in screen.results.items() if r.outcome is Outcome.FAIL]
    unknown = [cid for cid, r in screen.results.items() if r.outcome is Outcome.UNKNOWN]
    if failed:
        lines += wrap(f"Excluded by {', '.join(failed)}.", width)
    if unknown:
        lines += wrap(f"To settle: {', '.join(unknown)} (the next steps are below).", width)
    return lines


def washout_lines(details: Mapping[str, Any], width: int) -> list[str]:
    """When each washout ends, so a coordinator can plan Day 0.

    Evaluators report the date that decides as ``washout_ends`` and, when several agents are involved,
    one entry per agent under ``washouts`` (``{"what", "outcome", "washout_ends"}``).
    """
    facts = plain(details)
    lines = []
    if facts.get("washout_ends"):
        lines += wrap(f"The washout ends {facts['washout_ends']}.", width, INDENT)
    agents = [w for w in facts.get("washouts") or () if isinstance(w, dict)]
    if len(agents) > 1:  # with one agent the reason already says it
        for w in agents:
            ends = w.get("washout_ends") or "end unknown"
            lines += wrap(f"{ends}: {w.get('what', '')}".rstrip(": "), width, INDENT + "  ",
                          first=INDENT + "- ")
    return lines


def evidence_lines(found: CriterionResult, record: PatientRecord, as_of: date, width: int) -> list[str]:
    lines = [f"{INDENT}Based on:"]
    for reference in found.evidence:
        resource = find_resource(record, reference)
        described = describe_resource(resource, record, as_of) if resource is not None else reference
        # A resource reference is never broken; one longer than the line overflows it rather than
        # being cut where a copy would miss part of it.
        lines += wrap(described, width, INDENT + "  ", first=INDENT + "- ")
    return lines


def criterion_block(criterion: Criterion, found: CriterionResult, record: PatientRecord, as_of: date,
                    width: int) -> str:
    d = criterion.definition
    lines = wrap(f"{d.id} {d.title} ({d.type}): {OUTCOME_WORDS[found.outcome]}", width)
    lines += wrap(found.reason, width, INDENT)
    if found.next_step and found.outcome is not Outcome.PASS:
        lines += wrap(f"Next step: {found.next_step}", width, INDENT)
    lines += washout_lines(found.details, width)
    if found.evidence:
        lines += evidence_lines(found, record, as_of, width)
    return "\n".join(lines) + "\n"


def render_explanation(screen: PatientScreen, record: PatientRecord, trial: Trial, as_of: date,
                       width: int | None = None) -> str:
    """The header, then each criterion in protocol order. Resource ids, age and sex only: no names,
    birth dates or identifiers."""
    columns = terminal_width(width)
    blocks = ["\n".join(header(screen, record, trial, as_of, columns)) + "\n"]
    for criterion in trial.criteria:
        found = screen.results.get(criterion.id)
        if found is not None:
            blocks.append(criterion_block(criterion, found, record, as_of, columns))
    return "\n".join(blocks)


def explanation_json(screen: PatientScreen, record: PatientRecord, trial: Trial, as_of: date) -> str:
    """candidates.json's entry for the patient (with the evaluators' details), plus trial and date."""
    entry = patient_entry(screen, patient_facts(record, screen, as_of))
    return dump_json({"trial": trial.id, "as_of": as_of.isoformat(), "in_initial_population": True, **entry})


def not_in_population(record: PatientRecord, trial: Trial, as_of: date, fmt: str,
                      width: int | None = None) -> str:
    """A patient in the data without a diagnosis of the trial's population value set: said plainly."""
    conditions = len(record.of_type("Condition"))
    population = trial.definition.trial.population.description
    text = (f"{record.ref} has no SLE diagnosis on record, so is not in the initial population of "
            f"{trial.id} ({population}); no criterion was evaluated. "
            f"{_plural(conditions, 'Condition')} on record, none in the population value set.")
    if fmt == "json":
        return dump_json({"trial": trial.id, "as_of": as_of.isoformat(), "patient": record.ref,
                          "in_initial_population": False, "reason": text})
    return "\n".join(wrap(text, terminal_width(width))) + "\n"
