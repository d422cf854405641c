"""MsalTokenProvider against a real MSAL over real TLS, with a local identity-provider double.

Nothing here mocks MSAL: the double (tests/doubles/oidc.py) serves discovery and the token endpoint on
127.0.0.1, and `requests` trusts it through REQUESTS_CA_BUNDLE, set per test with monkeypatch.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import msal
import msal.application
import msal.individual_cache
import msal.token_cache
import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bot.config import load_settings
from bot.defender.auth import _DEFAULT_HINT, MsalTokenProvider, TokenKeeper
from bot.defender.client import DefenderClient
from bot.defender.errors import AuthError, DefenderUnavailable
from bot.defender.simulator import SimulatedTenant
from bot.runtime import build_runtime
from tests.doubles import secrets as fake_secrets
from tests.doubles.concurrency import run_concurrently
from tests.doubles.defender import DefenderServer
from tests.doubles.oidc import JWT_BEARER, OidcDouble, trust
from tests.doubles.processes import free_port

CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
SECRET = fake_secrets.DEFENDER_CLIENT_SECRET
SCOPE = "https://api.securitycenter.microsoft.com/.default"
API = "https://api.securitycenter.microsoft.com"
MACHINE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


@pytest.fixture
def oidc(monkeypatch: pytest.MonkeyPatch) -> Iterator[OidcDouble]:
    """A running identity-provider double, trusted for this test, shut down at teardown."""
    with OidcDouble() as double:
        trust(monkeypatch, double.ca_bundle_path)
        yield double


def provider_for(
    authority: str, credential: str | dict[str, str] = SECRET, clock: Callable[[], float] = time.time
) -> MsalTokenProvider:
    # instance_discovery=False: MSAL would otherwise ask login.microsoftonline.com about 127.0.0.1.
    return MsalTokenProvider(
        authority=authority,
        client_id=CLIENT_ID,
        credential=credential,
        scope=SCOPE,
        instance_discovery=False,
        timeout=5.0,
        clock=clock,
    )


def b64url_json(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


# Caching -------------------------------------------------------------------------------------


def test_first_token_hits_the_endpoint_then_msal_cache_serves(oidc: OidcDouble) -> None:
    provider = provider_for(oidc.authority)

    first = provider.token()

    assert oidc.discovery_requests == 1
    assert oidc.token_requests == 1
    assert oidc.issued_tokens == [first]
    form = oidc.token_request_forms[0]
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT_ID
    assert form["client_secret"] == SECRET
    assert form["scope"] == SCOPE

    later = [provider.token() for _ in range(50)]

    assert later == [first] * 50
    assert oidc.token_requests == 1
    assert oidc.discovery_requests == 1


class SimulatedTime:
    """Stands in for the `time` module inside msal: `time()` reads a settable clock, the rest is real."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def msal_clock(monkeypatch: pytest.MonkeyPatch) -> SimulatedTime:
    """Simulated wall-clock time for MSAL's token cache and expiry decisions (they all call `time.time()`)."""
    clock = SimulatedTime(float(int(time.time())))
    for module in (msal.application, msal.token_cache, msal.individual_cache):
        monkeypatch.setattr(module, "time", clock)
    return clock


def test_an_hour_of_steady_traffic_asks_the_identity_provider_twice(
    oidc: OidcDouble, msal_clock: SimulatedTime
) -> None:
    # MSAL treats a token as expired 5 minutes before expires_on: with expires_in=3599 the token of
    # minute 0 is served until minute 54 and replaced at minute 55 (3599 - 3300 = 299 s < 300 s left).
    oidc.expires_in = 3599
    provider = provider_for(oidc.authority, clock=msal_clock.time)
    start = msal_clock.now

    served: list[str] = []
    for minute in range(60):
        msal_clock.now = start + 60 * minute
        served.append(provider.token())

    assert oidc.token_requests == 2
    first, renewed = oidc.issued_tokens
    assert served == [first] * 55 + [renewed] * 5


def test_invalidate_drops_the_cached_token(oidc: OidcDouble) -> None:
    provider = provider_for(oidc.authority)
    provider.invalidate()  # before first use: nothing to drop, nothing sent
    assert oidc.discovery_requests == 0
    assert oidc.token_requests == 0

    first = provider.token()
    provider.invalidate()
    second = provider.token()

    assert second != first
    assert oidc.token_requests == 2
    assert oidc.issued_tokens == [first, second]
    assert provider.token() == second  # the new one is cached in turn
    assert oidc.token_requests == 2


# Refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "description", "status", "hint_part"),
    [
        pytest.param(
            "invalid_client",
            7000215,
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app '{CLIENT_ID}'.",
            401,
            "DEFENDER_CLIENT_SECRET",
            id="wrong-secret",
        ),
        pytest.param(
            "invalid_grant",
            65001,
            f"AADSTS65001: The user or administrator has not consented to use the application with ID '{CLIENT_ID}'"
            " named 'device-alerts'. Send an interactive authorization request for this user and resource.",
            400,
            "consent",
            id="no-consent",
        ),
        pytest.param(
            "invalid_request",
            9999999,
            "AADSTS9999999: Something no one has documented happened.",
            400,
            _DEFAULT_HINT,
            id="unknown-code",
        ),
    ],
)
def test_token_endpoint_error_becomes_auth_error_with_code_and_hint(
    oidc: OidcDouble,
    caplog: pytest.LogCaptureFixture,
    error: str,
    code: int,
    description: str,
    status: int,
    hint_part: str,
) -> None:
    caplog.set_level(logging.DEBUG)  # msal's own debug logs must not carry the secret either
    correlation_id = oidc.fail_with(error=error, code=code, description=description, status=status)
    provider = provider_for(oidc.authority)

    with pytest.raises(AuthError) as caught:
        provider.token()

    exc = caught.value
    assert exc.code == str(code)
    assert hint_part in exc.hint
    assert exc.target == correlation_id  # support asks for Entra's correlation id
    text = str(exc)
    assert text.startswith(f"AADSTS{code}: ")
    assert text.count(f"AADSTS{code}") == 1
    assert "Trace ID" not in text  # only the first line of Entra's description is kept
    assert SECRET not in text
    assert SECRET not in repr(exc)
    assert SECRET not in caplog.text
    assert oidc.token_requests == 1


def test_a_refusal_does_not_stick_to_the_provider(oidc: OidcDouble) -> None:
    oidc.fail_with(
        error="invalid_client", code=7000215, description="AADSTS7000215: Invalid client secret provided.", status=401
    )
    provider = provider_for(oidc.authority)

    with pytest.raises(AuthError):
        provider.token()
    token = provider.token()

    assert oidc.issued_tokens == [token]
    assert oidc.token_requests == 2


def test_wrong_secret_is_refused_by_the_double_like_entra(monkeypatch: pytest.MonkeyPatch) -> None:
    with OidcDouble(client_secret=fake_secrets.OTHER_CLIENT_SECRET) as idp:
        trust(monkeypatch, idp.ca_bundle_path)
        with pytest.raises(AuthError) as caught:
            provider_for(idp.authority, credential=SECRET).token()
    assert caught.value.code == "7000215"
    assert "DEFENDER_CLIENT_SECRET" in caught.value.hint


# Certificate credential ----------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    private_key_pem: str
    sha1_thumbprint: str
    public_key: rsa.RSAPublicKey


@pytest.fixture(scope="module")
def certificate() -> Certificate:
    """A throwaway self-signed RSA certificate, as one would upload to the app registration."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-alerts test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # Entra's x5t is the SHA-1 thumbprint: SHA-1 is the format here, not a security choice.
    thumbprint = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303
    return Certificate(pem, thumbprint, key.public_key())


def test_certificate_credential_sends_a_signed_client_assertion(oidc: OidcDouble, certificate: Certificate) -> None:
    credential = {"private_key": certificate.private_key_pem, "thumbprint": certificate.sha1_thumbprint}
    provider = provider_for(oidc.authority, credential=credential)

    token = provider.token()

    assert oidc.issued_tokens == [token]
    form = oidc.token_request_forms[0]
    assert "client_secret" not in form
    assert form["client_assertion_type"] == JWT_BEARER
    assertion = form["client_assertion"]
    parts = assertion.split(".")
    assert len(parts) == 3
    header = b64url_json(parts[0])
    expected_x5t = base64.urlsafe_b64encode(bytes.fromhex(certificate.sha1_thumbprint)).decode()
    assert header["x5t"].rstrip("=") == expected_x5t.rstrip("=")
    assert header["alg"] == "RS256"
    # Signed with the certificate's key, for this token endpoint, by this app.
    claims = jwt.decode(assertion, certificate.public_key, algorithms=["RS256"], audience=oidc.token_endpoint)
    assert claims["iss"] == claims["sub"] == CLIENT_ID


def test_repr_never_shows_the_secret_or_the_private_key(oidc: OidcDouble, certificate: Certificate) -> None:
    with_secret = provider_for(oidc.authority, credential=SECRET)
    with_cert = provider_for(
        oidc.authority,
        credential={"private_key": certificate.private_key_pem, "thumbprint": certificate.sha1_thumbprint},
    )
    key_body = certificate.private_key_pem.splitlines()[1]  # a line of the base64 key material

    for provider in (with_secret, with_cert):
        provider.token()  # also once the MSAL application (which holds the credential) exists
        shown = repr(provider)
        assert oidc.authority in shown
        assert CLIENT_ID in shown
        assert SECRET not in shown
        assert "PRIVATE KEY" not in shown
        assert key_body not in shown
        assert str(provider) == shown


# Outages and TLS -----------------------------------------------------------------------------


def test_unreachable_identity_provider_is_unavailable_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    tenant = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    provider = provider_for(f"https://127.0.0.1:{port}/{tenant}")

    for _ in range(2):  # and again: a failed first use leaves nothing half-built behind
        with pytest.raises(DefenderUnavailable, match="identity provider unreachable"):
            provider.token()

    with OidcDouble(port=port, tenant=tenant) as idp:
        trust(monkeypatch, idp.ca_bundle_path)
        token = provider.token()
    assert idp.issued_tokens == [token]
    assert idp.discovery_requests == 1


def test_outage_after_start_up_serves_the_cache_then_is_unavailable_then_recovers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # One CA and one bundle outlive both doubles: the identity provider comes back with the same identity.
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    trust(monkeypatch, str(bundle))

    with OidcDouble(ca=ca) as idp:
        provider = provider_for(idp.authority)
        first = provider.token()

    assert provider.token() == first  # a cached token needs no identity provider
    provider.invalidate()
    with pytest.raises(DefenderUnavailable, match="identity provider unreachable"):
        provider.token()

    with OidcDouble(port=idp.port, tenant=idp.tenant, ca=ca) as back:
        second = provider.token()
    assert back.issued_tokens == [second]
    assert second != first
    assert back.discovery_requests == 0  # MSAL kept the discovery result from start-up


def test_tls_is_verified_and_requests_ca_bundle_is_what_trusts_the_double(
    monkeypatch: pytest.MonkeyPatch, oidc: OidcDouble
) -> None:
    provider = provider_for(oidc.authority)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    with pytest.raises(DefenderUnavailable, match="SSLError"):
        provider.token()
    assert oidc.discovery_requests == 0

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", oidc.ca_bundle_path)  # read by requests on every request
    assert provider.token() == oidc.issued_tokens[0]


@pytest.mark.parametrize(
    ("drop", "status", "code"),
    [("scope", 400, 90014), ("client_secret", 401, 7000218), ("grant_type", 400, 900144)],
)
def test_the_double_refuses_incomplete_grants(oidc: OidcDouble, drop: str, status: int, code: int) -> None:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": SCOPE}
    del form[drop]

    response = requests.post(oidc.token_endpoint, data=form, verify=oidc.ca_bundle_path, timeout=5)

    assert response.status_code == status
    assert response.json()["error_codes"] == [code]
    assert oidc.issued_tokens == []


# End to end with the Defender client ---------------------------------------------------------


def recording_api(answer: Callable[[str, list[str]], httpx.Response]) -> tuple[httpx.MockTransport, list[str]]:
    """A mock Defender API that records each request's bearer token and lets `answer` decide the reply."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/api/machines/{MACHINE_ID}/alerts"
        seen.append(request.headers["Authorization"].removeprefix("Bearer "))
        return answer(seen[-1], seen)

    return httpx.MockTransport(handler), seen


def unauthorized() -> httpx.Response:
    return httpx.Response(401, json={"error": {"code": "Unauthorized", "message": "Unauthorized"}})


def test_client_refreshes_a_rejected_token_once(oidc: OidcDouble) -> None:
    # The API rejects the first token it sees (e.g. issued before a role was granted) and accepts a fresh one.
    def answer(token: str, seen: list[str]) -> httpx.Response:
        return unauthorized() if token == seen[0] else httpx.Response(200, json={"value": []})

    transport, seen = recording_api(answer)
    with DefenderClient(API, provider_for(oidc.authority), transport=transport) as client:
        alerts = client.get_device_alerts(MACHINE_ID)

    assert alerts == []
    assert oidc.token_requests == 2
    assert seen == oidc.issued_tokens
    assert seen[0] != seen[1]


def test_client_gives_up_with_auth_error_when_fresh_tokens_are_rejected_too(oidc: OidcDouble) -> None:
    transport, seen = recording_api(lambda token, seen: unauthorized())
    with (
        DefenderClient(API, provider_for(oidc.authority), transport=transport) as client,
        pytest.raises(AuthError, match="Defender rejected the app's token"),
    ):
        client.get_device_alerts(MACHINE_ID)

    assert len(seen) == 2
    assert oidc.token_requests == 2
    assert seen == oidc.issued_tokens


def test_identity_provider_5xx_is_unavailable_not_a_crash(oidc: OidcDouble) -> None:
    oidc.fail_with(error="temporarily_unavailable", code=50001, description="AADSTS50001: busy", status=503)
    provider = provider_for(oidc.authority)
    with pytest.raises(DefenderUnavailable, match="MsalServiceError"):
        provider.token()


def test_concurrent_first_calls_ask_the_identity_provider_once(oidc: OidcDouble) -> None:
    provider = provider_for(oidc.authority)
    tokens = run_concurrently(8, provider.token)
    assert len(tokens) == 8
    assert all(isinstance(t, str) for t in tokens)
    assert len(set(tokens)) == 1
    assert oidc.token_requests == 1


# Obtained at start-up, renewed ahead of expiry: no lookup waits for the identity provider ----------------------


def test_renewed_ahead_of_expiry_no_lookup_asks_the_identity_provider_all_day(
    oidc: OidcDouble, msal_clock: SimulatedTime
) -> None:
    """The keeper's schedule run on simulated time: a lookup every minute for five hours, renewals in between."""
    oidc.expires_in = 3599
    provider = provider_for(oidc.authority, clock=msal_clock.time)
    start = msal_clock.now
    due_at = start + provider.renew_if_due()  # what `TokenKeeper.start` does
    assert oidc.token_requests == 1
    for minute in range(5 * 60):
        msal_clock.now = start + 60 * minute
        if msal_clock.now >= due_at:
            due_at = msal_clock.now + provider.renew_if_due()
        asked = oidc.token_requests
        assert provider.token() == oidc.issued_tokens[-1]
        assert oidc.token_requests == asked  # the lookup's token was there already
    # Renewed 10 minutes ahead of each expiry, in the background: at minutes 50, 100, 150, 200 and 250.
    assert oidc.token_requests == 1 + 5


def test_the_keeper_starts_with_the_identity_provider_down_and_stops_on_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = provider_for(f"https://127.0.0.1:{free_port()}/{CLIENT_ID}")
    keeper = TokenKeeper(provider)
    keeper.start()  # does not raise: the bot starts, and lookups say Defender cannot be reached
    assert "no Defender token ahead of use" in caplog.text
    assert SECRET not in caplog.text
    keeper.stop()
    assert not any(t.name == "defender-token" and t.is_alive() for t in threading.enumerate())


def test_a_runtime_signs_in_at_start_up_and_its_first_lookup_asks_defender_only(
    oidc: OidcDouble, defender_api: str
) -> None:
    defender = DefenderServer(SimulatedTenant())
    env = {
        "DEFENDER_BACKEND": "api",
        "DEFENDER_API": defender_api,
        "DEFENDER_TENANT_ID": oidc.tenant,
        "DEFENDER_CLIENT_ID": CLIENT_ID,
        "DEFENDER_CLIENT_SECRET": SECRET,
        "DEFENDER_AUTHORITY_URL": f"https://127.0.0.1:{oidc.port}",
        "DEFENDER_API_URL": defender.base_url,
        "DEFENDER_GRAPH_URL": defender.base_url,
        "BOT_STATE_URL": "sqlite:///:memory:",
    }
    runtime = build_runtime(load_settings(env))
    try:
        assert (oidc.token_requests, defender.requests) == (1, 0)  # the token came before any command
        result = runtime.service.device_alerts("ws-fin-014")
        assert result.total > 0
        assert oidc.token_requests == 1
        assert set(defender.tokens) == set(oidc.issued_tokens)
    finally:
        runtime.close()
        defender.close()
    assert not any(t.name == "defender-token" and t.is_alive() for t in threading.enumerate())


def test_a_serving_runtime_connects_to_the_mde_api_at_start_up_and_its_first_lookup_uses_that_connection(
    oidc: OidcDouble,
) -> None:
    defender = DefenderServer(SimulatedTenant(), keep_alive=True)
    env = {
        "DEFENDER_BACKEND": "api",
        "DEFENDER_API": "mde",
        "DEFENDER_TENANT_ID": oidc.tenant,
        "DEFENDER_CLIENT_ID": CLIENT_ID,
        "DEFENDER_CLIENT_SECRET": SECRET,
        "DEFENDER_AUTHORITY_URL": f"https://127.0.0.1:{oidc.port}",
        "DEFENDER_API_URL": defender.base_url,
        "BOT_STATE_URL": "sqlite:///:memory:",
    }
    runtime = build_runtime(load_settings(env), warm_up=True)
    try:
        # One request without a token (answered 401, no call of the app's), and the connection stays open.
        assert (defender.requests, defender.tokens, len(defender.connections)) == (1, [], 1)
        result = runtime.service.device_alerts("ws-fin-014")  # a hostname: its id, then its alerts, in turn
        assert result.total > 0
        assert defender.requests > 1 and len(defender.connections) == 1
        assert set(defender.tokens) == set(oidc.issued_tokens)
    finally:
        runtime.close()
        defender.close()
