"""Concrete facts about the seeded Synthea population (seed 20260601, 150 living people, all modules plus
bench/synthea/modules/sle_trial, screened as of 2026-06-01).

Synthea's ids are stable for a seed: two runs with the same seed, size, modules and end date gave
byte-identical bundles and NDJSON (bench/SYNTHEA_NOTES.md), so the patients below are named by id. A change
to the module, the Flexporter mapping or the scripts changes the population (the stamp in bench/work/
regenerates it) and these facts must be read again off the new records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhirscreen.trial.loader import load_trial
from tests.synthea.conftest import ndjson_rows

pytestmark = pytest.mark.synthea

RECORDS = 169  # 150 living + 19 dead (Synthea exports the dead too)
SLE_PATIENTS = 12


def _sle_patient_ids(population: Path) -> set[str]:
    population_codes = load_trial().population
    return {
        cond["subject"]["reference"]
        for cond in ndjson_rows(population, "Condition")
        if population_codes.match(cond.get("code"))
    }


def _by_patient(screened: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["patient"]: p for p in screened["patients"]}


def test_population_size(population):
    assert sum(1 for _ in ndjson_rows(population, "Patient")) == RECORDS


def test_synthea_made_this_many_sle_patients(population):
    # All from the project's module (55464009); stock lupus.json (200936003) made none at this size.
    assert len(_sle_patient_ids(population)) == SLE_PATIENTS


def test_every_sle_patient_is_screened_and_nobody_else(population, screened_ndjson):
    assert set(_by_patient(screened_ndjson)) == _sle_patient_ids(population)


def test_bundles_and_ndjson_give_the_same_candidates(screened_bundles, screened_ndjson):
    a, b = dict(screened_bundles), dict(screened_ndjson)
    a.pop("source")
    b.pop("source")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_everything_synthea_emits_is_read_without_evaluator_errors(screened_ndjson):
    problems = [q for q in screened_ndjson["data_quality"] if "evaluator-error" in json.dumps(q)]
    assert problems == []
    reasons = [c["reason"] for p in screened_ndjson["patients"] for c in p["criteria"].values()]
    assert not [r for r in reasons if "Could not be evaluated" in r]


def test_flexporter_ranges_reach_the_screener(population):
    # The Flexporter mapping adds referenceRange (and H/L) to anti-dsDNA, C3, C4, platelets and WBC.
    dsdna = [o for o in ndjson_rows(population, "Observation") if o["code"]["coding"][0]["code"] == "5130-0"]
    assert dsdna and all(o["referenceRange"][0]["high"]["value"] == 30 for o in dsdna)
    flagged = [o for o in dsdna if o.get("interpretation")]
    assert flagged and all(o["valueQuantity"]["value"] > 30 for o in flagged)


# Five SLE patients picked by hand; the record facts behind each expected outcome are in the comments.
EXPECTED: dict[str, tuple[str, dict[str, str]]] = {
    # Male, born 1963-05-17 (63): I1 pass. SLE 55464009 since 2009-01-07 + nephritis 68815009 (2020) -> I2.
    # anti-dsDNA 229 IU/mL flagged H on 2026-05-25 (Flexporter range <= 30) -> I3 pass. eGFR 98979-8 37 on
    # 2026-05-25 -> I4 pass. HCQ + MMF + AZA active (renewed 2026-04-24, yearly since 2016) -> I5 pass, E4
    # pass. C3 62 mg/dL (L) + anti-dsDNA H on 2026-05-25 + proteinuria -> I6 lower bound 8 -> pass. No
    # biologic, surgery, infection, cancer -> exclusions pass. Male -> E13 pass. Overall eligible.
    "Patient/82dcf97f-f609-2743-9fb4-9e69a5b07c64": ("eligible", {
        "I1": "pass", "I2": "pass", "I3": "pass", "I4": "pass", "I5": "pass", "I6": "pass",
        "E1": "pass", "E2": "pass", "E4": "pass", "E6": "pass", "E9": "pass", "E11": "pass", "E12": "pass",
        "E13": "pass"}),
    # Female, born 2001-10-11 (24). "Normal pregnancy" 72892002 onset 2026-04-30, not ended -> E13 fail.
    # Pneumonia 233604007 2025-02-28, abated 2025-03-18 (treated with the module's antibiotic) -> E11
    # pass. eGFR 81 on 2026-03-18 -> I4 pass; latest labs 2026-03-18, over 30 days old -> I6 unknown.
    "Patient/c8ca87f6-3431-babe-e654-17caa75dc27d": ("ineligible", {
        "I1": "pass", "I3": "pass", "I4": "pass", "I5": "pass", "I6": "unknown", "E11": "pass",
        "E13": "fail"}),
    # Female, born 1975-09-16 (50). ESRD 46177005 onset 2026-05-19, active, no dialysis yet -> E2 fail
    # (renal replacement expected). Same-day eGFR 98979-8 62 is the latest -> I4 pass. C3 83 (L) and
    # anti-dsDNA 350 (H) on 2026-05-19 -> I6 bound 4 -> unknown.
    "Patient/a80ae324-9b61-d14a-5b4c-35b94bb50442": ("ineligible", {
        "I1": "pass", "I3": "pass", "I4": "pass", "I5": "pass", "I6": "unknown", "E2": "fail",
        "E6": "pass"}),
    # Male, born 1997-07-22 (28). Belimumab (MedicationRequest -> Medication 1092437, plus a
    # MedicationAdministration) last on 2026-04-01 -> E6 fail, washout 97 days ends 2026-07-07.
    # Appendectomy 2019-01-16 -> E9 pass (older than 90 days). eGFR 65 on 2026-04-01 -> I4 pass.
    "Patient/09db3623-16e7-5fad-512f-000bd7256e62": ("ineligible", {
        "I1": "pass", "I3": "pass", "I4": "pass", "I5": "pass", "E6": "fail", "E9": "pass",
        "E13": "pass"}),
    # Female, born 1952-11-23 (73). eGFR 98979-8 24 on 2026-03-26, then creatinine 38483-4 0.76 mg/dL on
    # 2026-05-17: the most recent kidney result wins (issue 8) -> CKD-EPI 2021 82.7 -> I4 pass (before
    # issue 8 the older eGFR decided: I4 fail, ineligible). I6 unknown -> possible. Prednisone 20 mg
    # flare course ordered 2026-03-26 for SLE (reason = the SLE condition) -> E1 pass (SLE course); it
    # ended before 2026-05-04 -> E3 pass. Cholecystectomy 2021-04-04 -> E9 pass.
    "Patient/7ba82505-e3fc-f410-c0ea-45de5d95cffc": ("possible", {
        "I1": "pass", "I3": "pass", "I4": "pass", "I5": "pass", "E1": "pass", "E3": "pass", "E9": "pass"}),
}


@pytest.mark.parametrize("patient", sorted(EXPECTED))
def test_hand_picked_patient_outcomes(screened_ndjson, patient):
    status, outcomes = EXPECTED[patient]
    screened = _by_patient(screened_ndjson)[patient]
    assert screened["status"] == status
    got = {cid: screened["criteria"][cid]["outcome"] for cid in outcomes}
    assert got == outcomes


def test_hand_picked_details(screened_ndjson):
    by = _by_patient(screened_ndjson)
    e6 = by["Patient/09db3623-16e7-5fad-512f-000bd7256e62"]["criteria"]["E6"]
    assert "2026-07-07" in e6["reason"]
    e2 = by["Patient/a80ae324-9b61-d14a-5b4c-35b94bb50442"]["criteria"]["E2"]
    assert "End-stage renal disease" in e2["reason"]
    e1 = by["Patient/7ba82505-e3fc-f410-c0ea-45de5d95cffc"]["criteria"]["E1"]
    assert "for SLE" in e1["reason"]
    i6 = by["Patient/82dcf97f-f609-2743-9fb4-9e69a5b07c64"]["criteria"]["I6"]
    assert "low complement" in i6["reason"] and "lower bound of 8" in i6["reason"]
