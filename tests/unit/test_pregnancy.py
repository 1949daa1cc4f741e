from __future__ import annotations

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import concept, condition, observation, patient, procedure, record

INTENTION = "intention to become pregnant or breast-feed must be confirmed by the investigator"
PREGNANT = concept("snomed", "77386006", "Pregnant")
NOT_PREGNANT = concept("snomed", "60001007", "Not pregnant")
POSITIVE = concept("snomed", "10828004", "Positive")
NEGATIVE = concept("snomed", "260385009", "Negative")


def test_male_is_not_applicable(evaluate):
    rec = record(patient(gender="male"), condition("snomed", "72892002", "2026-05-01"))
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.PASS
    assert "Not applicable" in res.reason and "male" in res.reason


def test_woman_without_records_passes_and_leaves_intention_to_the_investigator(evaluate):
    res = evaluate("E13", record())
    assert res.outcome is Outcome.PASS
    assert INTENTION in res.reason


@pytest.mark.parametrize("gender", ["unknown", "other"])
def test_sex_other_than_male_is_evaluated(evaluate, gender):
    rec = record(patient(gender=gender), condition("snomed", "72892002", "2026-05-01"))
    assert evaluate("E13", rec).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("snomed", "72892002"),  # Synthea normal pregnancy
        ("snomed", "77386006"),
        ("snomed", "47200007"),
        ("icd10cm", "Z33.1"),
        ("icd10cm", "z331"),  # lower case, no dot
        ("icd10cm", "Z34.00"),
        ("icd10cm", "Z3A.20"),
        ("icd10cm", "O09.523"),
        ("icd10cm", "O24.410"),  # gestational diabetes in pregnancy
        ("icd10cm", "O60.03"),  # preterm labour without delivery
    ],
)
def test_active_recent_pregnancy_condition_excludes(evaluate, system, code):
    res = evaluate("E13", record(condition(system, code, "2026-02-01", id="preg")))
    assert res.outcome is Outcome.FAIL
    assert "pregnant" in res.reason
    assert res.evidence == ("Condition/preg",)


@pytest.mark.parametrize(
    ("onset", "expected"), [("2025-08-05", Outcome.FAIL), ("2025-08-04", Outcome.UNKNOWN)]
)
def test_pregnancy_entry_open_longer_than_300_days_is_questioned(evaluate, onset, expected):
    # 2025-08-05 is 300 days before 2026-06-01.
    res = evaluate("E13", record(condition("snomed", "72892002", onset)))
    assert res.outcome is expected
    if expected is Outcome.UNKNOWN:
        assert res.next_step


@pytest.mark.parametrize(
    ("abatement", "expected"),
    [("2026-05-31", Outcome.PASS), ("2026-06-01", Outcome.PASS), ("2026-06-02", Outcome.FAIL)],
)
def test_pregnancy_abated_on_or_before_the_screening_date_has_ended(evaluate, abatement, expected):
    rec = record(condition("snomed", "72892002", "2025-09-01", abatement=abatement))
    assert evaluate("E13", rec).outcome is expected


@pytest.mark.parametrize("code", ["O80", "Z37.0", "O03.9", "O10.03", "O99.03", "O70.0"])
def test_delivery_abortion_or_puerperium_code_ends_an_open_pregnancy(evaluate, code):
    rec = record(
        condition("icd10cm", "Z34.90", "2025-10-01"),  # never closed
        condition("icd10cm", code, "2026-05-15", id="end"),
    )
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.PASS
    assert "Condition/end" in res.evidence


@pytest.mark.parametrize(
    ("system", "code", "display"),
    [
        ("snomed", "11466000", "Cesarean section"),
        ("snomed", "714812005", "Induced termination of pregnancy"),
        ("snomed", "177157003", "Spontaneous breech delivery"),
        ("icd10pcs", "10E0XZZ", "Delivery of Products of Conception, External Approach"),
        ("icd10pcs", "10D00Z1", "Extraction of Products of Conception, Low, Open Approach"),
        ("icd10pcs", "10A07ZZ", "Abortion of Products of Conception, Via Natural or Artificial Opening"),
        ("cpt", "59514", ""),
        ("cpt", "59840", ""),
        ("snomed", "999999", "Emergency lower segment caesarean section"),  # unlisted code, clear name
    ],
)
def test_delivery_or_abortion_procedure_ends_an_open_pregnancy(evaluate, system, code, display):
    rec = record(
        condition("snomed", "72892002", "2025-09-01"),  # never closed
        procedure(system, code, "2026-05-22", display=display, id="end"),
    )
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.PASS
    assert "Not pregnant" in res.reason and "2026-05-22" in res.reason
    assert res.evidence == ("Procedure/end",)


def test_delivery_procedure_before_the_pregnancy_does_not_end_it(evaluate):
    rec = record(
        procedure("snomed", "11466000", "2024-03-01"),  # an earlier child
        condition("snomed", "72892002", "2026-02-01", id="preg"),
    )
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/preg",)


@pytest.mark.parametrize("status", ["preparation", "on-hold", "in-progress", "stopped"])
def test_delivery_procedure_not_done_does_not_end_a_pregnancy(evaluate, status):
    rec = record(
        condition("snomed", "72892002", "2025-10-01"),
        procedure("snomed", "11466000", "2026-05-22", status=status),
    )
    assert evaluate("E13", rec).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    "display",
    ["Counseling for termination of pregnancy", "Antenatal education", "Planned cesarean section"],
)
def test_procedures_before_the_end_of_a_pregnancy_do_not_end_it(evaluate, display):
    rec = record(
        condition("snomed", "72892002", "2025-10-01"),
        procedure("snomed", "999999", "2026-05-22", display=display),
    )
    assert evaluate("E13", rec).outcome is Outcome.FAIL


def test_delivery_procedure_leaves_breastfeeding_to_its_own_records(evaluate):
    rec = record(
        condition("snomed", "72892002", "2025-09-01"),
        procedure("snomed", "11466000", "2026-04-01"),
        condition("snomed", "169750002", "2026-04-02", id="bf"),
    )
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.FAIL
    assert "Currently breast-feeding" in res.reason
    assert res.evidence == ("Condition/bf",)


def test_synthea_pattern_status_observation_then_abated_pregnancy(evaluate):
    rec = record(
        condition("snomed", "72892002", "2025-08-10", abatement="2026-04-20"),
        observation("82810-3", "2025-08-10", coded=PREGNANT),
    )
    assert evaluate("E13", rec).outcome is Outcome.PASS


@pytest.mark.parametrize(("value", "expected"), [(PREGNANT, Outcome.FAIL), (NOT_PREGNANT, Outcome.PASS)])
def test_pregnancy_status_observation(evaluate, value, expected):
    res = evaluate("E13", record(observation("82810-3", "2026-04-01", coded=value, id="ps")))
    assert res.outcome is expected
    assert "Observation/ps" in res.evidence


def test_pregnancy_status_as_text(evaluate):
    rec = record(observation("82810-3", "2026-04-01", string="Not pregnant"))
    assert evaluate("E13", rec).outcome is Outcome.PASS
    rec = record(observation("82810-3", "2026-04-01", string="Pregnant"))
    assert evaluate("E13", rec).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("when", "expected"),
    [("2026-05-02", Outcome.FAIL), ("2026-05-01", Outcome.UNKNOWN), ("2025-06-01", Outcome.PASS)],
)
def test_positive_hcg_counts_for_30_days_then_raises_a_question(evaluate, when, expected):
    # 2026-05-02 is 30 days before 2026-06-01, 2026-05-01 is 31 days; 2025-06-01 is past 300 days.
    res = evaluate("E13", record(observation("2106-3", when, coded=POSITIVE, id="hcg")))
    assert res.outcome is expected
    if expected is not Outcome.PASS:
        assert res.evidence == ("Observation/hcg",)


def test_negative_hcg_after_a_positive_supersedes_it(evaluate):
    rec = record(
        observation("2106-3", "2026-05-10", coded=POSITIVE),
        observation("2118-8", "2026-05-20", coded=NEGATIVE),
    )
    assert evaluate("E13", rec).outcome is Outcome.PASS


def test_hcg_after_the_screening_date_is_ignored(evaluate):
    assert (
        evaluate("E13", record(observation("2106-3", "2026-06-02", coded=POSITIVE))).outcome is Outcome.PASS
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"value": 1200.0, "unit": "m[IU]/mL"}, Outcome.FAIL),  # above the 25 mIU/mL cut-off
        ({"value": 2.0, "unit": "m[IU]/mL"}, Outcome.PASS),  # below 5
        ({"value": 10.0, "unit": "m[IU]/mL"}, Outcome.UNKNOWN),  # equivocal band, no lab flag
        ({"value": 10.0, "unit": "m[IU]/mL", "high": 5.0}, Outcome.FAIL),  # the lab's range decides
        ({"value": 5.0, "unit": "m[IU]/mL", "comparator": "<"}, Outcome.PASS),
        ({"value": 300.0, "unit": "ng/mL"}, Outcome.PASS),  # unknown unit, no flag: unreadable
        ({"value": 300.0, "unit": "ng/mL", "interpretation": "H"}, Outcome.FAIL),
    ],
)
def test_quantitative_hcg(evaluate, kwargs, expected):
    assert evaluate("E13", record(observation("19080-1", "2026-05-20", **kwargs))).outcome is expected


def test_indeterminate_hcg_is_unknown(evaluate):
    res = evaluate("E13", record(observation("2106-3", "2026-05-20", string="Equivocal")))
    assert res.outcome is Outcome.UNKNOWN
    assert "Repeat" in res.next_step


@pytest.mark.parametrize(
    ("system", "code"),
    [("icd10cm", "Z39.1"), ("snomed", "169750002"), ("snomed", "866041003"), ("icd10cm", "O91.13")],
)
def test_breastfeeding_condition_excludes(evaluate, system, code):
    res = evaluate("E13", record(condition(system, code, "2026-02-01", id="bf")))
    assert res.outcome is Outcome.FAIL
    assert "breast-feeding" in res.reason
    assert res.evidence == ("Condition/bf",)


def test_breastfeeding_ended_passes(evaluate):
    rec = record(condition("snomed", "169750002", "2025-06-01", abatement="2026-01-01"))
    assert evaluate("E13", rec).outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("text", "expected"), [("Breastfeeding", Outcome.FAIL), ("Not breastfeeding", Outcome.PASS)]
)
def test_breastfeeding_status_observation(evaluate, text, expected):
    rec = record(observation("63895-7", "2026-03-01", coded=concept("snomed", "999", text)))
    assert evaluate("E13", rec).outcome is expected


@pytest.mark.parametrize(
    "text",
    [
        "Breastfeeding stopped",
        "Breastfeeding ended",
        "Breastfeeding discontinued",
        "Breast-feeding: ceased",
        "breast feeding has been stopped",
        "Breastfeeding weaned",
        "Lactation suppressed",
        "Discontinued breastfeeding",
    ],
)
def test_breastfeeding_status_saying_it_ended_passes(evaluate, text):
    res = evaluate("E13", record(observation("63895-7", "2026-05-01", string=text, id="bf")))
    assert res.outcome is Outcome.PASS
    assert "Breastfeeding status negative on 2026-05-01" in res.reason


@pytest.mark.parametrize(
    "text",
    [
        "Pregnancy ended (delivered 2026-05-10)",
        "Pregnancy terminated",
        "pregnancy was terminated 2026-04-02",
        "Pregnancy: delivered",
        "Pregnancy - miscarried",
    ],
)
def test_pregnancy_status_saying_it_ended_passes(evaluate, text):
    rec = record(
        condition("snomed", "72892002", "2025-09-01"),  # never closed
        observation("82810-3", "2026-05-20", string=text),
    )
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.PASS
    assert "Pregnancy status negative on 2026-05-20" in res.reason


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("63895-7", "Breastfeeding started 2026-03-01"),
        ("63895-7", "Breastfeeding, delivered 2026-04-01"),  # delivered ends a pregnancy, not nursing
        ("63895-7", "Breastfeeding continued"),
        ("63895-7", "Discontinued methotrexate while breastfeeding"),
        ("82810-3", "Pregnancy test completed: positive"),
        ("82810-3", "Pregnant - previous pregnancy ended in miscarriage"),
        ("82810-3", "Pregnant; prior pregnancy terminated"),
        ("82810-3", "Pregnant, delivery expected 2026-08-01"),
    ],
)
def test_status_naming_an_end_that_is_not_this_one_stays_positive(evaluate, code, text):
    res = evaluate("E13", record(observation(code, "2026-05-20", string=text)))
    assert res.outcome is Outcome.FAIL
    assert res.reason.startswith("Currently ")


@pytest.mark.parametrize("verification", ["entered-in-error", "refuted"])
def test_entered_in_error_and_refuted_pregnancy_is_ignored(evaluate, verification):
    rec = record(condition("snomed", "72892002", "2026-04-01", verification=verification))
    assert evaluate("E13", rec).outcome is Outcome.PASS


def test_cancelled_hcg_is_ignored(evaluate):
    rec = record(observation("2106-3", "2026-05-20", coded=POSITIVE, status="entered-in-error"))
    assert evaluate("E13", rec).outcome is Outcome.PASS


def test_undated_open_pregnancy_entry_is_unknown(evaluate):
    res = evaluate("E13", record(condition("snomed", "77386006", None, id="u")))
    assert res.outcome is Outcome.UNKNOWN
    assert res.evidence == ("Condition/u",)


@pytest.mark.parametrize("abatement", [{"abatementBoolean": True}, {"abatementString": "2026-05-28"}])
def test_e13_pregnancy_with_an_abatement_has_ended(evaluate, abatement):
    cond = condition("snomed", "77386006", "2026-05-01", clinical=None, **abatement)
    res = evaluate("E13", record(cond))
    assert res.outcome is Outcome.PASS
    assert "Pregnancy ended" in res.reason


def test_e13_undated_positive_hcg_is_unknown(evaluate):
    hcg = observation("2106-3", None, coded=concept("snomed", "10828004", "Positive"), id="hcg")
    res = evaluate("E13", record(hcg))
    assert res.outcome is Outcome.UNKNOWN
    assert "positive, result has no date (Observation/hcg)" in res.reason
    assert res.next_step == "Confirm the date of the positive pregnancy test, or repeat it."


def test_e13_undated_positive_hcg_does_not_hide_a_current_pregnancy(evaluate):
    undated = observation("2106-3", None, coded=concept("snomed", "10828004", "Positive"), id="hcg")
    dated = observation("2106-3", "2026-05-30", coded=concept("snomed", "10828004", "Positive"), id="hcg2")
    assert evaluate("E13", record(undated, dated)).outcome is Outcome.FAIL


def test_pregnancy_without_a_clinical_status_says_it_was_taken_as_active(evaluate):
    rec = record(patient(), condition("snomed", "72892002", "2026-05-01", clinical=None))
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.FAIL
    assert "no clinical status (taken as active)" in res.reason


def test_a_preliminary_hcg_is_used_and_said(evaluate):
    positive = concept("snomed", "10828004", "Positive")
    hcg = observation("2106-3", "2026-05-20", coded=positive, status="preliminary")
    res = evaluate("E13", record(patient(), hcg))
    assert res.outcome is Outcome.FAIL
    assert "(preliminary)" in res.reason


def test_suppressed_lactation_is_not_breastfeeding(evaluate):
    # O92.5 "Suppressed lactation" is in VSAC's Breastfeeding list, but says the mother is not
    # breast-feeding: it must not exclude her.
    rec = record(condition("icd10cm", "O92.5", "2026-02-01", id="agalactia"))
    res = evaluate("E13", rec)
    assert res.outcome is Outcome.PASS
    assert "no breastfeeding record" in res.reason


def test_hypogalactia_is_lactation(evaluate):
    # O92.4 "Hypogalactia": low milk supply in a mother who breast-feeds (O92.3 agalactia is not).
    res = evaluate("E13", record(condition("icd10cm", "O92.4", "2026-04-01", id="low-supply")))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "Condition/low-supply" in res.evidence
