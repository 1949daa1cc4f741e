"""When one resource id arrives more than once, the latest version wins (meta.versionId, then lastUpdated)."""

from __future__ import annotations

import json
from typing import Any

from fhirscreen.criteria.base import Outcome
from fhirscreen.pipeline import load_population
from fhirscreen.quality import DataQuality
from fhirscreen.record import PopulationBuilder
from fhirscreen.sources.files import FileSource
from tests.builders import condition, observation, patient, record


def versioned(
    resource: dict[str, Any], version: str | None = None, updated: str | None = None
) -> dict[str, Any]:
    meta = {k: v for k, v in (("versionId", version), ("lastUpdated", updated)) if v}
    return {**resource, "meta": meta}


TB = condition("snomed", "56717001", display="Tuberculosis", onset="2026-05-20", id="tb1")


def test_later_version_entered_in_error_replaces_the_earlier_one_whatever_the_order(evaluate):
    v1 = versioned(TB, "1")
    v2 = versioned({**TB, "verificationStatus": {"coding": [{"code": "entered-in-error"}]}}, "2")
    for order in ((v1, v2), (v2, v1)):
        res = evaluate("E10", record(*order))
        assert res.outcome is Outcome.PASS, res.reason


def test_version_ids_compare_as_numbers_not_text(evaluate):
    resolved = {**TB, "clinicalStatus": {"coding": [{"code": "resolved"}]}, "abatementDateTime": "2026-05-25"}
    res = evaluate("E10", record(versioned(resolved, "10"), versioned(TB, "9")))
    assert res.outcome is Outcome.PASS  # version 10 (resolved) is later than 9 (active)


def test_last_updated_decides_without_version_ids(evaluate):
    low = observation("62238-1", "2026-05-01", value=20, unit="mL/min/{1.73_m2}", id="e1")
    high = {**low, "valueQuantity": {**low["valueQuantity"], "value": 75}}
    older = versioned(low, updated="2026-05-02T08:00:00Z")
    newer = versioned(high, updated="2026-05-02T10:00:00+01:00")  # 09:00 UTC: still later
    for order in ((older, newer), (newer, older)):
        res = evaluate("I4", record(*order))
        assert res.outcome is Outcome.PASS, res.reason
        assert res.evidence == ("Observation/e1",)


def test_latest_patient_version_wins_and_duplicate_is_reported_once():
    quality = DataQuality()
    builder = PopulationBuilder(quality)
    builder.add(versioned(patient(birth="1985-03-15"), "1"), "a.json")
    builder.add(versioned(patient(birth="1986-03-15"), "2"), "b.json")
    builder.add(versioned(patient(birth="1985-03-15"), "1"), "c.json")
    rec = builder.build().records["p1"]
    assert rec.patient["birthDate"] == "1986-03-15"
    assert [f for f in quality.findings if f.problem == "duplicate"]


def test_same_version_twice_keeps_one_copy():
    obs = versioned(observation("62238-1", value=70, unit="mL/min/{1.73_m2}", id="e9"), "3")
    rec = record(obs, dict(obs))
    assert len(rec.of_type("Observation")) == 1


def test_file_mode_collection_bundle_and_re_export_keep_the_latest_version(tmp_path, trial):
    sle = condition("icd10cm", "M32.14", "2018-01-01", id="sle", pid="v1")
    tb = condition("icd10cm", "A15.0", "2026-05-10", id="tb", pid="v1")
    tb_v2 = {**tb, "clinicalStatus": {"coding": [{"code": "resolved"}]}, "abatementDateTime": "2026-05-20"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient("v1")}, {"resource": sle}, {"resource": versioned(tb_v2, "2")},
    ]}
    (tmp_path / "a.json").write_text(json.dumps(bundle))
    (tmp_path / "b.ndjson").write_text(json.dumps(versioned(tb, "1")) + "\n")
    population = load_population(FileSource(tmp_path), trial)
    held = population.records["v1"].of_type("Condition")
    assert [c["meta"]["versionId"] for c in held if c["id"] == "tb"] == ["2"]


def test_copies_that_differ_with_nothing_to_order_them_are_a_conflict_decided_the_same_in_any_order(
    tmp_path, trial
):
    """Two copies of one eGFR (75 and 20) and of one Patient, no meta: which is used must not depend on
    the order of the files (it did: the later file won across files, the first line within one)."""
    sle = condition("icd10cm", "M32.14", "2018-01-01", id="sle", pid="d1")
    egfr = observation("98979-8", "2026-05-12", id="g", pid="d1", value=75, unit="mL/min/{1.73_m2}")
    other = {**egfr, "valueQuantity": {"value": 20, "unit": "mL/min/{1.73_m2}"}}
    old = patient("d1", birth="1940-01-01")
    kept: set[float] = set()
    for first, second, name in ((egfr, other, "ab"), (other, egfr, "ba")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "1.ndjson").write_text("".join(json.dumps(r) + "\n" for r in (first, patient("d1"))))
        (folder / "2.ndjson").write_text("".join(json.dumps(r) + "\n" for r in (second, old, sle)))
        population = load_population(FileSource(folder), trial)
        [held] = population.records["d1"].of_type("Observation")
        kept.add(held["valueQuantity"]["value"])
        conflicts = {f.where for f in population.quality.findings if f.problem == "conflicting-duplicate"}
        assert conflicts == {"Observation/g", "Patient/d1"}
    assert len(kept) == 1


def test_identical_copies_without_meta_are_no_conflict():
    quality = DataQuality()
    builder = PopulationBuilder(quality)
    obs = observation("62238-1", value=70, unit="mL/min/{1.73_m2}", id="e9")
    builder.add(obs, "a")
    builder.add(dict(obs), "b")
    assert not [f for f in quality.findings if f.problem == "conflicting-duplicate"]
