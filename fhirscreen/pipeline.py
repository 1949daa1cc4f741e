"""Wire a source to the screening core: read, group by patient, screen. No formatting here."""

from __future__ import annotations

import logging
import time
from datetime import date

from fhirscreen.quality import DataQuality
from fhirscreen.record import Population, PopulationBuilder
from fhirscreen.screening import ScreeningRun, screen_population
from fhirscreen.sources.base import QueryPlan, Source
from fhirscreen.trial.loader import Trial

log = logging.getLogger("fhirscreen")


def load_population(source: Source, trial: Trial, patient_ids: tuple[str, ...] | None = None) -> Population:
    """Read every resource the plan asks for and group it by patient."""
    plan = QueryPlan.for_trial(trial, patient_ids)
    quality = DataQuality()
    builder = PopulationBuilder(quality)
    started = time.monotonic()
    count = 0
    last_report = started
    for resource, origin in source.read(plan, quality):
        builder.add(resource, origin)
        count += 1
        now = time.monotonic()
        if now - last_report > 10:
            log.info("read %d resources so far (%.0f s)", count, now - started)
            last_report = now
    population = builder.build()
    if patient_ids is not None:
        population.records = {pid: r for pid, r in population.records.items() if pid in patient_ids}
    log.info(
        "read %d resources for %d patients from %s in %.1f s",
        count,
        len(population.records),
        source.describe(),
        time.monotonic() - started,
    )
    return population


def run_screening(source: Source, trial: Trial, as_of: date) -> ScreeningRun:
    population = load_population(source, trial)
    started = time.monotonic()
    run = screen_population(population, trial, as_of, source.describe())
    log.info(
        "screened %d patients of the initial population in %.2f s",
        len(run.patients),
        time.monotonic() - started,
    )
    return run
