"""I2: SLE diagnosis plus ACR-1997 / SLICC-2012 classification items from structured data."""

from __future__ import annotations

from typing import Any

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import concept, condition, observation, record


def sle(**kw: Any) -> dict[str, Any]:
    return condition("snomed", "55464009", "2019-03-04", id="sle", display="Systemic lupus erythematosus",
                     **kw)


def ana_pos(when: str = "2025-05-01") -> dict[str, Any]:
    return observation("5048-4", when, id="ana", string="1:320")


def dsdna_pos(when: str = "2025-05-01") -> dict[str, Any]:
    return observation("5130-0", when, id="dsdna", value=85, unit="IU/mL", high=30)


def low_c3(when: str = "2025-05-01") -> dict[str, Any]:
    return observation("4485-9", when, id="c3", value=62, unit="mg/dL", low=90, high=180)


def anti_sm() -> dict[str, Any]:
    return observation("11090-8", "2025-05-01", id="sm", string="Positive")


def arthritis() -> dict[str, Any]:
    return condition("icd10cm", "M13.0", "2020-02-01", id="arth", display="Polyarthritis, unspecified")


def pleurisy() -> dict[str, Any]:
    return condition("icd10cm", "R09.1", "2021-01-01", id="pleur", clinical="resolved",
                     abatement="2021-02-01")


def wbc(value: float, when: str, unit: str = "10*3/uL") -> dict[str, Any]:
    return observation("6690-2", when, value=value, unit=unit)


def lymphocytes(value: float, when: str) -> dict[str, Any]:
    return observation("731-0", when, value=value, unit="10*3/uL")


def test_sle_with_four_acr_items_passes_and_lists_them(evaluate):
    res = evaluate("I2", record(sle(), ana_pos(), dsdna_pos(), arthritis(), pleurisy()))
    assert res.outcome is Outcome.PASS
    assert res.details["acr_items"] == [
        "5 arthritis", "6 serositis", "10 immunologic disorder", "11 antinuclear antibody",
    ]
    assert res.details["acr_met"] is True
    assert "ACR-1997 4 of 11" in res.reason and "Polyarthritis" in res.reason
    assert {"Condition/sle", "Condition/arth", "Condition/pleur", "Observation/ana"} <= set(res.evidence)


def test_too_few_items_is_unknown_never_fail(evaluate):
    res = evaluate("I2", record(sle(), ana_pos(), dsdna_pos(), arthritis()))
    assert res.outcome is Outcome.UNKNOWN
    assert res.details["acr_count"] == 3
    assert "too few classification items" in res.reason
    assert "ANA 1:320" in res.reason
    assert res.next_step and "rheumatology" in res.next_step


def test_preliminary_ana_is_named_among_the_items(evaluate):
    ana = observation("5048-4", "2025-05-01", id="ana", string="1:320", status="preliminary")
    res = evaluate("I2", record(sle(), ana, dsdna_pos(), arthritis()))
    assert "ANA 1:320 (preliminary) on 2025-05-01" in res.reason


def test_sle_without_any_item_is_unknown(evaluate):
    res = evaluate("I2", record(sle()))
    assert res.outcome is Outcome.UNKNOWN
    assert res.details["acr_items"] == [] and res.details["slicc_items"] == []


def test_slicc_needs_a_clinical_item(evaluate):
    # Four immunologic SLICC items, no clinical one: SLICC not met; ACR counts only items 10 and 11.
    res = evaluate("I2", record(sle(), ana_pos(), dsdna_pos(), low_c3(), anti_sm()))
    assert res.outcome is Outcome.UNKNOWN
    assert res.details["slicc_count"] == 4
    assert res.details["slicc_clinical"] == 0
    assert res.details["slicc_met"] is False


def test_slicc_met_with_one_clinical_and_three_immunologic(evaluate):
    res = evaluate("I2", record(sle(), ana_pos(), dsdna_pos(), low_c3(), arthritis()))
    assert res.outcome is Outcome.PASS
    assert res.details["acr_met"] is False  # arthritis, immunologic, ANA = 3
    assert res.details["slicc_items"] == ["C5 synovitis", "I1 ANA", "I2 anti-dsDNA", "I5 low complement"]
    assert "SLICC-2012 met" in res.reason


@pytest.mark.parametrize(
    ("code", "system"),
    [("M32.0", "icd10cm"), ("L93.0", "icd10cm"), ("201436003", "snomed"), ("7119001", "snomed")],
)
def test_only_drug_induced_or_cutaneous_lupus_fails(evaluate, code, system):
    rec = record(condition(system, code, id="dil"), ana_pos(), dsdna_pos(), arthritis(), pleurisy())
    res = evaluate("I2", rec)
    assert res.outcome is Outcome.FAIL
    assert "not SLE" in res.reason
    assert res.evidence == ("Condition/dil",)


def test_no_lupus_at_all_fails(evaluate):
    assert evaluate("I2", record(arthritis())).outcome is Outcome.FAIL


@pytest.mark.parametrize("code", ["M32.14", "M3214", "m32.9"])
def test_icd10_sle_codes_in_any_spelling(evaluate, code):
    rec = record(condition("icd10cm", code, id="sle"), ana_pos(), dsdna_pos(), arthritis(), pleurisy())
    assert evaluate("I2", rec).outcome is Outcome.PASS


def test_generic_lupus_code_passes_with_classification_but_is_flagged(evaluate):
    generic = condition("snomed", "200936003", id="le", display="Lupus erythematosus")
    res = evaluate("I2", record(generic, ana_pos(), dsdna_pos(), arthritis(), pleurisy()))
    assert res.outcome is Outcome.PASS
    assert "without subtype" in res.reason and "flagged" in res.reason
    assert res.details["diagnosis"] == "unspecified lupus"


def test_generic_lupus_code_with_few_items_is_unknown(evaluate):
    generic = condition("snomed", "200936003", id="le")
    res = evaluate("I2", record(generic, ana_pos()))
    assert res.outcome is Outcome.UNKNOWN
    assert "without subtype" in res.reason


def test_generic_lupus_next_to_discoid_lupus_is_unknown_even_with_items(evaluate):
    rec = record(condition("snomed", "200936003"), condition("icd10cm", "L93.0"), ana_pos(), dsdna_pos(),
                 arthritis(), pleurisy())
    res = evaluate("I2", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "Discoid" in res.reason or "L93.0" in res.reason
    assert res.next_step and "systemic" in res.next_step


def test_provisional_sle_is_unknown(evaluate):
    rec = record(sle(verification="provisional"), ana_pos(), dsdna_pos(), arthritis(), pleurisy())
    res = evaluate("I2", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "provisional" in res.reason


def test_items_after_the_screening_date_do_not_count(evaluate):
    late = condition("icd10cm", "R09.1", "2026-06-02")
    res = evaluate("I2", record(sle(), ana_pos(), dsdna_pos(), arthritis(), late))
    assert res.outcome is Outcome.UNKNOWN


def test_leukopenia_counts_for_acr_only_on_two_occasions(evaluate):
    once = evaluate("I2", record(sle(), wbc(3.5, "2025-01-01")))
    assert once.details["acr_items"] == []
    assert once.details["slicc_items"] == ["C10 leukopenia or lymphopenia"]
    twice = evaluate("I2", record(sle(), wbc(3.5, "2025-01-01"), wbc(3500, "2025-02-01", unit="/uL")))
    assert twice.details["acr_items"] == ["9 hematologic disorder"]
    same_day = evaluate("I2", record(sle(), wbc(3.5, "2025-01-01"), wbc(3.2, "2025-01-01")))
    assert same_day.details["acr_items"] == []


def test_wbc_exactly_4000_is_not_leukopenia(evaluate):
    res = evaluate("I2", record(sle(), wbc(4.0, "2025-01-01"), wbc(4.0, "2025-02-01")))
    assert res.details["acr_items"] == [] and res.details["slicc_items"] == []


def test_lymphopenia_thresholds_differ_between_rules(evaluate):
    acr = evaluate("I2", record(sle(), lymphocytes(1.2, "2025-01-01"), lymphocytes(1.4, "2025-03-01")))
    assert acr.details["acr_items"] == ["9 hematologic disorder"]
    assert acr.details["slicc_items"] == []  # SLICC needs < 1.0
    slicc = evaluate("I2", record(sle(), lymphocytes(0.9, "2025-01-01")))
    assert slicc.details["acr_items"] == []
    assert slicc.details["slicc_items"] == ["C10 leukopenia or lymphopenia"]


def test_thrombocytopenia_once_counts_for_both(evaluate):
    res = evaluate("I2", record(sle(), observation("777-3", "2025-01-01", value=90, unit="10*3/uL")))
    assert res.details["acr_items"] == ["9 hematologic disorder"]
    assert res.details["slicc_items"] == ["C11 thrombocytopenia"]


@pytest.mark.parametrize(
    ("grams", "acr", "slicc"), [(0.5, False, True), (0.6, True, True), (0.4, False, False)]
)
def test_proteinuria_threshold_edges(evaluate, grams, acr, slicc):
    res = evaluate("I2", record(sle(), observation("2889-4", "2025-01-01", value=grams, unit="g/(24.h)")))
    assert ("7 renal disorder" in res.details["acr_items"]) is acr
    assert ("C7 renal" in res.details["slicc_items"]) is slicc


@pytest.mark.parametrize("unit", ["mg/24 hr", "mg/24hrs", "mg/24 hours", "mg/(24h)", "mg/d"])
def test_proteinuria_in_the_units_reports_write(evaluate, unit):
    res = evaluate("I2", record(sle(), observation("2889-4", "2025-01-01", value=3000, unit=unit)))
    assert "C7 renal" in res.details["slicc_items"], res.reason


def test_upcr_in_mg_per_g(evaluate):
    res = evaluate("I2", record(sle(), observation("2890-2", "2025-01-01", value=800, unit="mg/g")))
    assert "C7 renal" in res.details["slicc_items"]


def test_dipstick_3_plus_on_two_days_is_acr_renal(evaluate):
    coded = observation("20454-5", "2025-01-01", coded=concept("snomed", "167277001", "+++"))
    strip_mg = observation("5804-0", "2025-02-01", value=300, unit="mg/dL")
    res = evaluate("I2", record(sle(), coded, strip_mg))
    assert res.details["acr_items"] == ["7 renal disorder"]
    assert res.details["slicc_items"] == []  # SLICC needs a quantified proteinuria
    two_plus = observation("20454-5", "2025-02-01", coded=concept("snomed", "167276005", "++"))
    assert evaluate("I2", record(sle(), coded, two_plus)).details["acr_items"] == []


def test_direct_coombs_does_not_count_with_hemolytic_anemia(evaluate):
    dat = observation("1007-4", "2025-01-01", string="Positive")
    alone = evaluate("I2", record(sle(), dat))
    assert alone.details["slicc_items"] == ["I6 direct Coombs"]
    with_aiha = evaluate("I2", record(sle(), dat, condition("icd10cm", "D59.11")))
    assert with_aiha.details["slicc_items"] == ["C9 hemolytic anemia"]


def test_false_positive_syphilis_test_is_antiphospholipid(evaluate):
    rpr = observation("20507-0", "2025-01-01", string="Reactive")
    fta = observation("24110-9", "2025-01-15", string="Non-reactive")
    res = evaluate("I2", record(sle(), rpr, fta))
    assert res.details["acr_items"] == ["10 immunologic disorder"]
    assert res.details["slicc_items"] == ["I4 antiphospholipid"]
    syphilis = observation("24110-9", "2025-01-15", string="Reactive")
    assert evaluate("I2", record(sle(), rpr, syphilis)).details["acr_items"] == []


def test_ana_abnormal_for_classification_is_lower_than_i3(evaluate):
    res = evaluate("I2", record(sle(), observation("5048-4", "2020-01-01", string="1:80")))
    assert res.details["acr_items"] == ["11 antinuclear antibody"]
    below = evaluate("I2", record(sle(), observation("5048-4", "2020-01-01", string="1:40")))
    assert below.details["acr_items"] == []


@pytest.mark.parametrize(
    "ana",
    [
        {"string": "1:80", "interpretation": "N"},  # the lab's cut-off is above 1:80: within its range
        {"string": "Negative at 1:80", "interpretation": "NEG"},  # the dilution screened, not a titer
        {"string": "Not detected at 1:160"},
    ],
    ids=["flagged-normal", "negative-at-dilution", "not-detected-at-dilution"],
)
def test_an_ana_the_laboratory_calls_normal_or_negative_is_not_a_classification_item(evaluate, ana):
    """SLICC I1 is "ANA above the laboratory's reference range": with the other three items, one short."""
    res = evaluate("I2", record(sle(), observation("5048-4", "2025-05-01", **ana), dsdna_pos(), low_c3(),
                                arthritis()))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert res.details["slicc_items"] == ["C5 synovitis", "I2 anti-dsDNA", "I5 low complement"]


def test_an_immunoassay_ana_above_its_range_is_a_classification_item(evaluate):
    index = observation("47383-5", "2025-05-01", value=4.2, high=1.0, interpretation="H")
    res = evaluate("I2", record(sle(), index, dsdna_pos(), low_c3(), arthritis()))
    assert "I1 ANA" in res.details["slicc_items"]


def test_lupus_nephritis_code_on_the_diagnosis_counts_as_renal_item(evaluate):
    both = {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"},
                       {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M32.14",
                        "display": "Glomerular disease in SLE"}]}
    dx = condition("snomed", "55464009")
    dx["code"] = both
    rec = record(dx)
    res = evaluate("I2", rec)
    assert res.details["acr_items"] == ["7 renal disorder"]
    assert "Glomerular disease in SLE" in res.reason


def test_standalone_nephritis_rule_is_reported_not_counted(evaluate):
    ln = condition("snomed", "36402006", "2022-01-01", display="SLE glomerulonephritis, WHO class IV")
    res = evaluate("I2", record(ln, ana_pos()))
    assert res.outcome is Outcome.UNKNOWN
    assert "not counted alone" in res.reason


def test_i2_evidence_does_not_depend_on_the_resource_order(evaluate):
    # Bundles deliver resources by date, Bulk NDJSON by id: same patient, same evidence list.
    resources = [sle(), ana_pos(), dsdna_pos(), low_c3(),
                 observation("777-3", "2025-05-01", id="plt1", value=80, unit="10*3/uL"),
                 observation("777-3", "2025-06-01", id="plt0", value=85, unit="10*3/uL")]
    first, second = evaluate("I2", record(*resources)), evaluate("I2", record(*reversed(resources)))
    assert first.evidence == second.evidence
    assert first.evidence[0] == "Condition/sle"


def _acl(**value: Any) -> dict[str, Any]:
    return observation("3181-5", "2025-05-01", id="acl", **value)


@pytest.mark.parametrize(
    ("acl", "slicc"),
    [
        ({"value": 22, "unit": "[GPL'U]/mL", "high": 15, "interpretation": "H"}, False),  # low positive
        ({"value": 45, "unit": "[GPL'U]/mL", "high": 15, "interpretation": "H"}, True),
        ({"string": "Moderate positive"}, True),
        ({"string": "Positive"}, False),  # the titer is not shown
    ],
    ids=["low-positive", "medium", "moderate-words", "bare-positive"],
)
def test_slicc_counts_anticardiolipin_at_medium_or_high_titer_acr_any_abnormal_level(evaluate, acl, slicc):
    res = evaluate("I2", record(sle(), ana_pos(), _acl(**acl), arthritis()))
    assert ("I4 antiphospholipid" in res.details["slicc_items"]) is slicc
    assert res.details["acr_items"] == ["5 arthritis", "10 immunologic disorder", "11 antinuclear antibody"]


def test_slicc_counts_an_elisa_anti_dsdna_only_above_twice_the_range(evaluate):
    elisa = {"coding": [{"system": "http://snomed.info/sct", "code": "76978006", "display": "ELISA"}]}
    def dsdna(value: float) -> dict[str, Any]:
        return observation("5130-0", "2025-05-01", value=value, unit="IU/mL", high=30, interpretation="H",
                           method=elisa)

    res = evaluate("I2", record(sle(), ana_pos(), dsdna(35), arthritis()))
    assert "I2 anti-dsDNA" not in res.details["slicc_items"]
    assert "10 immunologic disorder" in res.details["acr_items"]  # ACR: "abnormal titer"
    above = evaluate("I2", record(sle(), ana_pos(), dsdna(75), arthritis()))
    assert "I2 anti-dsDNA" in above.details["slicc_items"]
