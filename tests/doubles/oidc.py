"""A local HTTPS stand-in for Microsoft Entra ID's OpenID Connect discovery and token endpoints.

MSAL talks to it as it would to login.microsoftonline.com: it reads the tenant's discovery document
(`{authority}/v2.0/.well-known/openid-configuration`), then POSTs client-credentials grants to
`{authority}/oauth2/v2.0/token`. The double counts those requests, issues unique opaque tokens, checks
the parts of a grant Entra insists on (grant type, client id, scope, a secret or a signed assertion) and
can answer the next request(s) with an Entra-style error. It serves real TLS with a throwaway `trustme`
CA, so tests exercise MSAL's real HTTP stack; point `REQUESTS_CA_BUNDLE` at `ca_bundle_path` to trust it.

    with OidcDouble() as idp:
        trust(monkeypatch, idp.ca_bundle_path)  # REQUESTS_CA_BUNDLE, and no proxy for 127.0.0.1
        ...  # MSAL with authority=idp.authority, instance_discovery=False
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
import trustme

from tests.doubles import secrets as fake_secrets

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

JsonObject = dict[str, Any]
Reply = tuple[int, JsonObject]


def trust(monkeypatch: pytest.MonkeyPatch, ca_bundle_path: str) -> None:
    """Make `requests` (hence MSAL) trust a CA bundle and reach 127.0.0.1 directly, for this test only."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle_path)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@dataclass(frozen=True, slots=True)
class PlannedError:
    """An error the token endpoint gives instead of a token (see `OidcDouble.fail_with`)."""

    error: str
    code: int
    description: str
    status: int
    correlation_id: str


def entra_error(error: str, code: int, description: str, correlation_id: str | None = None) -> JsonObject:
    """An error body shaped like Entra's: the AADSTS text is followed by trace lines, as in production."""
    correlation_id = correlation_id or str(uuid.uuid4())
    trace_id = str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error,
        "error_description": (
            f"{description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


class OidcDouble:
    """An Entra-like identity provider on `https://127.0.0.1:<port>/<tenant>`, running in a background thread.

    The server starts in the constructor (so `authority` is known at once) and stops in `stop()` or when
    leaving the `with` block. Counters and lists may be read from the test thread at any time.
    """

    def __init__(
        self,
        *,
        tenant: str | None = None,
        port: int = 0,
        ca: trustme.CA | None = None,
        client_secret: str | None = None,
        expires_in: int = 3599,
    ) -> None:
        """`port` and `ca` let a test bring an identity provider "back" at the same address with the same trust.

        With `client_secret` set, any other secret is refused as Entra does (AADSTS7000215).
        """
        self.tenant = tenant or str(uuid.uuid4())
        self.expires_in = expires_in
        self.client_secret = client_secret
        self.token_requests = 0
        self.discovery_requests = 0
        self.issued_tokens: list[str] = []
        # Every token request's form fields, in order (the secret or assertion included), for assertions.
        self.token_request_forms: list[dict[str, str]] = []
        self._planned: list[PlannedError] = []
        self._lock = threading.Lock()
        self._stopped = False

        self.ca = ca or trustme.CA()
        self._tmp = tempfile.TemporaryDirectory(prefix="oidc-double-")
        try:
            bundle = Path(self._tmp.name) / "ca.pem"
            self.ca.cert_pem.write_to_path(str(bundle))
            self.ca_bundle_path = str(bundle)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
            self._server = _TlsServer(("127.0.0.1", port), context, self)
        except BaseException:
            self._tmp.cleanup()
            raise
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # keeps stop() quick
            name=f"oidc-double-{self.port}",
            daemon=True,
        )
        self._thread.start()

    # Addresses -------------------------------------------------------------------------------

    @property
    def authority(self) -> str:
        return f"https://127.0.0.1:{self.port}/{self.tenant}"

    @property
    def issuer(self) -> str:
        return f"{self.authority}/v2.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    # Test controls ---------------------------------------------------------------------------

    def fail_with(
        self,
        *,
        error: str,
        code: int,
        description: str,
        status: int = 400,
        times: int = 1,
        correlation_id: str | None = None,
    ) -> str:
        """Answer the next `times` token requests with an Entra error; returns the correlation id it carries."""
        correlation_id = correlation_id or str(uuid.uuid4())
        planned = PlannedError(error, code, description, status, correlation_id)
        with self._lock:
            self._planned.extend([planned] * times)
        return correlation_id

    def stop(self) -> None:
        """Shut the server down (idempotent); the port is closed when this returns."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._tmp.cleanup()

    def __enter__(self) -> OidcDouble:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"OidcDouble(authority={self.authority!r}, token_requests={self.token_requests})"

    # Request handling (called from the server's threads) -------------------------------------

    def answer_get(self, path: str) -> Reply:
        prefix = f"/{self.tenant}"
        if path == f"{prefix}/v2.0/.well-known/openid-configuration":
            with self._lock:
                self.discovery_requests += 1
            return 200, self._openid_configuration()
        if path == f"{prefix}/discovery/v2.0/keys":
            return 200, {"keys": []}  # nothing here signs id tokens: client credentials get none
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            # Entra answers discovery for an unknown tenant with 400 and AADSTS90002.
            return 400, entra_error("invalid_tenant", 90002, "AADSTS90002: Tenant not found.")
        return 404, {"error": "not_found", "error_description": f"the double serves no {path}"}

    def answer_post(self, path: str, body: str, authorization: str | None) -> Reply:
        if path != f"/{self.tenant}/oauth2/v2.0/token":
            return 404, {"error": "not_found", "error_description": f"the double serves no {path}"}
        form = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
        with self._lock:
            self.token_requests += 1
            self.token_request_forms.append(form)
            if self._planned:
                planned = self._planned.pop(0)
                error = entra_error(planned.error, planned.code, planned.description, planned.correlation_id)
                return planned.status, error
            refusal = self._refusal(form, authorization)
            if refusal is not None:
                return refusal
            token = f"{fake_secrets.ACCESS_TOKEN_PREFIX}-{len(self.issued_tokens) + 1}-{secrets.token_urlsafe(16)}"
            self.issued_tokens.append(token)
            expires_in = self.expires_in
        # ext_expires_in is what Entra sends too; MSAL would otherwise default it to expires_in.
        return 200, {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }

    def _openid_configuration(self) -> JsonObject:
        """The fields of Entra's v2.0 discovery document; MSAL needs authorization_endpoint and token_endpoint."""
        base = self.authority
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": self.token_endpoint,
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def _refusal(self, form: dict[str, str], authorization: str | None) -> Reply | None:
        """What Entra would say about a malformed client-credentials grant, or None when it is acceptable."""
        grant_type = form.get("grant_type")
        if not grant_type:
            return 400, entra_error("invalid_request", 900144, _missing("grant_type"))
        if grant_type != CLIENT_CREDENTIALS:
            return 400, entra_error(
                "unsupported_grant_type",
                70003,
                f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'.",
            )
        if not form.get("client_id"):
            return 400, entra_error("invalid_request", 900144, _missing("client_id"))
        if not form.get("scope"):
            return 400, entra_error(
                "invalid_request", 90014, "AADSTS90014: The required field 'scope' is missing from the credential."
            )
        secret = form.get("client_secret") or _basic_auth_secret(authorization)
        assertion = form.get("client_assertion")
        if assertion:
            if form.get("client_assertion_type") != JWT_BEARER or assertion.count(".") != 2:
                return 401, entra_error("invalid_client", 50027, "AADSTS50027: JWT token is invalid or malformed.")
            return None
        if not secret:
            return 401, entra_error(
                "invalid_client", 7000218, _missing("'client_assertion' or 'client_secret'", quoted=False)
            )
        if self.client_secret is not None and not secrets.compare_digest(secret, self.client_secret):
            return 401, entra_error("invalid_client", 7000215, "AADSTS7000215: Invalid client secret provided.")
        return None


def _missing(parameter: str, *, quoted: bool = True) -> str:
    name = f"'{parameter}'" if quoted else parameter
    return f"AADSTS900144: The request body must contain the following parameter: {name}."


def _basic_auth_secret(authorization: str | None) -> str | None:
    """The secret of an RFC 6749 §2.3.1 `Authorization: Basic` header (form-encoded id:secret), if any."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(authorization.removeprefix("Basic "), validate=True).decode()
    except ValueError:
        return None
    _, _, secret = decoded.partition(":")
    return unquote_plus(secret) or None


class _TlsServer(ThreadingHTTPServer):
    """A threading HTTP server that does the TLS handshake in each connection's own thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, double: OidcDouble) -> None:
        self.context = context
        self.double = double
        super().__init__(address, _Handler)

    def finish_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # Handshaking here rather than in accept() means a client that never speaks TLS cannot stall the server.
        assert isinstance(request, socket.socket)  # a TCP server: always a stream socket
        request.settimeout(5)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # e.g. a client that does not trust the CA: it sees the failed handshake
        try:
            _Handler(tls, client_address, self)
        finally:
            self.shutdown_request(tls)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-request are normal in tests; keep stderr quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _TlsServer
    server_version = "OidcDouble/1.0"
    timeout = 5.0  # a stuck client cannot hold a thread for ever

    def do_GET(self) -> None:
        self._reply(*self.server.double.answer_get(urlsplit(self.path).path))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        path = urlsplit(self.path).path
        self._reply(*self.server.double.answer_post(path, body, self.headers.get("Authorization")))

    def _reply(self, status: int, body: JsonObject) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""
