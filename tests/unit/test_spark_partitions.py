"""The Spark engine's worker functions, without Spark: routing one split, the per-patient summary."""

from __future__ import annotations

import json

from fhirscreen.spark.partitions import add_pairs, route_split, summarise, summary_pairs


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
    rows = list(route_split(lines, 4, 101, "export/Observation.ndjson", {"sle": (4, 1, 0)}))
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
