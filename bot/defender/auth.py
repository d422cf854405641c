"""App-only tokens for the Defender API (MSAL client-credentials flow).

One `ConfidentialClientApplication` lives for the whole process: MSAL keeps the token in memory, so the
identity provider is asked about once an hour however busy the bot is. MSAL renews a token only when asked
for one within five minutes of its expiry, which would make that lookup wait for the identity provider; so a
`TokenKeeper` obtains the token at start-up and renews it in the background ten minutes before it expires,
and lookups only ever read the token held. MSAL reports refusals as dicts; they become `AuthError` with the
AADSTS code and a plain hint.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import msal
import requests
from msal.exceptions import MsalServiceError

from bot.defender.errors import AuthError, DefenderError, DefenderUnavailable

log = logging.getLogger(__name__)

MSAL_EXPIRY_MARGIN = 300.0  # MSAL treats a token as expired this long before its expiry
RENEW_BEFORE = 600.0  # the keeper renews a token this long before its expiry: before MSAL's margin starts
RENEW_RETRY = 30.0  # after a failed renewal, while the held token is still good

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


@dataclass(frozen=True, slots=True)
class _Held:
    token: str
    expires_at: float  # on the provider's clock
    lifetime: float


class MsalTokenProvider:
    """Client-credentials tokens from Microsoft Entra ID (or a sovereign cloud's authority).

    The MSAL application is built on first use, not at start-up: building it reads the authority's
    metadata, and an identity provider that is down at start-up must not stop the bot from starting.
    `clock` is the wall clock MSAL's expiry decisions follow (`time.time`).
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authority = authority
        self._client_id = client_id
        self._credential = credential
        self._scopes = [scope]
        self._instance_discovery = instance_discovery
        self._timeout = timeout
        self._clock = clock
        self._app: msal.ConfidentialClientApplication | None = None
        self._held: _Held | None = None  # the last token issued: read without a lock while a renewal runs
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
        held = self._held
        if held is not None and self._clock() < held.expires_at - MSAL_EXPIRY_MARGIN:
            return held.token
        return self._acquire(renew=False).token

    def renew_if_due(self, renew_before: float = RENEW_BEFORE) -> float:
        """Obtain a token if none is held or the one held expires within `renew_before` seconds (at most half its
        lifetime); return the seconds until the next renewal is due. Raises like `token`."""
        held = self._held
        if held is None or held.expires_at - self._clock() <= min(renew_before, held.lifetime / 2):
            held = self._acquire(renew=held is not None)
        return max(0.0, held.expires_at - min(renew_before, held.lifetime / 2) - self._clock())

    def _acquire(self, *, renew: bool) -> _Held:
        app = self._application()
        # Serialized so that concurrent first calls (and a renewal) make one request, not one per thread; a cache
        # hit inside MSAL takes microseconds. A renewal drops MSAL's copy first: MSAL would serve it until its margin.
        with self._token_lock, _identity_provider_errors(self._authority):
            if renew:
                app.remove_tokens_for_client()
            asked = self._clock()
            result = app.acquire_token_for_client(scopes=self._scopes)
        if not isinstance(result, dict) or "access_token" not in result:
            error = auth_error_from_result(result if isinstance(result, dict) else {})
            log.warning("token request refused: %s", error)
            raise error
        if result.get("token_source") == "identity_provider":
            log.info("new Defender token issued by the identity provider")
        lifetime = float(result.get("expires_in") or 0)
        held = self._held = _Held(str(result["access_token"]), asked + lifetime, lifetime)
        return held

    def invalidate(self) -> None:
        self._held = None
        with self._lock:
            app = self._app
        if app is not None:
            app.remove_tokens_for_client()


class TokenKeeper:
    """Obtains the token at start-up (`start`) and renews it in the background before it expires (until `stop`).

    A failure at start-up or on a renewal is logged and retried every `retry` seconds; lookups meanwhile use the
    token still held, or ask for one themselves once it is gone, as without a keeper.
    """

    def __init__(
        self,
        provider: MsalTokenProvider,
        *,
        renew_before: float = RENEW_BEFORE,
        retry: float = RENEW_RETRY,
        name: str = "defender-token",
    ) -> None:
        self._provider = provider
        self._renew_before = renew_before
        self._retry = retry
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._next = 0.0  # seconds until the next renewal is due

    def start(self) -> None:
        """Obtain the first token now (the first lookup must not wait for it), then keep it fresh in the background."""
        self._next = self._renew()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stopped.wait(max(1.0, self._next)):  # a token issued already expired must not spin
            self._next = self._renew()

    def _renew(self) -> float:
        try:
            return self._provider.renew_if_due(self._renew_before)
        except DefenderError as exc:
            log.warning("no Defender token ahead of use (%s); trying again in %.0f s", exc, self._retry)
            return self._retry
