"""Merged or linked patients (reliability catalogue D14): ``Patient.link`` replaced-by / replaces.

One person, two Patient resources: the surviving id is the one candidate, screened on the resources of
both ids, with a ``merged-patient`` finding; the replaced id is not listed. A loop, or a link to a Patient
not in the data, is a ``patient-link`` warning and the records stay separate. seealso / refer: nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner

from fhirscreen.cli import main
from fhirscreen.quality import DataQuality
from fhirscreen.record import PopulationBuilder
from tests.unit.test_server_source import FakeFhir, population, read_all, source

SAMPLE = Path(__file__).resolve().parents[2] / "sample_bundles" / "bundles" / "urn" / "sle-eligible-01.json"
CANCER = {
    "resourceType": "Condition",
    "id": "old-cancer",
    "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    },
    "verificationStatus": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
        ]
    },
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]},
    "onsetDateTime": "2025-08-01",
}


def _resolve(node: Any, aliases: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in aliases:
                node[key] = aliases[value]
            else:
                _resolve(value, aliases)
    elif isinstance(node, list):
        for value in node:
            _resolve(value, aliases)


def eligible(pid: str) -> list[dict[str, Any]]:
    """The eligible sample patient as ``pid``, references as ``Type/id``."""
    bundle = json.loads(SAMPLE.read_text())
    aliases = {
        e["fullUrl"]: f'{e["resource"]["resourceType"]}/{e["resource"]["id"]}' for e in bundle["entry"]
    }
    resources = [copy.deepcopy(e["resource"]) for e in bundle["entry"]]
    _resolve(resources, aliases)
    renamed: list[dict[str, Any]] = json.loads(json.dumps(resources).replace("sle-eligible-01", pid))
    return renamed


def patient(pid: str, *links: tuple[str, str], active: bool = True) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "active": active,
        "gender": "female",
        "birthDate": "1988-01-01",
        "link": [{"other": {"reference": f"Patient/{other}"}, "type": kind} for kind, other in links],
    }


Links = tuple[tuple[str, str], ...]


def split_record(old_links: Links, new_links: Links) -> list[dict[str, Any]]:
    """The eligible sample, its Conditions filed under the replaced id ``p1old`` (ids ``old-...``), the
    rest under the surviving ``p1``: only their union is an eligible SLE record."""
    out = []
    for r in eligible("p1"):
        if r["resourceType"] == "Patient":
            r["link"] = [{"other": {"reference": f"Patient/{o}"}, "type": k} for k, o in new_links]
        elif r["resourceType"] == "Condition":
            r["id"] = "old-" + r["id"]
            r["subject"] = {"reference": "Patient/p1old"}
        out.append(r)
    moved: list[dict[str, Any]] = json.loads(json.dumps(out).replace('"Condition/p1-', '"Condition/old-p1-'))
    return [*moved, patient("p1old", *old_links, active=False)]


def chain_record() -> list[dict[str, Any]]:
    """The eligible sample filed under ``pa``, replaced by ``pb``, replaced by ``pc``."""
    resources = [r for r in eligible("p1") if r["resourceType"] != "Patient"]
    chained: list[dict[str, Any]] = json.loads(json.dumps(resources).replace('"Patient/p1"', '"Patient/pa"'))
    return [
        *chained,
        patient("pa", ("replaced-by", "pb"), active=False),
        patient("pb", ("replaced-by", "pc"), active=False),
        patient("pc"),
    ]


def write(folder: Path, resources: list[dict[str, Any]], fmt: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "ndjson":
        by_type: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            by_type.setdefault(r["resourceType"], []).append(r)
        for rtype, rs in by_type.items():
            (folder / f"{rtype}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rs))
    else:  # one collection Bundle per patient id (the replaced id's first in file order)
        owners: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            ref = r["id"] if r["resourceType"] == "Patient" else r.get("subject", {}).get("reference", "x/x")
            owners.setdefault(ref.split("/")[-1], []).append(r)
        for n, (pid, rs) in enumerate(sorted(owners.items(), key=lambda kv: kv[0] != "p1old")):
            base = "http://example.org/fhir"
            entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in rs]
            bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
            (folder / f"{n:02d}-{pid}.json").write_text(json.dumps(bundle))


def screen(data: Path, out: Path) -> dict[str, Any]:
    args = ["screen", "--data", str(data), "--as-of", "2026-06-01", "--workers", "1", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    doc: dict[str, Any] = json.loads((out / "latest" / "candidates.json").read_text())
    return doc


def findings(doc: dict[str, Any], problem: str) -> list[dict[str, str]]:
    return [f for f in doc["data_quality"] if f["problem"] == problem]


LINKS = {
    "both": ((("replaced-by", "p1"),), (("replaces", "p1old"),)),
    "replaced-by": ((("replaced-by", "p1"),), ()),
    "replaces": ((), (("replaces", "p1old"),)),
}


@pytest.mark.usefixtures("bundled_trial_in_cli")
@pytest.mark.parametrize("links", list(LINKS))
@pytest.mark.parametrize("fmt", ["ndjson", "bundle"])
def test_the_survivor_is_one_candidate_screened_on_the_evidence_of_both_ids(
    tmp_path: Path, fmt: str, links: str
) -> None:
    write(tmp_path / "d", split_record(*LINKS[links]), fmt)
    doc = screen(tmp_path / "d", tmp_path / "out")
    listed = {p["patient"]: p for p in doc["patients"]}
    assert list(listed) == ["Patient/p1"]  # the replaced id is not listed
    p1 = listed["Patient/p1"]
    assert p1["status"] == "eligible"
    evidence = {e for c in p1["criteria"].values() for e in c["evidence"]}
    assert "Condition/old-p1-sle" in evidence  # filed under the replaced id
    assert "Observation/p1-ana" in evidence  # filed under the surviving id
    merged = findings(doc, "merged-patient")
    assert len(merged) == 1
    assert merged[0]["severity"] == "info"
    assert merged[0]["where"] == "Patient/p1"
    assert "Patient/p1old" in merged[0]["message"] and "Patient/p1 " in merged[0]["message"]
    assert not findings(doc, "patient-link")


@pytest.mark.usefixtures("bundled_trial_in_cli")
@pytest.mark.parametrize("fmt", ["ndjson", "bundle"])
def test_an_exclusion_filed_under_the_replaced_id_counts_for_the_survivor(tmp_path: Path, fmt: str) -> None:
    cancer = dict(CANCER, subject={"reference": "Patient/p1old"})
    old = patient("p1old", ("replaced-by", "p1"), active=False)
    write(tmp_path / "d", [*eligible("p1"), old, cancer], fmt)
    doc = screen(tmp_path / "d", tmp_path / "out")
    listed = {p["patient"]: p for p in doc["patients"]}
    assert list(listed) == ["Patient/p1"]
    assert listed["Patient/p1"]["status"] == "ineligible"
    evidence = {e for c in listed["Patient/p1"]["criteria"].values() for e in c["evidence"]}
    assert "Condition/old-cancer" in evidence


@pytest.mark.usefixtures("bundled_trial_in_cli")
def test_a_chain_resolves_to_its_end(tmp_path: Path) -> None:
    resources = chain_record()
    write(tmp_path / "d", resources, "ndjson")
    doc = screen(tmp_path / "d", tmp_path / "out")
    assert [p["patient"] for p in doc["patients"]] == ["Patient/pc"]
    assert {f["message"].split()[0] for f in findings(doc, "merged-patient")} == {"Patient/pa", "Patient/pb"}


def explain(data: Path, pid: str) -> dict[str, Any]:
    args = ["explain", pid, "--data", str(data), "--as-of", "2026-06-01", "--format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    assert "only one of them was read" not in result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.mark.usefixtures("bundled_trial_in_cli")
@pytest.mark.parametrize("asked", ["p1", "p1old", "Patient/p1old"])
@pytest.mark.parametrize("links", list(LINKS))
@pytest.mark.parametrize("fmt", ["ndjson", "bundle"])
def test_explain_reads_the_linked_ids_too_and_explains_the_survivor_as_screening_does(
    tmp_path: Path, fmt: str, links: str, asked: str
) -> None:
    """``explain`` reads only the patient asked for: a person merged from two ids was explained on half
    the record (here: no SLE diagnosis, "not in the population") with a warning. Either id is explained
    now as the survivor, on both ids' resources, as the screening lists them."""
    write(tmp_path / "d", split_record(*LINKS[links]), fmt)
    doc = explain(tmp_path / "d", asked)
    assert doc["patient"] == "Patient/p1"
    assert doc["status"] == "eligible"
    evidence = {e for c in doc["criteria"].values() for e in c["evidence"]}
    assert {"Condition/old-p1-sle", "Observation/p1-ana"} <= evidence


@pytest.mark.usefixtures("bundled_trial_in_cli")
def test_explain_follows_a_chain_to_its_end(tmp_path: Path) -> None:
    resources = chain_record()
    write(tmp_path / "d", resources, "ndjson")
    doc = explain(tmp_path / "d", "pb")
    assert doc["patient"] == "Patient/pc" and doc["status"] == "eligible"


@pytest.mark.usefixtures("bundled_trial_in_cli")
@pytest.mark.parametrize("fmt", ["ndjson", "bundle"])
def test_a_link_loop_is_a_warning_and_the_records_stay_separate(tmp_path: Path, fmt: str) -> None:
    resources = [r for r in eligible("p1") + eligible("p1old") if r["resourceType"] != "Patient"]
    resources += [patient("p1", ("replaced-by", "p1old")), patient("p1old", ("replaced-by", "p1"))]
    write(tmp_path / "d", resources, fmt)
    doc = screen(tmp_path / "d", tmp_path / "out")
    assert {p["patient"] for p in doc["patients"]} == {"Patient/p1", "Patient/p1old"}
    warned = findings(doc, "patient-link")
    assert [f["severity"] for f in warned] == ["warning"]
    assert "loop" in warned[0]["message"]
    assert not findings(doc, "merged-patient")


@pytest.mark.usefixtures("bundled_trial_in_cli")
@pytest.mark.parametrize("kind", ["replaced-by", "replaces"])
def test_a_link_to_a_patient_not_in_the_data_is_a_warning_never_a_merge_into_nothing(
    tmp_path: Path, kind: str
) -> None:
    resources = eligible("p1")
    for r in resources:
        if r["resourceType"] == "Patient":
            r["link"] = [{"other": {"reference": "Patient/gone"}, "type": kind}]
    write(tmp_path / "d", resources, "ndjson")
    doc = screen(tmp_path / "d", tmp_path / "out")
    assert [(p["patient"], p["status"]) for p in doc["patients"]] == [("Patient/p1", "eligible")]
    warned = findings(doc, "patient-link")
    assert len(warned) == 1 and warned[0]["severity"] == "warning"
    assert "Patient/gone" in warned[0]["message"] and "not merged" in warned[0]["message"]


@pytest.mark.usefixtures("bundled_trial_in_cli")
@pytest.mark.parametrize("kind", ["seealso", "refer"])
def test_seealso_and_refer_links_change_nothing(tmp_path: Path, kind: str) -> None:
    resources = [r for r in eligible("p1") + eligible("p2") if r["resourceType"] != "Patient"]
    resources += [patient("p1", (kind, "p2")), patient("p2", (kind, "p1"))]
    write(tmp_path / "d", resources, "ndjson")
    doc = screen(tmp_path / "d", tmp_path / "out")
    assert {p["patient"] for p in doc["patients"]} == {"Patient/p1", "Patient/p2"}
    assert not findings(doc, "merged-patient") and not findings(doc, "patient-link")


def test_the_builder_merges_whatever_order_the_resources_come_in() -> None:
    """Resources may come before the Patient that links them (server pages, Spark groups)."""
    cancer = dict(CANCER, subject={"reference": "Patient/old"})
    sle = dict(CANCER, id="sle", subject={"reference": "Patient/new"})
    resources = [cancer, sle, patient("old", ("replaced-by", "new")), patient("new")]
    for order in (resources, resources[::-1]):
        quality = DataQuality()
        builder = PopulationBuilder(quality)
        for r in order:
            builder.add(copy.deepcopy(r), "test")
        population = builder.build()
        assert list(population.records) == ["new"]
        assert {c["id"] for c in population.records["new"].of_type("Condition")} == {"old-cancer", "sle"}
        assert [f.problem for f in quality.findings] == ["merged-patient"]


# -- server search mode: the linked records are read too ---------------------------------------------------


@pytest.mark.parametrize("survivor_is_candidate", [True, False])
def test_server_mode_reads_the_linked_patients_records_and_the_builder_merges_them(
    survivor_is_candidate: bool,
) -> None:
    """p0000 is the candidate (the SLE Condition). Its linked record, which has no SLE Condition of its
    own, is read by id in a further batch, so the merge sees both ids whichever of them survives."""
    data = population(1)
    other = "p0000-new" if not survivor_is_candidate else "p0000-old"
    cancer = dict(CANCER, subject={"reference": f"Patient/{other}"})
    for r in data:
        if r["resourceType"] == "Patient" and r["id"] == "p0000":
            kind = "replaces" if survivor_is_candidate else "replaced-by"
            r["link"] = [{"other": {"reference": f"Patient/{other}"}, "type": kind}]
    data += [patient(other, ("replaced-by" if survivor_is_candidate else "replaces", "p0000")), cancer]
    fake = FakeFhir(data)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        resources, _quality = read_all(source())
    assert {r["id"] for r in resources if r["resourceType"] == "Patient"} == {"p0000", other}
    quality = DataQuality()
    builder = PopulationBuilder(quality)
    for r in resources:
        builder.add(r, "server")
    records = builder.build().records
    survivor = "p0000" if survivor_is_candidate else other
    assert list(records) == [survivor]
    assert {"c0", "old-cancer"} <= {c["id"] for c in records[survivor].of_type("Condition")}
    assert [f.problem for f in quality.findings if f.problem.endswith("patient") or "link" in f.problem] == [
        "merged-patient"
    ]


@pytest.mark.parametrize(
    ("links", "lost_at"),
    [
        ([("new", "replaces", "old")], "old"),  # the survivor is the candidate, the replaced id's data lost
        ([("old", "replaced-by", "new")], "new"),  # the candidate was replaced, the survivor's data lost
        ([("old", "replaced-by", "gone")], "gone"),  # the lost id's Patient never came: no merge at all
        ([("a", "replaced-by", "b"), ("b", "replaced-by", "new")], "a"),  # two links away
    ],
)
def test_data_lost_for_one_id_of_a_person_is_lost_for_every_linked_id(
    links: list[tuple[str, str, str]], lost_at: str
) -> None:
    """A search lost for the linked id (its Conditions may hold the exclusion) must keep the record
    screened under the other id from being offered as eligible: ``screening.caution`` reads data-lost
    findings by patient, so the builder says it for every id of the person."""
    ids = sorted({pid for pid, _kind, other in links for pid in (pid, other)})
    linked: dict[str, list[tuple[str, str]]] = {}
    for pid, kind, other in links:
        linked.setdefault(pid, []).append((kind, other))
    quality = DataQuality()
    quality.lost(f"Patient/{lost_at}", "a search page that never came")
    builder = PopulationBuilder(quality)
    for pid in ids:
        if pid != "gone":
            builder.add(patient(pid, *linked.get(pid, [])), "server")
    builder.build()
    lost = {f.where for f in quality.findings if f.problem == "data-lost"}
    assert lost == {f"Patient/{pid}" for pid in ids}


def test_data_lost_for_an_unlinked_patient_stays_theirs() -> None:
    quality = DataQuality()
    quality.lost("Patient/other", "a search page that never came")
    builder = PopulationBuilder(quality)
    for r in (patient("old", ("replaced-by", "new")), patient("new"), patient("other")):
        builder.add(r, "server")
    builder.build()
    assert [f.where for f in quality.findings if f.problem == "data-lost"] == ["Patient/other"]
