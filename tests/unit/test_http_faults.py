"""Transport faults on a real socket: the client behind tests/faultproxy.py in front of a tiny upstream.

Each fault class of issue 9 gets one defined behaviour: retried, bounded in time or size, or reported
in words that say what happened. (The same proxy in front of a real HAPI server: tests/integration/
test_faults.py.)
"""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from fhirscreen.sources.auth import BearerTokenAuth
from fhirscreen.sources.base import QueryPlan, SourceError
from fhirscreen.sources.bulk import incomplete_ndjson
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.http import FhirClient, RetryPolicy
from fhirscreen.sources.server import ServerSource
from fhirscreen.sources.server_text import outcome_text, scrub
from tests.faultproxy import FaultProxy, StaticUpstream

TOKEN = "tok-CANARY-5b4c3d"
BUNDLE = {
    "resourceType": "Bundle",
    "type": "searchset",
    "total": 1,
    "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}],
}
NDJSON = b"".join(
    json.dumps({"resourceType": "Patient", "id": f"p{i}", "gender": "female"}).encode() + b"\n"
    for i in range(2000)
)
# What a server must never get us to print or write (names, birth date, MRN, address, phone, e-mail).
PHI = ("Harriet", "Quimby", "1985-03-15", "40021987", "Lantern", "Springfield", "555-0100", "hq@example.org")
PHI_TEXT = (
    "HAPI-0450: Patient Harriet Quimby (MRN 40021987, born 1985-03-15, 12 Lantern Lane, Springfield, "
    "tel 555-0100, hq@example.org) failed validation: 'Quimby' is not allowed"
)


@pytest.fixture
def upstream() -> Iterator[StaticUpstream]:
    answers = {
        "/fhir/Patient": (200, json.dumps(BUNDLE).encode()),
        "/fhir/files/Patient.ndjson": (200, NDJSON),
    }
    with StaticUpstream(answers) as server:
        yield server


@pytest.fixture
def proxy(upstream: StaticUpstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.base_url) as p:
        yield p


@pytest.fixture
def other(upstream: StaticUpstream) -> Iterator[FaultProxy]:
    """A second origin: reached as ``localhost``, while the server is ``127.0.0.1``."""
    with FaultProxy(upstream.base_url) as p:
        yield p


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(proxy: FaultProxy, sleeps: list[float], **kwargs: object) -> FhirClient:
    return FhirClient(proxy.base_url, sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]


# -- a connection dropped in the middle of a body ----------------------------------------------------


def test_a_connection_dropped_mid_body_is_retried(proxy: FaultProxy, sleeps: list[float]) -> None:
    proxy.add("drop-mid-body", "/Patient", times=1)
    client = client_for(proxy, sleeps)
    assert client.get_resource("Patient", expect_type="Bundle") == BUNDLE
    assert [s.fault for s in proxy.seen] == ["drop-mid-body", None]
    assert sleeps == [1.0] and client.stats()["retries"] == 1


def test_a_body_dropped_every_time_is_a_clear_error_after_5_tries(
    proxy: FaultProxy, sleeps: list[float]
) -> None:
    proxy.add("drop-mid-body", "/Patient")
    with pytest.raises(SourceError, match=r"dropped in the middle of the answer after 5 attempt") as err:
        client_for(proxy, sleeps).get_resource("Patient", what="Patient search")
    assert err.value.transient
    assert len(proxy.seen) == 5


# -- time: an overall deadline, and a timeout called a timeout --------------------------------------


def test_a_body_that_trickles_forever_hits_the_deadline(proxy: FaultProxy, sleeps: list[float]) -> None:
    proxy.add("trickle", "/Patient", interval=0.05)
    client = client_for(proxy, sleeps, timeout=1.0, deadline=1.5, retry=RetryPolicy(max_attempts=2))
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"did not finish within the 2 s deadline.* after 2 attempt"):
        client.get_resource("Patient")
    assert time.monotonic() - started < 8


def test_a_stall_past_the_timeout_is_called_a_timeout(proxy: FaultProxy, sleeps: list[float]) -> None:
    proxy.add("trickle", "/Patient", interval=5)
    client = client_for(proxy, sleeps, timeout=0.5, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(SourceError) as err:
        client.get_resource("Patient")
    message = str(err.value)
    assert "sent nothing for 0.5 s (timeout" in message
    assert "cannot reach" not in message and "ConnectionError" not in message


# -- invalid UTF-8 -----------------------------------------------------------------------------------


def test_invalid_utf8_is_retried_then_read_with_a_warning(proxy: FaultProxy, sleeps: list[float]) -> None:
    proxy.add("invalid-utf8", "/Patient")
    client = client_for(proxy, sleeps)
    page = client.get_resource("Patient", expect_type="Bundle", what="Patient search")
    assert page["entry"] == BUNDLE["entry"]
    assert len(proxy.seen) == 2  # once more, in case it was damaged on the way
    [finding] = client.quality.findings
    assert (finding.where, finding.problem) == ("Patient search", "invalid-utf8")
    assert finding.message.startswith("invalid UTF-8 at byte 14 of an answer")


def test_invalid_utf8_once_is_healed_by_the_retry(proxy: FaultProxy, sleeps: list[float]) -> None:
    proxy.add("invalid-utf8", "/Patient", times=1)
    client = client_for(proxy, sleeps)
    assert client.get_resource("Patient") == BUNDLE
    assert client.quality.findings == []


# -- Retry-After: 0 ----------------------------------------------------------------------------------


def test_a_persistent_503_with_retry_after_0_is_tried_5_times_in_all(
    proxy: FaultProxy, sleeps: list[float]
) -> None:
    proxy.add("503-retry-after-0", "/Patient")
    with pytest.raises(SourceError, match=r"HTTP 503 after 5 attempts"):
        client_for(proxy, sleeps).get_resource("Patient")
    assert len(proxy.seen) == 5
    assert sleeps == [0.0] * 4


@responses.activate(registry=OrderedRegistry)
def test_a_failing_server_is_not_tried_again_by_the_code_text_probe() -> None:
    """The SLEDAI code:text probe may swallow a refusal (400), never a server that is down."""
    base = "https://fhir.example.test/fhir"
    responses.get(f"{base}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    for _ in range(5):
        responses.get(f"{base}/Observation", status=503, headers={"Retry-After": "0"})
    client = FhirClient(base, sleep=lambda _s: None)
    source = ServerSource(SourceOptions(server=base), client)
    plan = QueryPlan(population_codes=(), observation_codes=(), patient_ids=("p1",))
    with pytest.raises(SourceError, match="HTTP 503 after 5 attempts"):
        list(source._read_by_search(plan, _quality(), source.capabilities()))
    observation_calls = [c for c in responses.calls if "/Observation" in c.request.url]
    assert len(observation_calls) == 5


def _quality():  # type: ignore[no-untyped-def]
    from fhirscreen.quality import DataQuality

    return DataQuality()


# -- Bulk files cut short ----------------------------------------------------------------------------


def test_a_bulk_file_cut_short_without_content_length_is_fetched_again(
    proxy: FaultProxy, sleeps: list[float], tmp_path: Path
) -> None:
    proxy.add("truncate-bulk-file", "/files/", times=1)
    client = client_for(proxy, sleeps)
    target = tmp_path / "Patient.ndjson"
    client.download(f"{proxy.base_url}/files/Patient.ndjson", target, validate=incomplete_ndjson)
    assert target.read_bytes() == NDJSON
    assert [s.fault for s in proxy.seen] == ["truncate-bulk-file", None]


def test_a_bulk_file_dropped_mid_body_is_fetched_again(
    proxy: FaultProxy, sleeps: list[float], tmp_path: Path
) -> None:
    proxy.add("drop-mid-body", "/files/", times=2)
    target = tmp_path / "Patient.ndjson"
    client_for(proxy, sleeps).download(f"{proxy.base_url}/files/Patient.ndjson", target)
    assert target.read_bytes() == NDJSON
    assert len(proxy.seen) == 3


def test_a_bulk_file_never_whole_is_a_transient_error_and_leaves_no_part_file(
    proxy: FaultProxy, sleeps: list[float], tmp_path: Path
) -> None:
    proxy.add("truncate-bulk-file", "/files/")
    target = tmp_path / "Patient.ndjson"
    with pytest.raises(SourceError, match=r"ends in the middle of a line.*after 5 attempt") as err:
        client_for(proxy, sleeps).download(
            f"{proxy.base_url}/files/Patient.ndjson", target, validate=incomplete_ndjson
        )
    assert err.value.transient
    assert list(tmp_path.iterdir()) == []


def test_incomplete_ndjson_tells_a_cut_line_from_a_whole_file(tmp_path: Path) -> None:
    whole = tmp_path / "whole.ndjson"
    whole.write_bytes(NDJSON)
    assert incomplete_ndjson(whole) is None
    no_newline = tmp_path / "no-newline.ndjson"
    no_newline.write_bytes(NDJSON.rstrip(b"\n"))
    assert incomplete_ndjson(no_newline) is None  # a last line without "\n" is fine when complete
    cut = tmp_path / "cut.ndjson"
    cut.write_bytes(NDJSON[:-7])
    assert "cut short" in (incomplete_ndjson(cut) or "")
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    assert incomplete_ndjson(empty) is None


# -- size -------------------------------------------------------------------------------------------


def test_a_200_mb_answer_stops_at_the_size_cap_without_filling_memory(
    proxy: FaultProxy, sleeps: list[float]
) -> None:
    proxy.add("huge-body", "/Patient", size=200_000_000)
    client = client_for(proxy, sleeps)
    tracemalloc.start()
    try:
        with pytest.raises(
            SourceError, match=r"larger than 64 MB, the size cap for one page; lower --page-size"
        ):
            client.get_resource("Patient", what="Patient search")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 80_000_000, peak  # the cap, once: not 200 MB, not twice
    assert len(proxy.seen) == 1  # a size problem is not retried


# -- the token and other origins --------------------------------------------------------------------


def test_a_cross_host_redirect_gets_no_token_and_a_401_there_is_explained(
    proxy: FaultProxy, other: FaultProxy, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_TOKEN", TOKEN)
    proxy.add("redirect-cross-host", "/Patient", other=other.base_url_at("localhost"))
    other.add("outcome-phi", "/Patient", status=401, text="no token")
    client = client_for(proxy, sleeps, auth=BearerTokenAuth("FHIR_TOKEN"))
    with pytest.raises(SourceError) as err:
        client.get_resource("Patient", what="Patient search")
    message = str(err.value)
    assert "redirected the request to another host" in message
    assert "--token-env NAME" not in message  # a token was given: asking for one would mislead
    assert [s.authorization for s in proxy.seen] == [f"Bearer {TOKEN}"]
    assert [s.authorization for s in other.seen] == [None]  # on the wire: the token stayed home


def test_a_same_origin_redirect_keeps_the_token(
    proxy: FaultProxy, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_TOKEN", TOKEN)
    proxy.add("redirect-cross-host", "/Patient", times=1, other=proxy.base_url)
    client = client_for(proxy, sleeps, auth=BearerTokenAuth("FHIR_TOKEN"))
    assert client.get_resource("Patient") == BUNDLE
    assert [s.authorization for s in proxy.seen] == [f"Bearer {TOKEN}"] * 2


def test_a_bulk_file_on_another_host_gets_no_token(
    proxy: FaultProxy, other: FaultProxy, sleeps: list[float], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FHIR_TOKEN", TOKEN)
    client = client_for(proxy, sleeps, auth=BearerTokenAuth("FHIR_TOKEN"))
    client.download(f"{other.base_url_at('localhost')}/files/Patient.ndjson", tmp_path / "P.ndjson")
    client.download(f"{proxy.base_url}/files/Patient.ndjson", tmp_path / "Q.ndjson")
    assert [s.authorization for s in other.seen] == [None]
    assert [s.authorization for s in proxy.seen] == [f"Bearer {TOKEN}"]


# -- names that do not resolve -----------------------------------------------------------------------


def test_a_host_name_that_does_not_resolve_is_said_and_not_retried(sleeps: list[float]) -> None:
    client = FhirClient("http://no-such-host.invalid/fhir", sleep=sleeps.append)
    with pytest.raises(SourceError, match=r"host name no-such-host.invalid cannot be resolved") as err:
        client.get_resource("metadata")
    assert sleeps == [] and client.stats()["requests"] == 1
    assert not err.value.transient


# -- server text -------------------------------------------------------------------------------------


def test_an_operation_outcome_error_is_reported_without_the_phi_in_it(
    proxy: FaultProxy, sleeps: list[float]
) -> None:
    proxy.add("outcome-phi", "/Patient", status=400, text=PHI_TEXT)
    with pytest.raises(SourceError) as err:
        client_for(proxy, sleeps).get_resource("Patient", what="Patient search")
    message = str(err.value)
    assert "HTTP 400" in message and "error processing: HAPI-0450: Patient" in message
    assert "failed validation" in message
    for canary in PHI:
        assert canary not in message, canary


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('HAPI-0389: Invalid search parameter "foo"', 'HAPI-0389: Invalid search parameter "…"'),
        ("Resource Observation/o-17 is not known", "Resource Observation/o-17 is not known"),
        ("QUIMBY, HARRIET dob 03/15/1985 ssn 999-01-2345", "… dob #/#/# ssn #-#-#"),
        ("x" * 500, "x" * 199 + "…"),
        ("line one\nline two\x1b[31m", "line one line two [#m"),
    ],
)
def test_scrub_rule(text: str, kept: str) -> None:
    assert scrub(text) == kept


def test_outcome_text_keeps_codes_and_bounds_many_issues() -> None:
    issue = {
        "severity": "error",
        "code": "invalid",
        "details": {"coding": [{"code": "MSG_PARAM_INVALID"}]},
        "diagnostics": PHI_TEXT,
    }
    text = outcome_text({"resourceType": "OperationOutcome", "issue": [issue] * 20}) or ""
    assert text.startswith("error invalid [MSG_PARAM_INVALID]: HAPI-0450")
    assert len(text) <= 400
    for canary in PHI:
        assert canary not in text, canary
    short = {"severity": "warning", "code": "processing", "diagnostics": "slow"}
    many = outcome_text({"resourceType": "OperationOutcome", "issue": [short] * 20}) or ""
    assert many.count("warning processing: slow") == 5


@responses.activate
def test_connection_errors_before_headers_are_still_retried() -> None:
    sleeps: list[float] = []
    base = "https://fhir.example.test/fhir"
    responses.get(f"{base}/Patient", body=requests.exceptions.ChunkedEncodingError("cut"))
    responses.get(f"{base}/Patient", json=BUNDLE)
    assert FhirClient(base, sleep=sleeps.append).get_resource("Patient") == BUNDLE


@responses.activate
def test_a_deeply_nested_resource_on_a_page_does_not_crash_the_run() -> None:
    base = "https://fhir.example.test/fhir"
    deep = '{"resourceType":"Observation","id":"o1","subject":{"reference":"' + base + '/Patient/p1"},"x":'
    page = '{"resourceType":"Bundle","entry":[{"resource":' + deep + "[" * 1000 + "]" * 1000 + "}}]}"
    responses.get(f"{base}/Observation", body=page, content_type="application/fhir+json")
    client = FhirClient(base, sleep=lambda _s: None)
    source = ServerSource(SourceOptions(server=base), client)
    [resource] = source.entries(client.get_resource("Observation"), "Observation search", _quality())
    assert resource["subject"]["reference"] == "Patient/p1"  # references normalised without recursion
    responses.get(
        f"{base}/Condition", body=page.replace("[" * 1000, "[" * 5000).replace("]" * 1000, "]" * 5000)
    )
    with pytest.raises(SourceError, match="nested too deeply"):
        client.get_resource("Condition")


@responses.activate
def test_a_token_endpoints_error_description_is_scrubbed_too() -> None:
    from fhirscreen.sources.auth import _oauth_error

    url = "https://auth.example.test/token"
    responses.post(url, status=400, json={"error": "invalid_client", "error_description": PHI_TEXT})
    text = _oauth_error(requests.post(url, timeout=5))
    assert text.startswith("HTTP 400 (invalid_client: HAPI-0450: Patient")
    for canary in PHI:
        assert canary not in text, canary


def test_headers_that_trickle_forever_hit_the_deadline_too(proxy: FaultProxy, sleeps: list[float]) -> None:
    proxy.add("trickle-headers", "/Patient", times=1, interval=0.05)
    client = client_for(proxy, sleeps, timeout=1.0, deadline=1.5)
    started = time.monotonic()
    assert client.get_resource("Patient") == BUNDLE  # the second try is answered
    assert time.monotonic() - started < 6
    assert [s.fault for s in proxy.seen] == ["trickle-headers", None]
    assert sleeps == [1.0]


def test_headers_that_trickle_through_an_http_proxy_hit_the_deadline_too(
    proxy: FaultProxy, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind HTTP_PROXY / HTTPS_PROXY (hospital networks) the request's socket is the proxy's: the
    deadline must reach it too, or a trickling answer keeps a nightly run alive forever."""
    proxy.add("trickle-headers", "/Patient", interval=0.05)  # the proxy itself trickles, every time
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.origin())
    client = FhirClient(
        "http://fhir.behind-a-proxy.test/fhir", sleep=sleeps.append, timeout=1.0, deadline=1.5
    )
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            client.get_resource("Patient")
        except BaseException as exc:
            outcome.append(exc)

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(timeout=30)  # without the watchdog on proxied connections this never ends
    assert not asking.is_alive(), "a trickling answer through the proxy outlived the deadline"
    assert len(outcome) == 1 and isinstance(outcome[0], SourceError), outcome
    assert "deadline" in str(outcome[0])
    assert proxy.seen and all(s.fault == "trickle-headers" for s in proxy.seen)
    assert all("fhir.behind-a-proxy.test" in s.path or s.path.startswith("/") for s in proxy.seen)


def test_a_large_page_is_read_once_and_parsed_with_a_bounded_peak(sleeps: list[float]) -> None:
    note = {"text": "x" * 300}
    entry = {"resource": {"resourceType": "Observation", "id": "o", "status": "final", "note": [note]}}
    page = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [entry] * 25_000}).encode()
    assert len(page) > 9_000_000
    with StaticUpstream({"/fhir/Observation": (200, page)}) as upstream:
        client = FhirClient(upstream.base_url, sleep=sleeps.append)
        tracemalloc.start()
        try:
            body = client.get_resource("Observation")
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(body["entry"]) == 25_000
    # bytes + text + objects, about 6x the page; orjson's document tree alone would be about 18x
    assert peak < 8 * len(page), peak / len(page)
