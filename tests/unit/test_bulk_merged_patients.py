"""Merged patients (Patient.link replaced-by / replaces, D14) with ``screen --server --bulk``.

The candidate-only export (``POST Patient/$export`` naming the candidates) holds only the candidates'
records: the records of the ids their Patients link to are read by search afterwards, so that the
survivor is screened on the resources of both ids (an exclusion filed under the other id counts). An
export of everyone (the server refuses patient lists) holds them already: nothing is read twice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests

from tests.unit.test_bulk_manifest_faults import Answer, BulkFake, bulk_screen, candidates, lost
from tests.unit.test_merged_patients import CANCER, chain_record, eligible, patient
from tests.unit.test_server_source import capability

pytestmark = pytest.mark.usefixtures("bundled_trial_in_cli", "client_never_waits")

# The candidate's link to the other id, and whether the other id links back: (kind, back-link kind).
DIRECTIONS = {
    "replaced-by": ("replaced-by", None),  # the candidate was replaced: the other id survives
    "replaced-by, both sides": ("replaced-by", "replaces"),
    "replaces": ("replaces", None),  # the candidate survives
    "replaces, both sides": ("replaces", "replaced-by"),
}


def merged_with_cancer_under_the_other_id(direction: str) -> tuple[list[dict[str, Any]], str]:
    """The eligible sample as ``p1`` (the SLE diagnosis: the candidate), linked to ``p1other``, under
    which a breast cancer is filed (an exclusion); and the id that survives the merge."""
    kind, back = DIRECTIONS[direction]
    resources = eligible("p1")
    for r in resources:
        if r["resourceType"] == "Patient":
            r["link"] = [{"other": {"reference": "Patient/p1other"}, "type": kind}]
    other = patient("p1other", *([(back, "p1")] if back else []), active=kind == "replaced-by")
    cancer = dict(CANCER, subject={"reference": "Patient/p1other"})
    return [*resources, other, cancer], "p1other" if kind == "replaced-by" else "p1"


def merged_screen(
    tmp_path: Path, direction: str, fake_type: type[BulkFake], **options: Any
) -> tuple[BulkFake, Any, str]:
    """``screen --server --bulk`` of ``merged_with_cancer_under_the_other_id(direction)`` against a
    ``fake_type`` server: (the server, the CLI result, the id that survives the merge)."""
    resources, survivor = merged_with_cancer_under_the_other_id(direction)
    fake = fake_type(resources, **options)
    return fake, bulk_screen(tmp_path, fake), survivor


def listed(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {p["patient"]: p for p in candidates(tmp_path)["patients"]}


def evidence(screened: dict[str, Any]) -> set[str]:
    return {e for c in screened["criteria"].values() for e in c["evidence"]}


def problems(tmp_path: Path, problem: str) -> list[dict[str, str]]:
    return [f for f in candidates(tmp_path)["data_quality"] if f["problem"] == problem]


def asked_for(fake: BulkFake, pid: str) -> list[str]:
    """The requests of ``fake`` that name ``pid`` (searches for its records)."""
    return [entry for entry in fake.log if pid in re.split(r"[?&=,/]", unquote(entry))]


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_an_exclusion_filed_under_the_linked_id_makes_the_survivor_ineligible(
    tmp_path: Path, direction: str
) -> None:
    fake, result, survivor = merged_screen(tmp_path, direction, BulkFake)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert fake.exported_for == [["p1"]]  # the export held the candidate's records only
    screened = listed(tmp_path)
    assert list(screened) == [f"Patient/{survivor}"]  # one person, listed once
    assert screened[f"Patient/{survivor}"]["status"] == "ineligible"
    assert "Condition/old-cancer" in evidence(screened[f"Patient/{survivor}"])
    assert asked_for(fake, "p1other")  # read by search after the export
    assert len(problems(tmp_path, "merged-patient")) == 1
    assert not problems(tmp_path, "patient-link")
    assert "reading the records of 1 linked Patient(s)" in result.stderr


def test_a_chain_of_two_links_is_followed_to_its_end(tmp_path: Path) -> None:
    """pa (the SLE diagnosis) was replaced by pb, which was replaced by pc: a cancer filed under pc,
    two links away from the candidate, makes the one person ineligible."""
    resources = [*chain_record(), dict(CANCER, subject={"reference": "Patient/pc"})]
    result = bulk_screen(tmp_path, BulkFake(resources))
    assert result.exit_code == 0, result.stderr[-2000:]
    screened = listed(tmp_path)
    assert list(screened) == ["Patient/pc"]
    assert screened["Patient/pc"]["status"] == "ineligible"
    assert "Condition/old-cancer" in evidence(screened["Patient/pc"])
    assert len(problems(tmp_path, "merged-patient")) == 2
    assert not problems(tmp_path, "patient-link")


@pytest.mark.parametrize("direction", ["replaced-by", "replaces"])
def test_an_export_of_everyone_holds_the_linked_records_and_nothing_is_read_twice(
    tmp_path: Path, direction: str
) -> None:
    fake, result, survivor = merged_screen(tmp_path, direction, BulkFake, patient_lists=False)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert fake.exported_for == [None]  # the system-level fallback: everyone
    screened = listed(tmp_path)
    assert screened[f"Patient/{survivor}"]["status"] == "ineligible"
    assert asked_for(fake, "p1other") == []  # its records came in the export: not searched again
    assert "linked Patient" not in result.stderr


class LinkedConditionsFail(BulkFake):
    """The server fails every Condition search for ``p1other`` (after the client's retries too)."""

    def handle(self, request: requests.PreparedRequest) -> Answer:
        parts = urlsplit(str(request.url))
        if parts.path.endswith("/Condition") and "p1other" in unquote(parts.query):
            return (
                503,
                {"Content-Type": "application/fhir+json"},
                json.dumps({"resourceType": "OperationOutcome"}),
            )
        return super().handle(request)


@pytest.mark.parametrize("direction", ["replaced-by", "replaces"])
def test_a_linked_ids_search_that_fails_is_lost_data_and_the_run_goes_on(
    tmp_path: Path, direction: str
) -> None:
    _fake, result, survivor = merged_screen(tmp_path, direction, LinkedConditionsFail)
    assert result.exit_code == 5, result.stderr[-2000:]  # partial, not a crash
    assert "Traceback" not in result.stderr
    by_where = {f["where"]: f["message"] for f in lost(tmp_path)}
    assert "Condition records could not be read" in by_where["Patient/p1other"]
    # Lost for one id of the person is lost for the other (the cancer was in what was lost): whichever
    # id survives, the one person is not offered as eligible.
    assert "linked to this Patient as the same person" in by_where["Patient/p1"]
    screened = listed(tmp_path)
    assert list(screened) == [f"Patient/{survivor}"]  # the other resources were read and merged
    assert screened[f"Patient/{survivor}"]["status"] != "eligible"
    assert "data were lost" in screened[f"Patient/{survivor}"]["caveat"]


def test_a_server_that_cannot_search_conditions_by_patient_loses_the_linked_record_not_the_run(
    tmp_path: Path,
) -> None:
    """The export needs no Condition search by patient; the linked id's records do: without one they
    are lost data for that id (partial), and the candidate's survivor is not offered as eligible."""
    resources, _survivor = merged_with_cancer_under_the_other_id("replaced-by")
    fake = BulkFake(resources)
    fake.caps = capability(drop={"Condition": {"patient", "subject"}})
    result = bulk_screen(tmp_path, fake)
    assert result.exit_code == 5, result.stderr[-2000:]
    assert {f["where"] for f in lost(tmp_path)} == {"Patient/p1", "Patient/p1other"}
    assert asked_for(fake, "p1other") == []
    # p1other's Patient was not read: the records stay apart, and p1 is not offered as eligible.
    screened = listed(tmp_path)["Patient/p1"]
    assert screened["status"] != "eligible" and "data were lost" in screened["caveat"]
