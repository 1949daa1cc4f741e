"""Screen a live FHIR R4 server: a query plan that scales with the number of candidates.

The plan (every search sends ``_count`` and ``Cache-Control: no-cache`` and follows ``next`` links):

1. ``GET /metadata``: which types and search parameters the server has; the plan falls back where it
   can (``subject=Patient/x`` for ``patient=x``, no ``_include`` → Medications fetched by ``_id``).
2. Initial population: ``Condition?code=c1,c2,...`` over the population value set's exact codes, in
   chunks that keep each URL short. Codes are sent without their system so that a server storing a
   system under an alias (an OID) still matches; the screening core re-checks the system, and ICD-10
   codes are sent with and without the dot.
3. For each batch of candidate ids (``patient=id1,id2,...``): Patient (by ``_id``), Condition,
   Observation (by the trial's LOINC codes, chunked; ``combo-code`` where the server lists it, so that a
   lab held only in ``Observation.component`` is found too, see ``component_param``), SLEDAI scores
   (``code:text=sledai`` when the server supports the modifier, ``combo-code:text`` where it can, and
   ``category=survey``), MedicationStatement / MedicationRequest /
   MedicationAdministration / MedicationDispense (with ``_include`` of their Medication), Procedure,
   ServiceRequest, CarePlan, Appointment (``patient``, else ``actor=Patient/x``) and ResearchSubject.
   Population and Observation codes are exact codes; ICD-10 prefixes are expanded (code_lists.py).
4. Medications referenced but not included: ``Medication?_id=...`` in batches; the ResearchStudies that
   ResearchSubjects and medication records (workflow-researchStudy extension) refer to
   (``referenced_study_ids``; outside the Patient compartment too): ``ResearchStudy?_id=...`` in batches.
   A server that does not offer ResearchStudy, or refuses that search, costs only the studies (a
   warning): a study that cannot be read is an unknown study to the criteria, as before they were read.

Requests = searches x pages, never one request per patient. ``explain`` (plan.patient_ids) skips step 2.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Generic, NoReturn, TypeVar
from urllib.parse import quote, urlencode

import orjson

from fhirscreen.fhir.codes import ICD10, ICD10CM, Code
from fhirscreen.fhir.resources import Resource, entry_problem, items
from fhirscreen.quality import EMPTY_POPULATION, NO_CONDITIONS, DataQuality
from fhirscreen.record import (
    SCREENED_TYPES,
    SHARED_TYPES,
    is_later_version,
    merge_links,
    referenced_medication_id,
    referenced_study_ids,
)
from fhirscreen.sources import observation_plan
from fhirscreen.sources.base import ConfigurationError, QueryPlan, Source, SourceError
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.http import Auth, FhirClient
from fhirscreen.sources.server_text import failing_issues, outcome_text

T = TypeVar("T")

log = logging.getLogger("fhirscreen.server")

# Budgets for one search URL: encoded characters of the id list and of the code list. Together with
# the path and the other parameters a URL stays under ~2,200 characters, below the 4-8 kB that
# proxies and servlet containers commonly allow.
MAX_IDS_CHARS = 1000
MAX_IDS_PER_BATCH = 100
MAX_CODES_CHARS = 1000
# The --observations auto race runs its two plans side by side: two requests in flight.
RACE_CONNECTIONS = 2
MAX_PAGES_PER_SEARCH = 10_000  # a loop guard: a server re-serving next links forever is stopped
# Loop guards for next links that change at every page (a nonce, a cursor): a search followed beyond
# twice the pages its Bundle.total needs at the page size the server serves, plus this many, or through
# this many empty pages in a row that still link a next one, is stopped (see ``page_limit``).
EXTRA_PAGES = 5
EMPTY_PAGES_IN_A_ROW = 3
SEARCH_HEADERS = {"Cache-Control": "no-cache"}  # HAPI reuses cached search results for 60 s otherwise
MEDICATION_HOLDERS = (
    "MedicationStatement",
    "MedicationRequest",
    "MedicationAdministration",
    "MedicationDispense",
)
# How each type links to its patient, best first (R4 search parameter names). An Appointment names
# its patient among the participants: ``patient``, else ``actor=Patient/x`` (it has no ``subject``).
PATIENT_PARAMS: dict[str, tuple[str, ...]] = {
    "ResearchSubject": ("patient", "individual"),
    "Appointment": ("patient", "actor"),
}
# Parameters whose values must carry the type (they accept references to several types).
TYPED_REFERENCE_PARAMS = frozenset({"actor", "subject"})
# Without these the population cannot be screened at all; another type that cannot be searched by
# patient is skipped with a warning (its criteria read what the other types show).
REQUIRED_TYPES = frozenset({"Patient", "Condition"})
# How many links away from a candidate merged records (Patient.link replaced-by / replaces) are read.
LINK_ROUNDS = 5
SLEDAI_TEXT = "sledai"
# Observation search parameters that also match ``Observation.component.code`` (FHIR R4), best first.
# ``code`` matches only ``Observation.code``, so an eGFR, an hCG or a SLEDAI total recorded as a
# component of a panel whose own code is the panel's is not found by ``code=``: file and Bulk reads see
# it, search would miss it silently. ``combo-code`` (code OR component code) replaces ``code`` in one
# search; ``component-code`` needs a second search beside it. Both are used only when the
# CapabilityStatement names them: an unknown parameter makes a strict server refuse the search (a run
# that fails) and a lenient one ignore it (a search that is no longer filtered at all).
COMBO_CODE = "combo-code"
COMPONENT_CODE = "component-code"
COMPONENT_GAP = (
    "the server cannot search Observation component codes (its CapabilityStatement lists neither "
    "combo-code nor component-code): a lab held only as a component of a panel Observation (an eGFR, an "
    "hCG, a SLEDAI-2K total) is not found by the code-filtered Observation search; --observations all or "
    "--bulk reads it"
)


# -- small pure helpers (unit-tested) -----------------------------------------------------------------


def encoded_len(value: str) -> int:
    return len(quote(value, safe=",:/"))


def chunk_values(values: Sequence[str], max_chars: int, max_items: int | None = None) -> list[list[str]]:
    """Split values into comma lists whose encoded length stays within max_chars (each at least 1 value)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for value in values:
        extra = encoded_len(value) + (1 if current else 0)
        if current and (size + extra > max_chars or (max_items is not None and len(current) >= max_items)):
            chunks.append(current)
            current, size = [], 0
            extra = encoded_len(value)
        current.append(value)
        size += extra
    if current:
        chunks.append(current)
    return chunks


def search_codes(codes: Iterable[Code]) -> list[str]:
    """Code values to search for, without systems; ICD-10 both dotted and undotted; sorted, unique."""
    out: set[str] = set()
    for c in codes:
        out.add(c.code)
        if c.system in (ICD10CM, ICD10) and "." in c.code:
            out.add(c.code.replace(".", ""))
    return sorted(out)


def query_string(params: Sequence[tuple[str, str]]) -> str:
    # Commas, colons and slashes stay readable (they are legal in a query); '|' is never sent.
    return urlencode(params, safe=",:/", quote_via=quote)


def normalise_references(node: Any, base_url: str) -> None:
    """Rewrite absolute references to this server (``{base}/Type/id``) as ``Type/id``, in place."""
    prefix = base_url.rstrip("/") + "/"
    cut = len(prefix)
    # A loop, not recursion: a server's resource nested thousands of levels deep must not end the run.
    # It visits every element of every resource read, so it is kept lean (no generator per node).
    todo = [node]
    push = todo.append
    while todo:
        current = todo.pop()
        if isinstance(current, dict):
            value = current.get("reference")
            if isinstance(value, str) and value.startswith(prefix):
                current["reference"] = value[cut:]
            current = current.values()
        elif not isinstance(current, list):
            continue
        for child in current:
            if isinstance(child, (dict, list)):
                push(child)


def _entries_on(page: Mapping[str, Any]) -> int:
    """The resources a search page holds, OperationOutcomes aside. ``_include``d ones count too: the
    check against ``Bundle.total`` (matches only) must not cry wolf where a server counts them in."""
    count = 0
    for entry in items(page.get("entry")):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(resource, Mapping) and resource.get("resourceType") != "OperationOutcome":
            count += 1
    return count


def _matches_on(page: Mapping[str, Any]) -> int:
    """The entries of a page that ``Bundle.total`` counts: neither OperationOutcomes nor ``_include``d
    resources (``search.mode=include``): the page size the server serves."""
    count = 0
    for entry in items(page.get("entry")):
        if not isinstance(entry, Mapping):
            continue
        resource, search = entry.get("resource"), entry.get("search")
        if not isinstance(resource, Mapping) or resource.get("resourceType") == "OperationOutcome":
            continue
        if isinstance(search, Mapping) and search.get("mode") == "include":
            continue
        count += 1
    return count


def page_limit(total: int | None, page_size: int, matched: int = 0) -> int | None:
    """How many pages a search may take, given its ``Bundle.total``, the most matches one of its pages
    held (the server's page size, which may be below the ``_count`` asked for) and the matches so far;
    None: no limit but ``MAX_PAGES_PER_SEARCH`` (no total, a total of 0 that the pages contradict, or
    no match seen yet). Twice the pages the total needs, plus ``EXTRA_PAGES``: short pages (resources
    deleted while the run pages) and a total that is an estimate must not stop a search that ends; a
    next link that changes forever is stopped soon."""
    if total is None or (total == 0 and matched > 0):
        return None
    if total == 0:
        return EXTRA_PAGES
    if page_size <= 0:
        return None
    return 2 * -(-total // page_size) + EXTRA_PAGES


def holds_absolute_references(node: Any, base_url: str) -> bool:
    """Whether ``normalise_references`` would change anything in ``node``: a ``reference`` that starts
    with ``{base}/``. Read from orjson's text of the node (compact, ``/`` unescaped, keys as they are),
    one C call per page instead of a Python walk of every element of every resource: most servers (HAPI
    among them) write relative references, and the walk was a tenth of a server read's CPU."""
    prefix = base_url.rstrip("/") + "/"
    try:
        text = orjson.dumps(node)
    except TypeError:  # what parsed JSON never holds (keys that are not text...): walk to be sure
        return True
    return b'"reference":"' + prefix.encode("utf-8") in text


def patient_ids_in(conditions: Iterable[Resource]) -> list[str]:
    ids: set[str] = set()
    for c in conditions:
        subject = c.get("subject")
        value = subject.get("reference") if isinstance(subject, Mapping) else None
        if isinstance(value, str):
            parts = value.split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            if len(parts) >= 2 and parts[-2] == "Patient":
                ids.add(parts[-1])
    return sorted(ids)


def medication_ids(resources: Iterable[Resource]) -> set[str]:
    """Ids of separate Medication resources that MedicationX resources point at (not contained ones:
    ``referenced_medication_id``)."""
    return {mid for r in resources if (mid := referenced_medication_id(r)) is not None}


def note_shared(resource: Resource, rtype: str, medication_refs: set[str], study_refs: set[str]) -> None:
    """Add the Medications and ResearchStudies ``resource`` refers to (outside the Patient compartment:
    fetched by id once the patients' records are read) to the sets given."""
    if rtype in MEDICATION_HOLDERS:
        medication_refs.update(medication_ids([resource]))
    study_refs.update(referenced_study_ids(resource))


def study_ids(resources: Iterable[Resource]) -> set[str]:
    """Ids of the ResearchStudies that resources refer to (``referenced_study_ids``: a ResearchSubject's
    ``study``, a medication record's workflow-researchStudy extension; not contained ones)."""
    ids: set[str] = set()
    for r in resources:
        ids |= referenced_study_ids(r)
    return ids


# -- capabilities ------------------------------------------------------------------------------------


@dataclass
class Capabilities:
    """What the CapabilityStatement says; an empty statement means 'assume the standard'."""

    fhir_version: str = ""
    types: dict[str, set[str]] = field(default_factory=dict)  # type -> search parameter names
    includes: dict[str, set[str]] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)
    listed: bool = False  # False when the statement lists no resources at all

    @classmethod
    def parse(cls, statement: Mapping[str, Any]) -> Capabilities:
        caps = cls(fhir_version=str(statement.get("fhirVersion") or ""))
        for rest in items(statement.get("rest")):
            if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
                continue
            for op in items(rest.get("operation")):
                if isinstance(op, Mapping) and op.get("name"):
                    caps.operations.add(str(op["name"]).lstrip("$"))
            for res in items(rest.get("resource")):
                if not isinstance(res, Mapping) or not res.get("type"):
                    continue
                caps.listed = True
                rtype = str(res["type"])
                params = {str(p.get("name")) for p in items(res.get("searchParam")) if isinstance(p, Mapping)}
                caps.types.setdefault(rtype, set()).update(params)
                caps.includes.setdefault(rtype, set()).update(str(i) for i in items(res.get("searchInclude")))
                for op in items(res.get("operation")):
                    if isinstance(op, Mapping) and op.get("name"):
                        caps.operations.add(str(op["name"]).lstrip("$"))
        return caps

    def has_type(self, rtype: str) -> bool:
        return not self.listed or rtype in self.types

    def has_param(self, rtype: str, name: str) -> bool:
        params = self.types.get(rtype)
        # A type listed without any searchParam says nothing: assume the standard parameters.
        return not self.listed or not params or name in params

    def lists_param(self, rtype: str, name: str) -> bool:
        """True only when the statement names the parameter: for optional parameters that many servers
        lack, where 'assume the standard' could get a search refused or silently unfiltered."""
        return name in self.types.get(rtype, set())

    def has_include(self, rtype: str, include: str) -> bool:
        if not self.listed:
            return True
        listed = self.includes.get(rtype, set())
        return include in listed or "*" in listed


def component_param(caps: Capabilities) -> str | None:
    """The Observation parameter that also matches component codes: ``combo-code``, else
    ``component-code`` (a second search beside ``code``), else None (components cannot be searched)."""
    for name in (COMBO_CODE, COMPONENT_CODE):
        if caps.lists_param("Observation", name):
            return name
    return None


def misses_components(plan: QueryPlan, caps: Capabilities) -> bool:
    """The plan filters Observations by code on a server that cannot search component codes."""
    return (
        bool(plan.observation_codes)
        and "Observation" in plan.resource_types
        and caps.has_type("Observation")
        and caps.has_param("Observation", "code")
        and component_param(caps) is None
    )


# -- the searches ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    """One search: a resource type and its parameters; ``_count`` is added when it is run."""

    resource_type: str
    params: tuple[tuple[str, str], ...]
    purpose: str
    # The patients a patient-batch search reads for: if it is lost after retries, their records may be
    # incomplete (the run goes on, partial); empty for the population and Medication searches.
    patients: tuple[str, ...] = field(default=(), compare=False)

    def path(self, page_size: int) -> str:
        return f"{self.resource_type}?{query_string((*self.params, ('_count', str(page_size))))}"


@dataclass
class PlanNotes:
    """How the plan adapted to the server, for the log and the data-quality section."""

    fallbacks: list[str] = field(default_factory=list)
    skipped_types: list[str] = field(default_factory=list)
    unlinked_types: list[str] = field(default_factory=list)  # offered, but not searchable by patient


def patient_searches(
    ids: Sequence[str],
    plan: QueryPlan,
    caps: Capabilities,
    notes: PlanNotes | None = None,
    sledai_text: str | None = "code:text",
) -> list[Search]:
    """The searches for one batch of patient ids: one per type (Observation: one per code chunk, two
    with ``component-code``, + SLEDAI). ``sledai_text``: the text search parameter the server answers
    (``code:text``, ``combo-code:text``), None when it has none."""
    notes = notes if notes is not None else PlanNotes()
    searches = _patient_searches(ids, plan, caps, notes, sledai_text)
    return [replace(s, patients=tuple(ids)) for s in searches]


def _patient_searches(
    ids: Sequence[str], plan: QueryPlan, caps: Capabilities, notes: PlanNotes, sledai_text: str | None
) -> list[Search]:
    joined = ",".join(ids)
    searches: list[Search] = []
    for rtype in plan.resource_types:
        if not caps.has_type(rtype):
            if rtype not in notes.skipped_types:
                notes.skipped_types.append(rtype)
            continue
        if rtype == "Patient":
            searches.append(Search("Patient", (("_id", joined),), "patients"))
            continue
        try:
            link = _patient_link(rtype, ids, caps, notes)
        except SourceError:
            if rtype in REQUIRED_TYPES:
                raise
            if rtype not in notes.unlinked_types:
                notes.unlinked_types.append(rtype)
            continue
        if rtype == "Observation":
            codes = search_codes(plan.observation_codes)
            if codes and caps.has_param("Observation", "code"):
                component = component_param(caps)
                by = COMBO_CODE if component == COMBO_CODE else "code"
                # "combo-code" is 6 characters longer than "code": within the URL budget's margin.
                for chunk in chunk_values(codes, MAX_CODES_CHARS):
                    joined_codes = ",".join(chunk)
                    searches.append(Search(rtype, (link, (by, joined_codes)), "trial LOINC codes"))
                    if component == COMPONENT_CODE:
                        searches.append(
                            Search(
                                rtype,
                                (link, (COMPONENT_CODE, joined_codes)),
                                "trial LOINC codes in components",
                            )
                        )
                if sledai_text:
                    searches.append(
                        Search(rtype, (link, (sledai_text, SLEDAI_TEXT)), "SLEDAI scores by text")
                    )
                if caps.has_param("Observation", "category"):
                    searches.append(Search(rtype, (link, ("category", "survey")), "scores (survey category)"))
            else:
                if codes:
                    _note(
                        notes,
                        "Observation has no code search parameter: all Observations of candidates are read",
                    )
                searches.append(Search(rtype, (link,), "all observations"))
            continue
        params: tuple[tuple[str, str], ...] = (link,)
        if rtype in MEDICATION_HOLDERS:
            include = f"{rtype}:medication"
            if caps.has_include(rtype, include):
                params = (*params, ("_include", include))
        searches.append(Search(rtype, params, rtype))
    return searches


def _patient_link(rtype: str, ids: Sequence[str], caps: Capabilities, notes: PlanNotes) -> tuple[str, str]:
    for name in PATIENT_PARAMS.get(rtype, ("patient",)):
        if caps.has_param(rtype, name):
            if name in TYPED_REFERENCE_PARAMS:
                _note(notes, f"{rtype} has no patient search parameter: searching {name}=Patient/id instead")
                return name, ",".join(f"Patient/{i}" for i in ids)
            return name, ",".join(ids)
    if caps.has_param(rtype, "subject"):
        _note(notes, f"{rtype} has no patient search parameter: searching subject=Patient/id instead")
        return "subject", ",".join(f"Patient/{i}" for i in ids)
    raise SourceError(
        f"the server cannot search {rtype} by patient (no patient or subject search parameter); "
        "try --bulk if it supports Bulk Data export"
    )


def _note(notes: PlanNotes, text: str) -> None:
    if text not in notes.fallbacks:
        notes.fallbacks.append(text)


def population_searches(plan: QueryPlan, caps: Capabilities) -> list[Search]:
    if not caps.has_param("Condition", "code"):
        raise SourceError(
            "the server cannot search Condition by code, so the SLE population cannot be found by search; "
            "try --bulk if it supports Bulk Data export"
        )
    codes = search_codes(plan.population_codes)
    if not codes:
        raise SourceError("the trial's population value set has no exact codes to search for")
    return [
        Search("Condition", (("code", ",".join(chunk)),), "initial population")
        for chunk in chunk_values(codes, MAX_CODES_CHARS)
    ]


def id_batches(ids: Sequence[str]) -> list[list[str]]:
    return chunk_values(ids, MAX_IDS_CHARS, MAX_IDS_PER_BATCH)


def request_bound(candidates: int | Sequence[str], plan: QueryPlan) -> int:
    """Upper bound on requests for a run, counting one page per search (add extra pages on top).

    metadata + the code:text probes (two where ``combo-code:text`` is tried first) + population code
    chunks (and, when they find nobody, the search for any Condition: no batch runs then) + per id
    batch: the searches of
    ``patient_searches`` and at most one Medication and one ResearchStudy ``_id`` batch. Given a count,
    batches assume the longest ids (64 characters); given the ids, they are exact.
    """
    caps = Capabilities()
    if isinstance(candidates, int):
        worst = ["x" * 64] * candidates
        batches = max(1, len(id_batches(worst)))
    else:
        batches = max(1, len(id_batches(list(candidates))))
    per_batch = len(patient_searches(["x"], plan, caps))
    # A server with component-code only: one more Observation search per code chunk.
    per_batch += len(chunk_values(search_codes(plan.observation_codes), MAX_CODES_CHARS))
    population = len(population_searches(plan, caps)) if plan.patient_ids is None else 0
    # --observations auto: the first batch also runs the unfiltered Observation search once.
    probe = 1 if plan.patient_ids is None and plan.observation_codes else 0
    return 3 + population + probe + batches * (per_batch + 2)


def log_stats(s: Mapping[str, int | float]) -> None:
    """The one-line account of a server read (the CLI's summary and the benchmarks parse it)."""
    log.info(
        "server: %d requests (%d retries), %.1f MB received, %d resources in %.1f s",
        s["requests"],
        s["retries"],
        float(s["bytes"]) / 1e6,
        s["resources"],
        s["seconds"],
    )


# -- the source --------------------------------------------------------------------------------------


class _EarlyAnswer(Generic[T]):
    """``ask()`` run on a daemon thread from now on; ``result()`` waits for its value or re-raises its
    error in the caller. A daemon thread, not an executor's: a run that ends before it needs the answer
    (a bad trial file) exits at once instead of waiting out the request's timeout."""

    def __init__(self, ask: Callable[[], T]) -> None:
        self._ask = ask
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fhirscreen-early", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._ask()
        except BaseException as exc:  # handed to the caller of result(), where it is handled as before
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


@dataclass(frozen=True)
class Candidates:
    """The initial population: the patients' ids, sorted, and the Conditions that put them there."""

    ids: list[str]
    conditions: list[Resource] = field(default_factory=list)


class ServerSource:
    """A FHIR R4 server read through searches (or Bulk Data export with ``--bulk``)."""

    def __init__(self, options: SourceOptions, client: FhirClient) -> None:
        self.options = options
        self.client = client
        self.page_size = options.page_size
        self.concurrency = max(1, options.concurrency)
        self.notes = PlanNotes()
        self._started: float | None = None
        self._finished: float | None = None
        self._pages = 0
        self._resources = 0
        self._searches = 0
        self._lock = threading.Lock()
        # The Observation plan in force: "codes" or "all", or "auto" until the first batch decides.
        self.observation_plan = options.observations
        self._early_statement: _EarlyAnswer[dict[str, Any]] | None = None
        self._statement_lock = threading.Lock()  # the early population search may ask for it too
        # The initial-population search started before the read (``search_population_early``): the
        # population codes it searched, its findings so far, and its answer.
        self._early_population: tuple[tuple[Code, ...], DataQuality, _EarlyAnswer[Candidates]] | None = None
        # The CapabilityStatement, asked once per run (HAPI's is 1.5 MB): every read of this source,
        # and the store's, use the same answer.
        self._statement: dict[str, Any] | None = None
        # The one-line account at the end of a read; off when a wrapper (the store) gives its own.
        self.logs_stats = True

    def describe(self) -> str:
        return self.client.base_url + (" (Bulk Data export)" if self.options.bulk else "")

    def stats(self) -> dict[str, int | float]:
        stats = self.client.stats()
        end = self._finished if self._finished is not None else time.monotonic()
        seconds = end - self._started if self._started is not None else 0.0
        stats.update(
            {
                "searches": self._searches,
                "pages": self._pages,
                "resources": self._resources,
                "seconds": round(seconds, 2),
            }
        )
        return stats

    # -- Source protocol -----------------------------------------------------------------------------

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        if self._early_population is None or self._started is None:  # else: from the early search
            self._started = time.monotonic()
        if self.options.observations == observation_plan.ALL:
            # No code filter: one Observation search per batch; the evaluators pick what they need.
            plan = replace(plan, observation_codes=())
        try:
            caps = self.capabilities()
            if self.options.bulk and plan.patient_ids is None:
                yield from self._counted(self._read_by_bulk(plan, quality, caps))
            else:
                if self.options.bulk:
                    log.info("one patient: reading by search instead of a Bulk Data export")
                yield from self._counted(self._read_by_search(plan, quality, caps))
        finally:
            quality.extend(self.client.quality)  # what the transport noticed (bytes replaced, ...)
            self._finished = time.monotonic()
            if self.logs_stats:
                log_stats(self.stats())

    def _counted(self, items: Iterator[tuple[Resource, str]]) -> Iterator[tuple[Resource, str]]:
        for item in items:
            self._resources += 1
            yield item

    # -- steps ---------------------------------------------------------------------------------------

    def ask_capabilities_early(self) -> None:
        """Send ``GET /metadata`` now, on a background thread, so that the answer is on its way while the
        caller loads the trial (about 0.2 s; a hospital's CapabilityStatement can be megabytes over a
        WAN). ``capability_statement`` then takes that answer, or raises its error, instead of asking
        again."""
        if self._early_statement is None and self._statement is None:
            self._early_statement = _EarlyAnswer(self._ask_statement)

    def capability_statement(self) -> dict[str, Any]:
        """The server's CapabilityStatement, asked once for the run."""
        with self._statement_lock:
            if self._statement is None:
                early, self._early_statement = self._early_statement, None
                self._statement = early.result() if early is not None else self._ask_statement()
            return self._statement

    def search_population_early(self, plan: QueryPlan) -> None:
        """Start the initial-population search for ``plan`` now, on a background thread (after the
        CapabilityStatement it needs), so that the server answers while the caller loads the criteria.
        A population read of the same plan then takes that answer, its findings and errors included;
        any other read searches as usual. Like ``ask_capabilities_early``, nothing waits for it if the
        run stops first."""
        if plan.patient_ids is not None or self._early_population is not None:
            return
        found = DataQuality()
        self._started = time.monotonic()
        # One search after the other on this daemon thread, not on a pool: pool threads are joined at
        # exit, so a run stopped by a bad criterion would wait for the server's answer before exiting.
        answer = _EarlyAnswer(lambda: self._population_ids(plan, self.capabilities(), found, pooled=False))
        self._early_population = (plan.population_codes, found, answer)

    def _candidates(self, plan: QueryPlan, caps: Capabilities, quality: DataQuality) -> Candidates:
        """``_population_ids``, from the early search when it searched the same codes."""
        early, self._early_population = self._early_population, None
        if early is not None and early[0] == plan.population_codes:
            _codes, found, answer = early
            try:
                return answer.result()
            finally:
                quality.extend(found)
        return self._population_ids(plan, caps, quality)

    def capabilities(self) -> Capabilities:
        return Capabilities.parse(self.capability_statement())

    def _ask_statement(self) -> dict[str, Any]:
        statement = self.client.get_resource(
            "metadata", expect_type="CapabilityStatement", what="capability check (GET /metadata)"
        )
        version = str(statement.get("fhirVersion") or "")
        if version and not version.startswith("4.0"):
            log.warning("the server speaks FHIR %s; fhirscreen expects R4 (4.0.x)", version)
        return statement

    def _population_ids(
        self, plan: QueryPlan, caps: Capabilities, quality: DataQuality, pooled: bool = True
    ) -> Candidates:
        """The candidates: patients with a Condition coded in the population value set."""
        searches = population_searches(plan, caps)
        found = self._run(searches, quality) if pooled else [self._search_all(s, quality) for s in searches]
        conditions = [r for batch in found for r in batch]
        ids = patient_ids_in(conditions)
        log.info(
            "initial population search: %d patients with a diagnosis code of the population value set",
            len(ids),
        )
        if not ids:
            self.check_empty_population(quality)
        return Candidates(ids, conditions)

    def check_empty_population(self, quality: DataQuality) -> None:
        """Nobody has a diagnosis of the population value set: one more search, for any Condition at
        all, tells a quiet night (the server holds Conditions, none of them SLE: ``EMPTY_POPULATION``,
        exit 0, as file mode) from a broken one (it holds none: nothing loaded, or the wrong server;
        ``NO_CONDITIONS``, exit 4)."""
        label = "Condition search (any Condition, the population being empty)"
        page = next(iter(self.pages(f"Condition?{query_string([('_count', '1')])}", label)))
        total = page.get("total")
        held = _entries_on(page) > 0 or (total.__class__ is int and total > 0)
        where = self.client.base_url
        with self._lock:
            if held:
                quality.add(
                    "info",
                    where,
                    EMPTY_POPULATION,
                    "no Condition on the server is an SLE diagnosis (coded in the population value set), "
                    "though the server holds Conditions: nobody to screen, a quiet night",
                )
            else:
                quality.add(
                    "error",
                    where,
                    NO_CONDITIONS,
                    "the server holds no Condition resource (a search for any Condition found none): the "
                    "initial population (SLE diagnoses) cannot be found; is the Condition data loaded, and "
                    "is this the right server (base URL)?",
                )

    def _read_by_bulk(
        self, plan: QueryPlan, quality: DataQuality, caps: Capabilities
    ) -> Iterator[tuple[Resource, str]]:
        """A Bulk Data export of the candidates only (system level where the server cannot), then the
        Medications and ResearchStudies the export refers to (they are outside the Patient compartment),
        by id."""
        from fhirscreen.sources.bulk import BulkExport

        ids = self._candidates(plan, caps, quality).ids
        if not ids:
            log.info("no candidates: nothing to export")
            return
        if misses_components(plan, caps):  # the export's _typeFilter is a code search too
            log.warning("plan: %s", COMPONENT_GAP)
            quality.add("warning", self.client.base_url, "not-searchable", COMPONENT_GAP)
        # The _typeFilter text search: combo-code:text where the server answers it (components too);
        # else code:text, sent as before even where the probe was refused (the export may ignore it).
        text = self._text_param(caps) if component_param(caps) == COMBO_CODE else None
        exporter = BulkExport(
            self.client, caps, timeout=self.options.timeout, patients=ids, sledai_text=text or "code:text"
        )
        seen: set[tuple[str, str]] = set()
        medication_refs: set[str] = set()
        study_refs: set[str] = set()
        patients: list[Resource] = []  # the exported Patients, for their merge links
        for resource, origin in exporter.read(plan, quality):
            key = (str(resource.get("resourceType")), str(resource.get("id")))
            seen.add(key)
            if key[0] == "Patient":
                patients.append(resource)
            note_shared(resource, key[0], medication_refs, study_refs)
            yield resource, origin
        # An export that leaves out candidates it was asked for is incomplete (a server's cap on the
        # results it fetches truncates a type silently): their records may lack anything, so say so.
        absent = [pid for pid in ids if ("Patient", pid) not in seen] if exporter.since is None else []
        absent = self._on_server(absent) if absent else []
        if absent:
            log.error(
                "the export left out %d of the %d candidates it was asked for; the run goes on (partial), "
                "and they are not offered as eligible",
                len(absent),
                len(ids),
            )
            for pid in absent:
                quality.lost(
                    f"Patient/{pid}",
                    "the Bulk export did not return this candidate's Patient resource: the export may have "
                    "been cut short by the server, so this record may be incomplete",
                )
        if exporter.for_patients:  # an export of everyone (the fallback) holds the linked records already
            read = set(ids) | {pid for rtype, pid in seen if rtype == "Patient"}
            yield from self._read_linked(
                patients, read, seen, plan, caps, quality, medication_refs, study_refs
            )
        yield from self._fetch_medications(medication_refs, seen, caps, quality)
        yield from self._fetch_studies(study_refs, seen, caps, quality)

    def _read_linked(
        self,
        patients: Sequence[Resource],
        read: set[str],
        seen: set[tuple[str, str]],
        plan: QueryPlan,
        caps: Capabilities,
        quality: DataQuality,
        medication_refs: set[str],
        study_refs: set[str],
    ) -> Iterator[tuple[Resource, str]]:
        """Merged records after a candidate-only export: the ids that the exported ``patients`` link to
        (Patient.link replaced-by / replaces) and that were not exported (``read``) are read by the
        plan's patient searches, as ``_read_by_search`` reads them, so that the record builder merges
        them onto the surviving id (``PopulationBuilder._merge_linked``); a chain is followed up to
        LINK_ROUNDS links away. Searches, not a second ``Patient/$export``: the linked ids are few, a
        search batch answers in a second where an export job is kicked off, polled and downloaded
        (minutes on a busy server), and a search lost after its retries is lost for its patients
        (partial) exactly as in search mode. ``seen``, ``read`` and the reference sets are updated in
        place: the Medications and ResearchStudies the linked records refer to are fetched after."""
        found: dict[tuple[str, str], Resource] = {}  # what these searches gave, for later versions
        sledai_text: str | None = None
        asked = False
        unsearchable: set[str] = set()  # types warned of
        for _round in range(LINK_ROUNDS):
            linked = sorted({other for r in patients for _kind, other in merge_links(r)} - read)
            if not linked:
                return
            log.info("reading the records of %d linked Patient(s) (Patient.link) by search", len(linked))
            read.update(linked)
            notes = PlanNotes()
            try:
                if not asked:  # the SLEDAI text probe, only for a run that has linked records to read
                    sledai_text, asked = self._text_param(caps), True
                searches = [
                    search
                    for batch in id_batches(linked)
                    for search in patient_searches(batch, plan, caps, notes, sledai_text)
                ]
            except SourceError as exc:  # a failing probe, or Condition not searchable by patient
                # Lost for the linked ids and for the Patients that link to them: unread, a linked
                # Patient cannot be merged, and the id that links to it would be screened on part of
                # the person's record.
                log.error("%s; the linked records are not read, the run goes on without them (partial)", exc)
                wanted = set(linked)
                linking = {str(r.get("id")) for r in patients if any(o in wanted for _k, o in merge_links(r))}
                for pid in sorted(set(linked) | linking):
                    quality.lost(
                        f"Patient/{pid}",
                        "the records of Patients linked to this one (Patient.link) could not be read from "
                        "the server; the merged record may be incomplete",
                    )
                return
            for rtype in sorted(set(notes.unlinked_types) - unsearchable):
                unsearchable.add(rtype)
                quality.add(
                    "warning",
                    self.client.base_url,
                    "type-not-searchable",
                    f"the server cannot search {rtype} by patient: the {rtype} records of Patients linked "
                    "to candidates (Patient.link) are not read; criteria using them may be unknown",
                )
            patients = []
            for results in self._run(searches, quality):
                for resource in results:
                    key = (str(resource.get("resourceType")), str(resource.get("id")))
                    if key in found:
                        if not is_later_version(resource, found[key]):
                            continue  # the same resource from two pages/batches (an _include)
                    elif key in seen:
                        continue  # exported already
                    found[key] = resource
                    seen.add(key)
                    if key[0] == "Patient":
                        patients.append(resource)
                    note_shared(resource, key[0], medication_refs, study_refs)
                    yield resource, self._origin(key)

    def _on_server(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` whose Patient the server has (a Condition may name a Patient that does not
        exist: the builder reports that as missing-patient, it is not an export cut short)."""
        found: list[str] = []
        for batch in id_batches(list(ids)):
            for page in self.pages(
                f"Patient?{query_string([('_id', ','.join(batch)), ('_elements', 'id')])}", "Patient check"
            ):
                for entry in items(page.get("entry")):
                    resource = entry.get("resource") if isinstance(entry, Mapping) else None
                    if isinstance(resource, Mapping) and isinstance(resource.get("id"), str):
                        found.append(resource["id"])
        return [pid for pid in ids if pid in set(found)]

    def _fetch_medications(
        self, refs: set[str], read: Container[tuple[str, str]], caps: Capabilities, quality: DataQuality
    ) -> Iterator[tuple[Resource, str]]:
        """Medications referenced but not read yet: ``Medication?_id=...`` in batches."""
        missing = sorted(m for m in refs if ("Medication", m) not in read)
        seen: set[tuple[str, str]] = set()
        if not missing or not caps.has_type("Medication"):
            return
        med_searches = [
            Search("Medication", (("_id", ",".join(c)),), "referenced medications")
            for c in id_batches(missing)
        ]
        for results in self._run(med_searches, quality):
            for resource in results:
                key = ("Medication", str(resource.get("id")))
                if key not in seen:
                    seen.add(key)
                    yield resource, self._origin(key)

    def _fetch_studies(
        self, refs: set[str], read: Container[tuple[str, str]], caps: Capabilities, quality: DataQuality
    ) -> Iterator[tuple[Resource, str]]:
        """ResearchStudies that the records refer to (``referenced_study_ids``), not read yet:
        ``ResearchStudy?_id=...`` in batches. Unlike a Medication's, a failure costs only the studies,
        with a warning: the criteria read a study they cannot see as an unknown one, as they did before
        studies were read."""
        missing = sorted(s for s in refs if ("ResearchStudy", s) not in read)
        if not missing:
            return
        if not caps.has_type("ResearchStudy"):
            quality.add(
                "warning", self.client.base_url, "type-not-supported",
                f"the server does not offer ResearchStudy: the {len(missing)} research stud"
                f"{'y' if len(missing) == 1 else 'ies'} that the records refer to cannot be read; "
                "criteria using them may be unknown",
            )
            return
        seen: set[str] = set()
        for ids in id_batches(missing):
            search = Search("ResearchStudy", (("_id", ",".join(ids)),), "referenced research studies")
            try:
                results = self._search_all(search, quality)
            except SourceError as exc:
                log.warning("%s; the run goes on without the research studies", exc)
                quality.add(
                    "warning", self.client.base_url, "not-readable",
                    f"the research studies that the records refer to could not be read ({exc}); "
                    "criteria using them may be unknown",
                )
                return
            for resource in results:
                rid = resource.get("id")
                if resource.get("resourceType") != "ResearchStudy" or not isinstance(rid, str):
                    continue
                if rid not in seen:
                    seen.add(rid)
                    yield resource, self._origin(("ResearchStudy", rid))

    def read_patients(
        self,
        plan: QueryPlan,
        quality: DataQuality,
        caps: Capabilities,
        extra_params: tuple[tuple[str, str], ...] = (),
    ) -> Iterator[tuple[Resource, str]]:
        """The plan's searches for ``plan.patient_ids``, capabilities already read (incremental reads,
        fhirscreen/store); ``extra_params`` go on every patient search (e.g. ``_lastUpdated``)."""
        yield from self._counted(self._read_by_search(plan, quality, caps, extra_params))

    def _read_by_search(
        self,
        plan: QueryPlan,
        quality: DataQuality,
        caps: Capabilities,
        extra_params: tuple[tuple[str, str], ...] = (),
    ) -> Iterator[tuple[Resource, str]]:
        seen: dict[tuple[str, str], Resource] = {}
        # The Conditions the initial-population search found: each candidate's batch Condition search
        # finds them again, but if that search is lost, they alone keep the candidate in the run (as
        # possible, with the lost-data caveat) instead of out of candidates.json without a word.
        population: list[Resource] = []
        if plan.patient_ids is None:
            candidates = self._candidates(plan, caps, quality)
            ids, population = candidates.ids, candidates.conditions
        else:
            ids = sorted(set(plan.patient_ids))
        sledai_text = self._text_param(caps) if ids else None
        batches = id_batches(ids)
        probed: list[list[Resource]] = []
        early: dict[Search, Future[list[Resource]]] = {}
        early_pool: ThreadPoolExecutor | None = None

        def with_extra(searches: list[Search]) -> list[Search]:
            return (
                [replace(s, params=(*s.params, *extra_params)) for s in searches]
                if extra_params
                else searches
            )

        probing = self._probes_observations(plan, caps, batches)
        if probing and misses_components(plan, caps):
            # The code filter would miss labs held only in Observation.component here (an eGFR in a
            # panel); every Observation of the candidates holds them. Results before speed: no race.
            self.observation_plan = observation_plan.ALL
            log.info(
                "Observation searches: all of the candidates' (the server cannot search component codes, "
                "so a code filter would miss labs held in components; --observations codes forces it)"
            )
            plan = replace(plan, observation_codes=())
            searches: list[Search] = []
        elif probing and (start := self._first_observation_plan(batches[0], caps)) != observation_plan.AUTO:
            if start == observation_plan.ALL:
                plan = replace(plan, observation_codes=())
            searches = []
        elif probing:
            without_observations = replace(
                plan, resource_types=tuple(t for t in plan.resource_types if t != "Observation")
            )
            if self.concurrency > RACE_CONNECTIONS:
                # The race holds two connections while it runs; the other types' searches of every batch
                # do not depend on its outcome, so they run on the rest meanwhile (the run never has more
                # than --concurrency requests in flight).
                others = with_extra(
                    [
                        s
                        for batch in batches
                        for s in patient_searches(batch, without_observations, caps, self.notes, sledai_text)
                    ]
                )
                early_pool = ThreadPoolExecutor(max_workers=self.concurrency - RACE_CONNECTIONS)
                early = {s: early_pool.submit(self._search_all, s, quality) for s in others}
            try:
                plan, probed = self._probe_observations(batches[0], plan, caps, quality, sledai_text)
            except BaseException:
                self._stop_early(early, early_pool)
                raise
            searches = patient_searches(batches[0], without_observations, caps, self.notes, sledai_text)
            batches = batches[1:]
        else:
            searches = []
        for batch in batches:
            searches += patient_searches(batch, plan, caps, self.notes, sledai_text)
        searches = with_extra(searches)
        for text in self.notes.fallbacks:
            log.warning("plan: %s", text)
        for rtype in self.notes.skipped_types:
            quality.add(
                "warning",
                self.client.base_url,
                "type-not-supported",
                f"the server does not offer {rtype}; criteria using it may be unknown",
            )
        for rtype in self.notes.unlinked_types:
            quality.add(
                "warning",
                self.client.base_url,
                "type-not-searchable",
                f"the server cannot search {rtype} by patient; criteria using it may be unknown "
                "(--bulk reads it)",
            )
        for gap in plan.search_gaps:
            quality.add("warning", self.client.base_url, "not-searchable", gap)
        if misses_components(plan, caps):  # the plan in force after the probe: "all" reads components
            log.warning("plan: %s", COMPONENT_GAP)
            quality.add("warning", self.client.base_url, "not-searchable", COMPONENT_GAP)
        medication_refs: set[str] = set()
        study_refs: set[str] = set()

        def take(found: Iterable[list[Resource]]) -> Iterator[tuple[Resource, str]]:
            for results in found:
                for resource in results:
                    key = (str(resource.get("resourceType")), str(resource.get("id")))
                    if key in seen and not is_later_version(resource, seen[key]):
                        continue  # the same resource from two pages/batches (an _include, a shifted page)
                    # A later version (updated while the run paged through) goes on: the builder keeps it.
                    seen[key] = resource
                    note_shared(resource, key[0], medication_refs, study_refs)
                    yield resource, self._origin(key)

        yield from take(itertools.chain(probed, self._run(searches, quality, early, early_pool)))
        # Merged records (Patient.link replaced-by / replaces): the linked ids' Patients and resources
        # are read too, as further batches, so that the record builder merges them onto the surviving
        # id (``PopulationBuilder._merge_linked``); a chain is followed up to LINK_ROUNDS links away.
        read = set(ids)
        for _round in range(LINK_ROUNDS):
            patients = [r for (rtype, _id), r in seen.items() if rtype == "Patient"]
            linked = sorted({other for r in patients for _kind, other in merge_links(r)} - read)
            if not linked:
                break
            log.info("reading the records of %d linked Patient(s) (Patient.link)", len(linked))
            read.update(linked)
            more = [
                search
                for batch in id_batches(linked)
                for search in patient_searches(batch, plan, caps, self.notes, sledai_text)
            ]
            yield from take(self._run(with_extra(more), quality))
        for resource in population:  # only those the batch searches did not give (see above)
            key = (str(resource.get("resourceType")), str(resource.get("id")))
            if key in seen and not is_later_version(resource, seen[key]):
                continue
            seen[key] = resource
            yield resource, self._origin(key)
        yield from self._fetch_medications(medication_refs, seen, caps, quality)
        yield from self._fetch_studies(study_refs, seen, caps, quality)

    def _first_observation_plan(self, batch: Sequence[str], caps: Capabilities) -> str:
        """Count the first batch's Observations (one ``_summary=count``): ``all``, with the choice
        logged, when they are few enough to read them all without racing the code filter; ``auto`` (the
        first batch decides by a race) otherwise, and where the server cannot count (a refusal, or no
        ``total``). A count that failed after the retries (the server is failing) races nothing: the
        run goes on by the trial's codes, the plan that works batch by batch, and each batch's
        Observation searches that fail too are lost for its patients (partial, exit 5), as any other
        batch search; the run is not ended by a probe."""
        name, value = _patient_link("Observation", batch, caps, PlanNotes())
        path = f"Observation?{query_string([(name, value), ('_summary', 'count')])}"
        try:
            bundle = self.client.get_resource(
                path, expect_type="Bundle", what="Observation count", headers=SEARCH_HEADERS
            )
        except SourceError as exc:
            if exc.transient:
                log.warning("%s; Observation searches by the trial's codes, without a race", exc)
                self.observation_plan = observation_plan.CODES
                return observation_plan.CODES
            log.info("the server did not count Observations (%s): the first batch decides by a race", exc)
            return observation_plan.AUTO
        total = bundle.get("total")
        total = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None
        if not observation_plan.few_observations(total, len(batch)):
            return observation_plan.AUTO
        self.observation_plan = observation_plan.ALL
        log.info(
            "Observation searches: all of the candidates' (%d for the first %d candidates, at most %d each "
            "on average: too few for a code filter to pay; --observations codes|all skips this check)",
            total,
            len(batch),
            observation_plan.FEW_PER_PATIENT,
        )
        return observation_plan.ALL

    def _probes_observations(
        self, plan: QueryPlan, caps: Capabilities, batches: Sequence[Sequence[str]]
    ) -> bool:
        """The first batch decides the Observation plan (``--observations auto``) for a population run."""
        return (
            self.options.observations == observation_plan.AUTO
            and plan.patient_ids is None
            and bool(batches)
            and bool(plan.observation_codes)
            and "Observation" in plan.resource_types
            and caps.has_type("Observation")
            and caps.has_param("Observation", "code")
        )

    def _probe_observations(
        self,
        batch: Sequence[str],
        plan: QueryPlan,
        caps: Capabilities,
        quality: DataQuality,
        sledai_text: str | None,
    ) -> tuple[QueryPlan, list[list[Resource]]]:
        """Run the first batch's Observation searches both ways; keep the faster plan for the run.

        Returns the plan for the other batches and the first batch's Observations under the chosen plan.
        Each side collects its findings apart, so an abandoned side adds nothing to the run's.
        """
        only = replace(plan, resource_types=("Observation",))
        unfiltered_plan = replace(only, observation_codes=())
        by_code = patient_searches(batch, only, caps, self.notes, sledai_text)
        unfiltered = patient_searches(batch, unfiltered_plan, caps, self.notes, sledai_text)
        notes = {observation_plan.CODES: DataQuality(), observation_plan.ALL: DataQuality()}

        def side(kind: str, searches: list[Search]) -> Callable[[threading.Event], list[list[Resource]]]:
            # Sequential within a side, so that an abandoned side stops before its next search.
            return lambda stop: [self._search_all(s, notes[kind]) for s in searches if not stop.is_set()]

        try:
            choice, reason, results = observation_plan.race(
                side(observation_plan.CODES, by_code), side(observation_plan.ALL, unfiltered)
            )
        except SourceError as exc:
            if not exc.transient:
                raise
            # Both plans failed after their retries (the code filter's error is the one raised): the
            # first batch's Observations are lost for its patients, as any batch search that fails
            # (partial, exit 5), and the other batches search by the trial's codes.
            quality.extend(notes[observation_plan.CODES])
            self.observation_plan = observation_plan.CODES
            self._lost(by_code[0], exc, quality)
            log.info("Observation searches: by the trial's codes (the first batch's race failed)")
            return plan, []
        quality.extend(notes[choice])
        self.observation_plan = choice
        log.info(
            "Observation searches: %s (%s; --observations codes|all skips this check)",
            "by the trial's codes" if choice == observation_plan.CODES else "all of the candidates'",
            reason,
        )
        return (replace(plan, observation_codes=()) if choice == observation_plan.ALL else plan), results

    def _text_param(self, caps: Capabilities) -> str | None:
        """SLEDAI scores have no standard code: they are found by code text and by the survey category.

        ``code:text`` is a standard token modifier, but a CapabilityStatement cannot say whether a
        server implements it, so it is probed once (``_summary=count``); an error means 'not supported'.
        Where the server lists ``combo-code``, ``combo-code:text`` is probed first: it also finds a
        SLEDAI total held in a component of a panel whose own code text says nothing of SLEDAI.
        Returns the parameter to search with, or None.
        """
        if not caps.has_param("Observation", "code"):
            return None
        names = ["code:text"]
        if component_param(caps) == COMBO_CODE:
            names.insert(0, f"{COMBO_CODE}:text")
        for name in names:
            probe = f"Observation?{query_string([(name, SLEDAI_TEXT), ('_summary', 'count')])}"
            try:
                self.client.get_resource(
                    probe, expect_type="Bundle", what=f"SLEDAI {name} probe", headers=SEARCH_HEADERS
                )
                return name
            except SourceError as exc:
                if exc.transient:
                    raise  # the server is failing, not refusing the modifier: do not try it all again
                log.info("the server does not support %s (%s)", name, exc)
        log.info("the server supports no code:text search; SLEDAI scores only by category=survey")
        return None

    def _origin(self, key: tuple[str, str]) -> str:
        return f"{self.client.base_url}/{key[0]}/{key[1]}"

    def _stop_early(
        self, early: Mapping[Search, Future[list[Resource]]], pool: ThreadPoolExecutor | None
    ) -> None:
        """The searches started beside the Observation race are not wanted any more: stop them."""
        if pool is None:
            return
        self.client.cancel()
        for future in early.values():
            future.cancel()
        pool.shutdown(wait=True)

    def _run(
        self,
        searches: Sequence[Search],
        quality: DataQuality,
        early: Mapping[Search, Future[list[Resource]]] | None = None,
        early_pool: ThreadPoolExecutor | None = None,
    ) -> Iterator[list[Resource]]:
        """Run searches on the worker pool; yield each search's resources in plan order, Observation
        searches last (a fixed order: reproducible runs).

        The Observation searches page longest and finish last: taking the other searches' resources
        first lets the caller group them while Observation pages are still coming in, instead of
        waiting on the first batch's Observations with everything else done and queued behind it (a
        third of a second of grouping after the server's last answer, at 10,000 people). A record
        keeps each type's resources in the order they came, so only the order across types changes,
        which nothing reads.

        ``early`` holds searches already started (beside the Observation race) on ``early_pool``; the
        others go to a pool of the connections left, so that at most ``concurrency`` are in flight."""
        early = early or {}
        rest = [s for s in searches if s not in early]
        # With searches started early, their pool holds all but the race's connections: the rest get those.
        workers = RACE_CONNECTIONS if early_pool is not None else self.concurrency
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(rest) or 1))) as pool:
            # Longest first: a batch's Observation search pages through far more results than its other
            # searches (17 pages against one each at 10,000 people), so the run's critical path is the
            # last Observation search to start. Results are still taken in plan order.
            started: dict[int, Future[list[Resource]]] = {}
            for i in sorted(range(len(searches)), key=lambda i: searches[i].resource_type != "Observation"):
                search = searches[i]
                started[i] = (
                    early[search] if search in early else pool.submit(self._search_all, search, quality)
                )
            futures = [started[i] for i in range(len(searches))]
            taken = sorted(range(len(searches)), key=lambda i: searches[i].resource_type == "Observation")
            try:
                for search, future in ((searches[i], futures[i]) for i in taken):
                    try:
                        yield future.result()
                    except SourceError as exc:
                        if not (exc.transient and search.patients):
                            raise
                        self._lost(search, exc, quality)
                        yield []
            except BaseException:
                self.client.cancel()  # interrupted or failed: the other searches stop at their next chunk
                raise
            finally:
                for future in futures:
                    future.cancel()
                if early_pool is not None:
                    early_pool.shutdown(wait=True)

    def _lost(self, search: Search, exc: SourceError, quality: DataQuality) -> None:
        """A patient-batch search that failed after every retry: the run goes on, partial (exit 5), and
        these patients are not offered as eligible (screening.caution)."""
        log.error("%s; the run goes on without it (partial)", exc)
        for pid in search.patients:
            quality.lost(
                f"Patient/{pid}",
                f"{search.resource_type} records could not be read from the server after retries; "
                "this patient's record may be incomplete",
            )

    def _search_all(self, search: Search, quality: DataQuality) -> list[Resource]:
        """One search, every page, following ``next`` links as the server gives them.

        A search whose pages hold fewer resources than the server counted (``Bundle.total``) is run
        once more from its first page (resources deleted while the run paged); still short, it is lost
        (``_cut_short``): a server that stops searches short (a fetch-size cap) must not go unsaid."""
        with self._lock:
            self._searches += 1
        label = f"{search.resource_type} search ({search.purpose})"
        found, short, failed = self._search_once(search, label, quality)
        if failed is None and short is not None:
            log.warning("%s: %s; searching again from the first page", label, short)
            found, short, failed = self._search_once(search, label, quality)
        if failed is not None or short is not None:
            self._cut_short(search, failed or short or "", quality)
        return found

    def _search_once(
        self, search: Search, label: str, quality: DataQuality
    ) -> tuple[list[Resource], str | None, str | None]:
        """Every page of one search: its resources, what was short (None: as many as counted), and
        what the server said failed (None: no error OperationOutcome among its entries)."""
        found: list[Resource] = []
        expected: int | None = None
        matched = 0
        failures: list[str] = []
        for number, page in enumerate(self.pages(search.path(self.page_size), label)):
            if number == 0:
                total = page.get("total")
                expected = total if total.__class__ is int and total >= 0 else None
            matched += _entries_on(page)
            found.extend(self.entries(page, label, quality, number, failures))
        if failures:
            return found, None, f"the server said the search failed or is incomplete: {'; '.join(failures)}"
        if expected is not None and matched < expected:
            return found, f"the server counted {expected} matches but its pages held {matched}", None
        return found, None, None

    def _cut_short(self, search: Search, why: str, quality: DataQuality) -> None:
        """A search that answered, but not in full: the run goes on, partial (exit 5). A patient-batch
        search is lost for its patients; any other (the initial population, Medications) may miss
        anyone's records, so it is lost under its own name, which touches everyone: screening.caution
        then offers nobody as eligible."""
        label = f"{search.resource_type} search ({search.purpose})"
        log.error("%s: %s; the run goes on without it (partial)", label, why)
        with self._lock:
            if not search.patients:
                quality.lost(
                    label,
                    f"{search.resource_type} records were not all read from the server ({why}); "
                    "anyone's record may be incomplete, and candidates may be missing",
                )
            for pid in search.patients:
                quality.lost(
                    f"Patient/{pid}",
                    f"{search.resource_type} records were not all read from the server ({why}); "
                    "this patient's record may be incomplete",
                )

    def pages(self, path: str, label: str) -> Iterator[dict[str, Any]]:
        """Every page of a search or history Bundle, following ``next`` links as the server gives them.

        Stopped as a loop (an error, as a failing server): a next link seen before; more pages than a
        search's ``Bundle.total`` can need (``page_limit``); ``EMPTY_PAGES_IN_A_ROW`` empty pages that
        still link a next one; ``MAX_PAGES_PER_SEARCH`` in any case."""
        url: str | None = self.client.url(path)
        visited: set[str] = set()
        total: int | None = None  # a search's Bundle.total (not a history's: HAPI may cache that one)
        page_size = 0  # the most matches one page held
        matched = 0
        empty = 0  # empty pages in a row
        while url is not None:
            limit = page_limit(total, page_size, matched)
            if (
                url in visited
                or len(visited) >= MAX_PAGES_PER_SEARCH
                or (limit is not None and len(visited) >= limit)
            ):
                self._loop(label, len(visited) + 1)
            visited.add(url)
            page = self.client.get_resource(url, expect_type="Bundle", what=label, headers=SEARCH_HEADERS)
            with self._lock:
                self._pages += 1
            if len(visited) == 1 and page.get("type") == "searchset":
                value = page.get("total")
                total = value if value.__class__ is int and value >= 0 else None
            on_page = _matches_on(page)
            matched += on_page
            page_size = max(page_size, on_page)
            empty = empty + 1 if _entries_on(page) == 0 else 0
            yield page
            url = self._next_link(page, label)
            if url is not None and empty >= EMPTY_PAGES_IN_A_ROW:
                self._loop(label, len(visited) + 1)

    @staticmethod
    def _loop(label: str, page: int) -> NoReturn:
        raise SourceError(f"{label}: the server's next links loop (page {page}); stopping")

    def entries(
        self,
        page: Mapping[str, Any],
        label: str,
        quality: DataQuality,
        number: int = 0,
        failures: list[str] | None = None,
    ) -> Iterator[Resource]:
        """The resources of page ``number`` (from 0) of a search. An entry without one (null, a number,
        no resource, no resourceType) is a finding naming the page and entry, as in a Bundle file. An
        OperationOutcome entry (``search.mode=outcome``) is the server's note on the search: a warning,
        or, with an error or fatal issue or one coded incomplete, too-costly or throttled, a search that
        did not give every match: its issues ("severity code", never the diagnostics) go to ``failures``
        and the caller loses the search (``_cut_short``)."""
        absolute = holds_absolute_references(page, self.client.base_url)
        for index, entry in enumerate(items(page.get("entry"))):
            problem = entry_problem(entry)
            if problem is not None:
                where = f"{label}, page {number + 1}, entry {index}"
                with self._lock:
                    quality.add("warning", where, "not-fhir", f"{problem}; skipped")
                continue
            resource = entry["resource"]
            if resource["resourceType"] == "OperationOutcome":
                failing = failing_issues(resource)
                if failing and failures is not None:
                    failures.extend(f for f in failing if f not in failures)
                    continue
                text = outcome_text(resource) or ""
                with self._lock:
                    quality.add(
                        "warning", label, "server-warning", f"the server added a note to a search: {text}"
                    )
                continue
            if absolute:
                normalise_references(resource, self.client.base_url)
            yield resource

    def _next_link(self, page: Mapping[str, Any], label: str) -> str | None:
        for link in items(page.get("link")):
            if isinstance(link, Mapping) and link.get("relation") == "next" and link.get("url"):
                url = self.client.resolve(str(link["url"]))
                if not self.client.same_origin(url) and self.client.auth is not None:
                    raise SourceError(
                        f"{label}: the server's next link points at another host; not sending the access "
                        "token there (check the server's configured base address)"
                    )
                return url
        return None


# -- construction ------------------------------------------------------------------------------------


def _verify(options: SourceOptions) -> bool | str:
    if options.insecure:
        log.warning("TLS certificate verification is OFF (--insecure); use it for testing only")
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return False
    if options.ca_bundle is not None:
        if not options.ca_bundle.is_file():
            raise ConfigurationError(f"--ca-bundle {options.ca_bundle}: no such file")
        return str(options.ca_bundle)
    return True


def make_client(options: SourceOptions, write_types: Sequence[str] = ()) -> FhirClient:
    """A client for ``options.server`` with TLS settings and credentials from the options."""
    if not options.server:
        raise ConfigurationError("no --server URL given")
    client = FhirClient(
        options.server,
        timeout=options.timeout,
        deadline=options.deadline,
        verify=_verify(options),
        pool_size=max(2, options.concurrency),
        verbose=options.verbose,
    )
    client.auth = make_auth(options, client, write_types)
    return client


def make_auth(options: SourceOptions, client: FhirClient, write_types: Sequence[str] = ()) -> Auth | None:
    smart = options.smart_client_id or options.smart_key_file
    if options.token_env and smart:
        raise ConfigurationError("give either --token-env or the --smart-* options, not both")
    if options.token_env:
        from fhirscreen.sources.auth import BearerTokenAuth

        return BearerTokenAuth(options.token_env)
    if smart:
        from fhirscreen.sources.auth import SmartBackendAuth, default_scopes

        if not (options.smart_client_id and options.smart_key_file):
            raise ConfigurationError("SMART Backend Services needs both --smart-client-id and --smart-key")
        # ResearchStudy is left out of the defaults: a client registered before studies were read may
        # not hold that scope, and an authorisation server may refuse the whole token for one scope
        # (invalid_scope), which would cost the night; without it a study costs only itself (a warning).
        # Ask for it with --smart-scope.
        read_types = (*SCREENED_TYPES, *(t for t in SHARED_TYPES if t != "ResearchStudy"))
        scope = options.smart_scope or default_scopes(read_types, write_types)
        return SmartBackendAuth(
            base_url=client.base_url,
            client_id=options.smart_client_id,
            key_file=options.smart_key_file,
            session=client.session,
            scope=scope,
            token_url=options.smart_token_url,
            key_id=options.smart_key_id,
            timeout=options.timeout,
            deadline=client.deadline,
        )
    return None


def open_server_source(options: SourceOptions) -> Source:
    from fhirscreen.sources.bulk import remove_stale_workdirs

    remove_stale_workdirs()  # patient data a killed Bulk run left in the temp dir, whatever this run does
    source = ServerSource(options, make_client(options))
    source.ask_capabilities_early()
    return source


# -- posting the report back -------------------------------------------------------------------------


def report_bundle(measure_report: Mapping[str, Any], group: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction that PUTs both resources at their deterministic ids: a re-post replaces them, and a
    retried request cannot create duplicates."""
    entries = []
    for resource in (group, measure_report):
        rtype, rid = resource["resourceType"], resource["id"]
        entries.append(
            {
                "fullUrl": f"{rtype}/{rid}",
                "resource": dict(resource),
                "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def post_reports(options: SourceOptions, run: Any) -> list[str]:
    """PUT the MeasureReport and the candidate Group on the server; lines naming the stored versions."""
    from fhirscreen.report.group import group_resource
    from fhirscreen.report.measure import measure_report

    client = make_client(options, write_types=("MeasureReport", "Group"))
    bundle = report_bundle(measure_report(run), group_resource(run))
    response = client.request(
        "POST",
        client.base_url,
        json_body=bundle,
        what="posting the MeasureReport and Group",
        headers={"Content-Type": "application/fhir+json"},
        expect=(200,),
    )
    body = response.json()
    lines = []
    for entry in items(body.get("entry")) if isinstance(body, Mapping) else ():
        answer = entry.get("response") if isinstance(entry, Mapping) else None
        if isinstance(answer, Mapping):
            location = str(answer.get("location") or "")
            lines.append(
                f"posted {location.split('/_history')[0] or '?'} ({answer.get('status', '')})".strip()
            )
    stats = client.stats()
    lines.append(f"post-report: {stats['requests']} request(s) to {client.base_url}")
    return lines
