"""Incremental server reads: a ``Source`` that wraps the server source and keeps a local store.

The first run (and every run that cannot be incremental) reads the server in full through the server
source and writes the initial population's resources to the store. The next run asks the server only
what changed since the last one, applies it to the store, and yields the whole stored population, so
every patient is screened again at the new as-of date (windows move daily).

What changed, two ways:

- **``_history``** (the server lists the ``history-type`` interaction for every type read, as HAPI
  does): ``[type]/_history?_since=T`` per type gives every new version and every deletion (an entry with
  ``request.method`` DELETE) on the whole server. Versions of resources that are not the population's
  are dropped here. The patients touched (by a new version, a deletion, or a resource moving between
  patients) are read again with the plan's own searches for the types that changed, and their stored
  resources of those types are replaced by what the searches return: the store then holds what a full
  read would have returned for them, Observation code filters included.
- **``_lastUpdated`` searches** (servers without ``_history``, e.g. Epic, Oracle Health): the plan's
  searches for the stored population with ``_lastUpdated=geT`` added, and the population search with the
  same filter for new patients. Searches cannot see deletions (nor a resource moving away from a
  patient), so such a store is read in full again when its last full read is older than
  ``FULL_REFRESH_DAYS``.

In both, a patient whose population Condition appeared is new: their whole record is read. A patient
with no population Condition left is dropped from the store. Medications and ResearchStudies (shared:
outside the Patient compartment) referenced by new resources are fetched; those nothing refers to any
more are dropped.

T is the server's clock when the previous successful read started (``Bundle.meta.lastUpdated`` of a
small search, else the ``Date`` header; the client's clock never), minus ``OVERLAP``: resources read
twice are harmless, resources missed are not. The store is written only after the whole read
succeeded and lost no data, in one transaction (or one file rename for a full read).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fhirscreen.fhir.resources import Resource, entry_problem, is_fhir_id, items
from fhirscreen.quality import DataQuality
from fhirscreen.record import INVALID_ID, SHARED_TYPES
from fhirscreen.sources import observation_plan
from fhirscreen.sources.base import QueryPlan, SourceError
from fhirscreen.sources.server import (
    SEARCH_HEADERS,
    Capabilities,
    ServerSource,
    id_batches,
    log_stats,
    normalise_references,
    population_searches,
    query_string,
    search_codes,
)
from fhirscreen.store.delta import (
    history_entry,
    instant,
    is_population_condition,
    key_of,
    newer,
    owner,
    parse_instant,
    population_of,
    referenced_shared,
    since,
)
from fhirscreen.store.sqlite import (
    SCHEMA_VERSION,
    Key,
    ResourceStore,
    StoredResource,
    StoreError,
    StoreState,
)

log = logging.getLogger("fhirscreen.store")

OVERLAP = timedelta(minutes=10)
FULL_REFRESH_DAYS = 7


@dataclass
class ReadSummary:
    """What the last read did, for the run summary."""

    full_reason: str | None = None  # None: an incremental read
    changed: int = 0
    new_patients: int = 0
    deleted: int = 0
    left: int = 0
    method: str = ""  # "_history" or "_lastUpdated"
    since: str = ""
    not_stored: str = "the read did not finish"  # why the store was not updated, until it is

    def text(self, final: bool = True) -> str:
        """What the read did; ``final=False`` before the store is written (it says nothing of that yet)."""
        if self.full_reason is not None:
            line = f"full read: {self.full_reason}"
        else:
            line = (
                f"incremental ({self.method} since {self.since}): {self.changed} changed, "
                f"{self.new_patients} new patients, {self.deleted} deleted"
                + (f", {self.left} left the population" if self.left else "")
            )
        if not final or not self.not_stored:
            return line
        return f"{line}; the store was NOT updated ({self.not_stored})"


@dataclass
class _Delta:
    """The store being brought up to date, in memory; written in one transaction at the end."""

    resources: dict[Key, StoredResource]
    changed: set[Key] = field(default_factory=set)
    removed: set[Key] = field(default_factory=set)

    def put(self, resource: Resource) -> None:
        key = key_of(resource)
        self.resources[key] = StoredResource(owner(resource), resource)
        self.changed.add(key)
        self.removed.discard(key)

    def drop(self, key: Key) -> None:
        if self.resources.pop(key, None) is not None:
            self.removed.add(key)
        self.changed.discard(key)


def trial_fingerprint(trial_path: str | Path) -> str:
    """The content hash of the trial file (a changed trial may need other types or codes)."""
    return hashlib.sha256(Path(trial_path).read_bytes()).hexdigest()


class IncrementalSource:
    """The server source with a store: full reads when needed, otherwise only the changes."""

    prefilters = False

    def __init__(
        self,
        server: ServerSource,
        store: ResourceStore,
        trial_hash: str,
        *,
        full: bool = False,
        use_history: bool = True,
        refresh_days: int = FULL_REFRESH_DAYS,
        overlap: timedelta = OVERLAP,
    ) -> None:
        self.server = server
        # This source's own line covers the whole read (store included); the server's would repeat it.
        server.logs_stats = False
        self.store = store
        self.trial_hash = trial_hash
        self.force_full = full
        self.use_history = use_history
        self.refresh_days = refresh_days
        self.overlap = overlap
        self.summary = ReadSummary()
        self._started: float | None = None
        self._finished: float | None = None
        self._yielded = 0

    def describe(self) -> str:
        return self.server.describe()

    @property
    def client(self) -> Any:
        """The server's HTTP client (run.json counts its requests, retries and waits)."""
        return self.server.client

    def read_summary(self) -> str:
        return self.summary.text()

    def stats(self) -> dict[str, int | float]:
        stats = self.server.stats()
        end = self._finished if self._finished is not None else time.monotonic()
        stats["seconds"] = round(end - self._started, 2) if self._started is not None else 0.0
        stats["resources"] = self._yielded
        return stats

    # -- Source protocol -----------------------------------------------------------------------------

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        if plan.patient_ids is not None:  # explain: one patient, no store
            yield from self.server.read(plan, quality)
            return
        self._started = time.monotonic()
        try:
            for item in self._read(plan, quality):
                self._yielded += 1
                yield item
        finally:
            self._finished = time.monotonic()
            log_stats(self.stats())

    def _read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        key = self.source_key(plan)
        if self.server.options.observations == observation_plan.ALL:
            plan = replace(plan, observation_codes=())  # as the server source does
        try:
            state = self.store.state()
            reason = self._full_reason(state, key)
        except StoreError as exc:
            log.warning("%s; reading in full", exc)
            state, reason = None, str(exc)
        if reason is not None:
            self.summary = ReadSummary(full_reason=reason)
            log.info("full read: %s", reason)
            yield from self._full(plan, quality, key)
            return
        assert state is not None
        yield from self._incremental(plan, quality, state)

    def source_key(self, plan: QueryPlan) -> str:
        """What the store was read for: server, trial file, the plan's types and codes, the read mode."""
        described = {
            "server": self.server.client.base_url,
            "trial": self.trial_hash,
            "types": list(plan.resource_types),
            "population": [f"{c.system}|{c.code}" for c in plan.population_codes],
            "observations": [f"{c.system}|{c.code}" for c in plan.observation_codes],
            "observations_mode": self.server.options.observations,
            # Code-filtered Observation searches match component codes too (combo-code) since this
            # key: a store read before (code= only) lacks labs held in components, so it is read in
            # full once rather than kept (an incremental read would only re-read touched patients).
            "observation_match": "code-or-component",
            "bulk": self.server.options.bulk,
            # The shared resources kept beside the records: a store from before ResearchStudies were
            # read holds none, so it is read in full once rather than kept.
            "shared": list(SHARED_TYPES),
            # The studies kept are those records refer to by ResearchSubject.study or by the
            # workflow-researchStudy extension (``referenced_study_ids``) since this key: a store from
            # before lacks the studies named only by a medication record, so it is read in full once.
            "studies": "subject-or-extension",
        }
        return json.dumps(described, sort_keys=True)

    def _full_reason(self, state: StoreState | None, key: str) -> str | None:
        if self.force_full:
            return "--full was given"
        if state is None:
            return f"no store yet ({self.store.path})"
        if state.schema_version != SCHEMA_VERSION:
            return "the store was written by another version of fhirscreen"
        if state.source_key != key:
            return _what_changed(state.source_key, key)
        if parse_instant(state.high_water) is None:
            return "the store has no usable high-water mark"
        return None

    # -- full ----------------------------------------------------------------------------------------

    def _full(self, plan: QueryPlan, quality: DataQuality, key: str) -> Iterator[tuple[Resource, str]]:
        mark = self._server_clock()
        if mark is None:
            # Without the server's time no change can be tracked safely: read in full, keep no store.
            self.summary.not_stored = "the server tells no time, so changes cannot be tracked"
            yield from self.server.read(plan, quality)
            return
        read: dict[Key, StoredResource] = {}
        for resource, origin in self.server.read(plan, quality):
            read[key_of(resource)] = StoredResource(owner(resource), resource)
            yield resource, origin
        codes = set(search_codes(plan.population_codes))
        population = population_of(read.values(), codes)
        kept = {k: r for k, r in read.items() if r.patient in population}
        shared = referenced_shared(kept.values())
        kept.update({k: r for k, r in read.items() if k in shared})
        self._commit(
            quality, lambda: self.store.replace_all(kept, StoreState(SCHEMA_VERSION, key, mark, mark))
        )

    # -- incremental ---------------------------------------------------------------------------------

    def _incremental(
        self, plan: QueryPlan, quality: DataQuality, state: StoreState
    ) -> Iterator[tuple[Resource, str]]:
        start = since(state.high_water, self.overlap)
        assert start is not None
        caps, history_types = self._capabilities()
        types = [t for t in plan.resource_types if caps.has_type(t)]
        shared = [t for t in SHARED_TYPES if caps.has_type(t)]
        history = self.use_history and all(t in history_types for t in (*types, *shared))
        if not history:
            last_full = parse_instant(state.full_read_at)
            age = datetime.now(timezone.utc) - last_full if last_full is not None else None
            if age is None or age > timedelta(days=self.refresh_days):
                reason = (
                    f"the last full read is older than {self.refresh_days} days, and without _history "
                    "deletions are only seen by a full read"
                )
                self.summary = ReadSummary(full_reason=reason)
                log.info("full read: %s", reason)
                yield from self._full(plan, quality, state.source_key)
                return
        try:
            stored = self.store.load()
        except StoreError as exc:
            self.summary = ReadSummary(full_reason=str(exc))
            log.warning("%s; reading in full", exc)
            yield from self._full(plan, quality, state.source_key)
            return
        mark = self._server_clock()
        if mark is None:
            self.summary = ReadSummary(
                full_reason="the server tells no time",
                not_stored="the server tells no time, so changes cannot be tracked",
            )
            yield from self.server.read(plan, quality)
            return
        delta = _Delta(stored)
        population = population_of(delta.resources.values(), self._codes(plan))
        self.summary = ReadSummary(method="_history" if history else "_lastUpdated", since=start)
        try:
            if history:
                new = self._apply_history(plan, quality, caps, delta, population, types, shared, start)
            else:
                new = self._apply_searches(plan, quality, caps, delta, population, start)
        except SourceError as exc:
            # Nothing has been yielded yet: a server that refuses _history or _lastUpdated (or failed
            # halfway through them) gets a full read instead, which fails loudly if the server is down.
            reason = f"reading the changes failed ({exc})"
            self.summary = ReadSummary(full_reason=reason)
            log.warning("%s; reading in full", reason)
            yield from self._full(plan, quality, state.source_key)
            return
        after = population_of(delta.resources.values(), self._codes(plan))
        if not after:  # a quiet night, or a server that lost its Conditions: said as a full read says it
            self.server.check_empty_population(quality)
        left = population - after
        for k in [k for k, r in delta.resources.items() if r.patient in left]:
            delta.drop(k)
        referenced = referenced_shared(delta.resources.values())
        for k in [k for k in delta.resources if k[0] in SHARED_TYPES and k not in referenced]:
            delta.drop(k)
        self.summary.changed = len(delta.changed)
        self.summary.deleted = len(delta.removed)
        self.summary.new_patients = len(new & after)
        self.summary.left = len(left)
        # Before the screening reads the stored population: the store is written after, when nothing was lost.
        log.info("incremental read: %s", self.summary.text(final=False))
        for k in sorted(delta.resources):
            yield delta.resources[k].body, self._origin(k)
        upserts = {k: delta.resources[k] for k in delta.changed}
        new_state = replace(state, high_water=mark)
        self._commit(quality, lambda: self.store.apply(upserts, delta.removed, new_state))

    def _apply_history(
        self,
        plan: QueryPlan,
        quality: DataQuality,
        caps: Capabilities,
        delta: _Delta,
        population: set[str],
        types: list[str],
        shared: list[str],
        start: str,
    ) -> set[str]:
        """Apply ``_history`` since ``start``; returns the patients new to the population."""
        latest: dict[Key, tuple[Resource | None, str]] = {}
        for rtype in (*types, *shared):
            query = query_string([("_since", start), ("_count", str(self.server.page_size))])
            path = f"{rtype}/_history?{query}"
            label = f"{rtype} history (changes since the last run)"
            for number, page in enumerate(self.server.pages(path, label)):
                for index, entry in enumerate(items(page.get("entry"))):
                    parsed = _history_entry(entry, f"{label}, page {number + 1}, entry {index}", quality)
                    if parsed is None:
                        continue
                    key, resource, version = parsed
                    if resource is not None:  # as search results are: Type/id references
                        normalise_references(resource, self.server.client.base_url)
                    seen = latest.get(key)
                    # Newest first by the spec; a numerically newer version wins whatever the order.
                    if seen is None or newer(version, seen[1]):
                        latest[key] = (resource, version)
        codes = self._codes(plan)
        touched: dict[str, set[str]] = {}  # type -> patients of the population to read again
        new: set[str] = set()
        for key, (resource, _version) in latest.items():
            rtype = key[0]
            old = delta.resources.get(key)
            if rtype in SHARED_TYPES:
                if old is not None:  # a Medication (or study) the population uses changed or went away
                    if resource is None:
                        delta.drop(key)
                    elif resource != old.body:
                        delta.put(resource)
                continue
            now_owner = owner(resource) if resource is not None else None
            for patient in {old.patient if old is not None else None, now_owner}:
                if patient in population:
                    touched.setdefault(rtype, set()).add(patient)
            entering = now_owner is not None and now_owner not in population
            if entering and resource is not None and is_population_condition(resource, codes):
                assert now_owner is not None
                new.add(now_owner)
        if new:  # whole records for new patients; the touched ones come along
            self._reread(plan, quality, caps, delta, population | new, new | _union(touched), types)
        elif touched:
            dirty_types = [t for t in types if t in touched]
            self._reread(plan, quality, caps, delta, population, _union(touched), dirty_types)
        return new

    def _reread(
        self,
        plan: QueryPlan,
        quality: DataQuality,
        caps: Capabilities,
        delta: _Delta,
        population: set[str],
        patients: set[str],
        types: list[str],
    ) -> None:
        """Read these patients' resources of these types again and replace what the store holds."""
        sub = replace(plan, patient_ids=tuple(sorted(patients)), resource_types=tuple(types))
        fresh: dict[Key, Resource] = {}
        for resource, _origin in self.server.read_patients(sub, quality, caps):
            fresh[key_of(resource)] = resource
        type_set = set(types)
        for k in [k for k, r in delta.resources.items() if k[0] in type_set and r.patient in patients]:
            if k not in fresh:
                delta.drop(k)
        for k, resource in fresh.items():
            stored = delta.resources.get(k)
            if k[0] not in SHARED_TYPES and owner(resource) not in population:
                continue  # an _include of another patient's resource never happens; be safe
            if stored is None or stored.body != resource:
                delta.put(resource)

    def _apply_searches(
        self,
        plan: QueryPlan,
        quality: DataQuality,
        caps: Capabilities,
        delta: _Delta,
        population: set[str],
        start: str,
    ) -> set[str]:
        """Apply ``_lastUpdated`` searches since ``start`` (no deletions); returns new patients."""
        updated = ("_lastUpdated", f"ge{start}")
        new: set[str] = set()
        for search in population_searches(plan, caps):
            path = replace(search, params=(*search.params, updated)).path(self.server.page_size)
            for resource in self._searched(path, "Condition search (new population diagnoses)", quality):
                patient = owner(resource)
                if patient is not None and patient not in population:
                    new.add(patient)
        if population:
            sub = replace(plan, patient_ids=tuple(sorted(population)))
            for resource, _origin in self.server.read_patients(sub, quality, caps, (updated,)):
                stored = delta.resources.get(key_of(resource))
                if stored is None or stored.body != resource:
                    delta.put(resource)
            for rtype in SHARED_TYPES:
                stored_ids = sorted(k[1] for k in delta.resources if k[0] == rtype)
                for ids in id_batches(stored_ids):
                    query = query_string(
                        [("_id", ",".join(ids)), updated, ("_count", str(self.server.page_size))]
                    )
                    for resource in self._searched(f"{rtype}?{query}", f"{rtype} search (changes)", quality):
                        if resource["resourceType"] == rtype:
                            delta.put(resource)
        if new:
            self._reread(plan, quality, caps, delta, population | new, new, list(plan.resource_types))
        return new

    # -- helpers -------------------------------------------------------------------------------------

    def _codes(self, plan: QueryPlan) -> set[str]:
        return set(search_codes(plan.population_codes))

    def _capabilities(self) -> tuple[Capabilities, set[str]]:
        """The parsed CapabilityStatement and the types that offer ``history-type``."""
        statement = self.server.capability_statement()  # the run's one GET /metadata
        history: set[str] = set()
        for rest in items(statement.get("rest")):
            for res in (items(rest.get("resource"))) if isinstance(rest, Mapping) else ():
                if not isinstance(res, Mapping):
                    continue
                codes = {i.get("code") for i in items(res.get("interaction")) if isinstance(i, Mapping)}
                if "history-type" in codes:
                    history.add(str(res.get("type")))
        return Capabilities.parse(statement), history

    def _searched(self, path: str, label: str, quality: DataQuality) -> Iterator[Resource]:
        """The resources of every page of a change search, read as the server source reads a search page
        (a malformed entry is a finding naming it). One the server says failed or did not give in full
        is lost data: changes may be missing, so the read is partial and the store keeps the previous
        run's state (``_commit``)."""
        failures: list[str] = []
        for number, page in enumerate(self.server.pages(path, label)):
            yield from self.server.entries(page, label, quality, number, failures)
        if failures:
            log.error("%s: the server said it failed or is incomplete; the store is not updated", label)
            quality.lost(
                label,
                f"the server said the search failed or is incomplete ({'; '.join(failures)}): changes "
                "since the last run may be missing",
            )

    def _server_clock(self) -> str | None:
        """The server's current time: the high-water mark of a read that starts now (None, with a
        warning, when the server tells none: then every run reads in full and no store is kept)."""
        query = query_string([("_summary", "count")])
        response = self.server.client.get(
            f"Patient?{query}", what="server clock (Patient count)", headers=SEARCH_HEADERS
        )
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        meta = body.get("meta") if isinstance(body, Mapping) else None
        for told in (
            meta.get("lastUpdated") if isinstance(meta, Mapping) else None,
            response.headers.get("Date"),
        ):
            moment = parse_instant(str(told)) if told else None
            if moment is not None:
                return instant(moment)
        log.warning(
            "the server tells no time (no Bundle.meta.lastUpdated, no Date header), so changes cannot be "
            "tracked safely: reading in full, and no store of incremental reads is kept"
        )
        return None

    def _commit(self, quality: DataQuality, write: Callable[[], None]) -> None:
        if quality.partial:
            self.summary.not_stored = "data was lost after retries; the next run reads these changes again"
            log.warning("some data was lost after retries: the store keeps the previous run's state")
            return
        try:
            write()
        except (StoreError, OSError, sqlite3.Error) as exc:
            self.summary.not_stored = f"cannot write it: {exc}"
            log.warning("could not write the store (%s)", exc)
            return
        self.summary.not_stored = ""

    def _origin(self, key: Key) -> str:
        return f"{self.server.client.base_url}/{key[0]}/{key[1]}"


def _history_entry(
    entry: object, where: str, quality: DataQuality
) -> tuple[Key, Resource | None, str] | None:
    """``history_entry`` of a ``_history`` page's entry, or None with a finding naming the page and entry
    (``where``) when it cannot be applied: the wording and problem codes of a search page's entries
    (``ServerSource.entries``) and of the record builder (an id missing or not an id).

    A DELETE entry whose resource cannot be told (no ``request.url`` or ``fullUrl`` that is
    ``Type/id``) is lost data: the store may keep a resource the server deleted, so it is not
    updated (``_commit``) and the run is partial; the next run reads these changes again."""
    if isinstance(entry, Mapping):
        request = entry.get("request")
        method = str(request.get("method", "")).upper() if isinstance(request, Mapping) else ""
        if method == "DELETE":
            parsed = history_entry(entry)
            if parsed is None:
                quality.lost(
                    where,
                    "a deletion whose resource cannot be told (its request.url is not Type/id): the store "
                    "may still hold a resource the server deleted, so it is not updated from this read",
                )
            return parsed
    problem = entry_problem(entry)
    if problem is not None:
        quality.add("warning", where, "not-fhir", f"{problem}; skipped")
        return None
    assert isinstance(entry, Mapping)
    resource = entry["resource"]
    rtype, rid = resource["resourceType"], resource.get("id")
    if not isinstance(rid, str) or not rid:
        quality.add("warning", where, "no-id", f"{rtype} without an id was skipped")
        return None
    if not is_fhir_id(rid):
        quality.add(
            "warning", where, INVALID_ID,
            f"{rtype} whose id is not an id (1-128 letters, digits, '-', '.' or '_') was skipped",
        )
        return None
    return history_entry(entry)


def _union(groups: Mapping[str, set[str]]) -> set[str]:
    out: set[str] = set()
    for members in groups.values():
        out |= members
    return out


def _what_changed(stored_key: str, key: str) -> str:
    """Why a store read for another source or plan cannot be brought up to date (for the summary)."""
    try:
        before = json.loads(stored_key)
    except ValueError:
        before = {}
    now = json.loads(key)
    if not isinstance(before, dict) or before.get("server") != now["server"]:
        return "the store was read from another server"
    if before.get("trial") != now["trial"]:
        return "the trial file changed since the store was written"
    return "the search plan changed (resource types, codes, --observations or --bulk)"
