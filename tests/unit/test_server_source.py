"""ServerSource: the query plan (O(batches) requests), paging, faults mid-search, references, fallbacks."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from fhirscreen.fhir.codes import ICD10CM, LOINC, SNOMED, Code, ValueSet
from fhirscreen.paths import default_trial_file
from fhirscreen.quality import DataQuality
from fhirscreen.record import SCREENED_TYPES
from fhirscreen.sources.base import QueryPlan, SourceError
from fhirscreen.sources.code_lists import expand_prefix, searchable
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.http import FhirClient
from fhirscreen.sources.server import (
    EMPTY_PAGES_IN_A_ROW,
    EXTRA_PAGES,
    MAX_CODES_CHARS,
    MAX_IDS_PER_BATCH,
    Capabilities,
    PlanNotes,
    ServerSource,
    chunk_values,
    holds_absolute_references,
    id_batches,
    normalise_references,
    page_limit,
    patient_searches,
    request_bound,
    search_codes,
)
from fhirscreen.trial.loader import load_trial

BASE = "http://fhir.test/fhir"
PLAN = QueryPlan(
    population_codes=(Code(SNOMED, "55464009"), Code(ICD10CM, "M32.14")),
    observation_codes=(Code(LOINC, "33914-3"), Code(LOINC, "5048-4")),
)
TYPES = (*SCREENED_TYPES, "Medication")


def capability(
    types: Iterable[str] = TYPES, drop: dict[str, set[str]] | None = None, includes: bool = True
) -> dict[str, Any]:
    params = {
        "Patient": {"_id"},
        "Condition": {"code", "patient", "subject"},
        # As HAPI lists it: combo-code (code OR component code) finds labs held in components.
        "Observation": {"code", "combo-code", "patient", "subject", "category"},
        "ResearchSubject": {"patient", "individual"},
        "Appointment": {"patient", "actor", "date"},
        "Medication": {"_id"},
    }
    resources = []
    for t in types:
        names = params.get(t, {"patient", "subject", "date"}) - (drop or {}).get(t, set())
        entry: dict[str, Any] = {"type": t, "searchParam": [{"name": n} for n in sorted(names)]}
        if includes and t.startswith("Medication") and t != "Medication":
            entry["searchInclude"] = [f"{t}:medication"]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "4.0.1",
        "rest": [{"mode": "server", "resource": resources}],
    }


def inline_contained_medications(resource: dict[str, Any]) -> dict[str, Any]:
    """FakeFhir's _include handles Medication/x references only: a contained Medication becomes the
    record's medicationCodeableConcept."""
    reference = resource.get("medicationReference", {}).get("reference", "/")
    if "/" in reference:
        return resource
    contained = next(c for c in resource["contained"] if f"#{c['id']}" == reference)
    rest = {k: v for k, v in resource.items() if k not in ("medicationReference", "contained")}
    return {**rest, "medicationCodeableConcept": contained["code"]}


class FakeFhir:
    """Just enough FHIR search for the plan: _id, patient/subject, code, combo-code, component-code,
    code:text, combo-code:text, category, _include, and paging through next links."""

    def __init__(
        self, resources: list[dict[str, Any]], caps: dict[str, Any] | None = None, absolute_refs: bool = False
    ) -> None:
        self.resources = resources
        self.caps = caps or capability()
        self.absolute_refs = absolute_refs
        self.pages: dict[str, list[dict[str, Any]]] = {}
        self.log: list[str] = []
        self.fail_once: set[str] = set()  # page keys that drop the connection once

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r".*"), callback=self.handle)

    def handle(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(str(request.url))
        path = parts.path[len("/fhir") :].strip("/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.log.append(f"{path or 'page'}?{parts.query}")
        if path == "metadata":
            return self.json(self.caps)
        if "_getpages" in query:
            key = f"{query['_getpages']}:{query['_getpagesoffset']}"
            if key in self.fail_once:
                self.fail_once.discard(key)
                raise requests.ConnectionError("connection dropped mid-page")
            return self.page(query["_getpages"], int(query["_getpagesoffset"]), int(query["_count"]))
        matches = [r for r in self.resources if r["resourceType"] == path and self.matches(r, query)]
        if query.get("_summary") == "count":
            return self.json({"resourceType": "Bundle", "type": "searchset", "total": len(matches)})
        entries = [{"resource": r, "search": {"mode": "match"}} for r in matches]
        include = query.get("_include")
        if include:
            wanted = {
                m["medicationReference"]["reference"].split("/")[1]
                for m in matches
                if "medicationReference" in m
            }
            entries += [
                {"resource": r, "search": {"mode": "include"}}
                for r in self.resources
                if r["resourceType"] == "Medication" and r["id"] in wanted
            ]
        search_id = f"s{len(self.pages)}"
        self.pages[search_id] = entries
        return self.page(search_id, 0, int(query.get("_count", "20")))

    def page(self, search_id: str, offset: int, count: int) -> tuple[int, dict[str, str], str]:
        entries = self.pages[search_id]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "entry": entries[offset : offset + count],
            "link": [],
        }
        if offset + count < len(entries):
            bundle["link"].append(
                {
                    "relation": "next",
                    "url": (
                        f"{BASE}?_getpages={search_id}&_getpagesoffset={offset + count}"
                        f"&_count={count}&_bundletype=searchset"
                    ),
                }
            )
        text = json.dumps(bundle)
        if self.absolute_refs:
            text = text.replace('"reference": "', f'"reference": "{BASE}/')
        return 200, {"Content-Type": "application/fhir+json"}, text

    @staticmethod
    def json(body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    @staticmethod
    def matches(resource: dict[str, Any], query: dict[str, str]) -> bool:
        for name, value in query.items():
            values = set(value.split(","))
            if name == "_id" and resource["id"] not in values:
                return False
            if name in ("patient", "subject", "individual", "actor"):
                refs = [(resource.get("subject") or resource.get("individual") or {}).get("reference", "")]
                refs += [p.get("actor", {}).get("reference", "") for p in resource.get("participant", [])]
                wanted = {v.split("/")[-1] for v in values}
                if not any(r.startswith("Patient/") and r.split("/")[-1] in wanted for r in refs):
                    return False
            own = [resource.get("code", {})]
            parts = [c.get("code", {}) for c in resource.get("component", [])]
            concepts = {"code": own, "combo-code": own + parts, "component-code": parts}
            if name in concepts:
                codes = {c["code"] for concept in concepts[name] for c in concept.get("coding", [])}
                if not codes & values:
                    return False
            if name.endswith(":text") and name.split(":")[0] in concepts:
                texts = [concept.get("text", "").lower() for concept in concepts[name.split(":")[0]]]
                if not any(t.startswith(value) for t in texts):
                    return False
            if name == "category":
                cats = {c["code"] for cat in resource.get("category", []) for c in cat.get("coding", [])}
                if value not in cats:
                    return False
        return True

    def searches(self) -> Counter[str]:
        return Counter(entry.split("?")[0] for entry in self.log)


def population(n: int, *, extra_obs: bool = True) -> list[dict[str, Any]]:
    """n SLE patients, each with a Condition, Observations and a MedicationRequest; one non-SLE patient."""
    out: list[dict[str, Any]] = [
        {"resourceType": "Medication", "id": "hcq", "code": {"text": "hydroxychloroquine"}}
    ]
    for i in range(n):
        pid = f"p{i:04d}"
        subject = {"reference": f"Patient/{pid}"}
        out += [
            {"resourceType": "Patient", "id": pid, "birthDate": "1980-01-01"},
            {
                "resourceType": "Condition",
                "id": f"c{i}",
                "subject": subject,
                "code": {"coding": [{"system": SNOMED, "code": "55464009"}]},
            },
            {
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "subject": subject,
                "code": {"coding": [{"system": LOINC, "code": "33914-3"}]},
            },
            {
                "resourceType": "MedicationRequest",
                "id": f"mr{i}",
                "status": "active",
                "subject": subject,
                "medicationReference": {"reference": "Medication/hcq"},
            },
        ]
        if extra_obs:
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"s{i}",
                    "status": "final",
                    "subject": subject,
                    "code": {
                        "coding": [{"system": "urn:local", "code": "SLEDAI"}],
                        "text": "SLEDAI-2K total",
                    },
                }
            )
    out += [
        {"resourceType": "Patient", "id": "other", "birthDate": "1990-01-01"},
        {
            "resourceType": "Condition",
            "id": "c-other",
            "subject": {"reference": "Patient/other"},
            "code": {"coding": [{"system": SNOMED, "code": "38341003"}]},
        },
        {
            "resourceType": "Observation",
            "id": "o-other",
            "status": "final",
            "subject": {"reference": "Patient/other"},
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        },
    ]
    return out


def source(page_size: int = 200, concurrency: int = 2, **kwargs: Any) -> ServerSource:
    # The plan tests below pin the code-filtered plan; --observations auto has tests of its own.
    kwargs.setdefault("observations", "codes")
    options = SourceOptions(server=BASE, page_size=page_size, concurrency=concurrency, **kwargs)
    return ServerSource(options, FhirClient(BASE, sleep=lambda _s: None))


def read_all(src: ServerSource, plan: QueryPlan = PLAN) -> tuple[list[dict[str, Any]], DataQuality]:
    quality = DataQuality()
    return [r for r, _origin in src.read(plan, quality)], quality


def ids_of(resources: Iterable[dict[str, Any]], rtype: str) -> set[str]:
    return {r["id"] for r in resources if r["resourceType"] == rtype}


# -- the plan -----------------------------------------------------------------------------------------


def test_reads_the_population_and_only_its_records() -> None:
    fake = FakeFhir(population(3))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source())
    assert ids_of(resources, "Patient") == {"p0000", "p0001", "p0002"}
    assert ids_of(resources, "Observation") == {"o0", "o1", "o2", "s0", "s1", "s2"}
    assert ids_of(resources, "Medication") == {"hcq"}  # _included once, not per request
    assert "other" not in ids_of(resources, "Patient")
    assert quality.findings == []


def test_the_capability_statement_asked_early_is_the_one_the_read_uses() -> None:
    """``open_server_source`` sends GET /metadata while the CLI loads the trial; the read takes that
    answer and does not ask again."""
    fake = FakeFhir(population(2))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source()
        src.ask_capabilities_early()
        src.ask_capabilities_early()  # asked once however often it is called
        resources, quality = read_all(src)
        metadata_calls = [c for c in mock.calls if urlsplit(c.request.url).path.endswith("/metadata")]
    assert len(metadata_calls) == 1
    assert ids_of(resources, "Patient") == {"p0000", "p0001"}
    assert quality.findings == []


def test_an_early_capability_request_that_failed_fails_the_read_as_a_late_one_would() -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/metadata", status=404, body="not a FHIR server")
        src = source()
        src.ask_capabilities_early()
        with pytest.raises(SourceError, match="capability check"):
            read_all(src)


def _population_searches(mock: responses.RequestsMock) -> list[str]:
    return [
        str(c.request.url)
        for c in mock.calls
        if urlsplit(c.request.url).path.endswith("/Condition") and "code=" in str(c.request.url)
    ]


def test_the_population_searched_early_is_the_one_the_read_uses() -> None:
    """The CLI starts the initial-population search as soon as the trial's value sets are built (while
    the criteria load); the read takes its answer: one search, the same records as without it."""
    fake = FakeFhir(population(3))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        plain, _q = read_all(source())
        first = len(_population_searches(mock))
        src = source()
        src.ask_capabilities_early()
        src.search_population_early(PLAN)
        src.search_population_early(PLAN)  # started once however often it is called
        early, quality = read_all(src)
        assert len(_population_searches(mock)) == 2 * first == 2
    assert early == plain
    assert quality.findings == []


def test_an_early_population_search_for_other_codes_is_not_used() -> None:
    fake = FakeFhir(population(3))
    other = replace(PLAN, population_codes=(Code(SNOMED, "55464009"),))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source()
        src.search_population_early(other)
        early = src._early_population
        assert early is not None
        resources, _q = read_all(src)  # PLAN: searched again, with its own codes
        early[2].result()  # the unused early search ends on its own (before the mock goes)
        searched = _population_searches(mock)  # the early search may be answered before or after
    assert len(searched) == 2
    assert sorted("M32.14" in url for url in searched) == [False, True]
    assert ids_of(resources, "Patient") == {"p0000", "p0001", "p0002"}


def test_an_early_population_search_that_failed_fails_the_read_as_a_late_one_would() -> None:
    fake = FakeFhir(population(1))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(re.compile(rf"{re.escape(BASE)}/Condition\?code=.*"), status=400, body="bad code search")
        fake.install(mock)
        src = source()
        src.search_population_early(PLAN)
        with pytest.raises(SourceError, match="Condition search"):
            read_all(src)


def test_no_early_population_search_for_one_patient() -> None:
    fake = FakeFhir(population(2))
    one = replace(PLAN, patient_ids=("p0001",))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source()
        src.search_population_early(one)  # explain reads one patient: no population to search
        resources, _q = read_all(src, one)
        assert _population_searches(mock) == []
    assert ids_of(resources, "Patient") == {"p0001"}


def test_request_count_grows_with_batches_not_patients_times_types() -> None:
    n = 250  # three batches of at most 100
    fake = FakeFhir(population(n))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(page_size=1000, concurrency=4)
        resources, _q = read_all(src)
    assert len(ids_of(resources, "Patient")) == n
    batches = len(id_batches([f"p{i:04d}" for i in range(n)]))
    assert batches == 3
    counts = fake.searches()
    assert counts["Condition"] == 1 + batches  # population search + one per batch
    assert counts["MedicationRequest"] == batches
    assert counts["Observation"] == 1 + batches * 3  # the code:text probe + codes, text, survey per batch
    # metadata + probe + population + per batch: Patient, Condition, 3 Observation, 4 Med*, Procedure,
    # ServiceRequest, CarePlan, Appointment, ResearchSubject
    assert src.stats()["requests"] == 3 + batches * 14
    assert src.stats()["requests"] <= request_bound(n, PLAN)
    assert src.stats()["requests"] < n  # never one request per patient


def test_observations_all_reads_every_observation_of_the_candidates_in_one_search_per_batch() -> None:
    fake = FakeFhir(population(3))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(observations="all")
        resources, quality = read_all(src)
    # The same resources as the code-filtered plan (the SLEDAI score included), none of the others'.
    assert ids_of(resources, "Observation") == {"o0", "o1", "o2", "s0", "s1", "s2"}
    assert fake.searches()["Observation"] == 1 + 1  # the code:text probe, then one search for the batch
    assert quality.findings == []


def test_paging_follows_next_links_until_the_end() -> None:
    fake = FakeFhir(population(25))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(page_size=10)
        resources, _q = read_all(src)
    assert len(ids_of(resources, "Patient")) == 25
    assert len(ids_of(resources, "Observation")) == 50
    assert sum(1 for entry in fake.log if entry.startswith("page?")) >= 9
    assert src.stats()["pages"] > src.stats()["searches"]


def test_dropped_connection_on_page_two_is_retried_and_nothing_is_lost() -> None:
    fake = FakeFhir(population(25))
    fake.fail_once = {"s0:10"}  # the population search's 2nd page
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(page_size=10, concurrency=1)
        resources, _q = read_all(src)
    assert len(ids_of(resources, "Patient")) == 25
    assert src.stats()["retries"] == 1


def test_malformed_page_is_a_clear_error() -> None:
    fake = FakeFhir(population(3))
    with responses.RequestsMock() as mock:
        for _ in range(2):  # retried once (a cut-off page is often a proxy hiccup), then reported
            mock.get(
                re.compile(re.escape(BASE) + r"/Condition\?code=.*"),
                body="<html>proxy error</html>",
                content_type="text/html",
            )
        fake.install(mock)
        with pytest.raises(SourceError, match=r"initial population.*did not answer with FHIR JSON"):
            read_all(source())


@pytest.mark.parametrize("key", ["entry", "link"])
def test_a_page_whose_entries_or_links_are_not_a_list_is_an_error_not_an_empty_page(key: str) -> None:
    """Read as empty, such a page would lose its patients (entry) or end the paging early (link)
    without a word."""
    fake = FakeFhir(population(3))
    broken: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": [], "link": []}
    broken[key] = {"relation": "next", "url": f"{BASE}/Condition?page=2"} if key == "link" else {"x": 1}
    with responses.RequestsMock() as mock:
        for _ in range(2):  # retried once, then reported
            mock.get(re.compile(re.escape(BASE) + r"/Condition\?code=.*"), json=broken)
        fake.install(mock)
        with pytest.raises(SourceError, match=rf"initial population.*a Bundle whose {key} is not a list"):
            read_all(source())


def test_a_search_that_ends_short_of_its_total_is_lost_for_its_patients() -> None:
    """A server that stops a search short (a fetch-size cap truncated HAPI's exports here once) or
    loses resources while the run pages: fewer entries than Bundle.total, twice, is data lost for the
    batch's patients (a missing record could make one eligible), not a warning."""
    fake = FakeFhir(population(3))
    original = fake.page

    def short_page(search_id: str, offset: int, count: int) -> Any:
        status, headers, body = original(search_id, offset, count)
        bundle = json.loads(body)
        if any(e["resource"]["resourceType"] == "MedicationRequest" for e in bundle.get("entry", [])):
            bundle["total"] += 2  # two more than the pages will ever hold
        return status, headers, json.dumps(bundle)

    fake.page = short_page  # type: ignore[method-assign]
    with responses.RequestsMock() as mock:
        fake.install(mock)
        _resources, quality = read_all(source())
    findings = [(f.where, f.problem) for f in quality.findings]
    assert findings == [(f"Patient/p000{i}", "data-lost") for i in range(3)]
    assert "counted 6 matches but its pages held 4" in quality.findings[0].message
    assert sum(1 for e in fake.log if e.startswith("MedicationRequest?")) == 2  # searched again once


def test_next_link_loop_is_stopped() -> None:
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [],
        "link": [{"relation": "next", "url": f"{BASE}?_getpages=x&_getpagesoffset=0"}],
    }
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/metadata", json=capability())
        mock.get(re.compile(re.escape(BASE) + r"/Condition.*"), json=page)
        mock.get(re.compile(re.escape(BASE) + r"\?_getpages.*"), json=page)
        with pytest.raises(SourceError, match="next links loop"):
            read_all(source())


def test_a_next_link_that_changes_at_every_empty_page_is_stopped_soon() -> None:
    """A nonce in every next link defeats the seen-URL check: empty pages that still link a next one
    are stopped after EMPTY_PAGES_IN_A_ROW, not after 10,000 requests."""
    served: list[int] = []

    def looping(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        served.append(1)
        page = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [],
            "link": [{"relation": "next", "url": f"{BASE}?_getpages=x&nonce={len(served)}"}],
        }
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(page)

    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/metadata", json=capability())
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/Condition.*"), callback=looping)
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"\?_getpages.*"), callback=looping)
        with pytest.raises(SourceError, match="next links loop"):
            read_all(source())
    assert len(served) == EMPTY_PAGES_IN_A_ROW


def test_a_next_link_that_changes_at_every_page_is_stopped_by_the_total() -> None:
    """Pages that hold the same match again and again, under a new next link each time: no more than
    twice the pages Bundle.total needs (at the page size served), plus EXTRA_PAGES."""
    served: list[int] = []
    condition = population(1)[2]
    assert condition["resourceType"] == "Condition"

    def looping(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        served.append(1)
        page = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 4,
            "entry": [{"resource": condition, "search": {"mode": "match"}}] * 2,
            "link": [{"relation": "next", "url": f"{BASE}?_getpages=x&nonce={len(served)}"}],
        }
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(page)

    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/metadata", json=capability())
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/Condition.*"), callback=looping)
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + r"\?_getpages.*"), callback=looping)
        with pytest.raises(SourceError, match="next links loop"):
            read_all(source())
    assert len(served) == 2 * 2 + EXTRA_PAGES


def test_pages_smaller_than_asked_for_and_included_resources_are_no_loop() -> None:
    """The server serves 1 match a page whatever _count asks (200), plus the page's _include: the page
    limit counts the page size served, and matches only, so the whole search is read."""
    fake = FakeFhir(population(12))
    original = fake.page
    fake.page = lambda search_id, offset, count: original(search_id, offset, 1)  # type: ignore[method-assign]
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source(page_size=200))
    assert len(ids_of(resources, "Patient")) == 12
    assert not quality.partial


def test_page_limit() -> None:
    assert page_limit(None, 200) is None  # no total: only MAX_PAGES_PER_SEARCH
    assert page_limit(0, 0) == EXTRA_PAGES
    assert page_limit(10, 0) is None  # no match seen yet: the empty-page rule applies
    assert page_limit(1000, 200) == 2 * 5 + EXTRA_PAGES
    assert page_limit(1000, 50) == 2 * 20 + EXTRA_PAGES
    assert page_limit(0, 3, matched=3) is None  # a total of 0 that the pages contradict says nothing
    assert page_limit(4, 2, matched=8) == 2 * 2 + EXTRA_PAGES  # a count: more matches than it are a loop


def test_next_link_to_another_host_does_not_get_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "secret")
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [],
        "link": [{"relation": "next", "url": "http://internal-host:8080/fhir?_getpages=x"}],
    }
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/metadata", json=capability())
        mock.get(re.compile(re.escape(BASE) + r"/Condition.*"), json=page)
        options = SourceOptions(server=BASE, token_env="TOKEN")
        from fhirscreen.sources.server import make_client

        with pytest.raises(SourceError, match="next link points at another host"):
            read_all(ServerSource(options, make_client(options)))


def test_explain_skips_the_population_search() -> None:
    fake = FakeFhir(population(3))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, _q = read_all(
            source(), QueryPlan(PLAN.population_codes, PLAN.observation_codes, patient_ids=("p0001",))
        )
    assert ids_of(resources, "Patient") == {"p0001"}
    assert not any(e.startswith("Condition?code=") for e in fake.log)


def test_absolute_references_become_type_slash_id() -> None:
    fake = FakeFhir(population(2), absolute_refs=True)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, _q = read_all(source())
    refs = {r["subject"]["reference"] for r in resources if "subject" in r}
    assert refs == {"Patient/p0000", "Patient/p0001"}


def test_the_page_check_for_absolute_references_agrees_with_the_rewrite() -> None:
    """``holds_absolute_references`` lets a page skip the element walk: it must say True exactly when
    the walk would change something, for every kind of place and spelling a reference can have."""
    import copy
    import random

    rng = random.Random(11)
    base = "http://fhir.test/fhir"
    values = [
        f"{base}/Patient/p1",
        f"{base}/Medication/m 1",
        "Patient/p1",
        f"{base}x/Patient/p1",
        "http://other.test/fhir/Patient/p1",
        f"{base}",
        f"{base}/",
        f"see {base}/Patient/p1",
        "#med",
    ]
    keys = ["reference", "Reference", "display", "url", "fullUrl"]

    def node(depth: int) -> Any:
        if depth > 3 or rng.random() < 0.3:
            return rng.choice([*values, 5, None, True, 2.5])
        if rng.random() < 0.5:
            return [node(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(keys): node(depth + 1) for _ in range(rng.randint(0, 3))}

    seen = set()
    for _ in range(3000):
        page = {"resourceType": "Bundle", "link": [{"relation": "self", "url": f"{base}/Observation"}]}
        page["entry"] = [{"fullUrl": f"{base}/Observation/o1", "resource": node(0)}]
        rewritten = copy.deepcopy(page)
        normalise_references(rewritten, base)
        changes = rewritten != page
        assert holds_absolute_references(page, base) == changes, page
        assert holds_absolute_references(page, base + "/") == changes
        seen.add(changes)
    assert seen == {True, False}


def test_without_include_support_medications_are_fetched_by_id_in_batches() -> None:
    fake = FakeFhir(population(3), caps=capability(includes=False))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, _q = read_all(source())
    assert ids_of(resources, "Medication") == {"hcq"}
    assert fake.searches()["Medication"] == 1
    assert not any("_include" in e for e in fake.log)


def test_missing_patient_parameter_falls_back_to_subject() -> None:
    fake = FakeFhir(population(2), caps=capability(drop={"Procedure": {"patient"}}))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source()
        read_all(src)
    assert any(e.startswith("Procedure?subject=Patient/p0000") for e in fake.log)
    assert any("subject=Patient/id" in note for note in src.notes.fallbacks)


def test_type_the_server_lacks_is_skipped_with_a_warning() -> None:
    fake = FakeFhir(population(2), caps=capability(types=[t for t in TYPES if t != "ResearchSubject"]))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        _r, quality = read_all(source())
    assert not any(e.startswith("ResearchSubject") for e in fake.log)
    assert [f.problem for f in quality.findings] == ["type-not-supported"]


def test_server_that_cannot_search_conditions_by_code_suggests_bulk() -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/metadata", json=capability(drop={"Condition": {"code"}}))
        with pytest.raises(SourceError, match="try --bulk"):
            read_all(source())


def test_metadata_that_is_not_a_capability_statement() -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/metadata", json={"resourceType": "Patient", "id": "x"})
        with pytest.raises(SourceError, match=r"capability check.*expected a CapabilityStatement"):
            read_all(source())


def test_code_text_unsupported_falls_back_to_survey_category() -> None:
    fake = FakeFhir(population(2))
    with responses.RequestsMock() as mock:
        for name in ("combo-code", "code"):  # combo-code:text is probed first, then code:text
            mock.get(
                re.compile(re.escape(BASE) + rf"/Observation\?{name}:text=sledai&_summary.*"),
                status=400,
                json={
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-supported"}],
                },
            )
        fake.install(mock)
        read_all(source())
    assert not any(e.startswith("Observation?patient") and ":text" in e for e in fake.log)
    assert any("category=survey" in e for e in fake.log)


def test_stats_report_requests_bytes_and_time() -> None:
    fake = FakeFhir(population(2))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source()
        read_all(src)
    stats = src.stats()
    assert stats["requests"] == len(fake.log)
    assert stats["bytes"] > 0
    assert stats["resources"] == 2 * 5 + 1
    assert {"retries", "seconds", "pages"} <= set(stats)


# -- pure helpers -------------------------------------------------------------------------------------


def test_long_code_lists_are_chunked_to_keep_urls_short() -> None:
    codes = [f"{10000 + i}-{i % 10}" for i in range(400)]
    chunks = chunk_values(codes, MAX_CODES_CHARS)
    assert len(chunks) > 1
    assert [c for chunk in chunks for c in chunk] == codes
    assert all(len(",".join(chunk)) <= MAX_CODES_CHARS for chunk in chunks)
    plan = QueryPlan(PLAN.population_codes, tuple(Code(LOINC, c) for c in codes))
    searches = patient_searches(["p1"], plan, Capabilities())
    observation_urls = [s.path(200) for s in searches if s.resource_type == "Observation"]
    assert len(observation_urls) == len(chunks) + 2
    assert all(len(u) < 1200 for u in observation_urls)


def test_id_batches_respect_count_and_length() -> None:
    assert [len(b) for b in id_batches([f"p{i}" for i in range(250)])] == [
        MAX_IDS_PER_BATCH,
        MAX_IDS_PER_BATCH,
        50,
    ]
    long_ids = ["x" * 64] * 40
    assert all(len(",".join(b)) <= 1000 for b in id_batches(long_ids))


def test_search_codes_drop_systems_and_add_undotted_icd10() -> None:
    assert search_codes([Code(ICD10CM, "M32.14"), Code(SNOMED, "55464009")]) == [
        "55464009",
        "M32.14",
        "M3214",
    ]


def test_normalise_references_only_touches_this_server() -> None:
    resource: dict[str, Any] = {
        "subject": {"reference": f"{BASE}/Patient/1"},
        "performer": [{"reference": "https://other.test/fhir/Practitioner/2"}],
    }
    normalise_references(resource, BASE)
    assert resource["subject"]["reference"] == "Patient/1"
    assert resource["performer"][0]["reference"] == "https://other.test/fhir/Practitioner/2"


# -- value sets as exact codes; the types read for plans and dispenses --------------------------------


def sle_patient(pid: str, coding: dict[str, str]) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{pid}"}
    return [
        {"resourceType": "Patient", "id": pid, "birthDate": "1980-01-01"},
        {"resourceType": "Condition", "id": f"c-{pid}", "subject": subject, "code": {"coding": [coding]}},
    ]


def test_shipped_icd10cm_children_are_the_tabular_codes() -> None:
    # ICD-10-CM tabular, M32.1 "SLE with organ or system involvement": the subcategory and its seven codes.
    assert expand_prefix("M32.1") == [
        "M32.1",
        "M32.10",
        "M32.11",
        "M32.12",
        "M32.13",
        "M32.14",
        "M32.15",
        "M32.19",
    ]
    assert expand_prefix("Q99.9") is None  # not a prefix of the trial: no list, never a guess


def test_every_searched_prefix_of_the_bundled_trial_has_its_code_list() -> None:
    trial = load_trial(default_trial_file())
    plan = QueryPlan.for_trial(trial)
    assert plan.search_gaps == ()  # run tools/icd10cm_children.py after adding a prefix
    population = {c.code for c in plan.population_codes}
    assert {"M32.10", "M32.14", "M32.19", "M32.8", "M32.9"} <= population
    assert all(not c.code.endswith("*") for c in (*plan.population_codes, *plan.observation_codes))


def test_child_coded_and_who_coded_sle_patients_are_in_the_population_searched_on_a_server() -> None:
    # Issue 8 section 6: lupus nephritis coded only M32.14 (the trial's value set says M32.1*) was found
    # from files and missed by search; WHO ICD-10 codes the subcategory itself (M32.1).
    plan = QueryPlan.for_trial(load_trial(default_trial_file()))
    resources = (
        sle_patient("child", {"system": ICD10CM, "code": "M32.14"})
        + sle_patient("undotted", {"system": ICD10CM, "code": "M3215"})
        + sle_patient("who", {"system": "http://hl7.org/fhir/sid/icd-10", "code": "M32.1"})
        + sle_patient("snomed", {"system": SNOMED, "code": "68815009"})
        + sle_patient("ra", {"system": ICD10CM, "code": "M06.9"})
    )
    fake = FakeFhir(resources)
    with responses.RequestsMock() as mock:
        fake.install(mock)
        found, quality = read_all(source(), plan)
    assert ids_of(found, "Patient") == {"child", "undotted", "who", "snomed"}
    assert quality.findings == []


def test_a_prefix_without_a_code_list_is_reported_not_silently_skipped() -> None:
    vs = ValueSet("local_sle")
    vs.add("icd10cm", "Q99.9*")
    vs.add("snomed", "55464009")
    vs.add_text(r"\blupus\b")
    codes = searchable(vs)
    assert [c.code for c in codes.codes] == ["55464009"]
    gaps = codes.gaps("local_sle")
    assert "Q99.9*" in gaps[0] and "--bulk" in gaps[0]
    assert "text patterns" in gaps[1]
    plan = replace(PLAN, search_gaps=tuple(gaps))
    fake = FakeFhir(population(1))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        _r, quality = read_all(source(), plan)
    assert [f.problem for f in quality.findings] == ["not-searchable", "not-searchable"]


def test_plans_dispenses_and_appointments_are_searched_by_patient() -> None:
    searches = patient_searches(["p1", "p2"], PLAN, Capabilities.parse(capability()))
    by_type = {s.resource_type: s.params for s in searches}
    assert by_type["MedicationDispense"] == (
        ("patient", "p1,p2"),
        ("_include", "MedicationDispense:medication"),
    )
    for rtype in ("ServiceRequest", "CarePlan", "Appointment"):
        assert by_type[rtype] == (("patient", "p1,p2"),)


def test_appointment_without_a_patient_parameter_is_searched_by_actor() -> None:
    caps = Capabilities.parse(capability(drop={"Appointment": {"patient"}}))
    notes = PlanNotes()
    searches = patient_searches(["p1", "p2"], PLAN, caps, notes)
    appointment = next(s for s in searches if s.resource_type == "Appointment")
    assert appointment.params == (("actor", "Patient/p1,Patient/p2"),)
    assert any("actor=Patient/id" in n for n in notes.fallbacks)


def test_an_optional_type_that_cannot_be_searched_by_patient_is_skipped_with_a_warning() -> None:
    fake = FakeFhir(
        population(2),
        caps=capability(drop={"Appointment": {"patient", "actor"}, "CarePlan": {"patient", "subject"}}),
    )
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source())
    assert ids_of(resources, "Patient") == {"p0000", "p0001"}  # the run goes on
    assert not any(e.startswith(("Appointment", "CarePlan")) for e in fake.log)
    assert sorted(f.problem for f in quality.findings) == ["type-not-searchable", "type-not-searchable"]


def test_plans_dispenses_and_appointments_are_read_with_their_medications() -> None:
    resources = population(1)
    subject = {"reference": "Patient/p0000"}
    resources += [
        {"resourceType": "Medication", "id": "mmf", "code": {"text": "mycophenolate mofetil"}},
        {
            "resourceType": "MedicationDispense",
            "id": "md1",
            "status": "completed",
            "subject": subject,
            "medicationReference": {"reference": "Medication/mmf"},
        },
        {
            "resourceType": "ServiceRequest",
            "id": "sr1",
            "status": "active",
            "intent": "order",
            "subject": subject,
        },
        {"resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan", "subject": subject},
        {
            "resourceType": "Appointment",
            "id": "ap1",
            "status": "booked",
            "participant": [{"actor": {"reference": "Patient/p0000"}, "status": "accepted"}],
        },
        {
            "resourceType": "Appointment",
            "id": "ap-other",
            "status": "booked",
            "participant": [{"actor": {"reference": "Patient/other"}, "status": "accepted"}],
        },
    ]
    for includes in (True, False):
        fake = FakeFhir(resources, caps=capability(includes=includes))
        with responses.RequestsMock() as mock:
            fake.install(mock)
            found, quality = read_all(source())
        assert ids_of(found, "MedicationDispense") == {"md1"}
        assert ids_of(found, "Medication") == {"hcq", "mmf"}
        assert ids_of(found, "ServiceRequest") == {"sr1"}
        assert ids_of(found, "CarePlan") == {"cp1"}
        assert ids_of(found, "Appointment") == {"ap1"}
        assert quality.findings == []


def test_observation_codes_include_every_code_of_a_lab_value_set_not_only_loinc(tmp_path: Any) -> None:
    # A site that lists its local lab code beside the LOINC one must have it searched too.
    trial_file = tmp_path / "trial.yaml"
    text = default_trial_file().read_text(encoding="utf-8")
    anchor = '      - {system: loinc, code: "33914-3"'
    assert anchor in text
    local = '      - {system: "http://hospital.example/lab", code: "EGFR-LOCAL", display: "eGFR (local)"}\n'
    trial_file.write_text(text.replace(anchor, local + anchor, 1), encoding="utf-8")
    plan = QueryPlan.for_trial(load_trial(trial_file))
    assert "EGFR-LOCAL" in {c.code for c in plan.observation_codes}
    assert "55464009" not in {c.code for c in plan.observation_codes}  # diagnoses stay out


def test_observation_searches_are_started_first_and_results_keep_the_plan_order() -> None:
    """The long paging chains (every batch's Observations) go to the workers before the one-page searches,
    so that the last of them does not start late; what the run yields is in plan order all the same."""
    orders = []
    for concurrency in (1, 4):
        fake = FakeFhir(population(250))  # three batches
        with responses.RequestsMock() as mock:
            fake.install(mock)
            resources, _quality = read_all(source(concurrency=concurrency, observations="all"))
        orders.append([(r["resourceType"], r["id"]) for r in resources])
        if concurrency == 1:
            batch_searches = [e for e in fake.log if "patient=" in e and "_summary" not in e]
            kinds = [e.split("?")[0] for e in batch_searches]
            first_other = next(i for i, k in enumerate(kinds) if k != "Observation")
            assert kinds[:first_other] == ["Observation"] * 3  # one per batch, all before the rest
            assert "Observation" not in kinds[first_other:]
    assert orders[0] == orders[1]


# -- a Bulk export cut short ------------------------------------------------------------------------------


def _export_without(fake: FakeFhir, mock: responses.RequestsMock, left_out: str) -> None:
    """A candidate-only export whose files hold every candidate's resources but ``left_out``'s."""
    kept = [
        r
        for r in fake.resources
        if r["resourceType"] != "Medication"
        and r.get("id") != left_out
        and (r.get("subject") or {}).get("reference") != f"Patient/{left_out}"
    ]
    mock_candidate_export(mock, kept)


def mock_candidate_export(mock: responses.RequestsMock, exported: list[dict[str, Any]]) -> None:
    """A candidate-only (``Patient/$export``) job whose one NDJSON file holds ``exported``."""
    status = f"{BASE}/$export-poll-status?_jobId=1"
    mock.add(responses.POST, f"{BASE}/Patient/$export", status=202, headers={"Content-Location": status})
    mock.add(
        responses.GET,
        status,
        json={
            "transactionTime": "2026-06-01T00:00:00Z",
            "request": f"{BASE}/Patient/$export",
            "requiresAccessToken": False,
            "output": [{"type": "Mixed", "url": f"{BASE}/Binary/out"}],
            "error": [],
        },
    )
    mock.add(responses.GET, f"{BASE}/Binary/out", body="".join(json.dumps(r) + "\n" for r in exported))
    mock.add(responses.DELETE, status, status=202)


@pytest.mark.parametrize("on_server", [True, False])
def test_candidates_an_export_leaves_out_are_lost_data_unless_the_server_lacks_them(on_server: bool) -> None:
    """A server that caps what it fetches truncates an export silently. A candidate whose Patient the
    export left out, but which the server has, may have an incomplete record: a data-lost finding (the
    run is partial, the patient not offered as eligible). A Patient the server does not have at all is
    not an export cut short (the builder reports it as missing-patient)."""
    fake = FakeFhir(population(3))
    if not on_server:
        fake.resources = [r for r in fake.resources if r.get("id") != "p0001"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        _export_without(fake, mock, "p0001")
        fake.install(mock)
        _resources, quality = read_all(source(bulk=True, observations="codes"))
    lost = [f.where for f in quality.findings if f.problem == "data-lost"]
    assert lost == (["Patient/p0001"] if on_server else [])
    assert quality.partial is on_server


# -- search pages with entries that hold no resource -------------------------------------------------------


class JunkEntries(FakeFhir):
    """Every search page starts with entries that hold no resource to read."""

    JUNK: tuple[Any, ...] = (
        None, 3, "x", {"search": {"mode": "match"}}, {"resource": [1]}, {"resource": {"id": "r"}},
    )

    def page(self, search_id: str, offset: int, count: int) -> tuple[int, dict[str, str], str]:
        status, headers, text = super().page(search_id, offset, count)
        bundle = json.loads(text)
        bundle["entry"] = [*self.JUNK, *bundle["entry"]]
        return status, headers, json.dumps(bundle)


def test_page_entries_without_a_resource_are_findings_naming_search_page_and_entry() -> None:
    """They were skipped without a word; a server (or a proxy) that mangles entries went unnoticed."""
    fake = JunkEntries(population(2))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source())
    assert ids_of(resources, "Patient") == {"p0000", "p0001"}  # the run went on
    label = "Condition search (initial population), page 1"
    found = {f.where: f for f in quality.findings if f.where.startswith(label)}
    assert {where: f.message for where, f in found.items()} == {
        f"{label}, entry 0": "the entry is null, not a JSON object; skipped",
        f"{label}, entry 1": "the entry is a number, not a JSON object; skipped",
        f"{label}, entry 2": "the entry is a string, not a JSON object; skipped",
        f"{label}, entry 3": "the entry has no resource; skipped",
        f"{label}, entry 4": "the entry's resource is a list, not a JSON object; skipped",
        f"{label}, entry 5": "the entry's resource has no resourceType; skipped",
    }
    assert {(f.severity, f.problem) for f in found.values()} == {("warning", "not-fhir")}
    assert not quality.partial
