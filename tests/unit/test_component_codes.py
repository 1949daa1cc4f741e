"""Labs held only in ``Observation.component``: the code-filtered Observation searches find them too.

FHIR's ``code`` search parameter matches ``Observation.code`` only, so an eGFR recorded as a component of
a panel whose own code is the panel's is not found by ``Observation?code=``. The plan searches with
``combo-code`` (code OR component code) where the CapabilityStatement lists it, adds a
``component-code`` search where it lists only that, and otherwise says so once (``not-searchable``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
import responses

from fhirscreen.fhir.codes import LOINC
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import QueryPlan
from fhirscreen.sources.bulk import kickoff_query, patient_kickoff_parameters, type_filters
from fhirscreen.sources.server import (
    COMPONENT_GAP,
    Capabilities,
    component_param,
    patient_searches,
    request_bound,
)
from fhirscreen.trial.loader import load_trial
from tests.unit.test_server_source import (
    BASE,
    PLAN,
    FakeFhir,
    capability,
    ids_of,
    population,
    read_all,
    source,
)

PANEL = "24362-6"  # a renal function panel: its own code is not one of the trial's


def with_panel(resources: list[dict[str, Any]], pid: str = "p0001") -> list[dict[str, Any]]:
    """The population, plus a panel Observation whose eGFR (33914-3) is only a component."""
    panel = {
        "resourceType": "Observation",
        "id": "panel1",
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": LOINC, "code": PANEL}], "text": "Renal function panel"},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "33914-3"}], "text": "eGFR"},
                "valueQuantity": {"value": 20, "unit": "mL/min/{1.73_m2}"},
            }
        ],
    }
    sledai = {
        "resourceType": "Observation",
        "id": "visit1",
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "urn:local", "code": "VISIT"}], "text": "Rheumatology visit"},
        "component": [{"code": {"text": "SLEDAI-2K total"}, "valueInteger": 6}],
    }
    return [*resources, panel, sledai]


def caps_with(*params: str) -> dict[str, Any]:
    """The test capability with exactly these component parameters on Observation."""
    statement = capability(drop={"Observation": {"combo-code"}})
    for resource in statement["rest"][0]["resource"]:
        if resource["type"] == "Observation":
            resource["searchParam"] += [{"name": p} for p in params]
    return statement


def observation_queries(fake: FakeFhir) -> list[dict[str, str]]:
    out = []
    for entry in fake.log:
        if entry.startswith("Observation?") and "_summary" not in entry:
            out.append({k: v[0] for k, v in parse_qs(entry.split("?", 1)[1]).items()})
    return out


# -- which parameter ------------------------------------------------------------------------------------


def test_component_param_follows_the_capability_statement() -> None:
    assert component_param(Capabilities.parse(caps_with("combo-code", "component-code"))) == "combo-code"
    assert component_param(Capabilities.parse(caps_with("component-code"))) == "component-code"
    assert component_param(Capabilities.parse(caps_with())) is None
    # An empty statement "assumes the standard" for the common parameters, never for these: a strict
    # server would refuse the search, a lenient one would ignore it and send every Observation.
    assert component_param(Capabilities()) is None


def test_combo_code_replaces_code_in_the_patient_searches() -> None:
    caps = Capabilities.parse(caps_with("combo-code"))
    searches = [s for s in patient_searches(["p1", "p2"], PLAN, caps) if s.resource_type == "Observation"]
    params = [dict(s.params) for s in searches]
    assert {"patient": "p1,p2", "combo-code": "33914-3,5048-4"} in params
    assert not any("code" in p for p in params)  # one search per chunk, as before: not two
    assert {"patient": "p1,p2", "code:text": "sledai"} in params  # what the caller found it answers


def test_component_code_is_a_second_search_beside_code() -> None:
    caps = Capabilities.parse(caps_with("component-code"))
    searches = [s for s in patient_searches(["p1"], PLAN, caps) if s.resource_type == "Observation"]
    params = [dict(s.params) for s in searches]
    assert {"patient": "p1", "code": "33914-3,5048-4"} in params
    assert {"patient": "p1", "component-code": "33914-3,5048-4"} in params
    # One more search per code chunk (request_bound counts it).
    before = len(patient_searches(["p1"], PLAN, Capabilities()))
    assert len(patient_searches(["p1"], PLAN, caps)) == before + 1


def test_without_either_parameter_the_code_search_is_as_before() -> None:
    caps = Capabilities.parse(caps_with())
    searches = [s for s in patient_searches(["p1"], PLAN, caps) if s.resource_type == "Observation"]
    assert dict(searches[0].params) == {"patient": "p1", "code": "33914-3,5048-4"}
    assert not any("component-code" in dict(s.params) or "combo-code" in dict(s.params) for s in searches)


@pytest.mark.parametrize("param", ["combo-code", "component-code"])
def test_the_trial_code_lists_stay_within_the_url_budget(param: str) -> None:
    plan = QueryPlan.for_trial(load_trial())
    caps = Capabilities.parse(caps_with(param))
    ids = [f"{'x' * 60}{i:04d}" for i in range(15)]  # long ids: the id budget is full
    searches = [s for s in patient_searches(ids, plan, caps) if s.resource_type == "Observation"]
    by_code = [s for s in searches if param in dict(s.params)]
    assert len(by_code) >= 2  # the trial's codes take more than one chunk
    assert all(len(s.path(1000)) < 2300 for s in searches), max(len(s.path(1000)) for s in searches)


# -- the source, end to end on the fake server --------------------------------------------------------


def test_combo_code_server_finds_a_lab_held_only_in_a_component() -> None:
    fake = FakeFhir(with_panel(population(3)), caps=caps_with("combo-code"))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source())
    assert {"panel1", "visit1"} <= ids_of(resources, "Observation")
    queries = observation_queries(fake)
    assert any(q.get("combo-code") == "33914-3,5048-4" for q in queries)
    assert not any("code" in q for q in queries)
    # The SLEDAI total in a component is found by combo-code:text (probed first, answered).
    assert any(q.get("combo-code:text") == "sledai" for q in queries)
    assert quality.findings == []


def test_component_code_server_finds_it_with_a_second_search() -> None:
    fake = FakeFhir(with_panel(population(3)), caps=caps_with("component-code"))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source())
    assert "panel1" in ids_of(resources, "Observation")
    queries = observation_queries(fake)
    assert any(q.get("code") == "33914-3,5048-4" for q in queries)
    assert any(q.get("component-code") == "33914-3,5048-4" for q in queries)
    assert quality.findings == []


def test_a_server_that_cannot_search_components_says_so_once() -> None:
    many = with_panel(population(150))  # two batches: the finding is still one
    fake = FakeFhir(many, caps=caps_with())
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(page_size=1000)
        resources, quality = read_all(src)
    assert "panel1" not in ids_of(resources, "Observation")  # today's behaviour, no longer silent
    assert [(f.problem, f.message) for f in quality.findings] == [("not-searchable", COMPONENT_GAP)]
    assert "--observations all" in COMPONENT_GAP


def test_auto_on_a_server_that_cannot_search_components_reads_every_observation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default does not trade a lab held in a component for speed: with neither combo-code nor
    component-code, --observations auto reads every Observation of the candidates (no race)."""
    many = with_panel(population(150))
    fake = FakeFhir(many, caps=caps_with())
    with responses.RequestsMock() as mock, caplog.at_level("INFO", logger="fhirscreen"):
        fake.install(mock)
        src = source(page_size=1000, observations="auto")
        resources, quality = read_all(src)
    assert "panel1" in ids_of(resources, "Observation")
    assert quality.findings == []
    assert src.observation_plan == "all"
    assert not any("code" in q for q in observation_queries(fake) if "_summary" not in q)
    assert "cannot search component codes" in caplog.text


def test_observations_all_reads_components_and_needs_no_finding() -> None:
    fake = FakeFhir(with_panel(population(3)), caps=caps_with())
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, quality = read_all(source(observations="all"))
    assert "panel1" in ids_of(resources, "Observation")
    assert quality.findings == []


def test_request_bound_holds_with_component_code_searches() -> None:
    fake = FakeFhir(with_panel(population(250)), caps=caps_with("component-code"))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source(page_size=1000, concurrency=4)
        read_all(src)
    assert src.stats()["requests"] <= request_bound(250, PLAN)


def test_explain_of_one_patient_uses_combo_code_too() -> None:
    fake = FakeFhir(with_panel(population(3)), caps=caps_with("combo-code"))
    plan = QueryPlan(PLAN.population_codes, PLAN.observation_codes, patient_ids=("p0001",))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        resources, _q = read_all(source(observations="auto"), plan)
    assert "panel1" in ids_of(resources, "Observation")


def test_incremental_rereads_with_last_updated_use_combo_code() -> None:
    fake = FakeFhir(with_panel(population(3)), caps=caps_with("combo-code"))
    plan = QueryPlan(PLAN.population_codes, PLAN.observation_codes, patient_ids=("p0001",))
    with responses.RequestsMock() as mock:
        fake.install(mock)
        src = source()
        caps = src.capabilities()
        got = [r for r, _o in src.read_patients(plan, DataQuality(), caps, (("_lastUpdated", "ge2026"),))]
    assert "panel1" in ids_of(got, "Observation")
    combo = [q for q in observation_queries(fake) if "combo-code" in q]
    assert combo and all(q.get("_lastUpdated") == "ge2026" for q in combo)


# -- Bulk export _typeFilter ------------------------------------------------------------------------------


def test_type_filters_use_combo_code_where_listed() -> None:
    combo = Capabilities.parse(caps_with("combo-code"))
    assert type_filters(PLAN, caps=combo, sledai_text="combo-code:text") == [
        "Observation?combo-code=33914-3,5048-4",
        "Observation?combo-code:text=sledai",
        "Observation?category=survey",
    ]
    component = Capabilities.parse(caps_with("component-code"))
    assert type_filters(PLAN, caps=component)[:2] == [
        "Observation?code=33914-3,5048-4",
        "Observation?component-code=33914-3,5048-4",
    ]
    without = type_filters(PLAN, caps=Capabilities.parse(caps_with()))
    assert without[0] == "Observation?code=33914-3,5048-4"
    query = kickoff_query(PLAN, caps=combo)
    assert unquote(query.split("_typeFilter=")[1].split("&")[0]) == "Observation?combo-code=33914-3,5048-4"
    body = patient_kickoff_parameters(PLAN, ["p1"], caps=combo)
    wanted = {"name": "_typeFilter", "valueString": "Observation?combo-code=33914-3,5048-4"}
    assert wanted in body["parameter"]


def test_bulk_kickoff_on_a_combo_code_server_filters_by_combo_code() -> None:
    kicked: list[dict[str, Any]] = []
    fake = FakeFhir(population(2), caps=caps_with("combo-code"))

    def kickoff(request: Any) -> tuple[int, dict[str, str], str]:
        kicked.append(json.loads(request.body))
        return 500, {}, "stop here"  # the kick-off body is what this test is about

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, f"{BASE}/Patient/$export", callback=kickoff)
        fake.install(mock)
        with pytest.raises(Exception):  # noqa: B017 - the failed kick-off after retries
            read_all(source(bulk=True, observations="codes"))
    filters = [p["valueString"] for p in kicked[0]["parameter"] if p["name"] == "_typeFilter"]
    assert "Observation?combo-code=33914-3,5048-4" in filters
    assert "Observation?combo-code:text=sledai" in filters
    assert not any(f.startswith("Observation?code=") for f in filters)



# -- incremental store ------------------------------------------------------------------------------------


def test_a_store_read_before_components_were_searched_is_read_in_full_once(tmp_path: Any) -> None:
    from fhirscreen.store.incremental import IncrementalSource
    from fhirscreen.store.sqlite import SCHEMA_VERSION, StoreState
    from tests.unit.test_store import incremental_source

    plan = QueryPlan.for_trial(load_trial())
    src = incremental_source(tmp_path)
    assert isinstance(src, IncrementalSource)
    key = json.loads(src.source_key(plan))
    assert key["observation_match"] == "code-or-component"
    del key["observation_match"]  # what a store written by code= searches holds
    mark = "2026-12-01T02:30:00Z"
    old = StoreState(SCHEMA_VERSION, json.dumps(key, sort_keys=True), mark, mark)
    assert (src._full_reason(old, src.source_key(plan)) or "").startswith("the search plan changed")
    same = StoreState(SCHEMA_VERSION, src.source_key(plan), mark, mark)
    assert src._full_reason(same, src.source_key(plan)) is None
