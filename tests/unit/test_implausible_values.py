"""Values that cannot be real (an eGFR of -5, an age of 226, a SLEDAI-2K of 140) are entry errors: an
``implausible-value`` finding each, and never the evidence a criterion passes or fails on. Extreme but
real values (an eGFR of 5, a creatinine of 15 mg/dL, a platelet count of 0) are results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from fhirscreen.criteria.base import Context, CriterionResult, Outcome
from fhirscreen.fhir.plausible import Plausible
from fhirscreen.quality import IMPLAUSIBLE, DataQuality, Finding
from fhirscreen.record import PatientRecord
from fhirscreen.trial.loader import Trial
from fhirscreen.trial.model import PlausibleDef
from tests.builders import AS_OF, condition, observation, patient, record

EGFR = "98979-8"
CREAT = "2160-0"
UCUM_EGFR = "mL/min/{1.73_m2}"
LOCAL = "http://example.org/fhir/CodeSystem/local-observation"

Run = Callable[..., tuple[CriterionResult, list[Finding]]]


@pytest.fixture
def run(trial: Trial) -> Run:
    """run("I4", record) -> (result, implausible-value findings), the findings as screening collects them."""

    def go(
        criterion_id: str, rec: PatientRecord, as_of: date = AS_OF
    ) -> tuple[CriterionResult, list[Finding]]:
        criterion = trial.criterion(criterion_id)
        ctx = Context(as_of=as_of, value_sets=trial.value_sets, quality=DataQuality())
        res = criterion.kind.fn(rec, ctx, criterion.params)
        return res, [f for f in ctx.quality.findings if f.problem == IMPLAUSIBLE]

    return go


def egfr(value: float, when: str = "2026-05-20", **kw: Any) -> dict[str, Any]:
    return observation(EGFR, when, value=value, unit=kw.pop("unit", UCUM_EGFR), **kw)


# ---------------------------------------------------------------------------------------- the bounds


@pytest.mark.parametrize(
    ("bounds", "value", "comparator", "breach"),
    [
        (Plausible(0, 250, unit="mL/min/1.73m2"), -5, None, "outside 0-250 mL/min/1.73m2"),
        (Plausible(0, 250, unit="mL/min/1.73m2"), 300, None, "outside 0-250 mL/min/1.73m2"),
        (Plausible(0, 250, unit="mL/min/1.73m2"), 5, None, None),  # kidney failure, not an error
        (Plausible(0, 250, unit="mL/min/1.73m2"), 0, None, None),
        (Plausible(0, 250, unit="mL/min/1.73m2"), 250, None, None),
        (Plausible(0, 250, unit="mL/min/1.73m2"), 250, ">", "outside 0-250 mL/min/1.73m2"),
        (Plausible(0, 250, unit="mL/min/1.73m2"), 250, ">=", None),
        (Plausible(0, 250, unit="mL/min/1.73m2"), 0, "<", "outside 0-250 mL/min/1.73m2"),
        (Plausible(0, 250, unit="mL/min/1.73m2"), 60, ">", None),
        (Plausible(0, 100, low_open=True, unit="mg/dL"), 0, None, "at or below 0 mg/dL"),
        (Plausible(0, 100, low_open=True, unit="mg/dL"), 15, None, None),  # real in kidney failure
        (Plausible(0, 100, low_open=True, unit="mg/dL"), 0.2, "<", None),
        (Plausible(0, 100, low_open=True, unit="mg/dL"), 150, None, "above 100 mg/dL"),
        (Plausible(0), -1, None, "below 0"),
        (Plausible(0), 1e6, None, None),
        (Plausible(0, 105), 106, None, "outside 0-105"),
    ],
)
def test_a_value_is_impossible_only_when_every_value_it_allows_is(bounds, value, comparator, breach):
    assert bounds.breach(value, comparator) == breach


def test_the_trial_file_says_why_each_bound_is_there(trial):
    bounded = {name: vs.plausible for name, vs in trial.value_sets.items() if vs.plausible is not None}
    for name in (
        "egfr",
        "serum_creatinine",
        "platelets",
        "wbc",
        "lymphocytes_absolute",
        "complement",
        "ana",
        "anti_dsdna",
        "sledai_score",
        "urine_protein_24h",
        "urine_protein_creatinine_ratio",
        "body_temperature",
        "egfr_for_rrt",
        "med_body_weight",
        "e10_hbv_dna_tests",
        "e13_hcg_quantitative_tests",
    ):
        assert name in bounded, name
    assert all(len(b.why) > 30 for b in bounded.values())
    # QuantiFERON's "antigen minus Nil" is negative in many negative tests: no bound.
    assert trial.value_sets["e10_igra_tests"].plausible is None


@pytest.mark.parametrize(
    "given", [{"why": "x"}, {"min": 0, "above": 0, "why": "x"}, {"min": 5, "max": 1, "why": "x"}]
)
def test_bounds_that_say_nothing_or_contradict_are_refused(given):
    with pytest.raises(ValueError):
        PlausibleDef.model_validate(given)


# ------------------------------------------------------------------------------------- I4, E2: eGFR


def test_a_negative_egfr_does_not_fail_i4_and_is_a_finding(run):
    """eGFR -5 failed I4: a patient silently lost on an entry error."""
    res, found = run("I4", record(egfr(-5, id="neg")))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "Not used, impossible" in res.reason and "eGFR -5 mL/min/1.73 m2" in res.reason
    assert "Observation/neg" in res.evidence
    assert [(f.where, f.severity) for f in found] == [("Observation/neg", "warning")]
    assert "eGFR -5 mL/min/1.73m2 is impossible (outside 0-250 mL/min/1.73m2): not used" in found[0].message


def test_an_impossible_latest_egfr_leaves_the_decision_to_the_other_results(run):
    rec = record(egfr(45, "2026-04-10", id="real"), egfr(-5, "2026-05-20", id="neg"))
    res, found = run("I4", rec)
    assert res.outcome is Outcome.PASS, res.reason
    assert "eGFR 45" in res.reason and "Not used, impossible" in res.reason
    assert res.evidence == ("Observation/real", "Observation/neg")
    assert [f.where for f in found] == ["Observation/neg"]


def test_an_egfr_above_250_is_not_a_pass(run):
    res, found = run("I4", record(egfr(300, id="big")))
    assert res.outcome is Outcome.UNKNOWN
    assert [f.where for f in found] == ["Observation/big"]


@pytest.mark.parametrize(("value", "expected"), [(5, Outcome.FAIL), (0, Outcome.FAIL), (250, Outcome.PASS)])
def test_extreme_but_real_egfrs_still_decide(run, value, expected):
    res, found = run("I4", record(egfr(value)))
    assert res.outcome is expected
    assert found == []


def test_an_impossible_egfr_in_si_units_is_named_as_reported(run):
    res, found = run("I4", record(egfr(-0.1, unit="mL/s/1.73m2", id="si")))
    assert res.outcome is Outcome.UNKNOWN
    assert "(-0.1 mL/s/1.73m2 as reported)" in res.reason
    assert [f.where for f in found] == ["Observation/si"]


def test_a_creatinine_of_0_is_not_a_computed_egfr_and_15_is(run):
    zero = observation(CREAT, "2026-05-20", id="zero", value=0, unit="mg/dL")
    res, found = run("I4", record(patient(birth="1980-01-01"), zero))
    assert res.outcome is Outcome.UNKNOWN
    assert "creatinine 0 mg/dL" in res.reason and "Observation/zero" in res.evidence
    assert [f.where for f in found] == ["Observation/zero"]

    high = observation(CREAT, "2026-05-20", value=15, unit="mg/dL")
    res, found = run("I4", record(patient(birth="1980-01-01"), high))
    assert res.outcome is Outcome.FAIL  # eGFR about 3: kidney failure, not an error
    assert found == []


def test_a_creatinine_beyond_any_ever_recorded_is_not_used(run):
    """120 mg/dL (a umol/L value sent as mg/dL) computed an eGFR of 0.3 and failed I4."""
    wrong = observation(CREAT, "2026-05-20", id="wrong", value=120, unit="mg/dL")
    res, found = run("I4", record(patient(birth="1980-01-01"), wrong))
    assert res.outcome is Outcome.UNKNOWN
    assert [f.where for f in found] == ["Observation/wrong"]
    assert "above 100 mg/dL" in found[0].message


@pytest.mark.parametrize("birth", ["1800-01-01", "2027-01-01"])
def test_i4_computes_no_egfr_from_an_impossible_birth_date(run, birth):
    creatinine = observation(CREAT, "2026-05-20", value=0.8, unit="mg/dL")
    res, found = run("I4", record(patient(birth=birth), creatinine))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "birth date on record is impossible" in res.reason
    assert [f.where for f in found] == ["Patient/p1"]
    assert birth not in found[0].message and birth not in res.reason  # a birth date identifies


def test_e2_reads_no_impossible_egfr_as_the_latest(run):
    """eGFR -5 made E2 ask the investigator about renal replacement."""
    res, found = run("E2", record(egfr(-5, id="neg")))
    assert res.outcome is Outcome.PASS, res.reason
    assert [f.where for f in found] == ["Observation/neg"]
    res, found = run("E2", record(egfr(10)))
    assert res.outcome is Outcome.UNKNOWN and found == []  # real kidney failure is still a question


# ------------------------------------------------------------------------------------------ I1: age


@pytest.mark.parametrize(
    ("birth", "why"),
    [
        ("1800-01-01", "an age of 226 on 2026-06-01, over 125"),
        ("2026-06-02", "after the screening date 2026-06-01"),
    ],
)
def test_an_impossible_birth_date_is_unknown_not_fail(run, birth, why):
    """Age 226 failed I1 as "outside 18-75"; a birth after the screening date failed as age -1."""
    res, found = run("I1", record(patient(birth=birth)))
    assert res.outcome is Outcome.UNKNOWN
    assert f"birth date on record is impossible ({why})" in res.reason
    assert res.next_step == "Confirm the date of birth."
    assert [(f.where, f.problem) for f in found] == [("Patient/p1", IMPLAUSIBLE)]
    assert birth not in found[0].message


@pytest.mark.parametrize(("birth", "expected"), [("1901-06-01", Outcome.FAIL), ("2026-06-01", Outcome.FAIL)])
def test_the_oldest_possible_age_and_a_newborn_are_ages(run, birth, expected):
    res, found = run("I1", record(patient(birth=birth)))
    assert res.outcome is expected and found == []


# ----------------------------------------------------------------------------------------- I3: ANA


def test_a_negative_ana_index_does_not_fail_i3(run):
    """ANA -3 (ref <= 1) read as negative; with a negative anti-dsDNA, I3 failed on an entry error."""
    ana = observation("47383-5", "2026-05-01", id="ana", value=-3, unit="{index}", high=1.0)
    dsdna = observation("5130-0", "2026-05-01", id="ds", value=4, unit="IU/mL", high=30)
    res, found = run("I3", record(ana, dsdna))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "Not used, impossible" in res.reason and "Observation/ana" in res.evidence
    assert [f.where for f in found] == ["Observation/ana"]
    assert "below 0" in found[0].message


def test_a_negative_anti_dsdna_level_is_not_a_negative_test(run):
    ana = observation("5048-4", "2026-05-01", string="1:80")
    dsdna = observation("5130-0", "2026-05-01", id="ds", value=-12, unit="IU/mL", high=30)
    res, found = run("I3", record(ana, dsdna))
    assert res.outcome is Outcome.UNKNOWN
    assert [f.where for f in found] == ["Observation/ds"]


def test_a_titer_with_a_negative_side_is_impossible(run):
    ratio = {"numerator": {"value": 1}, "denominator": {"value": -320}}
    res, found = run("I3", record(observation("5048-4", "2026-05-01", id="t", valueRatio=ratio)))
    assert res.outcome is Outcome.UNKNOWN
    assert [f.where for f in found] == ["Observation/t"] and "1:-320" in found[0].message


# ---------------------------------------------------------------------------------------- I6: SLEDAI


def score(value: float, when: str = "2026-05-20", **kw: Any) -> dict[str, Any]:
    return observation(
        "SLEDAI-2K", when, system=LOCAL, display="SLEDAI-2K total score", value=value, unit="{score}", **kw
    )


@pytest.mark.parametrize("value", [140, -2])
def test_a_sledai_total_outside_0_105_is_not_a_score(run, value):
    """A total of 140 passed I6 (>= 6)."""
    res, found = run("I6", record(score(value, id="s")))
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "No recorded SLEDAI-2K" in res.reason and "Not used, impossible" in res.reason
    assert "Observation/s" in res.evidence
    assert [f.where for f in found] == ["Observation/s"]


def test_the_highest_possible_sledai_total_is_a_score(run):
    res, found = run("I6", record(score(105)))
    assert res.outcome is Outcome.PASS and found == []


def test_an_older_real_total_decides_and_the_impossible_one_is_named(run):
    res, found = run("I6", record(score(4, "2026-05-10", id="old"), score(140, "2026-05-20", id="bad")))
    assert res.outcome is Outcome.FAIL
    assert "Recorded SLEDAI-2K total score 4" in res.reason and "140" in res.reason
    assert [f.where for f in found] == ["Observation/bad"]
    assert res.evidence == ("Observation/old", "Observation/bad")


@pytest.mark.parametrize(
    ("obs", "item"),
    [
        (
            observation("4485-9", "2026-05-20", id="x", value=-45, unit="mg/dL", low=90, high=180),
            "low_complement",
        ),
        (observation("777-3", "2026-05-20", id="x", value=-20, unit="10*3/uL"), "thrombocytopenia"),
        (observation("6690-2", "2026-05-20", id="x", value=-1, unit="10*9/L"), "leukopenia"),
        (observation("2889-4", "2026-05-20", id="x", value=800, unit="g/(24.h)"), "proteinuria"),
        (observation("2890-2", "2026-05-20", id="x", value=-1, unit="g/g"), "proteinuria"),
        (observation("13945-1", "2026-05-20", id="x", value=-8, unit="/[HPF]"), "hematuria"),
        (observation("8310-5", "2026-05-20", id="x", value=98.6, unit="Cel"), "fever"),
        (observation("8310-5", "2026-05-20", id="x", value=38.5, unit="[degF]"), "fever"),
    ],
    ids=["complement", "platelets", "wbc", "24h-protein-mg-as-g", "upcr", "rbc-hpf", "98.6-Cel", "38.5-degF"],
)
def test_impossible_lab_values_score_no_sledai_item(run, obs, item):
    res, found = run("I6", record(obs))
    assert item not in res.details["sledai_items"], res.reason
    assert [f.where for f in found] == ["Observation/x"]


def test_a_fahrenheit_temperature_sent_as_celsius_is_said_as_reported(run):
    _res, found = run("I6", record(observation("8310-5", "2026-05-20", id="x", value=37, unit="[degF]")))
    assert "body temperature 37 [degF] (2.8 Cel) is impossible (outside 10-50 Cel)" in found[0].message


@pytest.mark.parametrize(
    ("code", "value", "unit"),
    [("777-3", 0, "10*3/uL"), ("6690-2", 0.0, "10*9/L"), ("2889-4", 20, "g/(24.h)"), ("8310-5", 41.5, "Cel")],
)
def test_extreme_but_real_lab_values_are_results(run, code, value, unit):
    _res, found = run("I6", record(observation(code, "2026-05-20", value=value, unit=unit)))
    assert found == []


# ------------------------------------------------------------------------------------------ I2: items


def test_impossible_counts_are_no_classification_item(run):
    counts = [observation("6690-2", day, value=-2, unit="10*9/L") for day in ("2025-01-01", "2025-02-01")]
    sle = condition("snomed", "55464009", display="Systemic lupus erythematosus")
    res, found = run("I2", record(sle, *counts))
    assert "9 hematologic disorder" not in res.details["acr_items"]
    assert "C10 leukopenia or lymphopenia" not in res.details["slicc_items"]
    assert len(found) == 2


# --------------------------------------------------------------------------------- E10, E13: signs


def test_a_negative_hcv_viral_load_is_not_undetected(run):
    """HCV RNA -50 IU/mL read as "not detected" after a detected one: E10 passed on an entry error."""
    detected = observation("11011-4", "2026-01-10", id="det", value=250000, unit="[IU]/mL")
    negative = observation("11011-4", "2026-05-10", id="neg", value=-50, unit="[IU]/mL")
    res, found = run("E10", record(detected, negative))
    assert res.outcome is Outcome.FAIL, res.reason
    assert "Observation/det" in res.evidence
    assert [f.where for f in found] == ["Observation/neg"]


def test_a_negative_hcg_is_not_a_negative_test(run):
    positive = observation("2106-3", "2026-05-20", id="pos", coded={"text": "Positive"})
    negative = observation("34670-0", "2026-05-25", id="neg", value=-3, unit="m[IU]/mL")
    res, found = run("E13", record(patient(gender="female"), positive, negative))
    assert res.outcome is Outcome.FAIL, res.reason
    assert [f.where for f in found] == ["Observation/neg"]


# ------------------------------------------------------------------------------------ E3: body weight


def test_the_body_weight_bounds_come_from_the_trial_file(trial):
    bounds = trial.value_sets["med_body_weight"].plausible
    assert bounds is not None and (bounds.low, bounds.high, bounds.unit) == (20, 400, "kg")
