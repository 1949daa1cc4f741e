from __future__ import annotations

from typing import Any

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import concept, condition, medication_dispense, medication_request, observation, record

POSITIVE = concept("snomed", "10828004", "Positive")
NEGATIVE = concept("snomed", "260385009", "Negative")
DETECTED = concept("snomed", "260373001", "Detected")
NOT_DETECTED = concept("snomed", "260415000", "Not detected")


# ----------------------------------------------------------------------------------------------- E10


def test_no_infection_data_passes(evaluate):
    res = evaluate("E10", record())
    assert res.outcome is Outcome.PASS
    assert "No active hepatitis B, hepatitis C, HIV or tuberculosis" in res.reason


@pytest.mark.parametrize(
    ("system", "code", "disease"),
    [
        ("icd10cm", "B18.1", "hepatitis B"),
        ("icd10cm", "b181", "hepatitis B"),  # no dot, lower case
        ("snomed", "61977001", "hepatitis B"),
        ("icd10cm", "B18.2", "hepatitis C"),
        ("snomed", "128302006", "hepatitis C"),
        ("icd10cm", "B20", "HIV"),
        ("icd10cm", "Z21", "HIV"),
        ("icd10cm", "A15.0", "tuberculosis"),
        ("snomed", "154283005", "tuberculosis"),
    ],
)
def test_active_diagnosis_excludes_and_names_the_disease(evaluate, system, code, disease):
    res = evaluate("E10", record(condition(system, code, "2024-02-01", id="c1")))
    assert res.outcome is Outcome.FAIL
    assert disease in res.reason
    assert res.evidence == ("Condition/c1",)


@pytest.mark.parametrize(
    ("system", "code"), [("icd10cm", "B18.1"), ("icd10cm", "B18.2"), ("icd10cm", "A15.0")]
)
@pytest.mark.parametrize("status", ["resolved", "inactive", "remission"])
def test_resolved_hepatitis_or_tb_history_does_not_exclude(evaluate, system, code, status):
    res = evaluate("E10", record(condition(system, code, "2015-01-01", clinical=status, id="c1")))
    assert res.outcome is Outcome.PASS
    assert "history" in res.reason


def test_abatement_on_the_screening_date_is_history(evaluate):
    res = evaluate("E10", record(condition("icd10cm", "B17.10", "2026-03-01", abatement="2026-06-01")))
    assert res.outcome is Outcome.PASS


def test_hiv_is_lifelong_even_when_the_entry_says_resolved(evaluate):
    res = evaluate("E10", record(condition("icd10cm", "B20", "2010-01-01", clinical="resolved", id="h")))
    assert res.outcome is Outcome.FAIL
    assert "lifelong" in res.reason


@pytest.mark.parametrize("verification", ["entered-in-error", "refuted"])
def test_entered_in_error_and_refuted_diagnoses_are_ignored(evaluate, verification):
    res = evaluate("E10", record(condition("icd10cm", "B20", "2020-01-01", verification=verification)))
    assert res.outcome is Outcome.PASS


def test_diagnosis_after_the_screening_date_is_ignored(evaluate):
    res = evaluate("E10", record(condition("icd10cm", "B18.2", "2026-06-02")))
    assert res.outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("system", "code"),
    [("snomed", "271511000"), ("icd10cm", "Z20.6"), ("icd10cm", "Z86.19"), ("icd10cm", "Z11.4")],
)
def test_immunity_exposure_and_history_codes_do_not_exclude(evaluate, system, code):
    res = evaluate("E10", record(condition(system, code, "2022-01-01", id="z")))
    assert res.outcome is Outcome.PASS
    assert "Condition/z" in res.evidence


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"coded": POSITIVE}, Outcome.FAIL),
        ({"string": "Reactive"}, Outcome.FAIL),
        ({"value": 250.0, "unit": "{s_co_ratio}", "interpretation": "POS"}, Outcome.FAIL),
        ({"coded": NEGATIVE}, Outcome.PASS),
        ({"string": "Non-reactive"}, Outcome.PASS),
        ({"string": "Indeterminate"}, Outcome.UNKNOWN),
        ({"string": "see report"}, Outcome.PASS),  # unreadable value: no result
    ],
)
def test_hbsag_result_encodings(evaluate, kwargs, expected):
    res = evaluate("E10", record(observation("5196-1", "2026-01-10", id="o1", **kwargs)))
    assert res.outcome is expected


def test_preliminary_hbsag_is_used_and_said(evaluate):
    obs = observation("5196-1", "2026-01-10", id="o1", coded=POSITIVE, status="preliminary")
    res = evaluate("E10", record(obs))
    assert res.outcome is Outcome.FAIL
    assert "positive (preliminary) on 2026-01-10 (Observation/o1)" in res.reason


def test_hbsag_positive_exactly_24_months_ago_still_counts(evaluate):
    assert (
        evaluate("E10", record(observation("5196-1", "2024-06-01", coded=POSITIVE))).outcome is Outcome.FAIL
    )


def test_hbsag_positive_older_than_the_look_back_asks_for_a_repeat(evaluate):
    res = evaluate("E10", record(observation("5196-1", "2024-05-31", coded=POSITIVE, id="old")))
    assert res.outcome is Outcome.UNKNOWN
    assert "HBsAg" in res.next_step
    assert res.evidence == ("Observation/old",)


def test_a_later_negative_hbsag_supersedes_a_positive(evaluate):
    rec = record(
        observation("5196-1", "2025-01-10", coded=POSITIVE),
        observation("5196-1", "2025-09-10", coded=NEGATIVE, id="neg"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.PASS
    assert "negative" in res.reason


def test_positive_and_negative_on_the_same_day_keeps_the_positive(evaluate):
    rec = record(
        observation("5196-1", "2025-09-10", coded=NEGATIVE),
        observation("5196-1", "2025-09-10", coded=POSITIVE),
    )
    assert evaluate("E10", rec).outcome is Outcome.FAIL


def test_results_after_the_screening_date_are_ignored(evaluate):
    assert (
        evaluate("E10", record(observation("5196-1", "2026-06-02", coded=POSITIVE))).outcome is Outcome.PASS
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"value": 1500.0, "unit": "[IU]/mL"}, Outcome.FAIL),
        ({"value": 20.0, "unit": "[IU]/mL", "comparator": "<"}, Outcome.PASS),
        ({"string": "<20 IU/mL"}, Outcome.PASS),
        ({"value": 0.0, "unit": "[IU]/mL"}, Outcome.PASS),
        ({"coded": DETECTED}, Outcome.FAIL),
        ({"string": "Detected, below the limit of quantification"}, Outcome.FAIL),
    ],
)
def test_hbv_dna_viral_load(evaluate, kwargs, expected):
    assert evaluate("E10", record(observation("29615-2", "2026-03-01", **kwargs))).outcome is expected


def test_isolated_anti_hbc_is_unknown_and_asks_for_hbv_dna(evaluate):
    res = evaluate("E10", record(observation("16933-4", "2026-03-01", coded=POSITIVE, id="core")))
    assert res.outcome is Outcome.UNKNOWN
    assert "HBV DNA" in res.next_step
    assert res.evidence == ("Observation/core",)


@pytest.mark.parametrize(
    "settling",
    [
        observation("16935-9", "2026-03-01", value=120.0, unit="m[IU]/mL", interpretation="POS"),  # anti-HBs
        observation("29615-2", "2026-03-05", coded=NOT_DETECTED),  # HBV DNA
    ],
)
def test_anti_hbc_with_immunity_or_no_viral_dna_is_resolved(evaluate, settling):
    rec = record(observation("16933-4", "2026-03-01", coded=POSITIVE), settling)
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.PASS
    assert "anti-HBc" in res.reason


def test_hcv_antibody_without_rna_is_unknown(evaluate):
    res = evaluate("E10", record(observation("16128-1", "2025-11-01", string="Reactive")))
    assert res.outcome is Outcome.UNKNOWN
    assert "HCV RNA" in res.next_step


def test_hcv_antibody_with_rna_not_detected_is_cleared(evaluate):
    rec = record(
        observation("16128-1", "2025-11-01", string="Reactive"),
        observation("11259-9", "2025-11-01", string="Not detected"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.PASS
    assert "resolved" in res.reason


def test_hcv_rna_detected_excludes(evaluate):
    rec = record(
        observation("16128-1", "2025-11-01", string="Reactive"),
        observation("11011-4", "2025-11-15", value=350000.0, unit="[IU]/mL", id="rna"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.FAIL
    assert "hepatitis C" in res.reason
    assert "Observation/rna" in res.evidence


@pytest.mark.parametrize(
    ("code", "kwargs"), [("56888-1", {"string": "Reactive"}), ("20447-9", {"value": 4000.0})]
)
def test_hiv_antigen_antibody_or_viral_load_excludes(evaluate, code, kwargs):
    res = evaluate("E10", record(observation(code, "2018-01-01", **kwargs)))
    assert res.outcome is Outcome.FAIL  # HIV counts at any date
    assert "HIV" in res.reason


@pytest.mark.parametrize(
    "treated",
    [
        condition("icd10cm", "B20", "2019-01-10", id="dx"),
        medication_request("local", "2019-01-15", system="http://hospital.example/drugs", id="dx",
                           display="bictegravir 50 MG / emtricitabine 200 MG / tenofovir alafenamide 25 MG"),
        medication_request("local", "2019-01-15", system="http://hospital.example/drugs", id="dx",
                           display="Biktarvy"),
    ],
)
def test_treated_hiv_with_undetectable_load_still_excludes(evaluate, treated):
    # A diagnosis or antiretroviral therapy shows the undetectable load is HIV under treatment.
    rec = record(
        observation("56888-1", "2019-01-01", string="Reactive", id="screen"),
        observation("20447-9", "2026-01-01", value=20.0, comparator="<", unit="{copies}/mL"),
        treated,
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.FAIL
    assert res.reason.startswith("Active infection: HIV")
    assert "Observation/screen" in res.evidence
    if treated["resourceType"] == "MedicationRequest":
        assert "antiretroviral therapy" in res.reason and "MedicationRequest/dx" in res.evidence


def test_reactive_hiv_screen_then_undetectable_rna_without_diagnosis_or_therapy_is_unknown(evaluate):
    rec = record(
        observation("56888-1", "2026-01-01", string="Reactive", id="screen"),
        observation("25835-0", "2026-01-10", coded=NOT_DETECTED, id="nat"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "with no HIV diagnosis or antiretroviral therapy on record" in res.reason
    assert res.evidence == ("Observation/screen", "Observation/nat")
    assert res.next_step == (
        "Confirm with an HIV-1/2 differentiation assay and ask about antiretroviral therapy."
    )


def test_antiretroviral_prep_does_not_make_a_reactive_screen_treated_hiv(evaluate):
    prep = medication_request("local", "2025-06-01", system="http://hospital.example/drugs",
                              display="dolutegravir 50 MG",
                              reason=concept("local", "x", text="post-exposure prophylaxis"))
    rec = record(
        observation("56888-1", "2026-01-01", string="Reactive"),
        observation("25835-0", "2026-01-10", coded=NOT_DETECTED),
        prep,
    )
    assert evaluate("E10", rec).outcome is Outcome.UNKNOWN


@pytest.mark.parametrize("confirmation", ["69668-2", "56888-1"])  # differentiation assay, repeat screen
def test_reactive_hiv_screen_not_confirmed_by_supplemental_test_and_nat_passes(evaluate, confirmation):
    rec = record(
        observation("56888-1", "2026-01-01", string="Reactive", id="screen"),
        observation(confirmation, "2026-01-10", string="Negative", id="supp"),
        observation("25835-0", "2026-01-10", coded=NOT_DETECTED, id="nat"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.PASS
    assert "not confirmed" in res.reason
    assert set(res.evidence) == {"Observation/screen", "Observation/supp", "Observation/nat"}


def test_hiv_rna_not_detected_before_the_reactive_screen_does_not_confirm_it_negative(evaluate):
    rec = record(
        observation("25835-0", "2025-06-01", coded=NOT_DETECTED),
        observation("56888-1", "2026-01-01", string="Reactive"),
        observation("69668-2", "2026-01-10", string="Negative"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "Discordant" in res.next_step


def test_reactive_hiv_screen_followed_by_negative_is_unknown(evaluate):
    rec = record(
        observation("56888-1", "2026-01-01", string="Reactive", id="s1"),
        observation("56888-1", "2026-01-20", string="Non-reactive", id="s2"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert set(res.evidence) == {"Observation/s1", "Observation/s2"}
    assert "differentiation" in res.next_step


def test_undetectable_hiv_load_alone_does_not_exclude(evaluate):
    rec = record(observation("20447-9", "2026-01-01", value=20.0, comparator="<", unit="{copies}/mL"))
    assert evaluate("E10", rec).outcome is Outcome.PASS


def test_positive_igra_without_tb_diagnosis_is_unknown(evaluate):
    res = evaluate("E10", record(observation("71773-6", "2026-02-01", coded=POSITIVE, id="igra")))
    assert res.outcome is Outcome.UNKNOWN
    assert "latent or active" in res.reason
    assert "active TB" in res.next_step


def test_positive_igra_explained_by_latent_tb_passes(evaluate):
    rec = record(
        observation("71773-6", "2026-02-01", coded=POSITIVE),
        condition("icd10cm", "Z22.7", "2026-02-10", id="ltbi"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.PASS
    assert "latent" in res.reason.lower()


def test_negative_igra_passes(evaluate):
    assert (
        evaluate("E10", record(observation("71773-6", "2026-02-01", coded=NEGATIVE))).outcome is Outcome.PASS
    )


def test_igra_switch_makes_a_positive_igra_exclude(evaluate, trial):
    from fhirscreen.criteria.base import Context

    criterion = trial.criterion("E10")
    params = criterion.params.model_copy(update={"igra_positive_is_fail": True})
    rec = record(observation("71773-6", "2026-02-01", coded=POSITIVE))
    from tests.builders import AS_OF

    res = criterion.kind.fn(rec, Context(as_of=AS_OF, value_sets=trial.value_sets), params)
    assert res.outcome is Outcome.FAIL


def test_fail_outranks_unknown_and_lists_every_disease(evaluate):
    rec = record(
        condition("icd10cm", "B18.1", "2020-01-01", id="hbv"),
        condition("icd10cm", "A15.0", "2026-05-01", id="tb"),
        observation("16128-1", "2025-11-01", string="Reactive"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.FAIL
    assert "hepatitis B" in res.reason and "tuberculosis" in res.reason
    assert {"Condition/hbv", "Condition/tb"} <= set(res.evidence)


# ----------------------------------------------------------------------------------------------- E11


def test_no_infection_on_record_passes(evaluate):
    res = evaluate("E11", record())
    assert res.outcome is Outcome.PASS
    assert res.reason == "No active infection on record."


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("snomed", "444814009"),  # viral sinusitis (Synthea)
        ("snomed", "10509002"),  # acute bronchitis
        ("snomed", "43878008"),  # streptococcal sore throat
        ("snomed", "233604007"),  # pneumonia
        ("icd10cm", "N39.0"),
        ("icd10cm", "n390"),
        ("icd10cm", "J18.9"),
        ("icd10cm", "L03.115"),
        ("icd10cm", "A41.9"),  # sepsis
        ("icd10cm", "B15.9"),  # hepatitis A: not handled by E10
        ("icd10cm", "U07.1"),
    ],
)
def test_recent_active_infection_excludes(evaluate, system, code):
    res = evaluate("E11", record(condition(system, code, "2026-05-20", id="inf")))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/inf",)
    assert "2026-05-20" in res.reason


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("icd10cm", "A15.0"),
        ("icd10cm", "B18.2"),
        ("icd10cm", "B20"),
        ("icd10cm", "B95.2"),
        ("icd10cm", "B94.8"),
        ("icd10cm", "U09.9"),
        ("snomed", "40055000"),
    ],
)
def test_codes_left_to_e10_or_not_active_infection(evaluate, system, code):
    assert evaluate("E11", record(condition(system, code, "2026-05-20"))).outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("onset", "expected"),
    [("2026-03-03", Outcome.FAIL), ("2026-03-02", Outcome.UNKNOWN)],  # 90 vs 91 days before 2026-06-01
)
def test_infection_open_longer_than_90_days_is_a_stale_entry(evaluate, onset, expected):
    res = evaluate("E11", record(condition("snomed", "444814009", onset)))
    assert res.outcome is expected
    if expected is Outcome.UNKNOWN:
        assert "never closed" in res.reason
        assert "resolved" in res.next_step


@pytest.mark.parametrize(
    ("abatement", "expected"),
    [("2026-05-31", Outcome.PASS), ("2026-06-01", Outcome.PASS), ("2026-06-02", Outcome.FAIL)],
)
def test_abatement_on_or_before_the_screening_date_resolves(evaluate, abatement, expected):
    rec = record(condition("snomed", "10509002", "2026-05-20", abatement=abatement))
    assert evaluate("E11", rec).outcome is expected


@pytest.mark.parametrize("status", ["resolved", "inactive", "remission"])
def test_resolved_infection_passes_and_says_when(evaluate, status):
    rec = record(
        condition("snomed", "43878008", "2026-05-01", clinical=status, abatement="2026-05-10", id="st")
    )
    res = evaluate("E11", rec)
    assert res.outcome is Outcome.PASS
    assert "No active infection on record" in res.reason
    assert "2026-05-10" in res.reason
    assert res.evidence == ("Condition/st",)


def test_recurrence_counts_as_active(evaluate):
    rec = record(condition("snomed", "68566005", "2026-05-25", clinical="recurrence"))
    assert evaluate("E11", rec).outcome is Outcome.FAIL


def test_missing_clinical_status_is_taken_as_active_and_said(evaluate):
    res = evaluate("E11", record(condition("snomed", "68566005", "2026-05-25", clinical=None)))
    assert res.outcome is Outcome.FAIL
    assert "no clinical status" in res.reason


def test_undated_open_infection_is_unknown(evaluate):
    res = evaluate("E11", record(condition("snomed", "68566005", None)))
    assert res.outcome is Outcome.UNKNOWN
    assert "no onset date" in res.reason


def test_infection_starting_after_the_screening_date_is_ignored(evaluate):
    assert evaluate("E11", record(condition("snomed", "233604007", "2026-06-02"))).outcome is Outcome.PASS


@pytest.mark.parametrize("verification", ["entered-in-error", "refuted"])
def test_e11_ignores_entered_in_error_and_refuted(evaluate, verification):
    rec = record(condition("snomed", "233604007", "2026-05-25", verification=verification))
    assert evaluate("E11", rec).outcome is Outcome.PASS


def test_a_fail_cites_only_the_resources_behind_it(evaluate):
    rec = record(
        condition("icd10cm", "B18.1", "2020-01-01", id="hbv"),
        observation("71773-6", "2026-02-01", coded=POSITIVE, id="igra"),
    )
    res = evaluate("E10", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/hbv",)


def test_e11_fail_cites_the_recent_infection_not_the_stale_one(evaluate):
    rec = record(
        condition("snomed", "444814009", "2025-01-01", id="stale"),
        condition("snomed", "10509002", "2026-05-28", id="recent"),
    )
    res = evaluate("E11", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/recent",)


def test_e11_lists_open_infections_in_the_same_order_whatever_the_resource_order(evaluate):
    # Synthea's COVID-19 module opens several infections on one day; bundles and NDJSON order them
    # differently.
    covid = condition("snomed", "840539006", "2026-01-10", id="b-covid", display="COVID-19")
    sepsis = condition("snomed", "770349000", "2026-01-10", id="a-sepsis", display="Sepsis caused by virus")
    first, second = evaluate("E11", record(covid, sepsis)), evaluate("E11", record(sepsis, covid))
    assert first.outcome is Outcome.UNKNOWN  # open > 90 days: probably never closed
    assert first.reason == second.reason
    assert first.reason.index("Sepsis caused by virus") < first.reason.index("COVID-19")


@pytest.mark.parametrize(("code", "name"), [("307426000", "Acute infective cystitis"),
                                            ("427898007", "Infection of tooth"),
                                            ("87628006", "Bacterial infectious disease")])
def test_e11_synthea_infection_codes_exclude(evaluate, code, name):
    res = evaluate("E11", record(condition("snomed", code, "2026-05-20", id="inf", display=name)))
    assert res.outcome is Outcome.FAIL
    assert name in res.reason


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("233607000", "Pneumococcal pneumonia"),
        ("363746003", "Acute pharyngitis"),
        ("999001", "Aspiration pneumonia"),
        ("999002", "Septic shock due to Escherichia coli"),
        ("999003", "Cellulitis of left lower limb"),
        ("999004", "Tooth abscess"),
        ("999005", "Acute maxillary sinusitis"),
        ("999006", "Acute bronchitis due to respiratory syncytial virus"),
        ("999007", "Acute cystitis without hematuria"),
        ("999008", "Bacterial meningitis"),
        ("999009", "Infective endocarditis"),
        ("999010", "Shingles"),
        ("999011", "Influenza A"),
        ("999012", "COVID-19"),
        ("999013", "Oral candidiasis"),
        ("999014", "Wound infection"),
    ],
)
def test_e11_unlisted_snomed_infection_excludes_by_its_name(evaluate, code, name):
    res = evaluate("E11", record(condition("snomed", code, "2026-05-20", id="inf", display=name)))
    assert res.outcome is Outcome.FAIL
    assert res.reason == f"Active infection on the screening date: {name} since 2026-05-20 (Condition/inf)."


def test_e11_infection_named_in_text_only_excludes(evaluate):
    cond = condition("snomed", "999015", "2026-05-20", id="inf")
    cond["code"] = {"text": "Community-acquired pneumonia, right lower lobe"}
    res = evaluate("E11", record(cond))
    assert res.outcome is Outcome.FAIL
    assert "Community-acquired pneumonia, right lower lobe" in res.reason


@pytest.mark.parametrize(
    "name",
    [
        "Lupus pneumonia",
        "Lupus nephritis",
        "Serositis",
        "Pleuritis",
        "Pericarditis",
        "Endocarditis due to SLE",
        "Libman-Sacks endocarditis",
        "Aseptic meningitis",
        "Interstitial pneumonia",
        "Organizing pneumonia",
        "Interstitial cystitis",
        "Chronic sinusitis",
        "Chronic obstructive bronchitis",
        "History of pneumonia",
        "Pneumococcal vaccination",
        "Screening for COVID-19",
        "Exposure to SARS-CoV-2",
        "Post-COVID-19 condition",
        "Candida colonization",
        "Chronic hepatitis B viral infection",  # E10's
        "Chronic type B viral hepatitis",  # E10's (Synthea's display of 61977001)
        "Latent tuberculosis infection",  # E10's
        "HIV infection",  # E10's
    ],
)
def test_e11_names_that_are_not_an_active_infection_pass(evaluate, name):
    res = evaluate("E11", record(condition("snomed", "999020", "2026-05-20", display=name)))
    assert res.outcome is Outcome.PASS
    assert res.reason == "No active infection on record."


@pytest.mark.parametrize("name", ["Suspected COVID-19", "Possible pneumonia"])
def test_e11_infection_named_as_suspected_is_a_question(evaluate, name):
    res = evaluate("E11", record(condition("snomed", "999030", "2026-05-20", id="s", display=name)))
    assert res.outcome is Outcome.UNKNOWN
    assert "named as suspected, not confirmed" in res.reason
    assert res.next_step == f"Confirm or rule out {name}."
    assert res.evidence == ("Condition/s",)


# -------------------------------------------------------------------- E11 anti-infective prophylaxis


def test_e11_isoniazid_for_latent_tb_is_prophylaxis_not_infection(evaluate):
    rec = record(
        condition("icd10cm", "Z22.7", "2026-03-01"),
        medication_request("6038", "2026-03-15", display="isoniazid", bounds_start="2026-03-15",
                           bounds_end="2026-12-15", reason=concept("icd10cm", "Z22.7", "Latent tuberculosis"),
                           id="inh"),
    )
    res = evaluate("E11", rec)
    assert res.outcome is Outcome.PASS
    assert res.reason == (
        "No active infection on record; isoniazid (2026-03-15 to 2026-12-15, MedicationRequest/inh) is "
        "prophylaxis (Latent tuberculosis), not treatment."
    )
    assert res.evidence == ("MedicationRequest/inh",)


@pytest.mark.parametrize(
    ("code", "drug", "reason"),
    [
        ("10180", "sulfamethoxazole / trimethoprim", concept("icd10cm", "Z29.8", "", text="PJP prophylaxis")),
        ("10180", "sulfamethoxazole / trimethoprim", concept("icd10cm", "B59", "Pneumocystosis",
                                                              text="Pneumocystis pneumonia prophylaxis")),
        ("73645", "valacyclovir", concept("icd10cm", "A60.04", "Herpesviral vulvovaginitis",
                                          text="HSV suppression")),
        ("723", "amoxicillin", concept("local", "x", text="Preventive: asplenia")),
    ],
)
def test_e11_order_whose_reason_says_prophylaxis_does_not_count(evaluate, code, drug, reason):
    order = medication_request(code, "2026-02-01", display=drug, bounds_start="2026-02-01",
                               bounds_end="2026-12-31", reason=reason, id="rx")
    res = evaluate("E11", record(order))
    assert res.outcome is Outcome.PASS
    said = f"{drug} (2026-02-01 to 2026-12-31, MedicationRequest/rx) is prophylaxis ({reason['text']})"
    assert said in res.reason


def test_e11_prophylaxis_named_by_a_referenced_condition_or_by_the_fill_s_order(evaluate):
    ltbi = condition("icd10cm", "R76.12", "2026-03-01", id="ltbi")
    order = medication_request("6038", "2026-03-15", display="isoniazid", id="inh",
                               reasonReference=[{"reference": "Condition/ltbi"}])
    assert evaluate("E11", record(ltbi, order)).outcome is Outcome.PASS
    fill = medication_dispense("6038", "2026-05-20", display="isoniazid", id="fill",
                               authorizingPrescription=[{"reference": "MedicationRequest/inh"}])
    res = evaluate("E11", record(ltbi, order, fill))
    assert res.outcome is Outcome.PASS
    assert "MedicationDispense/fill) is prophylaxis" in res.reason


@pytest.mark.parametrize(
    "reason",
    [None, concept("icd10cm", "J18.9", "Pneumonia, unspecified organism"), concept("local", "x", text="UTI")],
)
def test_e11_anti_infective_for_an_infection_or_without_a_reason_stays_a_question(evaluate, reason):
    order = medication_request("723", "2026-05-28", display="amoxicillin", bounds_start="2026-05-28",
                               bounds_end="2026-06-07", reason=reason, id="abx")
    res = evaluate("E11", record(order))
    assert res.outcome is Outcome.UNKNOWN
    assert res.evidence == ("MedicationRequest/abx",)


def test_e11_prophylaxis_does_not_hide_an_active_infection(evaluate):
    rec = record(
        condition("icd10cm", "J18.9", "2026-05-20", id="pna"),
        medication_request("10180", "2026-02-01", display="sulfamethoxazole / trimethoprim",
                           bounds_start="2026-02-01", bounds_end="2026-12-31",
                           reason=concept("local", "x", text="PJP prophylaxis")),
    )
    res = evaluate("E11", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/pna",)


# --- prophylaxis said in a dosage instruction or note (no coded reason) -----------------------------


def tmp_smx(**extra: Any) -> dict[str, Any]:
    """An active TMP-SMX order running through the screening date, with no reason of its own."""
    order = medication_request("10180", "2026-02-01", display="sulfamethoxazole / trimethoprim", id="rx",
                               bounds_start="2026-02-01", bounds_end="2026-12-31")
    dosage = order["dosageInstruction"][0]
    for key in ("text", "patientInstruction", "additionalInstruction"):
        if key in extra:
            dosage[key] = extra.pop(key)
    order.update(extra)
    return order


@pytest.mark.parametrize(
    ("written", "where"),
    [
        ({"text": "1 tab Mon/Wed/Fri for PJP prophylaxis"}, "dosage instruction"),
        ({"text": "PJP ppx"}, "dosage instruction"),
        ({"patientInstruction": "Take one tablet daily to prevent pneumocystis"}, "dosage instruction"),
        ({"additionalInstruction": [concept("local", "x", text="Prophylactic dose")]}, "dosage instruction"),
        ({"note": [{"text": "Prophylaxis while on rituximab, not treatment"}]}, "note"),
    ],
    ids=["dosage-text", "ppx", "patient-instruction", "additional-instruction", "note"],
)
def test_e11_prophylaxis_written_in_the_dosage_or_a_note_does_not_count(evaluate, written, where):
    """Without a coded reason the order was a question ("infection or prophylaxis?") for every coordinator."""
    res = evaluate("E11", record(tmp_smx(**written)))
    assert res.outcome is Outcome.PASS, res.reason
    assert (
        "sulfamethoxazole / trimethoprim (2026-02-01 to 2026-12-31, MedicationRequest/rx) is prophylaxis "
        f"(so its {where} says), not treatment."
    ) in res.reason
    assert res.evidence == ("MedicationRequest/rx",)


def test_e11_the_note_is_named_not_quoted(evaluate):
    res = evaluate("E11", record(tmp_smx(note=[{"text": "Mrs Example: PJP prophylaxis, call 555-0100"}])))
    assert res.outcome is Outcome.PASS
    assert "Example" not in res.reason and "555" not in res.reason


@pytest.mark.parametrize(
    "written",
    [
        {"text": "Not for prophylaxis"},
        {"text": "non-prophylactic dose"},
        {"note": [{"text": "PJP prophylaxis stopped"}]},
        {"note": [{"text": "Switched from prophylaxis to treatment dose"}]},
        {"text": "PJP prophylaxis", "note": [{"text": "treating pneumonia"}]},
        {"text": "Prophylaxis dose; increase to therapeutic dose for active infection"},
        {"text": "Take with food to prevent stomach upset"},
        {"note": [{"text": "Monitor CBC for bone marrow suppression"}]},
        {"text": "Take 1 tablet twice daily"},
    ],
    ids=["not-for", "non", "stopped", "switched", "treating", "therapeutic", "stomach", "marrow", "none"],
)
def test_e11_negated_ambiguous_or_other_wording_stays_a_question(evaluate, written):
    res = evaluate("E11", record(tmp_smx(**written)))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "which may be treating an infection (or be prophylaxis)" in res.reason


def test_e11_a_fill_carries_out_the_prophylaxis_its_order_writes(evaluate):
    fill = medication_dispense("10180", "2026-05-20", display="sulfamethoxazole / trimethoprim", id="fill",
                               authorizingPrescription=[{"reference": "MedicationRequest/rx"}])
    res = evaluate("E11", record(tmp_smx(note=[{"text": "PJP prophylaxis"}]), fill))
    assert res.outcome is Outcome.PASS, res.reason
    assert "(2026-05-20 to 2026-06-18, MedicationDispense/fill) is prophylaxis (so the note of " \
           "MedicationRequest/rx says)" in res.reason


def test_e11_written_prophylaxis_does_not_hide_an_active_infection(evaluate):
    rec = record(condition("icd10cm", "J18.9", "2026-05-20", id="pna"), tmp_smx(text="PJP prophylaxis"))
    res = evaluate("E11", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/pna",)


# Clinical audit: prophylaxis wording beside a treatment course of a current infection was read as
# prophylaxis, and E11 passed. Anything in the order's texts that points at treating an infection now
# leaves the question ("infection or prophylaxis?") standing.
TMP_SMX = "sulfamethoxazole / trimethoprim"
TREATMENT_COURSES = [
    ("73645", "valacyclovir", "text",
     "1 g three times daily x 7 days for shingles; to prevent spread of zoster"),
    ("260101", "oseltamivir", "text", "75 mg twice daily x 5 days for influenza; to prevent transmission"),
    ("723", "amoxicillin", "text",
     "500 mg three times daily x 10 days for strep pharyngitis (rheumatic fever prophylaxis)"),
    ("2551", "ciprofloxacin", "text",
     "500 mg twice daily x 14 days for pyelonephritis, to prevent re-infection"),
    ("3640", "doxycycline", "note",
     "Lifelong suppressive therapy for infected prosthetic knee (retained hardware)"),
    ("10180", TMP_SMX, "note", "Escalated from PJP prophylaxis to full dose for PJP pneumonia"),
    ("7454", "nitrofurantoin", "text",
     "1 tab twice daily x 7 days for UTI, then 1 tab nightly for UTI prophylaxis"),
    ("2231", "cephalexin", "text", "500 mg four times daily for cellulitis; prevents infection spreading"),
    ("4450", "fluconazole", "text", "400 mg daily for esophageal candidiasis, then secondary prophylaxis"),
]


def anti_infective(code: str, drug: str, where: str, text: str, **extra: Any) -> dict[str, Any]:
    """An order started three days before screening, with no reason, its words in ``where``."""
    if where == "note":
        return medication_request(code, "2026-05-29", display=drug, id="rx", note=[{"text": text}], **extra)
    return medication_request(code, "2026-05-29", display=drug, id="rx", dosageInstruction=[{where: text}],
                              **extra)


@pytest.mark.parametrize(("code", "drug", "where", "text"), TREATMENT_COURSES,
                         ids=["zoster", "influenza", "strep", "pyelonephritis", "infected-knee", "escalated",
                              "uti-then-ppx", "cellulitis", "candidiasis-then-secondary"])
def test_e11_prophylaxis_wording_beside_a_treatment_course_stays_a_question(
    evaluate, code, drug, where, text
):
    res = evaluate("E11", record(anti_infective(code, drug, where, text)))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "which may be treating an infection (or be prophylaxis)" in res.reason


@pytest.mark.parametrize(
    "text",
    [
        # each sign on its own, beside plain prophylaxis wording
        "PJP prophylaxis x 7 days", "PJP prophylaxis for 10 days", "7-day course; PJP prophylaxis",
        "PJP prophylaxis, full dose", "Escalated PJP prophylaxis", "PJP prophylaxis, then stop",
        "Secondary PJP prophylaxis", "Suppressive therapy for infected hip", "PJP ppx; prevent spread",
        "PJP ppx; to prevent transmission", "1 tab daily for pneumonia; PJP prophylaxis",
        "PJP ppx due to cellulitis", "PJP prophylaxis, pneumonia", "Dx: cellulitis. PJP ppx",
        "Chronic suppression of prosthetic joint infection",
    ],
)
def test_e11_each_sign_of_treatment_takes_back_prophylaxis_wording(evaluate, text):
    res = evaluate("E11", record(tmp_smx(text=text)))
    assert res.outcome is Outcome.UNKNOWN, res.reason


def test_e11_a_coded_infection_reason_wins_over_prophylaxis_in_the_note(evaluate):
    pneumonia = concept("snomed", "233604007", "Pneumonia")
    order = tmp_smx(note=[{"text": "PJP prophylaxis"}], reasonCode=[pneumonia])
    res = evaluate("E11", record(order))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    # ... and so does the display of a reason the record does not hold.
    gone = [{"reference": "Condition/gone", "display": "Pneumonia"}]
    unresolved = tmp_smx(note=[{"text": "PJP prophylaxis"}], reasonReference=gone)
    assert evaluate("E11", record(unresolved)).outcome is Outcome.UNKNOWN
    # A coded reason that itself says prophylaxis is still prophylaxis (the reason's own words).
    coded = tmp_smx(reasonCode=[concept("icd10cm", "B59", "Pneumocystosis", text="PJP prophylaxis")])
    assert evaluate("E11", record(coded)).outcome is Outcome.PASS


@pytest.mark.parametrize(
    "extra",
    [
        {"reasonReference": [{"reference": "Condition/gone", "display": "UTI prophylaxis"}]},
        {"reasonReference": [{"display": "UTI prophylaxis"}]},
        {"reasonReference": [{"reference": "Condition/gone"}], "note": [{"text": "UTI prophylaxis"}]},
        {"reasonReference": [{"reference": "Condition/gone"}],
         "dosageInstruction": [{"text": "nightly for UTI prophylaxis"}]},
    ],
    ids=["display", "display-only", "note", "dosage"],
)
def test_e11_a_reason_condition_not_in_the_record_does_not_hide_the_reason_s_words(evaluate, extra):
    """A reasonReference to a Condition the record does not hold is read as if it were not there: the
    reference's display, the order's note and dosage text say what the order is for."""
    order = medication_request("2551", "2026-05-29", display="ciprofloxacin", id="rx", **extra)
    res = evaluate("E11", record(order))
    assert res.outcome is Outcome.PASS, res.reason
    assert "ciprofloxacin (since 2026-05-29, MedicationRequest/rx) is prophylaxis" in res.reason
    # Not when the reference's display is an infection: the question stays.
    shown = dict(extra, reasonReference=[{"reference": "Condition/gone", "display": "Acute cystitis"}])
    order = medication_request("2551", "2026-05-29", display="ciprofloxacin", id="rx", **shown)
    assert evaluate("E11", record(order)).outcome is Outcome.UNKNOWN


def test_e11_a_fill_whose_own_reason_is_not_in_the_record_reads_its_order(evaluate):
    order = medication_request("6038", "2026-03-15", display="isoniazid", id="inh",
                               reason=concept("icd10cm", "Z22.7", "Latent tuberculosis"))
    fill = medication_dispense("6038", "2026-05-20", display="isoniazid", id="fill",
                               authorizingPrescription=[{"reference": "MedicationRequest/inh"}],
                               reasonReference=[{"reference": "Condition/gone"}])
    res = evaluate("E11", record(order, fill))
    assert res.outcome is Outcome.PASS, res.reason
    assert "MedicationDispense/fill) is prophylaxis" in res.reason


PROPHYLAXIS_WORDING = [
    ("10180", TMP_SMX, "text", "1 DS tab three times weekly (MWF) PJP ppx"),
    ("73645", "valacyclovir", "text", "500 mg daily for HSV suppression"),
    ("6038", "isoniazid", "text", "300 mg daily for latent TB x 9 months"),
    ("10180", TMP_SMX, "patientInstruction", "Take 1 SS tab daily for PCP prophylaxis while on rituximab"),
    ("9384", "rifampin", "note", "Rifampin 4 months: treatment of latent TB infection"),
    ("73645", "valacyclovir", "text", "Suppressive therapy for recurrent genital herpes, 500 mg daily"),
    ("10180", TMP_SMX, "note", "PJP prophylaxis (not a treatment dose)"),
    ("723", "amoxicillin", "note", "Endocarditis prophylaxis before dental work"),
    ("10180", TMP_SMX, "text", "For prevention of PJP pneumonia"),
    ("10180", TMP_SMX, "text", "PJP prophylaxis, not full dose"),
    ("2551", "ciprofloxacin", "text", "Nightly for recurrent UTI, prophylaxis"),
]


@pytest.mark.parametrize(("code", "drug", "where", "text"), PROPHYLAXIS_WORDING,
                         ids=["pjp-ppx", "hsv-suppression", "latent-tb", "pcp-rituximab", "ltbi-treatment",
                              "recurrent-herpes", "not-treatment-dose", "endocarditis", "prevention-of",
                              "not-full-dose", "recurrent-uti"])
def test_e11_plain_prophylaxis_wording_still_does_not_count(evaluate, code, drug, where, text):
    res = evaluate("E11", record(anti_infective(code, drug, where, text)))
    assert res.outcome is Outcome.PASS, res.reason
    assert "MedicationRequest/rx) is prophylaxis (so its" in res.reason


def _hiv_screen_then_pep(note: str) -> tuple[Any, tuple[Any, ...]]:
    """A reactive HIV screen whose confirmation found nothing, and dolutegravir with ``note``."""
    pep = medication_request("local", "2025-06-01", system="http://hospital.example/drugs",
                             display="dolutegravir 50 MG", note=[{"text": note}])
    tests = (
        observation("56888-1", "2026-01-01", string="Reactive"),
        observation("25835-0", "2026-01-10", coded=NOT_DETECTED),
    )
    return pep, tests


def test_e10_pep_course_in_a_note_is_still_not_antiretroviral_therapy(evaluate):
    """E10 does not read E11's treatment signs: a PEP course ("x 28 days") is PEP, not HIV therapy."""
    pep, tests = _hiv_screen_then_pep("PEP x 28 days after needlestick")
    assert evaluate("E10", record(*tests, pep)).outcome is Outcome.UNKNOWN


def test_e10_pep_written_in_a_note_is_not_antiretroviral_therapy(evaluate):
    """PEP in a note (no coded reason) read as therapy: a false-positive screen failed as treated HIV."""
    prep, tests = _hiv_screen_then_pep("PEP after needlestick injury")
    res = evaluate("E10", record(*tests, prep))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "with no HIV diagnosis or antiretroviral therapy on record" in res.reason
    treatment = {**prep, "note": [{"text": "PEP stopped; HIV treatment since the diagnosis"}]}
    assert evaluate("E10", record(*tests, treatment)).outcome is Outcome.FAIL


def test_e10_pep_named_by_a_reason_reference_the_record_does_not_hold(evaluate):
    """The display of a reasonReference whose Condition is not in the record is the reason's words."""
    pep, tests = _hiv_screen_then_pep("")
    pep = {**pep, "note": [], "reasonReference": [{"reference": "Condition/gone",
                                                   "display": "Post-exposure prophylaxis (needlestick)"}]}
    res = evaluate("E10", record(*tests, pep))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "with no HIV diagnosis or antiretroviral therapy on record" in res.reason


# --- abatement[x] ends a condition (criteria-codes.md 0.2) ----------------------------------------


@pytest.mark.parametrize("abatement", [{"abatementBoolean": True}, {"abatementString": "2026-05-28"},
                                       {"abatementString": "cleared after treatment"}])
def test_e10_hepatitis_b_with_an_abatement_is_history(evaluate, abatement):
    cond = condition("icd10cm", "B18.1", "2020-01-01", clinical=None, id="hbv", **abatement)
    res = evaluate("E10", record(cond))
    assert res.outcome is Outcome.PASS
    assert "is history, not active (Condition/hbv)" in res.reason


@pytest.mark.parametrize("abatement", [{"abatementBoolean": True}, {"abatementString": "2026-05-28"}])
def test_e11_infection_with_an_abatement_is_not_active(evaluate, abatement):
    cond = condition("icd10cm", "J18.9", "2026-05-20", clinical=None, **abatement)
    res = evaluate("E11", record(cond))
    assert res.outcome is Outcome.PASS
    assert "No active infection on record" in res.reason


# --- results without a date -----------------------------------------------------------------------


def test_e10_undated_positive_hiv_antibody_fails_as_hiv_counts_at_any_date(evaluate):
    hiv = observation("7917-8", None, coded=concept("snomed", "10828004", "Positive"), id="hiv")
    res = evaluate("E10", record(hiv))
    assert res.outcome is Outcome.FAIL
    assert "HIV: HIV 1 Ab [Presence] in Serum positive, result has no date (Observation/hiv)" in res.reason
    assert res.evidence == ("Observation/hiv",)


def test_e10_undated_positive_hiv_beside_a_dated_negative_is_unknown(evaluate):
    hiv = observation("7917-8", None, coded=concept("snomed", "10828004", "Positive"), id="hiv")
    neg = observation("7917-8", "2026-05-01", coded=concept("snomed", "260385009", "Negative"), id="neg")
    res = evaluate("E10", record(hiv, neg))
    assert res.outcome is Outcome.UNKNOWN
    assert "result has no date (Observation/hiv)" in res.reason


@pytest.mark.parametrize(("code", "what"), [("5196-1", "HBsAg"), ("11011-4", "HCV RNA")])
def test_e10_undated_positive_hbsag_or_viral_load_is_unknown(evaluate, code, what):
    obs = observation(code, None, coded=concept("snomed", "10828004", "Positive"), id="lab")
    res = evaluate("E10", record(obs))
    assert res.outcome is Outcome.UNKNOWN
    assert "result has no date (Observation/lab), so it cannot be placed in the look-back" in res.reason
    assert res.next_step == f"Confirm the date of the result, or repeat {what}."


def test_e10_active_disease_without_a_clinical_status_says_it_was_taken_as_active(evaluate):
    """criteria-codes.md 0.2: an entry with no clinicalStatus is treated as active, and the reason says so."""
    res = evaluate("E10", record(condition("icd10cm", "B18.1", "2020-01-01", clinical=None)))
    assert res.outcome is Outcome.FAIL
    assert "no clinical status (taken as active)" in res.reason
