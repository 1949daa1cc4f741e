"""Deterministic ids and the code system for the FHIR resources fhirscreen writes."""

from __future__ import annotations

import re

from fhirscreen.screening import ScreeningRun

# Codes for screening statuses that have no counterpart in the measure-population code system.
STATUS_SYSTEM = "https://github.com/fhirscreen/fhirscreen/CodeSystem/screening-status"
STATUS_EXTENSION = "https://github.com/fhirscreen/fhirscreen/StructureDefinition/screening-status"


def run_id(run: ScreeningRun, suffix: str = "") -> str:
    """``nct06737380-2026-06-01`` (+ suffix): the same run gives the same id, so a re-post replaces it."""
    base = re.sub(r"[^A-Za-z0-9.-]", "-", f"{run.trial.id}-{run.as_of.isoformat()}").lower()
    return (f"{base}-{suffix}" if suffix else base)[:64]  # FHIR ids are at most 64 characters


def measure_url(run: ScreeningRun) -> str:
    info = run.trial.definition.trial
    return info.measure_url or f"urn:fhirscreen:Measure:{info.id}"
