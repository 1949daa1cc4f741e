"""Credentials for a FHIR server: a bearer token from an environment variable, or SMART Backend Services.

SMART Backend Services (HL7 SMART App Launch 2.x, "backend-services"): the client signs a short JWT
(``iss = sub = client id``, ``aud`` = token endpoint, ``exp`` at most 5 minutes ahead, a fresh ``jti``)
with its private key (RS384 or ES384) and exchanges it at the token endpoint for an access token
(``grant_type=client_credentials``). Access tokens live about 5 minutes, so a nightly run renews them:
before they expire, and once after a 401. Secrets (token, assertion, key) are never logged or put into
exception text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhirscreen.sources.base import ConfigurationError, SourceError
from fhirscreen.sources.server_text import scrub
from fhirscreen.sources.watchdog import Watch

log = logging.getLogger("fhirscreen.auth")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 240  # SMART: exp no more than five minutes in the future
EXPIRY_MARGIN_S = 30.0  # renew this long before the server's expires_in runs out
DEFAULT_LIFETIME_S = 300.0  # when a token response has no expires_in
_TOKEN_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ACCEPT_JSON = {"Accept": "application/json"}


class BearerTokenAuth:
    """A fixed token from an environment variable (read once; never printed)."""

    def __init__(self, env_name: str) -> None:
        token = os.environ.get(env_name, "").strip()
        if not token:
            raise ConfigurationError(
                f"--token-env {env_name}: the environment variable {env_name} is not set or empty"
            )
        self._token = token
        self.env_name = env_name

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> bool:
        return False  # nothing to renew: a 401 is reported to the user

    def __repr__(self) -> str:
        return f"BearerTokenAuth(env={self.env_name!r})"


def default_scopes(resource_types: Sequence[str], write_types: Sequence[str] = (), v2: bool = False) -> str:
    """Least-privilege system scopes for the types read (and written), SMART v1 or v2 syntax."""
    read, write = ("rs", "cu") if v2 else ("read", "write")
    scopes = [f"system/{t}.{read}" for t in resource_types]
    scopes += [f"system/{t}.{write}" for t in write_types]
    return " ".join(dict.fromkeys(scopes))


def load_signing_key(path: Path) -> tuple[Any, str]:
    """The private key in a PEM file and the JWS algorithm it signs with (RS384 for RSA, ES384 for EC)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"--smart-key {path}: cannot read the key file ({exc.strerror})") from None
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("--smart-key %s can be read by other users; chmod 600 it", path)
    except OSError:
        pass
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"--smart-key {path}: not an unencrypted PEM private key (RSA or EC P-384 expected)"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key, "ES384"
    raise ConfigurationError(
        f"--smart-key {path}: unsupported key type {type(key).__name__}; use RSA or EC P-384"
    )


def jwk_thumbprint(private_key: Any) -> str:
    """RFC 7638 thumbprint of the public key: a stable ``kid`` when none is configured."""
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        members = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}
    else:
        pn = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        members = {
            "crv": "P-384" if size == 48 else f"P-{public.curve.key_size}",
            "kty": "EC",
            "x": _b64(pn.x, size),
            "y": _b64(pn.y, size),
        }
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _b64(number: int, size: int | None = None) -> str:
    length = size or max(1, (number.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(number.to_bytes(length, "big")).rstrip(b"=").decode()


class SmartBackendAuth:
    """SMART Backend Services: a signed-JWT client assertion exchanged for short-lived access tokens."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        key_file: Path,
        session: requests.Session,
        scope: str,
        token_url: str | None = None,
        key_id: str | None = None,
        timeout: float = 30.0,
        deadline: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.scope = scope
        self._key, self.algorithm = load_signing_key(key_file)
        self.key_id = key_id or jwk_thumbprint(self._key)
        self._session = session
        self._token_url = token_url
        self._timeout = timeout
        # One call's overall limit, as the FHIR client's (``--deadline``): the socket timeout bounds each
        # read only, and a token endpoint (or a proxy) trickling its answer would hold the run forever.
        # Enforced through the session's watched connections (``watchdog.watch_adapter``).
        self._deadline = deadline if deadline is not None else 10 * timeout
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.tokens_fetched = 0

    # -- the Auth protocol ---------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - EXPIRY_MARGIN_S:
                self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> bool:
        with self._lock:
            self._fetch_token()
            return True

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, kid={self.key_id!r}, alg={self.algorithm})"

    # -- internals -----------------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        if self._token_url is None:
            self._token_url = self._discover_token_url()
        return self._token_url

    def _discover_token_url(self) -> str:
        url = f"{self.base_url}/.well-known/smart-configuration"
        response = self._post_or_get("GET", url, None, "SMART configuration")
        try:
            config = response.json()
        except ValueError:
            config = None
        endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
        if not isinstance(endpoint, str) or not endpoint:
            raise SourceError(f"{url} has no token_endpoint; give the token URL with --smart-token-url")
        return endpoint

    def client_assertion(self) -> str:
        """A fresh signed JWT (new jti each time: servers reject a reused one)."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(
            claims, self._key, algorithm=self.algorithm, headers={"kid": self.key_id, "typ": "JWT"}
        )

    def _fetch_token(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        response = self._post_or_get("POST", self.token_url, form, "SMART token request")
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError("SMART token request: the answer has no access_token")
        try:
            lifetime = float(body.get("expires_in", DEFAULT_LIFETIME_S)) if isinstance(body, dict) else 0.0
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_S
        self._token = token
        self._expires_at = self._clock() + lifetime
        self.tokens_fetched += 1
        log.debug("got a SMART access token (expires in %.0f s)", lifetime)

    def _post_or_get(
        self, method: str, url: str, form: dict[str, str] | None, label: str
    ) -> requests.Response:
        """Token and discovery calls get their own small retry (flaky token endpoints are common)."""
        for attempt in range(1, 4):
            try:
                with Watch(self._deadline) as watch:
                    if form is not None:
                        # A new assertion per try: the server may have seen (and burnt) the previous jti.
                        if attempt > 1:
                            form = {**form, "client_assertion": self.client_assertion()}
                        response = self._session.post(
                            url,
                            data=form,
                            timeout=self._timeout,
                            headers=_ACCEPT_JSON,
                            verify=self._session.verify,
                        )
                    else:
                        response = self._session.get(
                            url, timeout=self._timeout, headers=_ACCEPT_JSON, verify=self._session.verify
                        )
                if watch.expired:  # the answer was cut short at the deadline: it is not the server's
                    response.close()
                    raise requests.Timeout(f"deadline of {self._deadline:.0f} s exceeded")
            except requests.exceptions.SSLError:
                raise SourceError(f"{label}: TLS error (use --ca-bundle for a private CA)") from None
            except _UNREACHED as exc:
                if attempt == 3:
                    why = str(exc) if str(exc).startswith("deadline of") else type(exc).__name__
                    raise SourceError(f"{label}: cannot reach the server ({why})") from None
                self._sleep(2.0**attempt)
                continue
            if response.status_code == 200:
                return response
            if response.status_code in _TOKEN_RETRY_STATUSES and attempt < 3:
                self._sleep(2.0**attempt)
                continue
            raise SourceError(f"{label}: {_oauth_error(response)}")
        raise AssertionError("unreachable")  # pragma: no cover


# What a try of a token or discovery call ends with when no answer came: tried again, up to three times.
_UNREACHED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _oauth_error(response: requests.Response) -> str:
    """HTTP status plus the OAuth error and error_description (safe to show; they carry no secret)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        # error is a code from RFC 6749's list; error_description is server free text: scrubbed.
        text = f"{scrub(str(body['error']))[:60]}: {scrub(str(body.get('error_description') or ''))}"
        return f"HTTP {response.status_code} ({text.rstrip(': ')})"
    if response.status_code in (400, 401):
        return (
            f"HTTP {response.status_code}: the client was refused (check --smart-client-id, the key "
            "registered for it, and --smart-key-id)"
        )
    return f"HTTP {response.status_code}"
