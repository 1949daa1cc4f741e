"""Text from a server made safe to log and to write: OperationOutcomes reduced to codes and a scrubbed line.

A server's diagnostics are free text, and servers do put patient data there ("Patient Harriet Quimby
(MRN 40021987, born 1985-03-15) failed validation"). fhirscreen promises logs and outputs without
names, birth dates, addresses or identifiers, so server text is never echoed as it came. What is kept:

- each issue's ``severity`` and ``code`` (FHIR's closed IssueType list) and the codes of
  ``details.coding`` (short, code-like tokens only);
- the diagnostics (or ``details.text``), scrubbed word by word, at most ``MAX_CHARS`` characters:
  - every run of digits becomes ``#`` (MRNs, dates, phone numbers, street numbers, resource ids),
    except HAPI's message ids (``HAPI-0389``), which say what went wrong and identify nobody;
  - anything quoted ('...', "...", `...`) becomes ``"…"``: servers quote the values they refuse;
  - a capitalised or all-capitals word is kept only if it is a FHIR resource type, a CamelCase
    technical name, or on a short list of words error messages start with (Invalid, Unknown, ...):
    names and places are capitalised, so they go;
  - e-mail addresses and query strings go; control characters become spaces.

The rule errs towards losing words: the codes and the HAPI message id still say what happened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fhirscreen.fhir.codes import coding_items
from fhirscreen.fhir.resources import items

MAX_CHARS = 200
MAX_ISSUES = 5

# Words an error message may start with or name, kept although capitalised (compared lowercased).
_KEEP_TEXT = """
    a access an and another are at authentication authorization bad be by can cannot could did does
    error expected failed failure field fhir for found from has have hapi http https id in internal
    invalid is it json malformed may missing must no not of on operation or parameter parameters
    permission please processing reference request resource resources response search server should
    that the there this timeout to too transaction type unable unauthorized unknown unsupported url
    valid validation value was were when which with xml you your r4 r5 dstu3 uuid get post put
    delete patch bundle entry profile version code system display expired error: warning information
    fatal
"""
_KEEP_WORDS = frozenset(_KEEP_TEXT.split())
# FHIR R4 resource types that are one capitalised word (CamelCase ones are kept by shape).
_RESOURCE_TEXT = """
    Account Appointment Basic Binary Bundle CarePlan Claim Communication Composition Condition
    Consent Contract Coverage Device Encounter Endpoint Flag Goal Group Immunization Invoice Library
    Linkage List Location Measure Media Medication Observation Organization Provenance Parameters
    Patient Person Practitioner Procedure Questionnaire Schedule Slot Specimen Subscription Substance Task
"""
_RESOURCE_WORDS = frozenset(_RESOURCE_TEXT.split())
_CAMEL = re.compile(r"^[A-Z][a-z]+(?:[A-Z][a-z0-9]+)+$")  # OperationOutcome, MedicationRequest
_HAPI_ID = re.compile(r"HAPI-\d{4}")
_REFERENCE = re.compile(r"\b([A-Z][A-Za-z]+)/([A-Za-z0-9.-]{1,64})")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\u201c[^\u201d]*\u201d|\u2018[^\u2019]*\u2019")
_EMAIL = re.compile(r"\S+@\S+")
_QUERY = re.compile(r"\?\S*")
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_CODE_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def scrub(text: str) -> str:
    """Server free text reduced to what identifies nobody (see the module docstring); bounded."""
    text = _CONTROL.sub(" ", str(text)[:2000])
    text = _QUOTED.sub('"…"', text)
    text = _EMAIL.sub("…", text)
    text = _QUERY.sub("?…", text)
    # HAPI's message ids and resource references (Type/id: the project's logs name resources by id)
    # are kept as they are; the text between them is scrubbed.
    kept: list[str] = []
    for index, part in enumerate(re.split(f"({_HAPI_ID.pattern}|{_REFERENCE.pattern})", text)):
        if part is None:
            continue
        if index % 4 == 1:  # the whole match; groups 2 and 3 are its parts
            m = _REFERENCE.fullmatch(part)
            if m is None or m.group(1) in _RESOURCE_WORDS or _CAMEL.match(m.group(1)):
                kept.append(part)
                continue
        if index % 4 in (2, 3):
            continue
        kept.append(_WORD.sub(_scrub_word, _DIGITS.sub("#", part)))
    text = "".join(kept)
    text = re.sub(r"(?:…[\s,]*){2,}", "… ", text)  # one ellipsis for a run of removed words
    text = " ".join(text.split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def _scrub_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if not word[0].isupper():
        return word
    if word in _RESOURCE_WORDS or _CAMEL.match(word) or word.lower() in _KEEP_WORDS:
        return word
    return "…"


def outcome_text(body: Any) -> str | None:
    """An OperationOutcome's issues as safe text ("error processing: <scrubbed diagnostics>");
    None if the body is not an OperationOutcome."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in list(items(body.get("issue")))[:MAX_ISSUES]:
        if not isinstance(issue, Mapping):
            continue
        head = " ".join(
            str(v)
            for v in (issue.get("severity"), issue.get("code"))
            if isinstance(v, str) and _CODE_TOKEN.match(v)
        )
        details = issue.get("details")
        codes = []
        text = issue.get("diagnostics")
        if isinstance(details, Mapping):
            for coding in coding_items(details):
                code = coding.get("code")
                if isinstance(code, str) and _CODE_TOKEN.match(code):
                    codes.append(code)
            text = text or details.get("text")
        if codes:
            head = f"{head} [{', '.join(codes[:3])}]".strip()
        message = scrub(text) if isinstance(text, str) and text.strip() else ""
        part = f"{head}: {message}" if head and message else head or message
        if part:
            texts.append(part)
    joined = "; ".join(texts) or "(no diagnostics)"
    return joined if len(joined) <= 2 * MAX_CHARS else joined[: 2 * MAX_CHARS - 1] + "…"


# An issue that says a search did not give every match: an error, or a code that says so whatever its
# severity (FHIR R4 IssueType: incomplete, too-costly, throttled).
FAILING_SEVERITIES = frozenset({"error", "fatal"})
FAILING_CODES = frozenset({"incomplete", "too-costly", "throttled"})


def failing_issues(body: Any) -> list[str]:
    """The issues of an OperationOutcome that say a search failed or is incomplete, as "severity code"
    (codes only, never the diagnostics, which may echo patient data); [] for anything else."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return []
    found: list[str] = []
    for issue in items(body.get("issue")):
        if not isinstance(issue, Mapping):
            continue
        severity, code = issue.get("severity"), issue.get("code")
        if severity in FAILING_SEVERITIES or code in FAILING_CODES:
            said = [v for v in (severity, code) if isinstance(v, str) and _CODE_TOKEN.match(v)]
            text = " ".join(said) or "(no code)"
            if text not in found:
                found.append(text)
    return found[:MAX_ISSUES]
