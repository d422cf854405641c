"""User-group membership from Slack (`usergroups.users.list`), cached, for the access policy.

Membership is read per user group (one call answers for everyone in it), kept `ttl` seconds, and a
copy up to `max_stale` seconds old is used while Slack cannot answer. The call sits on the request
path of a refusal decision, so it has a short timeout and no retries: when Slack is slow the answer
is "could not check" (a refusal), never a silent "yes".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cachetools
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.access.policy import MembershipUnavailable
from bot.alerts.singleflight import SingleFlight
from bot.slack.errors import SlackErrorKind, classify

log = logging.getLogger(__name__)


class SlackMemberships:
    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = 300.0,
        max_stale: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._known: cachetools.TTLCache[str, tuple[frozenset[str], float]] = cachetools.TTLCache(
            1024, max(ttl, max_stale), clock
        )
        self._lock = threading.Lock()
        self._flights: SingleFlight[frozenset[str]] = SingleFlight()  # a burst of first requests: one call

    def members(self, usergroup_id: str) -> frozenset[str]:
        with self._lock:
            known = self._known.get(usergroup_id)
        if known is not None and self._clock() - known[1] < self._ttl:
            return known[0]
        try:
            return self._flights.run(usergroup_id, lambda: self._fetch(usergroup_id))[0]
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            return self._stale(usergroup_id, known, error)
        except (SlackClientError, OSError) as exc:
            return self._stale(usergroup_id, known, type(exc).__name__)

    def _fetch(self, usergroup_id: str) -> frozenset[str]:
        response = self._client.usergroups_users_list(usergroup=usergroup_id, include_disabled=False)
        users = frozenset(str(user) for user in response.get("users") or [])
        with self._lock:
            self._known[usergroup_id] = (users, self._clock())
        return users

    def _stale(self, usergroup_id: str, known: tuple[frozenset[str], float] | None, error: str) -> frozenset[str]:
        hint = " (the app needs the usergroups:read scope)" if classify(error) is SlackErrorKind.MISSING_SCOPE else ""
        if known is None:
            log.warning("cannot read the members of user group %s: %s%s", usergroup_id, error, hint)
            raise MembershipUnavailable(error)
        log.info("using the last known members of user group %s: %s", usergroup_id, error)
        return known[0]
