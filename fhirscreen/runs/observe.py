"""A transparent wrapper around a source that counts what a run read, for run.json and the progress
display: resources per type, read time, and the pauses (retry back-offs, Retry-After, Bulk polls)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fhirscreen.fhir.resources import Resource, is_type_name
from fhirscreen.progress import Progress
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import QueryPlan, Source


def canonical_source(described: str) -> str:
    """The source as written in outputs: a URL without credentials, query or fragment; a path absolute
    (so that ``--data x`` and ``--data /abs/x`` are written the same)."""
    if not described.lower().startswith(("http://", "https://")):
        return str(Path(described).resolve())
    head, sep, tail = described.partition(" (")  # e.g. "https://... (Bulk Data export)"
    parts = urlsplit(head)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + sep + tail


class _CountingSleep:
    def __init__(self, sleep: Callable[[float], None]) -> None:
        self.sleep = sleep
        self.count = 0
        self.seconds = 0.0

    def __call__(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.sleep(seconds)


class ObservedSource:
    """Passes every resource on unchanged; attributes it does not define come from the wrapped source."""

    def __init__(self, source: Source, progress: Progress | None = None) -> None:
        self._source = source
        self.progress = progress
        self.resources: Counter[str] = Counter()
        self.read_seconds = 0.0
        self._waits: _CountingSleep | None = None
        client = getattr(source, "client", None)
        if client is not None and callable(getattr(client, "sleep_fn", None)):
            self._waits = _CountingSleep(client.sleep_fn)
            client.sleep_fn = self._waits

    def __getattr__(self, name: str) -> Any:
        if name == "_source":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._source, name)

    def describe(self) -> str:
        return canonical_source(self._source.describe())

    def read(self, plan: QueryPlan, quality: DataQuality) -> Iterator[tuple[Resource, str]]:
        started = time.monotonic()
        # Resources a source dropped itself (other patients' lines, see QueryPlan.dropped) were read
        # too: counted in batches while reading, and exactly at the end.
        dropped = plan.dropped if plan is not None else None
        counted: Counter[str] = Counter()
        synced = 0
        try:
            for resource, origin in self._source.read(plan, quality):
                if dropped is not None and dropped.resources - synced >= 4096:
                    self._count_dropped(dropped.by_type, counted)
                    synced = dropped.resources
                rtype = resource.get("resourceType")
                if not is_type_name(rtype):  # sources skip these; never echoed into run.json
                    rtype = "?"
                self.resources[rtype] += 1
                if self.progress is not None:
                    self.progress.resource(rtype)
                yield resource, origin
            if dropped is not None:
                self._count_dropped(dropped.by_type, counted)
        finally:
            self.read_seconds += time.monotonic() - started
            if self.progress is not None:
                self.progress.stage("evaluating the criteria")

    def _count_dropped(self, by_type: Mapping[str, int], counted: Counter[str]) -> None:
        """Add what was dropped since the last call (``counted`` is what was added before)."""
        fresh = Counter({rtype: n - counted[rtype] for rtype, n in by_type.items() if n > counted[rtype]})
        counted.update(fresh)
        self.resources.update(fresh)
        if self.progress is not None:
            self.progress.resources.update(fresh)

    def close_progress(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def server_stats(self) -> dict[str, int | float] | None:
        """Requests, retries, bytes and waits of a server run; None for files."""
        stats = getattr(self._source, "stats", None)
        if not callable(stats):
            return None
        s = dict(stats())
        keep = ("requests", "retries", "bytes", "auth_refreshes", "searches", "pages")
        out: dict[str, int | float] = {k: s[k] for k in keep if k in s}
        out["waits"] = self._waits.count if self._waits else 0
        out["wait_seconds"] = round(self._waits.seconds, 2) if self._waits else 0
        return out


def observe(source: Source) -> ObservedSource:
    """Wrap a source for counting, with a progress display on stderr (see fhirscreen.progress)."""
    observed = ObservedSource(source)
    stats = getattr(source, "stats", None)

    def requests() -> int:
        return int(stats()["requests"]) if callable(stats) else 0

    observed.progress = Progress(requests=requests if callable(stats) else None).attach().start()
    return observed
