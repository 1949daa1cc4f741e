"""Wire a source to the screening core: read, group by patient, screen. No formatting here.

Memory design (issue 4: peak memory must not grow with patients outside the initial population).
Only patients with an SLE diagnosis are screened, but which patients those are is known for sure only
once every Condition has been read. Three designs were measured with bench/file_bench.py:

- keep everything, drop the others at the end (before): the peak holds the whole input, ~6 MB of
  Python objects per Synthea patient;
- two passes, a census of Conditions first: NDJSON lines of other types are skipped by their first
  bytes, so the census costs little for Bulk NDJSON, but Bundles must be parsed whole twice (on the
  60-patient Synthea set: 2.65 s instead of 1.3 s CPU to read the bundles);
- one pass that grows the kept set as it goes (chosen): the file source looks at each file's
  Conditions before passing on any of its other resources and adds SLE patients to the kept set; the
  builder keeps resources of patients in the set and only checks the others'. A patient whose
  diagnosis turns up in a later file than some of their resources is caught up at the end: the source
  reads those files again for them alone. With one bundle per patient nothing is read twice; with
  Bulk NDJSON only the small Condition file (a patient's other Conditions listed before the SLE one)
  and Medication file (Medications come before the resources that refer to them) are.

The peak is then the population's resources (held compactly: ``fhirscreen.fhir.compact``; and the
Medications they refer to; other Medications are not kept) plus, per other patient, a Patient stub,
a counter (for missing-Patient warnings) and the indices of the files that held their resources; and
the largest single file while it is parsed (NDJSON is read line by line).
Duplicates are detected among kept resources only. Sources without ``prefilters`` (the server source
already fetches only the population) are read as before. ``explain`` keeps just the patient asked for.

The cyclic garbage collector is paused while reading and evaluating: the resources are acyclic JSON, and
the collector's repeated walks over a growing heap of dicts cost as much as parsing them did.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date

from fhirscreen.parallel import screen_all, shares
from fhirscreen.quality import EMPTY_POPULATION, NO_CONDITIONS, DataQuality
from fhirscreen.record import Dropped, PatientRecord, Population, PopulationBuilder
from fhirscreen.report.facts import PatientFacts, patient_facts
from fhirscreen.screening import (
    PatientScreen,
    ScreeningRun,
    ScreenOne,
    population_evidence,
    screen_population,
)
from fhirscreen.sources.base import QueryPlan, Source
from fhirscreen.trial.loader import Trial

log = logging.getLogger("fhirscreen")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees memory as usual)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_population(source: Source, trial: Trial, patient_ids: tuple[str, ...] | None = None) -> Population:
    """Read every resource the plan asks for and group it by patient."""
    plan = QueryPlan.for_trial(trial, patient_ids)
    quality = DataQuality()
    started = time.monotonic()
    keep: set[str] | frozenset[str] | None = None
    dropped = Dropped()
    if getattr(source, "prefilters", False):
        if patient_ids is not None:
            keep = frozenset(patient_ids)
            plan = dataclasses.replace(plan, keep_patients=keep, dropped=dropped)
        else:
            keep = set()  # grown by the source as it finds the initial population
            plan = dataclasses.replace(
                plan, keep_patients=keep, population=trial.population, dropped=dropped
            )
    with gc_paused():
        builder = PopulationBuilder(quality, keep, dropped, trial.population)
        count = 0
        last_report = started
        conditions = False  # a Condition was read (looked for only until the first one)
        for resource, origin in source.read(plan, quality):
            builder.add(resource, origin)
            count += 1
            if not conditions and resource.get("resourceType") == "Condition":
                conditions = True
            if count % 4096 == 0:
                now = time.monotonic()
                if now - last_report > 10:
                    log.info("read %d resources so far (%.0f s)", count, now - started)
                    last_report = now
        population = builder.build()
    if getattr(source, "reads_everything", False):
        conditions = conditions or dropped.by_type.get("Condition", 0) > 0
        # Patients read, where the population was looked for (not ``explain``'s one patient).
        patients = len(population.records) - population.without_patient if patient_ids is None else 0
        screened = bool(conditions and patients) and any(
            r.resources and population_evidence(r, trial) for r in population.records.values()
        )
        say_what_the_population_rests_on(
            quality,
            source.describe(),
            read=count + dropped.resources > 0,
            conditions=conditions,
            patients=patients,
            screened=screened,
        )
    if patient_ids is not None:
        population.records = {pid: r for pid, r in population.records.items() if pid in patient_ids}
    log.debug(  # the run summary says it for everyday runs; -v adds the timing
        "read %d resources for %d patients from %s in %.1f s",
        count + dropped.resources,
        len(population.records),
        source.describe(),
        time.monotonic() - started,
    )
    return population


def load_patient(source: Source, trial: Trial, patient_id: str) -> tuple[Population, str]:
    """``load_population`` for one patient (``explain``), with the Patients linked to them as one person
    (``Patient.link`` replaced-by / replaces, transitively) read too, so their records merge as they do
    in a screening; and the id the record is under (the surviving id of a merged person)."""
    wanted = {patient_id}
    population = load_population(source, trial, (patient_id,))
    for _ in range(_MAX_LINK_ROUNDS):  # each round reads the ids the last one found linked
        linked = {other for pid in wanted for other in population.unmerged.get(pid, ())} - wanted
        if not linked:
            break
        wanted |= linked
        population = load_population(source, trial, tuple(sorted(wanted)))
    if patient_id in population.records:
        return population, patient_id
    merged = sorted(pid for pid in wanted if pid in population.records)
    return population, merged[0] if merged else patient_id


# Rounds of reading again for linked Patients: a chain of merges longer than this is read as far as this.
_MAX_LINK_ROUNDS = 4


def say_what_the_population_rests_on(
    quality: DataQuality, where: str, *, read: bool, conditions: bool, patients: int, screened: bool
) -> None:
    """For a source that hands on every resource of its input (files, and the Spark engine's NDJSON):
    no Condition at all among what was ``read`` is a finding that makes the run "nothing usable" (exit 4:
    a missing Condition export must not look like a quiet night); Conditions and ``patients`` but nobody
    ``screened`` (in the initial population) is the info that it is a quiet night, said as a server
    run says it (``quality.EMPTY_POPULATION``). ``patients`` is 0 where no population was looked for
    (``explain`` reads for one patient)."""
    if read and not conditions:
        quality.add(
            "error",
            where,
            NO_CONDITIONS,
            "no Condition resource among the resources read: the initial population (SLE diagnoses) "
            "cannot be found; is the Condition export missing?",
        )
    elif conditions and patients and not screened:
        quality.add(
            "info",
            where,
            EMPTY_POPULATION,
            f"none of the {patients} patient(s) read has an SLE diagnosis (a Condition coded in the "
            "population value set), though Conditions were read: nobody to screen, a quiet night",
        )


def evaluate_population(
    population: Population,
    trial: Trial,
    as_of: date,
    source: str,
    workers: int = 1,
    facts: dict[str, PatientFacts] | None = None,
) -> ScreeningRun:
    """Every criterion for every patient of the initial population (see ``screen_population``), on up
    to ``workers`` processes (``fhirscreen.parallel``; the same outcome as one). With ``facts``, each
    screened patient's report facts are put there too, computed in the process that screened them
    (where the record's derived views are already made)."""

    def spread(
        records: Sequence[PatientRecord], screen: ScreenOne, quality: DataQuality
    ) -> list[PatientScreen]:
        if facts is None:
            return screen_all(records, screen, quality, workers)

        def screen_and_describe(
            record: PatientRecord, found: DataQuality
        ) -> tuple[PatientScreen, PatientFacts]:
            screened = screen(record, found)
            return screened, patient_facts(record, screened, as_of)

        pairs = screen_all(records, screen_and_describe, quality, workers)
        facts.update((screened.patient_id, described) for screened, described in pairs)
        return [screened for screened, _described in pairs]

    with gc_paused():
        return screen_population(population, trial, as_of, source, spread)


def run_screening(source: Source, trial: Trial, as_of: date, workers: int = 1) -> ScreeningRun:
    population = load_population(source, trial)
    started = time.monotonic()
    facts: dict[str, PatientFacts] = {}
    run = evaluate_population(population, trial, as_of, source.describe(), workers, facts)
    run.facts = {s.patient_id: facts[s.patient_id] for s in run.patients}  # in rank order, as reports read
    processes = len(shares(len(run.patients), workers))
    log.debug(
        "screened %d patients of the initial population in %.2f s (%d process%s)",
        len(run.patients),
        time.monotonic() - started,
        processes,
        "" if processes == 1 else "es",
    )
    return run
