"""FhirClient: retries and backoff, Retry-After, clear errors, TLS settings, no token in logs."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from fhirscreen.sources.auth import BearerTokenAuth
from fhirscreen.sources.base import SourceError
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.http import FhirClient, RetryPolicy, origin, parse_retry_after
from fhirscreen.sources.server import make_client

BASE = "https://fhir.example.test/fhir"
CANARY = "tok-CANARY-9f8e7d"
BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def outcome(text: str) -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> FhirClient:
    return FhirClient(BASE, sleep=sleeps.append, verbose=True)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FHIR_TOKEN", CANARY)
    return CANARY


# -- retries ------------------------------------------------------------------------------------------


@responses.activate(registry=OrderedRegistry)
def test_429_with_retry_after_waits_that_long_then_succeeds(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient", status=429, headers={"Retry-After": "5"})
    responses.get(f"{BASE}/Patient", json=BUNDLE)
    page = client.get_resource("Patient", expect_type="Bundle")
    assert page["resourceType"] == "Bundle"
    assert sleeps == [5.0]
    assert client.stats()["requests"] == 2
    assert client.stats()["retries"] == 1


@responses.activate(registry=OrderedRegistry)
def test_retry_after_of_five_hours_is_capped(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Patient", status=429, headers={"Retry-After": "18000"})
    responses.get(f"{BASE}/Patient", json=BUNDLE)
    client.get_resource("Patient")
    assert sleeps == [RetryPolicy().retry_after_cap]


def test_retry_after_as_http_date_and_junk() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now.timestamp()) == pytest.approx(30)
    assert parse_retry_after(earlier, now.timestamp()) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-4") == 0
    assert parse_retry_after(None) is None


@responses.activate(registry=OrderedRegistry)
def test_503_burst_then_success_backs_off_exponentially(client: FhirClient, sleeps: list[float]) -> None:
    for _ in range(3):
        responses.get(f"{BASE}/Condition", status=503)
    responses.get(f"{BASE}/Condition", json=BUNDLE)
    client.get_resource("Condition")
    assert sleeps == [1.0, 2.0, 4.0]


@responses.activate(registry=OrderedRegistry)
def test_retry_cap_reached_gives_a_clear_error(client: FhirClient, sleeps: list[float]) -> None:
    for _ in range(5):
        responses.get(f"{BASE}/Condition", status=502)
    with pytest.raises(SourceError, match=r"HTTP 502 after 5 attempts"):
        client.get_resource("Condition", what="Condition search")
    assert len(sleeps) == 4
    assert max(sleeps) <= RetryPolicy().backoff_cap


@responses.activate(registry=OrderedRegistry)
def test_dropped_connection_is_retried(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Observation", body=requests.ConnectionError("connection reset"))
    responses.get(f"{BASE}/Observation", json=BUNDLE)
    assert client.get_resource("Observation")["resourceType"] == "Bundle"
    assert sleeps == [1.0]


@responses.activate(registry=OrderedRegistry)
def test_unreachable_server_names_the_host_not_the_query(client: FhirClient) -> None:
    for _ in range(5):
        responses.get(f"{BASE}/Observation", body=requests.ConnectionError("refused"))
    with pytest.raises(SourceError) as err:
        client.get_resource("Observation?patient=secret-id")
    assert "cannot reach https://fhir.example.test:443" in str(err.value)
    assert "secret-id" not in str(err.value)


@responses.activate
def test_400_is_not_retried(client: FhirClient, sleeps: list[float]) -> None:
    responses.get(f"{BASE}/Condition", status=400, json=outcome("Unknown search parameter 'foo'"))
    # The code and the scrubbed text: quoted values are the server's echo of what was sent.
    with pytest.raises(SourceError, match='error processing: Unknown search parameter "…"'):
        client.get_resource("Condition")
    assert sleeps == []
    assert len(responses.calls) == 1


# -- error messages -----------------------------------------------------------------------------------


@responses.activate
def test_401_says_how_to_authenticate(client: FhirClient) -> None:
    responses.get(f"{BASE}/metadata", status=401)
    with pytest.raises(SourceError, match=r"401 Unauthorized.*--token-env"):
        client.get_resource("metadata")


@responses.activate
def test_403_names_permissions(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient", status=403, json=outcome("scope system/Patient.read missing"))
    with pytest.raises(SourceError, match=r"403 Forbidden.*scopes.*system/Patient.read missing"):
        client.get_resource("Patient")


@responses.activate
def test_404_suggests_a_wrong_base_url(client: FhirClient) -> None:
    responses.get(f"{BASE}/metadata", status=404, body="<html>Not here</html>", content_type="text/html")
    with pytest.raises(SourceError, match=r"404 Not Found.*wrong base URL\?"):
        client.get_resource("metadata")


@responses.activate(registry=OrderedRegistry)
def test_500_with_operation_outcome_shows_its_diagnostics(client: FhirClient) -> None:
    for _ in range(5):
        responses.get(f"{BASE}/Condition", status=500, json=outcome("HAPI-1234: database is on fire"))
    with pytest.raises(SourceError, match="Server says: error processing: HAPI-1234: database is on fire"):
        client.get_resource("Condition")


@responses.activate(registry=OrderedRegistry)
def test_html_answer_is_retried_once_then_called_not_fhir(client: FhirClient, sleeps: list[float]) -> None:
    for _ in range(2):
        responses.get(f"{BASE}/metadata", body="<html>login</html>", content_type="text/html")
    with pytest.raises(SourceError, match=r"did not answer with FHIR JSON \(text/html"):
        client.get_resource("metadata", expect_type="CapabilityStatement")
    assert len(responses.calls) == 2


@responses.activate(registry=OrderedRegistry)
def test_truncated_page_is_retried_once_and_then_works(client: FhirClient) -> None:
    responses.get(f"{BASE}/Condition", body='{"resourceType":"Bun', content_type="application/fhir+json")
    responses.get(f"{BASE}/Condition", json=BUNDLE)
    assert client.get_resource("Condition", expect_type="Bundle") == BUNDLE


@responses.activate
def test_operation_outcome_where_a_bundle_was_expected(client: FhirClient) -> None:
    responses.get(f"{BASE}/Condition", json=outcome("search expired"))
    expected = "expected a Bundle but got a OperationOutcome: error processing: search expired"
    with pytest.raises(SourceError, match=expected):
        client.get_resource("Condition", expect_type="Bundle")


def test_base_url_must_be_http() -> None:
    with pytest.raises(SourceError, match="not an http"):
        FhirClient("fhir.example.test/fhir")


# -- auth and secrets ---------------------------------------------------------------------------------


@responses.activate
def test_bearer_token_goes_only_to_the_servers_origin(token: str) -> None:
    client = FhirClient(BASE, auth=BearerTokenAuth("FHIR_TOKEN"))
    responses.get(f"{BASE}/Patient", json=BUNDLE)
    responses.get("https://files.elsewhere.test/x", json=BUNDLE)
    responses.get("https://fhir.example.test:443/fhir/Condition", json=BUNDLE)
    client.get("Patient")
    client.get("https://files.elsewhere.test/x")
    client.get("https://fhir.example.test:443/fhir/Condition")
    sent = [c.request.headers.get("Authorization") for c in responses.calls]
    assert sent == [f"Bearer {token}", None, f"Bearer {token}"]


def test_default_ports_compare_equal() -> None:
    assert origin("https://h.test/fhir") == origin("https://H.test:443/other")
    assert origin("http://h.test/fhir") != origin("https://h.test/fhir")


@responses.activate(registry=OrderedRegistry)
def test_token_never_appears_in_logs_or_errors(token: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = FhirClient(BASE, auth=BearerTokenAuth("FHIR_TOKEN"), verbose=True, sleep=lambda _s: None)
    responses.get(f"{BASE}/Patient", status=503)
    responses.get(f"{BASE}/Patient", json=BUNDLE)
    responses.get(f"{BASE}/Condition", status=401, json=outcome("token expired"))
    responses.get(f"{BASE}/Observation", body=requests.ConnectionError("reset"))
    client.get_resource("Patient")
    messages = []
    for path in ("Condition", "Observation"):
        with pytest.raises(SourceError) as err:
            client.get_resource(path)
        messages.append(str(err.value))
    assert "GET https://fhir.example.test/fhir/Patient 503" in caplog.text  # verbose logging works
    assert token not in caplog.text
    assert all(token not in m for m in messages)
    assert token not in repr(client.auth)


def test_missing_token_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(SourceError, match="NO_SUCH_TOKEN is not set"):
        BearerTokenAuth("NO_SUCH_TOKEN")


def verify_of(call: responses.Call) -> object:
    return call.request.req_kwargs["verify"]  # type: ignore[attr-defined]  # added by responses


# -- TLS ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override the session's setting; the client must pass its own explicitly.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/env-bundle.pem")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@responses.activate
def test_tls_verification_is_on_by_default() -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    make_client(SourceOptions(server=BASE)).get("metadata")
    # True, or the system bundle requests substitutes for True: never False.
    assert verify_of(responses.calls[0]) in (True, "/etc/ssl/certs/env-bundle.pem")


@responses.activate
def test_insecure_turns_verification_off_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    make_client(SourceOptions(server=BASE, insecure=True)).get("metadata")
    assert verify_of(responses.calls[0]) is False
    assert "verification is OFF" in caplog.text


@responses.activate
def test_ca_bundle_is_passed_to_requests(tmp_path: Path) -> None:
    ca = tmp_path / "hospital-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    make_client(SourceOptions(server=BASE, ca_bundle=ca)).get("metadata")
    assert verify_of(responses.calls[0]) == str(ca)


def test_missing_ca_bundle_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"--ca-bundle .*no such file"):
        make_client(SourceOptions(server=BASE, ca_bundle=tmp_path / "nope.pem"))


@responses.activate
def test_tls_failure_suggests_ca_bundle(client: FhirClient) -> None:
    responses.get(f"{BASE}/metadata", body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(SourceError, match="--ca-bundle"):
        client.get("metadata")


@responses.activate
def test_gzip_is_accepted_and_bytes_counted(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient", json=BUNDLE)
    client.get("Patient")
    assert "gzip" in responses.calls[0].request.headers["Accept-Encoding"]
    assert client.stats()["bytes"] > 0
