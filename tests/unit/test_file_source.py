"""File source speed-ups must not change what is read: skipped types are counted, bad lines reported,
and the memory prefilter keeps exactly the initial population's resources, whatever the file order."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhirscreen.cli import main
from fhirscreen.pipeline import load_population, run_screening
from fhirscreen.quality import DataQuality
from fhirscreen.record import Dropped, Population, PopulationBuilder
from fhirscreen.runs.observe import ObservedSource
from fhirscreen.screening import ScreeningRun
from fhirscreen.sources.base import QueryPlan
from fhirscreen.sources.files import FileSource, bundle_resources
from fhirscreen.trial.loader import Trial

AS_OF = date(2026, 6, 1)
SNOMED = "http://snomed.info/sct"
SLE = "55464009"  # Systemic lupus erythematosus
ASTHMA = "195967001"


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1990-01-01", "gender": "female"}


def condition(cid: str, pid: str, code: str, ref: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": ref or f"Patient/{pid}"},
        "onsetDateTime": "2020-01-01",
    }


def observation(oid: str, pid: str, ref: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "33914-3"}]},
        "subject": {"reference": ref or f"Patient/{pid}"},
        "effectiveDateTime": "2026-05-01",
        "valueQuantity": {"value": 75, "unit": "mL/min/{1.73_m2}"},
    }


def encounter(eid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "subject": {"reference": f"Patient/{pid}"},
    }


def ndjson(path: Path, *resources: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in resources))
    return path


def plan(trial: Trial) -> QueryPlan:
    return QueryPlan.for_trial(trial)


def unfiltered(path: Path) -> Population:
    """The population as read before the speed-ups: every resource parsed, every patient kept."""
    quality = DataQuality()
    builder = PopulationBuilder(quality)
    builder.add_all(FileSource(path).read(None, quality))
    return builder.build()


def kept_ids(population: Population) -> dict[str, list[str]]:
    return {
        pid: sorted(f"{t}/{r['id']}" for t, rs in rec.resources.items() for r in rs)
        for pid, rec in population.records.items()
    }


def findings(population: Population) -> list[tuple[str, str, str]]:
    return [(f.where, f.problem, f.message) for f in population.quality.sorted()]


# ------------------------------------------------------------------------------ skipping and counting


def test_unscreened_ndjson_lines_are_counted_without_being_parsed(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "mixed.ndjson"
    file.write_text(
        '{"resourceType":"Encounter","id":"e1", not JSON }\n'  # damaged inside: skipped unparsed
        + json.dumps(patient("p1"))
        + "\n"
        + json.dumps(encounter("e2", "p1"))
        + "\n"
    )
    quality = DataQuality()
    items = list(FileSource(file).read(plan(trial), quality))
    assert [r["resourceType"] for r, _o in items] == ["Encounter", "Patient", "Encounter"]
    assert items[0][0] == {"resourceType": "Encounter"}  # a stub: counted, never parsed
    assert items[1][0]["id"] == "p1"  # screened types are parsed as before
    assert items[2][1] == f"{file}:3"
    assert quality.findings == []
    population = load_population(FileSource(file), trial)
    assert population.skipped == {"Encounter": 2}
    # Read without a plan (as before the speed-up), the damaged line is an error instead.
    assert unfiltered(file).skipped == {"Encounter": 1}


def test_truncated_line_of_a_skipped_type_is_still_reported(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "Encounter.ndjson"
    line = json.dumps(encounter("e1", "p1"))
    file.write_text(line[:-10] + "\n" + line + "\n")
    population = load_population(FileSource(file), trial)
    reported = [(f.where, f.problem) for f in population.quality.findings]
    assert reported == [(f"{file}:1", "malformed-json"), (str(file), "no-conditions")]
    assert population.skipped == {"Encounter": 1}


def test_malformed_lines_report_the_standard_library_message(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "Observation.ndjson"
    file.write_text('{"resourceType":"Observation","id":"o1",}\n\n   \n[1, 2]\n')
    population = load_population(FileSource(file), trial)
    assert findings(population) == [
        (
            f"{file}:1",
            "malformed-json",
            "line is not valid JSON (Expecting property name enclosed in double quotes); skipped",
        ),
        (
            f"{file}:4",
            "not-fhir",
            "the JSON is a list, not a FHIR resource (an object with a resourceType); skipped",
        ),
    ]


def test_what_orjson_refuses_the_standard_library_still_reads_and_a_nan_is_no_value(
    tmp_path: Path, trial: Trial
) -> None:
    obs = json.dumps(observation("o1", "p1")).replace("75", "NaN")  # json accepts NaN, orjson does not
    file = tmp_path / "data.ndjson"
    file.write_text(
        json.dumps(patient("p1")) + "\n" + obs + "\n" + json.dumps(condition("c1", "p1", SLE)) + "\n"
    )
    population = load_population(FileSource(file), trial)
    [obs_read] = population.records["p1"].of_type("Observation")  # the resource is read
    assert obs_read["valueQuantity"]["value"] is None  # NaN is not a number a criterion may use
    assert [(f.where, f.problem) for f in population.quality.findings] == [(f"{file}:2", "non-finite-number")]


def test_gzipped_ndjson_is_skipped_and_counted_the_same(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "Encounter.ndjson.gz"
    with gzip.open(file, "wt") as fh:
        fh.write(json.dumps(encounter("e1", "p1")) + "\n")
    assert load_population(FileSource(file), trial).skipped == {"Encounter": 1}


def test_bundle_entries_of_skipped_types_are_stubs_and_kept_ones_rewritten(trial: Trial) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}},
            {
                "fullUrl": "urn:uuid:e1",
                "resource": encounter("e1", "p1") | {"subject": {"reference": "urn:uuid:p1"}},
            },
            {
                "fullUrl": "urn:uuid:o1",
                "resource": observation("o1", "p1", ref="urn:uuid:p1")
                | {"encounter": {"reference": "urn:uuid:e1"}},
            },
        ],
    }
    wanted = frozenset(plan(trial).resource_types)
    out = [r for r, _o in bundle_resources(bundle, "b.json", DataQuality(), wanted)]
    assert out[1] == {"resourceType": "Encounter"}
    assert out[2]["subject"] == {"reference": "Patient/p1"}
    assert out[2]["encounter"] == {"reference": "Encounter/e1"}  # references to skipped types still resolve


# ------------------------------------------------------------------------------ memory prefilter


def population_files(tmp_path: Path) -> Path:
    """Bulk-style NDJSON where the order is unkind: observations and patients come before conditions,
    and one candidate's SLE diagnosis comes after another of their conditions."""
    data = tmp_path / "export"
    data.mkdir()
    ndjson(
        data / "1-Observation.ndjson",
        observation("o-sle", "sle"),
        observation("o-other", "other"),
        observation("o-late", "late"),
    )
    ndjson(data / "2-Patient.ndjson", patient("sle"), patient("other"), patient("late"))
    ndjson(
        data / "3-Condition.ndjson",
        condition("c-sle", "sle", SLE),
        condition("c-other", "other", ASTHMA),
        condition("c-late-asthma", "late", ASTHMA),
        condition("c-late", "late", SLE),
        condition("c-nobody", "ghost", ASTHMA),
        condition("c-late-after", "late", ASTHMA),
    )
    ndjson(
        data / "4-Observation.ndjson",
        observation("o-sle-2", "sle"),
        observation("o-other-2", "other"),
        observation("o-ghost", "ghost"),
        {"resourceType": "Observation", "id": "o-nosubject", "status": "final"},
    )
    return data


def test_prefilter_keeps_the_population_whatever_the_file_order(tmp_path: Path, trial: Trial) -> None:
    data = population_files(tmp_path)
    before = unfiltered(data)
    after = load_population(FileSource(data), trial)
    assert set(after.records) == set(before.records) == {"sle", "other", "late"}  # patients read unchanged
    for pid in ("sle", "late"):
        assert kept_ids(after)[pid] == kept_ids(before)[pid]
        assert after.records[pid].patient == before.records[pid].patient
    assert kept_ids(after)["late"] == [
        "Condition/c-late",
        "Condition/c-late-after",
        "Condition/c-late-asthma",
        "Observation/o-late",
    ]
    assert after.records["other"].resources == {}  # not in the population: checked, not kept
    assert after.records["other"].patient == {"resourceType": "Patient", "id": "other"}
    # Same findings: no duplicates from the second reading, the missing Patient and the missing
    # subject are still reported for patients outside the population, with the same counts.
    assert findings(after) == findings(before)
    assert (
        "Patient/ghost",
        "missing-patient",
        "2 resource(s) refer to Patient/ghost, which is not in the data",
    ) in (findings(after))


def test_prefilter_screens_the_same_as_reading_everything(tmp_path: Path, trial: Trial) -> None:
    data = population_files(tmp_path)
    run = run_screening(FileSource(data), trial, AS_OF)
    assert sorted(s.patient_id for s in run.patients) == ["late", "sle"]
    assert run.patients_read == 3


def test_prefilter_needs_no_second_reading_for_one_bundle_per_patient(
    tmp_path: Path, trial: Trial, caplog: pytest.LogCaptureFixture
) -> None:
    for pid, code in (("sle", SLE), ("other", ASTHMA)):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": f"urn:uuid:{pid}", "resource": patient(pid)},
                {
                    "fullUrl": f"urn:uuid:o-{pid}",
                    "resource": observation(f"o-{pid}", pid, ref=f"urn:uuid:{pid}"),
                },
                {
                    "fullUrl": f"urn:uuid:c-{pid}",
                    "resource": condition(f"c-{pid}", pid, code, ref=f"urn:uuid:{pid}"),
                },
            ],
        }
        (tmp_path / f"{pid}.json").write_text(json.dumps(bundle))
    caplog.set_level("INFO", logger="fhirscreen")
    population = load_population(FileSource(tmp_path), trial)
    assert kept_ids(population) == {"sle": ["Condition/c-sle", "Observation/o-sle"], "other": []}
    assert population.records["sle"].of_type("Observation")[0]["subject"] == {"reference": "Patient/sle"}
    assert "again" not in caplog.text


def test_duplicates_of_kept_resources_are_still_reported(tmp_path: Path, trial: Trial) -> None:
    data = tmp_path / "d"
    data.mkdir()
    ndjson(data / "a.ndjson", patient("sle"), condition("c1", "sle", SLE), observation("o1", "sle"))
    ndjson(data / "b.ndjson", observation("o1", "sle"), patient("sle"))
    population = load_population(FileSource(data), trial)
    assert [(f.where, f.problem) for f in population.quality.findings] == [
        ("Observation/o1", "duplicate"),
        ("Patient/sle", "duplicate"),
    ]
    assert kept_ids(population)["sle"] == ["Condition/c1", "Observation/o1"]


def test_explain_keeps_a_patient_outside_the_population(tmp_path: Path, trial: Trial) -> None:
    data = population_files(tmp_path)
    population = load_population(FileSource(data), trial, ("other",))
    assert list(population.records) == ["other"]
    assert kept_ids(population)["other"] == kept_ids(unfiltered(data))["other"]
    assert population.records["other"].patient["birthDate"] == "1990-01-01"


def test_second_reading_does_not_count_skipped_types_twice(tmp_path: Path, trial: Trial) -> None:
    data = tmp_path / "d"
    data.mkdir()
    late_encounter = {"id": "e1", "resourceType": "Encounter", "subject": {"reference": "Patient/late"}}
    ndjson(data / "1.ndjson", patient("late"), late_encounter, observation("o1", "late"))  # type not first
    ndjson(data / "2.ndjson", condition("c1", "late", SLE))
    population = load_population(FileSource(data), trial)
    assert population.skipped == unfiltered(data).skipped == {"Encounter": 1}
    assert kept_ids(population)["late"] == ["Condition/c1", "Observation/o1"]
    assert population.records["late"].patient["birthDate"] == "1990-01-01"


def medication(mid: str) -> dict[str, Any]:
    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"
    return {"resourceType": "Medication", "id": mid, "code": {"coding": [{"system": rx, "code": "979092"}]}}


def administration(aid: str, pid: str, med: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": aid,
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationReference": {"reference": med},
        "effectiveDateTime": "2026-05-01",
    }


def test_only_medications_that_kept_resources_refer_to_are_kept(tmp_path: Path, trial: Trial) -> None:
    data = tmp_path / "d"
    data.mkdir()
    # Bulk order: the Medication file comes before the resources that refer to it.
    ndjson(data / "Condition.ndjson", condition("c1", "sle", SLE), condition("c2", "other", ASTHMA))
    ndjson(
        data / "Medication.ndjson", medication("m-sle"), medication("m-other"), {"resourceType": "Medication"}
    )
    ndjson(
        data / "MedicationAdministration.ndjson",
        administration("a1", "sle", "Medication/m-sle"),
        administration("a2", "other", "Medication/m-other"),
    )
    ndjson(data / "Patient.ndjson", patient("sle"), patient("other"))
    population = load_population(FileSource(data), trial)
    record = population.records["sle"]
    assert set(record.medications) == {"m-sle"}
    assert record.medication(record.of_type("MedicationAdministration")[0]) == medication("m-sle")
    assert findings(population) == findings(unfiltered(data))  # the Medication without an id: reported


def test_bundle_medications_resolve_without_reading_again(
    tmp_path: Path, trial: Trial, caplog: pytest.LogCaptureFixture
) -> None:
    for pid, code in (("sle", SLE), ("other", ASTHMA)):
        entries = [
            (pid, patient(pid)),
            (f"m-{pid}", medication(f"m-{pid}")),
            (f"a-{pid}", administration(f"a-{pid}", pid, f"urn:uuid:m-{pid}")),
            (f"c-{pid}", condition(f"c-{pid}", pid, code)),
        ]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{key}", "resource": res} for key, res in entries],
        }
        (tmp_path / f"{pid}.json").write_text(json.dumps(bundle))
    caplog.set_level("INFO", logger="fhirscreen")
    population = load_population(FileSource(tmp_path), trial)
    assert set(population.records["sle"].medications) == {"m-sle"}
    [use] = population.records["sle"].of_type("MedicationAdministration")
    assert use["medicationReference"] == {"reference": "Medication/m-sle"}
    assert "again" not in caplog.text


# ------------------------------------------------------------------------------ other patients' lines


def dropped_lines_files(tmp_path: Path) -> Path:
    """NDJSON where most lines belong to patients outside the population, in every shape the source's
    drop path must either handle as the builder would or leave to the builder."""
    data = tmp_path / "export"
    data.mkdir()
    unusable = {**observation("o-other-eie", "other"), "status": "entered-in-error"}
    contained = {
        **observation("o-other-contained", "other"),
        "contained": [{"resourceType": "Patient", "id": "inner"}],
    }
    history = observation("o-other-history", "other", ref="Patient/other/_history/2")
    absolute = observation("o-ghost-absolute", "ghost", ref="http://ehr.example/fhir/Patient/ghost")
    no_id = {k: v for k, v in observation("x", "other").items() if k != "id"}
    empty_id = {**observation("x", "other"), "id": ""}
    two_refs = {**observation("o-other-two", "other"), "performer": [{"reference": "Patient/sle"}]}
    ndjson(
        data / "1-Observation.ndjson",
        observation("o-late-early", "late"),  # before the late patient joins: dropped, then re-read
        observation("o-sle", "sle"),
        observation("o-other", "other"),
        unusable,
        contained,
        history,
        absolute,
        no_id,
        empty_id,
        two_refs,
        observation("o-ghost", "ghost"),  # no Patient anywhere: a missing-patient finding
        {**observation("o-ghost-eie", "ghost"), "status": "entered-in-error"},  # not counted in it
        {**observation("o-ghost-subjectless", "ghost"), "subject": {"display": "somebody"}},
        {**observation("o-other-odd", "other"), "subject": "Patient/other"},  # not a Reference
        encounter("e-other", "other"),  # a type screening skips: counted, never kept
    )
    ndjson(
        data / "2-Condition.ndjson",
        condition("c-sle", "sle", SLE),
        condition("c-other", "other", ASTHMA),
        {**condition("c-other-refuted", "other", ASTHMA),
         "verificationStatus": {"coding": [{"code": "refuted"}]}},
        condition("c-late", "late", SLE),
        condition("c-ghost", "ghost", ASTHMA),
    )
    ndjson(
        data / "3-Observation.ndjson",
        observation("o-late-after", "late"),
        observation("o-other-after", "other"),
        observation("o-ghost-after", "ghost"),
    )
    ndjson(data / "4-Patient.ndjson", patient("sle"), patient("other"), patient("late"))
    return data


def test_other_patients_lines_are_dropped_by_the_source_with_the_same_findings(
    tmp_path: Path, trial: Trial
) -> None:
    data = dropped_lines_files(tmp_path)
    before = unfiltered(data)
    after = load_population(FileSource(data), trial)
    assert set(after.records) == set(before.records) == {"sle", "other", "late"}
    for pid in ("sle", "late"):
        assert kept_ids(after)[pid] == kept_ids(before)[pid]
    assert kept_ids(after)["late"] == [
        "Condition/c-late", "Observation/o-late-after", "Observation/o-late-early"
    ]
    assert after.records["other"].resources == {}
    assert after.skipped == before.skipped == {"Encounter": 1}
    # Every finding of the full reading: the two lines without an id, the subjectless one, and the
    # missing Patient counted over usable resources only, whether dropped by the source or not.
    assert findings(after) == findings(before)
    problems = [problem for _where, problem, _message in findings(after)]
    assert problems.count("no-id") == 2
    assert (
        "Patient/ghost",
        "missing-patient",
        "4 resource(s) refer to Patient/ghost, which is not in the data",
    ) in findings(after)


def test_the_source_hands_on_only_what_the_builder_must_see(tmp_path: Path, trial: Trial) -> None:
    """Lines of patients outside the kept set are dropped unless the builder has something to say
    about them (no id) or the plain reading does not apply (the builder's own rules decide)."""
    data = dropped_lines_files(tmp_path)
    keep: set[str] = set()
    dropped = Dropped()
    the_plan = dataclasses.replace(
        plan(trial), keep_patients=keep, population=trial.population, dropped=dropped
    )
    quality = DataQuality()
    handed = [(r.get("resourceType"), r.get("id")) for r, _o in FileSource(data).read(the_plan, quality)]
    assert ("Observation", "o-other") not in handed
    assert ("Observation", "o-other-eie") not in handed
    assert ("Observation", "o-other-contained") not in handed  # the top-level subject decides
    assert ("Observation", "o-other-history") not in handed  # patient_id reads the history form
    assert ("Observation", "o-other-two") not in handed  # a performer is not the subject
    assert ("Observation", None) in handed and ("Observation", "") in handed  # no-id: the builder's
    assert ("Observation", "o-ghost-subjectless") in handed  # no subject: the builder reports it
    assert ("Observation", "o-other-odd") in handed  # not a Reference: no subject either
    assert ("Encounter", None) in handed  # a stub of a skipped type
    assert ("Patient", "other") in handed  # Patients always go on (stubs, duplicates)
    # The late patient: their early line was dropped on the first reading and comes on the second.
    assert handed.count(("Observation", "o-late-early")) == 1
    assert keep == {"sle", "late"}
    # Usable ones only: o-ghost, o-ghost-absolute, o-ghost-after, c-ghost (not o-ghost-eie); for
    # "other" neither o-other-eie nor the refuted Condition.
    assert dropped.usable["ghost"] == 4
    assert dropped.usable["other"] == 6


def test_explain_drops_other_patients_lines_too(tmp_path: Path, trial: Trial) -> None:
    data = dropped_lines_files(tmp_path)
    population = load_population(FileSource(data), trial, ("other",))
    assert kept_ids(population)["other"] == kept_ids(unfiltered(data))["other"]
    assert findings(population) == findings(unfiltered(data))


class _HandingEverythingOn(FileSource):
    """The file source as before other patients' lines were dropped in it: everything is handed on."""

    def read(self, plan: QueryPlan | None, quality: DataQuality):  # type: ignore[no-untyped-def]
        return super().read(None if plan is None else dataclasses.replace(plan, dropped=None), quality)


def test_dropped_lines_still_count_as_read(tmp_path: Path, trial: Trial) -> None:
    """run.json's resources_read and the progress display count what the source dropped itself."""
    data = dropped_lines_files(tmp_path)
    observed = ObservedSource(FileSource(data))
    before = ObservedSource(_HandingEverythingOn(data))
    after = load_population(observed, trial)  # type: ignore[arg-type]
    handed = load_population(before, trial)  # type: ignore[arg-type]
    assert observed.resources == before.resources
    assert observed.resources["Observation"] == 19  # 17 lines, o-sle and o-late-early read again
    assert findings(after) == findings(handed)
    assert kept_ids(after) == kept_ids(handed)


@pytest.mark.parametrize("kind", ["urn", "relative"])
def test_ndjson_lines_that_hold_bundles_are_read_like_the_bundle_files(
    tmp_path: Path, trial: Trial, kind: str
) -> None:
    """Some exports write one patient's Bundle per NDJSON line: each is opened (its entries screened,
    references rewritten), never skipped as one resource of type Bundle."""
    bundles = Path(__file__).resolve().parents[2] / "sample_bundles" / "bundles" / kind
    lines = [json.dumps(json.loads(f.read_text(encoding="utf-8"))) for f in sorted(bundles.glob("*.json"))]
    (tmp_path / "patients.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")

    from_lines = run_screening(FileSource(tmp_path), trial, AS_OF)
    from_files = run_screening(FileSource(bundles), trial, AS_OF)

    assert len(from_lines.patients) == len(from_files.patients) > 10
    assert [(s.patient_id, s.status, s.score) for s in from_lines.patients] == [
        (s.patient_id, s.status, s.score) for s in from_files.patients
    ]

    def results(run: ScreeningRun) -> list[dict[str, tuple[object, ...]]]:
        return [{c: (r.outcome, r.reason, r.evidence) for c, r in s.results.items()} for s in run.patients]

    assert results(from_lines) == results(from_files)
    assert "Bundle" not in from_lines.skipped_types


def test_an_sle_patient_whose_patient_resource_is_missing_is_screened_not_lost(tmp_path: Path) -> None:
    """README: every patient of the initial population appears. Without a Patient resource the age and
    sex are unknown (I1 unknown, so at best possible), and a warning says the Patient is missing."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "Patient.ndjson").write_text(json.dumps(patient("p1")) + "\n")
    (data / "Condition.ndjson").write_text(
        json.dumps(condition("c1", "p1", SLE)) + "\n" + json.dumps(condition("c2", "unlisted", SLE)) + "\n"
    )
    args = ["screen", "--data", str(data), "--as-of", "2026-06-01", "--format", "json"]
    result = CliRunner().invoke(main, args)
    report = json.loads(result.stdout)
    by_id = {p["patient"]: p for p in report["patients"]}
    assert set(by_id) == {"Patient/p1", "Patient/unlisted"}
    unlisted = by_id["Patient/unlisted"]
    assert unlisted["status"] != "eligible"
    assert unlisted["criteria"]["I1"]["outcome"] == "unknown"
    [warning] = [f for f in report["data_quality"] if f["problem"] == "missing-patient"]
    assert warning["where"] == "Patient/unlisted" and "read without it" in warning["message"]
    assert "1 patients read" in result.stderr or "1 patient read" in result.stderr


# -- JSON that is not a resource, in Bundles and NDJSON ----------------------------------------------------


def test_bundle_entries_that_hold_no_resource_are_findings_at_their_own_index(
    tmp_path: Path, trial: Trial
) -> None:
    """null, a number or a string as an entry were dropped without a word, and the entries after them
    were then named by the wrong index. Every entry keeps its place (Bundle.entry[i]); the rest is read."""
    entries: list[Any] = [
        None, 3, "x", {"fullUrl": "urn:uuid:x"}, {"resource": "Patient/p1"}, {"resource": {"id": "r"}},
        {"resource": patient("p1")}, {"resource": condition("c1", "p1", SLE)},
    ]
    file = tmp_path / "bundle.json"
    file.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1"} and population.records["p1"].of_type("Condition")
    assert findings(population) == [
        (f"{file} entry 0", "not-fhir", "the entry is null, not a JSON object; skipped"),
        (f"{file} entry 1", "not-fhir", "the entry is a number, not a JSON object; skipped"),
        (f"{file} entry 2", "not-fhir", "the entry is a string, not a JSON object; skipped"),
        (f"{file} entry 3", "not-fhir", "the entry has no resource; skipped"),
        (f"{file} entry 4", "not-fhir", "the entry's resource is a string, not a JSON object; skipped"),
        (f"{file} entry 5", "not-fhir", "the entry's resource has no resourceType; skipped"),
    ]
    assert not population.quality.partial


def test_a_bundle_whose_entry_is_not_a_list_says_what_it_is(tmp_path: Path, trial: Trial) -> None:
    file = tmp_path / "bundle.json"
    file.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": 7}))
    ndjson(tmp_path / "good.ndjson", patient("p1"), condition("c1", "p1", SLE))
    population = load_population(FileSource(tmp_path), trial)
    assert findings(population) == [
        (str(file), "data-lost", "the bundle was skipped: its entry is not a list (it is a number)"),
    ]


def test_ndjson_lines_of_json_that_is_not_an_object_each_say_what_they_are(
    tmp_path: Path, trial: Trial
) -> None:
    file = tmp_path / "export.ndjson"
    resources = [json.dumps(patient("p1")), json.dumps(condition("c1", "p1", SLE))]
    lines = ["[]", "3", '"x"', "null", "true", '{"id": "x"}', *resources]
    file.write_text("\n".join(lines) + "\n")
    population = load_population(FileSource(file), trial)
    assert set(population.records) == {"p1"}
    assert [(w, m.split(",")[0]) for w, p, m in findings(population) if p == "not-fhir"] == [
        (f"{file}:1", "the JSON is a list"),
        (f"{file}:2", "the JSON is a number"),
        (f"{file}:3", "the JSON is a string"),
        (f"{file}:4", "the JSON is null"),
        (f"{file}:5", "the JSON is a boolean"),
        (f"{file}:6", "the JSON is an object without a resourceType"),
    ]


# ------------------------------------------------------------------------------ late joiners' findings


def _tiny(resource: dict[str, Any]) -> str:
    """A line whose value is a number too small for a double (orjson reads it as 0.0)."""
    return json.dumps(resource, separators=(",", ":")).replace('"value":75', '"value":1e-400')


def late_joiner_files(root: Path, diagnosis_first: bool, bundle: bool = False) -> Path:
    """A patient whose SLE diagnosis comes before or after their lines with a number too small for a
    double and a malformed element (as the file names sort, or in a Bundle read last)."""
    root.mkdir()
    bad = {**observation("o-bad", "late"), "effectiveDateTime": "2026-13-45"}
    asthma = {**condition("c-asthma", "late", ASTHMA), "extension": [{"valueQuantity": {"value": 75}}]}
    lines = [
        json.dumps(observation("o-other", "other"), separators=(",", ":")),
        _tiny(observation("o-tiny", "late")),
        _tiny(observation("o-other-tiny", "other")),  # never kept: dropped unread, as ever
        json.dumps(bad, separators=(",", ":")),
    ]
    (root / "b-Observation.ndjson").write_text("\n".join(lines) + "\n")
    (root / "b-Condition.ndjson").write_text(_tiny(asthma) + "\n")  # a Condition the census passes over
    sle = condition("c-sle", "late", SLE)
    if bundle:
        doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": sle}]}
        (root / "z-Bundle.json").write_text(json.dumps(doc))
    else:
        name = "a-Diagnosis.ndjson" if diagnosis_first else "c-Diagnosis.ndjson"
        ndjson(root / name, sle)
    ndjson(root / "p-Patient.ndjson", patient("late"), patient("other"))
    return root


def _relative(population: Population, root: Path) -> list[tuple[str, str, str]]:
    return [(where.replace(str(root), "<data>"), p, m) for where, p, m in findings(population)]


@pytest.mark.parametrize("bundle", [False, True])
def test_a_late_joiners_lines_read_again_get_the_findings_of_a_patient_kept_from_the_start(
    tmp_path: Path, trial: Trial, bundle: bool
) -> None:
    """A number too small for a double is looked for only in the lines handed on: the lines of a
    patient whose diagnosis comes later were dropped unread the first time, and are read again once the
    patient joins; their finding is made then, as it would have been had the diagnosis come first."""
    first = late_joiner_files(tmp_path / "first", diagnosis_first=True)
    late = late_joiner_files(tmp_path / "late", diagnosis_first=False, bundle=bundle)
    from_start = load_population(FileSource(first), trial)
    joined_late = load_population(FileSource(late), trial)
    assert kept_ids(joined_late)["late"] == kept_ids(from_start)["late"]
    expected = _relative(from_start, first)
    assert _relative(joined_late, late) == expected
    tiny = [where for where, problem, _message in expected if problem == "non-finite-number"]
    assert tiny == ["<data>/b-Condition.ndjson:1", "<data>/b-Observation.ndjson:2"]
    assert [w for w, p, _m in expected if p == "malformed-element"] == ["Observation/o-bad"]
    # read as no value, not 0.0, either way
    (obs,) = [o for o in joined_late.records["late"].resources["Observation"] if o["id"] == "o-tiny"]
    assert obs["valueQuantity"].get("value") is None
