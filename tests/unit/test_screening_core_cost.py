"""The screening core's shortcuts (issue 11) give the answers the plain computations give."""

from __future__ import annotations

import math

from fhirscreen.fhir.codes import LOINC, ValueSet
from fhirscreen.fhir.compact import Compactor
from fhirscreen.fhir.memo import resources_unchanged
from fhirscreen.fhir.resources import condition_span


def _creatinine(value: float, day: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"o-{day}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": "mg/dL"},
    }


def test_compaction_shares_equal_elements_and_keeps_values() -> None:
    compactor = Compactor()
    first = compactor.compact(_creatinine(0.9, "2025-01-01"))
    second = compactor.compact(_creatinine(1.4, "2025-02-01"))
    assert first["code"] is second["code"]
    assert first["subject"] is second["subject"]
    assert first["valueQuantity"] == {"value": 0.9, "unit": "mg/dL"}
    assert second["valueQuantity"] == {"value": 1.4, "unit": "mg/dL"}
    assert second == _creatinine(1.4, "2025-02-01")


def test_compaction_never_shares_elements_json_cannot_tell_apart() -> None:
    compactor = Compactor()
    one = compactor.compact({"code": {"value": 1}})
    one_float = compactor.compact({"code": {"value": 1.0}})
    nan = compactor.compact({"code": {"value": float("nan")}})
    null = compactor.compact({"code": {"value": None}})
    assert one["code"] is not one_float["code"] and type(one_float["code"]["value"]) is float
    assert math.isnan(nan["code"]["value"]) and null["code"]["value"] is None


def test_value_set_answers_follow_changes_to_the_set() -> None:
    vs = ValueSet("creatinine")
    concept = _creatinine(0.9, "2025-01-01")["code"]
    assert vs.match(concept) is None
    vs.add(LOINC, "2160-0", "Creatinine")
    assert vs.match(concept) == "Creatinine"
    vs.add_text("creat")
    assert vs.match({"text": "Creatinine, serum"}) == "Creatinine, serum"


def test_derived_views_are_read_afresh_outside_one_screening() -> None:
    condition = {"resourceType": "Condition", "id": "c1", "onsetDateTime": "2020-01-01"}
    with resources_unchanged():
        assert condition_span(condition).start is not None
        assert condition_span(condition).start.year == 2020  # type: ignore[union-attr]
    condition["onsetDateTime"] = "2021-06-01"  # a changed record, screened again
    with resources_unchanged():
        assert condition_span(condition).start.year == 2021  # type: ignore[union-attr]


def test_a_value_set_travels_to_another_process_without_its_answers() -> None:
    """Answers are keyed by this process's signature numbers; a Spark worker numbers them afresh."""
    import pickle

    from fhirscreen.fhir.codes import LOINC, ValueSet

    weight = ValueSet("weight")
    weight.add(LOINC, "29463-7")
    assert weight.match({"coding": [{"system": LOINC, "code": "29463-7"}]}) is not None
    assert weight.match({"coding": [{"system": LOINC, "code": "2160-0"}]}) is None
    assert weight._results  # answers remembered here
    travelled = pickle.loads(pickle.dumps(weight))
    assert travelled._results == {} and travelled.codes == weight.codes


def test_first_drug_remembers_answers_per_drug_list_and_gives_the_plain_ones() -> None:
    """``first_drug`` keeps each answer per drug list and concept signature; it must be what matching
    the drugs one by one gives, for any concepts, and never an answer kept for another list."""
    import random

    from fhirscreen.criteria._medications import Drug, Exposure, _first_drug, first_drug
    from fhirscreen.fhir.codes import RXNORM

    sets = {name: ValueSet(name) for name in ("hcq", "mtx", "aza")}
    sets["hcq"].add(RXNORM, "5521", "hydroxychloroquine")
    sets["mtx"].add(RXNORM, "6851", "methotrexate")
    sets["aza"].add(RXNORM, "1256", "azathioprine")
    sets["aza"].add_text(r"\bimuran\b")
    first = [Drug(name=n, value_set=n) for n in ("hcq", "mtx", "aza")]
    second = list(reversed(first))
    codes = ["5521", "6851", "1256", "9999", None]
    texts = ["Imuran 50 mg", "aspirin", None]
    rng = random.Random(7)

    def concept() -> dict:
        code, text = rng.choice(codes), rng.choice(texts)
        out: dict = {"coding": [{"system": RXNORM, "code": code}]} if code else {}
        return {**out, "text": text} if text else out

    for _ in range(400):
        concepts = tuple(concept() for _ in range(rng.randint(0, 2)))
        exposure = Exposure(
            "MedicationRequest/x", "MedicationRequest", "active", concepts, (), "x",
            None, None, False, True, None, (), (), None,
        )
        for drugs in (first, second):
            expected = _first_drug(exposure.concepts, drugs, sets)
            with resources_unchanged():
                assert first_drug(exposure, drugs, sets) is expected
            assert first_drug(exposure, drugs, sets) is expected  # outside a screening too
