"""Issue 8 section 1: medicines as real EHRs record them (timing codes, tapers, one therapy recorded several
ways, pharmacy fills, statements without dates, plans, biologics by class, development codes, death)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fhirscreen.criteria._medications import daily_mg, exposures
from fhirscreen.criteria.base import Outcome
from fhirscreen.quality import DataQuality
from tests.builders import (
    AS_OF,
    concept,
    condition,
    medication_administration,
    medication_dispense,
    medication_request,
    medication_statement,
    observation,
    patient,
    record,
)

PRED = "8640"
HCQ = "5521"
MMF = "68149"
ASTHMA = concept("icd10cm", "J45.909", "Unspecified asthma, uncomplicated")


def ago(days: int) -> str:
    return (AS_OF - timedelta(days=days)).isoformat()


def weight(kg: float, unit: str = "kg", when_ago: int = 10, id: str = "wt"):
    return observation("29463-7", ago(when_ago), value=kg, unit=unit, id=id)


def prednisone(
    mg: float, *, timing: dict | None = None, first_day_ago: int = 20, id: str | None = None, **extra
):
    """An active prednisone order of ``mg`` per administration with the given Timing (default once daily)."""
    req = medication_request(PRED, ago(first_day_ago), display="prednisone", id=id, **extra)
    req["dosageInstruction"] = [
        {
            "timing": timing or {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg"}}],
        }
    ]
    return req


def only(rec):
    (exp,) = exposures(rec)
    return exp


def bid_code(system: str = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation") -> dict:
    return {"coding": [{"system": system, "code": "BID"}]}


# ------------------------------------------------------------------------------- 1. Timing


def test_e3_timing_code_bid_with_only_bounds_in_repeat_is_twice_a_day(evaluate):
    # prednisone 20 mg BID = 40 mg/day; 40 / 70 kg = 0.57 mg/kg/day (read as once a day it would pass).
    timing = {"code": bid_code(), "repeat": {"boundsPeriod": {"start": ago(20)}}}
    rec = record(prednisone(20, timing=timing), weight(70))
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.FAIL
    assert res.details["max_prednisone_eq_mg_day"] == 40
    assert "40 mg/day" in res.reason


@pytest.mark.parametrize(
    ("timing", "per_day"),
    [
        ({"code": {"coding": [{"code": "TID"}]}}, 3),
        ({"code": {"coding": [{"code": "QID"}]}}, 4),
        ({"code": {"coding": [{"code": "QOD"}]}}, 0.5),
        ({"code": {"coding": [{"code": "Q8H"}]}}, 3),
        ({"code": {"coding": [{"code": "Q12H"}]}}, 2),
        ({"code": {"coding": [{"code": "Q4H"}]}}, 6),
        ({"code": {"coding": [{"code": "AM"}]}}, 1),
        ({"code": {"coding": [{"code": "WK"}]}}, 1 / 7),
        ({"code": {"coding": [{"code": "MO"}]}}, 1 / 30),
        ({"code": {"text": "twice daily"}}, 2),
        ({"repeat": {"when": ["MORN", "EVE"]}}, 2),
        ({"repeat": {"timeOfDay": ["08:00:00", "14:00:00", "20:00:00"]}}, 3),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "dayOfWeek": ["mon", "thu"]}}, 2 / 7),
        ({"repeat": {"frequency": 3, "period": 1, "periodUnit": "wk"}}, 3 / 7),
        # repeat.frequency wins over a code that disagrees; bounds do not change the rate
        (
            {
                "code": {"coding": [{"code": "QD"}]},
                "repeat": {"frequency": 2, "period": 1, "periodUnit": "d"},
            },
            2,
        ),
    ],
)
def test_daily_dose_follows_every_timing_encoding(timing, per_day):
    assert daily_mg(only(record(prednisone(10, timing=timing)))) == pytest.approx(
        (10 * per_day, 10 * per_day)
    )


def test_frequency_max_gives_a_range_and_an_unknown_code_gives_no_dose():
    ranged = {"repeat": {"frequency": 1, "frequencyMax": 3, "period": 1, "periodUnit": "d"}}
    assert daily_mg(only(record(prednisone(10, timing=ranged)))) == (10.0, 30.0)
    institution = {"code": {"coding": [{"code": "JB"}]}}  # institution-specified: not guessed as once daily
    assert daily_mg(only(record(prednisone(10, timing=institution)))) is None


def _mmf(authored: str, timing: dict, *, id: str, status: str = "active", **extra):
    req = medication_request(
        MMF, authored, display="mycophenolate mofetil 500 MG Oral Tablet", id=id, status=status, **extra
    )
    req["dosageInstruction"] = [
        {"timing": timing, "doseAndRate": [{"doseQuantity": {"value": 1000, "unit": "mg"}}]}
    ]
    return req


def test_e4_unchanged_mmf_bid_renewal_written_with_a_timing_code_is_not_a_dose_change(evaluate):
    old = _mmf(
        ago(300), {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}, id="old", status="stopped"
    )
    renewal = _mmf(ago(40), {"code": bid_code(), "repeat": {"boundsPeriod": {"start": ago(40)}}}, id="new")
    res = evaluate("E4", record(old, renewal))
    assert res.outcome is Outcome.PASS, res.reason
    assert "no start, dose change or stop" in res.reason


# ------------------------------------------------------------------------------- 2. Tapers


def _taper(start_ago: int, steps: list[tuple[float, int]]):
    """A prednisone taper written as sequenced dosage lines with boundsDuration (mg/day, days)."""
    req = medication_request(PRED, ago(start_ago), display="prednisone", status="completed", id="taper")
    req["dosageInstruction"] = [
        {
            "sequence": i + 1,
            "timing": {
                "repeat": {
                    "frequency": 1,
                    "period": 1,
                    "periodUnit": "d",
                    "boundsDuration": {"value": days, "code": "d"},
                }
            },
            "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg"}}],
        }
        for i, (mg, days) in enumerate(steps)
    ]
    return req


def test_e3_taper_steps_are_evaluated_date_by_date(evaluate):
    # 60 mg (45-39 days ago), 40 mg (38-32), 20 mg (31-25), 10 mg (24-11): only 20 and 10 mg fall in the
    # 28-day window, 20 / 70 kg = 0.29. Collapsed into 10-60 mg/day it could not be decided.
    rec = record(_taper(45, [(60, 7), (40, 7), (20, 7), (10, 14)]), weight(70))
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.PASS, res.reason
    assert "20 mg/day" in res.reason
    assert "dose not recorded" not in res.reason


def test_e3_taper_step_inside_the_window_above_the_limit_fails_on_its_day(evaluate):
    rec = record(_taper(35, [(60, 7), (40, 7), (20, 7)]), weight(70))  # 40 mg from 28 to 22 days ago
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.FAIL
    assert res.details["max_prednisone_eq_mg_day"] == 40
    assert ago(28) in res.reason


def test_e3_a_recorded_dose_range_is_never_called_not_recorded(evaluate):
    req = prednisone(20)
    req["dosageInstruction"][0]["doseAndRate"] = [
        {"doseRange": {"low": {"value": 20, "unit": "mg"}, "high": {"value": 40, "unit": "mg"}}}
    ]
    res = evaluate("E3", record(req, weight(70)))
    assert res.outcome is Outcome.UNKNOWN
    assert "dose not recorded" not in res.reason and "dose is not recorded" not in res.reason
    assert "could be up to 40 mg/day" in res.reason


# ------------------------------------------------------------------------------- 3. One therapy


def test_e3_statement_based_on_the_order_is_the_same_therapy(evaluate):
    order = prednisone(30, id="order")
    statement = medication_statement(
        PRED,
        ago(10),
        display="prednisone",
        id="stmt",
        basedOn=[{"reference": "MedicationRequest/order"}],
        dosage=[{"doseAndRate": [{"doseQuantity": {"value": 30, "unit": "mg"}}]}],
    )
    res = evaluate("E3", record(order, statement, weight(70)))
    assert res.outcome is Outcome.PASS, res.reason  # 30 mg/day, not 60
    assert res.details["max_prednisone_eq_mg_day"] == 30


def test_e3_administrations_of_the_active_order_are_not_added_to_it(evaluate):
    order = prednisone(30, id="order")
    given = [
        medication_administration(
            PRED,
            ago(d),
            display="prednisone",
            request={"reference": "MedicationRequest/order"},
            dosage={"dose": {"value": 30, "unit": "mg"}},
        )
        for d in (5, 4, 3)
    ]
    res = evaluate("E3", record(order, *given, weight(70)))
    assert res.outcome is Outcome.PASS, res.reason
    assert res.details["max_prednisone_eq_mg_day"] == 30


@pytest.mark.parametrize(
    "link",
    [
        {"priorPrescription": {"reference": "MedicationRequest/first"}},
        {"groupIdentifier": {"system": "urn:epic:order", "value": "g-77"}},
        {},  # same drug, same dose and times, overlapping: a renewal whose old order was left open
    ],
)
def test_e3_renewals_of_one_order_are_one_therapy(evaluate, link):
    first = prednisone(
        30,
        first_day_ago=60,
        id="first",
        **({"groupIdentifier": link["groupIdentifier"]} if "groupIdentifier" in link else {}),
    )
    renewal = prednisone(30, first_day_ago=15, id="renewal", **link)
    res = evaluate("E3", record(first, renewal, weight(70)))
    assert res.outcome is Outcome.PASS, res.reason
    assert res.details["max_prednisone_eq_mg_day"] == 30


def test_e3_a_renewal_at_a_lower_dose_supersedes_the_order_it_renews(evaluate):
    first = prednisone(40, first_day_ago=90, id="first")
    first["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] = {"start": ago(90), "end": ago(29)}
    renewal = prednisone(
        20, first_day_ago=28, id="renewal", priorPrescription={"reference": "MedicationRequest/first"}
    )
    res = evaluate("E3", record(first, renewal, weight(70)))
    assert res.outcome is Outcome.PASS, res.reason


def test_e3_a_split_dose_in_two_orders_is_summed(evaluate):
    morning = prednisone(20, timing={"repeat": {"when": ["MORN"]}}, id="am")
    evening = prednisone(20, timing={"repeat": {"when": ["EVE"]}}, id="pm")
    res = evaluate("E3", record(morning, evening, weight(70)))
    assert res.outcome is Outcome.FAIL
    assert res.details["max_prednisone_eq_mg_day"] == 40


# ------------------------------------------------------------------------------- 4. MedicationDispense


def _hcq_fills(first_ago: int, every: int, supply: int = 90):
    return [
        medication_dispense(
            HCQ, ago(d), days_supply=supply, display="hydroxychloroquine sulfate 200 MG Oral Tablet"
        )
        for d in range(first_ago, 0, -every)
    ]


def test_i5_two_years_of_hydroxychloroquine_fills_pass(evaluate):
    res = evaluate("I5", record(*_hcq_fills(730, 90)))
    assert res.outcome is Outcome.PASS, res.reason
    assert "hydroxychloroquine" in res.reason
    assert any(e.startswith("MedicationDispense/") for e in res.evidence)


def test_i5_a_refill_a_few_days_late_does_not_end_therapy(evaluate):
    # fills every 90 days of 90-day supplies; the last one ran out 10 days before screening
    fills = _hcq_fills(730, 90)[:-1]  # 730, 640, ... 100 days ago
    res = evaluate("I5", record(*fills))
    assert res.outcome is Outcome.PASS, res.reason
    assert evaluate("E4", record(*fills)).outcome is Outcome.PASS


def test_dispense_supply_from_quantity_and_dose():
    fill = medication_dispense(
        PRED,
        ago(10),
        days_supply=None,
        quantity=60,
        display="predniSONE 20 MG Oral Tablet",
        dosageInstruction=[
            {
                "timing": {"code": bid_code()},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            }
        ],
    )
    exp = only(record(fill))
    assert (exp.end - exp.start).days == 29  # 60 tablets at 2 a day: 30 days
    assert daily_mg(exp) == (40.0, 40.0)


def test_e1_fills_for_a_non_sle_reason_count_by_their_supply(evaluate):
    order = medication_request(PRED, ago(40), status="completed", display="prednisone", reason=ASTHMA, id="o")
    fill = medication_dispense(
        PRED,
        ago(40),
        days_supply=21,
        display="prednisone",
        authorizingPrescription=[{"reference": "MedicationRequest/o"}],
    )
    res = evaluate("E1", record(order, fill))
    assert res.outcome is Outcome.FAIL, res.reason  # the fill's reason is its prescription's: asthma
    assert res.details["non_sle_days"] == 21


def test_e3_fill_with_its_dosage_is_dose_evidence(evaluate):
    fill = medication_dispense(
        PRED,
        ago(10),
        days_supply=14,
        display="prednisone",
        dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg"}}]}],
    )
    res = evaluate("E3", record(fill, weight(70)))
    assert res.outcome is Outcome.FAIL
    assert "MedicationDispense/" in res.reason


def test_e4_first_fill_of_a_new_drug_in_the_window_is_an_addition(evaluate):
    fills = [*_hcq_fills(730, 90), medication_dispense(MMF, ago(30), display="mycophenolate mofetil 500 MG")]
    res = evaluate("E4", record(*fills))
    assert res.outcome is Outcome.FAIL
    assert "mycophenolate mofetil started" in res.reason


def test_e6_biologic_fill_is_the_last_dose_evidence(evaluate):
    pens = medication_dispense(
        "327361", ago(40), days_supply=14, display="adalimumab 40 MG/0.4ML Auto-Injector"
    )
    res = evaluate("E6", record(pens))
    assert res.outcome is Outcome.FAIL
    assert ago(27) in res.reason  # the last day of the 14-day supply


@pytest.mark.parametrize("status", ["preparation", "on-hold", "cancelled", "declined", "entered-in-error"])
def test_fills_that_never_reached_the_patient_are_not_exposure(status):
    assert exposures(record(medication_dispense(HCQ, ago(10), status=status))) == ()


# ------------------------------------------------------------------------------- 5. Statements without dates


def _current_statement(code: str, display: str, asserted: str | None = None, **extra):
    s = medication_statement(code, None, display=display, **extra)
    if asserted:
        s["dateAsserted"] = asserted
    return s


def test_e6_currently_taking_belimumab_without_effective_fails(evaluate):
    res = evaluate("E6", record(_current_statement("1092437", "belimumab", ago(3))))
    assert res.outcome is Outcome.FAIL
    assert "ongoing" in res.reason


def test_e6_currently_taking_without_any_date_still_fails(evaluate):
    res = evaluate("E6", record(_current_statement("1092437", "belimumab")))
    assert res.outcome is Outcome.FAIL


def test_e3_current_statement_without_effective_is_use_as_of_date_asserted(evaluate):
    stmt = _current_statement(
        PRED, "prednisone", ago(5), dosage=[{"doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg"}}]}]
    )
    res = evaluate("E3", record(stmt, weight(70)))
    assert res.outcome is Outcome.FAIL, res.reason


def test_i5_current_statement_without_effective_is_unknown_not_fail(evaluate):
    res = evaluate("I5", record(_current_statement(HCQ, "hydroxychloroquine", ago(10))))
    assert res.outcome is Outcome.UNKNOWN
    assert "start" in res.reason


# ------------------------------------------------------------------------------- 6. E3 weight


@pytest.mark.parametrize(("mg", "expected"), [(15, Outcome.PASS), (16, Outcome.UNKNOWN), (101, Outcome.FAIL)])
def test_e3_without_weight_doses_decided_at_any_adult_weight(evaluate, mg, expected):
    res = evaluate("E3", record(prednisone(mg)))
    assert res.outcome is expected, res.reason
    if expected is Outcome.PASS:
        assert "any adult weight of 30 kg" in res.reason


@pytest.mark.parametrize(
    ("value", "unit", "kg"),
    [
        (70000, "g", 70.0),
        (154, "[lb_av]", 69.85),
        (154, "lbs", 69.85),
        (154, "lb", 69.85),
        (2469, "[oz_av]", 70.0),
        (2469, "oz", 70.0),
        (70, "kg", 70.0),
    ],
)
def test_e3_weight_in_every_mass_unit(evaluate, value, unit, kg):
    res = evaluate("E3", record(prednisone(40), weight(value, unit)))
    assert res.details["weight_kg"] == pytest.approx(kg, abs=0.1)
    assert res.outcome is Outcome.FAIL  # 40 mg / 70 kg = 0.57


def test_e3_weight_in_an_unknown_unit_is_a_data_quality_finding_not_no_weight(evaluate, trial):
    from fhirscreen.criteria.base import Context

    rec = record(prednisone(40), weight(11, "stone"))
    ctx = Context(as_of=AS_OF, value_sets=trial.value_sets, quality=DataQuality())
    criterion = trial.criterion("E3")
    res = criterion.kind.fn(rec, ctx, criterion.params)
    assert res.outcome is Outcome.UNKNOWN
    assert "no body weight" not in res.reason
    assert "'stone'" in res.reason and "Observation/wt" in res.evidence
    assert [f.problem for f in ctx.quality.findings] == ["unknown-unit"]


def dry_weight(kg: float, when_ago: int = 5, id: str = "dry"):
    return observation("8341-0", ago(when_ago), value=kg, unit="kg", id=id)


def test_e3_a_dry_weight_is_used_when_it_is_the_only_weight_and_the_reason_says_so(evaluate):
    res = evaluate("E3", record(prednisone(60), dry_weight(70)))
    assert res.outcome is Outcome.FAIL
    assert "0.86 mg/kg/day" in res.reason
    assert f"70.0 kg on {ago(5)}, a dry weight: no other usable body weight on record" in res.reason
    assert "no body weight" not in res.reason
    assert "Observation/dry" in res.evidence and res.details["dry_weight"] is True


def test_e3_a_dry_weight_stands_in_for_a_body_weight_over_a_year_old(evaluate):
    res = evaluate("E3", record(prednisone(30), weight(40, when_ago=500), dry_weight(70)))
    assert res.outcome is Outcome.PASS
    assert "a dry weight" in res.reason


def test_e3_a_body_weight_is_preferred_to_a_more_recent_dry_weight(evaluate):
    res = evaluate("E3", record(prednisone(60), weight(150, when_ago=10), dry_weight(70, when_ago=2)))
    assert res.outcome is Outcome.PASS
    assert "150.0 kg" in res.reason and "dry weight" not in res.reason
    assert "Observation/dry" not in res.evidence


# ------------------------------------------------------------------------------- 7. E6 biologic class


@pytest.mark.parametrize(
    ("name", "days_ago", "expected"),
    [
        ("dupilumab 300 MG/2ML Prefilled Syringe", 60, Outcome.FAIL),  # no label half-life: < 90 d
        ("dupilumab 300 MG/2ML Prefilled Syringe", 120, Outcome.UNKNOWN),  # 90-180 d
        ("omalizumab 150 MG Injection", 120, Outcome.FAIL),  # 5 x 26 d = 130 days
        ("mepolizumab 100 MG Injection", 100, Outcome.FAIL),  # 5 x 22 = 110
        ("benralizumab 30 MG/ML", 100, Outcome.PASS),  # 5 x 15 = 75 -> 90-day floor
        ("Tezspire 210 MG/1.91ML", 120, Outcome.FAIL),  # 130
        ("canakinumab 150 MG/ML", 120, Outcome.FAIL),  # 130
        ("belatacept 250 MG Injection", 95, Outcome.PASS),  # 49 -> 90
        ("inebilizumab 100 MG/10ML", 60, Outcome.FAIL),
        ("lebrikizumab-lbkz 250 MG/2ML", 60, Outcome.FAIL),  # unlisted: by the -mab stem
        ("lebrikizumab-lbkz 250 MG/2ML", 150, Outcome.UNKNOWN),
        ("luspatercept 25 MG Injection", 60, Outcome.FAIL),  # unlisted fusion protein (-cept)
        ("insulin glargine 100 UNT/ML", 10, Outcome.PASS),
        ("influenza vaccine", 10, Outcome.PASS),
        ("heparin sodium 5000 UNT/ML", 10, Outcome.PASS),
        ("epoetin alfa 10000 UNT/ML", 10, Outcome.PASS),
        ("denosumab 60 MG/ML", 10, Outcome.PASS),  # reported, not counted
    ],
)
def test_e6_any_commercial_biologic_by_list_or_class(evaluate, name, days_ago, expected):
    given = medication_administration(
        "0", ago(days_ago), system="http://hospital.example.org/formulary", display=name, id="bio"
    )
    res = evaluate("E6", record(given))
    assert res.outcome is expected, res.reason


def test_e6_class_by_atc_code_without_a_name(evaluate):
    given = medication_administration("L04AC99", ago(30), system="http://www.whocc.no/atc", id="bio")
    res = evaluate("E6", record(given))
    assert res.outcome is Outcome.FAIL
    assert "half-life unknown" in res.reason


ATC = "http://www.whocc.no/atc"


@pytest.mark.parametrize(
    ("code", "days_ago", "expected", "said"),
    [
        ("L04AA26", 30, Outcome.FAIL, "belimumab (L04AA26) last dose"),  # belimumab before the 2024 revision
        ("L04AG04", 95, Outcome.FAIL, "97 days ends"),  # belimumab since 2024: its own 97-day washout
        ("L04AG04", 98, Outcome.PASS, "97 days ended"),
        ("L01XC02", 110, Outcome.FAIL, "rituximab (L01XC02)"),  # before 2022
        ("L01FA01", 110, Outcome.FAIL, "5 x 23 d"),
        ("L01FA03", 140, Outcome.FAIL, "obinutuzumab"),
        ("L04AA36", 125, Outcome.FAIL, "ocrelizumab"),
        ("L04AG12", 60, Outcome.FAIL, "ofatumumab"),
        ("L04AA51", 120, Outcome.UNKNOWN, "anifrolumab"),
        ("L04AA24", 60, Outcome.FAIL, "abatacept"),
        ("L04AC07", 60, Outcome.FAIL, "tocilizumab"),
        ("L04AJ01", 60, Outcome.FAIL, "eculizumab"),
        ("L04AA52", 60, Outcome.FAIL, "ofatumumab"),  # the multiple-sclerosis strength before 2024
        ("L01FA02", 60, Outcome.FAIL, "ofatumumab"),  # the leukaemia strength, still current
        ("L04AA47", 60, Outcome.FAIL, "inebilizumab"),  # before 2024
    ],
)
def test_e6_listed_biologic_by_atc_code_alone_old_or_new(evaluate, code, days_ago, expected, said):
    given = medication_administration(code, ago(days_ago), system=ATC, id="bio")
    res = evaluate("E6", record(given))
    assert res.outcome is expected, res.reason
    assert said in res.reason
    if "anifrolumab" not in said:  # the one listed biologic whose label states no half-life
        assert "half-life unknown" not in res.reason


def test_e6_class_holds_the_pre_2024_codes_of_biologics_but_not_the_small_molecules_of_l04aa(evaluate):
    alemtuzumab = evaluate("E6", record(medication_administration("L04AA34", ago(30), system=ATC, id="b")))
    assert alemtuzumab.outcome is Outcome.FAIL
    assert "alemtuzumab (L04AA34) last dose" in alemtuzumab.reason
    assert "half-life unknown" in alemtuzumab.reason
    leflunomide = evaluate("E6", record(medication_administration("L04AA13", ago(30), system=ATC)))
    assert leflunomide.outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("L04AL01", "L04AL01"),  # efgartigimod alfa: FcRn inhibitors, a 2026 group
        ("L04AA58", "L04AA58"),  # efgartigimod's code of 2023-2025
        ("L04AJ07", "crovalimab"),
        ("L04AA39", "emapalumab"),  # before 2024
        ("D11AH10", "lebrikizumab"),  # an antibody outside the immunosuppressant classes
        ("A10XX01", "teplizumab"),
    ],
)
def test_e6_class_holds_newer_and_scattered_antibody_codes(evaluate, code, name):
    res = evaluate("E6", record(medication_administration(code, ago(30), system=ATC, id="bio")))
    assert res.outcome is Outcome.FAIL, res.reason
    assert name in res.reason


def test_budesonide_has_no_systemic_corticosteroid_atc_code(trial):
    # H02AB16 is not in the WHO index (budesonide is A07EA06 by mouth): a code that does not exist is
    # not listed.
    assert trial.value_sets["rx_budesonide"].match({"coding": [{"system": ATC, "code": "H02AB16"}]}) is None
    assert trial.value_sets["rx_budesonide"].match({"coding": [{"system": ATC, "code": "A07EA06"}]})


@pytest.mark.parametrize("code", ["L04AF01", "L04AA29", "L04AH02", "A07EC01"])
def test_i5_judgement_drugs_by_atc_code_are_named_not_counted(evaluate, code):
    res = evaluate("I5", record(medication_request(code, ago(200), system=ATC, id="jak")))
    assert res.outcome is not Outcome.PASS, res.reason
    assert f"not counted by default: {code}" in res.reason  # named for the investigator


def test_i5_leflunomide_by_its_atc_code_since_2024(evaluate):
    res = evaluate("I5", record(medication_request("L04AK01", ago(200), system=ATC, id="lef")))
    assert res.outcome is Outcome.PASS
    assert "On leflunomide since" in res.reason


# ------------------------------------------------------------------------------- 8. E5 development codes


@pytest.mark.parametrize(
    "name",
    [
        "PEG-3350 17 GM Powder",
        "PEG3350",
        "D5W 1000 ML",
        "Vitamin B12",
        "CO-Q10 100 MG",
        "K-DUR 20 MEQ",
        "HCTZ 25 MG",
        "D3-50",
        "ASA-325",
        "APAP-500",
        "FE-325",
        "Depakote ER-500",
        "KCL-600",
        "NS-1000",
        "EPO-4000",
        "ABC-100 mg",
    ],
)
def test_e5_ordinary_products_are_not_development_codes(evaluate, name):
    local = medication_request("x", ago(10), system="http://hospital.example.org/formulary", display=name)
    res = evaluate("E5", record(local))
    assert res.outcome is Outcome.PASS, res.reason


@pytest.mark.parametrize("name", ["BMS-986165 3 MG", "LY3009104", "PF-06651600 capsule", "BIIB059 450 MG"])
def test_e5_sponsor_development_codes_are_investigational(evaluate, name):
    local = medication_request("x", ago(10), system="http://hospital.example.org/formulary", display=name)
    assert evaluate("E5", record(local)).outcome is Outcome.FAIL


def test_e5_a_development_code_look_alike_coded_in_rxnorm_is_a_marketed_product(evaluate):
    coded = medication_request("1234", ago(10), display="XYZ-1234 10 MG Oral Tablet")
    assert evaluate("E5", record(coded)).outcome is Outcome.PASS


# ------------------------------------------------------------------------------- 9. Plans and statuses


@pytest.mark.parametrize("intent", ["proposal", "plan", "directive", "option"])
def test_orders_that_are_not_orders_are_not_therapy(evaluate, intent):
    rituximab = medication_request("121191", ago(10), display="rituximab", intent=intent)
    pred = prednisone(60, intent=intent)
    rec = record(rituximab, pred, weight(70))
    assert evaluate("E6", rec).outcome is Outcome.PASS
    assert evaluate("E3", rec).outcome is Outcome.PASS


def test_do_not_perform_order_is_not_therapy(evaluate):
    never = medication_request(
        "121191", ago(10), display="rituximab", doNotPerform=True, reasonCode=[{"text": "anaphylaxis"}]
    )
    res = evaluate("E6", record(never))
    assert res.outcome is Outcome.PASS
    assert "rituximab" not in res.reason


@pytest.mark.parametrize(
    ("status", "is_exposure"),
    [
        ("in-progress", True),
        ("on-hold", True),
        ("stopped", True),
        ("not-done", False),
        ("entered-in-error", False),
    ],
)
def test_administration_statuses(status, is_exposure):
    assert bool(exposures(record(medication_administration("121191", ago(5), status=status)))) is is_exposure


@pytest.mark.parametrize(
    ("status", "is_exposure"),
    [("intended", False), ("not-taken", False), ("unknown", True), ("on-hold", True), ("stopped", True)],
)
def test_statement_statuses(status, is_exposure):
    assert bool(exposures(record(medication_statement(HCQ, ago(200), status=status)))) is is_exposure


# ------------------------------------------------------------------------------- 10. Death


def test_medication_events_after_death_are_not_current_therapy(evaluate):
    dead = patient(deceasedDateTime="2025-10-01")
    order = medication_request("1092437", "2025-01-01", display="belimumab", id="ongoing")
    later = medication_administration("1092437", "2026-05-20", display="belimumab", id="after-death")
    rec = record(dead, order, later)
    res = evaluate("E6", rec)
    assert res.outcome is Outcome.PASS, res.reason  # last possible dose 2025-10-01: 97 days ended 2026-01-06
    assert "2025-10-01" in res.reason
    assert all(e.ref != "MedicationAdministration/after-death" for e in exposures(rec))


def test_condition_reason_still_readable_for_linked_fills(evaluate):
    asthma = condition("icd10cm", "J45.909", id="c-asthma")
    order = medication_request(
        PRED,
        ago(40),
        status="completed",
        display="prednisone",
        id="o",
        reasonReference=[{"reference": "Condition/c-asthma"}],
    )
    fill = medication_dispense(
        PRED,
        ago(40),
        days_supply=20,
        display="prednisone",
        authorizingPrescription=[{"reference": "MedicationRequest/o"}],
    )
    assert evaluate("E1", record(asthma, order, fill)).outcome is Outcome.FAIL


# ------------------------------------------------------------------------------- siblings found in the pass


def test_i5_atc_coded_hydroxychloroquine_without_a_display(evaluate):
    req = medication_request("P01BA02", ago(400), system="http://www.whocc.no/atc")
    assert evaluate("I5", record(req)).outcome is Outcome.PASS


def test_dose_unit_given_as_a_snomed_dose_form_code_counts_tablets():
    req = prednisone(1)
    req["medicationCodeableConcept"] = concept("rxnorm", "312615", "predniSONE 20 MG Oral Tablet")
    req["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
        "value": 2,
        "unit": "Tablet",
        "system": "http://snomed.info/sct",
        "code": "385055001",
    }
    assert daily_mg(only(record(req))) == (40.0, 40.0)


def test_e6_statement_with_only_an_end_date_dates_the_last_dose(evaluate):
    stmt = medication_statement("121191", None, ago(30), display="rituximab", status="completed")
    res = evaluate("E6", record(stmt))
    assert res.outcome is Outcome.FAIL
    assert ago(30) in res.reason


def test_e1_active_acute_course_ends_with_its_supply(evaluate):
    burst = medication_request(
        PRED,
        ago(60),
        display="prednisone",
        reason=ASTHMA,
        courseOfTherapyType={"coding": [{"code": "acute"}]},
        dispenseRequest={"expectedSupplyDuration": {"value": 10, "code": "d"}},
    )
    res = evaluate("E1", record(burst))
    assert res.outcome is Outcome.PASS, res.reason  # 10 days, not 61 days through the screening date
    assert res.details["non_sle_days"] == 10


def test_e3_a_second_order_without_a_dose_is_not_absorbed_into_a_dosed_one(evaluate):
    dosed = prednisone(10, id="dosed")
    bare = medication_request(PRED, ago(5), display="predniSONE 20 MG Oral Tablet", id="bare")
    res = evaluate("E3", record(dosed, bare, weight(70)))
    assert res.outcome is Outcome.UNKNOWN
    assert "dose is not recorded" in res.reason


def test_e3_a_med_list_entry_without_a_dose_is_the_same_therapy(evaluate):
    dosed = prednisone(10, id="dosed")
    listed = medication_statement(PRED, ago(5), display="prednisone", id="listed")
    res = evaluate("E3", record(dosed, listed, weight(70)))
    assert res.outcome is Outcome.PASS, res.reason


def test_i5_therapy_of_a_deceased_patient_ends_at_death_and_says_so(evaluate):
    dead = patient(deceasedDateTime="2026-02-14")
    res = evaluate("I5", record(dead, medication_request(HCQ, "2025-01-01", display="hydroxychloroquine")))
    assert res.outcome is Outcome.UNKNOWN
    assert "deceased on 2026-02-14" in res.reason


def test_e3_taper_steps_with_their_own_bounds_periods(evaluate):
    req = medication_request(PRED, ago(45), display="prednisone", status="completed")
    req["dosageInstruction"] = [
        {
            "timing": {"repeat": {"boundsPeriod": {"start": ago(45), "end": ago(30)}}},
            "doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg"}}],
        },
        {
            "timing": {"repeat": {"boundsPeriod": {"start": ago(29), "end": ago(5)}}},
            "doseAndRate": [{"doseQuantity": {"value": 20, "unit": "mg"}}],
        },
    ]
    res = evaluate("E3", record(req, weight(70)))
    assert res.outcome is Outcome.PASS, res.reason
    assert res.details["max_prednisone_eq_mg_day"] == 20


@pytest.mark.parametrize("timing", [{"code": {"coding": [{"code": "ONCE"}]}}, {"repeat": {"count": 1}}])
def test_a_one_time_order_is_exposure_on_its_day_only(evaluate, timing):
    req = medication_request("121191", ago(200), display="rituximab", id="once")
    req["dosageInstruction"] = [
        {"timing": timing, "doseAndRate": [{"doseQuantity": {"value": 1000, "unit": "mg"}}]}
    ]
    exp = only(record(req))
    assert (exp.start, exp.end, exp.ongoing) == (AS_OF - timedelta(days=200),) * 2 + (False,)
    res = evaluate("E6", record(req))
    assert res.outcome is Outcome.PASS  # 200 days ago: 115-day washout ended


def test_e5_currently_taking_a_study_drug_without_dates_fails(evaluate):
    stmt = medication_statement(
        "x", None, system="http://hospital.example.org/formulary", display="study drug"
    )
    res = evaluate("E5", record(stmt))
    assert res.outcome is Outcome.FAIL
    assert "ongoing" in res.reason


def test_i5_free_text_abbreviation_on_a_medication_list(evaluate):
    stmt = medication_statement(
        "x", ago(300), system="http://hospital.example.org/formulary", display="HCQ 200 mg BID"
    )
    assert evaluate("I5", record(stmt)).outcome is Outcome.PASS


def test_e3_taper_into_an_open_maintenance_dose(evaluate):
    # 60 mg (60-54 days ago), 40 mg (53-47), then 5 mg a day with no end: 5 mg in the window
    req = _taper(60, [(60, 7), (40, 7), (5, 0)])
    req["status"] = "active"
    del req["dosageInstruction"][2]["timing"]["repeat"]["boundsDuration"]
    res = evaluate("E3", record(req, weight(70)))
    assert res.outcome is Outcome.PASS, res.reason
    assert res.details["max_prednisone_eq_mg_day"] == 5


def test_e3_max_dose_per_period_bounds_a_dose_range(evaluate):
    req = prednisone(20, timing={"code": {"coding": [{"code": "BID"}]}})
    req["dosageInstruction"][0]["doseAndRate"] = [
        {"doseRange": {"low": {"value": 10, "unit": "mg"}, "high": {"value": 20, "unit": "mg"}}}
    ]
    req["dosageInstruction"][0]["maxDosePerPeriod"] = {
        "numerator": {"value": 30, "unit": "mg"},
        "denominator": {"value": 1, "unit": "d", "code": "d"},
    }
    assert daily_mg(only(record(req))) == (20.0, 30.0)
    assert evaluate("E3", record(req, weight(70))).outcome is Outcome.PASS  # at most 30 mg/day <= 35


@pytest.mark.parametrize(
    ("kg", "unit"), [(6000, "kg"), (0, "kg"), (12, "g")], ids=["6000-kg", "zero", "grams"]
)
def test_e3_an_implausible_weight_is_not_dosed_by_and_is_said(evaluate, kg, unit):
    """6000 kg made prednisone 40 mg/day 0.01 mg/kg/day: a pass on an entry error."""
    rec = record(prednisone(40), weight(kg, unit, id="w"))
    res = evaluate("E3", rec)
    assert res.outcome is Outcome.UNKNOWN, res.reason
    assert "cannot be used" in res.reason and "outside 20-400 kg" in res.reason
    assert "Observation/w" in res.evidence


def test_e3_an_unconvertible_weight_unit_is_named(evaluate):
    res = evaluate("E3", record(prednisone(40), weight(70, "stone", id="w")))
    assert res.outcome is Outcome.UNKNOWN
    assert "unit 'stone' (Observation/w)" in res.reason


def test_e3_a_negative_dose_line_is_no_dose_and_does_not_lower_the_day(evaluate):
    # 60 mg + a "-40 mg" line of the same step: read as 20 mg/day it passed (0.29 mg/kg/day at 70 kg).
    req = prednisone(60)
    req["dosageInstruction"].append(
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": -40, "unit": "mg"}}],
        }
    )
    res = evaluate("E3", record(req, weight(70)))
    assert res.outcome is not Outcome.PASS, res.reason
    assert "20 mg/day" not in res.reason


@pytest.mark.parametrize("frequency", [0, -2])
def test_e3_a_frequency_that_is_no_rate_is_not_read_as_one(evaluate, frequency):
    timing = {"repeat": {"frequency": frequency, "period": 1, "periodUnit": "d"}}
    res = evaluate("E3", record(prednisone(60, timing=timing), weight(70)))
    assert res.outcome is not Outcome.PASS, res.reason


def test_e3_an_active_order_of_0_mg_is_no_dose_not_zero_steroid(evaluate):
    # "0 mg" on an active prednisone order says nothing of what is taken: read as 0 mg/day it passed.
    res = evaluate("E3", record(prednisone(0), weight(60)))
    assert res.outcome is Outcome.UNKNOWN, res.reason
