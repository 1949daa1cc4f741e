from __future__ import annotations

import pytest

from fhirscreen.criteria.base import Outcome
from tests.builders import condition, record


def test_no_cancer_on_record_passes(evaluate):
    res = evaluate("E12", record())
    assert res.outcome is Outcome.PASS
    assert res.reason == "No cancer history on record."


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("icd10cm", "C50.911"),
        ("icd10cm", "C50911"),  # no dot
        ("icd10cm", "c50.911"),  # lower case
        ("icd10cm", "C18.7"),
        ("icd10cm", "C4A.9"),  # Merkel cell
        ("icd10cm", "C43.9"),  # melanoma is not an allowed skin cancer
        ("icd10cm", "C44.99"),  # other specified skin malignancy
        ("icd10cm", "C44.1321"),  # sebaceous carcinoma of eyelid
        ("icd10cm", "C91.00"),
        ("icd10cm", "D05.10"),  # breast DCIS: only cervical carcinoma in situ is excepted
        ("icd10cm", "D03.9"),  # melanoma in situ (Appendix A #23)
        ("icd10cm", "Z85.3"),  # personal history of breast cancer
        ("icd10cm", "Z86.000"),  # history of in-situ breast neoplasm
        ("icd10cm", "O9A.111"),
        ("snomed", "254837009"),  # Synthea breast cancer
        ("snomed", "93761005"),  # Synthea colon cancer
        ("snomed", "254637007"),  # Synthea NSCLC
        ("snomed", "126906006"),  # Synthea prostate cancer ("Neoplasm of prostate")
        ("snomed", "285432005"),  # invasive carcinoma of cervix
    ],
)
@pytest.mark.parametrize("status", ["active", "resolved", "remission"])
def test_any_cancer_ever_excludes_whatever_its_status(evaluate, system, code, status):
    rec = record(condition(system, code, "2012-04-01", clinical=status, id="ca"))
    res = evaluate("E12", rec)
    assert res.outcome is Outcome.FAIL
    assert res.reason.startswith("History of cancer")
    assert "2012-04-01" in res.reason
    assert res.evidence == ("Condition/ca",)


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("icd10cm", "C44.91"),  # BCC, unspecified site
        ("icd10cm", "C4492"),  # SCC, no dot
        ("icd10cm", "C44.311"),  # BCC of nose
        ("icd10cm", "C44.1122"),  # BCC of right lower eyelid
        ("icd10cm", "D04.5"),  # SCC in situ of trunk (Bowen)
        ("icd10cm", "D06.9"),  # cervical carcinoma in situ
        ("snomed", "254701007"),  # BCC of skin
        ("snomed", "254651007"),  # SCC of skin
        ("snomed", "92564006"),  # carcinoma in situ of cervix
    ],
)
def test_allowed_cancer_passes_when_treated_and_is_unknown_while_active(evaluate, system, code):
    treated = evaluate("E12", record(condition(system, code, "2019-01-01", clinical="resolved", id="ok")))
    assert treated.outcome is Outcome.PASS
    assert "allowed" in treated.reason
    assert treated.evidence == ("Condition/ok",)

    active = evaluate("E12", record(condition(system, code, "2026-04-01", id="open")))
    assert active.outcome is Outcome.UNKNOWN
    assert "adequately treated" in active.next_step
    assert active.evidence == ("Condition/open",)


def test_remission_counts_as_treated_for_an_allowed_cancer(evaluate):
    rec = record(condition("icd10cm", "C44.91", "2019-01-01", clinical="remission"))
    assert evaluate("E12", rec).outcome is Outcome.PASS


def test_allowed_cancer_abated_on_the_screening_date_is_treated(evaluate):
    rec = record(condition("icd10cm", "C44.91", "2026-01-01", abatement="2026-06-01"))
    assert evaluate("E12", rec).outcome is Outcome.PASS


@pytest.mark.parametrize("code", ["Z86.001", "Z86.007"])
def test_history_of_allowed_in_situ_cancer_passes_even_if_marked_active(evaluate, code):
    assert evaluate("E12", record(condition("icd10cm", code, "2015-01-01"))).outcome is Outcome.PASS


@pytest.mark.parametrize("code", ["C44.90", "C44.300", "C44.1092", "C44.4", "Z85.828", "D46.9", "D45"])
def test_skin_malignancy_of_unstated_type_and_myeloid_neoplasms_are_unknown(evaluate, code):
    res = evaluate("E12", record(condition("icd10cm", code, "2018-01-01", clinical="resolved")))
    assert res.outcome is Outcome.UNKNOWN
    assert "histology" in res.next_step


def test_specific_code_wins_over_a_generic_malignancy_coding(evaluate):
    cond = condition("icd10cm", "C44.91", "2019-01-01", clinical="resolved")
    cond["code"]["coding"].append({"system": "http://snomed.info/sct", "code": "363346000"})
    assert evaluate("E12", record(cond)).outcome is Outcome.PASS


def test_allowed_and_excluding_cancer_together_exclude(evaluate):
    rec = record(
        condition("icd10cm", "C44.91", "2019-01-01", clinical="resolved", id="bcc"),
        condition("icd10cm", "C43.5", "2021-01-01", clinical="resolved", id="mel"),
    )
    res = evaluate("E12", rec)
    assert res.outcome is Outcome.FAIL
    assert res.evidence == ("Condition/mel",)


def test_unlisted_code_whose_text_names_a_malignancy_is_unknown(evaluate):
    # Issue 8: a clearly malignant name fails (test_clinical_fidelity); a name that could be an excepted
    # skin cancer, or says only "cancer", stays a question.
    for display in ("Squamous cell carcinoma, site not stated", "Cancer"):
        cond = condition("snomed", "999999999", "2020-01-01", display=display)
        assert evaluate("E12", record(cond)).outcome is Outcome.UNKNOWN, display
    cond = condition("snomed", "999999999", "2020-01-01", display="Malignant neoplasm of pancreas")
    assert evaluate("E12", record(cond)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    "display",
    [
        "Squamous cell carcinoma of lung",
        "Squamous cell carcinoma of head and neck",
        "Squamous cell carcinoma of oral cavity",
        "Squamous cell carcinoma of larynx",
        "Oropharyngeal squamous cell carcinoma",
        "Squamous cell carcinoma of esophagus",
        "Squamous cell carcinoma of anus",
        "Squamous cell carcinoma of cervix",  # invasive: only carcinoma in situ of the cervix is allowed
        "Squamous cell carcinoma of vulva",
        "Squamous cell carcinoma of vagina",
        "Squamous cell carcinoma of penis",
        "Squamous cell carcinoma of bladder",
        "Metastatic squamous cell carcinoma",
    ],
)
def test_squamous_cell_carcinoma_of_a_site_other_than_skin_excludes(evaluate, display):
    cond = condition("snomed", "999999999", "2019-01-01", clinical="remission", display=display, id="scc")
    res = evaluate("E12", record(cond))
    assert res.outcome is Outcome.FAIL
    assert res.reason == f"History of cancer: {display} (onset 2019-01-01, remission; Condition/scc)."


@pytest.mark.parametrize(
    "display",
    [
        "Malignant melanoma of skin",
        "Melanoma in situ of skin",
        "Merkel cell carcinoma of skin",
        "Sebaceous carcinoma of eyelid",
        "Kaposi sarcoma of skin",
        "Primary cutaneous T-cell lymphoma",
        "Ductal carcinoma in situ of breast",
        "Carcinoma in situ of bladder",
        "Squamous cell carcinoma in situ of vulva",
    ],
)
def test_skin_cancer_other_than_bcc_scc_and_in_situ_cancer_other_than_cervix_exclude(evaluate, display):
    cond = condition("snomed", "999999999", "2019-01-01", clinical="resolved", display=display)
    res = evaluate("E12", record(cond))
    assert res.outcome is Outcome.FAIL
    assert res.reason.startswith(f"History of cancer: {display} ")


@pytest.mark.parametrize(
    "display",
    [
        "Squamous cell carcinoma of scalp",  # a skin site: may be the allowed skin SCC
        "Cutaneous squamous cell carcinoma",
        "Squamous cell carcinoma in situ of skin",
        "Carcinoma in situ of cervix",
    ],
)
def test_unlisted_skin_scc_and_cervical_in_situ_names_stay_a_question(evaluate, display):
    cond = condition("snomed", "999999999", "2019-01-01", clinical="resolved", display=display)
    res = evaluate("E12", record(cond))
    assert res.outcome is Outcome.UNKNOWN
    assert "malignancy of unstated type" in res.reason


def test_coded_skin_scc_and_cervical_in_situ_still_pass_when_treated(evaluate):
    rec = record(
        condition("snomed", "403891008", "2019-01-01", clinical="resolved", display="SCC of scalp"),
        condition("snomed", "92564006", "2018-01-01", clinical="resolved"),
        condition("snomed", "254701007", "2017-01-01", clinical="resolved"),
    )
    res = evaluate("E12", rec)
    assert res.outcome is Outcome.PASS
    assert res.reason.startswith("Only allowed, treated cancers on record: ")


@pytest.mark.parametrize(
    "display", ["Family history of cancer", "Screening for malignant neoplasm of cervix"]
)
def test_family_history_and_screening_text_is_not_cancer(evaluate, display):
    cond = condition("snomed", "999999999", "2020-01-01", display=display)
    assert evaluate("E12", record(cond)).outcome is Outcome.PASS


@pytest.mark.parametrize("verification", ["entered-in-error", "refuted"])
def test_entered_in_error_and_refuted_cancer_is_ignored(evaluate, verification):
    rec = record(condition("icd10cm", "C50.911", "2020-01-01", verification=verification))
    assert evaluate("E12", rec).outcome is Outcome.PASS


def test_cancer_diagnosed_after_the_screening_date_is_ignored(evaluate):
    rec = record(condition("icd10cm", "C50.911", "2026-06-02"))
    assert evaluate("E12", rec).outcome is Outcome.PASS


def test_undated_cancer_still_excludes(evaluate):
    res = evaluate("E12", record(condition("icd10cm", "C34.90", None)))
    assert res.outcome is Outcome.FAIL
    assert "no onset date" in res.reason


def test_e12_allowed_skin_cancer_with_an_abatement_is_treated(evaluate):
    cond = condition("icd10cm", "C44.91", "2024-01-01", clinical=None, abatementBoolean=True)
    res = evaluate("E12", record(cond))
    assert res.outcome is Outcome.PASS
    assert "Only allowed, treated cancers on record" in res.reason
