"""Probe patients for issue 8 section 1: the clean eligible sample patient with one realistic medication
change each. The change must move exactly the criteria it should, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from fhirscreen.criteria.base import Outcome
from fhirscreen.paths import sample_data_dir
from fhirscreen.quality import DataQuality
from fhirscreen.screening import screen_patient
from fhirscreen.sources.files import FileSource
from tests.builders import (
    AS_OF,
    medication_administration,
    medication_dispense,
    medication_request,
    medication_statement,
    observation,
    record,
)

PID = "sle-eligible-01"
BASE_PREDNISONE = f"MedicationRequest/{PID}-prednisone"


def ago(days: int) -> str:
    return (AS_OF - timedelta(days=days)).isoformat()


def _baseline() -> list[dict[str, Any]]:
    source = FileSource(sample_data_dir() / "bundles" / "urn" / f"{PID}.json")
    return [r for r, _origin in source.read(None, DataQuality())]


def _order(code: str, display: str, first_ago: int, **extra: Any) -> dict[str, Any]:
    return medication_request(code, ago(first_ago), display=display, pid=PID, **extra)


def _with_dosage(res: dict[str, Any], mg: float, timing: dict[str, Any], key: str = "dosageInstruction"):
    res[key] = [{"timing": timing, "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg"}}]}]
    return res


BID = {
    "code": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "code": "BID"}]
    }
}


def _statement_now(code: str, display: str) -> dict[str, Any]:
    s = medication_statement(code, None, display=display, pid=PID)
    s["dateAsserted"] = ago(5)
    return s


PROBES: dict[str, tuple[Callable[[], list[dict[str, Any]]], dict[str, Outcome]]] = {
    "prednisone 20 mg BID by timing code": (
        lambda: [
            _with_dosage(
                _order("8640", "prednisone", 10), 20, {**BID, "repeat": {"boundsPeriod": {"start": ago(10)}}}
            )
        ],
        {"E3": Outcome.FAIL},
    ),
    "prednisone renewal left open beside its order": (
        lambda: [
            _with_dosage(
                _order(
                    "198145",
                    "prednisone 10 MG Oral Tablet",
                    10,
                    priorPrescription={"reference": BASE_PREDNISONE},
                ),
                10,
                {},
            )
        ],
        {},
    ),
    "prednisone administrations of the active order": (
        lambda: [
            medication_administration(
                "198145",
                ago(d),
                display="prednisone 10 MG Oral Tablet",
                pid=PID,
                request={"reference": BASE_PREDNISONE},
                dosage={"dose": {"value": 10, "unit": "mg"}},
            )
            for d in (3, 2, 1)
        ],
        {},
    ),
    "MMF 1000 mg BID re-ordered with a timing code": (
        lambda: [_with_dosage(_order("200060", "mycophenolate mofetil 500 MG Oral Tablet", 40), 1000, BID)],
        {},
    ),
    "two years of monthly hydroxychloroquine fills": (
        lambda: [
            medication_dispense(
                "979092", ago(d), display="hydroxychloroquine sulfate 200 MG Oral Tablet", pid=PID
            )
            for d in range(720, 0, -30)
        ],
        {},
    ),
    "PEG-3350 laxative": (
        lambda: [
            medication_request(
                "peg",
                ago(20),
                system="http://hospital.example.org/formulary",
                display="PEG-3350 17 GM Oral Powder",
                pid=PID,
            )
        ],
        {},
    ),
    "do not give rituximab": (
        lambda: [_order("121191", "rituximab", 20, doNotPerform=True)],
        {},
    ),
    "rituximab proposed": (lambda: [_order("121191", "rituximab", 20, intent="proposal")], {}),
    "prednisone fill in preparation": (
        lambda: [
            _with_dosage(
                medication_dispense("8640", None, display="prednisone", pid=PID, status="preparation"), 60, {}
            )
        ],
        {},
    ),
    "insulin glargine": (lambda: [_order("274783", "insulin glargine 100 UNT/ML", 200)], {}),
    "newer weight in pounds": (
        lambda: [observation("29463-7", ago(3), value=132.3, unit="[lb_av]", pid=PID)],
        {},
    ),
    "newer weight in an unreadable unit": (
        lambda: [observation("29463-7", ago(3), value=9.4, unit="stone", pid=PID)],
        {},
    ),
    "currently taking belimumab, no dates": (
        lambda: [_statement_now("1092437", "belimumab")],
        {"E6": Outcome.FAIL},
    ),
    "dupilumab given 30 days ago": (
        lambda: [
            medication_administration(
                "0",
                ago(30),
                system="http://hospital.example.org/formulary",
                display="dupilumab 300 MG/2ML",
                pid=PID,
            )
        ],
        {"E6": Outcome.FAIL},
    ),
    "omalizumab given 100 days ago": (
        lambda: [
            medication_administration(
                "0",
                ago(100),
                system="http://hospital.example.org/formulary",
                display="Xolair 150 MG",
                pid=PID,
            )
        ],
        {"E6": Outcome.FAIL},
    ),
    "study drug by development code": (
        lambda: [
            medication_request(
                "x",
                ago(20),
                system="http://hospital.example.org/formulary",
                display="BMS-986165 3 MG capsule",
                pid=PID,
            )
        ],
        {"E5": Outcome.FAIL},
    ),
}


@pytest.fixture(scope="module")
def baseline(trial):
    screen = screen_patient(record(*_baseline(), pid=PID), trial, AS_OF)
    return {cid: r.outcome for cid, r in screen.results.items()}


def test_the_baseline_is_eligible(baseline):
    assert Outcome.FAIL not in baseline.values() and Outcome.UNKNOWN not in baseline.values()


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_probe_moves_only_what_it_should(trial, baseline, probe):
    make, expected = PROBES[probe]
    screen = screen_patient(record(*_baseline(), *make(), pid=PID), trial, AS_OF)
    moved = {cid: r.outcome for cid, r in screen.results.items() if r.outcome is not baseline[cid]}
    assert moved == expected, {cid: screen.results[cid].reason for cid in moved | expected}
    for cid in expected:
        assert screen.results[cid].evidence, f"{cid} names no resource"
