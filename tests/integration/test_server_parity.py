"""Server mode finds what file mode finds (issue 8 section 6) for the server-parity fixture patients.

tests/fixtures/server_parity holds SLE patients coded only with an ICD-10-CM child of a prefix (M32.14,
undotted M3215), a SNOMED-only one, a WHO ICD-10 one, and records of the types read for plans and pharmacy
fills (MedicationDispense with a separate Medication, ServiceRequest, CarePlan with a contained order,
Appointment), and a ResearchSubject that names its study only by reference (the ResearchStudy, like the
Medication, is outside the Patient compartment). They are loaded into the real HAPI server with the
samples (conftest.loaded_server); here search, Bulk export and files are compared on these patients,
resource by resource and criterion by criterion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

import pytest

from fhirscreen.fhir.resources import Resource, patient_id_of
from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import QueryPlan, Source
from fhirscreen.sources.bulk import patient_kickoff_parameters
from fhirscreen.sources.factory import SourceOptions, open_source
from fhirscreen.trial.loader import load_trial
from tests.integration.conftest import PARITY_DATA, LoadedServer
from tests.integration.test_server_mode import Run, assert_same_screening, screen

pytestmark = pytest.mark.integration

# parity-panel: eGFR, creatinine, anti-dsDNA, hCG and a SLEDAI-2K total held only in Observation.component
# of panels whose own codes are not the trial's (search finds them by combo-code, combo-code:text).
PANEL = "parity-panel"
STUDY = "parity-study"  # on-study in ResearchStudy/parity-msc-study (a UC-MSC study), named only by reference
SLE = ("parity-m3214", "parity-undotted", "parity-snomed", "parity-dispense", "parity-planned", PANEL, STUDY)
WHO = "parity-who"  # in the population once the WHO ICD-10 system is read as ICD-10 (issue 8 section 2)
NOT_SLE = "parity-ra"
PLAN_TYPES = ("MedicationDispense", "ServiceRequest", "CarePlan", "Appointment")
SHARED = ("Medication", "ResearchStudy")  # outside the Patient compartment: read by reference


@pytest.fixture(scope="module")
def parity_file_run(tmp_path_factory: pytest.TempPathFactory, loaded_server: LoadedServer) -> Run:
    return screen(tmp_path_factory.mktemp("parity-file"), "--data", str(loaded_server.data))


@pytest.fixture(scope="module")
def parity_search_run(tmp_path_factory: pytest.TempPathFactory, loaded_server: LoadedServer) -> Run:
    return screen(tmp_path_factory.mktemp("parity-search"), "--server", loaded_server.base_url, "-v")


@pytest.fixture(scope="module")
def parity_bulk_run(tmp_path_factory: pytest.TempPathFactory, loaded_server: LoadedServer) -> Run:
    return screen(tmp_path_factory.mktemp("parity-bulk"), "--server", loaded_server.base_url, "--bulk", "-v")


@pytest.fixture(scope="module")
def parity_codes_run(tmp_path_factory: pytest.TempPathFactory, loaded_server: LoadedServer) -> Run:
    """The code-filtered Observation plan, forced (the default may pick the unfiltered one)."""
    return screen(
        tmp_path_factory.mktemp("parity-codes"),
        "--server",
        loaded_server.base_url,
        "--observations",
        "codes",
        "-v",
    )


def patients(run: Run) -> dict[str, dict[str, object]]:
    return {p["patient"].split("/")[1]: p for p in run.candidates["patients"]}


def parity_ids() -> set[str]:
    return {*SLE, WHO, NOT_SLE}


def read_resources(source: Source, plan: QueryPlan) -> set[tuple[str, str]]:
    """(type, id) of every resource of the parity patients, and the Medications and ResearchStudies they
    point at."""
    quality = DataQuality()
    resources: list[Resource] = [r for r, _origin in source.read(plan, quality)]
    return {
        (str(r["resourceType"]), str(r["id"]))
        for r in resources
        if patient_id_of(r) in parity_ids() or str(r.get("id", "")).startswith("parity-")
    }


def fixture_resources() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in sorted(PARITY_DATA.glob("*.json")):
        for entry in json.loads(path.read_text())["entry"]:
            found.add((entry["resource"]["resourceType"], entry["resource"]["id"]))
    return found


def of_patients(keys: Iterable[tuple[str, str]], ids: Iterable[str]) -> set[tuple[str, str]]:
    prefixes = tuple(f"{i}-" for i in ids)
    return {k for k in keys if k[1] in ids or k[1].startswith(prefixes) or k[0] in SHARED}


def test_child_coded_and_snomed_only_sle_patients_are_in_the_population_by_search(
    parity_file_run: Run, parity_search_run: Run, parity_bulk_run: Run
) -> None:
    for run in (parity_file_run, parity_search_run, parity_bulk_run):
        found = patients(run)
        assert set(SLE) <= set(found), sorted(set(SLE) - set(found))
        assert NOT_SLE not in found
    assert (WHO in patients(parity_search_run)) == (WHO in patients(parity_file_run))


def test_search_bulk_and_files_agree_on_every_patient_and_criterion(
    parity_file_run: Run, parity_search_run: Run, parity_bulk_run: Run
) -> None:
    want = patients(parity_file_run)
    for run in (parity_search_run, parity_bulk_run):
        got = patients(run)
        for pid in SLE:
            assert got[pid] == want[pid], f"{pid} differs from file mode"
    assert_same_screening(parity_file_run, parity_search_run)
    assert_same_screening(parity_file_run, parity_bulk_run)


def test_plans_on_the_server_decide_e9_and_e2_as_in_files(
    parity_search_run: Run, parity_bulk_run: Run
) -> None:
    for run in (parity_search_run, parity_bulk_run):
        found = patients(run)
        snomed = found["parity-snomed"]["criteria"]  # type: ignore[index]
        assert snomed["E9"]["outcome"] == "fail"
        assert snomed["E9"]["evidence"] == ["Appointment/parity-snomed-appointment"]
        assert snomed["E2"]["outcome"] == "fail"
        assert "CarePlan/parity-snomed-careplan" in snomed["E2"]["evidence"]
        planned = found["parity-planned"]["criteria"]  # type: ignore[index]
        assert planned["E9"]["outcome"] == "fail"
        assert planned["E9"]["evidence"] == [
            "ServiceRequest/parity-planned-order",
            "CarePlan/parity-planned-careplan",
        ]


def test_every_parity_resource_is_read_by_search_bulk_and_files(loaded_server: LoadedServer) -> None:
    trial = load_trial()
    expected = fixture_resources()
    by_file = read_resources(open_source(SourceOptions(data=PARITY_DATA)), QueryPlan.for_trial(trial))
    assert by_file == expected
    server = SourceOptions(server=loaded_server.base_url, concurrency=2, timeout=120.0)
    # Search reads the population found by code (the WHO-coded M32.1 Condition included) and the
    # Medication the fills point at, through _include.
    by_search = read_resources(open_source(server), QueryPlan.for_trial(trial))
    population = {*SLE, WHO}
    assert by_search == of_patients(expected, population)
    assert {("MedicationDispense", f"parity-dispense-fill{i}") for i in range(1, 6)} <= by_search
    assert ("Medication", "parity-hcq-200") in by_search
    assert ("ResearchStudy", "parity-msc-study") in by_search  # by id: ResearchStudy?_id=
    assert {k for k in by_search if k[0] in PLAN_TYPES} == {
        k for k in expected if k[0] in PLAN_TYPES and not k[1].startswith("parity-ra")
    }
    # Bulk export reads the candidates only (Patient/$export with the patient list), and the Medications
    # their fills point at by id: the same resources as search, the non-SLE patient's Appointment not.
    by_bulk = read_resources(open_source(replace(server, bulk=True)), QueryPlan.for_trial(trial))
    assert by_bulk == by_search


def test_search_plan_asks_for_the_new_types_and_the_prefix_children(parity_search_run: Run) -> None:
    log = parity_search_run.stderr
    assert "MedicationDispense?patient=" in log and "_include=MedicationDispense:medication" in log
    for rtype in ("ServiceRequest", "CarePlan", "Appointment"):
        assert f"{rtype}?patient=" in log, rtype
    population_searches = [line for line in log.splitlines() if "Condition?code=" in line]
    assert any("M32.14" in line for line in population_searches)
    assert any("M3214" in line for line in population_searches)


def test_bulk_export_asks_for_the_new_types(parity_bulk_run: Run) -> None:
    log = parity_bulk_run.stderr
    assert "Patient/$export" in log and "bulk export started for" in log  # the candidates only
    types = dict(
        (p["name"], p.get("valueString"))
        for p in patient_kickoff_parameters(QueryPlan.for_trial(load_trial()), ["x"])["parameter"]
    )["_type"].split(",")
    for rtype in PLAN_TYPES:
        assert rtype in types, rtype
    assert "Medication" not in types  # outside the Patient compartment: read by id
    assert "Medication?_id=" in log


def test_a_study_named_only_by_reference_is_read_by_every_mode(
    parity_file_run: Run, parity_search_run: Run, parity_bulk_run: Run
) -> None:
    """The ResearchSubject names its study only as ResearchStudy/parity-msc-study: every mode reads that
    study (files, search and Bulk by id) and E5 and E7 fail naming it, as in file mode."""
    for run in (parity_file_run, parity_search_run, parity_bulk_run):
        criteria = patients(run)[STUDY]["criteria"]  # type: ignore[index]
        for criterion in ("E5", "E7"):
            assert criteria[criterion]["outcome"] == "fail", (criterion, criteria[criterion])
            assert "ResearchStudy/parity-msc-study" in criteria[criterion]["reason"]
            assert "ResearchStudy/parity-msc-study" in criteria[criterion]["evidence"]
    for run in (parity_search_run, parity_bulk_run):
        assert "ResearchStudy?_id=" in run.stderr


def test_labs_held_only_in_components_are_found_by_every_read(
    parity_file_run: Run, parity_codes_run: Run, parity_search_run: Run, parity_bulk_run: Run
) -> None:
    """The panel patient's component-only labs decide I3, I4, I6 and E13 alike in every mode: by code
    search they are found only through combo-code (a code= search would leave them unknown)."""
    want = patients(parity_file_run)[PANEL]["criteria"]  # type: ignore[index]
    expected = {"I3": "pass", "I4": "fail", "I6": "pass", "E13": "fail"}
    assert {c: want[c]["outcome"] for c in expected} == expected
    assert want["I4"]["evidence"] == ["Observation/parity-panel-renal"]
    for run in (parity_codes_run, parity_search_run, parity_bulk_run):
        got = patients(run)[PANEL]["criteria"]  # type: ignore[index]
        for criterion in expected:
            assert got[criterion] == want[criterion], f"{criterion} differs from file mode"
    log = parity_codes_run.stderr
    assert "combo-code=" in log and "combo-code:text=sledai" in log
    assert "Observation component codes" not in log  # HAPI lists combo-code: no not-searchable finding
    assert_same_screening(parity_file_run, parity_codes_run)
