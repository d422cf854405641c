"""User-group membership from Slack (`usergroups.users.list`), cached, for the access policy.

Membership is read per user group (one call answers for everyone in it) and kept `ttl` seconds; a copy up to
`max_stale` seconds old is used while Slack cannot answer. Slack waits 3 s for an acknowledgement, and the
access check comes before it, so no request ever waits on Slack for long:

- `members` never calls Slack on the caller's thread: it answers from what is known, starts a background
  re-read of a group older than `ttl` (serving the last copy meanwhile), and raises `MembershipUnavailable` for a
  group never read (or known only from over `max_stale` ago): "could not check", a refusal, never a silent "yes".
- `prepare` (before each check) starts reading every group not known yet, all at once on a small pool of their
  own, and waits for them at most `wait` seconds in all, however many groups the policy names. A read that takes
  longer goes on in the background and serves the next request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for

import cachetools
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.access.policy import MembershipUnavailable
from bot.slack.errors import SlackErrorKind, classify

log = logging.getLogger(__name__)

PREPARE_WAIT = 1.5  # seconds a request may wait for groups nobody has read yet, all of them together
READERS = 4  # user groups read at the same time


class SlackMemberships:
    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = 300.0,
        max_stale: float = 3600.0,
        wait: float = PREPARE_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._wait = wait
        self._clock = clock
        self._known: cachetools.TTLCache[str, tuple[frozenset[str], float]] = cachetools.TTLCache(
            1024, max(ttl, max_stale), clock
        )
        self._lock = threading.Lock()
        self._reading: dict[str, Future[None]] = {}  # one read per group at a time
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="usergroups")

    def members(self, usergroup_id: str) -> frozenset[str]:
        """The members as last read; never waits on Slack (see the module's documentation)."""
        with self._lock:
            known = self._known.get(usergroup_id)
        if known is None:
            self.read([usergroup_id])
            raise MembershipUnavailable("not read yet")
        if self._clock() - known[1] >= self._ttl:
            self.read([usergroup_id])  # the next request gets the new copy
        return known[0]

    def prepare(self, usergroup_ids: Collection[str]) -> None:
        """Read the groups not known yet, all at once, waiting at most `wait` seconds in all."""
        with self._lock:
            missing = [group for group in usergroup_ids if group not in self._known]
        if missing:
            wait_for(self.read(missing), timeout=self._wait)

    def read(self, usergroup_ids: Collection[str]) -> list[Future[None]]:
        """Start reading each group (unless a read of it is under way); returns at once."""
        with self._lock:
            for group in usergroup_ids:
                if group not in self._reading:
                    self._reading[group] = self._readers.submit(self._read, group)
            return [self._reading[group] for group in usergroup_ids]

    def close(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)

    def _read(self, usergroup_id: str) -> None:
        try:
            response = self._client.usergroups_users_list(usergroup=usergroup_id, include_disabled=False)
            users = frozenset(str(user) for user in response.get("users") or [])
            with self._lock:
                self._known[usergroup_id] = (users, self._clock())
        except SlackApiError as exc:
            self._unread(usergroup_id, str(exc.response.get("error") or "unknown_error"))
        except (SlackClientError, OSError) as exc:
            self._unread(usergroup_id, type(exc).__name__)
        finally:
            with self._lock:
                self._reading.pop(usergroup_id, None)

    def _unread(self, usergroup_id: str, error: str) -> None:
        """A read failed: the last copy serves until it is `max_stale` old, then the group is unknown."""
        hint = " (the app needs the usergroups:read scope)" if classify(error) is SlackErrorKind.MISSING_SCOPE else ""
        with self._lock:
            known = self._known.get(usergroup_id)  # gone once `max_stale` old
        if known is None:
            log.warning("cannot read the members of user group %s: %s%s", usergroup_id, error, hint)
        else:
            log.info("using the last known members of user group %s: %s", usergroup_id, error)
