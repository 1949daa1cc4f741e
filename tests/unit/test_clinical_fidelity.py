"""Issue 8 sections 2 and 3 on the criteria fhirscreen owns: a clean patient with one realistic change.

Tentative diagnoses, WHO ICD-10, SNOMED-only problem lists, pregnancy answers, viral loads and scores
held in Observation.component.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhirscreen.criteria.base import Outcome
from fhirscreen.screening import population_evidence, screen_patient
from tests.builders import (
    AS_OF,
    concept,
    condition,
    medication_administration,
    medication_request,
    observation,
    patient,
    record,
)

WHO = "http://hl7.org/fhir/sid/icd-10"

# --------------------------------------------------------------- verificationStatus, every exclusion


@pytest.mark.parametrize("verification", ["provisional", "differential", "unconfirmed"])
@pytest.mark.parametrize(
    ("criterion", "system", "code", "words"),
    [
        ("E10", "icd10cm", "A15.0", "tuberculosis"),
        ("E10", "icd10cm", "B20", "HIV"),
        ("E10", "snomed", "61977001", "hepatitis B"),
        ("E11", "icd10cm", "J18.9", "suspected"),
        ("E12", "snomed", "254637007", "suspected"),
        ("E13", "snomed", "77386006", "suspected"),
    ],
)
def test_tentative_diagnosis_is_a_question_never_a_fail(
    evaluate, verification, criterion, system, code, words
):
    rec = record(condition(system, code, "2026-05-10", id="c1", verification=verification))
    res = evaluate(criterion, rec)
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert words in res.reason and "Condition/c1" in res.reason
    assert res.next_step
    confirmed = evaluate(criterion, record(condition(system, code, "2026-05-10", id="c1")))
    assert confirmed.outcome is Outcome.FAIL


def test_suspected_tb_reason_says_confirm(evaluate):
    res = evaluate("E10", record(condition("icd10cm", "A15.0", "2026-05-10", verification="provisional")))
    assert "suspected" in res.reason and "tuberculosis" in res.reason
    assert "Confirm" in res.next_step


def test_tentative_diagnosis_with_a_confirmed_one_still_fails(evaluate):
    rec = record(
        condition("icd10cm", "A15.0", "2026-05-10", verification="provisional"),
        condition("icd10cm", "B20", "2020-01-01"),
    )
    assert evaluate("E10", rec).outcome is Outcome.FAIL


def test_every_exclusion_backstop_turns_a_fail_on_tentative_conditions_into_unknown(trial):
    """E2 (another helper's evaluator) fails on ESRD; a provisional ESRD is a question."""
    rec = record(
        condition("snomed", "200936003", "2015-01-01"),
        condition("icd10cm", "N18.6", "2026-01-01", id="esrd", verification="provisional"),
    )
    res = screen_patient(rec, trial, AS_OF).results["E2"]
    assert res.outcome is Outcome.UNKNOWN
    assert "unconfirmed" in res.reason and "Condition/esrd" in res.reason
    confirmed = record(
        condition("snomed", "200936003", "2015-01-01"), condition("icd10cm", "N18.6", "2026-01-01", id="esrd")
    )
    assert screen_patient(confirmed, trial, AS_OF).results["E2"].outcome is Outcome.FAIL


def test_suspected_manifestation_scores_no_sledai_points(evaluate):
    seizure = condition("icd10cm", "G40.909", "2026-05-20", verification="provisional")
    res = evaluate("I6", record(seizure))
    assert res.details["sledai_2k"] == 0


# --------------------------------------------------------------------------------- WHO ICD-10


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (WHO, "M32.1"),
        (WHO, "M32.9"),
        ("urn:oid:2.16.840.1.113883.6.3", "M32.9"),  # WHO ICD-10 OID
        ("urn:oid:2.16.840.1.113883.6.90", "M32.14"),  # ICD-10-CM OID
        ("icd10cm", "M3214"),  # no dot
        ("icd10cm", " m32.14 "),  # lower case, whitespace
        (" http://hl7.org/fhir/sid/icd-10 ", "m329"),
    ],
)
def test_sle_coded_in_any_icd10_spelling_is_in_the_population(trial, system, code):
    rec = record(condition(system, code, "2015-01-01", id="sle"))
    assert population_evidence(rec, trial) == ["Condition/sle"]


def test_who_icd10_codes_match_every_value_set(evaluate):
    assert evaluate("E10", record(condition(WHO, "B18.1", "2024-01-01"))).outcome is Outcome.FAIL
    assert evaluate("E12", record(condition(WHO, "C50.9", "2019-01-01"))).outcome is Outcome.FAIL


# ------------------------------------------------------------------------- SNOMED-only problem lists


@pytest.mark.parametrize(
    ("code", "display"),
    [
        ("4740000", "Herpes zoster"),
        ("38907003", "Varicella"),
        ("233604007", "Pneumonia"),
        ("68566005", "Urinary tract infectious disease"),
        ("128045006", "Cellulitis"),
        ("444814009", "Viral sinusitis"),
        ("195662009", "Acute viral pharyngitis"),
        ("10509002", "Acute bronchitis"),
        ("91302008", "Sepsis"),
        ("36971009", "Sinusitis"),
        ("43878008", "Streptococcal sore throat"),
        ("45816000", "Pyelonephritis"),
    ],
)
def test_e11_snomed_infections_fail(evaluate, code, display):
    res = evaluate("E11", record(condition("snomed", code, "2026-05-20", display=display)))
    assert res.outcome is Outcome.FAIL, res.reason


@pytest.mark.parametrize(
    ("code", "display"),
    [
        ("254637007", "Non-small cell lung cancer"),
        ("254837009", "Malignant neoplasm of breast"),
        ("363406005", "Malignant neoplasm of colon"),
        ("399068003", "Malignant tumor of prostate"),
        ("93143009", "Leukemia, disease"),
        ("118600007", "Malignant lymphoma"),
        ("372244006", "Malignant melanoma"),
        ("109838007", "Overlapping malignant neoplasm of colon"),
        ("94260004", "Secondary malignant neoplasm of colon"),
        ("363346000", "Malignant neoplastic disease"),
        ("109989006", "Multiple myeloma"),
        ("188340000", "Malignant tumor of craniopharyngeal duct"),
    ],
)
def test_e12_snomed_malignancies_fail_not_fall_to_the_text_hint(evaluate, code, display):
    res = evaluate("E12", record(condition("snomed", code, "2019-01-01", display=display,
                                           clinical="resolved", abatement="2020-01-01")))
    assert res.outcome is Outcome.FAIL, res.reason


# ---------------------------------------------------------------------------------- pregnancy


def status(value: dict[str, Any] | None = None, text: str | None = None, **kw: Any) -> dict[str, Any]:
    return observation("82810-3", "2026-05-20", id="ps", coded=value, string=text, **kw)


@pytest.mark.parametrize(
    ("obs", "expected"),
    [
        (status(concept("loinc", "LA15173-0", "Pregnant")), Outcome.FAIL),
        (status(concept("loinc", "LA26683-5", "Not pregnant")), Outcome.PASS),
        (status(concept("loinc", "LA4489-6", "Unknown")), Outcome.PASS),  # says nothing: as no record
        (status(concept("snomed", "102874004", "Possible pregnancy")), Outcome.UNKNOWN),
        (status({"text": "Possible pregnancy"}), Outcome.UNKNOWN),
        (status(text="Patient states she is not pregnant"), Outcome.PASS),
        (status(text="Denies pregnancy"), Outcome.PASS),
        (status(text="No pregnancy"), Outcome.PASS),
        (status(text="Negative"), Outcome.PASS),
        (status(text="Pregnancy ruled out"), Outcome.PASS),
        (status(text="May be pregnant, awaiting hCG"), Outcome.UNKNOWN),
        (status(text="Pregnant"), Outcome.FAIL),
        (status(text="Currently pregnant, no complications"), Outcome.FAIL),
    ],
)
def test_pregnancy_status_answers_and_negation(evaluate, obs, expected):
    res = evaluate("E13", record(obs))
    assert res.outcome is expected, res.reason
    if expected is Outcome.UNKNOWN:
        assert "Observation/ps" in res.evidence and res.next_step


def test_possible_pregnancy_condition_is_unknown_until_confirmed(evaluate):
    rec = record(condition("snomed", "77386006", "2026-05-01", id="pp", verification="provisional"))
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "suspected" in res.reason


def test_hcg_held_in_a_component_counts(evaluate):
    panel = observation("24356-8", "2026-05-25", id="ua", display="Urinalysis panel")
    panel["component"] = [{"code": concept("loinc", "2106-3"), "valueCodeableConcept": concept(
        "snomed", "10828004", "Positive")}]
    res = evaluate("E13", record(panel))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Observation/ua",)


# ------------------------------------------------------------------------------------ E10 viral loads


@pytest.mark.parametrize("code", ["42595-9", "45161-7", "48398-2", "29610-3", "20442-0"])
def test_common_hbv_dna_codes_detected_exclude(evaluate, code):
    obs = observation(code, "2026-04-01", value=3400, unit="[IU]/mL")
    assert evaluate("E10", record(obs)).outcome is Outcome.FAIL


@pytest.mark.parametrize("code", ["20416-4", "38180-6", "47252-2", "10676-5", "29609-5"])
def test_common_hcv_rna_codes_detected_exclude(evaluate, code):
    assert evaluate("E10", record(observation(code, "2026-04-01", value=52000, unit="[IU]/mL"))).outcome \
        is Outcome.FAIL


@pytest.mark.parametrize(
    "kwargs",
    [
        {"string": "<20 IU/mL"},
        {"string": "< 1.30 log IU/mL"},
        {"string": "Undetectable"},
        {"string": "TND"},
        {"string": "Target not detected"},
        {"value": 20.0, "unit": "[IU]/mL", "comparator": "<"},
        {"coded": concept("snomed", "260415000", "Not detected")},
    ],
)
def test_viral_load_below_detection_is_not_detected(evaluate, kwargs):
    res = evaluate("E10", record(observation("42595-9", "2026-04-01", **kwargs)))
    assert res.outcome is Outcome.PASS, res.reason


def test_hcv_antibody_cleared_by_a_later_rna_under_a_new_code(evaluate):
    rec = record(
        observation("16128-1", "2025-01-01", coded=concept("snomed", "10828004", "Positive")),
        observation("38180-6", "2025-03-01", string="Not detected"),
    )
    assert evaluate("E10", rec).outcome is Outcome.PASS


@pytest.mark.parametrize("code", ["25836-8", "25835-0"])
def test_hiv_rna_detected_excludes(evaluate, code):
    res = evaluate("E10", record(observation(code, "2026-04-01", string="Detected")))
    assert res.outcome is Outcome.FAIL


# ------------------------------------------------------------------------- Observation.component scores


def sledai_panel(total: float | None, *, id: str = "panel", text: str = "SLEDAI-2K") -> dict[str, Any]:
    obs = observation("local-sledai", "2026-05-20", system="http://hospital.example/obs", id=id)
    obs["code"]["text"] = text
    obs["component"] = [
        {"code": {"text": f"{text} seizure"}, "valueInteger": 8},
    ]
    if total is not None:
        obs["component"].append({"code": {"text": f"{text} total score"}, "valueQuantity": {"value": total}})
    return obs


@pytest.mark.parametrize(("total", "expected"), [(8, Outcome.PASS), (4, Outcome.FAIL)])
def test_sledai_total_held_in_a_component_decides(evaluate, total, expected):
    res = evaluate("I6", record(sledai_panel(total)))
    assert res.outcome is expected, res.reason
    assert res.details["sledai_source"] == "recorded"
    assert res.evidence == ("Observation/panel",)


def test_sledai_item_component_is_not_a_total(evaluate):
    res = evaluate("I6", record(sledai_panel(None)))
    assert res.details["sledai_source"] == "lower bound"


def test_mex_sledai_is_not_sledai_2k(evaluate):
    obs = observation("x", "2026-05-20", system="http://hospital.example/obs", value=12)
    obs["code"] = {"text": "Mex-SLEDAI"}
    res = evaluate("I6", record(obs))
    assert res.details["sledai_source"] == "lower bound"


@pytest.mark.parametrize("text", ["SLEDAI-2K 30 days", "SELENA-SLEDAI", "SLEDAI-2K"])
def test_sledai_variants_on_the_same_scale_count(evaluate, text):
    obs = observation("x", "2026-05-20", system="http://hospital.example/obs", value=8)
    obs["code"] = {"text": text}
    assert evaluate("I6", record(obs)).details["sledai_source"] == "recorded"


def test_anti_dsdna_held_in_a_component_counts(evaluate):
    panel = observation("local-ana", "2026-05-20", system="http://hospital.example/obs", id="ana")
    panel["component"] = [{
        "code": concept("loinc", "5130-0"), "valueQuantity": {"value": 85, "unit": "IU/mL"},
        "referenceRange": [{"high": {"value": 30}}],
    }]
    res = evaluate("I3", record(panel))
    assert res.outcome is Outcome.PASS
    assert res.evidence == ("Observation/ana",)


# ---------------------------------------------------------------------- E1: cutaneous lupus is SLE


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        ("icd10cm", "L93.0", "Discoid lupus erythematosus"),
        ("icd10cm", "L93.1", "Subacute cutaneous lupus erythematosus"),
        ("icd10cm", "L93.2", "Other local lupus erythematosus"),
        (WHO, "L93.0", "Discoid lupus erythematosus"),
        ("snomed", "7119001", "Cutaneous lupus erythematosus"),
        ("snomed", "239891002", "Subacute cutaneous lupus erythematosus"),
        ("snomed", "200938002", "Discoid lupus erythematosus"),
    ],
)
def test_e1_steroids_for_cutaneous_lupus_are_sle_treatment(evaluate, system, code, display):
    sle = condition("icd10cm", "M32.14", "2018-01-01")
    course = medication_request(
        "8640", "2026-04-01", status="completed", display="predniSONE 20 MG Oral Tablet",
        reason=concept(system, code, display), bounds_start="2026-04-01", bounds_end="2026-04-30",
    )
    res = evaluate("E1", record(sle, course))
    assert res.outcome is Outcome.PASS, res.reason
    asthma = {**course, "reasonCode": [concept("icd10cm", "J45.909", "Asthma")]}
    assert evaluate("E1", record(sle, asthma)).outcome is Outcome.FAIL


# ------------------------------------------------------------------------- E11 while on antibiotics


@pytest.mark.parametrize(
    ("code", "display"),
    [
        ("723", "amoxicillin 500 MG Oral Capsule"),
        ("local", "Levofloxacin 750 mg tablet"),
        ("local", "valACYclovir 1 g tablet"),
        ("local", "Fluconazole 150 mg tablet"),
    ],
)
def test_e11_on_a_systemic_anti_infective_at_screening_is_unknown(evaluate, code, display):
    order = medication_request(code, "2026-05-28", display=display, id="abx",
                               system="rxnorm" if code != "local" else "http://hospital.example/drugs")
    res = evaluate("E11", record(order))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "MedicationRequest/abx" in res.evidence
    assert "prophylaxis" in res.reason and res.next_step


def test_e11_finished_antibiotic_course_and_topical_antibiotic_pass(evaluate):
    finished = medication_request("723", "2026-04-01", display="amoxicillin 500 MG Oral Capsule",
                                  status="completed", bounds_start="2026-04-01", bounds_end="2026-04-10")
    cream = medication_request("local", "2026-05-28", system="http://hospital.example/drugs",
                               display="erythromycin 5 MG/G Ophthalmic Ointment")
    dapsone = medication_request("local", "2025-05-28", system="http://hospital.example/drugs",
                                 display="dapsone 100 MG Oral Tablet")
    assert evaluate("E11", record(finished, cream, dapsone)).outcome is Outcome.PASS


def test_e11_administration_on_the_screening_date_is_unknown(evaluate):
    given = medication_administration("2193", "2026-06-01", display="ceftriaxone 1 G Injection")
    assert evaluate("E11", record(given)).outcome is Outcome.UNKNOWN


# ------------------------------------------------------------------ events after the patient's death


@pytest.mark.parametrize(
    ("criterion", "event"),
    [
        ("E10", condition("icd10cm", "A15.0", "2026-05-10")),
        ("E11", condition("snomed", "233604007", "2026-05-10", display="Pneumonia")),
        ("E12", condition("snomed", "254837009", "2026-05-10", display="Malignant neoplasm of breast")),
        ("E13", observation("2106-3", "2026-05-25", coded=concept("snomed", "10828004", "Positive"))),
    ],
)
def test_records_dated_after_death_are_not_the_current_state(evaluate, criterion, event):
    dead = patient(deceasedDateTime="2026-03-01")
    assert evaluate(criterion, record(dead, event)).outcome is Outcome.PASS
    alive = evaluate(criterion, record(patient(), event))
    assert alive.outcome is Outcome.FAIL


def test_death_does_not_hide_the_labs_of_inclusion_criteria(trial):
    """I1 fails a deceased patient; the lab criteria keep their outcome (one change flips one criterion)."""
    egfr = observation("62238-1", "2026-05-20", value=75, unit="mL/min/{1.73_m2}")
    dead = record(patient(deceasedDateTime="2026-03-01"), condition("icd10cm", "M32.14", "2018-01-01"), egfr)
    results = screen_patient(dead, trial, AS_OF).results
    assert results["I1"].outcome is Outcome.FAIL
    assert results["I4"].outcome is Outcome.PASS


@pytest.mark.parametrize(
    "system",
    [
        "http://snomed.info/sct/731000124108",  # US edition module in the system URI
        "http://snomed.info/sct/900000000000207008/version/20250101",
        "urn:oid:2.16.840.1.113883.6.96",
        "SNOMED-CT",
        "https://snomed.info/sct",
    ],
)
def test_snomed_only_sle_under_any_system_spelling_is_in_the_population(trial, system):
    rec = record(condition(system, "55464009", "2015-01-01", id="sle"))
    assert population_evidence(rec, trial) == ["Condition/sle"]


def test_suspected_breastfeeding_asks_the_patient(evaluate):
    rec = record(condition("snomed", "169750002", "2026-05-01", verification="unconfirmed"))
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "Confirm breastfeeding status" in res.next_step


def test_suspected_manifestation_is_not_a_classification_item(evaluate):
    sle = condition("icd10cm", "M32.9", "2015-01-01")
    confirmed = evaluate("I2", record(sle, condition("snomed", "36402006", "2020-01-01", id="n")))
    suspected = evaluate("I2", record(sle, condition("snomed", "36402006", "2020-01-01", id="n",
                                                     verification="differential")))
    assert "Condition/n" in confirmed.evidence or "Condition/n" in confirmed.reason
    assert "Condition/n" not in suspected.evidence


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("Malignant tumor of esophagus", Outcome.FAIL),
        ("Diffuse large B-cell lymphoma", Outcome.FAIL),
        ("Adenocarcinoma of pancreas", Outcome.FAIL),
        ("Basal cell carcinoma of skin", Outcome.UNKNOWN),  # excepted if treated: the histology decides
        ("Family history of malignant neoplasm of breast", Outcome.PASS),
        ("Malignant hypertension", Outcome.PASS),
    ],
)
def test_e12_unlisted_snomed_code_with_a_clearly_malignant_name_fails(evaluate, display, expected):
    cond = condition("snomed", "999999999", "2019-01-01", display=display)
    assert evaluate("E12", record(cond)).outcome is expected


def test_a_separate_sledai_item_observation_is_not_the_total(evaluate):
    item = observation("x", "2026-05-20", system="http://hospital.example/obs", value=2)
    item["code"] = {"text": "SLEDAI-2K alopecia"}
    assert evaluate("I6", record(item)).details["sledai_source"] == "lower bound"
