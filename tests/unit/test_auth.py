"""SMART Backend Services: discovery, the signed client assertion, token caching and renewal."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from responses.registries import OrderedRegistry

from fhirscreen.sources.auth import SmartBackendAuth, default_scopes, jwk_thumbprint
from fhirscreen.sources.base import SourceError
from fhirscreen.sources.factory import SourceOptions
from fhirscreen.sources.http import FhirClient
from fhirscreen.sources.server import make_client

BASE = "https://ehr.example.test/fhir"
TOKEN_URL = "https://auth.example.test/token"
BUNDLE = {"resourceType": "Bundle", "type": "searchset"}


def write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rsa_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    return write_key(tmp_path / "client.pem", rsa_key)


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


def smart(key_file: Path, clock: Clock | None = None, token_url: str | None = TOKEN_URL) -> SmartBackendAuth:
    return SmartBackendAuth(
        base_url=BASE,
        client_id="fhirscreen-nightly",
        key_file=key_file,
        session=requests.Session(),
        scope="system/Patient.read",
        token_url=token_url,
        clock=clock or Clock(),
        sleep=lambda _s: None,
    )


def token_response(token: str, expires_in: int = 300) -> dict[str, object]:
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": expires_in,
        "scope": "system/Patient.read",
    }


def form_of(call: responses.Call) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {k: v[0] for k, v in parse_qs(text).items()}


@responses.activate
def test_client_assertion_follows_smart_backend_services(rsa_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    clock = Clock()
    auth = smart(rsa_file, clock)
    responses.post(TOKEN_URL, json=token_response("t1"))
    assert auth.headers() == {"Authorization": "Bearer t1"}
    form = form_of(responses.calls[0])
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["scope"] == "system/Patient.read"
    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS384"
    assert header["kid"] == jwk_thumbprint(rsa_key)
    claims = jwt.decode(
        assertion,
        rsa_key.public_key(),
        algorithms=["RS384"],
        audience=TOKEN_URL,
        options={"verify_exp": False},
    )
    assert claims["iss"] == claims["sub"] == "fhirscreen-nightly"
    assert 0 < claims["exp"] - clock.now <= 300
    assert claims["jti"]


def test_each_assertion_has_a_new_jti(rsa_file: Path) -> None:
    auth = smart(rsa_file)
    jtis = {jwt.decode(auth.client_assertion(), options={"verify_signature": False})["jti"] for _ in range(3)}
    assert len(jtis) == 3


@responses.activate
def test_ec_p384_keys_sign_es384_and_configured_kid_is_used(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    auth = SmartBackendAuth(
        base_url=BASE,
        client_id="c",
        key_file=write_key(tmp_path / "ec.pem", key),
        session=requests.Session(),
        scope="system/Patient.read",
        token_url=TOKEN_URL,
        key_id="key-2026",
    )
    assertion = auth.client_assertion()
    assert jwt.get_unverified_header(assertion) | {} == {"alg": "ES384", "kid": "key-2026", "typ": "JWT"}
    jwt.decode(assertion, key.public_key(), algorithms=["ES384"], audience=TOKEN_URL)


@responses.activate
def test_token_endpoint_is_discovered_from_smart_configuration(rsa_file: Path) -> None:
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": TOKEN_URL})
    responses.post(TOKEN_URL, json=token_response("t1"))
    auth = smart(rsa_file, token_url=None)
    auth.headers()
    assert auth.token_url == TOKEN_URL


@responses.activate
def test_smart_configuration_without_token_endpoint(rsa_file: Path) -> None:
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"capabilities": []})
    with pytest.raises(SourceError, match=r"no token_endpoint.*--smart-token-url"):
        smart(rsa_file, token_url=None).headers()


@responses.activate
def test_token_is_cached_until_shortly_before_expiry(rsa_file: Path) -> None:
    clock = Clock()
    auth = smart(rsa_file, clock)
    responses.post(TOKEN_URL, json=token_response("t1", 300))
    responses.post(TOKEN_URL, json=token_response("t2", 300))
    assert auth.headers()["Authorization"] == "Bearer t1"
    clock.now += 200
    assert auth.headers()["Authorization"] == "Bearer t1"
    clock.now += 80  # within the 30 s margin of expiry
    assert auth.headers()["Authorization"] == "Bearer t2"
    assert auth.tokens_fetched == 2


@responses.activate(registry=OrderedRegistry)
def test_expired_token_gets_one_refresh_then_the_request_succeeds(rsa_file: Path) -> None:
    auth = smart(rsa_file)
    client = FhirClient(BASE, auth=auth, sleep=lambda _s: None)
    responses.post(TOKEN_URL, json=token_response("old"))
    responses.get(f"{BASE}/Patient", status=401)
    responses.post(TOKEN_URL, json=token_response("new"))
    responses.get(f"{BASE}/Patient", json=BUNDLE)
    assert client.get_resource("Patient") == BUNDLE
    fhir_calls = [c for c in responses.calls if str(c.request.url).startswith(BASE)]
    assert [c.request.headers["Authorization"] for c in fhir_calls] == ["Bearer old", "Bearer new"]
    assert client.stats()["auth_refreshes"] == 1
    assert client.stats()["retries"] == 0  # a refresh does not use up a retry


@responses.activate(registry=OrderedRegistry)
def test_a_second_401_after_refresh_is_an_auth_error(rsa_file: Path) -> None:
    client = FhirClient(BASE, auth=smart(rsa_file), sleep=lambda _s: None)
    responses.post(TOKEN_URL, json=token_response("a"))
    responses.get(f"{BASE}/Patient", status=401)
    responses.post(TOKEN_URL, json=token_response("b"))
    responses.get(f"{BASE}/Patient", status=401)
    with pytest.raises(SourceError, match="401 Unauthorized"):
        client.get_resource("Patient")
    assert sum(1 for c in responses.calls if c.request.url == TOKEN_URL) == 2


@responses.activate(registry=OrderedRegistry)
def test_flaky_token_endpoint_is_retried_with_a_fresh_assertion(rsa_file: Path) -> None:
    responses.post(TOKEN_URL, status=503)
    responses.post(TOKEN_URL, json=token_response("t"))
    smart(rsa_file).headers()
    first, second = (form_of(c)["client_assertion"] for c in responses.calls)
    assert first != second


@responses.activate
def test_refused_client_shows_the_oauth_error_but_not_the_assertion(
    rsa_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses.post(
        TOKEN_URL, status=400, json={"error": "invalid_client", "error_description": "unknown kid"}
    )
    with pytest.raises(SourceError) as err:
        smart(rsa_file).headers()
    assertion = form_of(responses.calls[0])["client_assertion"]
    assert "invalid_client: unknown kid" in str(err.value)
    assert assertion not in str(err.value)
    assert assertion not in caplog.text


@responses.activate
def test_access_token_is_not_logged(rsa_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.post(TOKEN_URL, json=token_response("tok-CANARY-smart"))
    responses.get(f"{BASE}/Patient", json=BUNDLE)
    auth = smart(rsa_file)
    FhirClient(BASE, auth=auth, verbose=True).get("Patient")
    assert "tok-CANARY-smart" not in caplog.text
    assert "tok-CANARY-smart" not in repr(auth)


def test_key_file_problems_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(SourceError, match="not an unencrypted PEM private key"):
        smart(bad)
    with pytest.raises(SourceError, match="cannot read the key file"):
        smart(tmp_path / "missing.pem")


def test_world_readable_key_is_warned_about(rsa_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    os.chmod(rsa_file, 0o644)
    smart(rsa_file)
    assert "can be read by other users" in caplog.text


def test_default_scopes_are_least_privilege() -> None:
    assert default_scopes(["Patient", "Condition"]) == "system/Patient.read system/Condition.read"
    assert (
        default_scopes(["Patient"], ["MeasureReport"], v2=True) == "system/Patient.rs system/MeasureReport.cu"
    )


def test_options_choose_the_auth(rsa_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "x")
    with pytest.raises(SourceError, match="not both"):
        make_client(SourceOptions(server=BASE, token_env="T", smart_client_id="c", smart_key_file=rsa_file))
    with pytest.raises(SourceError, match="needs both"):
        make_client(SourceOptions(server=BASE, smart_client_id="c"))
    client = make_client(
        SourceOptions(server=BASE, smart_client_id="c", smart_key_file=rsa_file, smart_token_url=TOKEN_URL)
    )
    assert isinstance(client.auth, SmartBackendAuth)
    assert "system/Observation.read" in client.auth.scope
    assert make_client(SourceOptions(server=BASE)).auth is None


def test_default_smart_scopes_cover_pharmacy_fills_and_plans(rsa_file: Path) -> None:
    client = make_client(
        SourceOptions(server=BASE, smart_client_id="c", smart_key_file=rsa_file, smart_token_url=TOKEN_URL)
    )
    assert isinstance(client.auth, SmartBackendAuth)
    scopes = client.auth.scope.split()
    for rtype in ("MedicationDispense", "ServiceRequest", "CarePlan", "Appointment", "Medication"):
        assert f"system/{rtype}.read" in scopes, rtype
    # Not asked for by default: a client registered without it could lose its whole token for it.
    assert "system/ResearchStudy.read" not in scopes
    assert not any(s.endswith(".write") for s in scopes)  # read-only unless --post-report


def test_a_token_endpoint_that_trickles_its_answer_hits_the_deadline(rsa_file: Path) -> None:
    """The token call has the FHIR client's overall deadline too: a token endpoint (or a proxy in
    front of it) sending its headers one byte at a time cannot hold a nightly run."""
    import threading

    from fhirscreen.sources.http import FhirClient
    from tests.faultproxy import FaultProxy, StaticUpstream

    with StaticUpstream({}) as upstream, FaultProxy(upstream.base_url) as proxy:
        proxy.add("trickle-headers", "/token", interval=0.05)
        client = FhirClient(BASE, timeout=1.0, deadline=1.5, sleep=lambda _s: None)  # a watched session
        auth = SmartBackendAuth(
            base_url=BASE,
            client_id="fhirscreen-nightly",
            key_file=rsa_file,
            session=client.session,
            scope="system/Patient.read",
            token_url=f"{proxy.origin()}/token",
            timeout=1.0,
            deadline=1.5,
            sleep=lambda _s: None,
        )
        outcome: list[BaseException] = []

        def ask() -> None:
            try:
                auth.headers()
            except BaseException as exc:
                outcome.append(exc)

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        asking.join(timeout=30)  # without the deadline this never ends
        assert not asking.is_alive(), "a trickling token endpoint outlived the deadline"
        tries = [s for s in proxy.seen if s.path.endswith("/token")]
    assert len(outcome) == 1 and isinstance(outcome[0], SourceError), outcome
    assert "SMART token request: cannot reach the server (deadline of 2 s exceeded)" in str(outcome[0])
    assert len(tries) == 3  # retried like any unreachable token endpoint
