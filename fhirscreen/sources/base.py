"""The one small interface between the screening core and the outside world."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from fhirscreen.fhir.codes import LOINC, Code, ValueSet
from fhirscreen.fhir.resources import Resource
from fhirscreen.quality import DataQuality
from fhirscreen.record import SCREENED_TYPES, Dropped
from fhirscreen.sources.code_lists import searchable, union_searchable

if TYPE_CHECKING:  # at run time the trial is only read: opening a source must not wait for the criteria
    from fhirscreen.trial.loader import Trial, TrialTerms


class SourceError(Exception):
    """The data source cannot be read at all (missing path, unreachable server, refused credentials).

    ``transient``: the failure was one that retries were meant for (a connection error, a timeout, a
    5xx or 429) and they ran out; a caller that may swallow an error (an optional probe) must not
    swallow these, or the same dead server would be tried again and again. ``status``: the HTTP status
    of the answer that failed, when there was one.
    """

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


class ConfigurationError(SourceError):
    """The options cannot work (an unset token variable, an unreadable key, a bad URL): exit code 2."""


class NothingUsableError(SourceError):
    """The source was read but held nothing usable (no FHIR resource in any file): exit code 4."""


@dataclass(frozen=True)
class QueryPlan:
    """What a source needs to fetch for a trial; file sources read everything and ignore most of it."""

    population_codes: tuple[Code, ...]
    observation_codes: tuple[Code, ...]
    resource_types: tuple[str, ...] = field(default=SCREENED_TYPES)
    # Restrict to these patients (``explain``); None means the whole initial population.
    patient_ids: tuple[str, ...] | None = None
    # Prefilter hints, for sources whose ``prefilters`` attribute is True (files); others ignore them.
    # keep_patients: only these patients' resources are kept by the record builder, so the source may
    # leave the others' resources unparsed or unrewritten. None: every patient. With ``population``
    # the set is the source's to grow: it adds each patient with a usable Condition in that value set
    # before passing on any resource of that patient (the initial population, found while reading).
    keep_patients: Collection[str] | None = field(default=None, compare=False)
    population: ValueSet | None = field(default=None, compare=False)
    # With ``keep_patients``: where a source that drops other patients' resources itself (rather than
    # handing them on for the record builder to check) counts them; the builder shares the counts.
    dropped: Dropped | None = field(default=None, compare=False)
    # What a search cannot reach: prefixes without a shipped code list, text patterns (sentences).
    search_gaps: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def for_trial(cls, trial: Trial | TrialTerms, patient_ids: tuple[str, ...] | None = None) -> QueryPlan:
        """Population and Observation codes as exact codes: ICD-10 prefixes expanded (code_lists).

        The Observation codes are every code of the value sets that hold a LOINC code (the ones the
        evaluators read from Observations), so a local or SNOMED code listed beside the LOINC codes
        is searched too.
        """
        population = searchable(trial.population)
        observation_sets = {
            name: vs
            for name, vs in trial.value_sets.items()
            if any(c.system == LOINC for c in vs.codes.values())
        }
        observations = union_searchable(observation_sets.values())
        gaps = population.gaps(trial.definition.trial.population.value_set)
        gaps += [
            gap
            for name, vs in sorted(observation_sets.items())
            for gap in searchable(vs).gaps(name)
            if "text patterns" not in gap  # SLEDAI text has its own searches (code:text, survey)
        ]
        return cls(
            population_codes=population.codes,
            observation_codes=observations.codes,
            patient_ids=patient_ids,
            search_gaps=tuple(dict.fromkeys(gaps)),
        )


class Source(Protocol):
    def describe(self) -> str:
        """A short description for reports (a path or a base URL, never a token)."""
        ...

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        """Yield (resource, origin) with references as ``Type/id``; report bad input to ``quality``.

        Raises SourceError when nothing can be read at all.
        """
        ...
