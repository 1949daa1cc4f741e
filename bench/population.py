"""Deterministic scaling populations for the benchmark, as Bulk Data NDJSON (and optionally Bundles).

    python3 bench/population.py --people 10000 --seed 42 --out bench/work/pop-42-10000 [--bundles]

N people; a fixed share (``--sle-share``, default 3 %) have systemic lupus erythematosus with a
rheumatology record, the rest a handful of ordinary resources each, so that the server and the files
hold many non-candidates next to the candidates, as a hospital does.

SLE patient (about 45 resources): the SLE Condition (SNOMED, or ICD-10-CM M32.x for a quarter; lupus
nephritis for some, with a renal biopsy Procedure), sometimes hypertension; four visits about 90 days
apart (the last 3-100 days before the as-of date), each with anti-dsDNA, C3, C4, creatinine, eGFR
(CKD-EPI 2021), platelets, leukocytes and a body weight; ANA titers; a urine protein/creatinine ratio;
hydroxychloroquine and often mycophenolate (some via a separate Medication resource) MedicationRequests,
prednisone for some, and monthly belimumab MedicationAdministrations for a fifth of them.
Values vary so that every screening status occurs (eligible, possible, ineligible).

Non-candidate (about 9 resources): Patient, one or two Conditions (hypertension, type 2 diabetes,
hyperlipidaemia, asthma, osteoarthritis), creatinine, eGFR and a body weight (trial LOINC codes, so
the server's code searches have to skip them by patient, not by code) plus an HbA1c or blood
pressure, one MedicationRequest and one Procedure.

Every code comes from queries/NCT06737380.yaml, except the ordinary conditions, drugs and procedures of
the non-candidates, which are deliberately outside the trial's value sets. The same arguments give
byte-identical files (one ``random.Random(seed)``; no clock, no hash order). Ids are
``b<seed>-<index>`` plus a suffix: never purely numeric, so HAPI accepts them as client ids.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

# Bump when the generated content changes: the benchmark keys its loaded HAPI databases by it.
GENERATOR_VERSION = 1
AS_OF = date(2026, 6, 1)

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationAdministration",
    "Procedure",
    "Medication",
)

# -- codes (trial value sets: queries/NCT06737380.yaml) ---------------------------------------------------

SLE_CODES = [  # sle_specific / lupus_unspecified
    (SNOMED, "55464009", "Systemic lupus erythematosus"),
    (SNOMED, "239887007", "SLE with organ/system involvement"),
    (ICD10CM, "M32.9", "Systemic lupus erythematosus, unspecified"),
    (ICD10CM, "M32.8", "Other forms of systemic lupus erythematosus"),
]
LUPUS_NEPHRITIS = (SNOMED, "68815009", "SLE glomerulonephritis syndrome")
LAB = {  # value-set name in the trial file -> (LOINC, display, unit)
    "ana_titer": ("5048-4", "Nuclear Ab [Titer] in Serum by Immunofluorescence", ""),
    "anti_dsdna": ("5130-0", "DNA double strand Ab [Units/volume] in Serum", "[IU]/mL"),
    "c3": ("4485-9", "Complement C3 [Mass/volume] in Serum or Plasma", "mg/dL"),
    "c4": ("4498-2", "Complement C4 [Mass/volume] in Serum or Plasma", "mg/dL"),
    "creatinine": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL"),
    "egfr": ("98979-8", "eGFR by Creatinine-based formula (CKD-EPI 2021)", "mL/min/{1.73_m2}"),
    "platelets": ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL"),
    "wbc": ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL"),
    "upcr": ("2890-2", "Protein/Creatinine [Mass Ratio] in Urine", "mg/g"),
    "weight": ("29463-7", "Body weight", "kg"),
}
REFERENCE = {
    "anti_dsdna": (0, 30),
    "c3": (90, 180),
    "c4": (10, 40),
    "platelets": (150, 400),
    "wbc": (4.0, 11.0),
}
HCQ = (RXNORM, "979092", "hydroxychloroquine sulfate 200 MG Oral Tablet")
MMF = (RXNORM, "200060", "mycophenolate mofetil 500 MG Oral Tablet")
PREDNISONE = (RXNORM, "312617", "prednisone 5 MG Oral Tablet")
BELIMUMAB = (RXNORM, "1092437", "belimumab")
RENAL_BIOPSY = (CPT, "50200", "renal biopsy, percutaneous")
# Shared Medication resources (referenced, so the server plan's _include is exercised).
MEDICATIONS = {"bench-belimumab": BELIMUMAB, "bench-mmf-500": MMF}

# -- ordinary data of non-candidates (outside the trial's value sets on purpose) ---------------------------

ORDINARY_CONDITIONS = [
    (SNOMED, "38341003", "Hypertensive disorder"),
    (SNOMED, "44054006", "Diabetes mellitus type 2"),
    (SNOMED, "55822004", "Hyperlipidemia"),
    (SNOMED, "195967001", "Asthma"),
    (SNOMED, "396275006", "Osteoarthritis"),
]
ORDINARY_DRUGS = [
    (RXNORM, "314076", "lisinopril 10 MG Oral Tablet"),
    (RXNORM, "860975", "metformin hydrochloride 500 MG Oral Tablet"),
    (RXNORM, "617312", "atorvastatin 10 MG Oral Tablet"),
]
ORDINARY_PROCEDURES = [
    (SNOMED, "73761001", "Colonoscopy"),
    (SNOMED, "171207006", "Depression screening"),
    (SNOMED, "430193006", "Medication reconciliation"),
]
HBA1C = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%")
SYSTOLIC = ("8480-6", "Systolic blood pressure", "mm[Hg]")


# -- small builders ---------------------------------------------------------------------------------------

Resource = dict[str, Any]


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def stamp(day: date) -> str:
    return f"{day.isoformat()}T09:30:00Z"


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def patient(pid: str, rng: random.Random, min_age: int, max_age: int) -> Resource:
    born = AS_OF - timedelta(days=rng.randint(min_age * 365 + 5, max_age * 365 - 5))
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:fhirscreen:bench:mrn", "value": pid}],
        "gender": "female" if rng.random() < 0.85 else "male",
        "birthDate": born.isoformat(),
    }


def condition(rid: str, pid: str, code: tuple[str, str, str], onset: date) -> Resource:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": concept(*code),
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": stamp(onset),
        "recordedDate": stamp(onset),
    }


def observation(
    rid: str, pid: str, lab: tuple[str, str, str], day: date, value: Any, category: str = "laboratory"
) -> Resource:
    code, display, unit = lab
    obs: Resource = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": concept(LOINC, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": stamp(day),
    }
    if isinstance(value, str):
        obs["valueString"] = value
    else:
        obs["valueQuantity"] = quantity(value, unit)
    return obs


def with_range(obs: Resource, low: float, high: float, unit: str) -> Resource:
    value = obs["valueQuantity"]["value"]
    obs["referenceRange"] = [{"low": quantity(low, unit), "high": quantity(high, unit)}]
    flag = "L" if value < low else "H" if value > high else "N"
    obs["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": flag}]}]
    return obs


def medication_request(
    rid: str,
    pid: str,
    drug: tuple[str, str, str],
    authored: date,
    dose_mg: float,
    per_day: int,
    reference: str | None = None,
) -> Resource:
    request: Resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": stamp(authored),
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": quantity(dose_mg, "mg")}],
            }
        ],
    }
    if reference:
        request["medicationReference"] = {"reference": f"Medication/{reference}"}
    else:
        request["medicationCodeableConcept"] = concept(*drug)
    return request


def administration(rid: str, pid: str, day: date) -> Resource:
    return {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "medicationReference": {"reference": "Medication/bench-belimumab"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectivePeriod": {"start": stamp(day), "end": f"{day.isoformat()}T10:30:00Z"},
        "dosage": {"route": concept(SNOMED, "47625008", "Intravenous route"), "dose": quantity(700, "mg")},
    }


def procedure(rid: str, pid: str, code: tuple[str, str, str], day: date) -> Resource:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": concept(*code),
        "subject": {"reference": f"Patient/{pid}"},
        "performedDateTime": stamp(day),
    }


def medication(mid: str, code: tuple[str, str, str]) -> Resource:
    return {"resourceType": "Medication", "id": mid, "code": concept(*code)}


# -- people -----------------------------------------------------------------------------------------------


def sle_person(pid: str, rng: random.Random) -> list[Resource]:
    """A rheumatology record with enough variation that eligible, possible and ineligible all occur."""
    out = [patient(pid, rng, 19, 80)]
    onset = AS_OF - timedelta(days=rng.randint(400, 5000))
    out.append(condition(f"{pid}-sle", pid, rng.choice(SLE_CODES), onset))
    nephritis = rng.random() < 0.3
    if nephritis:
        out.append(condition(f"{pid}-ln", pid, LUPUS_NEPHRITIS, onset + timedelta(days=rng.randint(30, 300))))
        out.append(procedure(f"{pid}-bx", pid, RENAL_BIOPSY, onset + timedelta(days=rng.randint(30, 300))))
    if rng.random() < 0.3:
        out.append(condition(f"{pid}-htn", pid, ORDINARY_CONDITIONS[0], onset + timedelta(days=200)))

    low_egfr = rng.random() < 0.08  # I4 fails
    active = rng.random() < 0.6  # positive anti-dsDNA and low complement: SLEDAI lower bound >= 6
    weight = round(rng.uniform(48, 105), 1)
    last_visit = AS_OF - timedelta(days=rng.randint(3, 100))
    visits = [last_visit - timedelta(days=90 * k + rng.randint(0, 10)) for k in range(3, -1, -1)]
    titer = rng.choice(["1:80", "1:160", "1:320", "1:640", "1:1280"])
    out.append(observation(f"{pid}-ana0", pid, LAB["ana_titer"], onset, titer))
    for v, day in enumerate(visits):
        latest = v == len(visits) - 1
        flare = active and latest
        dsdna = rng.uniform(60, 300) if flare or (active and rng.random() < 0.5) else rng.uniform(2, 25)
        c3 = rng.uniform(45, 85) if flare else rng.uniform(92, 150)
        c4 = rng.uniform(4, 9) if flare else rng.uniform(12, 35)
        egfr = rng.uniform(18, 29) if low_egfr and latest else rng.uniform(55, 115)
        creat = round(max(0.4, 90 / egfr), 2)
        labs = [
            with_range(
                observation(f"{pid}-v{v}-dsdna", pid, LAB["anti_dsdna"], day, round(dsdna, 1)),
                *REFERENCE["anti_dsdna"],
                LAB["anti_dsdna"][2],
            ),
            with_range(
                observation(f"{pid}-v{v}-c3", pid, LAB["c3"], day, round(c3)), *REFERENCE["c3"], "mg/dL"
            ),
            with_range(
                observation(f"{pid}-v{v}-c4", pid, LAB["c4"], day, round(c4, 1)), *REFERENCE["c4"], "mg/dL"
            ),
            observation(f"{pid}-v{v}-cr", pid, LAB["creatinine"], day, creat),
            observation(f"{pid}-v{v}-egfr", pid, LAB["egfr"], day, round(egfr)),
            with_range(
                observation(f"{pid}-v{v}-plt", pid, LAB["platelets"], day, round(rng.uniform(120, 350))),
                *REFERENCE["platelets"],
                LAB["platelets"][2],
            ),
            with_range(
                observation(f"{pid}-v{v}-wbc", pid, LAB["wbc"], day, round(rng.uniform(2.8, 9.0), 1)),
                *REFERENCE["wbc"],
                LAB["wbc"][2],
            ),
            observation(
                f"{pid}-v{v}-wt",
                pid,
                LAB["weight"],
                day,
                round(weight + rng.uniform(-2, 2), 1),
                category="vital-signs",
            ),
        ]
        out.extend(labs)
        if v % 2 == 1:
            out.append(
                observation(
                    f"{pid}-v{v}-upcr",
                    pid,
                    LAB["upcr"],
                    day,
                    round(
                        rng.uniform(600, 2500) if flare and (nephritis or v == 3) else rng.uniform(50, 300)
                    ),
                )
            )
    if rng.random() < 0.5:
        out.append(observation(f"{pid}-ana1", pid, LAB["ana_titer"], visits[-1], titer))

    if rng.random() < 0.85:  # I5: a non-biologic immunosuppressant or antimalarial for >= 12 weeks
        out.append(medication_request(f"{pid}-hcq", pid, HCQ, onset + timedelta(days=30), 200, 2))
    if rng.random() < 0.4:
        recent = rng.random() < 0.15  # started within 12 weeks: E4 excludes
        started = AS_OF - timedelta(days=rng.randint(20, 70) if recent else rng.randint(150, 900))
        via_reference = rng.random() < 0.5
        out.append(
            medication_request(
                f"{pid}-mmf", pid, MMF, started, 1000, 2, reference="bench-mmf-500" if via_reference else None
            )
        )
    if rng.random() < 0.3:
        high = rng.random() < 0.15  # > 0.5 mg/kg/day: E3 excludes
        out.append(
            medication_request(
                f"{pid}-pred",
                pid,
                PREDNISONE,
                AS_OF - timedelta(days=rng.randint(10, 300)),
                40 if high else 5,
                1,
            )
        )
    if rng.random() < 0.2:  # belimumab: E6 washout depends on the last dose
        last_dose = AS_OF - timedelta(days=rng.randint(10, 400))
        for k in range(6):
            out.append(administration(f"{pid}-bel{k}", pid, last_dose - timedelta(days=28 * (5 - k))))
    return out


def ordinary_person(pid: str, rng: random.Random) -> list[Resource]:
    out = [patient(pid, rng, 18, 90)]
    for k, code in enumerate(rng.sample(ORDINARY_CONDITIONS, rng.randint(1, 2))):
        out.append(condition(f"{pid}-c{k}", pid, code, AS_OF - timedelta(days=rng.randint(100, 4000))))
    day = AS_OF - timedelta(days=rng.randint(10, 700))
    egfr = rng.uniform(40, 110)
    out.append(observation(f"{pid}-cr", pid, LAB["creatinine"], day, round(max(0.4, 90 / egfr), 2)))
    out.append(observation(f"{pid}-egfr", pid, LAB["egfr"], day, round(egfr)))
    out.append(
        observation(f"{pid}-wt", pid, LAB["weight"], day, round(rng.uniform(50, 120), 1), "vital-signs")
    )
    if rng.random() < 0.5:
        out.append(observation(f"{pid}-a1c", pid, HBA1C, day, round(rng.uniform(4.8, 9.5), 1)))
    else:
        out.append(observation(f"{pid}-sbp", pid, SYSTOLIC, day, rng.randint(105, 165), "vital-signs"))
    out.append(
        medication_request(
            f"{pid}-rx", pid, rng.choice(ORDINARY_DRUGS), AS_OF - timedelta(days=rng.randint(30, 1500)), 10, 1
        )
    )
    out.append(
        procedure(
            f"{pid}-px", pid, rng.choice(ORDINARY_PROCEDURES), AS_OF - timedelta(days=rng.randint(30, 3000))
        )
    )
    return out


def people(n: int, seed: int, sle_share: float) -> Iterator[tuple[str, bool, list[Resource]]]:
    """(patient id, has SLE, resources) for each person, in index order."""
    rng = random.Random(seed)
    sle_count = round(n * sle_share)
    sle = set(rng.sample(range(n), sle_count)) if sle_count else set()
    width = len(str(max(n - 1, 0)))
    for i in range(n):
        pid = f"b{seed}-{i:0{width}d}"
        has_sle = i in sle
        yield pid, has_sle, (sle_person if has_sle else ordinary_person)(pid, rng)


# -- output -----------------------------------------------------------------------------------------------


def generate(
    n: int,
    seed: int,
    out: Path,
    sle_share: float = 0.03,
    bundles: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write ``out/ndjson/<Type>.ndjson`` (and ``out/bundles/<patient>.json``); return the manifest,
    also written to ``out/population.json``."""
    started = time.monotonic()
    ndjson = out / "ndjson"
    ndjson.mkdir(parents=True, exist_ok=True)
    if bundles:
        (out / "bundles").mkdir(parents=True, exist_ok=True)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    files: dict[str, TextIO] = {t: (ndjson / f"{t}.ndjson").open("w", encoding="utf-8") for t in TYPES}
    counts = dict.fromkeys(TYPES, 0)
    sle_ids: list[str] = []
    try:
        for mid, code in MEDICATIONS.items():
            files["Medication"].write(dumps(medication(mid, code)) + "\n")
            counts["Medication"] += 1
        if bundles:
            shared = [medication(mid, code) for mid, code in MEDICATIONS.items()]
            _write_bundle(out / "bundles" / "medications.json", shared, dumps)
        for index, (pid, has_sle, resources) in enumerate(people(n, seed, sle_share)):
            if has_sle:
                sle_ids.append(pid)
            for resource in resources:
                rtype = resource["resourceType"]
                files[rtype].write(dumps(resource) + "\n")
                counts[rtype] += 1
            if bundles:
                _write_bundle(out / "bundles" / f"{pid}.json", resources, dumps)
            if progress and index and index % 10000 == 0:
                progress(f"{index} people")
    finally:
        for fh in files.values():
            fh.close()
    manifest = {
        "generator": "bench/population.py",
        "generator_version": GENERATOR_VERSION,
        "people": n,
        "seed": seed,
        "sle_share": sle_share,
        "sle_patients": len(sle_ids),
        "as_of": AS_OF.isoformat(),
        "resources": sum(counts.values()),
        "by_type": counts,
        "seconds": round(time.monotonic() - started, 2),
    }
    (out / "population.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (out / "sle_ids.txt").write_text("".join(f"{p}\n" for p in sle_ids), encoding="utf-8")
    return manifest


def _write_bundle(path: Path, resources: list[Resource], dumps: Callable[[Any], str]) -> None:
    entries = [
        {
            "fullUrl": f"{r['resourceType']}/{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in resources
    ]
    path.write_text(
        dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}), encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sle-share", type=float, default=0.03)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundles", action="store_true", help="also write one transaction Bundle per person")
    args = parser.parse_args(argv)
    manifest = generate(
        args.people,
        args.seed,
        args.out,
        args.sle_share,
        args.bundles,
        progress=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
