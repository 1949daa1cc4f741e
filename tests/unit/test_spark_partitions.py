"""The Spark engine's worker functions, without Spark: routing one split, the per-patient summary."""

from __future__ import annotations

import gzip
import json

from fhirscreen.fhir.codes import ValueSet
from fhirscreen.spark.partitions import (
    DOCUMENT,
    CutLine,
    WholeFile,
    add_pairs,
    census_split,
    file_lines,
    linked_groups,
    loads,
    route_split,
    summarise,
    summary_pairs,
)


def line(resource: dict[str, object]) -> str:
    return json.dumps(resource)


def test_a_split_numbers_its_lines_from_where_it_starts_and_routes_by_candidate() -> None:
    lines = [
        '{"resourceType":"Condition","id":"cut",',
        "",
        line({"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/a"}}),
        line(
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "subject": {"reference": "Patient/sle"},
            }
        ),
        line(
            {
                "resourceType": "Observation",
                "id": "o2",
                "status": "final",
                "subject": {"reference": "Patient/other"},
            }
        ),
        line(
            {
                "resourceType": "Observation",
                "id": "o3",
                "status": "entered-in-error",
                "subject": {"reference": "Patient/other"},
            }
        ),
        line(
            {
                "resourceType": "MedicationRequest",
                "id": "m1",
                "status": "active",
                "medicationReference": {"reference": "Medication/mmf"},
                "subject": {"reference": "Patient/sle"},
            }
        ),
        line({"resourceType": "Patient", "id": "sle"}),
    ]
    rows = list(route_split(lines, 4, 101, "export/Observation.ndjson", {"sle": "sle"}))
    assert (
        "dq",
        None,
        (
            "error",
            "export/Observation.ndjson:101",
            "malformed-json",
            "line is not valid JSON (Expecting property name enclosed in double quotes); skipped",
        ),
    ) in rows
    assert ("skip", "Encounter", 1) in rows
    candidate = [(key, value[0]) for kind, key, value in rows if kind == "R"]
    assert candidate == [("sle", (4, 104, 0)), ("sle", (4, 107, 0)), ("sle", (4, 108, 0))]
    assert ("ref", "Medication/mmf", "sle") in rows
    assert ("pid", "sle", 1) in rows
    assert ("use", "other", 1) in rows  # the entered-in-error Observation is not counted


def test_summary_counts_patients_duplicates_and_missing_patients() -> None:
    rows = [
        ("pid", "a", 1),
        ("pid", "a", 1),
        ("pid", "b", 1),
        ("use", "b", 3),
        ("use", "c", 2),
        ("use", "c", 1),
        ("skip", "Encounter", 5),
    ]
    reduced: dict[object, tuple[int, int]] = {}
    for key, value in (pair for row in rows for pair in summary_pairs(row)):
        reduced[key] = add_pairs(reduced[key], value) if key in reduced else value
    summary = list(summarise(reduced.items()))
    assert ("dup", "a", 2) in summary
    assert ("missing", "c", 3) in summary
    assert ("skip", "Encounter", 5) in summary
    assert ("read", None, 2) in summary
    assert not any(kind == "missing" and key == "b" for kind, key, _ in summary)


def test_a_damaged_line_costs_the_record_it_names_and_a_last_line_cut_short_its_file() -> None:
    damaged = '{"resourceType":"Condition","id":"ca","subject":{"reference":"Patient/p1"},"code":{'
    patient = '{"resourceType":"Patient","id":"p2","name":[{"family":"Te'
    rows = list(route_split([damaged, patient, damaged], 0, 1, "x.ndjson", {}, cut_line=3))
    lost = sorted(value[1] for kind, _key, value in rows if kind == "dq" and value[2] == "data-lost")
    assert lost == ["Patient/p1", "Patient/p2", "x.ndjson"]  # line 3, the file's last, has no newline
    rows = list(route_split([damaged], 0, 1, "x.ndjson", {}))
    assert [value[1] for kind, _key, value in rows if kind == "dq" and value[2] == "data-lost"] == [
        "Patient/p1"
    ]


def test_the_census_says_where_a_split_ends_with_a_line_that_cannot_be_read() -> None:
    population = ValueSet("sle")
    lines = ['{"resourceType":"Patient","id":"p"}', '{"resourceType":"Obs']
    rows = list(census_split(2, lines, 0, population))
    assert ("end", (0, 2), 2) in rows  # the number of the split's last line in the split
    assert not [row for row in census_split(2, ["{}", "  "], 0, population) if row[0] == "end"]


def test_a_file_read_whole_is_gunzipped_whatever_its_name_or_is_one_document() -> None:
    text = b'{"resourceType":"Patient","id":"p"}\n{"resourceType":"Pat'
    lines = list(file_lines(("export/Patient.ndjson", gzip.compress(text))))
    assert lines == ['{"resourceType":"Patient","id":"p"}', '{"resourceType":"Pat']
    assert isinstance(lines[1], CutLine) and not isinstance(lines[0], CutLine)
    document = b'\n{\n  "resourceType": "Patient",\n  "id": "p"\n}\n'
    for content in (document, gzip.compress(document)):
        [whole] = list(file_lines(("export/Patient.ndjson", content)))
        assert isinstance(whole, WholeFile) and whole == content
    rows = list(route_split([WholeFile(document)], 0, 1, "export/Patient.ndjson", {"p": "p"}))
    assert ("R", "p", ((0, DOCUMENT, 0), '{"resourceType":"Patient","id":"p"}')) in rows
    assert any(kind == "dq" and value[2] == "not-ndjson" for kind, _key, value in rows)


def test_a_number_too_small_for_a_double_is_looked_for_on_the_lines_handed_on_only() -> None:
    def tiny(rid: str, pid: str) -> str:
        subject = {"reference": f"Patient/{pid}"}
        observation = line({"resourceType": "Observation", "id": rid, "status": "final", "subject": subject})
        return observation.replace('"status"', '"valueQuantity": {"value": 1e-400}, "status"')

    rows = list(route_split([tiny("o1", "sle"), tiny("o2", "other")], 0, 1, "x.ndjson", {"sle": "sle"}))
    said = [value[1] for kind, _key, value in rows if kind == "dq" and value[2] == "non-finite-number"]
    assert said == ["x.ndjson:1"]  # the other patient's line is dropped unread, as file mode drops it


def test_linked_patients_join_their_candidate_where_file_mode_keeps_them() -> None:
    """File mode's census replayed: a linked id joins where the link, or its candidate, was read."""
    first = {"c": (0, 1, 0), "r": (1, 5, 0)}
    links = [
        ((3, 2, 0), "p", ("c",)),  # read after c became a candidate: p joins here
        ((0, 1, 0), "q", ("r",)),  # read before r became one: q joins with r
        ((3, 4, 0), "n1", ("n2",)),  # nobody's candidate: the driver reports these links
    ]
    groups, joined, linked = linked_groups(first, links)
    assert groups == {"c": "c", "p": "c", "q": "q", "r": "q"}
    assert joined == {"c": (0, 1, 0), "p": (3, 2, 0), "r": (1, 5, 0), "q": (1, 5, 0)}
    assert linked == {"n1", "n2"}


def test_a_linked_patient_outside_the_candidates_is_routed_as_its_id_and_links_only() -> None:
    patient = {
        "resourceType": "Patient", "id": "n1", "birthDate": "1970-01-01",
        "link": [{"type": "replaced-by", "other": {"reference": "Patient/n2"}}],
    }
    rows = list(route_split([line(patient)], 0, 1, "x.ndjson", {}, linked=frozenset({"n1"})))
    [(position, origin, stub)] = [value for kind, _key, value in rows if kind == "P"]
    assert (position, origin) == ((0, 1, 0), "x.ndjson:1") and "1970" not in stub
    assert json.loads(stub)["link"] == patient["link"]


def test_a_byte_that_is_not_utf8_costs_its_value_only_and_is_said_as_in_file_mode() -> None:
    bad = b'{"resourceType":"Patient","id":"p","name":[{"text":"caf\xe9"}]}'
    text = b'{"resourceType":"Patient","id":"a"}\n' + bad + b'\n{"resourceType":"Patient","id":"b"}\n'
    lines = list(file_lines(("export/Patient.ndjson.gz", gzip.compress(text))))
    assert len(lines) == 3  # the rest of the file is read
    rows = list(route_split(lines, 0, 1, "export/Patient.ndjson", {"p": "p"}))
    [said] = [value for kind, _key, value in rows if kind == "dq"]
    assert said[:3] == ("warning", "export/Patient.ndjson:2", "invalid-utf8")
    assert "at byte 55 of the line" in said[3]
    [(_position, kept)] = [value for kind, _key, value in rows if kind == "R"]
    assert loads(kept)["name"][0]["text"] == "caf\ufffd"  # as file mode: replaced
    assert sorted(key for kind, key, _value in rows if kind == "pid") == ["a", "b", "p"]
    # Hadoop's text reader gives U+FFFD for such a byte: the census says so, for the file to be read again.
    population = ValueSet("sle")
    replaced = [row for row in census_split(1, ['{"x":"caf\ufffd"}'], 4, population) if row[0] == "replaced"]
    assert replaced == [("replaced", (4, 1), 1)]
    assert not [row for row in census_split(1, ['{"x":"cafe"}'], 4, population) if row[0] == "replaced"]


def test_a_file_with_u_fffd_too_large_to_read_again_keeps_hadoop_lines_and_is_said() -> None:
    from fhirscreen.quality import DataQuality
    from fhirscreen.spark.engine import Read, SparkScreening
    from fhirscreen.spark.inputs import InputFile, Inputs

    engine = object.__new__(SparkScreening)
    engine.quality = DataQuality()
    engine.whole = [False, False, True]
    files = [
        InputFile(f"file:///d/{n}.ndjson", f"/d/{n}.ndjson", size) for n, size in enumerate((10, 2**31, 5))
    ]
    read = Read(replaced={0, 1, 2})
    assert engine._read_again(Inputs(files, []), read) == [0]  # 2 is read in Python already
    said = [(f.severity, f.where, f.problem) for f in engine.quality.findings]
    assert said == [("warning", "/d/1.ndjson", "unchecked-utf8")]
