"""I6: SLEDAI-2K >= 6 from a recorded score, else a lower bound from structured data."""

from __future__ import annotations

from typing import Any

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import condition, observation, record

LOCAL = "http://example.org/fhir/CodeSystem/local-observation"


def score(value: float, when: str = "2026-05-20", **kw: Any) -> dict[str, Any]:
    """A recorded score under a site's local code (no standard code exists)."""
    return observation("SLEDAI-2K", when, system=LOCAL, display="SLEDAI-2K total score", value=value,
                       unit="{score}", **kw)


def low_c3(when: str = "2026-05-20") -> dict[str, Any]:
    return observation("4485-9", when, id="c3", value=62, unit="mg/dL", low=90, high=180)


def dsdna_pos(when: str = "2026-05-20") -> dict[str, Any]:
    return observation("5130-0", when, id="dsdna", value=85, unit="IU/mL", high=30)


def upcr(value: float, when: str = "2026-05-20") -> dict[str, Any]:
    return observation("2890-2", when, id="upcr", value=value, unit="g/g")


@pytest.mark.parametrize(("value", "expected"), [(8, Outcome.PASS), (6, Outcome.PASS), (5, Outcome.FAIL)])
def test_recorded_score_decides(evaluate, value, expected):
    res = evaluate("I6", record(score(value, id="s")))
    assert res.outcome is expected
    assert res.details["sledai_2k"] == value and res.details["strength"] == value
    assert res.details["sledai_source"] == "recorded"
    assert res.evidence == ("Observation/s",)


def test_preliminary_score_is_used_and_said(evaluate):
    res = evaluate("I6", record(score(8, status="preliminary")))
    assert res.outcome is Outcome.PASS
    assert "SLEDAI-2K total score 8 (preliminary) on 2026-05-20" in res.reason


def test_score_recognised_by_text_alone(evaluate):
    obs = observation("x1", "2026-05-20", system="http://example.org/local", value=10)
    obs["code"] = {"text": "SELENA-SLEDAI score"}
    res = evaluate("I6", record(obs))
    assert res.outcome is Outcome.PASS
    assert res.details["sledai_instrument"] == "SELENA-SLEDAI score"


def test_unrelated_local_code_is_not_a_score(evaluate):
    bilag = observation("x1", "2026-05-20", system=LOCAL, display="BILAG total", value=12)
    res = evaluate("I6", record(bilag))
    assert res.outcome is Outcome.UNKNOWN


def test_latest_recorded_score_wins(evaluate):
    res = evaluate("I6", record(score(10, "2026-05-05"), score(4, "2026-05-25", id="latest")))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Observation/latest",)


def test_recorded_score_below_6_fails_even_when_structured_data_suggest_more(evaluate):
    res = evaluate("I6", record(score(4), low_c3(), dsdna_pos(), upcr(0.8)))
    assert res.outcome is Outcome.FAIL


def test_score_older_than_30_days_is_not_used(evaluate):
    res = evaluate("I6", record(score(10, "2026-04-30", id="old")))  # 32 days before 2026-06-01
    assert res.outcome is Outcome.UNKNOWN
    assert "older" in res.reason
    assert "Observation/old" in res.evidence


def test_lower_bound_from_labs_passes_and_lists_weights(evaluate):
    res = evaluate("I6", record(low_c3(), dsdna_pos(), upcr(0.8)))
    assert res.outcome is Outcome.PASS
    assert res.details["sledai_2k"] == 8 and res.details["strength"] == 8
    assert res.details["sledai_items"] == {"low_complement": 2, "increased_dna_binding": 2, "proteinuria": 4}
    assert "low complement (2)" in res.reason and "proteinuria (4)" in res.reason
    assert "24-h proxy" in res.reason
    assert set(res.evidence) == {"Observation/c3", "Observation/dsdna", "Observation/upcr"}


def test_lower_bound_below_6_is_unknown_not_fail(evaluate):
    platelets = observation("777-3", "2026-05-20", value=90, unit="10*3/uL")
    res = evaluate("I6", record(low_c3(), dsdna_pos(), platelets))
    assert res.outcome is Outcome.UNKNOWN
    assert res.details["sledai_2k"] == 5
    assert "lower bound of 5" in res.reason
    assert res.next_step and "SLEDAI-2K" in res.next_step


def test_bound_reaching_exactly_6_passes(evaluate):
    platelets = observation("777-3", "2026-05-20", value=90_000, unit="/uL")
    leukocytes = observation("6690-2", "2026-05-20", value=2.9, unit="10*9/L")
    res = evaluate("I6", record(low_c3(), dsdna_pos(), platelets, leukocytes))
    assert res.outcome is Outcome.PASS
    assert res.details["sledai_items"]["thrombocytopenia"] == 1
    assert res.details["sledai_items"]["leukopenia"] == 1


@pytest.mark.parametrize(
    ("code", "value", "unit", "item"),
    [
        ("6690-2", 3.0, "10*3/uL", "leukopenia"),  # < 3.0 required
        ("777-3", 100, "10*3/uL", "thrombocytopenia"),  # < 100 required
        ("2889-4", 0.5, "g/(24.h)", "proteinuria"),  # > 0.5 g/24 h required
        ("13945-1", 5, "/[HPF]", "hematuria"),  # > 5/hpf required
        ("8310-5", 38.0, "Cel", "fever"),  # > 38 C required
    ],
)
def test_values_at_the_threshold_do_not_count(evaluate, code, value, unit, item):
    res = evaluate("I6", record(observation(code, "2026-05-20", value=value, unit=unit)))
    assert item not in res.details["sledai_items"]


def test_urine_sediment_and_fever_items(evaluate):
    rbc = observation("13945-1", "2026-05-20", value=12, unit="/[HPF]")
    wbc = observation("5821-4", "2026-05-20", value=8, unit="/[HPF]")
    casts = observation("33804-6", "2026-05-20", string="Present")
    fever = observation("8310-5", "2026-05-20", value=101.5, unit="[degF]")
    res = evaluate("I6", record(rbc, wbc, casts, fever))
    assert res.details["sledai_items"] == {"urinary_casts": 4, "hematuria": 4, "pyuria": 4, "fever": 1}
    assert res.outcome is Outcome.PASS


def test_urinary_infection_stops_hematuria_and_pyuria_from_counting(evaluate):
    rbc = observation("13945-1", "2026-05-20", value=12, unit="/[HPF]")
    uti = condition("icd10cm", "N39.0", "2026-05-18")
    res = evaluate("I6", record(rbc, uti))
    assert "hematuria" not in res.details["sledai_items"]


def test_active_infection_stops_fever_from_counting(evaluate):
    fever = observation("8310-5", "2026-05-20", value=39.0, unit="Cel")
    flu = condition("icd10cm", "J11.1", "2026-05-19")
    assert "fever" not in evaluate("I6", record(fever, flu)).details["sledai_items"]


def test_coded_manifestation_documented_in_window_counts(evaluate):
    arthritis = condition("icd10cm", "M13.0", "2026-05-10", id="arth")
    pleurisy = condition("icd10cm", "R09.1", "2026-05-12", id="pleur")
    res = evaluate("I6", record(arthritis, pleurisy))
    assert res.outcome is Outcome.PASS
    assert res.details["sledai_items"] == {"arthritis": 4, "pleurisy": 2}
    assert "coded manifestation" in res.reason
    assert {"Condition/arth", "Condition/pleur"} <= set(res.evidence)


def test_old_active_condition_without_recent_documentation_does_not_count(evaluate):
    stale = condition("icd10cm", "M13.0", "2015-01-01")
    assert evaluate("I6", record(stale)).details["sledai_items"] == {}
    recorded = condition("icd10cm", "M13.0", "2015-01-01", recordedDate="2026-05-25")
    assert evaluate("I6", record(recorded)).details["sledai_items"] == {"arthritis": 4}


def test_resolved_before_the_window_does_not_count(evaluate):
    resolved = condition("icd10cm", "G40.909", "2026-04-01", clinical="resolved", abatement="2026-04-15")
    assert evaluate("I6", record(resolved)).details["sledai_items"] == {}


@pytest.mark.parametrize(("when", "counted"), [("2026-05-02", True), ("2026-05-01", False)])
def test_thirty_day_window_edge(evaluate, when, counted):
    # 2026-05-02 is 30 days before 2026-06-01; 2026-05-01 is 31.
    res = evaluate("I6", record(upcr(0.9, when)))
    assert ("proteinuria" in res.details["sledai_items"]) is counted


def partial_score(value: float, label: str, when: str = "2026-05-20") -> dict[str, Any]:
    return observation("C-SLEDAI", when, system=LOCAL, id="cs", display=label, value=value, unit="{score}")


@pytest.mark.parametrize(
    "label",
    [
        "Clinical SLEDAI-2K (excluding serology)",
        "cSLEDAI",
        "SLEDAI-2K without serologic items",
        "Modified SLEDAI-2K (without anti-dsDNA and complement)",
    ],
)
def test_a_score_without_the_serologic_items_is_a_lower_bound(evaluate, label):
    """Clinical SLEDAI 4 + low C3 (2) + anti-dsDNA (2): the SLEDAI-2K is at least 8, not 4."""
    res = evaluate("I6", record(partial_score(4, label), low_c3(), dsdna_pos()))
    assert res.outcome is Outcome.PASS, res.reason
    assert "leaves the serologic items out" in res.reason and "at least 8" in res.reason
    assert set(res.evidence) == {"Observation/cs", "Observation/c3", "Observation/dsdna"}
    assert res.details["sledai_source"] == "recorded without serology"


def test_a_score_without_serology_decides_what_the_serologic_items_cannot_change(evaluate):
    assert evaluate("I6", record(partial_score(6, "Clinical SLEDAI"))).outcome is Outcome.PASS
    low = evaluate("I6", record(partial_score(1, "Clinical SLEDAI")))
    assert low.outcome is Outcome.FAIL  # 1 + 4 at most
    assert "at most 5" in low.reason


def test_a_score_without_serology_and_no_labs_is_unknown(evaluate):
    res = evaluate("I6", record(partial_score(4, "Clinical SLEDAI-2K")))
    assert res.outcome is Outcome.UNKNOWN
    assert "up to 4 more" in res.reason
    assert res.next_step and "complement and anti-dsDNA" in res.next_step


def test_a_full_total_outranks_a_score_without_serology(evaluate):
    res = evaluate("I6", record(score(4, id="s"), partial_score(6, "Clinical SLEDAI")))
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Observation/s",)
