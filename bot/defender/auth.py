"""App-only tokens for the Defender API (MSAL client-credentials flow).

One `ConfidentialClientApplication` lives for the whole process: MSAL keeps the token in memory and
renews it shortly before expiry, so the identity provider is asked about once an hour however busy the
bot is. MSAL reports refusals as dicts; they become `AuthError` with the AADSTS code and a plain hint.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import msal
import requests
from msal.exceptions import MsalServiceError

from bot.defender.errors import AuthError, DefenderUnavailable

log = logging.getLogger(__name__)

# What to check for the AADSTS codes people actually hit when setting up an app registration.
_HINTS = {
    "7000215": "the client secret is wrong: check DEFENDER_CLIENT_SECRET (the secret's value, not its id)",
    "7000222": "the client secret has expired: create a new one in the app registration",
    "700016": "the app is not known in this tenant: check DEFENDER_CLIENT_ID, DEFENDER_TENANT_ID and DEFENDER_CLOUD",
    "90002": "the tenant was not found: check DEFENDER_TENANT_ID and DEFENDER_CLOUD",
    "900023": "the tenant id is malformed: check DEFENDER_TENANT_ID",
    "65001": "admin consent has not been granted for the app's Defender permissions",
    "500011": "the Defender API is not available in this tenant or cloud: check DEFENDER_CLOUD and DEFENDER_SCOPE",
    "700027": "the certificate was rejected: upload its public part to the app registration",
    "7000112": "the app registration is disabled",
}
_DEFAULT_HINT = "check the app registration, DEFENDER_TENANT_ID, DEFENDER_CLIENT_ID and DEFENDER_CLOUD"
_AADSTS = re.compile(r"AADSTS(\d+)")


class TokenProvider(Protocol):
    """What the Defender client needs from authentication."""

    def token(self) -> str:
        """A bearer token for the Defender API, from cache when possible."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token (the API answered 401)."""
        ...


class StaticTokenProvider:
    """A fixed token, for the built-in simulator and tests: no identity provider involved."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        """A fixed token cannot be renewed; the next call simply uses it again."""

    def __repr__(self) -> str:
        return "StaticTokenProvider(token=***)"


def auth_error_from_result(result: dict[str, Any]) -> AuthError:
    """Turn MSAL's error dict into an `AuthError` carrying the AADSTS code and a hint."""
    description = str(result.get("error_description") or result.get("error") or "token request refused")
    codes = result.get("error_codes")
    code: str | None = str(codes[0]) if isinstance(codes, list) and codes else None
    if code is None and (match := _AADSTS.search(description)):
        code = match[1]
    # The first line of the description names the problem; the rest is trace and correlation ids.
    summary = _AADSTS.sub("", description.splitlines()[0]).lstrip(": ").strip() or str(result.get("error"))
    return AuthError(
        summary,
        code=code,
        hint=_HINTS.get(code or "", _DEFAULT_HINT),
        target=str(result.get("correlation_id")) if result.get("correlation_id") else None,
    )


@contextmanager
def _identity_provider_errors(authority: str) -> Iterator[None]:
    """Map what MSAL and requests raise into the bot's taxonomy; nothing else escapes."""
    try:
        yield
    except (requests.RequestException, MsalServiceError) as exc:
        raise DefenderUnavailable(f"identity provider unreachable or failing: {type(exc).__name__}") from None
    except OSError as exc:
        raise AuthError(
            f"cannot set up TLS to {authority}: {exc.strerror or type(exc).__name__}",
            hint="check REQUESTS_CA_BUNDLE",
        ) from None
    except (KeyError, ValueError) as exc:
        raise AuthError(
            f"the identity provider at {authority} answered unexpectedly ({type(exc).__name__})",
            hint="check DEFENDER_AUTHORITY_URL, DEFENDER_TENANT_ID and DEFENDER_CLOUD",
        ) from None


class MsalTokenProvider:
    """Client-credentials tokens from Microsoft Entra ID (or a sovereign cloud's authority).

    The MSAL application is built on first use, not at start-up: building it reads the authority's
    metadata, and an identity provider that is down at start-up must not stop the bot from starting.
    """

    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        credential: str | dict[str, str],
        scope: str,
        instance_discovery: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._authority = authority
        self._client_id = client_id
        self._credential = credential
        self._scopes = [scope]
        self._instance_discovery = instance_discovery
        self._timeout = timeout
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MsalTokenProvider(authority={self._authority!r}, client_id={self._client_id!r}, credential=***)"

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                with _identity_provider_errors(self._authority):
                    self._app = msal.ConfidentialClientApplication(
                        self._client_id,
                        client_credential=self._credential,
                        authority=self._authority,
                        instance_discovery=self._instance_discovery,
                        timeout=self._timeout,
                    )
            return self._app

    def token(self) -> str:
        app = self._application()
        # Serialized so that concurrent first calls (and the hourly renewal) make one request, not one per thread;
        # a cache hit inside MSAL takes microseconds.
        with self._token_lock, _identity_provider_errors(self._authority):
            result = app.acquire_token_for_client(scopes=self._scopes)
        if not isinstance(result, dict) or "access_token" not in result:
            error = auth_error_from_result(result if isinstance(result, dict) else {})
            log.warning("token request refused: %s", error)
            raise error
        if result.get("token_source") == "identity_provider":
            log.info("new Defender token issued by the identity provider")
        return str(result["access_token"])

    def invalidate(self) -> None:
        with self._lock:
            app = self._app
        if app is not None:
            app.remove_tokens_for_client()
