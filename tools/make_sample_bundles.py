"""Generate the bundled synthetic sample data in ``sample_bundles/`` (deterministic, standard library only).

    python3 tools/make_sample_bundles.py            # rewrite sample_bundles/ (byte-identical every run)
    python3 tools/make_sample_bundles.py --check    # exit 1 if sample_bundles/ is not what it would write

Every patient is the same "typical SLE patient who is eligible on 2026-06-01" (``baseline``) plus one or
two twists, each meant to move one criterion to pass, fail or unknown. The intended outcomes live in
``PATIENTS`` below and in the table of ``sample_bundles/README.md`` (generated from the same list) and
are asserted by ``tests/unit/test_sample_bundles.py``.

All data are synthetic: names like "Testpatient Alpha", identifiers in an example system, addresses on
"Example Street". Codes follow the trial file's value sets and /work/shared/notes/criteria-codes.md.

The data are written the three ways an EHR export arrives:
* ``bundles/urn/*.json``: transaction Bundles whose references are ``urn:uuid:`` fullUrls (Synthea style);
* ``bundles/relative/*.json``: transaction Bundles with ``Type/id`` references and absolute fullUrls;
* ``bulk/*.ndjson``: a Bulk Data export, one resource per line, one file per resource type.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "sample_bundles"
AS_OF = date(2026, 6, 1)
BASE_URL = "http://example.org/fhir"
NAMESPACE = uuid.UUID("6f1c2b1e-5d1a-4c1e-9a43-2f6a1d0c5e77")  # fixed: urn:uuid values are reproducible

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CPT = "http://www.ama-assn.org/go/cpt"
LOCAL = "http://example.org/fhir/CodeSystem/local-observation"
V3_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

Resource = dict[str, Any]

# Dates of the baseline record relative to the screening date 2026-06-01.
RECENT = "2026-05-12"  # recent clinic visit: labs, SLEDAI-2K, weight (20 days before: inside every window)
DIAGNOSIS = "2019-03-04"  # SLE diagnosed; classification labs of that time
THERAPY_START = "2025-05-01"  # HCQ + MMF started (13 months before: >= 12 weeks, outside E4's window)
RENEWAL = "2026-04-20"  # same-dose HCQ renewal inside E4's 12-week window (not a change)

GREEK = [
    "Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta", "Iota", "Kappa", "Lambda", "Mu",
    "Nu", "Xi", "Omicron", "Pi", "Rho", "Sigma", "Tau", "Upsilon", "Phi", "Chi", "Psi", "Omega",
]


def cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text is not None:
        c["text"] = text
    return c


def status_cc(suffix: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{suffix}", "code": code}]}


def qty(value: float, unit: str, code: str | None = None, comparator: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if comparator:
        q["comparator"] = comparator
    q.update({"unit": unit, "system": UCUM, "code": code or unit})
    return q


def days_before(n: int) -> str:
    return (AS_OF - timedelta(days=n)).isoformat()


# ---------------------------------------------------------------------------------------------------
# A patient under construction: resources keyed by a short name so that twists can replace or drop them.
# ---------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    pid: str
    name: str
    twist: str
    status: str  # intended overall status: eligible / possible / ineligible / (absent: not in population)
    intended: dict[str, str]  # criterion id -> intended outcome of the twist
    layout: str  # urn / relative / bulk
    build: Callable[[Sample], None]
    resources: dict[str, Resource] = field(default_factory=dict)
    medications: list[Resource] = field(default_factory=list)  # referenced: Medication, ResearchStudy

    # -- helpers used by baseline and twists --
    def rid(self, key: str) -> str:
        return f"{self.pid}-{key}"

    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def put(self, key: str, resource: Resource) -> Resource:
        resource.setdefault("id", self.rid(key))
        self.resources[key] = resource
        return resource

    def move(self, key: str, when: str) -> None:
        self.resources[key]["effectiveDateTime"] = f"{when}T09:30:00Z"

    def drop(self, *keys: str) -> None:
        for key in keys:
            del self.resources[key]

    def condition(self, key: str, coding: list[tuple[str, str, str]], onset: str | None, *,
                  clinical: str | None = "active", verification: str = "confirmed",
                  abatement: str | None = None) -> Resource:
        res: Resource = {"resourceType": "Condition"}
        if clinical:
            res["clinicalStatus"] = status_cc("condition-clinical", clinical)
        res["verificationStatus"] = status_cc("condition-ver-status", verification)
        res["code"] = {"coding": [{"system": s, "code": c, "display": d} for s, c, d in coding]}
        res["subject"] = self.subject()
        if onset:
            res["onsetDateTime"] = onset
        if abatement:
            res["abatementDateTime"] = abatement
        return self.put(key, res)

    def observation(self, key: str, code: tuple[str, str, str] | None, when: str | None, *,
                    category: str = "laboratory", status: str = "final", text: str | None = None,
                    **value: Any) -> Resource:
        res: Resource = {"resourceType": "Observation", "status": status}
        if category != "laboratory":  # labs are the default; vital signs and scores say what they are
            res["category"] = [status_cc("observation-category", category)]
        if code is not None:
            res["code"] = cc(*code, text=text)
        else:
            res["code"] = {"text": text}
        res["subject"] = self.subject()
        if when:
            res["effectiveDateTime"] = f"{when}T09:30:00Z"
        low = value.pop("low", None)
        high = value.pop("high", None)
        unit = value.pop("range_unit", None)
        interpretation = value.pop("interpretation", None)
        res.update(value)
        if interpretation:
            res["interpretation"] = [{"coding": [{"system": V3_INTERP, "code": interpretation}]}]
        if low is not None or high is not None:
            rr: dict[str, Any] = {}
            if low is not None:
                rr["low"] = qty(low, *unit)
            if high is not None:
                rr["high"] = qty(high, *unit)
            res["referenceRange"] = [rr]
        return self.put(key, res)

    def med_request(self, key: str, med: tuple[str, str], authored: str, *, status: str = "active",
                    dose: tuple[float, str] | None = None, frequency: int = 1, period: float = 1,
                    period_unit: str = "d", supply_days: int | None = None, repeats: int | None = None,
                    bounds: tuple[str, str | None] | None = None, reason: Resource | None = None,
                    reason_code: tuple[str, str, str] | None = None, route: str | None = None) -> Resource:
        """A MedicationRequest shaped as Synthea writes them (sequence, asNeeded, doseAndRate.type)."""
        res: Resource = {"resourceType": "MedicationRequest", "status": status, "intent": "order",
                         "medicationCodeableConcept": cc(RXNORM, *med), "subject": self.subject(),
                         "authoredOn": f"{authored}T10:00:00Z"}
        if reason is not None:
            res["reasonReference"] = [{"reference": f"Condition/{reason['id']}"}]
        if reason_code is not None:
            res["reasonCode"] = [cc(*reason_code)]
        if dose is not None or bounds is not None:
            repeat: dict[str, Any] = {"frequency": frequency, "period": period, "periodUnit": period_unit}
            if bounds is not None:
                repeat["boundsPeriod"] = {"start": bounds[0]} | ({"end": bounds[1]} if bounds[1] else {})
            dosage: dict[str, Any] = {"sequence": 1, "timing": {"repeat": repeat}, "asNeededBoolean": False}
            if route:
                dosage["route"] = cc(SNOMED, *ROUTES[route])
            if dose is not None:
                dosage["doseAndRate"] = [{
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/dose-rate-type",
                                         "code": "ordered", "display": "Ordered"}]},
                    "doseQuantity": qty(dose[0], dose[1]),
                }]
            res["dosageInstruction"] = [dosage]
        if supply_days is not None:
            dispense: dict[str, Any] = {}
            if repeats is not None:
                dispense["numberOfRepeatsAllowed"] = repeats
            dispense["expectedSupplyDuration"] = {"value": supply_days, "unit": "days", "system": UCUM,
                                                  "code": "d"}
            res["dispenseRequest"] = dispense
        return self.put(key, res)

    def med_statement(self, key: str, med: tuple[str, str] | None, start: str | None,
                      end: str | None = None, *,
                      status: str = "active", dose: tuple[float, str] | None = None, frequency: int = 1,
                      reference: str | None = None, contained: Resource | None = None) -> Resource:
        res: Resource = {"resourceType": "MedicationStatement", "status": status}
        if contained is not None:
            res["contained"] = [contained]
            res["medicationReference"] = {"reference": f"#{contained['id']}"}
        elif reference is not None:
            res["medicationReference"] = {"reference": f"Medication/{reference}"}
        elif med is not None:
            res["medicationCodeableConcept"] = cc(RXNORM, *med)
        res["subject"] = self.subject()
        if start or end:
            res["effectivePeriod"] = {"start": start} | ({"end": end} if end else {})
        if dose is not None:
            res["dosage"] = [{"timing": {"repeat": {"frequency": frequency, "period": 1, "periodUnit": "d"}},
                              "doseAndRate": [{"doseQuantity": qty(dose[0], dose[1])}]}]
        return self.put(key, res)

    def med_admin(self, key: str, med: tuple[str, str], when: str, *, dose: tuple[float, str] | None = None,
                  status: str = "completed", reference: str | None = None) -> Resource:
        res: Resource = {"resourceType": "MedicationAdministration", "status": status}
        if reference is not None:
            res["medicationReference"] = {"reference": f"Medication/{reference}"}
        else:
            res["medicationCodeableConcept"] = cc(RXNORM, *med)
        res["subject"] = self.subject()
        res["effectivePeriod"] = {"start": f"{when}T09:00:00Z", "end": f"{when}T11:00:00Z"}
        if dose is not None:
            res["dosage"] = {"route": cc(SNOMED, *ROUTES["iv"]), "dose": qty(dose[0], dose[1])}
        return self.put(key, res)

    def procedure(self, key: str, code: tuple[str, str, str] | None, performed: str | None, *,
                  status: str = "completed", text: str | None = None) -> Resource:
        res: Resource = {"resourceType": "Procedure", "status": status}
        res["code"] = cc(*code, text=text) if code is not None else {"text": text}
        res["subject"] = self.subject()
        if performed:
            res["performedPeriod"] = {"start": f"{performed}T08:00:00Z", "end": f"{performed}T10:00:00Z"}
        return self.put(key, res)


ROUTES = {"oral": ("26643006", "Oral route"), "iv": ("47625008", "Intravenous route")}

# Codes (criteria-codes.md; RxNorm SCDs read in VSAC expansions where noted there).
SLE_SNOMED = (SNOMED, "55464009", "Systemic lupus erythematosus")
SLE_ICD_NEPHRITIS = (ICD10CM, "M32.14", "Glomerular disease in systemic lupus erythematosus")
SLE_ARTHRITIS = (SNOMED, "95408003", "Systemic lupus erythematosus arthritis")
ANA_TITER = (LOINC, "5048-4", "Nuclear Ab [Titer] in Serum by Immunofluorescence")
ANA_PRESENCE = (LOINC, "8061-4", "Nuclear Ab [Presence] in Serum")
DSDNA = (LOINC, "5130-0", "DNA double strand Ab [Units/volume] in Serum")
C3 = (LOINC, "4485-9", "Complement C3 [Mass/volume] in Serum or Plasma")
EGFR_2021 = (LOINC, "98979-8",
             "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood "
             "by Creatinine-based formula (CKD-EPI 2021)")
EGFR_MDRD = (LOINC, "33914-3",
             "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma "
             "by Creatinine-based formula (MDRD)")
CREAT = (LOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma")
CREAT_MOL = (LOINC, "14682-9", "Creatinine [Moles/volume] in Serum or Plasma")
UPCR = (LOINC, "2890-2", "Protein/Creatinine [Mass Ratio] in Urine")
WEIGHT = (LOINC, "29463-7", "Body weight")
PLATELETS = (LOINC, "777-3", "Platelets [#/volume] in Blood by Automated count")
SLEDAI = (LOCAL, "SLEDAI-2K", "SLEDAI-2K total score")
HBSAG = (LOINC, "5196-1", "Hepatitis B virus surface Ag [Presence] in Serum or Plasma by Immunoassay")
IGRA = (LOINC, "71773-6", "Mycobacterium tuberculosis stimulated gamma interferon [Presence] in Blood")
HCV_RNA = (LOINC, "11259-9",
           "Hepatitis C virus RNA [Presence] in Serum or Plasma by NAA with probe detection")
HCG = (LOINC, "2118-8", "Choriogonadotropin (pregnancy test) [Presence] in Serum or Plasma")

ASTHMA_ICD = (ICD10CM, "J45.41", "Moderate persistent asthma with (acute) exacerbation")
CAR_T_HISTORY = (ICD10CM, "Z92.850", "Personal history of Chimeric Antigen Receptor T-cell therapy")
BREAST_CANCER_ICD = (ICD10CM, "C50.911", "Malignant neoplasm of unspecified site of right female breast")

POSITIVE = cc(SNOMED, "10828004", "Positive")
NEGATIVE = cc(SNOMED, "260385009", "Negative")
NOT_DETECTED = cc(SNOMED, "260415000", "Not detected")

HCQ = ("979092", "hydroxychloroquine sulfate 200 MG Oral Tablet")
MMF = ("200060", "mycophenolate mofetil 500 MG Oral Tablet")
AZA = ("197388", "azathioprine 50 MG Oral Tablet")
CYC_IV = ("3002", "cyclophosphamide")
PRED10 = ("198145", "prednisone 10 MG Oral Tablet")
PRED5 = ("312617", "prednisone 5 MG Oral Tablet")
MPRED32 = ("197971", "methylprednisolone 32 MG Oral Tablet")
DEXA2 = ("197581", "dexamethasone 2 MG Oral Tablet")
SYNTHEA_PRED20 = ("312615", "predniSONE 20 MG Oral Tablet")
SYNTHEA_CSA = ("241834", "cycloSPORINE, modified 100 MG Oral Capsule")
SYNTHEA_NAPROXEN = ("849574", "Naproxen sodium 220 MG Oral Tablet")
BELIMUMAB = ("1092437", "belimumab")
RITUXIMAB = ("121191", "rituximab")
ANIFROLUMAB_TEXT = "anifrolumab-fnia 300 MG in 2 ML Injection (Saphnelo)"

DSDNA_UNIT = ("[IU]/mL", "[IU]/mL")
MGDL = ("mg/dL", "mg/dL")


# ---------------------------------------------------------------------------------------------------
# The baseline: eligible on 2026-06-01 on every computable criterion.
# ---------------------------------------------------------------------------------------------------


def baseline(p: Sample) -> None:
    index = next(i for i, s in enumerate(PATIENTS) if s.pid == p.pid)
    p.put("patient", {
        "resourceType": "Patient",
        "id": p.pid,
        "identifier": [{"system": "urn:example:fhirscreen:mrn", "value": f"TEST-{index + 1:04d}"}],
        "name": [{"use": "official", "family": "Testpatient", "given": [p.name]}],
        "gender": "female",
        "birthDate": "1988-04-12",
        "address": [{"line": [f"{index + 1} Example Street"], "city": "Exampleville", "postalCode": "00000",
                     "country": "US"}],
    })
    sle = p.condition("sle", [SLE_SNOMED, SLE_ICD_NEPHRITIS], DIAGNOSIS)
    p.condition("arthritis", [SLE_ARTHRITIS], DIAGNOSIS)
    # Classification evidence at diagnosis (I2 counts over the whole record).
    p.observation("ana-2019", ANA_TITER, DIAGNOSIS, valueString="1:640")
    # The recent visit: serology, complement, kidney function, weight, recorded SLEDAI-2K.
    p.observation("ana", ANA_TITER, RECENT, valueString="1:320")
    p.observation("dsdna", DSDNA, RECENT, valueQuantity=qty(85, *DSDNA_UNIT), high=30, range_unit=DSDNA_UNIT,
                  interpretation="H")
    p.observation("c3", C3, RECENT, valueQuantity=qty(62, *MGDL), low=90, high=180, range_unit=MGDL,
                  interpretation="L")
    p.observation("egfr", EGFR_2021, RECENT, valueQuantity=qty(75, "mL/min/{1.73_m2}"))
    p.observation("upcr", UPCR, RECENT, valueQuantity=qty(0.8, "g/g"), high=0.2, range_unit=("g/g",),
                  interpretation="H")
    p.observation("weight", WEIGHT, RECENT, category="vital-signs", valueQuantity=qty(60, "kg"))
    p.observation("sledai", SLEDAI, RECENT, category="survey", valueQuantity=qty(8, "{score}"))
    # Background therapy since 2025-05-01: HCQ (requests with refills, renewed at the same dose inside
    # E4's window) and MMF (patient-reported MedicationStatement); prednisone 10 mg/day for SLE.
    p.med_request("hcq-2025", HCQ, THERAPY_START, status="completed", dose=(200, "mg"), frequency=2,
                  supply_days=90, repeats=3)
    p.med_request("hcq-2026", HCQ, RENEWAL, dose=(200, "mg"), frequency=2, supply_days=90, repeats=3)
    p.med_statement("mmf", MMF, THERAPY_START, dose=(1000, "mg"), frequency=2)
    p.med_request("prednisone", PRED10, "2026-02-02", dose=(10, "mg"), bounds=("2026-02-02", None),
                  reason=sle, route="oral", supply_days=90, repeats=2)


# ---------------------------------------------------------------------------------------------------
# Twists: one function per patient; each moves one or two criteria.
# ---------------------------------------------------------------------------------------------------


def t_none(p: Sample) -> None:
    pass


def t_encodings(p: Sample) -> None:
    """Other encodings that must still pass: "1/320", eGFR ">60", SLEDAI by text only, renal biopsy."""
    p.resources["ana"]["valueString"] = "1/320"
    p.resources["egfr"]["valueQuantity"] = qty(60, "mL/min/{1.73_m2}", comparator=">")
    sledai = p.resources["sledai"]
    sledai["code"] = {"text": "SELENA-SLEDAI score"}
    sledai["valueQuantity"] = qty(10, "{score}")
    p.procedure("renal-biopsy", (CPT, "50200", "Renal biopsy; percutaneous"), "2026-04-15",
                text="Percutaneous renal biopsy")
    del p.resources["prednisone"]["reasonReference"]  # a course without a reason counts as SLE treatment


def t_resolved_history(p: Sample) -> None:
    """Old, resolved history that must not exclude: hep C cured, treated BCC, old UTI, rituximab 2025."""
    egfr = p.resources["egfr"]
    del egfr["valueQuantity"]
    egfr["valueString"] = ">60"  # the comparator as text, as some lab interfaces send it
    p.condition("hep-c", [(ICD10CM, "B18.2", "Chronic viral hepatitis C")], "2012-05-01", clinical="resolved",
                abatement="2014-09-30")
    p.observation("hcv-rna", HCV_RNA, "2025-11-03", valueCodeableConcept=NOT_DETECTED, interpretation="ND")
    p.condition("bcc", [(ICD10CM, "C44.311", "Basal cell carcinoma of skin of nose")], "2021-02-01",
                clinical="resolved", abatement="2021-03-15")
    p.condition("uti", [(SNOMED, "68566005", "Urinary tract infectious disease")], "2026-03-02",
                clinical="resolved", abatement="2026-03-12")
    for n, when in enumerate(("2025-11-03", "2025-11-17"), start=1):
        p.med_admin(f"rituximab-{n}", RITUXIMAB, when, dose=(1000, "mg"))


def t_age_over(p: Sample) -> None:
    p.resources["patient"]["birthDate"] = "1945-02-10"


def t_partial_birth(p: Sample) -> None:
    # "1950-06": 76 if born on 1 June 1950, 75 on any later day of June -> straddles the upper limit.
    p.resources["patient"]["birthDate"] = "1950-06"


def t_deceased(p: Sample) -> None:
    p.resources["patient"]["deceasedDateTime"] = "2026-02-14"


def t_few_items(p: Sample) -> None:
    """SLE coded, but only immunology on record: no clinical ACR/SLICC item."""
    sle = p.resources["sle"]
    sle["code"] = cc(*SLE_SNOMED)
    p.drop("arthritis", "upcr", "ana-2019")


def t_serology_negative(p: Sample) -> None:
    p.resources["ana"]["valueString"] = "1:80"
    dsdna = p.resources["dsdna"]
    dsdna["valueQuantity"] = qty(12, *DSDNA_UNIT)
    dsdna["interpretation"] = [{"coding": [{"system": V3_INTERP, "code": "N"}]}]


def t_ana_presence_only(p: Sample) -> None:
    p.drop("ana")
    p.observation("ana", ANA_PRESENCE, RECENT, valueCodeableConcept=POSITIVE, interpretation="POS")
    p.move("dsdna", "2025-10-01")  # older than 6 months


def _ana_only(p: Sample, **value: Any) -> None:
    """The recent ANA in another encoding; the recent anti-dsDNA is gone so the ANA decides I3."""
    p.drop("ana", "dsdna")
    p.observation("ana", ANA_TITER, RECENT, **value)


def t_ana_ratio(p: Sample) -> None:
    _ana_only(p, valueRatio={"numerator": {"value": 1}, "denominator": {"value": 640}})


def t_ana_quantity(p: Sample) -> None:
    _ana_only(p, valueQuantity={"value": 320, "unit": "titer", "system": UCUM, "code": "{titer}"})


def t_ana_positive_string(p: Sample) -> None:
    _ana_only(p, valueString="Positive 1:640")


def t_dsdna_interpretation(p: Sample) -> None:
    """ANA below 1:160; anti-dsDNA positive only by its interpretation code (no reference range)."""
    p.resources["ana"]["valueString"] = "1:80"
    p.drop("dsdna")
    p.observation("dsdna", DSDNA, RECENT, valueQuantity=qty(45, *DSDNA_UNIT), interpretation="POS")


def t_dsdna_range(p: Sample) -> None:
    """ANA below 1:160; anti-dsDNA positive only against the reported reference range."""
    p.resources["ana"]["valueString"] = "1:80"
    del p.resources["dsdna"]["interpretation"]


def t_egfr_low(p: Sample) -> None:
    p.resources["egfr"]["valueQuantity"] = qty(24, "mL/min/{1.73_m2}")
    p.observation("creatinine", CREAT, RECENT, valueQuantity=qty(2.5, *MGDL), low=0.5, high=1.1,
                  range_unit=MGDL, interpretation="H")


def t_no_recent_kidney(p: Sample) -> None:
    p.move("egfr", "2025-12-01")  # 182 days before: outside 90
    p.observation("creatinine", CREAT, "2025-12-01", valueQuantity=qty(0.95, *MGDL), low=0.5, high=1.1,
                  range_unit=MGDL)


def t_egfr_mdrd_ml_min(p: Sample) -> None:
    p.drop("egfr")
    p.observation("egfr", EGFR_MDRD, RECENT, valueQuantity=qty(68, "mL/min"))


def t_creatinine_mgdl(p: Sample) -> None:
    # CKD-EPI 2021, female, 38 y, 0.95 mg/dL -> about 78.
    p.drop("egfr")
    p.observation("creatinine", CREAT, RECENT, valueQuantity=qty(0.95, *MGDL), low=0.5, high=1.1,
                  range_unit=MGDL)


def t_creatinine_umol(p: Sample) -> None:
    # CKD-EPI 2021, male, 50 y, 110 umol/L (1.244 mg/dL) -> 70.5 (criteria-codes.md test vector).
    p.resources["patient"].update(birthDate="1976-01-15", gender="male")
    p.drop("egfr")
    p.observation("creatinine", CREAT_MOL, RECENT, valueQuantity=qty(110, "umol/L"), low=60, high=110,
                  range_unit=("umol/L",))


def t_no_background(p: Sample) -> None:
    p.drop("hcq-2025", "hcq-2026", "mmf")


def t_course_ended(p: Sample) -> None:
    p.drop("hcq-2025", "hcq-2026", "mmf")
    p.med_statement("hcq", HCQ, "2024-01-10", "2025-09-30", status="completed", dose=(200, "mg"), frequency=2)


def t_contained_medication(p: Sample) -> None:
    p.drop("hcq-2025", "hcq-2026", "mmf")
    aza = {"resourceType": "Medication", "id": "aza", "code": cc(RXNORM, *AZA),
           "form": cc(SNOMED, "421026006", "Oral tablet")}
    p.med_statement("azathioprine", None, "2025-03-03", contained=aza, dose=(100, "mg"))


def t_separate_medication(p: Sample) -> None:
    p.drop("hcq-2025", "hcq-2026", "mmf")
    med_id = f"{p.pid}-med-mmf"
    p.medications.append({"resourceType": "Medication", "id": med_id, "code": cc(RXNORM, *MMF),
                          "form": cc(SNOMED, "421026006", "Oral tablet")})
    p.med_statement("mmf", None, THERAPY_START, reference=med_id, dose=(1000, "mg"), frequency=2)


def t_iv_cyclophosphamide(p: Sample) -> None:
    """Monthly IV cyclophosphamide pulses (MedicationAdministration) as the only background therapy."""
    p.drop("hcq-2025", "hcq-2026", "mmf")
    pulses = ["2025-12-05", "2026-01-05", "2026-02-05", "2026-03-05", "2026-04-06", "2026-05-06"]
    for n, when in enumerate(pulses, start=1):
        p.med_admin(f"cyclophosphamide-{n}", (CYC_IV[0], "cyclophosphamide 500 MG/M2 IV infusion"), when,
                    dose=(850, "mg"))


def t_score_low(p: Sample) -> None:
    p.resources["sledai"]["valueQuantity"] = qty(4, "{score}")
    p.drop("upcr")


def t_no_score_low_bound(p: Sample) -> None:
    p.drop("sledai", "upcr")
    for key in ("dsdna", "ana", "egfr"):
        p.move(key, "2026-04-10")  # 52 days before: outside 30 days


def t_lower_bound_pass(p: Sample) -> None:
    p.drop("sledai")


def t_steroid_for_asthma(p: Sample) -> None:
    asthma = p.condition("asthma", [(SNOMED, "195967001", "Asthma"), ASTHMA_ICD], "2026-03-28")
    p.med_request("prednisone-asthma", PRED5, "2026-04-01", status="completed", dose=(15, "mg"),
                  bounds=("2026-04-01", "2026-05-15"), reason=asthma, route="oral")


def t_steroid_duration_unknown(p: Sample) -> None:
    p.med_request("prednisone-asthma", PRED5, "2026-04-20", status="completed", dose=(10, "mg"),
                  reason_code=(SNOMED, "195967001", "Asthma"), route="oral")


def t_dialysis(p: Sample) -> None:
    for n, when in enumerate(("2025-09-08", "2025-09-11", "2025-09-15"), start=1):
        p.procedure(f"dialysis-{n}", (SNOMED, "302497006", "Hemodialysis"), when)
    p.resources["egfr"]["valueQuantity"] = qty(45, "mL/min/{1.73_m2}")


def t_ckd5(p: Sample) -> None:
    p.condition("ckd5", [(ICD10CM, "N18.5", "Chronic kidney disease, stage 5"),
                         (SNOMED, "433146000", "Chronic kidney disease stage 5")], "2026-01-20")
    p.resources["egfr"]["valueQuantity"] = qty(13, "mL/min/{1.73_m2}")
    p.observation("creatinine", CREAT, RECENT, valueQuantity=qty(3.9, *MGDL), low=0.5, high=1.1,
                  range_unit=MGDL, interpretation="H")


def _replace_prednisone(p: Sample, med: tuple[str, str], dose: float, frequency: int = 1) -> None:
    sle = p.resources["sle"]
    p.drop("prednisone")
    p.med_request("steroid", med, "2026-04-27", dose=(dose, "mg"), frequency=frequency,
                  bounds=("2026-04-27", None), reason=sle, route="oral", supply_days=30)


def t_methylprednisolone(p: Sample) -> None:
    # 32 mg/day x 1.25 = 40 mg prednisone-equivalent / 70 kg = 0.57 mg/kg/day (unconverted 0.46 would pass).
    _replace_prednisone(p, MPRED32, 32)
    p.resources["weight"]["valueQuantity"] = qty(70, "kg")


def t_dexamethasone(p: Sample) -> None:
    # 2 mg three times a day = 6 mg/day x 6.67 = 40 mg prednisone-equivalent / 60 kg = 0.67 mg/kg/day.
    _replace_prednisone(p, DEXA2, 2, frequency=3)


def t_weight_lb(p: Sample) -> None:
    # prednisone 35 mg/day / 132 lb (59.9 kg) = 0.58 mg/kg/day (0.27 if the pounds were read as kg).
    _replace_prednisone(p, PRED5, 35)
    p.resources["weight"]["valueQuantity"] = qty(132, "lb", "[lb_av]")


def t_concurrent_orders(p: Sample) -> None:
    # prednisone 10 mg + 25 mg concurrently = 35 mg/day / 60 kg = 0.58 (each order alone <= 0.5).
    p.med_request("prednisone-extra", PRED5, "2026-05-04", dose=(25, "mg"), bounds=("2026-05-04", None),
                  reason=p.resources["sle"], route="oral", supply_days=30)


def t_no_weight(p: Sample) -> None:
    p.drop("weight")
    # 20 mg/day: above 0.5 mg/kg at 30 kg (the lowest plausible adult weight), so the weight is needed.
    p.resources["prednisone"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 20


def t_mmf_added(p: Sample) -> None:
    p.resources["mmf"]["effectivePeriod"] = {"start": "2026-04-15"}
    p.resources["mmf"]["dateAsserted"] = "2026-04-15T10:00:00Z"


def t_mmf_dose_change(p: Sample) -> None:
    p.drop("mmf")
    p.med_request("mmf-2025", MMF, THERAPY_START, status="stopped", dose=(500, "mg"), frequency=2,
                  supply_days=90, repeats=3)
    p.med_request("mmf-2026", MMF, "2026-04-01", dose=(1000, "mg"), frequency=2, supply_days=90, repeats=3)


def t_dose_unknown(p: Sample) -> None:
    for key in ("hcq-2025", "hcq-2026"):
        del p.resources[key]["dosageInstruction"]


OTHER_STUDY: Resource = {
    "resourceType": "ResearchStudy", "id": "example-other-lupus-study",
    "identifier": [{"system": "urn:example:fhirscreen:study", "value": "EXAMPLE-LUPUS-002"}],
    "title": "Example interventional lupus study (synthetic)", "status": "active",
    "primaryPurposeType": cc("http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type",
                             "treatment", "Treatment"),
    "phase": cc("http://terminology.hl7.org/CodeSystem/research-study-phase", "phase-2", "Phase 2"),
}


def t_research_subject(p: Sample) -> None:
    p.medications.append(OTHER_STUDY)  # referenced resources travel with the patient's data
    p.put("research-subject", {
        "resourceType": "ResearchSubject", "status": "on-study", "period": {"start": "2026-02-01"},
        "study": {"reference": "ResearchStudy/example-other-lupus-study",
                  "display": "Example interventional lupus study (synthetic)"},
        "individual": p.subject(),
    })


def t_study_undated(p: Sample) -> None:
    p.medications.append(OTHER_STUDY)
    # In follow-up after dosing in another study; when the last study dose was is not recorded.
    p.put("research-subject", {
        "resourceType": "ResearchSubject", "status": "follow-up",
        "study": {"reference": "ResearchStudy/example-other-lupus-study",
                  "display": "Example interventional lupus study (synthetic)"},
        "individual": p.subject(),
    })


def t_belimumab(p: Sample) -> None:
    # Last infusion 2026-04-20; washout max(90, 5 x 19.4 d) = 97 days -> ends 2026-07-26.
    for n, when in enumerate(("2026-02-23", "2026-03-23", "2026-04-20"), start=1):
        p.med_admin(f"belimumab-{n}", (BELIMUMAB[0], "belimumab 10 MG/KG IV infusion (Benlysta)"), when,
                    dose=(600, "mg"))


def t_anifrolumab(p: Sample) -> None:
    # No half-life known: last dose 2026-01-20 is 132 days before screening (90-180 days -> unknown).
    for n, when in enumerate(("2025-11-25", "2025-12-22", "2026-01-20"), start=1):
        res = p.med_admin(f"anifrolumab-{n}", ("0", ""), when, dose=(300, "mg"))
        res["medicationCodeableConcept"] = {"text": ANIFROLUMAB_TEXT}


def t_msc_recent(p: Sample) -> None:
    p.procedure("msc", None, "2025-10-01", text="Umbilical cord mesenchymal stem cell (UC-MSC) infusion")


def t_msc_undated(p: Sample) -> None:
    p.procedure("msc", None, None, text="Mesenchymal stromal cell therapy (outside hospital, date unknown)")


def t_car_t(p: Sample) -> None:
    p.condition("car-t", [CAR_T_HISTORY],
                "2024-06-10", clinical="active")


def t_hsct(p: Sample) -> None:
    p.procedure("hsct", (SNOMED, "234336002", "Hemopoietic stem cell transplant"), "2015-03-09")


def t_major_surgery(p: Sample) -> None:
    p.procedure("appendectomy", (SNOMED, "80146002", "Appendectomy"), "2026-04-10")


def t_unclassified_procedure(p: Sample) -> None:
    p.procedure("surgery", (SNOMED, "387713003", "Surgical procedure"), "2026-05-05",
                text="Surgical procedure (details not coded)")


def t_hbsag(p: Sample) -> None:
    p.observation("hbsag", HBSAG, "2026-04-01", valueCodeableConcept=POSITIVE, interpretation="POS")


def t_igra(p: Sample) -> None:
    p.observation("igra", IGRA, "2026-04-01", valueCodeableConcept=POSITIVE, interpretation="POS")


def t_active_infection(p: Sample) -> None:
    p.condition("cellulitis", [(SNOMED, "128045006", "Cellulitis"),
                               (ICD10CM, "L03.116", "Cellulitis of left lower limb")], "2026-05-25")


def t_stale_infection(p: Sample) -> None:
    p.condition("sinusitis", [(SNOMED, "36971009", "Sinusitis")], "2025-09-15")


def t_breast_cancer(p: Sample) -> None:
    p.condition("breast-cancer", [BREAST_CANCER_ICD],
                "2016-08-01", clinical="resolved", abatement="2017-06-30")


def t_active_bcc(p: Sample) -> None:
    p.condition("bcc", [(ICD10CM, "C44.311", "Basal cell carcinoma of skin of nose")], "2026-04-02")


def t_pregnant(p: Sample) -> None:
    p.condition("pregnancy", [(SNOMED, "77386006", "Pregnancy")], "2026-03-20")


def t_hcg_equivocal(p: Sample) -> None:
    p.observation("hcg", HCG, "2026-05-25", valueCodeableConcept=cc(SNOMED, "42425007", "Equivocal"),
                  interpretation="IND")


def t_hygiene(p: Sample) -> None:
    """Records that must be ignored: refuted/entered-in-error conditions, cancelled labs, not-done events."""
    p.condition("cancer-refuted", [BREAST_CANCER_ICD],
                "2025-10-01", verification="refuted")
    p.condition("pregnancy-error", [(SNOMED, "77386006", "Pregnancy")], "2026-04-01", clinical=None,
                verification="entered-in-error")  # con-5: no clinicalStatus on entered-in-error
    p.observation("egfr-error", EGFR_2021, "2026-05-28", status="entered-in-error",
                  valueQuantity=qty(20, "mL/min/{1.73_m2}"))
    p.med_admin("belimumab-error", (BELIMUMAB[0], "belimumab 10 MG/KG IV infusion (Benlysta)"), "2026-05-01",
                status="entered-in-error", dose=(600, "mg"))
    p.procedure("appendectomy-not-done", (SNOMED, "80146002", "Appendectomy"), "2026-05-02",
                status="not-done")
    p.med_statement("hcq-not-taken", HCQ, "2026-04-01", status="not-taken")


def t_synthea_lupus(p: Sample) -> None:
    """What Synthea's lupus module writes (lupus.json): Condition 200936003 "Lupus erythematosus",
    prednisone 20 mg and cyclosporine courses at each flare as MedicationRequests whose dose is "1"
    (a tablet, no unit), no ANA/anti-dsDNA/complement/eGFR/SLEDAI; body weight from wellness visits."""
    for key in list(p.resources):
        if key != "patient":
            del p.resources[key]
    p.resources["patient"]["birthDate"] = "1979-09-23"
    lupus = p.condition("lupus", [(SNOMED, "200936003", "Lupus erythematosus")], "2021-06-14")
    lupus["code"]["text"] = "Lupus erythematosus"
    p.observation("weight", WEIGHT, "2025-10-01", category="vital-signs", valueQuantity=qty(58.2, "kg"))
    flares = [("2025-11-03", "2025-11-24", "stopped"), ("2026-05-05", None, "active")]
    for n, (start, end, status) in enumerate(flares, start=1):
        for key, med in (("prednisone", SYNTHEA_PRED20), ("cyclosporine", SYNTHEA_CSA)):
            res = p.med_request(f"{key}-{n}", med, start, status=status, dose=(1, ""), reason=lupus)
            res["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {"value": 1.0}
            res["dosageInstruction"][0]["timing"]["repeat"]["period"] = 1.0
            if end:
                res["dispenseRequest"] = {"validityPeriod": {"start": start, "end": end}}
    p.med_request("naproxen", SYNTHEA_NAPROXEN, "2021-06-14", reason=lupus)


# -- Patients outside the initial population (no SLE diagnosis): must never appear in the output --------


def _non_sle(p: Sample, conditions: list[tuple[str, list[tuple[str, str, str]]]]) -> None:
    for key in list(p.resources):
        if key not in {"patient", "ana", "weight", "egfr"}:
            del p.resources[key]
    for key, coding in conditions:
        p.condition(key, coding, "2022-07-01")


def t_hypertension(p: Sample) -> None:
    _non_sle(p, [("hypertension", [(SNOMED, "38341003", "Hypertensive disorder"),
                                   (ICD10CM, "I10", "Essential (primary) hypertension")])])


def t_drug_induced(p: Sample) -> None:
    _non_sle(p, [("dil", [(SNOMED, "201436003", "Drug-induced systemic lupus erythematosus"),
                          (ICD10CM, "M32.0", "Drug-induced systemic lupus erythematosus")])])


def t_discoid(p: Sample) -> None:
    _non_sle(p, [("dle", [(SNOMED, "200938002", "Discoid lupus erythematosus"),
                          (ICD10CM, "L93.0", "Discoid lupus erythematosus")])])


def t_rheumatoid(p: Sample) -> None:
    _non_sle(p, [("ra", [(SNOMED, "69896004", "Rheumatoid arthritis"),
                         (ICD10CM, "M06.9", "Rheumatoid arthritis, unspecified")])])
    p.med_request("hcq", HCQ, THERAPY_START, dose=(200, "mg"), frequency=2, supply_days=90, repeats=3)


@dataclass(frozen=True)
class Twist:
    text: str
    intended: dict[str, str]  # criterion id -> outcome this twist is meant to produce
    apply: Callable[[Sample], None]


def T(text: str, intended: str, apply: Callable[[Sample], None]) -> Twist:
    """``intended`` as "I4 fail, E2 unknown"."""
    pairs = [item.split() for item in intended.split(",") if item.strip()]
    return Twist(text, {k: v for k, v in pairs}, apply)


ALL_PASS = ", ".join(f"{c} pass" for c in [*(f"I{i}" for i in range(1, 7)), *(f"E{i}" for i in range(1, 14))])
BASELINE = T("baseline: typical SLE patient", ALL_PASS, t_none)
ENCODINGS = T('ANA "1/320", eGFR ">60" comparator, SLEDAI by code text only, recent renal biopsy (minor), '
              "prednisone without a reason", "I3 pass, I4 pass, I6 pass, E1 pass, E9 pass", t_encodings)
RESOLVED = T('eGFR valueString ">60"; cured hepatitis C (HCV RNA not detected), resolved treated BCC, '
             "resolved UTI, rituximab last 2025-11-17 (washout ended 2026-03-12)",
             "I4 pass, E6 pass, E10 pass, E11 pass, E12 pass",
             t_resolved_history)
HYGIENE = T("refuted cancer, entered-in-error pregnancy / eGFR 20 / belimumab, not-done appendectomy, "
            "not-taken HCQ: all ignored", "I4 pass, E6 pass, E9 pass, E12 pass, E13 pass", t_hygiene)
AGE_81 = T("born 1945-02-10: 81 on the screening date", "I1 fail", t_age_over)
PARTIAL_BIRTH = T('birthDate "1950-06": 75 or 76', "I1 unknown", t_partial_birth)
DECEASED = T("deceased 2026-02-14 (therapy on record ends at death)", "I1 fail, I5 unknown", t_deceased)
FEW_ITEMS = T("SLE SNOMED code only; no clinical ACR/SLICC item (no arthritis, nephritis code, proteinuria)",
              "I2 unknown", t_few_items)
SEROLOGY_NEG = T("ANA 1:80 and anti-dsDNA 12 IU/mL (N) in the last 6 months", "I3 fail", t_serology_negative)
ANA_NO_TITER = T("ANA positive without a titer; anti-dsDNA older than 6 months", "I3 unknown",
                 t_ana_presence_only)
ANA_RATIO = T("ANA valueRatio 1:640 (no recent anti-dsDNA)", "I3 pass", t_ana_ratio)
ANA_QUANTITY = T("ANA valueQuantity 320 {titer} (no recent anti-dsDNA)", "I3 pass", t_ana_quantity)
ANA_POS_STRING = T('ANA "Positive 1:640" (no recent anti-dsDNA)', "I3 pass", t_ana_positive_string)
DSDNA_INTERP = T("ANA 1:80; anti-dsDNA 45 IU/mL flagged POS, no reference range", "I3 pass",
                 t_dsdna_interpretation)
DSDNA_RANGE = T("ANA 1:80; anti-dsDNA 85 IU/mL above reference range (high 30), no flag", "I3 pass",
                t_dsdna_range)
EGFR_LOW = T("eGFR 24, creatinine 2.5 mg/dL", "I4 fail", t_egfr_low)
NO_RECENT_KIDNEY = T("eGFR and creatinine only 2025-12-01 (outside 90 days)", "I4 unknown",
                     t_no_recent_kidney)
EGFR_33914 = T('eGFR 68 under LOINC 33914-3 in "mL/min" (Synthea dialysis-module style)', "I4 pass",
              t_egfr_mdrd_ml_min)
CREAT_MGDL = T("no eGFR; creatinine 0.95 mg/dL, female 38 y (CKD-EPI 2021 about 78)", "I4 pass",
               t_creatinine_mgdl)
CREAT_UMOL = T("no eGFR; creatinine 110 umol/L, male 50 y (CKD-EPI 2021 70.5)", "I4 pass, E13 pass",
               t_creatinine_umol)
NO_BACKGROUND = T("no immunosuppressant or antimalarial on record (prednisone only)", "I5 fail",
                  t_no_background)
COURSE_ENDED = T("HCQ 2024-01-10 to 2025-09-30 only (course ended)", "I5 unknown", t_course_ended)
CONTAINED = T("azathioprine via medicationReference to a contained Medication", "I5 pass",
              t_contained_medication)
SEPARATE = T("MMF via medicationReference to a separate Medication resource", "I5 pass",
             t_separate_medication)
IV_CYC = T("monthly IV cyclophosphamide MedicationAdministrations since 2025-12-05, nothing else",
           "I5 pass, E4 pass", t_iv_cyclophosphamide)
SCORE_4 = T("recorded SLEDAI-2K 4 on 2026-05-12", "I6 fail", t_score_low)
BOUND_2 = T("no SLEDAI-2K; within 30 days only a low C3 (lower bound 2)", "I6 unknown", t_no_score_low_bound)
BOUND_8 = T("no SLEDAI-2K; low C3 (2) + high anti-dsDNA (2) + proteinuria (4) = lower bound 8", "I6 pass",
            t_lower_bound_pass)
ASTHMA_STEROID = T("prednisone 15 mg/day for asthma 2026-04-01..05-15 (45 days; total with SLE dose "
                   "25 mg/day = 0.42 mg/kg)", "E1 fail, E3 pass", t_steroid_for_asthma)
STEROID_NO_DURATION = T("prednisone for asthma ordered 2026-04-20, no duration", "E1 unknown",
                        t_steroid_duration_unknown)
DIALYSIS = T("haemodialysis 2025-09 (AKI), eGFR recovered to 45", "E2 fail, I4 pass", t_dialysis)
CKD5 = T("CKD stage 5 (N18.5) without dialysis; eGFR 13", "E2 unknown, I4 fail", t_ckd5)
MPRED = T("methylprednisolone 32 mg/day, 70 kg (40 mg pred-eq = 0.57 mg/kg/day)", "E3 fail",
          t_methylprednisolone)
DEXA = T("dexamethasone 2 mg three times a day, 60 kg (40 mg pred-eq = 0.67 mg/kg/day)", "E3 fail",
         t_dexamethasone)
WEIGHT_LB = T("prednisone 35 mg/day, body weight 132 lb (0.58 mg/kg/day)", "E3 fail", t_weight_lb)
CONCURRENT = T("prednisone 10 mg + 25 mg orders concurrently, 60 kg (0.58 mg/kg/day)", "E3 fail",
               t_concurrent_orders)
NO_WEIGHT = T("no body weight on record, prednisone 20 mg/day", "E3 unknown", t_no_weight)
MMF_ADDED = T("MMF started 2026-04-15 (HCQ continues)", "E4 fail, I5 pass", t_mmf_added)
MMF_DOSE = T("MMF 500 mg bid re-ordered 2026-04-01 at 1000 mg bid", "E4 fail", t_mmf_dose_change)
DOSE_UNKNOWN = T("HCQ orders without dosage; renewal 2026-04-20 inside 12 weeks", "E4 unknown",
                 t_dose_unknown)
RESEARCH = T("ResearchSubject on-study in another trial since 2026-02-01", "E5 fail", t_research_subject)
STUDY_UNDATED = T("ResearchSubject in follow-up of another trial, no dates (last study dose unknown)",
                  "E5 unknown", t_study_undated)
BELIMUMAB_RECENT = T("belimumab infusions, last 2026-04-20 (washout ends 2026-07-26)", "E6 fail", t_belimumab)
ANIFROLUMAB = T("anifrolumab (no half-life known), last dose 2026-01-20 (132 days)", "E6 unknown",
                t_anifrolumab)
MSC_RECENT = T("UC-MSC infusion 2025-10-01 (procedure text only)", "E7 fail", t_msc_recent)
MSC_UNDATED = T("MSC therapy on record without a date", "E7 unknown", t_msc_undated)
CAR_T = T("history of CAR-T therapy (Z92.850)", "E8 fail", t_car_t)
HSCT = T("haematopoietic stem-cell transplant 2015", "E8 unknown", t_hsct)
APPENDECTOMY = T("appendectomy 2026-04-10 (52 days before)", "E9 fail", t_major_surgery)
UNCLASSIFIED = T("uncoded 'surgical procedure' 2026-05-05", "E9 unknown", t_unclassified_procedure)
HBSAG_POS = T("HBsAg positive 2026-04-01", "E10 fail", t_hbsag)
IGRA_POS = T("IGRA positive, no TB diagnosis", "E10 unknown", t_igra)
CELLULITIS = T("active cellulitis since 2026-05-25", "E11 fail", t_active_infection)
STALE_SINUSITIS = T("sinusitis still 'active' since 2025-09-15 (stale entry)", "E11 unknown",
                    t_stale_infection)
BREAST_CANCER = T("breast cancer 2016 (resolved)", "E12 fail", t_breast_cancer)
ACTIVE_BCC = T("basal cell carcinoma of skin, still active", "E12 unknown", t_active_bcc)
PREGNANT = T("pregnancy since 2026-03-20", "E13 fail", t_pregnant)
SYNTHEA = T("shaped like Synthea's lupus module: 200936003 only, no serology/kidney labs/SLEDAI; "
            "prednisone 20 mg + cyclosporine at each flare (dose '1' tablet, no unit; flare "
            "2025-11-03..11-24, current flare since 2026-05-05: cyclosporine restarted); weight 58.2 kg "
            "on 2025-10-01",
            "I2 unknown, I3 unknown, I4 unknown, I5 fail, I6 unknown, E1 pass, E3 pass, E4 fail",
            t_synthea_lupus)
HCG_EQUIVOCAL = T("equivocal serum hCG 2026-05-25", "E13 unknown", t_hcg_equivocal)


def S(pid: str, status: str, layout: str, *twists: Twist) -> Sample:
    intended: dict[str, str] = {}
    for t in twists:
        intended.update(t.intended)

    def build(p: Sample) -> None:
        for t in twists:
            t.apply(p)

    return Sample(pid, "", "; ".join(t.text for t in twists), status, intended, layout, build)


def non_sle(pid: str, layout: str, text: str, apply: Callable[[Sample], None]) -> Sample:
    return Sample(pid, "", text, "absent", {}, layout, apply)


# Patients: id, intended overall status, file layout, one or two twists on the baseline.
PATIENTS: list[Sample] = [
    S("sle-eligible-01", "eligible", "urn", BASELINE),
    S("sle-eligible-02-encodings", "eligible", "relative", ENCODINGS),
    S("sle-eligible-03-resolved-history", "eligible", "urn", RESOLVED),
    S("sle-eligible-04-hygiene", "eligible", "urn", HYGIENE),
    S("sle-eligible-05-ana-ratio-contained-med", "eligible", "relative", ANA_RATIO, CONTAINED),
    S("sle-eligible-06-ana-qty-separate-med", "eligible", "bulk", ANA_QUANTITY, SEPARATE),
    S("sle-eligible-07-ana-string-iv-cyc", "eligible", "urn", ANA_POS_STRING, IV_CYC),
    S("sle-eligible-08-dsdna-flag-egfr-33914", "eligible", "bulk", DSDNA_INTERP, EGFR_33914),
    S("sle-eligible-09-dsdna-range-creat-mgdl", "eligible", "relative", DSDNA_RANGE, CREAT_MGDL),
    S("sle-eligible-10-male-creat-umol-no-score", "eligible", "bulk", CREAT_UMOL, BOUND_8),
    S("sle-i1-deceased", "ineligible", "urn", DECEASED),
    S("sle-i1-age-81-e12-breast-cancer", "ineligible", "bulk", AGE_81, BREAST_CANCER),
    S("sle-i3-negative-e9-appendectomy", "ineligible", "relative", SEROLOGY_NEG, APPENDECTOMY),
    S("sle-i4-egfr-24-e10-hbsag", "ineligible", "urn", EGFR_LOW, HBSAG_POS),
    S("sle-i5-none-e11-cellulitis", "ineligible", "relative", NO_BACKGROUND, CELLULITIS),
    S("sle-i6-score-4-e8-car-t", "ineligible", "urn", SCORE_4, CAR_T),
    S("sle-e1-asthma-steroid-e5-other-trial", "ineligible", "bulk", ASTHMA_STEROID, RESEARCH),
    S("sle-e2-dialysis-e7-msc", "ineligible", "urn", DIALYSIS, MSC_RECENT),
    S("sle-e2-ckd5", "ineligible", "relative", CKD5),
    S("sle-e3-methylprednisolone-e13-pregnant", "ineligible", "urn", MPRED, PREGNANT),
    S("sle-e3-dexamethasone-e6-belimumab", "ineligible", "relative", DEXA, BELIMUMAB_RECENT),
    S("sle-e3-weight-lb-e4-dose-change", "ineligible", "bulk", WEIGHT_LB, MMF_DOSE),
    S("sle-e3-concurrent-e4-mmf-added", "ineligible", "urn", CONCURRENT, MMF_ADDED),
    S("sle-i1-partial-birthdate-e12-active-bcc", "possible", "relative", PARTIAL_BIRTH, ACTIVE_BCC),
    S("sle-i2-few-items-e10-igra", "possible", "urn", FEW_ITEMS, IGRA_POS),
    S("sle-i3-ana-presence-e8-hsct", "possible", "relative", ANA_NO_TITER, HSCT),
    S("sle-i4-stale-kidney-e11-stale-sinusitis", "possible", "bulk", NO_RECENT_KIDNEY, STALE_SINUSITIS),
    S("sle-i5-course-ended-e6-anifrolumab", "possible", "urn", COURSE_ENDED, ANIFROLUMAB),
    S("sle-i6-bound-2-e9-unclassified", "possible", "relative", BOUND_2, UNCLASSIFIED),
    S("sle-e1-no-duration-e7-msc-undated", "possible", "urn", STEROID_NO_DURATION, MSC_UNDATED),
    S("sle-e3-no-weight-e5-undated-study", "possible", "bulk", NO_WEIGHT, STUDY_UNDATED),
    S("sle-e4-dose-unknown-e13-hcg-equivocal", "possible", "relative", DOSE_UNKNOWN, HCG_EQUIVOCAL),
    S("sle-synthea-lupus-module", "ineligible", "urn", SYNTHEA),
    non_sle("nonsle-hypertension", "bulk", "no SLE: hypertension only", t_hypertension),
    non_sle("nonsle-drug-induced-lupus", "urn", "no SLE: drug-induced lupus only (M32.0, 201436003)",
            t_drug_induced),
    non_sle("nonsle-discoid-lupus", "relative", "no SLE: discoid (cutaneous) lupus only (L93.0)", t_discoid),
    non_sle("nonsle-rheumatoid", "bulk", "no SLE: rheumatoid arthritis on hydroxychloroquine", t_rheumatoid),
]


def _name(index: int) -> str:
    greek = GREEK[index % len(GREEK)]
    return greek if index < len(GREEK) else f"{greek} {index // len(GREEK) + 1}"


# ---------------------------------------------------------------------------------------------------
# Writing: transaction Bundles (urn:uuid or relative references) and Bulk NDJSON.
# ---------------------------------------------------------------------------------------------------


def _urn(rtype: str, rid: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{rtype}/{rid}')}"


def _to_urn(node: Any, known: set[str]) -> None:
    """Rewrite ``Type/id`` references to resources inside the same bundle into their urn:uuid."""
    if isinstance(node, dict):
        value = node.get("reference")
        if isinstance(value, str) and value in known:
            rtype, rid = value.split("/", 1)
            node["reference"] = _urn(rtype, rid)
        for child in node.values():
            _to_urn(child, known)
    elif isinstance(node, list):
        for child in node:
            _to_urn(child, known)


def _dump(resource: Resource) -> str:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


def bundle_text(sample: Sample) -> str:
    resources = [*sample.medications, *sample.resources.values()]
    urn = sample.layout == "urn"
    known = {f"{r['resourceType']}/{r['id']}" for r in resources}
    entries = []
    for res in resources:
        res = json.loads(json.dumps(res))
        rtype, rid = res["resourceType"], res["id"]
        if urn:
            _to_urn(res, known)
            # Synthea style: urn:uuid fullUrl and POST, except the Patient, PUT under its readable id.
            request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rtype == "Patient" else \
                {"method": "POST", "url": rtype}
            entry = {"fullUrl": _urn(rtype, rid), "resource": res, "request": request}
        else:
            entry = {"fullUrl": f"{BASE_URL}/{rtype}/{rid}", "resource": res,
                     "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}
        entries.append(_dump(entry))
    head = f'{{"resourceType":"Bundle","id":"{sample.pid}-export","type":"transaction","entry":[\n'
    return head + ",\n".join(entries) + "\n]}\n"


def readme_text() -> str:
    lines = [
        "# Synthetic sample data for fhirscreen",
        "",
        "Generated by `python3 tools/make_sample_bundles.py` (deterministic; do not edit by hand;",
        "`--check` verifies the committed files). `tests/unit/test_sample_bundles.py` asserts the table.",
        "Everything here is synthetic: fake names (\"Testpatient Alpha\"), identifiers in",
        "`urn:example:fhirscreen:mrn`, addresses on \"Example Street\". Screening date for the intended",
        "outcomes: **2026-06-01** (`fhirscreen screen --data sample_bundles --as-of 2026-06-01`).",
        "",
        "Layouts, as EHR exports arrive:",
        "",
        "* `bundles/urn/`: transaction Bundles, references are `urn:uuid:` fullUrls (Synthea style).",
        "* `bundles/relative/`: transaction Bundles, `Type/id` references, absolute fullUrls.",
        "* `bulk/`: Bulk Data export, one resource per line, one `.ndjson` file per resource type.",
        "",
        "Baseline (every SLE patient unless the twist says otherwise): female, born 1988-04-12; SLE",
        "(SNOMED 55464009 + ICD-10-CM M32.14) since 2019-03-04 with SLE arthritis, ANA 1:640",
        "at diagnosis; on 2026-05-12: ANA 1:320, anti-dsDNA 85 IU/mL (H), low C3, eGFR 75 (CKD-EPI 2021),",
        "UPCR 0.8 g/g, weight 60 kg, recorded SLEDAI-2K 8; hydroxychloroquine",
        "200 mg bid (MedicationRequests 2025-05-01 and a same-dose renewal 2026-04-20), mycophenolate",
        "1000 mg bid (MedicationStatement since 2025-05-01), prednisone 10 mg/day for SLE since 2026-02-02.",
        "",
        "| patient id | file | twist | intended status | intended criterion outcomes |",
        "|---|---|---|---|---|",
    ]
    for s in PATIENTS:
        outcomes = ", ".join(f"{k} {v}" for k, v in s.intended.items()) or "not in the initial population"
        status = "absent (no SLE)" if s.status == "absent" else s.status
        lines.append(f"| `{s.pid}` | `{_file_of(s)}` | {s.twist} | {status} | {outcomes} |")
    lines += [
        "",
        "Outcomes not listed for a patient are those of the baseline (pass); a twist that necessarily",
        "moves another criterion lists it too. Every computable criterion (I1-I6, E1-E13) shows pass,",
        "fail and unknown somewhere, except I2 fail: only SLE patients are screened, and too few",
        "classification items give unknown, never fail.",
        "",
    ]
    return "\n".join(lines)


def _file_of(s: Sample) -> str:
    if s.layout == "bulk":
        return "bulk/*.ndjson"
    return f"bundles/{s.layout}/{s.pid}.json"


FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR R4 id datatype


def _check_ids(sample: Sample) -> None:
    for res in [*sample.medications, *sample.resources.values()]:
        if not FHIR_ID.match(res["id"]):
            raise ValueError(f"{res['resourceType']}/{res['id']} is not a valid FHIR id (max 64 chars)")


def build_all() -> dict[str, str]:
    """Relative path -> file content."""
    files: dict[str, str] = {}
    bulk: dict[str, list[str]] = {}
    for index, sample in enumerate(PATIENTS):
        sample.name = _name(index)
        sample.resources.clear()
        sample.medications.clear()
        baseline(sample)
        sample.build(sample)
        _check_ids(sample)
        if sample.layout == "bulk":
            for res in [*sample.medications, *sample.resources.values()]:
                line = _dump(res)
                if line not in bulk.setdefault(res["resourceType"], []):
                    bulk[res["resourceType"]].append(line)
        else:
            files[f"bundles/{sample.layout}/{sample.pid}.json"] = bundle_text(sample)
    for rtype, lines in sorted(bulk.items()):
        files[f"bulk/{rtype}.ndjson"] = "\n".join(lines) + "\n"
    files["README.md"] = readme_text()
    return files


def write(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    for rel, text in build_all().items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def differs(a: Path, b: Path) -> list[str]:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    diff = sorted(str(p) for p in files_a ^ files_b)
    diff += sorted(str(p) for p in files_a & files_b if (a / p).read_bytes() != (b / p).read_bytes())
    return diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "sample_bundles"
            write(fresh)
            diff = differs(fresh, args.out)
        if diff:
            print("sample_bundles/ is out of date: " + ", ".join(diff), file=sys.stderr)
            return 1
        return 0
    write(args.out)
    print(f"wrote {len(PATIENTS)} patients to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
