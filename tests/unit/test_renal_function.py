"""I4: eGFR >= 30 in the screening period, with the CKD-EPI 2021 fallback from creatinine."""

from __future__ import annotations

from datetime import date

import pytest

from fhirscreen.criteria.base import Context, Outcome
from fhirscreen.criteria.renal_function import ckd_epi_2021
from fhirscreen.quality import DataQuality
from tests.builders import AS_OF, observation, patient, record

EGFR_2021 = "98979-8"
EGFR_SYNTHEA = "33914-3"
CREAT = "2160-0"
CREAT_UMOL = "14682-9"
UCUM_EGFR = "mL/min/{1.73_m2}"


@pytest.mark.parametrize(
    ("creatinine", "age", "female", "expected"),
    [
        # Test vectors of criteria-codes.md I4 (NKF worked example: F 55 y, 0.9 mg/dL -> ~76).
        (0.9, 55, True, 75.5), (0.7, 30, True, 119.2), (1.0, 40, False, 97.6), (2.0, 60, False, 37.5),
        (1.5, 45, True, 43.5), (2.6, 35, True, 23.9), (3.2, 50, True, 17.0), (110 / 88.4, 50, False, 70.5),
    ],
)
def test_ckd_epi_2021_matches_published_vectors(creatinine, age, female, expected):
    assert ckd_epi_2021(creatinine, age, female) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize(
    ("value", "comparator", "unit", "expected"),
    [
        (30, None, UCUM_EGFR, Outcome.PASS),  # exactly 30 is enough
        (29.9, None, UCUM_EGFR, Outcome.FAIL),
        (60, ">", UCUM_EGFR, Outcome.PASS),
        (15, "<", UCUM_EGFR, Outcome.FAIL),
        (45, None, "mL/min/1.73m2", Outcome.PASS),
        (45, None, "mL/min", Outcome.PASS),  # Synthea's dialysis module writes plain mL/min
    ],
)
def test_latest_egfr_decides(evaluate, value, comparator, unit, expected):
    obs = observation(EGFR_SYNTHEA, "2026-05-01", id="g", value=value, comparator=comparator, unit=unit)
    res = evaluate("I4", record(obs))
    assert res.outcome is expected
    assert res.evidence == ("Observation/g",)
    assert res.details["computed_from_creatinine"] is False


def test_egfr_as_a_string_with_comparator(evaluate):
    res = evaluate("I4", record(observation(EGFR_2021, "2026-05-01", string=">60")))
    assert res.outcome is Outcome.PASS
    assert ">60" in res.reason


def test_preliminary_egfr_is_used_and_said(evaluate):
    obs = observation(EGFR_2021, "2026-05-01", value=45, unit="mL/min/{1.73_m2}", status="preliminary")
    res = evaluate("I4", record(obs))
    assert res.outcome is Outcome.PASS
    assert "eGFR 45 mL/min/1.73 m2 (preliminary) on 2026-05-01" in res.reason


@pytest.mark.parametrize(
    ("egfr", "expected"),
    [
        ({"value": 0.9, "unit": "mL/s/{1.73_m2}"}, Outcome.PASS),  # SI: 0.9 mL/s = 54 mL/min
        ({"value": 0.4, "unit": "mL/s/1.73m2"}, Outcome.FAIL),  # 24 mL/min
        ({"string": ">60 mL/min/1.73m²"}, Outcome.PASS),  # the superscript as printed on reports
        ({"value": 60, "unit": "mL/(min.1.73.m2)"}, Outcome.PASS),  # UCUM's own spelling
        ({"value": 0.9, "unit": "mL/(s.1.73.m2)"}, Outcome.PASS),
    ],
    ids=["si-above", "si-below", "superscript", "ucum", "ucum-si"],
)
def test_egfr_in_si_units_and_as_printed(evaluate, egfr, expected):
    res = evaluate("I4", record(observation(EGFR_2021, "2026-05-01", id="g", **egfr)))
    assert res.outcome is expected, res.reason
    assert "no readable value or unit" not in res.reason
    if str(egfr.get("unit", "")).lower().startswith(("ml/s", "ml/(s")):  # converted: the chart's figure shown
        assert f"({egfr['value']:g} {egfr['unit']} as reported)" in res.reason


def test_upper_bound_that_cannot_decide_is_unknown(evaluate):
    res = evaluate("I4", record(observation(EGFR_2021, "2026-05-01", id="g", value=60, comparator="<",
                                            unit=UCUM_EGFR)))
    assert res.outcome is Outcome.UNKNOWN
    assert "cannot tell" in res.reason
    assert res.next_step and "creatinine" in res.next_step


def test_undecided_bound_is_settled_by_a_creatinine_of_the_same_draw(evaluate):
    rec = record(
        patient(birth="1971-01-01", gender="female"),
        observation(EGFR_2021, "2026-05-01", value=60, comparator="<", unit=UCUM_EGFR),
        observation(CREAT, "2026-05-01", id="cr", value=0.9, unit="mg/dL"),
    )
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.PASS
    assert "does not decide" in res.reason and "computed" in res.reason


def test_latest_result_decides_over_older_ones(evaluate):
    rec = record(
        observation(EGFR_2021, "2026-03-01", value=80, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20", id="latest", value=25, unit=UCUM_EGFR),
    )
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Observation/latest",)


def test_ckd_epi_2021_preferred_on_the_same_day(evaluate):
    rec = record(
        observation(EGFR_SYNTHEA, "2026-05-20", value=35, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20", id="pref", value=28, unit=UCUM_EGFR),
    )
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Observation/pref",)


@pytest.mark.parametrize(
    ("egfr_day", "computed"),
    [("2026-03-03", False), ("2026-03-02", True)],  # 90 days before 2026-06-01 is inside; 91 is not
)
def test_window_edge_and_creatinine_fallback(evaluate, egfr_day, computed):
    # The creatinine is on the window's first day: an eGFR the same day wins over it (the lab's own
    # calculation on that sample); an eGFR outside the window does not count.
    rec = record(
        patient(birth="1971-01-01", gender="female"),
        observation(EGFR_2021, egfr_day, value=20, unit=UCUM_EGFR),
        observation(CREAT, "2026-03-03", id="cr", value=0.9, unit="mg/dL"),
    )
    res = evaluate("I4", rec, as_of=date(2026, 6, 1))
    assert res.details["computed_from_creatinine"] is computed
    if computed:
        assert res.outcome is Outcome.PASS
        assert "No eGFR in the last 90 days" in res.reason and "CKD-EPI 2021" in res.reason
        assert res.details["egfr"] == pytest.approx(75.5, abs=0.1)  # 55-year-old woman, 0.9 mg/dL
        assert res.evidence == ("Observation/cr",)
    else:
        assert res.outcome is Outcome.FAIL


def test_creatinine_in_umol_per_litre(evaluate):
    rec = record(
        patient(birth="1976-01-01", gender="male"),
        observation(CREAT_UMOL, "2026-05-01", value=110, unit="umol/L"),
    )
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.PASS
    assert res.details["egfr"] == pytest.approx(70.5, abs=0.1)


def test_high_creatinine_fails_by_computation(evaluate):
    rec = record(patient(birth="1991-01-01", gender="female"), observation(CREAT, "2026-05-01", value=2.6,
                                                                          unit="mg/dL"))
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.FAIL
    assert "23.9" in res.reason


def test_missing_sex_near_the_threshold_is_unknown(evaluate):
    # 60 years old, creatinine 1.9: a woman is below 30, a man above.
    rec = record(patient(birth="1966-01-01", gender="unknown"), observation(CREAT, "2026-05-01", value=1.9,
                                                                           unit="mg/dL"))
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "sex is not recorded" in res.reason


def test_missing_sex_far_from_the_threshold_still_decides(evaluate):
    rec = record(patient(birth="1966-01-01", gender="unknown"), observation(CREAT, "2026-05-01", value=0.8,
                                                                           unit="mg/dL"))
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.PASS
    assert "either sex" in res.reason


def test_nothing_in_the_window_is_unknown_and_names_the_older_result(evaluate):
    res = evaluate("I4", record(observation(EGFR_2021, "2025-12-01", id="old", value=75, unit=UCUM_EGFR)))
    assert res.outcome is Outcome.UNKNOWN
    assert "2025-12-01" in res.reason
    assert res.evidence == ("Observation/old",)
    assert res.next_step and "creatinine" in res.next_step


def test_results_after_the_screening_date_are_ignored(evaluate):
    res = evaluate("I4", record(observation(EGFR_2021, "2026-06-02", value=75, unit=UCUM_EGFR)))
    assert res.outcome is Outcome.UNKNOWN


def test_unknown_unit_is_reported_to_data_quality_without_crashing(trial):
    criterion = trial.criterion("I4")
    ctx = Context(as_of=AS_OF, value_sets=trial.value_sets, quality=DataQuality())
    rec = record(observation(EGFR_2021, "2026-05-01", id="odd", value=45, unit="mg/dL"))
    res = criterion.kind.fn(rec, ctx, criterion.params)
    assert res.outcome is Outcome.UNKNOWN
    finding = ctx.quality.findings[0]
    assert (finding.where, finding.problem) == ("Observation/odd", "unknown-unit")
    assert "Observation/odd" in finding.message


def test_creatinine_after_an_older_egfr_wins(evaluate):
    """An eGFR of 22 during an AKI 70 days ago, a normal creatinine 5 days ago: today's kidney function."""
    rec = record(
        patient(birth="1980-01-01", gender="female"),
        observation(EGFR_2021, "2026-03-23", id="aki", value=22, unit=UCUM_EGFR),
        observation(CREAT, "2026-05-27", id="cr", value=0.8, unit="mg/dL"),
    )
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.PASS
    assert res.evidence == ("Observation/cr",)
    assert res.details["computed_from_creatinine"] is True
    assert "is older" in res.reason and "2026-05-27" in res.reason


def test_newer_creatinine_that_cannot_decide_is_unknown_not_the_older_egfr(evaluate):
    rec = record(
        patient(birth="1980-01-01", gender="unknown"),
        observation(EGFR_2021, "2026-03-23", value=80, unit=UCUM_EGFR),
        observation(CREAT, "2026-05-27", id="cr", value=2.1, unit="mg/dL"),  # eGFR 29-31 by sex
    )
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.UNKNOWN
    assert "is older" in res.reason and "sex is not recorded" in res.reason


def test_egfr_held_in_a_component_counts(evaluate):
    panel = observation("24323-8", "2026-05-20", id="cmp", display="Comprehensive metabolic panel")
    panel["component"] = [{
        "code": {"coding": [{"system": "http://loinc.org", "code": EGFR_2021}]},
        "valueQuantity": {"value": 25, "unit": "mL/min/1.73m2"},
    }]
    res = evaluate("I4", record(panel))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Observation/cmp",)


def test_two_egfrs_on_one_day_the_preferred_equation_then_the_later_draw_wins(evaluate):
    rec = record(
        observation("62238-1", "2026-05-20T08:00:00Z", id="early", value=25, unit=UCUM_EGFR),
        observation("62238-1", "2026-05-20T14:00:00Z", id="late", value=34, unit=UCUM_EGFR),
    )
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.PASS
    assert res.evidence == ("Observation/late",)
    rec = record(
        observation("62238-1", "2026-05-20T14:00:00Z", id="late", value=34, unit=UCUM_EGFR),
        observation(EGFR_2021, "2026-05-20T08:00:00Z", id="ckdepi", value=28, unit=UCUM_EGFR),
    )
    assert evaluate("I4", rec).evidence == ("Observation/ckdepi",)


def test_result_stamped_just_after_midnight_utc_on_the_screening_day_counts_on_that_day(evaluate):
    rec = record(observation(EGFR_2021, "2026-06-01T00:05:00Z", id="e", value=70, unit=UCUM_EGFR))
    res = evaluate("I4", rec)
    assert res.outcome is Outcome.PASS and res.details["egfr_date"] == "2026-06-01"
