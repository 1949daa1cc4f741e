"""Write the fhirscreen SLE Synthea module (GMF v2 JSON) into modules/.

The module is data; this script only keeps the repetitive JSON (lab states, renal bands, med orders)
readable and consistent. Run: python3 bench/synthea/gen_module.py (output is committed).
Codes are the ones a rheumatology clinic's EHR sends; each is also in queries/NCT06737380.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "modules"

SLE = {"system": "SNOMED-CT", "code": "55464009", "display": "Systemic lupus erythematosus"}


def code(system: str, value: str, display: str) -> list[dict[str, str]]:
    return [{"system": system, "code": value, "display": display}]


def lab(
    name: str, loinc: str, display: str, unit: str, low: float, high: float, decimals: int, nxt: str
) -> dict[str, Any]:
    return {
        name: {
            "type": "Observation",
            "category": "laboratory",
            "codes": code("LOINC", loinc, display),
            "unit": unit,
            "range": {"low": low, "high": high, "decimals": decimals},
            "direct_transition": nxt,
        }
    }


def labs_submodule() -> dict[str, Any]:
    s: dict[str, Any] = {
        # ANA: a titer at about half the visits, a presence-only result (some labs report only
        # "positive") at some, none at the rest (ANA is not repeated at every visit).
        "Initial": {
            "type": "Initial",
            "distributed_transition": [
                {"distribution": 0.45, "transition": "ANA_Titer_Pick"},
                {"distribution": 0.15, "transition": "ANA_Presence"},
                {"distribution": 0.40, "transition": "Anti_dsDNA"},
            ],
        },
        "ANA_Presence": {
            "type": "Observation",
            "category": "laboratory",
            "codes": code("LOINC", "8061-4", "Nuclear Ab [Presence] in Serum by Immunofluorescence"),
            "value_code": {
                "system": "SNOMED-CT",
                "code": "10828004",
                "display": "Positive (qualifier value)",
            },
            "direct_transition": "Anti_dsDNA",
        },
        "ANA_Titer_Pick": {
            "type": "Simple",
            "distributed_transition": [
                {"distribution": 0.15, "transition": "Titer_80"},
                {"distribution": 0.2, "transition": "Titer_160"},
                {"distribution": 0.3, "transition": "Titer_320"},
                {"distribution": 0.2, "transition": "Titer_640"},
                {"distribution": 0.15, "transition": "Titer_1280"},
            ],
        },
    }
    for titer in (80, 160, 320, 640, 1280):
        s[f"Titer_{titer}"] = {
            "type": "SetAttribute",
            "attribute": "sle_ana_titer",
            "value": f"1:{titer}",
            "direct_transition": "ANA_Titer",
        }
    s["ANA_Titer"] = {
        "type": "Observation",
        "category": "laboratory",
        "codes": code("LOINC", "5048-4", "Nuclear Ab [Titer] in Serum by Immunofluorescence"),
        "attribute": "sle_ana_titer",
        "unit": "{titer}",
        "direct_transition": "Anti_dsDNA",
    }
    s.update(
        lab(
            "Anti_dsDNA", "5130-0", "DNA double strand Ab [Units/volume] in Serum", "[IU]/mL", 2, 400, 0, "C3"
        )
    )
    s.update(lab("C3", "4485-9", "Complement C3 [Mass/volume] in Serum or Plasma", "mg/dL", 45, 160, 0, "C4"))
    s.update(
        lab("C4", "4498-2", "Complement C4 [Mass/volume] in Serum or Plasma", "mg/dL", 4, 40, 0, "Platelets")
    )
    s.update(
        lab(
            "Platelets",
            "777-3",
            "Platelets [#/volume] in Blood by Automated count",
            "10*3/uL",
            70,
            400,
            0,
            "WBC",
        )
    )
    s.update(
        lab(
            "WBC",
            "6690-2",
            "Leukocytes [#/volume] in Blood by Automated count",
            "10*3/uL",
            2.4,
            11,
            1,
            "UPCR",
        )
    )
    s.update(
        lab("UPCR", "2890-2", "Protein/Creatinine [Mass Ratio] in Urine", "mg/g", 40, 2500, 0, "Renal_Band")
    )
    s["Renal_Band"] = {
        "type": "Simple",
        "conditional_transition": [
            {
                "condition": {
                    "condition_type": "Attribute",
                    "attribute": "sle_esrd",
                    "operator": "is not nil",
                },
                "transition": "Creatinine_ESRD",
            },
            {
                "condition": {
                    "condition_type": "Attribute",
                    "attribute": "sle_nephritis",
                    "operator": "is not nil",
                },
                "transition": "Nephritis_Band",
            },
            {"transition": "Other_Band"},
        ],
    }
    s["Nephritis_Band"] = {
        "type": "Simple",
        "distributed_transition": [
            {"distribution": 0.4, "transition": "Creatinine_Mild"},
            {"distribution": 0.4, "transition": "Creatinine_Moderate"},
            {"distribution": 0.2, "transition": "Creatinine_Severe"},
        ],
    }
    s["Other_Band"] = {
        "type": "Simple",
        "distributed_transition": [
            {"distribution": 0.9, "transition": "Creatinine_Normal"},
            {"distribution": 0.1, "transition": "Creatinine_Mild"},
        ],
    }
    # Creatinine and eGFR drawn from matching bands (CKD-EPI 2021 for a 30-60 year old woman) rather
    # than computed: Synthea's CQL expressions race on two generator threads (hapi-synthea.md, 6.6).
    bands = {
        "Normal": ((0.6, 0.95), (78, 118)),
        "Mild": ((1.1, 1.5), (45, 68)),
        "Moderate": ((1.7, 2.4), (25, 40)),
        "Severe": ((2.6, 4.0), (13, 24)),
        "ESRD": ((5.0, 8.5), (5, 11)),
    }
    for band, ((c_lo, c_hi), (g_lo, g_hi)) in bands.items():
        s.update(
            lab(
                f"Creatinine_{band}",
                "2160-0",
                "Creatinine [Mass/volume] in Serum or Plasma",
                "mg/dL",
                c_lo,
                c_hi,
                2,
                f"eGFR_{band}",
            )
        )
        s.update(
            lab(
                f"eGFR_{band}",
                "98979-8",
                "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood "
                "by Creatinine-based formula (CKD-EPI 2021)",
                "mL/min/{1.73_m2}",
                g_lo,
                g_hi,
                0,
                "Terminal",
            )
        )
    s["Terminal"] = {"type": "Terminal"}
    return {
        "name": "SLE trial labs",
        "remarks": ["Rheumatology lab panel at each SLE visit (fhirscreen)."],
        "gmf_version": 2,
        "states": s,
    }


def order(
    name: str,
    rx: str,
    display: str,
    attr: str,
    nxt: str,
    *,
    chronic: bool = False,
    amount: float = 1,
    frequency: int = 1,
    admin: bool = False,
    weeks: int | None = None,
    reason: str = "sle",
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "type": "MedicationOrder",
        "codes": code("RxNorm", rx, display),
        "reason": reason,
        "assign_to_attribute": attr,
        "direct_transition": nxt,
    }
    if chronic:
        state["chronic"] = True
    if admin:
        state["administration"] = True
    else:
        rx_info: dict[str, Any] = {
            "dosage": {"amount": amount, "frequency": frequency, "period": 1, "unit": "days"},
            "refills": 3 if chronic else 0,
        }
        if weeks:
            rx_info["duration"] = {"quantity": weeks, "unit": "weeks"}
        state["prescription"] = rx_info
    return {name: state}


def main_module() -> dict[str, Any]:
    attr_nil = lambda a: {"condition_type": "Attribute", "attribute": a, "operator": "is nil"}  # noqa: E731
    attr_set = lambda a: {"condition_type": "Attribute", "attribute": a, "operator": "is not nil"}  # noqa: E731
    s: dict[str, Any] = {
        # Incidence far above the real ~0.05 % so that a few hundred people yield enough SLE patients
        # to screen; these are test data, not epidemiology.
        "Initial": {
            "type": "Initial",
            "complex_transition": [
                {
                    "condition": {"condition_type": "Gender", "gender": "F"},
                    "distributions": [
                        {"distribution": 0.12, "transition": "Onset_Delay"},
                        {"distribution": 0.88, "transition": "Terminal"},
                    ],
                },
                {
                    "condition": {"condition_type": "Gender", "gender": "M"},
                    "distributions": [
                        {"distribution": 0.03, "transition": "Onset_Delay"},
                        {"distribution": 0.97, "transition": "Terminal"},
                    ],
                },
            ],
        },
        "Onset_Delay": {
            "type": "Delay",
            "range": {"low": 16, "high": 50, "unit": "years"},
            "direct_transition": "SLE_Onset",
        },
        "SLE_Onset": {
            "type": "ConditionOnset",
            "codes": [SLE],
            "assign_to_attribute": "sle",
            "target_encounter": "Diagnosis_Visit",
            "direct_transition": "Diagnosis_Visit",
        },
        "Diagnosis_Visit": {
            "type": "Encounter",
            "encounter_class": "ambulatory",
            "reason": "sle",
            "codes": code("SNOMED-CT", "185347001", "Encounter for problem"),
            "direct_transition": "Diagnosis_Labs",
        },
        "Diagnosis_Labs": {
            "type": "CallSubmodule",
            "submodule": "sle_trial/labs",
            "direct_transition": "Start_HCQ",
        },
    }
    s.update(
        order(
            "Start_HCQ",
            "979092",
            "hydroxychloroquine sulfate 200 MG Oral Tablet",
            "sle_hcq",
            "Initial_Steroid",
            chronic=True,
            frequency=2,
        )
    )
    s.update(
        order(
            "Initial_Steroid",
            "312615",
            "predniSONE 20 MG Oral Tablet",
            "sle_initial_steroid",
            "Diagnosis_End",
            weeks=4,
        )
    )
    s["Diagnosis_End"] = {"type": "EncounterEnd", "direct_transition": "Initial_Steroid_Course"}
    s["Initial_Steroid_Course"] = {
        "type": "Delay",
        "exact": {"quantity": 4, "unit": "weeks"},
        "direct_transition": "End_Initial_Steroid",
    }
    s["End_Initial_Steroid"] = {
        "type": "MedicationEnd",
        "referenced_by_attribute": "sle_initial_steroid",
        "direct_transition": "Followup_Delay",
    }
    s["Followup_Delay"] = {
        "type": "Delay",
        "range": {"low": 2, "high": 4, "unit": "months"},
        "direct_transition": "Followup_Visit",
    }
    s["Followup_Visit"] = {
        "type": "Encounter",
        "encounter_class": "ambulatory",
        "reason": "sle",
        "codes": code("SNOMED-CT", "185347001", "Encounter for problem"),
        "direct_transition": "Followup_Labs",
    }
    s["Followup_Labs"] = {
        "type": "CallSubmodule",
        "submodule": "sle_trial/labs",
        "direct_transition": "Ongoing_Treatments",
    }
    s["Ongoing_Treatments"] = {
        "type": "Simple",
        "conditional_transition": [
            {"condition": attr_set("sle_esrd"), "transition": "Dialysis"},
            {"condition": attr_set("sle_belimumab"), "transition": "Belimumab_Dose"},
            {"condition": attr_set("sle_rituximab_course"), "transition": "Rituximab_Followup"},
            {"transition": "Events"},
        ],
    }
    s["Dialysis"] = {
        "type": "Procedure",
        "codes": code("SNOMED-CT", "302497006", "Hemodialysis (procedure)"),
        "reason": "sle_esrd",
        "duration": {"low": 3, "high": 4, "unit": "hours"},
        "direct_transition": "Events",
    }
    s.update(order("Belimumab_Dose", "1092437", "belimumab", "sle_belimumab_dose", "Events", admin=True))
    s["Rituximab_Followup"] = {"type": "Simple", "direct_transition": "Events"}
    # Chances per follow-up visit (one every 2-4 months, for decades): the first version used 3 % for
    # nephritis and 35 % ESRD per later check, which gave every SLE patient nephritis and most ESRD.
    # Now about half develop nephritis within 10 years and one in six of those reaches ESRD.
    s["Events"] = {
        "type": "Simple",
        "distributed_transition": [
            {"distribution": 0.06, "transition": "Flare_Steroid"},
            {"distribution": 0.04, "transition": "Start_MMF_Check"},
            {"distribution": 0.02, "transition": "Start_AZA_Check"},
            {"distribution": 0.012, "transition": "Biologic_Check"},
            {"distribution": 0.015, "transition": "Nephritis_Check"},
            {"distribution": 0.02, "transition": "Pneumonia"},
            {"distribution": 0.015, "transition": "Pregnancy_Check"},
            {"distribution": 0.01, "transition": "Major_Surgery"},
            {"distribution": 0.798, "transition": "Followup_End"},
        ],
    }
    # Flare: a 3-week prednisone burst, then back to the visit cycle.
    s.update(
        order(
            "Flare_Steroid",
            "312615",
            "predniSONE 20 MG Oral Tablet",
            "sle_flare_steroid",
            "Flare_End",
            weeks=3,
            amount=2,
        )
    )
    s["Flare_End"] = {"type": "EncounterEnd", "direct_transition": "Flare_Course"}
    s["Flare_Course"] = {
        "type": "Delay",
        "exact": {"quantity": 3, "unit": "weeks"},
        "direct_transition": "End_Flare_Steroid",
    }
    s["End_Flare_Steroid"] = {
        "type": "MedicationEnd",
        "referenced_by_attribute": "sle_flare_steroid",
        "direct_transition": "Followup_Delay",
    }
    s["Start_MMF_Check"] = {
        "type": "Simple",
        "conditional_transition": [
            {"condition": attr_nil("sle_mmf"), "transition": "Start_MMF"},
            {"transition": "Followup_End"},
        ],
    }
    s.update(
        order(
            "Start_MMF",
            "200060",
            "mycophenolate mofetil 500 MG Oral Tablet",
            "sle_mmf",
            "Followup_End",
            chronic=True,
            amount=2,
            frequency=2,
        )
    )
    s["Start_AZA_Check"] = {
        "type": "Simple",
        "conditional_transition": [
            {
                "condition": {
                    "condition_type": "And",
                    "conditions": [attr_nil("sle_aza"), attr_nil("sle_mmf")],
                },
                "transition": "Start_AZA",
            },
            {"transition": "Followup_End"},
        ],
    }
    s.update(
        order(
            "Start_AZA",
            "197388",
            "azathioprine 50 MG Oral Tablet",
            "sle_aza",
            "Followup_End",
            chronic=True,
            amount=2,
        )
    )
    s["Biologic_Check"] = {
        "type": "Simple",
        "conditional_transition": [
            {
                "condition": {
                    "condition_type": "And",
                    "conditions": [attr_nil("sle_belimumab"), attr_nil("sle_rituximab_course")],
                },
                "transition": "Biologic_Choice",
            },
            {"transition": "Followup_End"},
        ],
    }
    s["Biologic_Choice"] = {
        "type": "Simple",
        "distributed_transition": [
            {"distribution": 0.7, "transition": "Start_Belimumab"},
            {"distribution": 0.3, "transition": "Rituximab"},
        ],
    }
    s.update(order("Start_Belimumab", "1092437", "belimumab", "sle_belimumab", "Followup_End", admin=True))
    s.update(order("Rituximab", "121191", "rituximab", "sle_rituximab_course", "Followup_End", admin=True))
    s["Nephritis_Check"] = {
        "type": "Simple",
        "conditional_transition": [
            {"condition": attr_nil("sle_nephritis"), "transition": "Nephritis_Onset"},
            {"condition": attr_nil("sle_esrd"), "transition": "ESRD_Risk"},
            {"transition": "Followup_End"},
        ],
    }
    s["Nephritis_Onset"] = {
        "type": "ConditionOnset",
        "assign_to_attribute": "sle_nephritis",
        "codes": code("SNOMED-CT", "68815009", "Systemic lupus erythematosus glomerulonephritis syndrome"),
        "direct_transition": "Kidney_Biopsy",
    }
    # Lupus nephritis is confirmed by kidney biopsy: a minor procedure that must never count as major
    # surgery (E9). SNOMED 48426002 (snomed.info/id/48426002, "Fine needle biopsy of kidney").
    s["Kidney_Biopsy"] = {
        "type": "Procedure",
        "reason": "sle_nephritis",
        "codes": code("SNOMED-CT", "48426002", "Fine needle biopsy of kidney (procedure)"),
        "duration": {"low": 30, "high": 60, "unit": "minutes"},
        "direct_transition": "Followup_End",
    }
    s["ESRD_Risk"] = {
        "type": "Simple",
        "distributed_transition": [
            {"distribution": 0.25, "transition": "ESRD_Onset"},
            {"distribution": 0.75, "transition": "Followup_End"},
        ],
    }
    s["ESRD_Onset"] = {
        "type": "ConditionOnset",
        "assign_to_attribute": "sle_esrd",
        "codes": code("SNOMED-CT", "46177005", "End-stage renal disease (disorder)"),
        "direct_transition": "Followup_End",
    }
    s["Pneumonia"] = {
        "type": "ConditionOnset",
        "assign_to_attribute": "sle_pneumonia",
        "codes": code("SNOMED-CT", "233604007", "Pneumonia (disorder)"),
        "direct_transition": "Pneumonia_Antibiotic",
    }
    s.update(
        order(
            "Pneumonia_Antibiotic",
            "562251",
            "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet",
            "sle_antibiotic",
            "Pneumonia_Visit_End",
            frequency=3,
            weeks=1,
            reason="sle_pneumonia",
        )
    )
    s["Pneumonia_Visit_End"] = {"type": "EncounterEnd", "direct_transition": "Pneumonia_Course"}
    s["Pneumonia_Course"] = {
        "type": "Delay",
        "range": {"low": 2, "high": 4, "unit": "weeks"},
        "direct_transition": "Pneumonia_Resolved",
    }
    s["Pneumonia_Resolved"] = {
        "type": "ConditionEnd",
        "referenced_by_attribute": "sle_pneumonia",
        "direct_transition": "End_Antibiotic",
    }
    s["End_Antibiotic"] = {
        "type": "MedicationEnd",
        "referenced_by_attribute": "sle_antibiotic",
        "direct_transition": "Followup_Delay",
    }
    s["Pregnancy_Check"] = {
        "type": "Simple",
        "conditional_transition": [
            {
                "condition": {
                    "condition_type": "And",
                    "conditions": [
                        {"condition_type": "Gender", "gender": "F"},
                        {"condition_type": "Age", "operator": "<", "quantity": 43, "unit": "years"},
                        attr_nil("sle_pregnancy"),
                    ],
                },
                "transition": "Pregnancy_Onset",
            },
            {"transition": "Followup_End"},
        ],
    }
    s["Pregnancy_Onset"] = {
        "type": "ConditionOnset",
        "assign_to_attribute": "sle_pregnancy",
        "codes": code("SNOMED-CT", "72892002", "Normal pregnancy (finding)"),
        "direct_transition": "Pregnancy_Visit_End",
    }
    s["Pregnancy_Visit_End"] = {"type": "EncounterEnd", "direct_transition": "Pregnancy_Course"}
    s["Pregnancy_Course"] = {
        "type": "Delay",
        "range": {"low": 6, "high": 8, "unit": "months"},
        "direct_transition": "Pregnancy_Ends",
    }
    s["Pregnancy_Ends"] = {
        "type": "ConditionEnd",
        "referenced_by_attribute": "sle_pregnancy",
        "direct_transition": "Followup_Delay",
    }
    s["Major_Surgery"] = {
        "type": "Procedure",
        "codes": code("SNOMED-CT", "38102005", "Cholecystectomy (procedure)"),
        "duration": {"low": 1, "high": 3, "unit": "hours"},
        "direct_transition": "Followup_End",
    }
    s["Followup_End"] = {"type": "EncounterEnd", "direct_transition": "Followup_Delay"}
    s["Terminal"] = {"type": "Terminal"}
    return {
        "name": "SLE trial course",
        "gmf_version": 2,
        "remarks": [
            "fhirscreen's SLE module: the course a rheumatology clinic records for NCT06737380 screening.",
            "Labs (ANA titer, anti-dsDNA, complement, counts, urine protein, creatinine/eGFR) "
            "at every visit,",
            "hydroxychloroquine, mycophenolate, azathioprine, steroid bursts, belimumab/rituximab, "
            "nephritis,",
            "ESRD with dialysis, pregnancies, pneumonia and surgery at chosen rates.",
        ],
        "states": s,
    }


# Reference ranges the Flexporter adds (GMF cannot): (LOINC, name, unit, low, high). Sources in the header.
RANGES = [
    ("5130-0", "anti-dsDNA", "[IU]/mL", None, 30),
    ("4485-9", "complement C3", "mg/dL", 90, 180),
    ("4498-2", "complement C4", "mg/dL", 10, 40),
    ("777-3", "platelets", "10*3/uL", 150, 400),
    ("6690-2", "leukocytes", "10*3/uL", 4.0, 11.0),
]

FLEX_HEADER = """\
# Synthea Flexporter mapping, passed with -fm by bench/synthea.sh. Generated by gen_module.py: edit there.
# GMF cannot write Observation.referenceRange or interpretation (hapi-synthea.md 5.2), so they are added
# at export time (https://github.com/synthetichealth/synthea/wiki/Flexporter: set_values, FHIRPath
# applicability). Adult ranges in the units the module and Synthea's CBC panel use:
#   anti-dsDNA 5130-0: positive above 30 IU/mL. ELISA cut-offs are kit-dependent (about 10-30 IU/mL);
#     30 is the conservative end (tests/golden's sample uses it too). No lower limit.
#   C3 4485-9 90-180 mg/dL, C4 4498-2 10-40 mg/dL (common adult intervals; labs vary by method).
#   Platelets 777-3 150-400 x10^3/uL, WBC 6690-2 4.0-11.0 x10^3/uL (standard adult CBC intervals).
# Interpretation: v3 ObservationInterpretation H above the high limit, L below the low limit.
"""


def flexporter() -> str:
    v3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    lines = [FLEX_HEADER.rstrip("\n"), "name: fhirscreen reference ranges", "applicability: true", "actions:"]
    for loinc, name, unit, low, high in RANGES:
        obs = f"Observation.where(code.coding.code = '{loinc}')"
        lines += [
            f"  - name: {name} reference range",
            "    set_values:",
            f'      - applicability: "{obs}"',
            "        fields:",
        ]
        for end, limit in (("low", low), ("high", high)):
            if limit is None:
                continue
            for key, value in (
                ("value", limit),
                ("unit", unit),
                ("system", "http://unitsofmeasure.org"),
                ("code", unit),
            ):
                lines += [
                    f"          - location: Observation.referenceRange.{end}.{key}",
                    f"            value: '{value}'",
                ]
        for flag, op, limit in (("H", ">", high), ("L", "<", low)):
            if limit is None:
                continue
            lines += [
                f"  - name: {name} interpretation {flag}",
                "    set_values:",
                f"      - applicability: \"Observation.where(code.coding.code = '{loinc}' and "
                f'(value as Quantity).value {op} {limit})"',
                "        fields:",
                "          - location: Observation.interpretation.coding.system",
                f"            value: '{v3}'",
                "          - location: Observation.interpretation.coding.code",
                f"            value: '{flag}'",
            ]
    return "\n".join(lines) + "\n"


def keep_module() -> dict[str, Any]:
    return {
        "name": "Keep SLE",
        "gmf_version": 2,
        "states": {
            "Initial": {
                "type": "Initial",
                "conditional_transition": [
                    {
                        "condition": {
                            "condition_type": "Or",
                            "conditions": [
                                {"condition_type": "Active Condition", "codes": [SLE]},
                                {
                                    "condition_type": "Active Condition",
                                    "codes": [
                                        {
                                            "system": "SNOMED-CT",
                                            "code": "200936003",
                                            "display": "Lupus erythematosus",
                                        }
                                    ],
                                },
                            ],
                        },
                        "transition": "Keep",
                    },
                    {"transition": "Terminal"},
                ],
            },
            "Terminal": {"type": "Terminal"},
            "Keep": {"type": "Terminal"},
        },
    }


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    (HERE / "sle_trial").mkdir(exist_ok=True)
    (HERE / "sle_trial.json").write_text(json.dumps(main_module(), indent=1) + "\n")
    (HERE / "sle_trial" / "labs.json").write_text(json.dumps(labs_submodule(), indent=1) + "\n")
    (HERE.parent / "keep_sle.json").write_text(json.dumps(keep_module(), indent=1) + "\n")
    (HERE.parent / "flexporter.yaml").write_text(flexporter())
    print("wrote modules/sle_trial.json, modules/sle_trial/labs.json, keep_sle.json, flexporter.yaml")
