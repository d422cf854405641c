"""Every secret the test suite hands the bot, each one recognisable by the marker it carries.

The values are fake (nothing here opens anything real), but the bot must treat them as it would real ones:
`tests/conftest.py` checks every log record and every Slack payload of the whole suite for `MARKER` and for
each value below, and fails the test during which one showed up.
"""

from __future__ import annotations

MARKER = "FAKESECRET"

# Slack ---------------------------------------------------------------------------------------------------------
SIGNING_SECRET = f"{MARKER}-signing-8f2a41c7e0"
# A signing secret that is not the bot's: requests signed with it must be refused.
FOREIGN_SIGNING_SECRET = f"{MARKER}-signing-of-another-app-3b9d"
# The signing secret after a rotation (SIGNING_SECRET then is SLACK_SIGNING_SECRET_PREVIOUS).
ROTATED_SIGNING_SECRET = f"{MARKER}-signing-rotated-5c17d2"
BOT_TOKEN = f"xoxb-{MARKER}-111-222-bot"
APP_TOKEN = f"xapp-{MARKER}-1-A0-app"
# The stand-in's own tokens (`SlackStandIn()` defaults to these) and the demo's signing secret.
STANDIN_BOT_TOKEN = f"xoxb-{MARKER}-standin"
STANDIN_APP_TOKEN = f"xapp-{MARKER}-standin"
DEMO_SIGNING_SECRET = f"{MARKER}-demo-signing-never-printed"

# Defender / Entra ----------------------------------------------------------------------------------------------
DEFENDER_CLIENT_SECRET = f"{MARKER}-client-secret-value-123"
# The secret the OIDC double expects when a test proves that a wrong one is refused.
OTHER_CLIENT_SECRET = f"{MARKER}-the-real-one"
ACCESS_TOKEN_PREFIX = f"double-token-{MARKER}"  # access tokens the OIDC double issues start with this

ALL = (
    SIGNING_SECRET,
    FOREIGN_SIGNING_SECRET,
    ROTATED_SIGNING_SECRET,
    BOT_TOKEN,
    APP_TOKEN,
    STANDIN_BOT_TOKEN,
    STANDIN_APP_TOKEN,
    DEMO_SIGNING_SECRET,
    DEFENDER_CLIENT_SECRET,
    OTHER_CLIENT_SECRET,
    ACCESS_TOKEN_PREFIX,
)
assert all(MARKER in value for value in ALL)


def leaks(text: str) -> list[str]:
    """The fake secrets (or the bare marker) found in `text`; empty when it is clean."""
    if MARKER not in text:
        return []
    return [value for value in ALL if value in text] or [MARKER]
